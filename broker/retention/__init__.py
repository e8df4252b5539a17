"""Retention: the periodic task that prunes the log by docbroker's own rules
(`broker.core.retention`), the broker's clock never deciding."""
