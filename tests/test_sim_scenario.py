"""Scenarios, faults, generated contracts and the margin/fill model of the simulated gateway."""

from __future__ import annotations

import ast
import copy
import datetime as dt
import json
import os
import select
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

import ibg_audit.sim
from ibg_audit.sim import FaultSpecError, ScenarioError, SimulatedGateway, load_scenario, parse_fault
from ibg_audit.sim.contracts import quarterly_expiries, session_hours, third_friday
from ibg_audit.sim.faults import Fault
from ibg_audit.sim.scenario import default_scenario
from ibg_audit.sim.state import Order, commission_for, position_margin
from sim_fixtures import FIXED_NOW, RawClient

BASE = {
    "accounts": [{"id": "DU1", "cash": 100000.0}],
    "contracts": [
        {"symbol": "XYZ", "secType": "STK", "conId": 1, "price": 50.0, "primaryExchange": "NYSE"},
        {"symbol": "FX", "secType": "FUT", "conIdBase": 1000, "multiplier": "10", "price": 200.0,
         "margin": {"initial": 1000, "maintenance": 900}, "expiries": {"ahead": 1, "expired": 0}},
        {"symbol": "EUR", "secType": "CASH", "conId": 3, "currency": "USD", "exchange": "IDEALPRO", "price": 1.1},
    ],
}


def scenario(**changes) -> dict:
    data = copy.deepcopy(BASE)
    data.update(changes)
    return data


# ---- files and shape ----

def test_default_and_live_scenarios_load():
    assert [a["id"] for a in default_scenario().accounts] == ["DU1234567", "DU7654321"]
    live = SimulatedGateway("ibg_audit/sim/live_scenario.json", now=FIXED_NOW)
    assert [(a.id, a.paper) for a in live.state.accounts.values()] == [("U7654321", False)]


def test_load_scenario_reports_missing_file_and_bad_json(tmp_path):
    with pytest.raises(ScenarioError, match=r"^scenario file not found: .*nope\.json$"):
        load_scenario(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"accounts": [\n  {"id": "DU1",}\n]}')
    with pytest.raises(ScenarioError, match=r"bad\.json: invalid JSON at line 2 column 16: "):
        load_scenario(bad)


@pytest.mark.parametrize("data, message", [
    ([], "a scenario must be a JSON object"),
    ({"contracts": []}, "'accounts' must be a list"),
    (scenario(accounts=[]), "'accounts' must name at least one account"),
    (scenario(accounts=[{"id": "DU-1"}]), r"accounts\[0\]\.id must be an account id"),
    (scenario(accounts=[{"id": "DU1"}, {"id": "DU1"}]), "account ids must be unique"),
    (scenario(contracts=[{"symbol": "X", "secType": "BOND"}]), r"contracts\[0\]\.secType must be one of"),
    (scenario(contracts=[{"secType": "STK"}]), r"contracts\[0\]\.symbol is required"),
    (scenario(contracts=[{"symbol": "X", "secType": "STK"}, {"symbol": "X", "secType": "OPT"}]),
     "duplicate key 'X'"),
    (scenario(positions=[{"account": "DU9", "contract": "XYZ"}]), r"positions\[0\]\.account must be one of"),
    (scenario(openOrders=[{"account": "DU1"}]), r"openOrders\[0\]\.contract must name a contract key"),
    (scenario(faults=[3]), "'faults' must be a list of fault specs"),
    (scenario(nextValidId=0), "'nextValidId' must be a positive integer"),
    (scenario(readonly="yes"), "'readonly' must be true or false"),
])
def test_wrong_shapes_get_one_line_messages(tmp_path, data, message):
    path = tmp_path / "s.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ScenarioError, match=message) as error:
        load_scenario(path)
    assert "\n" not in str(error.value) and str(error.value).startswith(str(path))


