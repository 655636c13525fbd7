"""Encoders for every message the gateway sends, with the field layout of a real gateway at server version 178.

Each function returns the list of string fields (message id first). Layouts follow the official client's decoder
and recorded traffic (see tests/sim_golden/); value formats copy the recordings field by field.
"""

from __future__ import annotations

from .contracts import Contract
from .protocol import UNSET_DOUBLE_TEXT, UNSET_INTEGER, UNSET_LONG, flag, jdouble, plain
from .state import Execution, Order

UD = UNSET_DOUBLE_TEXT
UI = str(UNSET_INTEGER)


def handshake_reply(server_version: int, connection_time: str) -> list[str]:
    return [str(server_version), connection_time]


def error(req_id: int, code: int, text: str, advanced_order_reject_json: str = "") -> list[str]:
    # since sv 166 the trailing advancedOrderRejectJson is mandatory (ib_async drops the message without it)
    return ["4", "2", str(req_id), str(code), text, advanced_order_reject_json]


def managed_accounts(accounts: list[str]) -> list[str]:
    return ["15", "1", ",".join(accounts)]


def next_valid_id(order_id: int) -> list[str]:
    return ["9", "1", str(order_id)]


def current_time(epoch: int) -> list[str]:
    return ["49", "1", str(epoch)]


def position(account: str, c: Contract, quantity, avg_cost: float) -> list[str]:
    return [
        "61", "3", account, str(c.conId), c.symbol, c.secType, c.lastTradeDate, jdouble(c.strike), c.right,
        c.multiplier, c.positionExchange, c.currency, c.localSymbol, c.tradingClass, plain(quantity),
        jdouble(round(avg_cost, 7)),
    ]


def position_end() -> list[str]:
    return ["62", "1"]


def account_value(key: str, value: str, currency: str, account: str) -> list[str]:
    return ["6", "2", key, value, currency, account]


def portfolio_value(c: Contract, quantity, market_price: float, market_value: float, avg_cost: float,
                    unrealized: float, realized: float, account: str) -> list[str]:
    # recorded from a real gateway: a stock's strike is "0" and its right "0" in this message
    return [
        "7", "8", str(c.conId), c.symbol, c.secType, c.lastTradeDate, plain(c.strike), c.right or "0",
        c.multiplier, c.primaryExchange, c.currency, c.localSymbol, c.tradingClass, plain(quantity),
        jdouble(round(market_price, 7)), jdouble(round(market_value, 2)), jdouble(round(avg_cost, 7)),
        jdouble(round(unrealized, 2)), jdouble(round(realized, 2)), account,
    ]


def account_update_time(hhmm: str) -> list[str]:
    return ["8", "1", hhmm]


def account_download_end(account: str) -> list[str]:
    return ["54", "1", account]


def account_summary(req_id: int, account: str, tag: str, value: str, currency: str) -> list[str]:
    return ["63", "1", str(req_id), account, tag, value, currency]


def account_summary_end(req_id: int) -> list[str]:
    return ["64", "1", str(req_id)]


def account_update_multi(req_id: int, account: str, model_code: str, key: str, value: str,
                         currency: str) -> list[str]:
    return ["73", "1", str(req_id), account, model_code, key, value, currency]


def account_update_multi_end(req_id: int) -> list[str]:
    return ["74", "1", str(req_id)]


def _order_contract(c: Contract) -> list[str]:
    # openOrder/completedOrder: strike as "0" and an unknown right as "?" (recorded), no primaryExchange
    return [
        str(c.conId), c.symbol, c.secType, c.lastTradeDate, plain(c.strike), c.right or "?", c.multiplier,
        c.exchange, c.currency, c.localSymbol, c.tradingClass,
    ]


def _price(x: float | None) -> str:
    return jdouble(x if x is not None else 0.0)


def _opt(x: float | None) -> str:
    return "" if x is None else jdouble(x)


def _combo_and_scale(o: Order) -> list[str]:
    # combo legs are not supported (BAG contracts are unknown to the scenario), so the counts are always 0
    fields = ["", "0", "0", "0", UI, UI, o.scale_price_increment, *o.scale_extra]
    fields += [o.hedge[0], *o.hedge[1:]] if o.hedge else [""]
    return fields


def _algo(o: Order) -> list[str]:
    if not o.algo_strategy:
        return [""]
    return [o.algo_strategy, str(len(o.algo_params)), *[x for pair in o.algo_params for x in pair]]


