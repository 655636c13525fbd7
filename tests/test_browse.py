"""`ibg-audit browse`: Datasette over a store filled by the real CLI against the simulated gateway.

One store is built per module: dumps, a fill, a transmitted-and-cancelled paper order, a closed position and two
failed calls. Datasette is driven through its own test client (the very object the command serves), except for
the two tests that start the real command as a process.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote
from urllib.request import urlopen

import pytest
from click.testing import CliRunner
from markupsafe import escape

from audit_helpers import query
from sim_fixtures import FIXED_NOW, fill

from ibg_audit import browse
from ibg_audit.browse import build_datasette, exposure_warning, load_metadata
from ibg_audit.cli import cli
from ibg_audit.sim import parse_fault, start_in_thread

IBG_AUDIT = str(Path(sys.executable).parent / "ibg-audit")
WAIT_S = 20


@dataclass
class History:
    db: Path
    docs: dict  # name -> the JSON document the CLI printed


def invoke(*args, env=None):
    result = CliRunner().invoke(cli, [str(a) for a in args], env=env, catch_exceptions=False)
    return result, json.loads(result.stdout)


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> History:
    db = tmp_path_factory.mktemp("browse") / "audit.db"
    docs = {}
    with start_in_thread(now=FIXED_NOW) as gw:
        def dump(name, *args):
            result, docs[name] = invoke("dump", *args, "--port", gw.port, "--db", db, "--timeout", 5)
            assert result.exit_code == 0, result.output

        dump("accounts", "accounts")
        dump("positions1", "positions")
        dump("account1", "account")
        dump("orders", "orders")
        fill(gw.port, "DU1234567", "BUY", "AAPL", 100)
        dump("positions2", "positions")
        dump("account2", "account")
        dump("positions3", "positions")  # unchanged: not a change
        result, docs["smoke"] = invoke(
            "smoke", "--asset", "STK", "--symbol", "AAPL", "--order", "LMT", "--limit", "0.01", "--auto-cancel",
            "--port", gw.port, "--db", db, "--timeout", 5, env={"ALLOW_ORDERS": "1", "IBKR_PAPER": "1"},
        )
        assert result.exit_code == 0, result.output
        fill(gw.port, "DU7654321", "SELL", "MSFT", 80)  # closes that position
        dump("positions4", "positions")
        dump("executions", "executions")
        dump("account_all", "account", "--all")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    _, docs["refused"] = invoke("dump", "positions", "--port", closed_port, "--db", db, "--timeout", 2)
    with start_in_thread(now=FIXED_NOW, faults=[parse_fault("error:positions:322")]) as gw:
        _, docs["gateway_error"] = invoke("dump", "positions", "--port", gw.port, "--db", db, "--timeout", 5)
    return History(db, docs)


@pytest.fixture(scope="module")
def get(history):
    """GET through Datasette's test client, on one event loop for the module."""
    ds = build_datasette(history.db)
    loop = asyncio.new_event_loop()
    yield lambda path: loop.run_until_complete(ds.client.get(path))
    loop.close()


def rows_of(get, path: str) -> list[dict]:
    response = get(path + ("&" if "?" in path else "?") + "_shape=array&_size=max")
    assert response.status_code == 200, response.text
    return response.json()


def sid(history: History, name: str) -> int:
    return history.docs[name]["snapshot_id"]


def at(history: History, name: str) -> str:
    return history.docs[name]["recorded_at"]


def assert_renders(get, path: str, *texts: str) -> str:
    response = get(path)
    assert response.status_code == 200, path
    assert 'class="message-error"' not in response.text
    for text in texts:
        assert text in response.text, (path, text)
    return response.text


def served_names(db: Path) -> list[str]:
    return [r["name"] for r in query(db, "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
                                         "AND name NOT LIKE 'sqlite_%' ORDER BY name")]


def columns_of(db: Path, name: str) -> list[dict]:
    return query(db, f"SELECT name, pk FROM pragma_table_info('{name}')")


def by_content(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True))


def test_the_store_holds_what_the_module_recorded(history):
    # The expectations below name snapshots by what was recorded; this pins the order they were recorded in.
    assert [(sid(history, n), history.docs[n]["ok"]) for n in history.docs] == [
        (1, True), (2, True), (3, True), (4, True), (5, True), (6, True), (7, True), (8, True), (9, True),
        (10, True), (11, True), (12, False), (13, False),
    ]