@pytest.mark.parametrize("changes, message", [
    ({"positions": [{"account": "DU1", "contract": "NOPE", "position": 1, "avgPrice": 1}]},
     r"positions\[0\]\.contract 'NOPE' is not a contract key"),
    ({"contracts": [{"symbol": "XYZ", "secType": "STK"}]}, r"contracts\[0\]: conId is required for STK"),
    ({"contracts": [{"symbol": "O", "secType": "OPT", "conIdBase": 1, "strike": 1, "right": "X",
                     "expiry": {"monthsAhead": 1}}]}, "right must be C or P"),
    ({"contracts": [{"symbol": "F", "secType": "FUT"}]}, "a FUT family needs conIdBase"),
    ({"contracts": [{"symbol": "S", "secType": "STK", "conId": 1, "tradingHours": "9-5"}]},
     "session hours must look like 0930-1600"),
    ({"contracts": [{"symbol": "S", "secType": "STK", "conId": "abc"}]},
     r"contracts\[0\]: invalid literal for int\(\)"),
    ({"timeZone": "Mars/Base"}, "unknown timeZone 'Mars/Base'"),
    ({"positions": [{"account": "DU1", "contract": "XYZ", "position": 1}]}, r"positions\[0\]: missing 'avgPrice'"),
    ({"positions": [{"account": "DU1", "contract": "XYZ", "position": "lots", "avgPrice": 1}]},
     r"positions\[0\]: a quantity is not a number"),
    ({"accounts": [{"id": "DU1", "cash": "plenty"}]}, r"accounts\[0\]: could not convert string to float"),
    ({"openOrders": [{"account": "DU1", "contract": "XYZ", "action": "HOLD"}]},
     r"openOrders\[0\]\.action must be one of BUY, SELL, SSHORT"),
    ({"executions": [{"account": "DU1", "contract": "XYZ"}]}, r"executions\[0\]: missing 'price'"),
    ({"executions": [{"account": "DU1", "contract": "XYZ", "price": 1, "dayFraction": 1.5}]},
     r"executions\[0\]\.dayFraction must be in \[0, 1\)"),
])
def test_scenario_content_errors_surface_on_loading(tmp_path, changes, message):
    path = tmp_path / "s.json"
    path.write_text(json.dumps(scenario(**changes)))
    with pytest.raises(ScenarioError, match=message):
        load_scenario(path)
    with pytest.raises(ScenarioError, match=message):
        SimulatedGateway(scenario(**changes), now=FIXED_NOW)


def test_fixed_now_may_be_naive_utc_or_any_zone():
    naive = SimulatedGateway(now=dt.datetime(2026, 3, 10, 15, 30))
    zoned = SimulatedGateway(now=FIXED_NOW.astimezone(dt.timezone(dt.timedelta(hours=-4))))
    assert naive.now() == zoned.now() == FIXED_NOW


def test_scenario_faults_and_readonly_apply():
    gw = SimulatedGateway(scenario(faults=["delay:5", "readonly"]), now=FIXED_NOW)
    assert [str(f) for f in gw.faults] == ["delay:5", "readonly"] and gw.readonly
    assert not SimulatedGateway(scenario(), now=FIXED_NOW).readonly
    assert SimulatedGateway(scenario(readonly=True), now=FIXED_NOW).readonly


# ---- faults ----

@pytest.mark.parametrize("spec, fault", [
    ("refuse", Fault("refuse")),
    ("no-handshake", Fault("no-handshake")),
    ("drop-after:7", Fault("drop-after", count=7)),
    ("delay:50", Fault("delay", delay_ms=50.0)),
    ("delay:2.5", Fault("delay", delay_ms=2.5)),
    ("error:contractDetails:200", Fault("error", request="contractDetails", code=200)),
    ("reject-orders", Fault("reject-orders")),
    ("reject-orders:No margin", Fault("reject-orders", reason="No margin")),
    ("pacing", Fault("pacing")),
    ("readonly", Fault("readonly")),
])
def test_parse_fault(spec, fault):
    assert parse_fault(spec) == fault
    assert str(parse_fault(spec)) == spec.split(":No")[0]


@pytest.mark.parametrize("spec, message", [
    ("explode", "expected one of refuse, no-handshake"),
    ("delay", "expected one of"),
    ("delay:soon", "MS must be a number"),
    ("drop-after:-1", "N must not be negative"),
    ("error:quotes:200", "unknown request 'quotes'; use one of placeOrder, cancelOrder"),
    ("error:positions:x", "CODE must be a number"),
    ("refuse:now", "expected one of"),
])
def test_bad_fault_specs(spec, message):
    with pytest.raises(FaultSpecError, match=message) as error:
        parse_fault(spec)
    assert isinstance(error.value, ValueError) and spec in str(error.value)


