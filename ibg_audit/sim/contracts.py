"""Contract definitions resolved from a scenario, and contract lookup the way reqContractDetails matches.

Futures are written in a scenario as a family with a quarterly cycle; options with an expiry "monthsAhead". Both
are turned into concrete contracts relative to the gateway's "today", with a conId that depends only on the
expiry (so the same month keeps the same conId on every run).
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass, replace

from .scenario import ScenarioError

MONTH_CODES = "FGHJKMNQUVXZ"
QUARTERLY = (3, 6, 9, 12)

_STK_ORDER_TYPES = (
    "ACTIVETIM,AD,ADJUST,ALERT,ALGO,ALLOC,AON,AVGCOST,BASKET,BENCHPX,CASHQTY,COND,CONDORDER,DARKONLY,DARKPOLL,DAY,"
    "DEACT,DEACTDIS,DEACTEOD,DIS,DUR,GAT,GTC,GTD,GTT,HID,IBKRATS,ICE,IMB,IOC,LIT,LMT,LOC,MIDPX,MIT,MKT,MOC,MTL,"
    "NGCOMB,NODARK,NONALGO,OCA,OPG,OPGREROUT,PEGBENCH,PEGMID,POSTATS,POSTONLY,PREOPGRTH,PRICECHK,REL,REL2MID,"
    "RELPCTOFS,RPI,RTH,SCALE,SCALEODD,SCALERST,SIZECHK,SNAPMID,SNAPMKT,SNAPREL,STP,STPLMT,SWEEP,TRAIL,TRAILLIT,"
    "TRAILLMT,TRAILMIT,WHATIF"
)
_FUT_ORDER_TYPES = (
    "ACTIVETIM,AD,ADJUST,ALERT,ALGO,ALLOC,AVGCOST,BASKET,BENCHPX,COND,CONDORDER,DAY,DEACT,DEACTDIS,DEACTEOD,GAT,GTC,"
    "GTD,GTT,HID,ICE,IOC,LIT,LMT,LTH,MIT,MKT,MTL,NGCOMB,NONALGO,OCA,PEGBENCH,SCALE,SCALERST,SNAPMID,SNAPMKT,SNAPREL,"
    "STP,STPLMT,TRAIL,TRAILLIT,TRAILLMT,TRAILMIT,WHATIF"
)
_OPT_ORDER_TYPES = (
    "ACTIVETIM,AD,ADJUST,ALERT,ALLOC,AVGCOST,BASKET,COND,CONDORDER,DAY,DEACT,DEACTDIS,DEACTEOD,DIS,GAT,GTC,GTD,GTT,"
    "HID,ICE,IOC,LIT,LMT,MIT,MKT,MTL,NGCOMB,NONALGO,OCA,OPENCLOSE,PEGMIDVOL,PEGMKTVOL,PEGPRMVOL,PEGSRFVOL,POSTONLY,"
    "PRICECHK,REL,REL2MID,RELPCTOFS,RTH,SCALE,SCALERST,SIZECHK,SNAPMID,SNAPMKT,SNAPREL,STP,STPLMT,TRAIL,TRAILLIT,"
    "TRAILLMT,TRAILMIT,VOLAT,WHATIF"
)
_CASH_ORDER_TYPES = (
    "ACTIVETIM,AD,ADJUST,ALERT,ALGO,ALLOC,AVGCOST,BASKET,CASHQTY,COND,CONDORDER,DAY,DEACT,DEACTDIS,DEACTEOD,GAT,GTC,"
    "GTD,GTT,HID,IOC,LIT,LMT,MIT,MKT,NONALGO,OCA,REL,RELPCTOFS,SCALE,SCALERST,STP,STPLMT,TRAIL,TRAILLIT,TRAILLMT,"
    "TRAILMIT,WHATIF"
)
DEFAULT_ORDER_TYPES = {
    "STK": _STK_ORDER_TYPES,
    "FUT": _FUT_ORDER_TYPES,
    "OPT": _OPT_ORDER_TYPES,
    "CASH": _CASH_ORDER_TYPES,
    "IND": "",
}


@dataclass(frozen=True)
class Contract:
    key: str
    conId: int
    symbol: str
    secType: str
    currency: str
    exchange: str
    primaryExchange: str = ""
    lastTradeDate: str = ""  # yyyymmdd for FUT/OPT, "" otherwise
    strike: float = 0.0
    right: str = ""
    multiplier: str = ""
    localSymbol: str = ""
    tradingClass: str = ""
    price: float = 0.0
    expired: bool = False
    # contract details
    longName: str = ""
    marketName: str = ""
    minTick: float = 0.01
    orderTypes: str = ""
    validExchanges: str = ""
    underConId: int = 0
    underSymbol: str = ""
    underSecType: str = ""
    timeZoneId: str = "US/Eastern"
    lastTradeTime: str = ""
    tradingHours: str = ""
    liquidHours: str = ""
    industry: str = ""
    category: str = ""
    subcategory: str = ""
    stockType: str = ""
    marketRuleIds: str = ""
    evRule: str = ""
    evMultiplier: str = ""
    aggGroup: int = 2147483647
    minSize: str = "1"
    sizeIncrement: str = "1"
    suggestedSizeIncrement: str = "1"
    secIds: tuple[tuple[str, str], ...] = ()
    execExchange: str = ""  # where fills are reported (a SMART order fills on a real venue)
    marginInitial: float | None = None  # per contract, FUT only
    marginMaintenance: float | None = None

    @property
    def mult(self) -> float:
        return float(self.multiplier) if self.multiplier else 1.0

    @property
    def contractMonth(self) -> str:
        return self.lastTradeDate[:6] if self.secType in ("FUT", "OPT") else ""

    @property
    def positionExchange(self) -> str:
        """reqPositions reports the primary listing for stocks and no exchange for derivatives and forex."""
        return self.primaryExchange if self.secType == "STK" else ""


def third_friday(year: int, month: int) -> dt.date:
    weeks = calendar.monthcalendar(year, month)
    fridays = [w[calendar.FRIDAY] for w in weeks if w[calendar.FRIDAY]]
    return dt.date(year, month, fridays[2])


def _add_months(year: int, month: int, n: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + n
    return index // 12, index % 12 + 1


def quarterly_expiries(today: dt.date, ahead: int, expired: int) -> list[tuple[dt.date, int]]:
    """Third-Friday quarterly expiries: `expired` past ones (offset < 0) and `ahead` live ones (offset 0 = front)."""
    year, month = today.year, today.month
    while month not in QUARTERLY:
        year, month = _add_months(year, month, 1)
    if third_friday(year, month) < today:
        year, month = _add_months(year, month, 3)
    return [
        (third_friday(*_add_months(year, month, 3 * offset)), offset)
        for offset in range(-expired, ahead)
    ]


def _secids(spec: dict) -> tuple[tuple[str, str], ...]:
    return tuple((str(k), str(v)) for k, v in spec.get("secIds", {}).items())


def session_hours(sessions: str, today: dt.date, days: int = 7) -> str:
    """TWS's tradingHours/liquidHours text for `days` days from today, from a daily "HHMM-HHMM" session.

    A session whose start is after its end begins the evening before (futures, forex): "1700-1600" on a Tuesday
    is "<Mon>:1700-<Tue>:1600". Saturdays are CLOSED; so are Sundays unless an evening session opens then.
    """
    if not sessions:
        return ""
    start, _, end = sessions.partition("-")
    if not (len(start) == len(end) == 4 and start.isdigit() and end.isdigit()):
        raise ValueError(f"session hours must look like 0930-1600, not {sessions!r}")
    overnight = start > end
    parts = []
    for n in range(days):
        day = today + dt.timedelta(days=n)
        if day.weekday() == calendar.SATURDAY or (day.weekday() == calendar.SUNDAY and not overnight):
            parts.append(f"{day:%Y%m%d}:CLOSED")
        elif day.weekday() != calendar.SUNDAY:
            opens = day - dt.timedelta(days=1) if overnight else day
            parts.append(f"{opens:%Y%m%d}:{start}-{day:%Y%m%d}:{end}")
    return ";".join(parts)


def _common(spec: dict, today: dt.date) -> dict:
    return dict(
        symbol=spec["symbol"],
        secType=spec["secType"],
        currency=spec.get("currency", "USD"),
        exchange=spec.get("exchange", "SMART"),
        primaryExchange=spec.get("primaryExchange", ""),
        multiplier=str(spec.get("multiplier", "")),
        tradingClass=spec.get("tradingClass", ""),
        price=float(spec.get("price", 0.0)),
        longName=spec.get("longName", ""),
        marketName=spec.get("marketName", spec.get("tradingClass", "")),
        minTick=float(spec.get("minTick", 0.01)),
        orderTypes=spec.get("orderTypes", DEFAULT_ORDER_TYPES[spec["secType"]]),
        validExchanges=spec.get("validExchanges", spec.get("exchange", "SMART")),
        underConId=int(spec.get("underConId", 0)),
        underSymbol=spec.get("underSymbol", ""),
        underSecType=spec.get("underSecType", ""),
        timeZoneId=spec.get("timeZoneId", "US/Eastern"),
        tradingHours=session_hours(spec.get("tradingHours", ""), today),
        liquidHours=session_hours(spec.get("liquidHours", ""), today),
        industry=spec.get("industry", ""),
        category=spec.get("category", ""),
        subcategory=spec.get("subcategory", ""),
        stockType=spec.get("stockType", ""),
        marketRuleIds=spec.get("marketRuleIds", ""),
        aggGroup=int(spec.get("aggGroup", 2147483647)),
        minSize=str(spec.get("minSize", "1")),
        sizeIncrement=str(spec.get("sizeIncrement", "1")),
        suggestedSizeIncrement=str(spec.get("suggestedSizeIncrement", "1")),
        secIds=_secids(spec),
        execExchange=spec.get("execExchange", spec.get("primaryExchange") or spec.get("exchange", "SMART")),
    )


def build_contracts(specs: list[dict], today: dt.date, source: str) -> dict[str, Contract]:
    """Resolve the scenario's contract specs into contracts keyed by their scenario key.

    A future family with key K yields keys K (front month), K+1, K+2 ... and K-1, K-2 ... for expired months.
    """
    out: dict[str, Contract] = {}
    for i, spec in enumerate(specs):
        where = f"{source}: contracts[{i}]"
        try:
            out.update(_build_one(spec, today, where))
        except ScenarioError:
            raise
        except (TypeError, ValueError, AttributeError) as e:
            raise ScenarioError(f"{where}: {e}") from None
    return out


def _build_one(spec: dict, today: dt.date, where: str) -> dict[str, Contract]:
    key = spec.get("key", spec["symbol"])
    common = _common(spec, today)
    if spec["secType"] == "FUT":
        return _future_family(key, spec, common, today, where)
    if spec["secType"] == "OPT":
        return {key: _option(key, spec, common, today, where)}
    if "conId" not in spec:
        raise ScenarioError(f"{where}: conId is required for {spec['secType']}")
    return {key: Contract(key=key, conId=int(spec["conId"]), localSymbol=spec.get("localSymbol", spec["symbol"]),
                          **common)}


def _future_family(key: str, spec: dict, common: dict, today: dt.date, where: str) -> dict[str, Contract]:
    cycle = spec.get("expiries", {})
    try:
        base = int(spec["conIdBase"])
        ahead, expired = int(cycle.get("ahead", 4)), int(cycle.get("expired", 1))
        step = float(spec.get("calendarSpread", 0.0))
        margin = spec.get("margin", {})
        init, maint = margin.get("initial"), margin.get("maintenance")
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ScenarioError(f"{where}: a FUT family needs conIdBase and numeric expiries/margin settings") from None
    out = {}
    for expiry, offset in quarterly_expiries(today, ahead, expired):
        fields = dict(common)
        fields["price"] = round(common["price"] + step * offset, 2)
        contract = Contract(
            key=key if offset == 0 else f"{key}{offset:+d}",
            conId=base + expiry.year * 100 + expiry.month,  # stable per expiry, unique per month
            lastTradeDate=expiry.strftime("%Y%m%d"),
            localSymbol=f"{spec['symbol']}{MONTH_CODES[expiry.month - 1]}{expiry.year % 10}",
            lastTradeTime=spec.get("lastTradeTime", ""),
            expired=offset < 0,
            marginInitial=None if init is None else float(init),
            marginMaintenance=None if maint is None else float(maint),
            **fields,
        )
        out[contract.key] = contract
    return out


def _option(key: str, spec: dict, common: dict, today: dt.date, where: str) -> Contract:
    try:
        base = int(spec["conIdBase"])
        months = int(spec.get("expiry", {}).get("monthsAhead", 1))
        strike = float(spec["strike"])
        right = spec["right"]
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ScenarioError(f"{where}: an OPT needs conIdBase, strike, right and expiry.monthsAhead") from None
    if right not in ("C", "P") or months < 1:
        raise ScenarioError(f"{where}: right must be C or P and expiry.monthsAhead at least 1")
    expiry = third_friday(*_add_months(today.year, today.month, months))
    occ = f"{spec['symbol']:<6}{expiry:%y%m%d}{right}{round(strike * 1000):08d}"
    return Contract(
        key=key,
        conId=base + int(expiry.strftime("%y%m%d")) * 10 + (1 if right == "C" else 2),
        lastTradeDate=expiry.strftime("%Y%m%d"),
        strike=strike,
        right=right,
        localSymbol=occ,
        **common,
    )


def _matches_expiry(contract: Contract, requested: str) -> bool:
    return contract.lastTradeDate.startswith(requested.split(" ")[0].replace("-", ""))


_RIGHTS = {"C": "C", "CALL": "C", "P": "P", "PUT": "P"}
_EXCHANGE_ALIASES = {"GLOBEX": "CME"}


def match_contracts(contracts, query: dict) -> list[Contract]:
    """Contracts matching a reqContractDetails query; a conId alone identifies a contract.

    Returned contracts carry the requested exchange when it is one of their valid exchanges (a SMART request for
    a stock answers with exchange SMART), like the real gateway does.
    """
    include_expired = query.get("includeExpired", False)
    if query.get("conId"):
        found = [c for c in contracts if c.conId == query["conId"]]
    else:
        found = [c for c in contracts if _matches(c, query) and (include_expired or not c.expired)]
    exchange = _EXCHANGE_ALIASES.get(query.get("exchange", ""), query.get("exchange", ""))
    if exchange:
        found = [replace(c, exchange=exchange) for c in found]
    return sorted(found, key=lambda c: (c.secType, c.lastTradeDate, c.strike, c.right, c.conId))


def _matches(c: Contract, q: dict) -> bool:
    if not q.get("symbol") and not q.get("localSymbol"):
        return False
    checks = [
        (q.get("symbol"), lambda v: v.upper() == c.symbol.upper()),
        (q.get("secType"), lambda v: v.upper() == c.secType),
        (q.get("lastTradeDateOrContractMonth"), lambda v: _matches_expiry(c, v)),
        (q.get("strike"), lambda v: abs(v - c.strike) < 1e-9),
        (q.get("right"), lambda v: _RIGHTS.get(v.upper()) == c.right),
        (q.get("multiplier"), lambda v: c.multiplier and float(v) == c.mult),
        (q.get("exchange"), lambda v: _EXCHANGE_ALIASES.get(v.upper(), v.upper())
            in c.validExchanges.split(",") + [c.exchange]),
        (q.get("primaryExchange"), lambda v: v.upper() == c.primaryExchange),
        (q.get("currency"), lambda v: v.upper() == c.currency),
        (q.get("localSymbol"), lambda v: v.replace(" ", "").upper() == c.localSymbol.replace(" ", "").upper()),
        (q.get("tradingClass"), lambda v: v.upper() == c.tradingClass.upper()),
    ]
    return all(not value or test(value) for value, test in checks)
