"""Contracts for the order smoke: builders, futures front-month selection and a JSON view.

The selection is pure (the gateway's contract details and the current time in, a choice and its reasons out), so
it is tested without a gateway. ib_async is imported only inside the builders: other commands must not load it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from .errors import BadInputError
from .ibvalues import clean_float, clean_int

FUT_EXCHANGES = MappingProxyType(
    {
        "ES": "CME",
        "NQ": "CME",
        "RTY": "CME",
        "6E": "CME",
        "CL": "NYMEX",
        "NG": "NYMEX",
        "GC": "COMEX",
        "SI": "COMEX",
        "ZN": "CBOT",
        "ZB": "CBOT",
        "ZC": "CBOT",
    }
)
DEFAULT_FUT_EXCHANGE = "CME"

# IB sends the time zone of a contract's schedule as-is, often as a legacy alias. Resolve the aliases to canonical
# ids so we do not depend on the host keeping tzdata's backward-compatibility links (Debian moved them to a
# separate package). MET follows tzdata 2024b, where it became a link to Europe/Brussels.
IB_TIME_ZONES = MappingProxyType(
    {
        "US/Eastern": "America/New_York",
        "EST5EDT": "America/New_York",
        "US/Central": "America/Chicago",
        "CST6CDT": "America/Chicago",
        "US/Mountain": "America/Denver",
        "MST7MDT": "America/Denver",
        "US/Pacific": "America/Los_Angeles",
        "PST8PDT": "America/Los_Angeles",
        "GB": "Europe/London",
        "GB-Eire": "Europe/London",
        "MET": "Europe/Brussels",
        "Japan": "Asia/Tokyo",
        "Hongkong": "Asia/Hong_Kong",
        "Israel": "Asia/Jerusalem",
        "Asia/Calcutta": "Asia/Kolkata",
        "Australia/NSW": "Australia/Sydney",
    }
)

_EXPIRY = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})?")
_CLOCK = re.compile(r"([0-9]{2}):?([0-9]{2})(?::?([0-9]{2}))?")


class ContractError(BadInputError):
    """The contract asked for cannot be resolved: malformed or expired expiry, no such month, odd details."""

    error_type = "contract_error"


class AmbiguousContractError(ContractError):
    """Several contracts fit and nothing says which one is meant; .candidates lists them."""

    error_type = "ambiguous_contract"

    def __init__(self, message: str, candidates: list[dict]):
        super().__init__(message)
        self.candidates = candidates

    def to_json(self) -> dict:
        return {**super().to_json(), "candidates": self.candidates}


@dataclass(frozen=True)
class Selection:
    """The chosen candidate exactly as it was given (for ib_async ContractDetails, trade its .contract), and every
    candidate as a dict (conId, localSymbol, tradingClass, lastTradeDateOrContractMonth, expired, reason) to be
    stored with the audit row."""

    chosen: Any
    considered: list[dict]


def parse_expiry(text: str) -> str:
    """Return ``text`` if it is a real calendar month (YYYYMM) or day (YYYYMMDD), else raise ContractError."""
    if type(text) is str and _calendar_day(text) is not None:
        return text
    raise ContractError(f"--expiry must be YYYYMM or YYYYMMDD, got {text!r}")


def _calendar_day(text: str) -> date | None:
    """The day YYYYMMDD names, or the first of the month YYYYMM names; None unless it is a real date."""
    match = _EXPIRY.fullmatch(text)
    if match is None:
        return None
    year, month, day = match.groups()
    try:
        return date(int(year), int(month), int(day or 1))
    except ValueError:
        return None


def future_exchange(symbol: str, exchange: str | None = None) -> str:
    """The exchange to ask for ``symbol``'s futures: the override, the root's known exchange, else CME."""
    return exchange or FUT_EXCHANGES.get(symbol.upper(), DEFAULT_FUT_EXCHANGE)


def stock_contract(symbol: str, exchange: str = "SMART", currency: str = "USD"):
    from ib_async import Stock

    return Stock(symbol, exchange, currency)


def future_contract(symbol: str, exchange: str | None = None, currency: str = "USD", expiry: str | None = None):
    """A futures contract to qualify; without ``expiry`` it matches every listed month (for contract details)."""
    from ib_async import Future

    month = "" if expiry is None else parse_expiry(expiry)
    return Future(symbol, month, future_exchange(symbol, exchange), currency=currency)


def contract_to_json(contract) -> dict:
    """The contract fields the smoke reports, with IB's names; unset sentinels become None."""
    fields = (
        "symbol",
        "secType",
        "lastTradeDateOrContractMonth",
        "exchange",
        "primaryExchange",
        "currency",
        "localSymbol",
        "tradingClass",
    )
    return {
        "conId": clean_int(getattr(contract, "conId", None)),
        **{name: getattr(contract, name, None) for name in fields},
        "multiplier": _multiplier(getattr(contract, "multiplier", None)),
    }


