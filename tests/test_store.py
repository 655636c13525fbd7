"""The audit store: content addressing, exact replay, migrations, file safety (no gateway needed)."""

import json
import os
import stat
from pathlib import Path

import pytest
import sqlite_utils
from click.testing import CliRunner

from ibg_audit.cli import cli
from ibg_audit.store import Store, _migrations, open_store, schema_version

POSITIONS_DOC = {
    "kind": "positions",
    "args": {},
    "connected": True,
    "ok": True,
    "snapshot_id": 7,
    "started_at": "2026-11-24T10:00:00.000Z",
    "recorded_at": "2026-11-24T10:00:00.100Z",
    "duration_ms": 100,
    "gateway": {"host": "127.0.0.1", "port": 4002, "clientId": 9001, "serverVersion": 178,
                "accounts": ["DU1234567"], "simulated": False},
    "data": [
        {"account": "DU1234567", "conId": 265598, "symbol": "AAPL", "secType": "STK",
         "lastTradeDateOrContractMonth": "", "strike": None, "right": "", "multiplier": "", "exchange": "NASDAQ",
         "currency": "USD", "localSymbol": "AAPL", "tradingClass": "NMS", "position": 100, "avgCost": 150.5},
    ],
    "error": None,
}


@pytest.fixture
def saved_dump(tmp_path):
    path = tmp_path / "positions.json"
    path.write_text(json.dumps(POSITIONS_DOC))
    return path


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_load_records_and_show_replays_byte_for_byte(tmp_path, saved_dump):
    db = tmp_path / "audit.db"
    first = invoke("dump", "positions", "--load", str(saved_dump), "--db", str(db))
    assert first.exit_code == 0
    printed = json.loads(first.stdout)
    assert printed["snapshot_id"] == 1
    assert printed["loaded_from"] == str(saved_dump)
    assert printed["data"] == POSITIONS_DOC["data"]
    shown = invoke("show", "1", "--db", str(db))
    assert shown.exit_code == 0
    assert shown.stdout == first.stdout


def test_unchanged_data_is_stored_once(tmp_path, saved_dump):
    db = tmp_path / "audit.db"
    for _ in range(3):
        assert invoke("dump", "positions", "--load", str(saved_dump), "--db", str(db)).exit_code == 0
    with open_store(db) as store:
        counts = {t: store.db[t].count for t in ("snapshots", "payloads", "positions")}
    assert counts == {"snapshots": 3, "payloads": 1, "positions": 1}


MIGRATIONS = sorted(p.stem for p in (Path(__file__).parent.parent / "migrations").glob("*.sql"))


def test_store_file_is_private_and_migrated_idempotently(tmp_path):
    db = tmp_path / "sub" / "audit.db"
    with open_store(db) as store:
        assert schema_version(store.db) == MIGRATIONS[-1]
    with open_store(db) as store:
        names = [m["name"] for m in store.db.query("select name from _sqlite_migrations")]
    assert names == MIGRATIONS
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600


def test_an_older_store_is_migrated_not_rebuilt(tmp_path, saved_dump):
    """A store written when only the first migration existed keeps its history when opened now."""
    db_path = tmp_path / "old.db"
    old = sqlite_utils.Database(db_path)
    _migrations().apply(old, stop_before=MIGRATIONS[1:])
    assert [m.name for m in _migrations().applied(old)] == MIGRATIONS[:1]
    envelope = {k: v for k, v in POSITIONS_DOC.items() if k != "data"}
    assert Store(old, db_path).save_snapshot(envelope, POSITIONS_DOC["data"]) == 1
    old.close()
    assert invoke("dump", "positions", "--load", str(saved_dump), "--db", str(db_path)).exit_code == 0
    with open_store(db_path) as store:
        assert [m.name for m in _migrations().applied(store.db)] == MIGRATIONS
        assert store.db["snapshots"].count == 2
        assert store.db["payloads"].count == 1
    shown = json.loads(invoke("show", "1", "--db", str(db_path)).stdout)
    assert (shown["snapshot_id"], shown["data"]) == (1, POSITIONS_DOC["data"])


def test_snapshots_lists_newest_first_as_json(tmp_path, saved_dump):
    db = tmp_path / "audit.db"
    invoke("dump", "positions", "--load", str(saved_dump), "--db", str(db))
    invoke("dump", "positions", "--load", str(saved_dump), "--db", str(db))
    result = invoke("snapshots", "--db", str(db), "--format", "json")
    rows = json.loads(result.stdout)
    assert [(r["id"], r["kind"], r["ok"], r["items"]) for r in rows] == [(2, "positions", True, 1), (1, "positions", True, 1)]


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["show", "5"], 2, "Error: no snapshot with id 5\n"),
        (["dump", "account", "--load", "POS"], 2, "Error: --load file POS holds a dump of kind 'positions', not 'account'\n"),
    ],
)
def test_clear_errors(tmp_path, saved_dump, args, code, message):
    db = tmp_path / "audit.db"
    invoke("dump", "positions", "--load", str(saved_dump), "--db", str(db))
    args = [str(saved_dump) if a == "POS" else a for a in args]
    result = CliRunner().invoke(cli, args + ["--db", str(db)])
    assert result.exit_code == code
    assert result.stderr == message.replace("POS", str(saved_dump))
    assert result.stdout == ""


def test_store_that_is_not_sqlite_is_refused_and_left_alone(tmp_path, saved_dump):
    db = tmp_path / "notes.txt"
    db.write_text("my trading notes\n" * 100)
    result = CliRunner().invoke(cli, ["dump", "positions", "--load", str(saved_dump), "--db", str(db)])
    assert result.exit_code == 5
    assert result.stderr == f"Error: {db} is not a usable SQLite audit store: file is not a database\n"
    assert db.read_text() == "my trading notes\n" * 100


@pytest.mark.parametrize(
    "command", [["snapshots"], ["show", "1"], ["diff", "last"], ["orders-sent"], ["browse", "--port", "0"]]
)
def test_missing_store_for_reading_commands(tmp_path, command):
    db = tmp_path / "nope.db"
    result = CliRunner().invoke(cli, command + ["--db", str(db)])
    assert result.exit_code == 5
    assert result.stderr == f"Error: no audit store at {db} (record a dump first, or pass --db)\n"
    assert not db.exists()
