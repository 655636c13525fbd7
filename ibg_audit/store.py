"""The SQLite audit store: save_* writes, read_* / list_* reads, migrations and db shape.

Layout (see migrations/): one `snapshots` row per call; the call's `data` is stored once per distinct
content in `payloads` (keyed by the SHA-256 of its exact JSON text), and the normalized item tables hang
off the payload hash. Each call is written in a single transaction, so a process killed mid-write leaves
either the whole snapshot or nothing. Rows are only ever inserted: history is never rewritten.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
import re
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import BadInputError, StoreError
from .views import VIEWS

if TYPE_CHECKING:
    import sqlite_utils
    from sqlite_utils import Migrations

# sqlite-utils takes ~50 ms to import, a tenth of a dump's run time: opening an up-to-date store and recording a
# snapshot use the sqlite3 connection directly, and sqlite-utils is imported only to apply migrations or when
# `Store.db` is used (the read commands).
MIGRATION_SET = "ibg_audit"
MIGRATIONS_TABLE = "_sqlite_migrations"  # where sqlite_utils.Migrations records what it applied
BUSY_TIMEOUT_S = 30.0

# Item table per dump kind, and the columns copied from each `data` item.
ITEM_TABLES = {
    "accounts": ("accounts", ["account", "paper"]),
    "positions": (
        "positions",
        [
            "account", "conId", "symbol", "secType", "lastTradeDateOrContractMonth", "strike", "right",
            "multiplier", "exchange", "currency", "localSymbol", "tradingClass", "position", "avgCost",
        ],
    ),
    "orders": (
        "orders",
        [
            "orderId", "permId", "clientId", "account", "conId", "symbol", "secType", "localSymbol", "action",
            "totalQuantity", "orderType", "lmtPrice", "auxPrice", "tif", "status", "filled", "remaining",
            "avgFillPrice",
        ],
    ),
    "account": ("account_values", ["account", "tag", "value", "currency", "modelCode"]),
    "executions": (
        "executions",
        [
            "execId", "time", "account", "conId", "symbol", "secType", "localSymbol", "side", "shares", "price",
            "orderId", "permId", "clientId", "exchange", "cumQty", "avgPrice", "commission",
            "commissionCurrency", "realizedPNL",
        ],
    ),
}

INDEXES = [
    ("snapshots", ["kind", "id"]),
    ("snapshots", ["payload_hash"]),
    ("snapshots", ["ok"]),
]


def _migration_files() -> list:
    return sorted(
        (f for f in importlib.resources.files("ibg_audit.migrations").iterdir() if f.name.endswith(".sql")),
        key=lambda f: f.name,
    )


def _migrations() -> Migrations:
    """One sqlite-utils migration per migrations/NNNN_name.sql file, applied in file-name order."""
    from sqlite_utils import Migrations

    migrations = Migrations(MIGRATION_SET)
    for f in _migration_files():
        sql = f.read_text(encoding="utf-8")

        def apply(db, sql=sql):
            for statement in _split_sql(sql):
                db.execute(statement)

        migrations(name=f.name[: -len(".sql")])(apply)
    return migrations


def _split_sql(sql: str) -> list[str]:
    """Split a script into statements (executescript would COMMIT the migration's transaction)."""
    statements, current = [], ""
    for line in sql.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                statements.append(current.strip())
            current = ""
    if current.strip() and not re.fullmatch(r"(\s|--[^\n]*)*", current):
        raise StoreError(f"incomplete SQL statement in migration: {current.strip()[:60]}")
    return statements


def schema_version(db: sqlite_utils.Database) -> str | None:
    applied = _migrations().applied(db)
    return applied[-1].name if applied else None


def pending_migrations(db: sqlite_utils.Database) -> list[str]:
    """Migrations not applied yet (read-only; open_store applies them)."""
    return [migration.name for migration in _migrations().pending(db)]


class Store:
    """An open audit store. Use open_store()."""

    def __init__(self, db: sqlite3.Connection | sqlite_utils.Database, path: Path):
        self.conn = db if isinstance(db, sqlite3.Connection) else db.conn
        self._db = None if isinstance(db, sqlite3.Connection) else db
        self.path = path

    @property
    def db(self) -> sqlite_utils.Database:
        """The connection as a sqlite_utils.Database (imports sqlite-utils on first use)."""
        if self._db is None:
            import sqlite_utils

            self._db = sqlite_utils.Database(self.conn)
        return self._db

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- writes -------------------------------------------------------------------------------

    def save_snapshot(self, envelope: dict, data: list | dict | None) -> int:
        """Record one call: `envelope` is the printed document without `data` (snapshot_id null).

        Returns the new snapshot id. Everything happens in one transaction.
        """
        kind = envelope["kind"]
        gateway = envelope.get("gateway") or {}
        error = envelope.get("error") or {}
        with self._write_transaction():
            payload_hash = None
            if data is not None:
                payload_hash = self._save_payload(kind, data, envelope["recorded_at"])
            row = {
                "kind": kind,
                "args": canonical_json(envelope.get("args") or {}),
                "started_at": envelope["started_at"],
                "recorded_at": envelope["recorded_at"],
                "duration_ms": envelope["duration_ms"],
                "connected": bool(envelope["connected"]),
                "ok": bool(envelope["ok"]),
                "host": gateway.get("host"),
                "port": gateway.get("port"),
                "client_id": gateway.get("clientId"),
                "server_version": gateway.get("serverVersion"),
                "accounts": json.dumps(gateway.get("accounts") or []),
                "simulated": bool(gateway.get("simulated")),
                "error_type": error.get("type"),
                "error_code": error.get("code"),
                "error_message": error.get("message"),
                "payload_hash": payload_hash,
                "envelope": json.dumps(envelope, ensure_ascii=False),
            }
            snapshot_id = self._insert_row("snapshots", row)
            if kind == "smoke":
                self._save_smoke_call(snapshot_id, envelope)
            return snapshot_id

    def _save_payload(self, kind: str, data, seen_at: str) -> str:
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        exists = self.conn.execute("SELECT 1 FROM payloads WHERE hash = ?", [digest]).fetchone()
        if exists:
            return digest
        items = data if isinstance(data, list) else []
        self.conn.execute(
            "INSERT INTO payloads (hash, kind, item_count, json, first_seen_at) VALUES (?, ?, ?, ?, ?)",
            [digest, kind, len(items), text, seen_at],
        )
        if kind in ITEM_TABLES and items:
            table, columns = ITEM_TABLES[kind]
            self.conn.executemany(
                "INSERT INTO [{}] (payload_hash, {}) VALUES (?{})".format(
                    table, ", ".join(f"[{c}]" for c in columns), ", ?" * len(columns)
                ),
                ([digest, *(item.get(c) for c in columns)] for item in items),
            )
        return digest

    def _write_transaction(self):
        # BEGIN IMMEDIATE takes the write lock up front, so concurrent writers queue on busy_timeout
        # instead of failing with "database is locked" when upgrading a read lock.
        return _ImmediateTransaction(self.conn)

    # --- order smoke audit (migrations/0002_order_audit.sql) ------------------------------------

    def save_order_intent(self, intent: dict) -> int:
        """Write-ahead record of an order about to be sent; committed when this returns. Returns the intent id.

        `intent` has the order_intents columns (`safety` as a dict); call it before placeOrder, never after.
        """
        row = {
            **intent,
            "simulated": bool(intent["simulated"]),
            "auto_cancel": bool(intent["auto_cancel"]),
            "safety": json.dumps(intent["safety"], ensure_ascii=False),
        }
        with self._write_transaction():
            return self._insert_row("order_intents", row)

    def save_order_event(self, intent_id: int, event: str, *, at: str, status: str | None = None,
                         perm_id: int | None = None, error_code: int | None = None, message: str | None = None) -> int:
        """Append one outcome of an intent (committed when this returns): submitted, rejected, no_answer,
        cancel_requested, cancelled or cancel_unconfirmed."""
        row = {"intent_id": intent_id, "at": at, "event": event, "status": status, "permId": perm_id,
               "error_code": error_code, "message": message}
        with self._write_transaction():
            return self._insert_row("order_events", row)

    def _save_smoke_call(self, snapshot_id: int, envelope: dict) -> None:
        """The normalized smoke_calls row; runs inside save_snapshot's transaction."""
        args = envelope["args"]
        rails = envelope["safety"]["rails"]
        contract = envelope.get("contract") or {}
        state = envelope.get("orderState") or {}
        candidates = envelope.get("candidates")
        state_columns = (  # orderState fields, under IB's names
            "initMarginBefore", "initMarginChange", "initMarginAfter", "maintMarginBefore", "maintMarginChange",
            "maintMarginAfter", "equityWithLoanBefore", "equityWithLoanChange", "equityWithLoanAfter", "commission",
            "minCommission", "maxCommission", "commissionCurrency", "warningText",
        )
        row = {
            "snapshot_id": snapshot_id,
            "recorded_at": envelope["recorded_at"],
            "ok": bool(envelope["ok"]),
            "mode": envelope["mode"],
            "whatIf": bool(envelope["whatIf"]),
            "transmitted": bool(envelope["transmitted"]),
            "allow_orders": rails["ALLOW_ORDERS"]["value"],
            "ibkr_paper": rails["IBKR_PAPER"]["value"],
            "port": rails["port"]["value"],
            "reasons": json.dumps(envelope["safety"]["reasons"], ensure_ascii=False),
            "asset": args["asset"],
            "symbol": args["symbol"],
            "action": args["action"],
            "totalQuantity": args["qty"],
            "orderType": args["order"],
            "lmtPrice": args["limit"],
            "tif": args["tif"],
            "account": args["account"],
            "conId": contract.get("conId"),
            "localSymbol": contract.get("localSymbol"),
            "lastTradeDateOrContractMonth": contract.get("lastTradeDateOrContractMonth"),
            "exchange": contract.get("exchange"),
            "contract": json.dumps(contract, ensure_ascii=False) if contract else None,
            "candidates": json.dumps(candidates, ensure_ascii=False) if candidates is not None else None,
            "orderId": envelope.get("orderId"),
            "permId": envelope.get("permId"),
            "status": envelope.get("status"),
            "cancelled": envelope.get("cancelled"),
            "final_status": envelope.get("finalStatus"),
            "intent_id": envelope.get("intent_id"),
            **{name: state.get(name) for name in state_columns},
        }
        self._insert_row("smoke_calls", row)

    def _insert_row(self, table: str, row: dict) -> int:
        cursor = self.conn.execute(
            "INSERT INTO [{}] ({}) VALUES ({})".format(
                table, ", ".join(f"[{k}]" for k in row), ", ".join("?" for _ in row)
            ),
            list(row.values()),
        )
        return cursor.lastrowid

    def orders_sent(self, limit: int | None = None) -> list[dict]:
        """Every order sent for execution, newest first, with its latest event and cancel status."""
        rows = self.query("SELECT * FROM orders_sent ORDER BY intent_id DESC LIMIT ?", [limit or -1])
        flags = ("simulated", "auto_cancel", "cancel_confirmed")
        return [{k: bool(v) if k in flags else v for k, v in row.items()} for row in rows]

    # --- reads --------------------------------------------------------------------------------

    def query(self, sql: str, params=()) -> list[dict]:
        """Rows as dicts over the plain connection: read commands need not import sqlite-utils."""
        cursor = self.conn.execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor]

    def snapshot_row(self, snapshot_id: int) -> dict:
        rows = self.query("SELECT * FROM snapshots WHERE id = ?", [snapshot_id])
        if not rows:
            raise BadInputError(f"no snapshot with id {snapshot_id}")
        return rows[0]

    def load_data(self, row: dict):
        if row["payload_hash"] is None:
            return None
        (text,) = self.conn.execute("SELECT json FROM payloads WHERE hash = ?", [row["payload_hash"]]).fetchone()
        return json.loads(text)

    def load_document(self, snapshot_id: int) -> dict:
        """The document exactly as it was printed for this snapshot."""
        row = self.snapshot_row(snapshot_id)
        return build_document(json.loads(row["envelope"]), self.load_data(row), snapshot_id)

    def list_snapshots(self, kind: str | None = None, limit: int = 20) -> list[dict]:
        where, params = ("WHERE kind = ?", [kind]) if kind else ("", [])
        sql = (
            "SELECT s.id, s.kind, s.args, s.recorded_at, s.ok, s.connected, s.error_code, s.error_message, "
            "s.duration_ms, p.item_count AS items FROM snapshots s LEFT JOIN payloads p ON p.hash = s.payload_hash "
            f"{where} ORDER BY s.id DESC LIMIT ?"
        )
        return [
            {**row, "ok": bool(row["ok"]), "connected": bool(row["connected"]), "args": json.loads(row["args"])}
            for row in self.query(sql, params + [limit])
        ]


