"""The edges of docbroker: HTTP API, national axis, spool folder. They import the core."""
