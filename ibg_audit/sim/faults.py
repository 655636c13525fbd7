"""Faults the simulated gateway can be told to show, parsed from short specs such as "delay:50".

- refuse: the port is bound but never listens, so connecting fails with "connection refused"
- no-handshake: the hello is read but never answered (the client's connect times out)
- drop-after:N: a connection is closed after the gateway has sent it N messages (handshake reply excluded)
- delay:MS: every message reaches the client MS milliseconds after it was produced (order is kept)
- error:REQUEST:CODE: every REQUEST (a name in REQUEST_TYPES) is answered with error CODE instead of data
- reject-orders[:REASON]: every placeOrder (what-if included) gets error 201 "Order rejected - reason:REASON"
- pacing: every request after startApi gets error 100 "Max rate of messages per second has been exceeded"
- readonly: order requests get error 321, like a gateway with "Read-Only API" ticked
"""

from __future__ import annotations

from dataclasses import dataclass

# request names usable in "error:REQUEST:CODE", with the incoming message ids they cover
REQUEST_TYPES: dict[str, int] = {
    "placeOrder": 3,
    "cancelOrder": 4,
    "openOrders": 5,
    "accountUpdates": 6,
    "executions": 7,
    "ids": 8,
    "contractDetails": 9,
    "autoOpenOrders": 15,
    "allOpenOrders": 16,
    "managedAccounts": 17,
    "currentTime": 49,
    "globalCancel": 58,
    "positions": 61,
    "accountSummary": 62,
    "accountUpdatesMulti": 76,
    "completedOrders": 99,
}

KINDS = ("refuse", "no-handshake", "drop-after", "delay", "error", "reject-orders", "pacing", "readonly")


class FaultSpecError(ValueError):
    """A fault spec that cannot be parsed; the message says what is accepted."""


@dataclass(frozen=True)
class Fault:
    kind: str
    count: int = 0  # drop-after
    delay_ms: float = 0.0  # delay
    request: str = ""  # error
    code: int = 0  # error
    reason: str = "Simulated rejection"  # reject-orders

    @property
    def msg_id(self) -> int:
        return REQUEST_TYPES[self.request]

    def __str__(self) -> str:
        return {
            "drop-after": f"drop-after:{self.count}",
            "delay": f"delay:{self.delay_ms:g}",
            "error": f"error:{self.request}:{self.code}",
        }.get(self.kind, self.kind)


def _number(text: str, spec: str, what: str, cast):
    try:
        value = cast(text)
    except ValueError:
        raise FaultSpecError(f"bad fault {spec!r}: {what} must be a number") from None
    if value < 0:
        raise FaultSpecError(f"bad fault {spec!r}: {what} must not be negative")
    return value


def parse_fault(spec: str) -> Fault:
    """Parse one fault spec (see the table in this module's docstring)."""
    kind, _, rest = spec.strip().partition(":")
    if kind in ("refuse", "no-handshake", "pacing", "readonly") and not rest:
        return Fault(kind)
    if kind == "reject-orders":
        return Fault(kind, reason=rest or Fault.reason)
    if kind == "drop-after" and rest:
        return Fault(kind, count=_number(rest, spec, "N", int))
    if kind == "delay" and rest:
        return Fault(kind, delay_ms=_number(rest, spec, "MS", float))
    if kind == "error" and rest:
        request, _, code = rest.partition(":")
        if request not in REQUEST_TYPES:
            raise FaultSpecError(
                f"bad fault {spec!r}: unknown request {request!r}; use one of {', '.join(REQUEST_TYPES)}"
            )
        return Fault(kind, request=request, code=_number(code, spec, "CODE", int))
    raise FaultSpecError(
        f"bad fault {spec!r}: expected one of refuse, no-handshake, drop-after:N, delay:MS, "
        "error:REQUEST:CODE, reject-orders[:REASON], pacing, readonly"
    )
