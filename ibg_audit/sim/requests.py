"""Parsers for the requests clients send at server version 178.

Both clients' encodings are accepted: ib_async writes unset doubles as "" and the official client as
"1.7976931348623157e+308"; the official client writes an unset strike as "" (10.4x) or "0.0".
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .protocol import UNSET_DOUBLE, ProtocolError, parse_bool, parse_decimal, parse_double, parse_int


class In:
    PLACE_ORDER = 3
    CANCEL_ORDER = 4
    REQ_OPEN_ORDERS = 5
    REQ_ACCOUNT_UPDATES = 6
    REQ_EXECUTIONS = 7
    REQ_IDS = 8
    REQ_CONTRACT_DETAILS = 9
    SET_SERVER_LOG_LEVEL = 14
    REQ_AUTO_OPEN_ORDERS = 15
    REQ_ALL_OPEN_ORDERS = 16
    REQ_MANAGED_ACCTS = 17
    REQ_CURRENT_TIME = 49
    REQ_GLOBAL_CANCEL = 58
    REQ_POSITIONS = 61
    REQ_ACCOUNT_SUMMARY = 62
    CANCEL_ACCOUNT_SUMMARY = 63
    CANCEL_POSITIONS = 64
    START_API = 71
    REQ_ACCOUNT_UPDATES_MULTI = 76
    CANCEL_ACCOUNT_UPDATES_MULTI = 77
    REQ_COMPLETED_ORDERS = 99


# Every request id the TWS API defines (ibapi message.OUT); a valid id the sim does not serve is logged and
# ignored, anything else is garbage and drops the connection.
KNOWN_REQUEST_IDS = frozenset(range(1, 110))


class Fields:
    """Sequential reader over a message's fields; running out raises ProtocolError."""

    def __init__(self, fields: list[str], start: int = 1):
        self.fields = fields
        self.i = start

    def str(self) -> str:
        if self.i >= len(self.fields):
            raise ProtocolError(f"message {self.fields[0]} ended after {len(self.fields)} fields")
        value = self.fields[self.i]
        self.i += 1
        return value

    def take(self, n: int) -> tuple[str, ...]:
        return tuple(self.str() for _ in range(n))

    def int(self, default: int | None = 0) -> int | None:
        return parse_int(self.str(), default)

    def double(self) -> float | None:
        return parse_double(self.str())

    def bool(self) -> bool:
        return parse_bool(self.str())

    def decimal(self) -> Decimal | None:
        return parse_decimal(self.str())


def request_id(fields: list[str]) -> int:
    """The id a reply or error for this request would carry (-1 for requests without one)."""
    msg_id = int(fields[0])
    position = {3: 1, 4: 2, 7: 2, 9: 2, 62: 2, 76: 2}.get(msg_id)
    if position is None or position >= len(fields):
        return -1
    return parse_int(fields[position], -1)


def _contract(r: Fields) -> dict:
    return {
        "conId": r.int(),
        "symbol": r.str(),
        "secType": r.str(),
        "lastTradeDateOrContractMonth": r.str(),
        "strike": r.double() or 0.0,
        "right": r.str(),
        "multiplier": r.str(),
        "exchange": r.str(),
        "primaryExchange": r.str(),
        "currency": r.str(),
        "localSymbol": r.str(),
        "tradingClass": r.str(),
    }


def parse_contract_details(fields: list[str]) -> tuple[int, dict]:
    r = Fields(fields, 2)  # skip version
    req_id = r.int()
    query = _contract(r)
    query["includeExpired"] = r.bool()
    query["secIdType"], query["secId"] = r.str(), r.str()
    return req_id, query


# ---- executions ----

_TIME = re.compile(r"(\d{8})[ -](\d{2}):(\d{2})(?::(\d{2}))?(?: (.+))?")


def parse_exec_time(text: str) -> dt.datetime | None:
    """ExecutionFilter.time: "", "yyyymmdd hh:mm[:ss]" or "yyyymmdd-hh:mm[:ss]", optionally followed by a time
    zone name ("UTC", "US/Eastern"); without a zone the time is taken as UTC. Returns an aware UTC datetime."""
    text = text.strip()
    if not text:
        return None
    m = _TIME.fullmatch(text)
    if not m:
        raise ProtocolError(f"invalid ExecutionFilter time {text!r}")
    day, hh, mm, ss, zone = m.groups()
    try:
        tz = ZoneInfo(zone) if zone else dt.UTC
        local = dt.datetime.strptime(f"{day}{hh}{mm}{ss or '00'}", "%Y%m%d%H%M%S")
    except (ZoneInfoNotFoundError, ValueError):
        raise ProtocolError(f"invalid ExecutionFilter time {text!r}") from None
    return local.replace(tzinfo=tz).astimezone(dt.UTC)


@dataclass
class ExecFilter:
    client_id: int = 0
    account: str = ""
    time: dt.datetime | None = None
    symbol: str = ""
    sec_type: str = ""
    exchange: str = ""
    side: str = ""


def parse_executions(fields: list[str]) -> tuple[int, ExecFilter]:
    r = Fields(fields, 2)
    req_id = r.int()
    f = ExecFilter(client_id=r.int(), account=r.str())
    time_text = r.str()
    f.symbol, f.sec_type, f.exchange, f.side = r.str(), r.str(), r.str(), r.str()
    f.time = parse_exec_time(time_text)
    return req_id, f


# ---- placeOrder ----

# fields after the condition type, per OrderCondition type (ib_async order.py / ibapi order_condition.py)
CONDITION_FIELDS = {1: 6, 3: 3, 4: 3, 5: 4, 6: 5, 7: 5}


