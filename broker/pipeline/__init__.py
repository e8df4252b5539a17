"""The pipeline: `inbound` to `mailbox`/`upstream`/`rejected`/`events`, exactly once.

processing: the pure step (check, route, stamp and sign one batch: values in, records
out). runner: the consumer-group loop that feeds it and commits its output with the
input offsets. partitioned: the poll/queue/per-partition-worker member. workers: the
worker processes for the CPU work. build: the processor built once from settings.

Imports the log, followed state, keys, config and the pure core; not the views.
"""