def test_every_table_and_view_is_served_with_exactly_its_rows(history, get):
    descriptions = {name: meta["description"] for name, meta in load_metadata()["databases"]["audit"]["tables"].items()}
    names = served_names(history.db)
    assert names == [
        "_sqlite_migrations", "account_values", "accounts", "executions", "failed_calls", "latest_positions",
        "net_liquidation_history", "order_events", "order_intents", "orders", "orders_sent", "payloads",
        "position_history", "positions", "smoke_calls", "snapshot_changes", "snapshot_items_count", "snapshots",
    ]
    for name in names:
        is_table = query(history.db, "SELECT type FROM sqlite_master WHERE name = ?", [name])[0]["type"] == "table"
        # Datasette adds rowid to a table that has no primary key of its own.
        with_rowid = is_table and not any(c["pk"] for c in columns_of(history.db, name))
        expected = query(history.db, f"SELECT {'rowid, ' if with_rowid else ''}* FROM [{name}]")
        served = rows_of(get, f"/audit/{name}.json")
        assert by_content(served) == by_content(json.loads(json.dumps(expected))), name
        assert_renders(get, f"/audit/{name}", str(escape(descriptions[name])))


def test_every_table_view_and_column_is_described(history):
    tables = load_metadata()["databases"]["audit"]["tables"]
    assert sorted(tables) == served_names(history.db)
    for name, meta in tables.items():
        assert meta["description"].strip(), name
        assert list(meta["columns"]) == [c["name"] for c in columns_of(history.db, name)], name
        assert all(text.strip() for text in meta["columns"].values()), name


def test_table_pages_show_descriptions_sorted_with_facets(history, get):
    page = assert_renders(get, "/audit/snapshots", "One row per dump or smoke call",
                          "How long the call took, in milliseconds.")
    assert "Snapshot id, as printed in the JSON" in page
    table = get("/audit/snapshots.json").json()
    assert [row[0] for row in table["rows"]] == list(range(13, 0, -1))  # newest first
    facets = {name: {r["value"]: r["count"] for r in facet["results"]} for name, facet in table["facet_results"].items()}
    assert facets == {
        "kind": {"positions": 6, "account": 3, "accounts": 1, "orders": 1, "smoke": 1, "executions": 1},
        "ok": {1: 11, 0: 2},
        "error_code": {322: 1},
    }
    facets = get("/audit/positions.json").json()["facet_results"]
    assert sorted(facets) == ["account", "secType", "symbol"]


def test_a_snapshot_links_to_its_payload_and_the_payload_to_its_items(history, get):
    (row,) = rows_of(get, f"/audit/snapshots.json?_labels=on&id={sid(history, 'positions2')}")
    payload_hash = row["payload_hash"]["value"]
    assert row["payload_hash"] == {"value": payload_hash, "label": "positions"}
    payload = get(f"/audit/payloads/{payload_hash}.json?_extras=foreign_key_tables").json()
    links = {t["other_table"]: t["count"] for t in payload["foreign_key_tables"]}
    # positions3 recorded the same data again: one payload, two snapshots.
    assert links == {"snapshots": 2, "accounts": 0, "positions": 8, "orders": 0, "account_values": 0,
                     "executions": 0}
    assert_renders(get, f"/audit/payloads/{payload_hash}", "Links from other tables")
    items = rows_of(get, f"/audit/positions.json?payload_hash={payload_hash}&account=DU1234567&symbol=AAPL&secType=STK")
    assert [(i["position"], i["avgCost"]) for i in items] == [(500.0, 197.03504)]


QUERY_TITLES = {
    "latest_positions_per_account": "Latest positions per account",
    "position_history_for_symbol": "Position history for a symbol",
    "net_liquidation_over_time": "NetLiquidation over time per account",
    "transmitted_paper_orders": "Transmitted paper orders with cancel status",
    "failed_calls_with_error_codes": "Failed calls with error codes",
    "snapshots_that_changed": "Snapshots that changed something",
}