@dataclass
class PlaceOrder:
    """A placeOrder request, parsed field by field at sv 178 (conditional groups walked in wire order)."""

    order_id: int
    contract: dict
    action: str
    total_quantity: Decimal
    order_type: str
    lmt_price: float | None
    aux_price: float | None
    tif: str
    oca_group: str
    account: str
    open_close: str
    origin: int
    order_ref: str
    transmit: bool
    parent_id: int
    outside_rth: bool
    hidden: bool
    good_after_time: str = ""
    good_till_date: str = ""
    model_code: str = ""
    trail_stop_price: float | None = None
    trailing_percent: float | None = None
    scale_price_increment: str = ""
    scale_extra: tuple[str, ...] = ()
    hedge: tuple[str, ...] = ()
    delta_neutral_contract: tuple[str, ...] = ()
    algo_strategy: str = ""
    algo_params: tuple[tuple[str, str], ...] = ()
    what_if: bool = False
    peg_bench: tuple[str, ...] = ()
    conditions: tuple[tuple[str, ...], ...] = ()
    conditions_ignore_rth: bool = False
    conditions_cancel_order: bool = False
    cash_qty: float | None = None
    manual_order_time: str = ""
    combo_legs: int = 0
    fields: list[str] = field(default_factory=list, repr=False)


def parse_place_order(fields: list[str]) -> PlaceOrder:
    r = Fields(fields)
    order_id = r.int()
    contract = _contract(r)
    contract["secIdType"], contract["secId"] = r.str(), r.str()
    p = PlaceOrder(
        order_id=order_id,
        contract=contract,
        action=r.str().upper(),
        total_quantity=r.decimal() or Decimal(0),
        order_type=r.str().upper(),
        lmt_price=r.double(),
        aux_price=r.double(),
        tif=r.str() or "DAY",
        oca_group=r.str(),
        account=r.str(),
        open_close=r.str(),
        origin=r.int(),
        order_ref=r.str(),
        transmit=r.bool(),
        parent_id=r.int(),
        outside_rth=False,
        hidden=False,
        fields=fields,
    )
    r.take(4)  # blockOrder, sweepToFill, displaySize, triggerMethod
    p.outside_rth, p.hidden = r.bool(), r.bool()
    if contract["secType"] == "BAG":
        legs = r.int()
        r.take(8 * legs)
        r.take(r.int())  # orderComboLegs: one price each
        r.take(2 * r.int())  # smartComboRoutingParams
        p.combo_legs = legs
    r.take(2)  # deprecated sharesAllocation, discretionaryAmt
    p.good_after_time, p.good_till_date = r.str(), r.str()
    r.take(3)  # faGroup, faMethod, faPercentage (no faProfile since sv 177)
    p.model_code = r.str()
    # shortSaleSlot .. volatilityType
    r.take(21)
    dn_type, _dn_aux = r.str(), r.str()
    if dn_type:
        r.take(8)
    r.take(2)  # continuousUpdate, referencePriceType
    p.trail_stop_price, p.trailing_percent = r.double(), r.double()
    r.take(2)  # scaleInitLevelSize, scaleSubsLevelSize
    p.scale_price_increment = r.str()
    increment = parse_double(p.scale_price_increment)
    if increment is not None and 0 < increment < UNSET_DOUBLE:
        p.scale_extra = r.take(7)
    r.take(3)  # scaleTable, activeStartTime, activeStopTime
    hedge_type = r.str()
    p.hedge = (hedge_type, r.str()) if hedge_type else ()
    r.take(4)  # optOutSmartRouting, clearingAccount, clearingIntent, notHeld
    if r.bool():
        p.delta_neutral_contract = r.take(3)
    p.algo_strategy = r.str()
    if p.algo_strategy:
        count = r.int()
        p.algo_params = tuple(r.take(2) for _ in range(count))
    r.str()  # algoId
    p.what_if = r.bool()
    r.take(4)  # orderMiscOptions, solicited, randomizeSize, randomizePrice
    if p.order_type in ("PEG BENCH", "PEGBENCH"):
        p.peg_bench = r.take(5)
    count = r.int()
    conditions = []
    for _ in range(count):
        cond_type = r.int()
        if cond_type not in CONDITION_FIELDS:
            raise ProtocolError(f"unknown order condition type {cond_type}")
        conditions.append((str(cond_type), *r.take(CONDITION_FIELDS[cond_type])))
    p.conditions = tuple(conditions)
    if count:
        p.conditions_ignore_rth, p.conditions_cancel_order = r.bool(), r.bool()
    r.take(10)  # adjustedOrderType .. softDollarTier.value
    p.cash_qty = r.double()
    r.take(10)  # mifid2 x4, dontUseAutoPriceForHedge, isOmsContainer, discretionaryUpToLimitPrice,
    #             usePriceMgmtAlgo, duration, postToAts
    r.take(2)  # autoCancelParent, advancedErrorOverride
    p.manual_order_time = r.str()
    if contract["exchange"] == "IBKRATS":
        r.str()  # minTradeQty
    if p.order_type in ("PEG BEST", "PEGBEST"):
        r.take(2)  # minCompeteSize, competeAgainstBestOffset
        if fields[r.i - 1] == "Infinite":
            r.take(2)  # midOffsetAtWhole, midOffsetAtHalf
    elif p.order_type in ("PEG MID", "PEGMID"):
        r.take(2)
    if r.i != len(fields):
        # a misaligned walk would misread every field after the mistake: refuse rather than guess
        raise ProtocolError(f"placeOrder has {len(fields) - r.i} unexpected trailing fields")
    return p


def parse_cancel_order(fields: list[str]) -> int:
    r = Fields(fields, 2)
    return r.int()
