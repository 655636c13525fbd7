"""The benchmark suite of issue 7: each target measured side by side with its baseline in the same run.

    .venv/bin/python benchmarks/run.py [--repeat N] [--only NAME ...]

Prints one line per target (measured value, ratio, target, PASS/FAIL) and exits 1 when a target fails.
Timings are medians of --repeat runs (alternating with the baseline, so both see the same machine load).
Everything runs on 127.0.0.1 and in a temporary directory; the simulated gateway is started here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
IBG_AUDIT = str(BIN / "ibg-audit")


@dataclass
class Result:
    name: str
    measured: str
    target: str
    passed: bool | None  # None: reported, no target

    def line(self) -> str:
        verdict = {True: "PASS", False: "FAIL", None: "info"}[self.passed]
        return f"{verdict:4}  {self.name:54} {self.measured:48} target: {self.target}"


def median_times(commands: dict[str, list[str]], repeat: int, warmup: int = 1) -> dict[str, float]:
    """Run each command `warmup + repeat` times, interleaved in a shuffled order each round (so none is always
    first or last); median wall time of the timed runs."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    rng = random.Random(7)
    for i in range(warmup + repeat):
        for name in rng.sample(list(commands), len(commands)):
            command = commands[name]
            start = time.perf_counter()
            subprocess.run(command, stdout=subprocess.DEVNULL, check=True, timeout=120)
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def timed(fn, repeat: int) -> float:
    results = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        results.append(time.perf_counter() - start)
    return statistics.median(results)


class SimProcess:
    """`ibg-audit sim --port 0` in a subprocess (its own interpreter, so it never shares a GIL with a client)."""

    def __init__(self, scenario: Path | None = None):
        args = [IBG_AUDIT, "sim", "--port", "0"] + (["--scenario", str(scenario)] if scenario else [])
        self.proc = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        banner = self.proc.stderr.readline()
        match = re.search(r"on 127\.0\.0\.1:(\d+) ", banner)
        if not match:
            self.proc.kill()
            raise RuntimeError(f"the simulated gateway did not start: {banner!r}")
        self.port = int(match.group(1))

    def __enter__(self) -> SimProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


# --- data ------------------------------------------------------------------------------------------------------


