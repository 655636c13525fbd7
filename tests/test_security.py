"""Security: nothing from the environment but the rail flags and connection settings reaches the store, the store
is readable by its owner only, and `ibg-audit browse` listens on 127.0.0.1 only unless told otherwise."""

import os
import re
import signal
import sqlite3
import stat
import subprocess
import urllib.request
from pathlib import Path

import pytest
from audit_helpers import IBG_AUDIT, PROCESS_LIMIT_S, ibg_audit, query
from sim_fixtures import FIXED_NOW

from ibg_audit.sim import start_in_thread

SECRET = "s3cr3t-7f1c2a9e-never-record-me"
SECRET_ENV = {
    "IBKR_PASSWORD": SECRET,
    "IBKR_API_TOKEN": SECRET + "-token",
    "TWS_PASSWORD": SECRET + "-tws",
    "AWS_SECRET_ACCESS_KEY": SECRET + "-aws",
    "ALLOW_ORDERS": "1",
    "IBKR_PAPER": "1",
}
ORDER = ["--asset", "STK", "--symbol", "AAPL", "--order", "LMT", "--limit", "0.01"]


def store_bytes(db: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(db.parent.glob(db.name + "*")))


def test_no_secret_from_the_environment_is_recorded(tmp_path):
    db = tmp_path / "store" / "audit.db"
    home = tmp_path / f"home-{SECRET}"
    home.mkdir()
    env = {**SECRET_ENV, "HOME": str(home), "IBG_AUDIT_DB": str(db)}
    with start_in_thread(now=FIXED_NOW) as gw:
        port = ["--port", str(gw.port), "--timeout", "5"]
        runs = [
            *[ibg_audit("dump", kind, *port, env=env) for kind in ("accounts", "positions", "orders", "executions")],
            ibg_audit("dump", "account", "--all", *port, env=env),
            ibg_audit("dump", "positions", "--diff", "--redact", *port, env=env),
            ibg_audit("smoke", *ORDER, "--whatif", *port, env=env),
            ibg_audit("smoke", *ORDER, "--auto-cancel", *port, env=env),  # a paper transmit: intents and events
            ibg_audit("smoke", *ORDER, *port, env={**env, "IBKR_PAPER": "0"}),  # blocked by a rail: exit 10
            ibg_audit("doctor", "--probe-readonly", *port, env=env),
            ibg_audit("snapshots", env=env),
            ibg_audit("show", "1", env=env),
            ibg_audit("diff", "last", "--kind", "positions", env=env),
            ibg_audit("orders-sent", env=env),
        ]
    failed_positions = ibg_audit("dump", "positions", "--port", "1", "--timeout", "1", env=env)
    assert [r.returncode for r in runs] + [failed_positions.returncode] == [0] * 8 + [10] + [0] * 5 + [3]
    data = store_bytes(db)
    assert query(db, "SELECT count(*) AS n FROM snapshots")[0]["n"] == 10
    assert query(db, "SELECT count(*) AS n FROM order_intents")[0]["n"] == 1
    for value in SECRET_ENV.values():
        if value != "1":
            assert value.encode() not in data
    assert SECRET.encode() not in data
    for name in ("IBKR_PASSWORD", "IBKR_API_TOKEN", "TWS_PASSWORD", "AWS_SECRET_ACCESS_KEY", "HOME", "PATH"):
        assert name.encode() not in data, name
    # the rail flags are recorded, as the audit needs them
    assert b"ALLOW_ORDERS" in data and b"IBKR_PAPER" in data


def test_store_is_created_owner_only_whatever_the_umask(tmp_path):
    db = tmp_path / "audit.db"
    proc = subprocess.run(
        ["sh", "-c", 'umask 000 && exec "$0" "$@"', IBG_AUDIT, "dump", "accounts", "--sim", "--db", str(db)],
        capture_output=True, text=True, timeout=PROCESS_LIMIT_S,
    )
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    # SQLite gives the WAL and shared-memory files the database file's mode
    reader = sqlite3.connect(db)
    try:
        reader.execute("SELECT count(*) FROM snapshots").fetchone()
        side_files = [db.parent / (db.name + suffix) for suffix in ("-wal", "-shm")]
        assert [stat.S_IMODE(p.stat().st_mode) for p in side_files] == [0o600, 0o600]
    finally:
        reader.close()


def listening_addresses(port: int) -> set[str]:
    """Local addresses of the TCP sockets listening on `port`, from /proc/net/tcp and tcp6 (no network traffic)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, local_port = local.split(":")
            if state == "0A" and int(local_port, 16) == port:
                found.add(address)
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads the Linux socket table")
def test_browse_listens_on_loopback_only_by_default(tmp_path):
    db = tmp_path / "audit.db"
    assert ibg_audit("dump", "accounts", "--sim", "--db", db).returncode == 0
    proc = subprocess.Popen([IBG_AUDIT, "browse", "--port", "0", "--db", str(db)], stderr=subprocess.PIPE, text=True)
    try:
        banner = proc.stderr.readline()
        match = re.search(r"read-only at http://127\.0\.0\.1:(\d+)/audit ", banner)
        assert match, banner
        port = int(match.group(1))
        assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1, nothing else (IPv4 or IPv6)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/audit/snapshots.json", timeout=10) as response:
            assert response.status == 200
    finally:
        os.kill(proc.pid, signal.SIGINT)
        proc.communicate(timeout=PROCESS_LIMIT_S)
