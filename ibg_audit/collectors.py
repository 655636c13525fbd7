"""fetch_* collectors: ask the gateway for one kind of state and return plain JSON-ready items.

Items use IB's own field names (the JSON contract in README.md). IB's "unset" sentinels become None,
and every list is sorted by its stable key so that unchanged state always serializes identically.
"""

from __future__ import annotations

import datetime as dt

from .gateway import GatewaySession
from .ibvalues import clean_float, clean_int, to_number
from .safety import is_paper_account

KEY_ACCOUNT_TAGS = (
    "NetLiquidation", "TotalCashValue", "BuyingPower", "AvailableFunds", "ExcessLiquidity",
    "InitMarginReq", "MaintMarginReq", "GrossPositionValue", "UnrealizedPnL", "RealizedPnL",
)


async def fetch_accounts(session: GatewaySession) -> list[dict]:
    return [{"account": a, "paper": is_paper_account(a)} for a in session.accounts]


async def fetch_positions(session: GatewaySession) -> list[dict]:
    """Open positions. IB keeps reporting a position closed today with quantity 0; it is left out, so that
    a closed position shows up as removed in a diff rather than as a position of 0."""
    positions = await session.request("positions", session.ib.reqPositionsAsync())
    items = []
    for p in positions:
        if not p.position:
            continue
        c = p.contract
        items.append(
            {
                "account": p.account,
                "conId": c.conId,
                "symbol": c.symbol,
                "secType": c.secType,
                "lastTradeDateOrContractMonth": c.lastTradeDateOrContractMonth,
                "strike": clean_float(c.strike),
                "right": c.right,
                "multiplier": c.multiplier,
                "exchange": c.exchange,
                "currency": c.currency,
                "localSymbol": c.localSymbol,
                "tradingClass": c.tradingClass,
                "position": clean_float(p.position),
                "avgCost": clean_float(p.avgCost),
            }
        )
    return sorted(items, key=lambda i: (i["account"], i["conId"]))


async def fetch_orders(session: GatewaySession) -> list[dict]:
    """Every open order on the gateway, from every client id (reqAllOpenOrders)."""
    trades = await session.request("open orders", session.ib.reqAllOpenOrdersAsync())
    items = []
    for t in trades:
        c, o, s = t.contract, t.order, t.orderStatus
        items.append(
            {
                "orderId": clean_int(o.orderId),
                "permId": clean_int(o.permId),
                "clientId": clean_int(o.clientId),
                "account": o.account,
                "conId": c.conId,
                "symbol": c.symbol,
                "secType": c.secType,
                "localSymbol": c.localSymbol,
                "action": o.action,
                "totalQuantity": clean_float(o.totalQuantity),
                "orderType": o.orderType,
                "lmtPrice": clean_float(o.lmtPrice),
                "auxPrice": clean_float(o.auxPrice),
                "tif": o.tif,
                "status": s.status,
                "filled": clean_float(s.filled),
                "remaining": clean_float(s.remaining),
                "avgFillPrice": clean_float(s.avgFillPrice),
            }
        )
    return sorted(items, key=lambda i: (i["permId"] or 0, i["clientId"] or 0, i["orderId"] or 0))


async def fetch_account_values(session: GatewaySession, *, all_values: bool = False) -> list[dict]:
    """Account values per managed account (reqAccountUpdatesMulti: one request per account)."""
    ib = session.ib
    for account in session.accounts:
        await session.request(f"account values for {account}", ib.reqAccountUpdatesMultiAsync(account, ""))
    items = [
        {
            "account": v.account,
            "tag": v.tag,
            "value": to_number(v.value),
            "currency": v.currency,
            "modelCode": v.modelCode,
        }
        for v in ib.accountValues()
        if all_values or v.tag in KEY_ACCOUNT_TAGS
    ]
    return sorted(items, key=lambda i: (i["account"], i["tag"], i["currency"], i["modelCode"]))


async def fetch_executions(session: GatewaySession, *, since: dt.datetime | None = None) -> list[dict]:
    """Executions (the gateway keeps about a day of them) with their commission reports."""
    from ib_async import ExecutionFilter

    exec_filter = ExecutionFilter(time=since.strftime("%Y%m%d-%H:%M:%S") if since else "")
    fills = await session.request("executions", session.ib.reqExecutionsAsync(exec_filter))
    items = []
    for f in fills:
        c, e, r = f.contract, f.execution, f.commissionReport
        when = e.time.astimezone(dt.timezone.utc)
        # The filter is the gateway's; filtering again here keeps --since exact whatever the gateway does.
        if since and when < since:
            continue
        has_report = bool(r and r.execId)
        items.append(
            {
                "execId": e.execId,
                "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "account": e.acctNumber,
                "conId": c.conId,
                "symbol": c.symbol,
                "secType": c.secType,
                "localSymbol": c.localSymbol,
                "side": e.side,
                "shares": clean_float(e.shares),
                "price": clean_float(e.price),
                "orderId": clean_int(e.orderId),
                "permId": clean_int(e.permId),
                "clientId": clean_int(e.clientId),
                "exchange": e.exchange,
                "cumQty": clean_float(e.cumQty),
                "avgPrice": clean_float(e.avgPrice),
                "commission": clean_float(r.commission) if has_report else None,
                "commissionCurrency": r.currency if has_report else None,
                "realizedPNL": clean_float(r.realizedPNL) if has_report else None,
            }
        )
    return sorted(items, key=lambda i: (i["time"], i["execId"]))
