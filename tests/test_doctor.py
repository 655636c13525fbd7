"""`ibg-audit doctor` against the simulated gateway: every check, the exit code, and that it changes nothing."""

import json
import os
import sqlite3
from pathlib import Path

import pytest
from audit_helpers import fingerprint, ibg_audit
from click.testing import CliRunner
from sim_fixtures import FIXED_NOW

from ibg_audit.cli import cli
from ibg_audit.doctor import CHECKS, PROJECT_ROOT
from ibg_audit.sim import start_in_thread
from ibg_audit.store import open_store

MIGRATIONS = sorted(p.stem for p in (Path(__file__).parent.parent / "migrations").glob("*.sql"))
LIVE_SCENARIO = Path(__file__).parent.parent / "ibg_audit" / "sim" / "live_scenario.json"
READONLY_UNKNOWN = ("the API cannot be asked; --probe-readonly tests it with a cancel of an order id that cannot "
                    "exist (nothing is placed)")


@pytest.fixture
def store(db):
    open_store(db).close()
    return db


def doctor(port, db, *args):
    result = CliRunner().invoke(cli, ["doctor", "--port", str(port), "--db", str(db), "--timeout", "5", *args])
    return result.exit_code, (json.loads(result.stdout) if result.stdout.startswith("{") else result.stdout)


def by_name(doc):
    assert [c["name"] for c in doc["checks"]] == list(CHECKS)
    return {c["name"]: (c["status"], c["value"], c["detail"]) for c in doc["checks"]}


def test_healthy_gateway_and_store(store):
    with start_in_thread(now=FIXED_NOW) as gw:
        code, doc = doctor(gw.port, store)
        sent = [e.msg_id for e in gw.transcript if e.direction == "in"]
    assert code == 0
    assert doc["ok"] is True
    assert doc["gateway"] == {"host": "127.0.0.1", "port": gw.port, "clientId": 9001, "clientIdTries": 3,
                              "timeout": 5.0, "simulated": False}
    assert by_name(doc) == {
        "reach": ("ok", f"127.0.0.1:{gw.port}", "the port accepts TCP connections"),
        "handshake": ("ok", "completed", "the API session started"),
        "serverVersion": ("ok", 178, "the TWS API protocol version the gateway speaks"),
        "clientId": ("ok", 9001, "free"),
        "managedAccounts": ("ok", ["DU1234567", "DU7654321"], "2 account(s)"),
        "paper": ("ok", True, "every account is a paper account (id starts with D)"),
        "port": ("ok", gw.port, "not a standard IB port (a remapped or simulated gateway); see paper"),
        "readOnly": ("unknown", None, READONLY_UNKNOWN),
        "store": ("ok", str(store), "integrity_check ok"),
        "schemaVersion": ("ok", MIGRATIONS[-1], "up to date"),
        "storeFileMode": ("ok", "0600", "readable by its owner only"),
        "venv": ("ok", str(PROJECT_ROOT / ".venv"), "present"),
    }
    assert [c["name"] for c in doc["checks"] if c["required"]] == ["reach", "handshake", "clientId", "store"]
    assert sent == [0, 71]  # the hello and startApi: without --probe-readonly nothing else is asked


def test_doctor_changes_nothing_and_never_creates_the_store(store, tmp_path):
    before = fingerprint(store)
    missing = tmp_path / "sub" / "new.db"
    with start_in_thread(now=FIXED_NOW) as gw:
        assert doctor(gw.port, store)[0] == 0
        code, doc = doctor(gw.port, missing)
    assert fingerprint(store) == before
    assert code == 0
    assert by_name(doc)["store"] == ("ok", str(missing), "does not exist yet; the first dump creates it")
    assert not missing.parent.exists()


def test_port_closed(store, unused_port):
    code, doc = doctor(unused_port, store)
    checks = by_name(doc)
    assert (code, doc["ok"]) == (1, False)
    assert checks["reach"] == (
        "fail", f"127.0.0.1:{unused_port}",
        "connection refused: is IB Gateway/TWS running, and is this its API port (paper IB Gateway 4002, paper TWS "
        "7497)?",
    )
    for name in ("handshake", "serverVersion", "clientId", "managedAccounts", "paper", "readOnly"):
        assert checks[name] == ("unknown", None, f"not checked: cannot reach 127.0.0.1:{unused_port}")
    assert checks["store"][0] == "ok"


def test_no_handshake_is_bounded_by_the_timeout(store):
    with start_in_thread(faults=["no-handshake"], now=FIXED_NOW) as gw:
        result = ibg_audit("doctor", "--port", gw.port, "--db", store, "--timeout", 1.5)
    assert result.returncode == 1
    assert result.elapsed <= 1.5 + 1.0
    checks = by_name(result.doc)
    assert checks["reach"][0] == "ok"
    assert checks["handshake"] == (
        "fail", None, f"no API handshake from 127.0.0.1:{gw.port} within the 1.5s timeout: is the gateway logged in, "
                      "with the API enabled and 127.0.0.1 in Trusted IPs?")
    assert checks["clientId"] == ("unknown", None, "not checked: no API session")


