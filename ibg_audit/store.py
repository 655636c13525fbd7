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

import sqlite_utils
from sqlite_utils import Migrations

from .errors import BadInputError, StoreError
from .views import VIEWS

MIGRATION_SET = "ibg_audit"
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


def _migrations() -> Migrations:
    """One sqlite-utils migration per migrations/NNNN_name.sql file, applied in file-name order."""
    migrations = Migrations(MIGRATION_SET)
    files = sorted(
        (f for f in importlib.resources.files("ibg_audit.migrations").iterdir() if f.name.endswith(".sql")),
        key=lambda f: f.name,
    )
    for f in files:
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


class Store:
    """An open audit store. Use open_store()."""

    def __init__(self, db: sqlite_utils.Database, path: Path):
        self.db = db
        self.path = path

    def close(self) -> None:
        self.db.close()

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
            cursor = self.db.execute(
                "INSERT INTO snapshots ({}) VALUES ({})".format(
                    ", ".join(f"[{k}]" for k in row), ", ".join("?" for _ in row)
                ),
                list(row.values()),
            )
            return cursor.lastrowid

    def _save_payload(self, kind: str, data, seen_at: str) -> str:
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        exists = self.db.execute("SELECT 1 FROM payloads WHERE hash = ?", [digest]).fetchone()
        if exists:
            return digest
        items = data if isinstance(data, list) else []
        self.db["payloads"].insert(
            {"hash": digest, "kind": kind, "item_count": len(items), "json": text, "first_seen_at": seen_at}
        )
        if kind in ITEM_TABLES and items:
            table, columns = ITEM_TABLES[kind]
            self.db[table].insert_all(
                ({"payload_hash": digest, **{c: item.get(c) for c in columns}} for item in items),
                batch_size=2000,
            )
        return digest

    def _write_transaction(self):
        # BEGIN IMMEDIATE takes the write lock up front, so concurrent writers queue on busy_timeout
        # instead of failing with "database is locked" when upgrading a read lock.
        return _ImmediateTransaction(self.db.conn)

    # --- reads --------------------------------------------------------------------------------

    def snapshot_row(self, snapshot_id: int) -> dict:
        rows = list(self.db.query("SELECT * FROM snapshots WHERE id = ?", [snapshot_id]))
        if not rows:
            raise BadInputError(f"no snapshot with id {snapshot_id}")
        return rows[0]

    def load_data(self, row: dict):
        if row["payload_hash"] is None:
            return None
        (text,) = self.db.execute("SELECT json FROM payloads WHERE hash = ?", [row["payload_hash"]]).fetchone()
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
            for row in self.db.query(sql, params + [limit])
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
            raise StoreError(f"cannot create audit store {path}: {e.strerror}") from None
    try:
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
        db = sqlite_utils.Database(conn)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA foreign_keys=ON")
        _migrate(db)
        ensure_db_shape(db)
    except sqlite3.DatabaseError as e:
        raise StoreError(f"{path} is not a usable SQLite audit store: {e}") from None
    return Store(db, path)


def _migrate(db: sqlite_utils.Database) -> None:
    migrations = _migrations()
    if not migrations.pending(db):
        return
    # Serialize concurrent first runs: the loser waits, then finds nothing pending.
    with _ImmediateTransaction(db.conn):
        migrations.apply(db)


def ensure_db_shape(db: sqlite_utils.Database) -> None:
    """Idempotent: indexes and views, recreated only when their definition changed."""
    existing = {row["name"]: row["sql"] for row in db.query("SELECT name, sql FROM sqlite_master WHERE type = 'view'")}
    wanted_indexes = [
        (table, cols) for table, cols in INDEXES
        if not any(index.columns == cols for index in db[table].indexes)
    ]
    stale_views = {
        name: sql for name, sql in VIEWS.items()
        if existing.get(name) != _view_sql(name, sql)
    }
    if not wanted_indexes and not stale_views:
        return
    with _ImmediateTransaction(db.conn):
        for table, cols in wanted_indexes:
            db[table].create_index(cols, if_not_exists=True)
        for name, sql in stale_views.items():
            db.execute(f"DROP VIEW IF EXISTS [{name}]")
            db.execute(_view_sql(name, sql))


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


def _successful(store: "Store", kind: str, args: str | None, before_id: int | None = None) -> list[dict]:
    sql = "SELECT * FROM snapshots WHERE ok = 1 AND kind = ?"
    params: list = [kind]
    if args is not None:
        sql += " AND args = ?"
        params.append(args)
    if before_id is not None:
        sql += " AND id < ?"
        params.append(before_id)
    return list(store.db.query(sql + " ORDER BY id DESC", params))


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
        newest = list(store.db.query("SELECT kind FROM snapshots WHERE ok = 1 ORDER BY id DESC LIMIT 1"))
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
                f"snapshot {row['id']} is a {row['kind']} snapshot, not {kind}: diff compares snapshots of one kind"
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
