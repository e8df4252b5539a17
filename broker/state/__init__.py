"""State every instance follows from a compacted topic: the agency directory (and
reading/changing it in the log), the head of each audit chain, the dedup index.

Imports the log, the pure core and broker.config; not the pipeline or the views.
"""
