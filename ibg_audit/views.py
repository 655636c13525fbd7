"""SQL views of the audit store, for sqlite3 / sqlite-utils / Datasette users alike.

store.ensure_db_shape() (re)creates them idempotently whenever a definition here changes.
"""

VIEWS = {
    "snapshot_items_count": """
        SELECT s.id AS snapshot_id, s.kind, s.recorded_at, s.ok, p.item_count
        FROM snapshots s LEFT JOIN payloads p ON p.hash = s.payload_hash
    """,
}
