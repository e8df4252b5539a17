"""The agency directory: records, lookups, import/export, the live view."""