def test_canned_queries_are_listed_and_render(get):
    assert set(load_metadata()["databases"]["audit"]["queries"]) == set(QUERY_TITLES)
    assert_renders(get, "/audit", *QUERY_TITLES.values(), '<a href="/-/dashboards/ibg-audit">charts</a>')
    for name, title in QUERY_TITLES.items():
        assert_renders(get, f"/audit/{name}?symbol=MSFT", title)


def test_latest_positions_per_account(history, get):
    def position(account, symbol, sec_type, local, qty, cost, con_id):
        return {"account": account, "symbol": symbol, "secType": sec_type, "localSymbol": local, "position": qty,
                "avgCost": cost, "currency": "USD", "conId": con_id, "snapshot_id": sid(history, "positions4"),
                "recorded_at": at(history, "positions4")}

    assert rows_of(get, "/audit/latest_positions_per_account.json") == [
        position("DU1234567", "AAPL", "OPT", "AAPL  260515C00250000", 10.0, 390.65, 702605151),
        position("DU1234567", "AAPL", "STK", "AAPL", 500.0, 197.03504, 265598),  # 400 + the 100 bought
        position("DU1234567", "ES", "FUT", "ESH6", 2.0, 297013.065, 620202603),
        position("DU1234567", "EUR", "CASH", "EUR.USD", 25000.0, 1.07953, 12087792),
        position("DU1234567", "IBM", "STK", "IBM", -100.0, 241.3036, 8314),
        position("DU1234567", "MSFT", "STK", "MSFT", 150.0, 402.1047, 272093),
        position("DU7654321", "AAPL", "STK", "AAPL", 20.0, 219.875, 265598),  # its MSFT was sold: gone
    ]


def test_position_history_for_a_symbol_shows_a_closed_position_as_zero(history, get):
    def point(name, account, qty, cost):
        return {"snapshot_id": sid(history, name), "recorded_at": at(history, name), "account": account,
                "localSymbol": "MSFT", "secType": "STK", "position": qty, "avgCost": cost, "conId": 272093}

    snapshots = ["positions1", "positions2", "positions3", "positions4"]
    assert rows_of(get, "/audit/position_history_for_symbol.json?symbol=%20msft") == [
        *(point(n, "DU1234567", 150.0, 402.1047) for n in snapshots),
        *(point(n, "DU7654321", 80.0, 405.6018) for n in snapshots[:3]),
        point("positions4", "DU7654321", 0.0, None),
    ]
    assert rows_of(get, "/audit/position_history_for_symbol.json?symbol=NOPE") == []


def test_net_liquidation_over_time(history, get):
    def point(name, account, value):
        return {"account": account, "recorded_at": at(history, name), "net_liquidation": value, "currency": "USD",
                "snapshot_id": sid(history, name)}

    # Each fill costs its commission (USD 1.00); the rest is cash turned into stock at the market price.
    assert rows_of(get, "/audit/net_liquidation_over_time.json") == [
        point("account1", "DU1234567", 997382.24),
        point("account2", "DU1234567", 997381.24),
        point("account_all", "DU1234567", 997381.24),
        point("account1", "DU7654321", 994310.22),
        point("account2", "DU7654321", 994310.22),
        point("account_all", "DU7654321", 994309.22),
    ]


def test_transmitted_paper_orders_with_cancel_status(history, get):
    smoke = history.docs["smoke"]
    (row,) = rows_of(get, "/audit/transmitted_paper_orders.json")
    assert smoke["started_at"] <= row.pop("created_at") <= smoke["recorded_at"]
    assert row == {
        "intent_id": 1, "account": None, "symbol": "AAPL", "localSymbol": "AAPL", "action": "BUY",
        "totalQuantity": 1.0, "orderType": "LMT", "lmtPrice": 0.01, "orderId": smoke["orderId"],
        "permId": smoke["permId"], "latest_event": "cancelled", "latest_status": "Cancelled",
        "cancel_status": "confirmed", "auto_cancel": 1, "simulated": 0, "snapshot_id": sid(history, "smoke"),
    }
    assert (smoke["orderId"], smoke["permId"]) == (10, 1096850008)


