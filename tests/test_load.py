"""Load and crashes: many dumps at once into one store, and processes killed with SIGKILL while writing.

The store must always pass `PRAGMA integrity_check`, lose no completed call, and hold every snapshot whole or
not at all (audit_helpers.consistency_problems checks payload, item count and normalized rows per snapshot).
Kill points are random but seeded, so a failure can be replayed.
"""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

from audit_helpers import IBG_AUDIT, PROCESS_LIMIT_S, consistency_problems, integrity, many_positions_scenario
from audit_helpers import snapshot_rows
from sim_fixtures import FIXED_NOW

from ibg_audit.sim import start_in_thread

KINDS = ("accounts", "positions", "orders", "account", "executions")
SEED = 20261124


def test_sixteen_processes_dump_at_once_into_one_new_store(db):
    with start_in_thread(now=FIXED_NOW) as gw:
        procs = [
            subprocess.Popen(
                [IBG_AUDIT, "dump", KINDS[i % len(KINDS)], "--port", str(gw.port), "--client-id", str(100 + i),
                 "--db", str(db), "--timeout", "30"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            for i in range(16)
        ]
        outputs = [p.communicate(timeout=PROCESS_LIMIT_S) for p in procs]
        served = sorted(int(e.fields[2]) for e in gw.messages("in", 71))
    assert [p.returncode for p in procs] == [0] * 16, [err for _, err in outputs]
    assert [err for _, err in outputs] == [""] * 16  # in particular no "database is locked"
    docs = [json.loads(out) for out, _ in outputs]
    assert [(d["ok"], d["gateway"]["clientId"]) for d in docs] == [(True, 100 + i) for i in range(16)]
    assert served == list(range(100, 116))
    rows = snapshot_rows(db)
    assert sorted(d["snapshot_id"] for d in docs) == [r["id"] for r in rows] == list(range(1, 17))
    by_id = {r["id"]: r for r in rows}
    assert all((by_id[d["snapshot_id"]]["kind"], by_id[d["snapshot_id"]]["ok"]) == (d["kind"], 1) for d in docs)
    assert integrity(db) == "ok"
    assert consistency_problems(db) == []


# A writer that records changing 1,000-position snapshots the way a dump does (Store.save_snapshot) as fast as
# it can, saying on stdout when each write starts and when it is done. It does not import the gateway modules,
# so it is ready quickly.
WRITER = textwrap.dedent("""
    import sys
    from ibg_audit.store import open_store

    store = open_store(sys.argv[1])
    print("ready", flush=True)
    n = 0
    while True:
        n += 1
        data = [{"account": "DU1234567", "conId": c, "symbol": f"S{c}", "secType": "STK",
                 "lastTradeDateOrContractMonth": "", "strike": 0, "right": "", "multiplier": "",
                 "exchange": "SMART", "currency": "USD", "localSymbol": f"S{c}", "tradingClass": "",
                 "position": n, "avgCost": 1.5} for c in range(1000)]
        envelope = {"kind": "positions", "args": {}, "connected": True, "ok": True, "snapshot_id": None,
                    "started_at": "2026-03-10T15:30:00.000Z", "recorded_at": "2026-03-10T15:30:00.100Z",
                    "duration_ms": 100, "gateway": {"host": "127.0.0.1", "port": 4002, "clientId": 1,
                    "serverVersion": 178, "accounts": ["DU1234567"], "simulated": True}, "error": None}
        print("begin", n, flush=True)
        store.save_snapshot(envelope, data)
        print("done", n, flush=True)
""")


def test_writer_killed_mid_write_leaves_whole_snapshots_only(db):
    rng = random.Random(SEED)
    kills, completed, killed_mid_write = 14, 0, 0
    for _ in range(kills):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        assert proc.stdout.readline() == "ready\n", proc.stderr.read()
        time.sleep(rng.uniform(0.0, 0.25))
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=PROCESS_LIMIT_S)
        assert proc.returncode == -signal.SIGKILL, err
        lines = out.split()
        done = out.count("done")
        killed_mid_write += lines[-2:-1] == ["begin"]
        recorded_before = completed
        completed += done
        rows = snapshot_rows(db)
        # every completed write is there; one more only if the kill came between COMMIT and "done"
        assert completed <= len(rows) <= completed + 1, (recorded_before, done, len(rows))
        completed = len(rows)
        assert integrity(db) == "ok"
        assert consistency_problems(db) == []
    assert killed_mid_write >= 1  # the random kills did hit writes in progress, not only the gaps between them


def kill_and_check(proc: subprocess.Popen, db) -> bool:
    """SIGKILL the process unless it has finished, then check the store; True when it had finished cleanly."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=PROCESS_LIMIT_S)
    assert proc.returncode in (0, -signal.SIGKILL), err
    if db.exists():
        assert integrity(db) == "ok"
        assert consistency_problems(db) == []
    return proc.returncode == 0


def test_dump_process_killed_at_random_points(db, tmp_path):
    """Real `ibg-audit dump --sim` processes (3,000 positions) killed anywhere: start-up, migration of the new
    store, the gateway conversation or the recording."""
    scenario = tmp_path / "big.json"
    scenario.write_text(json.dumps(many_positions_scenario(3000)))
    rng = random.Random(SEED)
    finished = 0
    for _ in range(6):
        proc = subprocess.Popen(
            [IBG_AUDIT, "dump", "positions", "--sim", "--scenario", str(scenario), "--db", str(db)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        time.sleep(rng.uniform(0.2, 1.2))
        finished += kill_and_check(proc, db)
    rows = snapshot_rows(db) if db.exists() else []
    assert finished <= len(rows) <= 6
    assert all(r["ok"] for r in rows)
    # the store is still usable by the next run
    final = subprocess.run([IBG_AUDIT, "dump", "positions", "--sim", "--scenario", str(scenario), "--db", str(db)],
                           capture_output=True, text=True, timeout=PROCESS_LIMIT_S)
    assert final.returncode == 0, final.stderr
    assert json.loads(final.stdout)["snapshot_id"] == snapshot_rows(db)[-1]["id"]
    assert consistency_problems(db) == []


def test_smoke_process_killed_at_random_points(db):
    """Paper-transmit smoke processes (--auto-cancel) killed anywhere: each smoke snapshot is whole, and an order
    whose outcome was never recorded is listed by `orders-sent` without a latest event (visibly incomplete)."""
    rng = random.Random(SEED)
    env = {**os.environ, "ALLOW_ORDERS": "1", "IBKR_PAPER": "1"}
    finished = 0
    with start_in_thread(now=FIXED_NOW) as gw:
        for _ in range(10):
            proc = subprocess.Popen(
                [IBG_AUDIT, "smoke", "--asset", "STK", "--symbol", "AAPL", "--order", "LMT", "--limit", "0.01",
                 "--auto-cancel", "--port", str(gw.port), "--db", str(db), "--timeout", "10"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
            )
            # kill during the gateway conversation or the recording: after its startApi reached the gateway
            # (the store is open by then), somewhere in the next 50 ms
            connected = len(gw.messages("in", 71)) + 1
            deadline = time.monotonic() + PROCESS_LIMIT_S
            while len(gw.messages("in", 71)) < connected and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.05))
            finished += kill_and_check(proc, db)
        transmitted = len(gw.placed_orders())
    listed = subprocess.run([IBG_AUDIT, "orders-sent", "--db", str(db), "--format", "json", "--limit", "100"],
                            capture_output=True, text=True, timeout=PROCESS_LIMIT_S)
    sent = json.loads(listed.stdout)
    # every order that reached the gateway was written ahead; an intent may be the only trace of a killed run
    assert transmitted <= len(sent) <= 10
    smoke_rows = [r for r in snapshot_rows(db) if r["kind"] == "smoke"]
    assert finished <= len(smoke_rows) <= 10
    without_outcome = [o for o in sent if o["latest_event"] is None]
    assert all(o["snapshot_id"] is None for o in without_outcome)
