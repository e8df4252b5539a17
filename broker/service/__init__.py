"""What every adapter calls on a running broker: take an envelope in (door) and
hand one over to its recipient (handover).

Imports broker.runtime and below; the adapters import it.
"""