def test_failed_calls_with_error_codes(history, get):
    refused_port = history.docs["refused"]["gateway"]["port"]
    assert rows_of(get, "/audit/failed_calls_with_error_codes.json") == [
        {"snapshot_id": 13, "recorded_at": at(history, "gateway_error"), "kind": "positions",
         "error_type": "gateway_error", "error_code": 322,
         "error_message": "positions: IB error 322: Server error when processing an API client request.",
         "host": "127.0.0.1", "port": history.docs["gateway_error"]["gateway"]["port"], "client_id": 9001},
        {"snapshot_id": 12, "recorded_at": at(history, "refused"), "kind": "positions",
         "error_type": "not_connected", "error_code": None,
         "error_message": f"connection refused at 127.0.0.1:{refused_port}: nothing is listening on that port",
         "host": "127.0.0.1", "port": refused_port, "client_id": 9001},
    ]


def test_snapshots_that_changed_something(history, get):
    def change(name, kind, args, previous, items, previous_items):
        previous_id = sid(history, previous) if previous else None
        return {"snapshot_id": sid(history, name), "recorded_at": at(history, name), "kind": kind, "args": args,
                "previous_snapshot_id": previous_id, "item_count": items, "previous_item_count": previous_items,
                "diff_command": f"ibg-audit diff {previous_id} {sid(history, name)}" if previous else None}

    # positions3 repeated positions2 and the smoke call is an action: neither is listed.
    assert rows_of(get, "/audit/snapshots_that_changed.json") == [
        change("account_all", "account", '{"all":true}', None, 106, None),
        change("executions", "executions", '{"since":null}', None, 6, None),
        change("positions4", "positions", "{}", "positions3", 7, 8),
        change("account2", "account", '{"all":false}', "account1", 26, 26),
        change("positions2", "positions", "{}", "positions1", 8, 8),
        change("orders", "orders", "{}", None, 2, None),
        change("account1", "account", '{"all":false}', None, 26, None),
        change("positions1", "positions", "{}", None, 8, None),
        change("accounts", "accounts", "{}", None, 2, None),
    ]


def test_dashboard_charts_query_the_store(history, get):
    page = assert_renders(get, "/-/dashboards/ibg-audit?account=DU7654321&symbol=msft", "ibg-audit charts",
                          "NetLiquidation over time", "Positions over time")
    charts = {slug: json.loads(spec) for slug, spec in re.findall(r"renderChart\('([^']+)', (\{.*?\}), '", page)}
    assert sorted(charts) == ["net-liquidation", "position"]
    assert {c["library"] for c in charts.values()} == {"vega-lite"}

    def chart_rows(slug):  # what the page's script fetches
        return rows_of(get, f"/audit.json?sql={quote(charts[slug]['query'])}&account=DU7654321&symbol=msft")

    assert chart_rows("net-liquidation") == [
        {"recorded_at": at(history, n), "account": "DU7654321", "value": v}
        for n, v in [("account1", 994310.22), ("account2", 994310.22), ("account_all", 994309.22)]
    ]
    assert chart_rows("position") == [
        {"recorded_at": at(history, n), "contract": "DU7654321 MSFT", "position": q}
        for n, q in [("positions1", 80.0), ("positions2", 80.0), ("positions3", 80.0), ("positions4", 0.0)]
    ]


def test_a_write_through_datasette_is_refused_and_the_store_is_unchanged(history, tmp_path):
    db = tmp_path / "audit.db"
    db.write_bytes(history.db.read_bytes())
    before = db.read_bytes()
    metadata = load_metadata()
    metadata["databases"]["audit"]["queries"]["wipe"] = {"sql": "DELETE FROM payloads", "write": True}
    ds = build_datasette(db, metadata=metadata)

    async def attempts():
        wipe = await ds.client.post("/audit/wipe", json={}, headers={"Accept": "application/json"})
        sql = await ds.client.get("/audit.json?sql=" + quote("DELETE FROM payloads"))
        insert = await ds.client.post("/audit/payloads/-/insert", json={"row": {"hash": "x"}})
        create = await ds.client.post("/audit/-/create", json={"table": "x", "row": {"a": 1}})
        return wipe, sql, insert, create

    wipe, sql, insert, create = asyncio.run(attempts())
    assert wipe.json() == {"ok": False, "message": "the audit store is served read-only: browsing never changes it",
                           "redirect": None}
    assert (sql.status_code, sql.json()["error"]) == (400, "Statement must be a SELECT")
    assert (insert.status_code, create.status_code) == (404, 405)  # Datasette 0.65 has no write API
    assert db.read_bytes() == before
    # Reading a WAL database makes SQLite create its -wal/-shm companions; nothing was written to the WAL.
    assert Path(f"{db}-wal").read_bytes() == b""
    assert query(db, "SELECT count(*) AS n FROM payloads")[0]["n"] == 10


