"""Read models: local SQLite files built by tailing topics (readmodel), rebuildable
from the log. mailbox: what waits in each agency's mailbox; documents: each
document's state per recipient from the audit trail; dead_letters: the `rejected`
topic; audit: reading and verifying the hash-chained trail.

Imports the log, the pure core and broker.config; not the pipeline.
"""
