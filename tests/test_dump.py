"""`ibg-audit dump` / tools/ibg_dump end to end: the real CLI, a real socket, ib_async against the simulated
gateway (default scenario, clock fixed at FIXED_NOW so futures and option months are known)."""

import json
import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from ibg_audit.cli import cli
from sim_fixtures import fill

ROOT = Path(__file__).resolve().parent.parent

ES_POSITION = {
    "account": "DU1234567", "conId": 620202603, "symbol": "ES", "secType": "FUT",
    "lastTradeDateOrContractMonth": "20260320", "strike": 0, "right": "", "multiplier": "50", "exchange": "",
    "currency": "USD", "localSymbol": "ESH6", "tradingClass": "ES", "position": 2, "avgCost": 297013.065,
}
AAPL_CALL_POSITION = {
    "account": "DU1234567", "conId": 702605151, "symbol": "AAPL", "secType": "OPT",
    "lastTradeDateOrContractMonth": "20260515", "strike": 250, "right": "C", "multiplier": "100", "exchange": "",
    "currency": "USD", "localSymbol": "AAPL  260515C00250000", "tradingClass": "AAPL", "position": 10,
    "avgCost": 390.65,
}
MSFT_SALE = {
    "execId": "0000e0d5.000b4965.02.01", "time": "2026-03-10T10:19:30Z", "account": "DU1234567", "conId": 272093,
    "symbol": "MSFT", "secType": "STK", "localSymbol": "MSFT", "side": "SLD", "shares": 50, "price": 419.02,
    "orderId": 4, "permId": 1096850001, "clientId": 1, "exchange": "ISLAND", "cumQty": 50, "avgPrice": 419.02,
    "commission": 1, "commissionCurrency": "USD", "realizedPNL": 845.19,
}
KEY_TAGS = {
    "AvailableFunds", "BuyingPower", "ExcessLiquidity", "GrossPositionValue", "InitMarginReq", "MaintMarginReq",
    "NetLiquidation", "RealizedPnL", "TotalCashValue", "UnrealizedPnL",
}


def dump(sim, db, *args):
    result = CliRunner().invoke(
        cli, ["dump", *args, "--port", str(sim.port), "--db", str(db), "--timeout", "5"], catch_exceptions=False
    )
    return result, (json.loads(result.stdout) if result.stdout else None)


def test_positions_every_field_of_a_future_and_an_option(sim, db):
    result, doc = dump(sim, db, "positions")
    assert result.exit_code == 0
    assert [(p["account"], p["conId"]) for p in doc["data"]] == [
        ("DU1234567", 8314), ("DU1234567", 265598), ("DU1234567", 272093), ("DU1234567", 12087792),
        ("DU1234567", 620202603), ("DU1234567", 702605151), ("DU7654321", 265598), ("DU7654321", 272093),
    ]
    by_con_id = {(p["account"], p["conId"]): p for p in doc["data"]}
    assert by_con_id[("DU1234567", 620202603)] == ES_POSITION
    assert by_con_id[("DU1234567", 702605151)] == AAPL_CALL_POSITION


def test_envelope_and_exact_replay(sim, db):
    result, doc = dump(sim, db, "accounts")
    assert result.exit_code == 0
    assert list(doc) == [
        "kind", "args", "connected", "ok", "snapshot_id", "started_at", "recorded_at", "duration_ms", "gateway",
        "data", "error",
    ]
    assert (doc["kind"], doc["args"], doc["connected"], doc["ok"], doc["snapshot_id"], doc["error"]) == (
        "accounts", {}, True, True, 1, None,
    )
    assert doc["gateway"] == {
        "host": "127.0.0.1", "port": sim.port, "clientId": 9001, "serverVersion": 178,
        "accounts": ["DU1234567", "DU7654321"], "simulated": False,
    }
    assert doc["data"] == [{"account": "DU1234567", "paper": True}, {"account": "DU7654321", "paper": True}]
    shown = CliRunner().invoke(cli, ["show", "1", "--db", str(db)])
    assert shown.stdout == result.stdout


def test_account_key_figures_and_all(sim, db):
    result, doc = dump(sim, db, "account")
    assert result.exit_code == 0
    assert doc["args"] == {"all": False}
    assert {v["tag"] for v in doc["data"]} == KEY_TAGS
    net_liq = [v for v in doc["data"] if v["tag"] == "NetLiquidation" and v["account"] == "DU1234567"]
    assert net_liq == [
        {"account": "DU1234567", "tag": "NetLiquidation", "value": 997382.24, "currency": "USD", "modelCode": ""}
    ]
    result, everything = dump(sim, db, "account", "--all")
    assert everything["args"] == {"all": True}
    tags = {v["tag"] for v in everything["data"]}
    assert KEY_TAGS < tags and {"AccountType", "Cushion", "EquityWithLoanValue"} <= tags
    account_type = [v for v in everything["data"] if v["tag"] == "AccountType" and v["account"] == "DU1234567"]
    assert account_type == [
        {"account": "DU1234567", "tag": "AccountType", "value": "INDIVIDUAL", "currency": "", "modelCode": ""}
    ]