def test_snapshots_recorded_while_browsing_show_up(history, tmp_path):
    db = tmp_path / "audit.db"
    saved = tmp_path / "positions.json"
    saved.write_text(json.dumps(history.docs["positions1"]))
    assert invoke("dump", "positions", "--load", saved, "--db", db)[0].exit_code == 0
    ds = build_datasette(db)

    async def snapshot_ids():
        response = await ds.client.get("/audit/snapshots.json?_shape=array")
        return [row["id"] for row in response.json()]

    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(snapshot_ids()) == [1]
        assert invoke("dump", "positions", "--load", saved, "--db", db)[0].exit_code == 0
        assert loop.run_until_complete(snapshot_ids()) == [2, 1]
    finally:
        loop.close()


def first_line(stream, timeout: float) -> str:
    lines = []
    reader = threading.Thread(target=lambda: lines.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    assert lines, f"nothing on stderr within {timeout} s"
    return lines[0]


def test_browse_command_serves_until_ctrl_c(history):
    proc = subprocess.Popen([IBG_AUDIT, "browse", "--port", "0", "--db", str(history.db)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = first_line(proc.stderr, WAIT_S)
        match = re.fullmatch(rf"ibg-audit browse: {re.escape(str(history.db))} read-only at "
                             r"(http://127\.0\.0\.1:(\d+))/audit \(charts: \1/-/dashboards/ibg-audit\) - Ctrl-C to stop\n",
                             banner)
        assert match, banner
        with urlopen(match.group(1) + "/audit/failed_calls_with_error_codes.json?_shape=array",
                     timeout=WAIT_S) as response:
            assert [row["error_type"] for row in json.load(response)] == ["gateway_error", "not_connected"]
        with urlopen(match.group(1) + "/audit", timeout=WAIT_S) as response:
            assert "Latest positions per account" in response.read().decode()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=WAIT_S) == 0
        assert proc.stderr.read() == ""
        assert proc.stdout.read() == ""
    finally:
        proc.kill()
        proc.wait(timeout=WAIT_S)


def test_browse_on_a_port_in_use_fails_cleanly(history):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["browse", "--db", str(history.db), "--port", str(port)])
    assert result.exit_code == 2
    assert result.stderr == f"Error: cannot listen on 127.0.0.1:{port}: Address already in use\n"


def test_another_host_warns_and_open_opens_the_browser(history, monkeypatch):
    # Nothing is bound to another interface: the socket is a loopback one and the server never runs.
    served, opened = [], []
    loopback = socket.create_server(("127.0.0.1", 0))
    port = loopback.getsockname()[1]
    monkeypatch.setattr(browse, "listen", lambda host, port: loopback)
    monkeypatch.setattr(browse.uvicorn.Server, "run", lambda self, sockets: served.append(sockets))
    monkeypatch.setattr(browse.webbrowser, "open", opened.append)
    with loopback:
        result = CliRunner().invoke(cli, ["browse", "--db", str(history.db), "--host", "0.0.0.0", "--open"])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        f"Warning: serving on 0.0.0.0, not 127.0.0.1: anyone who can reach this machine on port {port} can read "
        "your accounts, positions and orders (there is no login)",
        f"ibg-audit browse: {history.db} read-only at http://0.0.0.0:{port}/audit "
        f"(charts: http://0.0.0.0:{port}/-/dashboards/ibg-audit) - Ctrl-C to stop",
    ]
    assert served == [[loopback]]
    assert opened == [f"http://0.0.0.0:{port}/audit"]


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_loopback_hosts_need_no_warning(host):
    assert exposure_warning(host, 8001) is None


def test_browse_module_does_not_import_ib_async():
    code = "import sys, ibg_audit.browse; print(sorted(m for m in sys.modules if m.split('.')[0] == 'ib_async'))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=WAIT_S,
                          check=True).stdout == "[]\n"
