"""Schema migrations for the audit store, applied in file-name order (see ibg_audit.store)."""