def test_executions_with_commission_and_since(sim, db):
    result, doc = dump(sim, db, "executions")
    assert result.exit_code == 0
    assert [e["execId"] for e in doc["data"]] == [
        "0000e0d5.000b4965.01.01", "0000e0d5.000b4965.02.01", "0000e0d5.000b4965.03.01", "0000e0d5.000b4965.04.01",
    ]
    assert doc["data"][1] == MSFT_SALE
    # 11:19:30+01:00 is 10:19:30Z: that execution is included, the one before it is not.
    result, since = dump(sim, db, "executions", "--since", "2026-03-10T11:19:30+01:00")
    assert since["args"] == {"since": "2026-03-10T10:19:30Z"}
    assert [e["execId"] for e in since["data"]] == [
        "0000e0d5.000b4965.02.01", "0000e0d5.000b4965.03.01", "0000e0d5.000b4965.04.01",
    ]


def test_orders_include_every_client_id(sim, db):
    result, doc = dump(sim, db, "orders")
    assert result.exit_code == 0
    assert [(o["clientId"], o["orderId"], o["permId"], o["symbol"], o["status"]) for o in doc["data"]] == [
        (7, 12, 1096850004, "AAPL", "Submitted"), (0, 0, 1096850005, "ES", "Submitted"),
    ]
    assert doc["data"][0] == {
        "orderId": 12, "permId": 1096850004, "clientId": 7, "account": "DU1234567", "conId": 265598,
        "symbol": "AAPL", "secType": "STK", "localSymbol": "AAPL", "action": "SELL", "totalQuantity": 100,
        "orderType": "LMT", "lmtPrice": 265, "auxPrice": 0, "tif": "GTC", "status": "Submitted", "filled": 0,
        "remaining": 100, "avgFillPrice": 0,
    }


def test_dump_connects_read_only_and_sends_no_order(sim, db):
    for kind in ("accounts", "positions", "orders", "account", "executions"):
        assert dump(sim, db, kind)[0].exit_code == 0
    sent = {e.msg_id for e in sim.transcript if e.direction == "in"}
    assert 3 not in sent and 4 not in sent  # placeOrder, cancelOrder
    assert sim.placed_orders(transmit_only=False) == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["executions", "--since", "yesterday"],
         "Error: --since must be an ISO-8601 time such as 2026-11-24T13:30:00Z, got 'yesterday'\n"),
        (["positions", "--all"], "Error: --all only applies to `dump account`\n"),
        (["positions", "--since", "2026-03-10T10:00:00Z"], "Error: --since only applies to `dump executions`\n"),
    ],
)
def test_bad_input_is_a_usage_error_and_records_nothing(sim, db, args, message):
    result, doc = dump(sim, db, *args)
    assert result.exit_code == 2
    assert result.stderr.endswith(message)
    assert doc is None
    assert not db.exists()
    assert [e for e in sim.transcript if e.direction == "in"] == []


def test_failure_is_json_and_recorded(db, unused_port):
    result = CliRunner().invoke(cli, ["dump", "positions", "--port", str(unused_port), "--db", str(db), "--timeout", "2"])
    assert result.exit_code == 3
    doc = json.loads(result.stdout)
    assert (doc["connected"], doc["ok"], doc["data"], doc["snapshot_id"]) == (False, False, [], 1)
    assert doc["error"]["type"] == "not_connected"
    assert doc["error"]["message"] == f"connection refused at 127.0.0.1:{unused_port}: nothing is listening on that port"
    assert "127.0.0.1 in Trusted IPs" in doc["error"]["hint"]
    listed = json.loads(CliRunner().invoke(cli, ["snapshots", "--db", str(db), "--format", "json"]).stdout)
    assert [(s["id"], s["kind"], s["ok"], s["connected"]) for s in listed] == [(1, "positions", False, False)]


def test_diff_flag_reports_a_fill_since_the_previous_snapshot(sim, db):
    result, first = dump(sim, db, "positions", "--diff")
    assert first["delta"] is None  # nothing to compare with yet
    fill(sim.port, "DU7654321", "BUY", "AAPL", 30, limit=300.0)
    result, second = dump(sim, db, "positions", "--diff")
    delta = second["delta"]
    assert delta["from"]["snapshot_id"] == first["snapshot_id"]
    assert delta["summary"] == {"added": 0, "removed": 0, "changed": 1, "unchanged": 7}
    change = delta["changed"][0]
    assert change["key"] == {"account": "DU7654321", "conId": 265598}
    assert [(c["field"], c["from"], c["to"]) for c in change["changes"]] == [
        # IB's avgCost includes the commission: (20 * 219.875 + 30 * 227.48 + 1.00) / 50
        ("avgCost", 219.875, 224.458), ("position", 20, 50),
    ]


def test_tools_wrapper_prints_pure_json(sim, tmp_path):
    env = {**os.environ, "IBG_AUDIT_DB": str(tmp_path / "tools.db"), "IBKR_PORT": str(sim.port)}
    proc = subprocess.run(
        [str(ROOT / "tools" / "ibg_dump"), "positions"], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert (doc["kind"], doc["ok"], doc["snapshot_id"], len(doc["data"])) == ("positions", True, 1, 8)
    assert doc["gateway"]["port"] == sim.port
    assert (tmp_path / "tools.db").exists()


def test_tools_wrapper_with_builtin_sim(tmp_path):
    env = {**os.environ, "IBG_AUDIT_DB": str(tmp_path / "tools.db")}
    proc = subprocess.run(
        [str(ROOT / "tools" / "ibg_dump.py"), "--sim", "accounts", "--no-record"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert (doc["ok"], doc["snapshot_id"], doc["gateway"]["simulated"]) == (True, None, True)
    assert doc["data"] == [{"account": "DU1234567", "paper": True}, {"account": "DU7654321", "paper": True}]
    assert not (tmp_path / "tools.db").exists()
