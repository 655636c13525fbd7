"""ib_async 2.1 (the real client) against the simulated gateway over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from ib_async import (
    IB,
    Contract,
    ExecutionFilter,
    Forex,
    Future,
    LimitOrder,
    MarketOrder,
    PriceCondition,
    Stock,
    TagValue,
)
from ib_async.wrapper import RequestError

from ibg_audit.sim import SimulatedGateway
from ibg_audit.sim.protocol import encode_fields
from sim_fixtures import FIXED_NOW, gateway, ib_client, run, wait_until

AAPL = Stock("AAPL", "SMART", "USD")


def test_startup_sync_gets_positions_account_values_orders_and_executions():
    async def body():
        async with gateway() as gw, ib_client(gw) as ib:
            assert ib.managedAccounts() == ["DU1234567", "DU7654321"]
            assert sorted((p.account, p.contract.localSymbol, p.position, p.avgCost) for p in ib.positions()) == [
                ("DU1234567", "AAPL", 400.0, 189.4213),
                ("DU1234567", "AAPL  260515C00250000", 10.0, 390.65),
                ("DU1234567", "ESH6", 2.0, 297013.065),
                ("DU1234567", "EUR.USD", 25000.0, 1.07953),
                ("DU1234567", "IBM", -100.0, 241.3036),
                ("DU1234567", "MSFT", 150.0, 402.1047),
                ("DU7654321", "AAPL", 20.0, 219.875),
                ("DU7654321", "MSFT", 80.0, 405.6018),
            ]
            # two accounts: ib_async syncs account values through reqAccountUpdatesMulti
            values = {(v.account, v.tag, v.currency): v.value for v in ib.accountValues()}
            assert values[("DU1234567", "NetLiquidation", "USD")] == "997382.24"
            assert values[("DU7654321", "NetLiquidation", "USD")] == "994310.22"
            assert values[("DU1234567", "CashBalance", "EUR")] == "25000.00"
            assert values[("DU1234567", "ExchangeRate", "EUR")] == "1.0842"
            assert values[("DU1234567", "AccountType", "")] == "INDIVIDUAL"
            assert ib.openTrades() == []  # the scenario's resting orders belong to clients 0 and 7
            # completedOrder carries no order id; ib_async keys these trades by permId
            assert sorted((t.contract.symbol, t.order.action, t.order.account, t.orderStatus.status)
                          for t in ib.trades()) == [
                ("AAPL", "BUY", "DU1234567", "Filled"), ("ES", "BUY", "DU1234567", "Filled"),
                ("MSFT", "BUY", "DU1234567", "Cancelled"), ("MSFT", "BUY", "DU7654321", "Filled"),
                ("MSFT", "SELL", "DU1234567", "Filled")]
            assert [(f.execution.execId, f.execution.side, f.execution.shares, f.commissionReport.commission)
                    for f in ib.fills()] == [
                ("0000e0d5.000b4965.01.01", "BOT", 100.0, 1.0),
                ("0000e0d5.000b4965.02.01", "SLD", 50.0, 1.0),
                ("0000e0d5.000b4965.03.01", "BOT", 1.0, 2.25),
                ("0000e0d5.000b4965.04.01", "BOT", 20.0, 1.0),
            ]
            # dayFraction 0.35 of the 11.5 hours since midnight in New York (EDT, UTC-4) at FIXED_NOW
            assert ib.fills()[0].execution.time == dt.datetime(2026, 3, 10, 8, 1, 30, tzinfo=dt.UTC)
            assert ib.fills()[1].commissionReport.realizedPNL == 845.19
            requests = [e.msg_id for e in gw.transcript if e.direction == "in"]
            assert requests == [0, 71, 61, 5, 99, 76, 76, 7]
            assert all(e.client_id == 1 for e in gw.transcript[3:])  # everything after startApi

    run(body())


def test_single_account_login_syncs_account_updates_and_portfolio():
    async def body():
        async with gateway("ibg_audit/sim/live_scenario.json") as gw, ib_client(gw) as ib:
            assert ib.managedAccounts() == ["U7654321"]
            assert [(p.contract.symbol, p.position, p.marketPrice, p.marketValue, p.unrealizedPNL)
                    for p in ib.portfolio()] == [("AAPL", 60.0, 227.48, 13648.8, 1579.65)]
            values = {(v.tag, v.currency): v.value for v in ib.accountValues()}
            assert values[("NetLiquidation", "USD")] == "97859.35"
            assert values[("AccountCode", "")] == "U7654321"
            assert 6 in [e.msg_id for e in gw.transcript if e.direction == "in"]

    run(body())


def test_client_zero_binds_manual_orders_and_sees_them_in_open_orders():
    async def body():
        async with gateway() as gw, ib_client(gw, client_id=0) as ib:
            assert [(t.order.clientId, t.order.orderId, t.contract.localSymbol, t.order.lmtPrice, t.orderStatus.status)
                    for t in ib.openTrades()] == [(0, 0, "ESH6", 5750.0, "Submitted")]
            assert not gw.messages("out", 4, client_id=0)[3:]  # only the three farm notices: no error 327

    run(body())


def test_auto_open_orders_from_nonzero_client_gets_327():
    async def body():
        async with gateway() as gw, ib_client(gw, client_id=3) as ib:
            errors = []
            ib.errorEvent += lambda req_id, code, text, contract: errors.append((req_id, code, text))
            ib.reqAutoOpenOrders(True)
            await wait_until(lambda: errors, what="error 327")
            assert errors == [(-1, 327, "Only API connections with clientId set to 0 can set the auto bind TWS "
                                        "orders property.")]

    run(body())


def test_ids_time_and_managed_accounts():
    async def body():
        async with gateway() as gw, ib_client(gw) as ib:
            assert await ib.reqCurrentTimeAsync() == FIXED_NOW
            ib.client.reqIds(-1)
            ib.client.reqManagedAccts()
            await wait_until(lambda: gw.messages("out", 15)[1:] and gw.messages("out", 9)[1:], what="replies")
            # request ids ib_async used during the sync (5-7) are not order ids: the next valid id stays 5
            assert gw.messages("out", 9)[-1].fields == ["9", "1", "5"]
            assert gw.messages("out", 15)[-1].fields == ["15", "1", "DU1234567,DU7654321"]

    run(body())


def test_contract_details_stock_future_expired_ambiguous_and_unknown():
    async def body():
        async with gateway() as gw, ib_client(gw) as ib:
            [aapl] = await ib.reqContractDetailsAsync(AAPL)
            assert (aapl.contract.conId, aapl.contract.exchange, aapl.contract.primaryExchange, aapl.longName,
                    aapl.minTick, aapl.stockType) == (265598, "SMART", "NASDAQ", "APPLE INC", 0.01, "COMMON")
            assert aapl.tradingHours.startswith("20260310:0400-20260310:2000;20260311:0400-20260311:2000;")
            live = await ib.reqContractDetailsAsync(Future("ES", exchange="CME"))
            assert [(d.contract.localSymbol, d.contract.conId, d.contract.lastTradeDateOrContractMonth,
                     d.lastTradeTime, d.timeZoneId) for d in live] == [
                ("ESH6", 620202603, "20260320", "08:30", "US/Central"),
                ("ESM6", 620202606, "20260619", "08:30", "US/Central"),
                ("ESU6", 620202609, "20260918", "08:30", "US/Central"),
                ("ESZ6", 620202612, "20261218", "08:30", "US/Central"),
            ]
            expired = await ib.reqContractDetailsAsync(Future("ES", exchange="CME", includeExpired=True))
            assert [d.contract.localSymbol for d in expired] == ["ESZ5", "ESH6", "ESM6", "ESU6", "ESZ6"]
            errors = []
            ib.errorEvent += lambda req_id, code, text, contract: errors.append((req_id, code))
            es, unknown, eur = await ib.qualifyContractsAsync(
                Future("ES", "202606", "CME"), Stock("NOSUCH", "SMART", "USD"), Forex("EURUSD"))
            assert es.conId == 620202606 and eur.conId == 12087792 and unknown is None
            assert [code for _, code in errors] == [200]
            assert gw.messages("out", 4)[-1].fields[2] == str(errors[0][0])

    run(body())


def test_contract_details_for_a_bare_symbol_returns_every_matching_contract():
    async def body():
        async with gateway() as gw, ib_client(gw) as ib:
            details = await ib.reqContractDetailsAsync(Contract(symbol="AAPL"))
            assert [(d.contract.secType, d.contract.conId) for d in details] == [("OPT", 702605151),
                                                                                 ("STK", 265598)]
            assert await ib.qualifyContractsAsync(Contract(symbol="AAPL")) == [None]  # ambiguous for ib_async

    run(body())


def test_futures_and_options_are_generated_relative_to_today():
    gw = SimulatedGateway()  # the real clock
    today = dt.datetime.now(gw.state.tz).strftime("%Y%m%d")
    contracts = gw.state.contracts
    assert contracts["ES"].lastTradeDate >= today > contracts["ES-1"].lastTradeDate
    assert contracts["ES-1"].expired and not contracts["ES"].expired
    assert contracts["ES+1"].lastTradeDate > contracts["ES"].lastTradeDate
    option_expiry = dt.datetime.strptime(contracts["AAPL-C250"].lastTradeDate, "%Y%m%d").date()
    assert option_expiry.strftime("%Y%m%d") > today and option_expiry.weekday() == 4


def test_account_summary():
    async def body():
        async with gateway() as gw, ib_client(gw) as ib:
            summary = {(v.account, v.tag, v.currency): v.value for v in await ib.accountSummaryAsync()}
            assert summary[("DU1234567", "NetLiquidation", "USD")] == "997382.24"
            assert summary[("DU1234567", "InitMarginReq", "USD")] == "94502.15"
            assert summary[("DU1234567", "AvailableFunds", "USD")] == "898030.09"
            assert summary[("DU1234567", "BuyingPower", "USD")] == "3592120.36"
            assert summary[("DU1234567", "Cushion", "")] == "0.904924"
            assert summary[("DU7654321", "AccountType", "")] == "INDIVIDUAL"
            assert summary[("DU1234567", "CashBalance", "EUR")] == "25000.00"  # from $LEDGER:ALL
            assert summary[("DU1234567", "TotalCashBalance", "BASE")] == "858517.37"

    run(body())


def test_what_if_returns_margins_and_changes_nothing():
    async def body():
        async with gateway() as gw, ib_client(gw) as ib:
            before = (dict(gw.state.positions), list(gw.state.executions), dict(gw.state.open_orders),
                      gw.state.accounts["DU1234567"].cash)
            state = await asyncio.wait_for(
                ib.whatIfOrderAsync(AAPL, MarketOrder("BUY", 100, account="DU1234567")), 5)
            assert (state.initMarginBefore, state.initMarginChange, state.initMarginAfter) == (
                "94502.15", "5687.00", "100189.15")
            assert (state.maintMarginBefore, state.maintMarginChange, state.maintMarginAfter) == (
                "89976.62", "5687.00", "95663.62")
            assert (state.equityWithLoanBefore, state.equityWithLoanChange, state.equityWithLoanAfter) == (
                "992532.24", "-1.00", "992531.24")
            assert (state.minCommission, state.maxCommission, state.commissionCurrency) == (1.0, 1.0, "USD")
            assert before == (dict(gw.state.positions), list(gw.state.executions), dict(gw.state.open_orders),
                              gw.state.accounts["DU1234567"].cash)
            assert gw.messages("out", 3) == []  # no orderStatus for a what-if
            assert gw.placed_orders() == []
            assert [o.what_if for o in gw.placed_orders(transmit_only=False)] == [True]

    run(body())


def test_limit_far_from_market_rests_and_is_visible_to_other_clients():
    async def body():
        async with gateway() as gw, ib_client(gw) as ib, ib_client(gw, client_id=2) as other:
            trade = ib.placeOrder(AAPL, LimitOrder("BUY", 10, 150.0, account="DU1234567"))
            await wait_until(lambda: trade.orderStatus.status == "Submitted", what="Submitted")
            assert [e.status for e in trade.log] == ["PendingSubmit", "PreSubmitted", "Submitted"]
            perm_id = trade.order.permId
            assert perm_id > 0 and trade.fills == []
            everyone = await other.reqAllOpenOrdersAsync()
            assert sorted((t.order.clientId, t.order.orderId, t.order.permId > 0) for t in everyone) == [
                (0, 0, True), (1, trade.order.orderId, True), (7, 12, True)]
            mine = await ib.reqOpenOrdersAsync()
            assert [(t.order.permId, t.orderStatus.status) for t in mine] == [(perm_id, "Submitted")]
            assert await other.reqOpenOrdersAsync() == []
            [placed] = gw.placed_orders()
            assert (placed.order_id, placed.action, placed.total_quantity, placed.lmt_price) == (
                trade.order.orderId, "BUY", 10, 150.0)

    run(body())


def test_open_order_echoes_the_order_as_placed():
    async def body():
        async with gateway() as gw, ib_client(gw) as ib, ib_client(gw, client_id=2) as other:
            order = LimitOrder("SELL", 5, 300.0, account="DU7654321", tif="GTC", orderRef="audit-1",
                               outsideRth=True, algoStrategy="Adaptive",
                               algoParams=[TagValue("adaptivePriority", "Normal")],
                               conditions=[PriceCondition(price=230.0, conId=265598, exch="SMART")])
            trade = ib.placeOrder(AAPL, order)
            await wait_until(lambda: trade.orderStatus.status == "Submitted", what="Submitted")
            [seen] = [t for t in await other.reqAllOpenOrdersAsync() if t.order.clientId == 1]
            o = seen.order
            assert (o.action, o.totalQuantity, o.lmtPrice, o.tif, o.orderRef, o.outsideRth, o.account) == (
                "SELL", 5.0, 300.0, "GTC", "audit-1", True, "DU7654321")
            assert (o.algoStrategy, o.algoParams) == ("Adaptive", [TagValue("adaptivePriority", "Normal")])
            assert o.conditions == [PriceCondition(price=230.0, conId=265598, exch="SMART")]
            assert (seen.contract.conId, seen.contract.exchange) == (265598, "SMART")

    run(body())


def test_marketable_order_fills_and_updates_positions_and_account():
    async def body():
        async with gateway("ibg_audit/sim/live_scenario.json") as gw, ib_client(gw) as ib:
            def net_liq() -> str:
                return next(v.value for v in ib.accountValues() if v.tag == "NetLiquidation")

            assert net_liq() == "97859.35"
            trade = ib.placeOrder(AAPL, MarketOrder("SELL", 20))
            await wait_until(lambda: trade.fills and trade.fills[0].commissionReport.execId, what="fill")
            assert trade.orderStatus.status == "Filled"
            assert (trade.orderStatus.filled, trade.orderStatus.avgFillPrice) == (20.0, 227.48)
            [fill] = trade.fills
            assert (fill.execution.side, fill.execution.shares, fill.execution.price, fill.execution.exchange) == (
                "SLD", 20.0, 227.48, "ISLAND")
            # realized = 20 x (227.48 - 201.1525) - 1.00 commission
            assert (fill.commissionReport.commission, fill.commissionReport.realizedPNL) == (1.0, 525.55)
            await wait_until(lambda: ib.positions()[0].position == 40.0, what="position update")
            assert [(p.position, p.avgCost) for p in ib.positions()] == [(40.0, 201.1525)]
            # The update is a burst of messages: wait for the last of the three, then check them all.
            def values():
                return {(v.tag, v.currency): v.value for v in ib.accountValues()}

            expected = {("NetLiquidation", "USD"): "97858.35",  # minus the commission
                        ("RealizedPnL", "USD"): "525.55", ("CashBalance", "USD"): "88759.15"}
            await wait_until(lambda: {k: values().get(k) for k in expected} == expected, what="account update")
            fills = await ib.reqExecutionsAsync()
            assert [f.execution.execId for f in fills][-1] == fill.execution.execId

    run(body())


def test_cancel_order_and_cancel_unknown_id():
    async def body():
        async with gateway() as gw, ib_client(gw) as ib:
            errors = []
            ib.errorEvent += lambda req_id, code, text, contract: errors.append((req_id, code, text))
            trade = ib.placeOrder(AAPL, LimitOrder("BUY", 10, 150.0, account="DU1234567"))
            await wait_until(lambda: trade.orderStatus.status == "Submitted", what="Submitted")
            ib.cancelOrder(trade.order)
            await wait_until(lambda: trade.orderStatus.status == "Cancelled", what="Cancelled")
            await wait_until(lambda: errors, what="error 202")
            assert errors == [(trade.order.orderId, 202, "Order Canceled - reason:")]
            assert gw.state.open_orders.get(trade.order.permId) is None
            ib.client.cancelOrder(4242)
            await wait_until(lambda: len(errors) == 2, what="error 10147")
            assert errors[1] == (4242, 10147, "OrderId 4242 that needs to be cancelled is not found.")
            completed = await ib.reqCompletedOrdersAsync(apiOnly=False)
            assert [t.orderStatus.status for t in completed if t.order.permId == trade.order.permId] == ["Cancelled"]

    run(body())


def test_modifying_a_resting_order_makes_it_marketable():
    async def body():
        async with gateway() as gw, ib_client(gw) as ib:
            order = LimitOrder("BUY", 5, 150.0, account="DU1234567")
            trade = ib.placeOrder(AAPL, order)
            await wait_until(lambda: trade.orderStatus.status == "Submitted", what="Submitted")
            order.lmtPrice = 230.0
            ib.placeOrder(AAPL, order)
            await wait_until(lambda: trade.orderStatus.status == "Filled", what="Filled")
            assert gw.state.positions[("DU1234567", 265598)].position == 405
            assert len(gw.placed_orders()) == 2

    run(body())


def test_readonly_gateway_rejects_orders_with_321():
    async def body():
        async with gateway(readonly=True) as gw, ib_client(gw) as ib:
            trade = ib.placeOrder(AAPL, LimitOrder("BUY", 10, 150.0))
            await wait_until(lambda: trade.log[-1].errorCode == 321, what="error 321")
            assert trade.orderStatus.status == "ValidationError"  # ib_async treats 321 as a warning
            assert "Read-Only mode" in trade.log[-1].message
            assert gw.messages("out", 5) == []  # no openOrder
            assert [(o.client_id, o.order_id) for o in gw.state.open_orders.values()] == [(7, 12), (0, 0)]

    run(body())


def test_reject_orders_fault_sends_201():
    async def body():
        async with gateway(faults=["reject-orders:Insufficient margin"]) as gw, ib_client(gw) as ib:
            trade = ib.placeOrder(AAPL, LimitOrder("BUY", 10, 150.0))
            await wait_until(lambda: trade.orderStatus.status == "Cancelled", what="rejection")
            assert (trade.log[-1].errorCode, trade.log[-1].message) == (
                201, f"Error 201, reqId {trade.order.orderId}: Order rejected - reason:Insufficient margin")

    run(body())


def test_several_clients_at_once_and_duplicate_client_id_gets_326_and_close():
    async def body():
        async with gateway() as gw, ib_client(gw, client_id=1) as first, ib_client(gw, client_id=2) as second:
            third = IB()
            with pytest.raises(asyncio.TimeoutError):
                await third.connectAsync("127.0.0.1", gw.port, clientId=1, timeout=1)
            refused = [e for e in gw.messages("out", 4) if e.fields[3] == "326"]
            assert [e.fields for e in refused] == [
                ["4", "2", "-1", "326", "Unable to connect as the client id is already in use. Retry with a unique "
                 "client id.", ""]]
            assert refused[0].client_id is None
            assert await first.reqCurrentTimeAsync() == FIXED_NOW
            assert await second.reqCurrentTimeAsync() == FIXED_NOW

    run(body())


def test_execution_filter_time_account_symbol_sectype_side():
    async def body():
        async with gateway() as gw, ib_client(gw) as ib:
            async def ids(**kwargs):
                fills = await ib.reqExecutionsAsync(ExecutionFilter(**kwargs))
                return [int(f.execution.execId.split(".")[2]) for f in fills]

            assert await ids() == [1, 2, 3, 4]
            # executions at 08:01:30, 10:19:30, 12:03:00 and 13:12:00 UTC
            assert await ids(time="20260310 10:19:30") == [2, 3, 4]
            assert await ids(time="20260310-10:19:31") == [3, 4]
            assert await ids(time="20260310 10:00 UTC") == [2, 3, 4]
            assert await ids(time="20260310 08:00:00 US/Eastern") == [3, 4]
            assert await ids(time="20260310 13:12:01") == []
            assert await ids(acctCode="DU7654321") == [4]
            assert await ids(symbol="msft") == [2, 4]
            assert await ids(secType="FUT") == [3]
            assert await ids(side="SELL") == [2]
            assert await ids(side="BUY", symbol="MSFT") == [4]
            assert await ids(clientId=7) == [4]

    run(body())


def test_unreadable_execution_filter_time_gets_error_320():
    async def body():
        async with gateway() as gw, ib_client(gw) as ib:
            ib.RaiseRequestErrors = True
            with pytest.raises(RequestError) as failure:
                await ib.reqExecutionsAsync(ExecutionFilter(time="yesterday"))
            assert failure.value.code == 320

    run(body())


@pytest.mark.parametrize("fault, error", [("refuse", ConnectionRefusedError),
                                          ("no-handshake", asyncio.TimeoutError),
                                          ("drop-after:3", ConnectionError)])
def test_connection_faults(fault, error):
    async def body():
        async with gateway(faults=[fault]) as gw:
            ib = IB()
            with pytest.raises(error):
                await ib.connectAsync("127.0.0.1", gw.port, clientId=1, timeout=1)
            ib.disconnect()
            sent = [e.msg_id for e in gw.transcript if e.direction == "out"]
            assert sent == {"refuse": [], "no-handshake": [], "drop-after:3": [0, 15, 9, 4]}[fault]
            assert [e.fields for e in gw.messages("in", 0)] == ([] if fault == "refuse" else [["v157..178"]])

    run(body())


def test_delay_fault_holds_every_message_back():
    async def body():
        async with gateway(faults=["delay:150"]) as gw, ib_client(gw) as ib:
            loop = asyncio.get_running_loop()
            start = loop.time()
            assert await ib.reqCurrentTimeAsync() == FIXED_NOW
            assert loop.time() - start >= 0.15  # a lower bound only: never flaky

    run(body())


def test_error_fault_replaces_the_reply_to_one_request_type():
    async def body():
        async with gateway(faults=["error:contractDetails:162", "error:positions:322"]) as gw:
            async with ib_client(gw, timeout=0.3) as ib:  # the sync's positions request times out (logged only)
                errors = []
                ib.errorEvent += lambda req_id, code, text, contract: errors.append((req_id, code))
                assert await ib.reqContractDetailsAsync(AAPL) == []
                assert errors[-1][1] == 162 and errors[-1][0] > 0
                assert ib.positions() == []
                assert await ib.reqCurrentTimeAsync() == FIXED_NOW  # other requests are answered
            assert [e.fields for e in gw.messages("out", 4) if e.fields[3] == "322"] == [
                ["4", "2", "-1", "322", "Server error when processing an API client request.", ""]]
            assert gw.messages("out", 61) == [] and gw.messages("out", 10) == []

    run(body())


def test_pacing_fault_answers_every_request_with_error_100():
    async def body():
        async with gateway(faults=["pacing"]) as gw, ib_client(gw, timeout=0.3) as ib:
            errors = []
            ib.errorEvent += lambda req_id, code, text, contract: errors.append((req_id, code, text))
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(ib.reqCurrentTimeAsync(), 0.3)
            assert errors == [(-1, 100, "Max rate of messages per second has been exceeded")]
            replies = [e.msg_id for e in gw.transcript if e.direction == "out"]
            assert replies == [0, 15, 9, 4, 4, 4] + [4] * 7  # bootstrap, then error 100 for every request

    run(body())


HELLO = b"API\0" + b"\x00\x00\x00\x09v157..178"
START = encode_fields(["71", "2", "5", ""])


@pytest.mark.parametrize("bad", [
    b"GET / HTTP/1.1\r\n\r\n",  # garbage instead of the hello
    b"API\0\x00\x00\x00\x09v100..176",  # a client that cannot speak 178
    b"API\0\x00\x00\x00\x09v179..190",
    b"API\0\x00\x00\x00\x07v1..two",  # unreadable version range
    HELLO + encode_fields(["49", "1"]),  # a request before startApi
    HELLO + encode_fields(["71", "2"]),  # startApi without a client id
    HELLO + START + b"\x00\x00\x00\x03999",  # frame not NUL-terminated
    HELLO + START + encode_fields(["999", "1"]),  # unknown message id
    HELLO + START + encode_fields(["abc", "1"]),  # message id that is not a number
    HELLO + START + b"\xff\xff\xff\xff",  # absurd frame length
    HELLO + START + encode_fields(["3", "12", "265598"]),  # placeOrder cut short
])
def test_bad_input_drops_only_that_client(bad):
    async def body():
        async with gateway() as gw, ib_client(gw) as ib:
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            writer.write(bad)
            await writer.drain()
            await asyncio.wait_for(reader.read(), 5)  # returns at EOF: the gateway closed this connection
            writer.close()
            assert await ib.reqCurrentTimeAsync() == FIXED_NOW
            assert list(gw.clients.values()) == [1]

    run(body())