@pytest.mark.parametrize("held, code, check", [
    ([9001], 0, ("ok", 9001, "in use; dumps fall back to 9002 (within --client-id-tries 3), or pass --client-id 9002")),
    ([9001, 9002, 9003], 1,
     ("fail", 9001, "in use, and so are the next 2 ids dumps try; 9004 is free: pass --client-id 9004")),
], ids=["within the tries", "beyond the tries"])
def test_client_id_in_use_suggests_a_free_one(store, holders, held, code, check):
    with start_in_thread(now=FIXED_NOW) as gw:
        holders(gw.port, *held)
        result = doctor(gw.port, store)
    assert result[0] == code
    assert by_name(result[1])["clientId"] == check


def test_no_free_client_id_among_those_tried(store, holders):
    with start_in_thread(now=FIXED_NOW) as gw:
        holders(gw.port, *range(9001, 9011))
        code, doc = doctor(gw.port, store)
    checks = by_name(doc)
    assert code == 1
    assert checks["handshake"] == ("ok", "completed", "the gateway answered and refused the ids")
    assert checks["clientId"] == (
        "fail", 9001, "client ids 9001..9010 are all in use; pass another --client-id (IBKR_CLIENT_ID)")
    assert checks["managedAccounts"] == ("unknown", None, "not checked: no free client id")


@pytest.mark.parametrize("readonly, value, detail", [
    (True, True, "Read-Only API is ticked: dumps work, every order (even a what-if) gets error 321"),
    (False, False, "orders are accepted by the API (smoke still needs every safety rail)"),
])
def test_probe_readonly_cancels_an_order_id_that_cannot_exist(store, readonly, value, detail):
    with start_in_thread(readonly=readonly, now=FIXED_NOW) as gw:
        code, doc = doctor(gw.port, store, "--probe-readonly")
        cancels = [e.fields for e in gw.messages("in", 4)]
        next_valid_id = int(gw.messages("out", 9)[0].fields[2])
        placed = gw.placed_orders(transmit_only=False)
    assert code == 0
    assert by_name(doc)["readOnly"] == ("ok", value, detail)
    assert cancels == [["4", "1", str(next_valid_id), ""]]  # the id the gateway said was the next unused one
    assert placed == []


def test_live_account_and_live_port_are_warnings_not_failures(store):
    with start_in_thread(LIVE_SCENARIO, now=FIXED_NOW) as gw:
        code, doc = doctor(gw.port, store)
    checks = by_name(doc)
    assert code == 0
    assert checks["paper"] == ("warn", False, "LIVE account(s): U7654321; dumps are read-only, smoke never "
                                              "transmits here")
    code, doc = doctor(4001, store, "--timeout", "0.5")
    assert by_name(doc)["port"] == ("warn", 4001, "the IB Gateway live port: dumps work; smoke never transmits here")


def test_store_problems(tmp_path, unused_port):
    not_sqlite = tmp_path / "not.db"
    not_sqlite.write_text("hello")
    os.chmod(not_sqlite, 0o644)
    checks = by_name(doctor(unused_port, not_sqlite)[1])
    assert checks["store"] == ("fail", str(not_sqlite), "not a usable SQLite database: file is not a database")
    assert checks["storeFileMode"] == ("warn", "0644", f"other users can read it: chmod 600 {not_sqlite}")
    assert by_name(doctor(unused_port, tmp_path)[1])["store"] == (
        "fail", str(tmp_path), "is a directory, not a database file")
    blocked = not_sqlite / "x.db"
    assert by_name(doctor(unused_port, blocked)[1])["store"] == (
        "fail", str(blocked), f"does not exist and cannot be created ({not_sqlite} is not a writable directory)")


def test_pending_migration_is_reported(store, unused_port):
    conn = sqlite3.connect(store)
    conn.execute("DELETE FROM _sqlite_migrations WHERE name = ?", [MIGRATIONS[-1]])
    conn.commit()
    conn.close()
    checks = by_name(doctor(unused_port, store)[1])
    assert checks["schemaVersion"] == ("ok", MIGRATIONS[-2], f"{MIGRATIONS[-1]} pending: the next dump applies it")


def test_table_format(store):
    with start_in_thread(now=FIXED_NOW) as gw:
        code, text = doctor(gw.port, store, "--format", "table")
    lines = text.splitlines()
    assert code == 0
    assert lines[0].split() == ["check", "status", "value", "detail"]
    assert lines[2].split()[:3] == ["reach", "ok", f"127.0.0.1:{gw.port}"]
    assert lines[-1] == "doctor: everything dumps need is fine"


def test_sim_option_runs_against_the_builtin_gateway(store):
    result = CliRunner().invoke(cli, ["doctor", "--sim", "--db", str(store)])
    doc = json.loads(result.stdout)
    assert (result.exit_code, doc["ok"], doc["gateway"]["simulated"]) == (0, True, True)
    assert by_name(doc)["managedAccounts"][1] == ["DU1234567", "DU7654321"]
