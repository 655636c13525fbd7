"""SQL views of the audit store, for sqlite3 / sqlite-utils / Datasette users alike.

store.ensure_db_shape() (re)creates them idempotently whenever a definition here changes.
"""

VIEWS = {
    "snapshot_items_count": """
        SELECT s.id AS snapshot_id, s.kind, s.recorded_at, s.ok, p.item_count
        FROM snapshots s LEFT JOIN payloads p ON p.hash = s.payload_hash
    """,
    # Every order sent for execution (an intent row is written before placeOrder goes out), its newest event and
    # where its cancel stands. An intent without events means the process died after sending: possibly live.
    "orders_sent": """
        SELECT i.id AS intent_id, i.created_at, c.snapshot_id, i.account, i.orderId,
            (SELECT e.permId FROM order_events e WHERE e.intent_id = i.id AND e.permId IS NOT NULL
             ORDER BY e.id DESC LIMIT 1) AS permId,
            i.symbol, i.secType, i.localSymbol, i.conId, i.action, i.totalQuantity, i.orderType, i.lmtPrice, i.tif,
            i.host, i.port, i.simulated, i.auto_cancel,
            last.event AS latest_event, last.status AS latest_status, last.at AS latest_at,
            last.error_code AS latest_error_code, last.message AS latest_message,
            CASE
                WHEN EXISTS (SELECT 1 FROM order_events e WHERE e.intent_id = i.id AND e.event = 'cancelled')
                    THEN 'confirmed'
                WHEN EXISTS (SELECT 1 FROM order_events e WHERE e.intent_id = i.id AND e.event = 'cancel_unconfirmed')
                    THEN 'unconfirmed'
                WHEN EXISTS (SELECT 1 FROM order_events e WHERE e.intent_id = i.id AND e.event = 'cancel_requested')
                    THEN 'requested'
                ELSE 'not requested'
            END AS cancel_status,
            EXISTS (SELECT 1 FROM order_events e WHERE e.intent_id = i.id AND e.event = 'cancelled')
                AS cancel_confirmed
        FROM order_intents i
        LEFT JOIN order_events last
            ON last.id = (SELECT max(e.id) FROM order_events e WHERE e.intent_id = i.id)
        LEFT JOIN smoke_calls c ON c.intent_id = i.id
    """,
    # Per account, the newest successful positions snapshot of a gateway that manages it: a store fed by
    # several logins keeps each account's own latest state, and an account whose positions are all gone
    # shows no rows rather than stale ones.
    "latest_positions": """
        WITH latest AS (
            SELECT a.value AS account, max(s.id) AS snapshot_id
            FROM snapshots s, json_each(s.accounts) a
            WHERE s.kind = 'positions' AND s.ok = 1
            GROUP BY a.value
        )
        SELECT l.account, l.snapshot_id, s.recorded_at, p.conId, p.symbol, p.secType, p.localSymbol,
            p.lastTradeDateOrContractMonth, p.strike, p."right", p.currency, p.position, p.avgCost
        FROM latest l
        JOIN snapshots s ON s.id = l.snapshot_id
        JOIN positions p ON p.payload_hash = s.payload_hash AND p.account = l.account
        ORDER BY l.account, p.symbol, p.secType, p.conId
    """,
    # Every contract an account ever held, at every successful positions snapshot since it first appeared.
    # A closed position is left out of a dump, so its absence reads as position 0 (avgCost null) instead of
    # the history silently stopping at the last non-zero quantity. The contract's description comes from
    # its first appearance (SQLite takes bare columns from the min() row).
    "position_history": """
        WITH held AS (
            SELECT p.account, p.conId, min(s.id) AS first_snapshot_id, p.symbol, p.secType, p.localSymbol,
                p.lastTradeDateOrContractMonth, p.strike, p."right", p.currency
            FROM snapshots s JOIN positions p ON p.payload_hash = s.payload_hash
            WHERE s.kind = 'positions' AND s.ok = 1
            GROUP BY p.account, p.conId
        )
        SELECT s.id AS snapshot_id, s.recorded_at, h.account, h.conId, h.symbol, h.secType, h.localSymbol,
            h.lastTradeDateOrContractMonth, h.strike, h."right", h.currency,
            coalesce(p.position, 0.0) AS position, p.avgCost
        FROM held h
        JOIN snapshots s ON s.kind = 'positions' AND s.ok = 1 AND s.id >= h.first_snapshot_id
            AND EXISTS (SELECT 1 FROM json_each(s.accounts) a WHERE a.value = h.account)
        LEFT JOIN positions p ON p.payload_hash = s.payload_hash AND p.account = h.account AND p.conId = h.conId
        ORDER BY h.account, h.symbol, h.conId, s.id
    """,
    # `account` and `account --all` snapshots both carry NetLiquidation: every one is a point in time.
    "net_liquidation_history": """
        SELECT s.id AS snapshot_id, s.recorded_at, v.account, v.currency, v.value
        FROM snapshots s JOIN account_values v ON v.payload_hash = s.payload_hash
        WHERE s.kind = 'account' AND s.ok = 1 AND v.tag = 'NetLiquidation'
        ORDER BY v.account, v.currency, s.id
    """,
    "failed_calls": """
        SELECT id AS snapshot_id, kind, args, recorded_at, connected, host, port, client_id,
            error_type, error_code, error_message
        FROM snapshots
        WHERE ok = 0
        ORDER BY id DESC
    """,
    # Successful dumps whose data differs from the previous successful dump of the same kind and arguments
    # (the first one of each counts: it changed the store from knowing nothing). Smoke calls are actions,
    # not observations of state, so they are left out.
    "snapshot_changes": """
        SELECT id AS snapshot_id, kind, args, recorded_at, previous_snapshot_id, previous_recorded_at,
            item_count, previous_item_count,
            CASE WHEN previous_snapshot_id IS NOT NULL
                THEN 'ibg-audit diff ' || previous_snapshot_id || ' ' || id END AS diff_command
        FROM (
            SELECT s.id, s.kind, s.args, s.recorded_at, s.payload_hash, p.item_count,
                lag(s.id) OVER w AS previous_snapshot_id,
                lag(s.recorded_at) OVER w AS previous_recorded_at,
                lag(s.payload_hash) OVER w AS previous_payload_hash,
                lag(p.item_count) OVER w AS previous_item_count
            FROM snapshots s JOIN payloads p ON p.hash = s.payload_hash
            WHERE s.ok = 1 AND s.kind <> 'smoke'
            WINDOW w AS (PARTITION BY s.kind, s.args ORDER BY s.id)
        )
        WHERE previous_payload_hash IS NULL OR previous_payload_hash <> payload_hash
        ORDER BY id DESC
    """,
}
