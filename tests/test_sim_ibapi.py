"""The official IB API Python client (ibapi-stable 10.50, advertising v100..226) against the simulated gateway.

It must negotiate down to 178, finish its handshake, and decode every message type the gateway sends without a
decoding error: its signature decoder logs "diff len fields and params" and drops a message with a wrong field
count, its hand-written decoders raise on a short message; both are caught here.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict

import pytest
from ibapi.client import EClient
from ibapi.contract import Contract
from ibapi.execution import ExecutionFilter
from ibapi.order import Order
from ibapi.order_cancel import OrderCancel
from ibapi.wrapper import EWrapper

from sim_fixtures import TIMEOUT

RECORDED = [
    "nextValidId", "managedAccounts", "currentTime", "position", "positionEnd", "updateAccountValue",
    "updatePortfolio", "updateAccountTime", "accountDownloadEnd", "accountSummary", "accountSummaryEnd",
    "accountUpdateMulti", "accountUpdateMultiEnd", "openOrder", "openOrderEnd", "orderStatus", "execDetails",
    "execDetailsEnd", "commissionAndFeesReport", "contractDetails", "contractDetailsEnd", "completedOrder",
    "completedOrdersEnd",
]


class Recorder(EWrapper, EClient):
    """Records every callback; `wait(name, n)` blocks (bounded) until `name` was called n times."""

    def __init__(self):
        EClient.__init__(self, self)
        self.calls: dict[str, list[tuple]] = defaultdict(list)
        self.errors: list[tuple[int, int, str]] = []
        self._changed = threading.Condition()

    def _record(self, name: str, args: tuple) -> None:
        with self._changed:
            self.calls[name].append(args)
            self._changed.notify_all()

    def error(self, reqId, errorTime, errorCode, errorString, advancedOrderRejectJson=""):
        self.errors.append((reqId, errorCode, errorString))
        self._record("error", (reqId, errorCode))

    def wait(self, name: str, count: int = 1) -> list[tuple]:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.calls[name]) >= count, TIMEOUT):
                seen = {k: len(v) for k, v in self.calls.items()}
                raise AssertionError(f"timed out waiting for {count} x {name}; callbacks so far: {seen}")
            return self.calls[name]


for _name in RECORDED:
    setattr(Recorder, _name, lambda self, *args, _n=_name: self._record(_n, args))


def stock(symbol: str) -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = symbol, "STK", "SMART", "USD"
    return c


def limit(action: str, qty: int, price: float, what_if: bool = False) -> Order:
    o = Order()
    o.action, o.totalQuantity, o.orderType, o.lmtPrice, o.whatIf = action, qty, "LMT", price, what_if
    return o


@pytest.fixture
def app(sim, caplog):
    caplog.set_level(logging.WARNING, logger="ibapi")
    client = Recorder()
    # ibapi's connect blocks until the handshake reply; run it aside so a broken gateway cannot hang the suite
    connecting = threading.Thread(target=client.connect, args=("127.0.0.1", sim.port, 0), daemon=True)
    connecting.start()
    connecting.join(TIMEOUT)
    assert not connecting.is_alive() and client.isConnected()
    reader = threading.Thread(target=client.run, daemon=True)
    reader.start()
    client.wait("managedAccounts")
    yield client
    client.disconnect()
    reader.join(TIMEOUT)
    assert not reader.is_alive()
    decode_problems = [r.getMessage() for r in caplog.records if r.name.startswith("ibapi")]
    assert decode_problems == []


def test_ibapi_negotiates_178_and_gets_the_bootstrap(sim, app):
    assert app.serverVersion() == 178
    assert [e.fields[0] for e in sim.messages("in", 0)] == ["v100..226"]
    assert [e.fields[0] for e in sim.messages("out", 0)] == ["178"]
    assert app.wait("nextValidId") == [(5,)]
    assert app.wait("managedAccounts") == [("DU1234567,DU7654321",)]
    app.wait("error", 3)
    assert app.errors == [
        (-1, 2104, "Market data farm connection is OK:usfarm"),
        (-1, 2106, "HMDS data farm connection is OK:ushmds"),
        (-1, 2158, "Sec-def data farm connection is OK:secdefil"),
    ]


def test_ibapi_decodes_every_message_type(sim, app):
    app.reqManagedAccts()
    app.reqIds(-1)
    app.reqCurrentTime()
    app.reqAutoOpenOrders(True)
    app.reqPositions()
    app.reqAccountUpdates(True, "DU1234567")
    app.reqOpenOrders()
    app.reqAllOpenOrders()
    app.reqCompletedOrders(False)
    app.reqAccountUpdatesMulti(9, "DU1234567", "", False)
    app.reqExecutions(1, ExecutionFilter())
    future = Contract()
    future.symbol, future.secType, future.exchange, future.currency = "ES", "FUT", "CME", "USD"
    app.reqContractDetails(2, future)
    app.reqAccountSummary(3, "All", "NetLiquidation,$LEDGER:ALL")
    for end in ("positionEnd", "accountDownloadEnd", "completedOrdersEnd", "accountUpdateMultiEnd",
                "execDetailsEnd", "contractDetailsEnd", "accountSummaryEnd"):
        app.wait(end)
    app.wait("openOrderEnd", 2)

    assert app.calls["managedAccounts"][-1] == ("DU1234567,DU7654321",)
    assert app.calls["nextValidId"][-1] == (5,)
    assert app.calls["currentTime"] == [(1773156600,)]
    assert len(app.calls["position"]) == 8
    account, contract, position, avg_cost = app.calls["position"][0]
    assert (account, contract.symbol, contract.secType, position, avg_cost) == (
        "DU1234567", "AAPL", "STK", 400, 189.4213)
    assert len(app.calls["updatePortfolio"]) == 6
    assert ("NetLiquidation", "997382.24", "USD", "DU1234567") in app.calls["updateAccountValue"]
    assert app.calls["updateAccountTime"] == [("11:30",)]
    assert app.calls["accountDownloadEnd"] == [("DU1234567",)]
    assert (9, "DU1234567", "", "NetLiquidation", "997382.24", "USD") in app.calls["accountUpdateMulti"]
    assert (3, "DU1234567", "NetLiquidation", "997382.24", "USD") in app.calls["accountSummary"]
    assert (3, "DU1234567", "CashBalance", "25000.00", "EUR") in app.calls["accountSummary"]
    # client 0: reqOpenOrders gives the manual TWS order, reqAllOpenOrders both resting orders
    assert sorted((o.clientId, o.orderId, s.status) for _, _, o, s in app.calls["openOrder"]) == [
        (0, 0, "Submitted"), (0, 0, "Submitted"), (7, 12, "Submitted")]
    assert [args[1] for args in app.calls["orderStatus"]] == ["Submitted"] * 3
    assert len(app.calls["completedOrder"]) == 5
    assert len(app.calls["execDetails"]) == 4 and len(app.calls["commissionAndFeesReport"]) == 4
    req_id, contract, execution = app.calls["execDetails"][0]
    assert (req_id, contract.symbol, execution.execId, execution.shares, execution.price) == (
        1, "AAPL", "0000e0d5.000b4965.01.01", 100, 226.85)
    assert app.calls["commissionAndFeesReport"][1][0].realizedPNL == 845.19
    assert [(d.contract.localSymbol, d.contract.lastTradeDateOrContractMonth, d.lastTradeTime)
            for _, d in app.calls["contractDetails"]] == [
        ("ESH6", "20260320", "08:30"), ("ESM6", "20260619", "08:30"), ("ESU6", "20260918", "08:30"),
        ("ESZ6", "20261218", "08:30")]
    assert [e[1] for e in app.errors] == [2104, 2106, 2158]


def test_ibapi_order_flow_what_if_fill_rest_cancel_and_errors(sim, app):
    app.placeOrder(20, stock("AAPL"), limit("BUY", 10, 100.0, what_if=True))
    _, contract, order, state = app.wait("openOrder")[0]
    assert (order.orderId, order.whatIf, state.initMarginChange, state.maxCommissionAndFees) == (
        20, True, "568.70", 1.0)
    app.placeOrder(21, stock("AAPL"), limit("BUY", 10, 300.0))  # marketable: fills at 227.48
    app.wait("commissionAndFeesReport")
    _, _, execution = app.wait("execDetails")[0]
    assert (execution.orderId, execution.shares, execution.price, execution.side) == (21, 10, 227.48, "BOT")
    app.placeOrder(22, stock("AAPL"), limit("BUY", 10, 100.0))  # rests
    statuses = app.wait("orderStatus", 4)
    assert [(s[0], s[1]) for s in statuses] == [(21, "PreSubmitted"), (21, "Filled"), (22, "PreSubmitted"),
                                                (22, "Submitted")]
    app.cancelOrder(22, OrderCancel())
    app.cancelOrder(99, OrderCancel())
    unknown = stock("NOSUCH")
    app.reqContractDetails(30, unknown)
    app.wait("error", 6)
    assert app.errors[3:] == [(22, 202, "Order Canceled - reason:"),
                              (99, 10147, "OrderId 99 that needs to be cancelled is not found."),
                              (30, 200, "No security definition has been found for the request")]
    assert app.calls["orderStatus"][-1][:3] == (22, "Cancelled", 0)
    assert [(p.order_id, p.lmt_price, p.total_quantity) for p in sim.placed_orders()] == [(21, 300.0, 10),
                                                                                          (22, 100.0, 10)]
    assert [p.what_if for p in sim.placed_orders(transmit_only=False)] == [True, False, False]