def _multiplier(value: object) -> str | None:
    """IB's multiplier is a string ("50"); a number from elsewhere is written the same way (50.0 -> "50")."""
    if value is None or isinstance(value, str):
        return value
    number = clean_float(value)
    return None if number is None else str(number)


@dataclass(frozen=True, eq=False)  # compared by identity: two candidates may carry the same fields
class _Candidate:
    source: Any
    conId: Any
    localSymbol: str
    tradingClass: str
    day: str  # YYYYMMDD, or YYYYMM when only the month is known
    ends: datetime  # the moment trading stops; expired from then on
    last_trade: str  # the same moment for people: "2025-06-20 08:30 US/Central"

    @property
    def month(self) -> str:
        return self.day[:6]

    def expired(self, now: datetime) -> bool:
        return now >= self.ends

    def summary(self) -> str:
        return f"{self.localSymbol} (tradingClass {self.tradingClass}, conId {self.conId})"


def pick_front_month(
    candidates: Sequence[Any], *, symbol: str, now: datetime, expiry: str | None = None
) -> Selection:
    """Choose the futures contract to trade among ``candidates`` (what contract details returned).

    A candidate is a mapping or an object with conId, localSymbol, tradingClass, lastTradeDateOrContractMonth,
    lastTradeTime and timeZoneId; an ib_async ContractDetails works as is (the contract fields are read from its
    .contract). lastTradeDateOrContractMonth may also carry the time and zone: "20250620 08:30 US/Central".

    A contract has expired once its last trade moment (its date and lastTradeTime in its time zone, or the end of
    that day when no time is known) has come; on its last day it is still live until then. Without ``expiry`` the
    nearest month that has not expired is chosen; ``expiry`` (YYYYMM or YYYYMMDD) chooses that month or day. When
    several contracts fit, the one whose tradingClass equals ``symbol`` wins; otherwise AmbiguousContractError.
    ``now`` must be timezone-aware.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    wanted = None if expiry is None else parse_expiry(expiry)
    parsed = sorted((_parse_candidate(c) for c in candidates), key=lambda c: (c.day, c.localSymbol, c.tradingClass))
    if not parsed:
        raise ContractError(f"no {symbol} futures contracts found")

    matching = parsed if wanted is None else [c for c in parsed if wanted in (c.day, c.month)]
    if not matching:
        if len(wanted) == 6:
            label, available = "months", {c.month for c in parsed}
        else:
            label, available = "last trade dates", {c.day for c in parsed}
        listing = ", ".join(sorted(available))
        raise ContractError(f"no {symbol} contract for expiry {wanted}; available {label}: {listing}")
    live = [c for c in matching if not c.expired(now)]
    if not live:
        last = matching[-1]
        if wanted is None:
            raise ContractError(f"every {symbol} contract found has expired (latest last trade {last.last_trade})")
        raise ContractError(f"expiry {wanted} has expired (last trade {last.last_trade})")

    front = live[0].month
    same_month = [c for c in live if c.month == front]
    chosen = same_month[0]
    if len(same_month) > 1:
        preferred = [c for c in same_month if c.tradingClass == symbol]
        if len(preferred) != 1:
            listing = ", ".join(c.summary() for c in same_month)
            raise AmbiguousContractError(
                f"cannot choose between {len(same_month)} {symbol} contracts in {front} "
                f"({len(preferred)} with tradingClass {symbol}): {listing}",
                [{"localSymbol": c.localSymbol, "tradingClass": c.tradingClass, "conId": c.conId} for c in same_month],
            )
        chosen = preferred[0]

    def reason(c: _Candidate) -> str:
        if c is chosen:
            why = "nearest month that has not expired" if wanted is None else f"the requested expiry {wanted}"
            return f"chosen: {why}" + (f", tradingClass {symbol}" if len(same_month) > 1 else "")
        if c not in matching:
            return f"not the requested expiry {wanted}"
        if c.expired(now):
            return f"expired: last trade {c.last_trade} has passed"
        if c.month == front:
            return f"same month, but tradingClass {c.tradingClass} is not {symbol}"
        return f"later than the front month {front}"

    considered = [
        {
            "conId": c.conId,
            "localSymbol": c.localSymbol,
            "tradingClass": c.tradingClass,
            "lastTradeDateOrContractMonth": c.day,
            "expired": c.expired(now),
            "reason": reason(c),
        }
        for c in parsed
    ]
    return Selection(chosen.source, considered)


_CONTRACT_FIELDS = ("conId", "localSymbol", "tradingClass", "lastTradeDateOrContractMonth")


def _field(candidate: Any, name: str) -> Any:
    if isinstance(candidate, Mapping):
        return candidate.get(name)
    contract = getattr(candidate, "contract", None)
    source = contract if contract is not None and name in _CONTRACT_FIELDS else candidate
    return getattr(source, name, None)


def _parse_candidate(candidate: Any) -> _Candidate:
    local_symbol = _field(candidate, "localSymbol") or ""
    raw = _field(candidate, "lastTradeDateOrContractMonth") or ""
    # The wire form "20250620 08:30 US/Central"; ib_async splits it into the three fields itself.
    day, packed_clock, packed_zone = (raw.split(None, 2) + ["", "", ""])[:3]
    clock = _field(candidate, "lastTradeTime") or packed_clock
    zone_id = _field(candidate, "timeZoneId") or packed_zone

    label = local_symbol or raw
    first = _calendar_day(day)
    if first is None:
        raise ContractError(f"contract {label} has an unreadable last trade date {raw!r}")
    zone = _zone(zone_id, label)

    if len(day) == 6:
        next_month = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
        ends = datetime.combine(next_month, time(), zone)
        last_trade = f"{first:%Y-%m} end of month {zone_id}"
    elif clock:
        at = _clock_time(clock)
        if at is None:
            raise ContractError(f"contract {label} has an unreadable last trade time {clock!r}")
        ends = datetime.combine(first, at, zone)
        last_trade = f"{first:%Y-%m-%d} {at.strftime('%H:%M:%S' if at.second else '%H:%M')} {zone_id}"
    else:
        ends = datetime.combine(first + timedelta(days=1), time(), zone)
        last_trade = f"{first:%Y-%m-%d} end of day {zone_id}"
    return _Candidate(
        source=candidate,
        conId=_field(candidate, "conId"),
        localSymbol=local_symbol,
        tradingClass=_field(candidate, "tradingClass") or "",
        day=day,
        ends=ends,
        last_trade=last_trade,
    )


def _zone(zone_id: str, label: str) -> tzinfo:
    if not zone_id:
        raise ContractError(f"contract {label} has no time zone, so its expiry cannot be judged")
    try:
        return ZoneInfo(IB_TIME_ZONES.get(zone_id, zone_id))
    except (KeyError, ValueError, OSError):  # not found (a KeyError), malformed key, or a directory
        raise ContractError(f"contract {label} has an unknown time zone {zone_id!r}") from None


def _clock_time(text: str) -> time | None:
    """IB writes the last trade time as "08:30" or "08:30:00" (sometimes without colons)."""
    match = _CLOCK.fullmatch(text)
    if match is None:
        return None
    hour, minute, second = (int(part or 0) for part in match.groups())
    try:
        return time(hour, minute, second)
    except ValueError:
        return None