# ---- generated contracts ----

def test_third_friday_and_quarterly_expiries():
    assert third_friday(2026, 3) == dt.date(2026, 3, 20)
    assert third_friday(2026, 5) == dt.date(2026, 5, 15)
    on_expiry = quarterly_expiries(dt.date(2026, 3, 20), ahead=2, expired=1)
    assert on_expiry == [(dt.date(2025, 12, 19), -1), (dt.date(2026, 3, 20), 0), (dt.date(2026, 6, 19), 1)]
    day_after = quarterly_expiries(dt.date(2026, 3, 21), ahead=1, expired=1)
    assert day_after == [(dt.date(2026, 3, 20), -1), (dt.date(2026, 6, 19), 0)]
    year_end = quarterly_expiries(dt.date(2026, 12, 30), ahead=1, expired=0)
    assert year_end == [(dt.date(2027, 3, 19), 0)]


def test_session_hours_cover_a_week_with_weekend_closures():
    friday = dt.date(2026, 3, 13)
    assert session_hours("0930-1600", friday, days=4) == (
        "20260313:0930-20260313:1600;20260314:CLOSED;20260315:CLOSED;20260316:0930-20260316:1600")
    assert session_hours("1700-1600", friday, days=4) == (
        "20260312:1700-20260313:1600;20260314:CLOSED;20260315:1700-20260316:1600")
    assert session_hours("", friday) == ""


def test_future_family_keys_conids_and_prices():
    contracts = SimulatedGateway(now=FIXED_NOW).state.contracts
    assert [(k, c.conId, c.localSymbol, c.price, c.expired) for k, c in contracts.items() if c.symbol == "ES"] == [
        ("ES-1", 620202512, "ESZ5", 5932.75, True),
        ("ES", 620202603, "ESH6", 5975.25, False),
        ("ES+1", 620202606, "ESM6", 6017.75, False),
        ("ES+2", 620202609, "ESU6", 6060.25, False),
        ("ES+3", 620202612, "ESZ6", 6102.75, False),
    ]
    option = contracts["AAPL-C250"]
    assert (option.conId, option.lastTradeDate, option.localSymbol) == (
        702605151, "20260515", "AAPL  260515C00250000")


# ---- margin, commission, fills ----

def test_margin_model():
    contracts = SimulatedGateway(now=FIXED_NOW).state.contracts
    assert position_margin(contracts["AAPL"], Decimal(100), 200.0) == (5000.0, 5000.0)
    assert position_margin(contracts["AAPL"], Decimal(-100), 200.0) == (6000.0, 6000.0)
    assert position_margin(contracts["AAPL-C250"], Decimal(2), 5.0) == (0.0, 0.0)
    assert position_margin(contracts["AAPL-C250"], Decimal(-2), 5.0) == (11000.0, 11000.0)  # 1000 + 20% of 50000
    assert position_margin(contracts["ES"], Decimal(-3), 6000.0) == (72450.0, 65865.0)
    assert position_margin(contracts["EUR"], Decimal(10000), 1.1) == pytest.approx((330.0, 275.0))


def test_commission_model():
    contracts = SimulatedGateway(now=FIXED_NOW).state.contracts
    assert commission_for(contracts["AAPL"], Decimal(100), 227.48) == 1.0
    assert commission_for(contracts["AAPL"], Decimal(1000), 227.48) == 5.0
    assert commission_for(contracts["AAPL"], Decimal(1), 50.0) == 0.5  # capped at 1% of the value
    assert commission_for(contracts["AAPL-C250"], Decimal(10), 485.0) == 6.5
    assert commission_for(contracts["ES"], Decimal(2), 298762.5) == 4.5
    assert commission_for(contracts["EUR"], Decimal(25000), 1.0842) == 2.0


def market_order(state, key: str, action: str, qty: int) -> Order:
    return Order(order_id=1, client_id=1, perm_id=state.new_perm_id(), account="DU1", contract=state.contracts[key],
                 action=action, total_quantity=Decimal(qty), order_type="MKT")