def _conditions(o: Order) -> list[str]:
    fields = [str(len(o.conditions))]
    for cond in o.conditions:
        fields += cond
    if o.conditions:
        fields += [flag(o.conditions_ignore_rth), flag(o.conditions_cancel_order)]
    return fields


def _delta_neutral_contract(o: Order) -> list[str]:
    return ["1", *o.delta_neutral_contract] if o.delta_neutral_contract else ["0"]


def _order_state(o: Order, status: str, with_commission: bool) -> list[str]:
    if o.what_if and o.margins:
        # before (init, maint, equity with loan), then change, then after; margins travel as strings
        margins = [f"{v:.2f}" for m in o.margins for v in (m.initial, m.maintenance, m.equity_with_loan)]
        # what-if replies seen in the wild leave commission unset and give the estimate as a min/max range
        estimate = jdouble(o.what_if_commission)
        return [status, *margins, UD, estimate, estimate, o.contract.currency, ""]
    shown = with_commission and o.commission is not None
    commission = jdouble(o.commission) if shown else ""
    currency = o.contract.currency if shown else ""
    return [status, *[UD] * 9, commission, "", "", currency, ""]


def open_order(o: Order, *, with_commission: bool = True) -> list[str]:
    """openOrder (5) at sv 178: 135 fields for a plain order (no faProfile since 177).

    A fill is reported twice, first without and then with the commission, as the real gateway does."""
    return [
        "5", str(o.order_id), *_order_contract(o.contract),
        o.action, plain(o.total_quantity), o.order_type, _price(o.lmt_price), _price(o.aux_price), o.tif,
        o.oca_group, o.account, o.open_close, str(o.origin), o.order_ref, str(o.client_id), str(o.perm_id),
        flag(o.outside_rth), flag(o.hidden), "0", o.good_after_time,
        "" if o.what_if else f"{o.perm_id}.0/{o.account}/100",  # deprecated sharesAllocation, as recorded
        "", "", "",  # faGroup, faMethod, faPercentage
        o.model_code, o.good_till_date, "", "", "",  # modelCode, goodTillDate, rule80A, percentOffset, settlingFirm
        "0", "", "-1", "0",  # shortSaleSlot, designatedLocation, exemptCode, auctionStrategy
        "", "", "", "", "",  # startingPrice, stockRefPrice, delta, stockRangeLower, stockRangeUpper
        UI, "0", "0", "0", "", "3",  # displaySize, blockOrder, sweepToFill, allOrNone, minQty, ocaType
        "0", "0", "", str(o.parent_id), "0",  # eTradeOnly, firmQuoteOnly, nbboPriceCap, parentId, triggerMethod
        "", "0", "None", "",  # volatility, volatilityType, deltaNeutralOrderType (TWS sends "None"), dnAuxPrice
        "0", "", "", "", "?", "0", "0", "",  # the 8 delta-neutral fields present because of "None"
        "0", "0", _opt(o.trail_stop_price), _opt(o.trailing_percent),  # continuousUpdate .. trailingPercent
        "", "",  # basisPoints, basisPointsType
        *_combo_and_scale(o),
        "0", "", "IB", "0",  # optOutSmartRouting, clearingAccount, clearingIntent, notHeld
        *_delta_neutral_contract(o), *_algo(o),
        "0", flag(o.what_if),  # solicited, whatIf
        *_order_state(o, o.status, with_commission),
        "0", "0", *o.peg_bench,  # randomizeSize, randomizePrice (+PEG BENCH)
        *_conditions(o),
        "None", UD, UD, UD, UD, UD, UD, "0",  # adjustedOrderType .. adjustableTrailingUnit
        "", "", "",  # softDollarTier name, value, displayName
        plain(o.cash_qty, unset="0"), "1", "0", "0", "0",  # cashQty, dontUseAutoPriceForHedge, isOmsContainer, ...
        "", "", "0",  # duration, postToAts, autoCancelParent
        "", "100", "0.02", "", "",  # minTradeQty, minCompeteSize, competeAgainstBestOffset, midOffsets
    ]


def open_order_end() -> list[str]:
    return ["53", "1"]


def order_status(o: Order) -> list[str]:
    return [
        "3", str(o.order_id), o.status, plain(o.filled), plain(o.remaining), plain(o.avg_fill_price),
        str(o.perm_id), str(o.parent_id), plain(o.last_fill_price), str(o.client_id), "", "0",
    ]


