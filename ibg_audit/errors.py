"""Typed errors and the exit codes they map to.

The library raises these; the CLI turns them into one clear message (or a JSON error object) and the
documented exit code. Keep the numbers stable: scripts and coding agents branch on them.
"""

# Exit codes (documented in README.md and AGENTS.md).
EXIT_OK = 0
EXIT_CHANGES = 1  # `diff --exit-code` found changes; `doctor` found a problem
EXIT_BAD_INPUT = 2  # same code click uses for usage errors
EXIT_NOT_CONNECTED = 3
EXIT_GATEWAY_ERROR = 4
EXIT_STORE_ERROR = 5
EXIT_CANCEL_UNCONFIRMED = 6
EXIT_BLOCKED_TRANSMIT = 10  # not an error: the forced simulation ran, nothing was transmitted

# What an operator should check first; shown with every connection failure.
TROUBLESHOOTING_HINT = (
    "Is IB Gateway/TWS running and logged in? Is the API enabled (Configure > Settings > API) with "
    "127.0.0.1 in Trusted IPs? Paper IB Gateway listens on 4002 (TWS paper: 7497). "
    "Is another program using the same client id?"
)


class IbgAuditError(Exception):
    """Base class: a failure the user can act on, never a bug."""

    exit_code = 1
    error_type = "error"

    def __init__(self, message: str, *, code: int | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.hint = hint

    def to_json(self) -> dict:
        return {
            "type": self.error_type,
            "message": self.message,
            "code": self.code,
            "hint": self.hint,
        }


class BadInputError(IbgAuditError):
    exit_code = EXIT_BAD_INPUT
    error_type = "bad_input"


class NotConnectedError(IbgAuditError):
    """No usable API session: port closed, handshake never answered, connection dropped, client id in use."""

    exit_code = EXIT_NOT_CONNECTED
    error_type = "not_connected"

    def __init__(self, message: str, *, code: int | None = None, hint: str | None = TROUBLESHOOTING_HINT):
        super().__init__(message, code=code, hint=hint)


class GatewayError(IbgAuditError):
    """Connected, but the gateway refused or failed the request (IB error code in .code)."""

    exit_code = EXIT_GATEWAY_ERROR
    error_type = "gateway_error"


class StoreError(IbgAuditError):
    exit_code = EXIT_STORE_ERROR
    error_type = "store_error"