def test_stock_fills_move_position_cash_and_realized_pnl():
    state = SimulatedGateway(scenario(), now=FIXED_NOW).state
    state.fill(market_order(state, "XYZ", "BUY", 100), FIXED_NOW)  # 100 x 50 + 1.00
    pos = state.positions[("DU1", 1)]
    assert (pos.position, pos.avg_cost, state.accounts["DU1"].cash) == (100, 50.01, 94999.0)
    execution = state.fill(market_order(state, "XYZ", "SELL", 150), FIXED_NOW)  # crosses to -50 short
    assert execution.realized_pnl == -2.0  # 100 x (50 - 50.01) - 1.00 commission
    assert (pos.position, pos.avg_cost) == (-50, 50.0)
    assert state.accounts["DU1"].cash == 94999.0 + 7500.0 - 1.0
    assert state.accounts["DU1"].realized_pnl == -2.0
    summary = state.summary("DU1")
    assert summary["NetLiquidation"] == pytest.approx(102498.0 - 2500.0)
    assert summary["InitMarginReq"] == pytest.approx(750.0)  # 30% of a 2500 short


def test_future_fills_move_cash_only_by_commission_and_realized_pnl():
    state = SimulatedGateway(scenario(), now=FIXED_NOW).state
    state.fill(market_order(state, "FX", "BUY", 2), FIXED_NOW)
    assert state.accounts["DU1"].cash == 100000.0 - 4.5
    state.contracts["FX"] = fx = state.contracts["FX"].__class__(**{**state.contracts["FX"].__dict__, "price": 210.0})
    pos = state.positions[("DU1", fx.conId)]
    pos.contract = fx
    order = market_order(state, "FX", "SELL", 2)
    execution = state.fill(order, FIXED_NOW)
    assert execution.realized_pnl == pytest.approx(2 * (2100 - 2002.25) - 4.5)
    assert state.accounts["DU1"].cash == pytest.approx(100000.0 - 4.5 + 191.0)
    assert pos.position == 0


def test_forex_position_is_the_currency_balance():
    state = SimulatedGateway(scenario(), now=FIXED_NOW).state
    state.fill(market_order(state, "EUR", "BUY", 10000), FIXED_NOW)
    ledger = state.currency_ledger("DU1")
    assert ledger["EUR"]["CashBalance"] == 10000
    assert ledger["USD"]["CashBalance"] == pytest.approx(100000.0 - 11000.0 - 2.0)
    assert ledger["BASE"]["CashBalance"] == pytest.approx(100000.0 - 2.0)


def test_what_if_fills_in_margins_without_changing_state():
    state = SimulatedGateway(scenario(), now=FIXED_NOW).state
    order = market_order(state, "XYZ", "BUY", 100)
    state.what_if(order)
    before, change, after = order.margins
    assert (before.initial, change.initial, after.initial) == (0.0, 1250.0, 1250.0)
    assert (before.equity_with_loan, change.equity_with_loan, after.equity_with_loan) == (100000.0, -1.0, 99999.0)
    assert state.positions == {} and state.executions == [] and state.accounts["DU1"].cash == 100000.0


# ---- the foreground server ----

def test_serve_forever_prints_one_banner_line_serves_and_stops_on_ctrl_c():
    code = "from ibg_audit.sim import serve_forever; serve_forever(port=0, faults=['delay:1'])"
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert select.select([proc.stderr], [], [], 10)[0], "no banner within 10 s"
        banner = proc.stderr.readline()
        assert banner.startswith("ibg-audit sim: simulated IB Gateway on 127.0.0.1:")
        assert "server version 178, scenario default, accounts DU1234567,DU7654321 faults=delay:1)" in banner
        port = int(banner.split("127.0.0.1:")[1].split(" ")[0])
        with RawClient(port) as client:
            assert client.start()[0] == ["15", "1", "DU1234567,DU7654321"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        assert proc.stderr.read() == ""
    finally:
        proc.kill()
        proc.wait(10)


def test_the_sim_imports_only_the_standard_library_and_itself():
    for path in Path(ibg_audit.sim.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [] if node.level else [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names or top == "__future__", f"{path.name} imports {name}"
