"""The order-safety decision: may a smoke order be transmitted, and if not, why not.

A transmit needs every rail to say yes; anything unexpected (an odd environment value, an unknown account list,
a port that is not a number) says no. The decision is pure so that it can be tested exhaustively; the smoke
command only feeds it the environment, the port and what the gateway reported.

Rails, in the order they are reported:
- ``ALLOW_ORDERS`` and ``IBKR_PAPER``: each must be exactly the string ``"1"`` (no whitespace, no ``true``).
- ``port``: not a known live port (4001 IB Gateway live, 7496 TWS live). A port we do not know is accepted by this
  rail because people remap ports; it is the accounts rail that then proves the login is paper.
- ``managedAccounts``: known (``None`` means the gateway did not tell us), non-empty, and every account is a paper
  account. ``IBKR_PAPER=1`` on a live login therefore never transmits.
- ``account``: the order's target account, when given, is a paper account the gateway manages.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

MODES = ("whatif", "blocked-transmit", "paper-transmit")

LIVE_PORTS = MappingProxyType({4001: "IB Gateway live", 7496: "TWS live"})
PAPER_PORTS = MappingProxyType({4002: "IB Gateway paper", 7497: "TWS paper"})

ENV_FLAGS = ("ALLOW_ORDERS", "IBKR_PAPER")

# IB paper account ids start with "D" (DU1234567, DUP770846, DF... for advisors); live ones with U, F, I...
_PAPER_ACCOUNT = re.compile(r"D[A-Z0-9]+")
_PAPER_RULE = "paper ids start with 'D'"

# Longer values are cut when shown: no legitimate value is that long, and the audit row need not carry it.
_SHOWN_MAX = 64


def is_paper_account(account: object) -> bool:
    """True for an id like "DU1234567": an uppercase D, then ASCII uppercase letters or digits, nothing else."""
    return type(account) is str and _PAPER_ACCOUNT.fullmatch(account) is not None


@dataclass(frozen=True)
class Decision:
    mode: str
    rails: dict[str, dict]
    reasons: list[str]

    @property
    def transmit(self) -> bool:
        return self.mode == "paper-transmit"

    def to_json(self) -> dict:
        return {
            "mode": self.mode,
            "transmit": self.transmit,
            "rails": {name: dict(rail) for name, rail in self.rails.items()},
            "reasons": list(self.reasons),
        }


def decide(
    *,
    whatif: bool,
    env: Mapping[str, str],
    port: int,
    managed_accounts: Sequence[str] | None,
    target_account: str | None,
) -> Decision:
    """Evaluate every rail (also for a what-if, so the user sees where they stand) and pick the mode.

    With ``whatif`` the mode is "whatif" and no reasons are given: nothing was refused. Otherwise the mode is
    "paper-transmit" only if every rail is ok, else "blocked-transmit" with one reason per failed rail.
    """
    accounts = None if managed_accounts is None else list(managed_accounts)
    checks = [(name, *_env_rail(name, env.get(name))) for name in ENV_FLAGS]
    checks.append(("port", *_port_rail(port)))
    checks.append(("managedAccounts", *_accounts_rail(accounts)))
    checks.append(("account", *_target_rail(target_account, accounts)))

    rails = {name: {"value": value, "ok": reason is None} for name, value, reason in checks}
    if whatif:
        return Decision("whatif", rails, [])
    reasons = [reason for _, _, reason in checks if reason is not None]
    return Decision("blocked-transmit" if reasons else "paper-transmit", rails, reasons)


def _env_rail(name: str, value: object) -> tuple[object, str | None]:
    if type(value) is str and value == "1":
        return value, None
    return _json_value(value), f"{name} is {_shown(value)}, not exactly '1'"


def _port_rail(port: object) -> tuple[object, str | None]:
    if type(port) is not int:
        return _json_value(port), f"port {_shown(port)} is not a port number"
    if port in LIVE_PORTS:
        return port, f"port {port} is the {LIVE_PORTS[port]} port"
    return port, None


def _accounts_rail(accounts: list | None) -> tuple[object, str | None]:
    if accounts is None:
        return None, "the gateway's managed accounts could not be determined"
    value = [_json_value(account) for account in accounts]
    if not accounts:
        return value, "the gateway reported no managed accounts"
    not_paper = [_shown(account) for account in accounts if not is_paper_account(account)]
    if not_paper:
        return value, f"not every managed account is a paper account ({_PAPER_RULE}): {', '.join(not_paper)}"
    return value, None


def _target_rail(target: object, accounts: list | None) -> tuple[object, str | None]:
    if target is None:
        return None, None
    if not is_paper_account(target):
        return _json_value(target), f"target account {_shown(target)} is not a paper account ({_PAPER_RULE})"
    if accounts is None or target not in accounts:
        return target, f"target account {_shown(target)} is not one of the gateway's managed accounts"
    return target, None


def _shown(value: object) -> str:
    """The value for a reason sentence: quoted and escaped, so whitespace and control characters are visible."""
    if value is None:
        return "unset"
    if type(value) is int:
        return str(value)
    if type(value) is not str:
        return f"a {type(value).__name__} value"
    if len(value) > _SHOWN_MAX:
        return f"{value[:_SHOWN_MAX]!r}... ({len(value)} characters)"
    return repr(value)


def _json_value(value: object) -> object:
    """The value for the rails JSON: always serialisable and encodable as UTF-8, cut when very long."""
    if value is None or type(value) is int:
        return value
    if type(value) is not str:
        return f"<{type(value).__name__}>"
    if len(value) > _SHOWN_MAX:
        value = value[:_SHOWN_MAX] + "..."
    # Environment values can carry lone surrogates (undecodable bytes); escape them rather than fail later.
    return value.encode("utf-8", "backslashreplace").decode("utf-8")
