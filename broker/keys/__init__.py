"""Key material and credential files on disk: the broker's signing key and trust
store loaded once (trust), the development keys `keys init` writes (devkeys), the
admin-token and SDK master-key files (files).

Reads and writes files; imports the pure core and broker.config only.
"""