class _ImmediateTransaction:
    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")
        return False


def build_document(envelope: dict, data, snapshot_id: int | None) -> dict:
    """Envelope + data in the printed key order; `data` sits just before `error`."""
    doc = {}
    for key, value in envelope.items():
        if key == "error":
            doc["data"] = data if data is not None else []
        doc[key] = snapshot_id if key == "snapshot_id" else value
    doc.setdefault("data", data if data is not None else [])
    return doc


def canonical_json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def open_store(path: str | os.PathLike, *, create: bool = True) -> Store:
    """Open (creating if asked) the store at `path`, migrate it and ensure its shape.

    The file is created readable by its owner only: it holds account ids and trading history.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise StoreError(f"--db {path} is a directory, not a database file")
    if not path.exists():
        if not create:
            raise StoreError(f"no audit store at {path} (record a dump first, or pass --db)")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        except OSError as e:
            # mkdir says "File exists" when one of the parents is a file: name that file instead
            blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
            reason = f"{blocker} is not a directory" if blocker else e.strerror
            raise StoreError(f"cannot create audit store {path}: {reason}") from None
    try:
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA foreign_keys=ON")
        _migrate(conn)
        ensure_db_shape(conn)
    except sqlite3.DatabaseError as e:
        raise StoreError(f"{path} is not a usable SQLite audit store: {e}") from None
    return Store(conn, path)


def _migrate(conn: sqlite3.Connection) -> None:
    applied = set()
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [MIGRATIONS_TABLE]).fetchone():
        applied = {name for (name,) in conn.execute(
            f"SELECT name FROM [{MIGRATIONS_TABLE}] WHERE migration_set = ?", [MIGRATION_SET]
        )}
    if all(f.name[: -len(".sql")] in applied for f in _migration_files()):
        return
    import sqlite_utils

    db = sqlite_utils.Database(conn)
    # Serialize concurrent first runs: the loser waits, then finds nothing pending.
    with _ImmediateTransaction(conn):
        _migrations().apply(db)


def _index_columns(conn: sqlite3.Connection, table: str) -> list[list[str]]:
    return [
        [column for _, _, column in conn.execute(f"PRAGMA index_info([{name}])")]
        for _, name, *_ in conn.execute(f"PRAGMA index_list([{table}])")
    ]


def ensure_db_shape(conn: sqlite3.Connection) -> None:
    """Idempotent: indexes and views, recreated only when their definition changed."""
    existing = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'view'"))
    wanted_indexes = [(table, cols) for table, cols in INDEXES if cols not in _index_columns(conn, table)]
    stale_views = {
        name: sql for name, sql in VIEWS.items()
        if existing.get(name) != _view_sql(name, sql)
    }
    if not wanted_indexes and not stale_views:
        return
    with _ImmediateTransaction(conn):
        for table, cols in wanted_indexes:
            # the name sqlite-utils' create_index gives, so stores indexed by earlier versions match
            conn.execute("CREATE INDEX IF NOT EXISTS [idx_{}_{}] ON [{}] ({})".format(
                table, "_".join(cols), table, ", ".join(f"[{c}]" for c in cols)))
        for name, sql in stale_views.items():
            conn.execute(f"DROP VIEW IF EXISTS [{name}]")
            conn.execute(_view_sql(name, sql))


def _view_sql(name: str, sql: str) -> str:
    return f"CREATE VIEW [{name}] AS {' '.join(sql.split())}"


_REF = re.compile(r"^(?:last(?:~(\d+))?|(\d+))$")


def parse_ref(ref: str) -> tuple[str, int]:
    """'last' -> ('last', 0), 'last~2' -> ('last', 2), '17' -> ('id', 17)."""
    match = _REF.match(ref.strip())
    if not match:
        raise BadInputError(f"snapshot reference must be an id, 'last' or 'last~N', got {ref!r}")
    if match.group(2):
        return "id", int(match.group(2))
    return "last", int(match.group(1) or 0)


def _successful(store: "Store", kind: str, args: str | None) -> list[dict]:
    sql = "SELECT * FROM snapshots WHERE ok = 1 AND kind = ?"
    params: list = [kind]
    if args is not None:
        sql += " AND args = ?"
        params.append(args)
    return store.query(sql + " ORDER BY id DESC", params)


def resolve_refs(store: "Store", refs: list[str], kind: str | None) -> list[dict]:
    """Snapshot rows for the given references, all of one kind and all successful.

    `last~N` counts back through successful snapshots of the same kind and arguments as the newest one,
    so `account --all` is never compared with plain `account`.
    """
    parsed = [parse_ref(r) for r in refs]
    rows_by_id = {value: store.snapshot_row(value) for how, value in parsed if how == "id"}
    if kind is None:
        kind = next(iter(rows_by_id.values()))["kind"] if rows_by_id else None
    if kind is None:
        newest = store.query("SELECT kind FROM snapshots WHERE ok = 1 ORDER BY id DESC LIMIT 1")
        if not newest:
            raise BadInputError("the audit store has no successful snapshot yet")
        kind = newest[0]["kind"]
    rows = []
    for (how, value), ref in zip(parsed, refs):
        if how == "id":
            row = rows_by_id[value]
        else:
            newest = _successful(store, kind, None)
            if not newest:
                raise BadInputError(f"no successful {kind} snapshot yet")
            history = _successful(store, kind, newest[0]["args"])
            if value >= len(history):
                raise BadInputError(
                    f"{ref}: only {len(history)} successful {kind} snapshot(s) with arguments {newest[0]['args']}"
                )
            row = history[value]
        if row["kind"] != kind:
            raise BadInputError(
                f"snapshot {row['id']} is of kind {row['kind']}, not {kind}: diff compares snapshots of one kind"
            )
        if not row["ok"]:
            raise BadInputError(
                f"snapshot {row['id']} is a failed call ({row['error_type']}: {row['error_message']}): nothing to compare"
            )
        rows.append(row)
    return rows


def previous_successful(store: "Store", kind: str, args: dict) -> dict | None:
    rows = _successful(store, kind, canonical_json(args))
    return rows[0] if rows else None
