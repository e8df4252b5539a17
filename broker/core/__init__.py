"""The domain's values and pure rules, shared by every layer.

Problems and errors (with their codes and policies), the log's records as values,
record headers and ids, the audit trail's events and hash chain, receipts, the
submission record, topic names, routing decisions, credential checks. Pure: no I/O,
no clock (callers pass the time), no asyncio. May import only the other pure
packages (broker.edxml, broker.directory, broker.trust, broker.vdxp).
"""