def completed_order(o: Order) -> list[str]:
    """completedOrder (101) at sv 178: 100 fields for a plain order."""
    return [
        "101", *_order_contract(o.contract),
        o.action, plain(o.total_quantity), o.order_type, _price(o.lmt_price), _price(o.aux_price), o.tif,
        o.oca_group, o.account, o.open_close, str(o.origin), o.order_ref, str(o.perm_id),
        flag(o.outside_rth), flag(o.hidden), "0", o.good_after_time,
        "", "", "",  # faGroup, faMethod, faPercentage
        o.model_code, o.good_till_date, "", "", "",  # modelCode, goodTillDate, rule80A, percentOffset, settlingFirm
        "0", "", "-1",  # shortSaleSlot, designatedLocation, exemptCode
        "", "", "", "", "",  # startingPrice, stockRefPrice, delta, stockRangeLower, stockRangeUpper
        UI, "0", "0", "", "3", "0",  # displaySize, sweepToFill, allOrNone, minQty, ocaType, triggerMethod
        "", "0", "None", "",  # volatility, volatilityType, deltaNeutralOrderType, dnAuxPrice
        "0", "0", "0", "",  # dnConId, dnShortSale, dnShortSaleSlot, dnDesignatedLocation
        "0", "0", _opt(o.trail_stop_price), _opt(o.trailing_percent),
        *_combo_and_scale(o),
        "", "IB", "0",  # clearingAccount, clearingIntent, notHeld
        *_delta_neutral_contract(o), *_algo(o),
        "0", o.status, "0", "0", *o.peg_bench,  # solicited, status, randomizeSize, randomizePrice
        *_conditions(o),
        UD, UD, plain(o.cash_qty, unset="0"), "1", "0",  # trailStopPrice, lmtPriceOffset, cashQty, ...
        "", plain(o.filled), UI, "0",  # autoCancelDate, filledQuantity, refFuturesConId, autoCancelParent
        "Not an insider or substantial shareholder", "0", "0", str(UNSET_LONG),
        o.completed_time, o.completed_status,
        "", UI, "", "", "",  # minTradeQty, minCompeteSize, competeAgainstBestOffset, midOffsets
    ]


def completed_orders_end() -> list[str]:
    return ["102"]


def exec_details(req_id: int, e: Execution, time_text: str) -> list[str]:
    c = e.contract
    return [
        "11", str(req_id), str(e.order_id), str(c.conId), c.symbol, c.secType, c.lastTradeDate, jdouble(c.strike),
        c.right, c.multiplier, e.exchange, c.currency, c.localSymbol, c.tradingClass, e.exec_id, time_text,
        e.account, e.exchange, e.side, plain(e.shares), jdouble(e.price), str(e.perm_id), str(e.client_id), "0",
        plain(e.cum_qty), jdouble(e.avg_price), e.order_ref, "", "", "", str(e.last_liquidity), "0",
    ]


def exec_details_end(req_id: int) -> list[str]:
    return ["55", "1", str(req_id)]


def commission_report(e: Execution) -> list[str]:
    return [
        "59", "1", e.exec_id, jdouble(e.commission), e.contract.currency, jdouble(e.realized_pnl), UD, "",
    ]


def contract_details(req_id: int, c: Contract) -> list[str]:
    """contractDetails (10) at sv 164..178: no version field, size rules at the end."""
    last = c.lastTradeDate
    if c.secType == "FUT" and c.lastTradeTime:
        last = f"{c.lastTradeDate} {c.lastTradeTime} {c.timeZoneId}"
    sec_ids = [x for pair in c.secIds for x in pair]
    return [
        "10", str(req_id), c.symbol, c.secType, last, plain(c.strike), c.right, c.exchange, c.currency,
        c.localSymbol, c.marketName, c.tradingClass, str(c.conId), plain(c.minTick), c.multiplier,
        c.orderTypes, c.validExchanges, "1", str(c.underConId), c.longName, c.primaryExchange,
        c.contractMonth, c.industry, c.category, c.subcategory, c.timeZoneId, c.tradingHours, c.liquidHours,
        c.evRule, c.evMultiplier, str(len(c.secIds)), *sec_ids, str(c.aggGroup), c.underSymbol,
        c.underSecType, c.marketRuleIds, c.lastTradeDate if c.secType in ("FUT", "OPT") else "", c.stockType,
        c.minSize, c.sizeIncrement, c.suggestedSizeIncrement,
    ]


def contract_details_end(req_id: int) -> list[str]:
    return ["52", "1", str(req_id)]