def position_items(n: int, *, version: int = 0) -> list[dict]:
    """n positions; version > 0 changes 1% of them, drops 0.5% and adds 0.5% (a busy day, mostly unchanged)."""
    items = []
    for i in range(n):
        if version and i % 200 == 0:
            continue  # closed
        position = 1 + i % 90 + (version if version and i % 100 == 1 else 0)
        items.append({"account": f"DU{1000000 + i % 7}", "conId": 100000 + i, "symbol": f"S{i:06d}",
                      "secType": "STK", "lastTradeDateOrContractMonth": "", "strike": 0, "right": "",
                      "multiplier": "", "exchange": "SMART", "currency": "USD", "localSymbol": f"S{i:06d}",
                      "tradingClass": "NMS", "position": position, "avgCost": 10.0 + i % 500})
    if version:
        items += [{**items[0], "conId": 900000 + i, "symbol": f"N{i:06d}", "localSymbol": f"N{i:06d}"}
                  for i in range(n // 200)]
    return sorted(items, key=lambda p: (p["account"], p["conId"]))


def execution_items(n: int) -> list[dict]:
    return [{"execId": f"0000e0d5.{i:08x}.01.01", "time": f"2026-03-10T{9 + i % 7:02d}:{i % 60:02d}:{i % 59:02d}Z",
             "account": "DU1234567", "conId": 265598, "symbol": "AAPL", "secType": "STK", "localSymbol": "AAPL",
             "side": "BOT" if i % 2 else "SLD", "shares": 100, "price": 227.48 + i % 100 / 100, "orderId": i,
             "permId": 1096850000 + i, "clientId": 1, "exchange": "ISLAND", "cumQty": 100,
             "avgPrice": 227.48 + i % 100 / 100, "commission": 1.0, "commissionCurrency": "USD",
             "realizedPNL": None} for i in range(n)]


def envelope(kind: str, n: int) -> dict:
    return {"kind": kind, "args": {}, "connected": True, "ok": True, "snapshot_id": None,
            "started_at": "2026-03-10T15:30:00.000Z", "recorded_at": f"2026-03-10T15:30:{n % 60:02d}.100Z",
            "duration_ms": 100, "gateway": {"host": "127.0.0.1", "port": 4002, "clientId": 9001,
                                            "serverVersion": 178, "accounts": ["DU1234567"], "simulated": True},
            "error": None}


def positions_scenario(n: int) -> dict:
    contracts = [{"symbol": f"S{i:05d}", "secType": "STK", "conId": 100000 + i, "exchange": "SMART",
                  "currency": "USD", "price": 10.0 + i % 500} for i in range(n)]
    return {"name": f"positions-{n}", "accounts": [{"id": "DU1234567", "currency": "USD", "cash": 1000000.0}],
            "contracts": contracts,
            "positions": [{"account": "DU1234567", "contract": c["symbol"], "position": 1 + i % 90,
                           "avgPrice": c["price"]} for i, c in enumerate(contracts)]}


# --- benchmarks -------------------------------------------------------------------------------------------------


def bench_dump(tmp: Path, repeat: int) -> list[Result]:
    """tools/ibg_dump positions end to end (wrapper, start-up, gateway, recording) vs the bare ib_async script."""
    with SimProcess() as sim:
        times = median_times({
            "bare": [sys.executable, str(ROOT / "benchmarks" / "bare_positions.py"), str(sim.port), "11"],
            "ibg_dump": [str(ROOT / "tools" / "ibg_dump"), "positions", "--port", str(sim.port), "--client-id",
                         "12", "--db", str(tmp / "dump.db")],
        }, 2 * repeat)  # the closest target, on a difference of ~50 ms: more runs
    ratio = times["ibg_dump"] / times["bare"]
    return [Result("tools/ibg_dump positions vs bare ib_async",
                   f"{ratio:.2f}x ({times['ibg_dump']:.3f} s vs {times['bare']:.3f} s)", "<= 1.3x", ratio <= 1.3)]


def bench_cold_start(tmp: Path, repeat: int) -> list[Result]:
    """Store-only commands (they must not import ib_async) vs `sqlite-utils tables` on the same store."""
    from ibg_audit.store import open_store

    db = tmp / "cold.db"
    with open_store(db) as store:
        for version in (0, 1):
            store.save_snapshot(envelope("positions", version), position_items(200, version=version))
    commands = {
        "sqlite-utils tables": [str(BIN / "sqlite-utils"), "tables", str(db)],
        "diff last": [IBG_AUDIT, "diff", "last", "--db", str(db), "--format", "json"],
        "snapshots": [IBG_AUDIT, "snapshots", "--db", str(db), "--format", "json"],
        "show": [IBG_AUDIT, "show", "2", "--db", str(db)],
    }
    times = median_times(commands, repeat)
    base = times.pop("sqlite-utils tables")
    return [Result(f"cold start: ibg-audit {name}", f"{t / base:.2f}x ({t:.3f} s vs {base:.3f} s)",
                   "<= 1.5x sqlite-utils tables", t / base <= 1.5) for name, t in times.items()]


def bench_diff(tmp: Path, repeat: int) -> list[Result]:
    """Loading two recorded positions snapshots from the store and diffing them (history.diff_refs)."""
    from ibg_audit.history import diff_refs
    from ibg_audit.store import open_store

    measured = {}
    for n in (10_000, 100_000):
        with open_store(tmp / f"diff{n}.db") as store:
            for version in (0, 1):
                store.save_snapshot(envelope("positions", version), position_items(n, version=version))
            report = diff_refs(store, ["1", "2"])
            assert report["summary"]["changed"] == n // 100, report["summary"]
            measured[n] = timed(lambda store=store: diff_refs(store, ["1", "2"]), repeat if n == 10_000 else 3)
    ratio = measured[100_000] / measured[10_000]
    return [
        Result("diff of two 10,000-position snapshots", f"{measured[10_000]:.3f} s", "< 1 s",
               measured[10_000] < 1.0),
        Result("diff of two 100,000-position snapshots", f"{ratio:.1f}x the 10,000 time ({measured[100_000]:.2f} s)",
               "<= 12x", ratio <= 12),
    ]


def bench_record_executions(tmp: Path, repeat: int) -> list[Result]:
    """Recording 100,000 executions (JSON payload, hash, normalized rows, one transaction) vs a plain insert_all."""
    import sqlite_utils

    from ibg_audit.store import open_store

    items = execution_items(100_000)
    runs = {"store": [], "insert_all": []}
    for i in range(min(repeat, 3)):
        plain = sqlite_utils.Database(tmp / f"plain{i}.db")
        start = time.perf_counter()
        plain["executions"].insert_all(items)
        runs["insert_all"].append(time.perf_counter() - start)
        plain.close()
        with open_store(tmp / f"exec{i}.db") as store:
            start = time.perf_counter()
            store.save_snapshot(envelope("executions", i), items)
            runs["store"].append(time.perf_counter() - start)
    ours, base = (statistics.median(runs[k]) for k in ("store", "insert_all"))
    return [Result("record 100,000 executions vs sqlite-utils insert_all",
                   f"{ours / base:.2f}x ({ours:.2f} s vs {base:.2f} s)", "<= 1.5x", ours / base <= 1.5)]


def bench_store_growth(tmp: Path, repeat: int) -> list[Result]:
    """The same unchanged 1,000-position snapshot recorded 1,000 times: bytes added per repeat."""
    from ibg_audit.store import open_store

    db = tmp / "growth.db"
    items = position_items(1000)

    def size(store) -> int:
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return db.stat().st_size

    with open_store(db) as store:
        store.save_snapshot(envelope("positions", 0), items)
        first = size(store)
        for i in range(1, 1001):
            store.save_snapshot(envelope("positions", i), items)
        per_repeat = (size(store) - first) / 1000
    return [Result("store growth per unchanged 1,000-position repeat", f"{per_repeat:.0f} bytes", "< 1024 bytes",
                   per_repeat < 1024)]


def bench_sim_throughput(tmp: Path, repeat: int) -> list[Result]:
    """Messages per second the simulated gateway sends one ib_async client (20,000 positions, then positionEnd)."""
    from ib_async import IB

    n = 20_000
    scenario = tmp / "throughput.json"
    scenario.write_text(json.dumps(positions_scenario(n)))

    async def one_request(port: int) -> float:
        ib = IB()
        await ib.client.connectAsync("127.0.0.1", port, 31, timeout=30)
        try:
            start = time.perf_counter()
            positions = await asyncio.wait_for(ib.reqPositionsAsync(), 60)
            elapsed = time.perf_counter() - start
            assert len(positions) == n, len(positions)
            return elapsed
        finally:
            ib.disconnect()

    with SimProcess(scenario) as sim:
        elapsed = statistics.median(asyncio.run(one_request(sim.port)) for _ in range(min(repeat, 3)))
        raw = statistics.median(raw_positions(sim.port, n) for _ in range(min(repeat, 3)))
    return [
        Result("simulated gateway throughput to one ib_async client",
               f"{(n + 1) / elapsed:,.0f} messages/s ({n + 1:,} in {elapsed:.2f} s)", "(reported)", None),
        Result("... the same to a client that only reads frames",
               f"{(n + 1) / raw:,.0f} messages/s ({n + 1:,} in {raw:.2f} s)", "(reported: the sim's own rate)", None),
    ]


def raw_positions(port: int, n: int) -> float:
    """Seconds from reqPositions to positionEnd for a client that splits frames and does not decode them."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        reader = sock.makefile("rb")

        def send(*fields) -> None:
            payload = "".join(f"{f}\0" for f in fields).encode()
            sock.sendall(struct.pack(">I", len(payload)) + payload)

        def frame() -> bytes:
            (length,) = struct.unpack(">I", reader.read(4))
            return reader.read(length)

        version = b"v157..178"
        sock.sendall(b"API\0" + struct.pack(">I", len(version)) + version)
        frame()  # server version and connection time
        send(71, 2, 32, "")
        while b"\x002158\x00" not in frame():  # up to the last farm notice of the start-up burst
            pass
        start = time.perf_counter()
        send(61, 1)
        count = 0
        while not frame().startswith(b"62\0"):
            count += 1
        elapsed = time.perf_counter() - start
    assert count == n, count
    return elapsed


BENCHMARKS = {
    "dump": bench_dump,
    "cold-start": bench_cold_start,
    "diff": bench_diff,
    "record": bench_record_executions,
    "growth": bench_store_growth,
    "sim": bench_sim_throughput,
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9, help="timed runs per measurement (median), default 9")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run only these benchmarks")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="ibg-audit-bench-") as tmp:
        # Each benchmark names its own store. Subprocesses cache their bytecode (outside the source tree), as
        # Python does on a normal machine, even where PYTHONDONTWRITEBYTECODE is set: without a cache the
        # project's own modules, installed editable, would be compiled on every run while ib_async's are
        # precompiled by pip, and start-up comparisons would measure that instead.
        os.environ.pop("IBG_AUDIT_DB", None)
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        os.environ["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        for name in args.only or BENCHMARKS:
            for result in BENCHMARKS[name](Path(tmp), args.repeat):
                print(result.line(), flush=True)
                results.append(result)
    failed = [r.name for r in results if r.passed is False]
    summary = f"{len(results) - len(failed)} of {len(results)} passed"
    print(f"\n{summary}; FAILED: {', '.join(failed)}" if failed else f"\n{summary}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
