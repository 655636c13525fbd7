"""Commands that do not talk to a gateway never import ib_async (it costs most of a dump's start-up time).

Each command runs in a fresh interpreter under `python -X importtime`, which lists every module imported.
"""

import json
import subprocess
import sys

import pytest

GATEWAY_PACKAGES = {"ib_async", "eventkit", "ibapi", "nest_asyncio"}
POSITION = {"account": "DU1234567", "conId": 265598, "symbol": "AAPL", "secType": "STK",
            "lastTradeDateOrContractMonth": "", "strike": 0, "right": "", "multiplier": "", "exchange": "NASDAQ",
            "currency": "USD", "localSymbol": "AAPL", "tradingClass": "NMS", "position": 100, "avgCost": 150.5}
DOC = {"kind": "positions", "args": {}, "connected": True, "ok": True, "snapshot_id": 1,
       "started_at": "2026-03-10T15:30:00.000Z", "recorded_at": "2026-03-10T15:30:00.100Z", "duration_ms": 100,
       "gateway": {"host": "127.0.0.1", "port": 4002, "clientId": 9001, "serverVersion": 178,
                   "accounts": ["DU1234567"], "simulated": False},
       "data": [POSITION], "error": None}


def imported(*args) -> tuple[subprocess.CompletedProcess, set[str]]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "from ibg_audit.cli import cli; cli()", *map(str, args)],
        capture_output=True, text=True, timeout=60,
    )
    modules = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    return proc, modules


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two positions snapshots with a change between them, recorded with --load (no gateway)."""
    tmp = tmp_path_factory.mktemp("cold")
    db = tmp / "audit.db"
    changed = {**DOC, "data": [{**POSITION, "position": 120}]}
    for i, doc in enumerate((DOC, changed)):
        path = tmp / f"{i}.json"
        path.write_text(json.dumps(doc))
        proc, _ = imported("dump", "positions", "--load", path, "--db", db)
        assert proc.returncode == 0, proc.stderr[-2000:]
    return db


@pytest.mark.parametrize("args", [
    ["snapshots"],
    ["show", "1"],
    ["diff", "last"],
    ["diff", "1", "2", "--format", "markdown"],
], ids=" ".join)
def test_store_commands_do_not_import_gateway_modules(store, args):
    proc, modules = imported(*args, "--db", store, *(["--format", "json"] if args == ["snapshots"] else []))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout  # the command did its work
    assert "ibg_audit.store" in modules
    assert {m for m in modules if m.split(".")[0] in GATEWAY_PACKAGES} == set()


def test_a_dump_does_import_them(tmp_path):
    """The check above can see ib_async when it is imported."""
    proc, modules = imported("dump", "accounts", "--sim", "--no-record")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ib_async" in modules


def test_recording_into_an_up_to_date_store_does_not_import_sqlite_utils(store, tmp_path):
    """sqlite-utils costs a tenth of a dump's run time; it is only needed to migrate (or for the read commands)."""
    path = tmp_path / "doc.json"
    path.write_text(json.dumps({**DOC, "data": [{**POSITION, "position": 7}]}))
    proc, modules = imported("dump", "positions", "--load", path, "--db", store)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["snapshot_id"] == 3
    assert "ibg_audit.store" in modules
    assert {m for m in modules if m.split(".")[0] == "sqlite_utils"} == set()


def test_a_new_store_is_migrated_with_sqlite_utils(tmp_path):
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(DOC))
    proc, modules = imported("dump", "positions", "--load", path, "--db", tmp_path / "new.db")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "sqlite_utils.migrations" in modules
