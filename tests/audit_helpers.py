"""Helpers for the fault, load, bad-input and security tests: run the real `ibg-audit` executable as a
subprocess (wall time measured) and look inside an audit store without going through the product code."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from ib_async import IB

IBG_AUDIT = str(Path(sys.executable).parent / "ibg-audit")
ITEM_TABLES = ("accounts", "positions", "orders", "account_values", "executions")
# Every subprocess is killed after this long, so a hang fails the test instead of the CI job.
PROCESS_LIMIT_S = 60


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    elapsed: float

    @property
    def doc(self) -> dict:
        return json.loads(self.stdout)


def ibg_audit(*args, env: dict | None = None, cwd: Path | None = None) -> Run:
    """Run `ibg-audit ARGS` in a fresh process; env entries are added to (None: removed from) os.environ."""
    full_env = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
    start = time.monotonic()
    proc = subprocess.run(
        [IBG_AUDIT, *map(str, args)], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=PROCESS_LIMIT_S
    )
    return Run(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)


def connect(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(db), timeout=30)
    conn.row_factory = sqlite3.Row
    return conn


def query(db: Path, sql: str, params=()) -> list[dict]:
    conn = connect(db)
    try:
        return [dict(row) for row in conn.execute(sql, params)]
    finally:
        conn.close()


def snapshot_rows(db: Path) -> list[dict]:
    return query(db, "SELECT * FROM snapshots ORDER BY id")


def integrity(db: Path) -> str:
    return query(db, "PRAGMA integrity_check")[0]["integrity_check"]


def item_count(db: Path, table: str) -> int:
    return query(db, f"SELECT count(*) AS n FROM [{table}]")[0]["n"]


def fingerprint(db: Path) -> dict:
    """What must not change when a command fails on bad input: the bytes of the store and its WAL."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(db.parent.glob(db.name + "*"))
        if p.is_file()
    }


KIND_TABLES = {"accounts": "accounts", "positions": "positions", "orders": "orders", "account": "account_values",
               "executions": "executions"}


def consistency_problems(db: Path) -> list[str]:
    """Every recorded snapshot is whole: an ok snapshot's payload exists, its JSON has item_count items and the
    normalized table holds exactly that many rows for it; a failed dump has no payload (a failed smoke call may
    keep its order log); no payload is left without a snapshot; a smoke snapshot has its smoke_calls row, and every
    order intent either has events or shows in orders_sent without a latest event (visibly incomplete).
    Returns one line per problem (empty when the store is consistent)."""
    dump_kinds = ", ".join(f"'{k}'" for k in KIND_TABLES)
    problems = [f"failed snapshot {r['id']} has a payload" for r in query(
        db, f"SELECT id FROM snapshots WHERE NOT ok AND payload_hash IS NOT NULL AND kind IN ({dump_kinds})"
    )]
    problems += [f"snapshot {r['id']} is ok but its payload is missing" for r in query(
        db, "SELECT id FROM snapshots s WHERE ok "
            "AND NOT EXISTS (SELECT 1 FROM payloads p WHERE p.hash = s.payload_hash)"
    )]
    problems += [f"payload {r['hash']} has no snapshot" for r in query(
        db, "SELECT hash FROM payloads p WHERE NOT EXISTS (SELECT 1 FROM snapshots s WHERE s.payload_hash = p.hash)"
    )]
    for kind, table in KIND_TABLES.items():
        sql = (
            "SELECT s.id, p.item_count, json_array_length(p.json) AS in_json, "
            f"(SELECT count(*) FROM [{table}] t WHERE t.payload_hash = p.hash) AS in_table "
            "FROM snapshots s JOIN payloads p ON p.hash = s.payload_hash WHERE s.ok AND s.kind = ?"
        )
        problems += [
            f"{kind} snapshot {r['id']}: item_count {r['item_count']}, {r['in_json']} in JSON, {r['in_table']} rows"
            for r in query(db, sql, [kind])
            if not r["item_count"] == r["in_json"] == r["in_table"]
        ]
    tables = {r["name"] for r in query(db, "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
    if "smoke_calls" in tables:
        problems += [f"smoke snapshot {r['id']} has no smoke_calls row" for r in query(
            db, "SELECT id FROM snapshots s WHERE kind = 'smoke' "
                "AND NOT EXISTS (SELECT 1 FROM smoke_calls c WHERE c.snapshot_id = s.id AND c.ok = s.ok)"
        )]
        problems += [f"intent {r['intent_id']} of smoke call {r['snapshot_id']} is missing" for r in query(
            db, "SELECT snapshot_id, intent_id FROM smoke_calls c WHERE intent_id IS NOT NULL "
                "AND NOT EXISTS (SELECT 1 FROM order_intents i WHERE i.id = c.intent_id)"
        )]
        intents = query(db, "SELECT count(*) AS n FROM order_intents")[0]["n"]
        listed = query(db, "SELECT count(*) AS n FROM orders_sent")[0]["n"]
        if intents != listed:
            problems.append(f"{intents} order intents but {listed} rows in orders_sent")
    return problems


def many_positions_scenario(n: int) -> dict:
    """A one-account scenario holding n stock positions (for load and crash tests)."""
    contracts = [
        {"symbol": f"S{i:05d}", "secType": "STK", "conId": 100000 + i, "exchange": "SMART", "currency": "USD",
         "price": 10.0 + i % 500}
        for i in range(n)
    ]
    positions = [{"account": "DU1234567", "contract": c["symbol"], "position": 1 + i % 90, "avgPrice": c["price"]}
                 for i, c in enumerate(contracts)]
    return {"name": f"positions-{n}", "accounts": [{"id": "DU1234567", "currency": "USD", "cash": 1000000.0}],
            "contracts": contracts, "positions": positions}


@pytest.fixture
def holders():
    """Connect real ib_async clients to a gateway with the given client ids (hold(port, *ids)); all are
    disconnected at the end of the test."""
    clients = []

    def hold(port, *client_ids):
        for client_id in client_ids:
            ib = IB()
            ib.connect("127.0.0.1", port, clientId=client_id, timeout=5)
            clients.append(ib)

    yield hold
    for ib in clients:
        ib.disconnect()
