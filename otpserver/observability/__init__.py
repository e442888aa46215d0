"""What the server tells its operators: logs, request ids, store outages, metrics, audit events."""
