"""TWS socket framing and the text field codec (server versions below 201).

Every message is a 4-byte big-endian length followed by NUL-terminated ASCII fields, the first field being the
message id. Values are written the way a real gateway writes them: doubles as Java's ``Double.toString`` prints
them where recordings show it ("0.0", "1.7976931348623157E308"), sizes and most prices as plain decimals.
"""

from __future__ import annotations

import math
import re
import struct
from decimal import Decimal

SERVER_VERSION = 178  # MIN_SERVER_VER_PENDING_PRICE_REVISION, the highest ib_async 2.1 speaks
MAX_FRAME = 0xFFFFFF  # the official client's MAX_MSG_LEN; anything larger is garbage
HELLO_PREFIX = b"API\0"

UNSET_DOUBLE = 1.7976931348623157e308
UNSET_INTEGER = 2**31 - 1
UNSET_LONG = 2**63 - 1
UNSET_DOUBLE_TEXT = "1.7976931348623157E308"
_UNSET_DOUBLE_INPUTS = {"", "1.7976931348623157E308", "1.7976931348623157e+308", "Infinity", "inf"}


class ProtocolError(ValueError):
    """A client sent bytes that are not a valid TWS API message; the connection is dropped."""


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def encode_fields(fields) -> bytes:
    """Encode already formatted string fields into one framed message."""
    return frame("".join(f"{f}\0" for f in fields).encode("utf-8"))


def decode_payload(payload: bytes) -> list[str]:
    """Split a frame payload into fields; the payload must end with NUL and start with a numeric msg id."""
    if not payload.endswith(b"\0"):
        raise ProtocolError("frame payload is not NUL-terminated")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProtocolError(f"frame is not valid UTF-8: {e}") from None
    fields = text.split("\0")[:-1]
    if not re.fullmatch(r"-?\d+", fields[0]):
        raise ProtocolError(f"message id {fields[0]!r} is not a number")
    return fields


_VERSION_RANGE = re.compile(r"v(\d+)\.\.(\d+)(?: (.*))?")


def parse_hello(text: str) -> tuple[int, int, str]:
    """Parse the client's ``v{min}..{max}[ options]`` string into (min, max, options)."""
    m = _VERSION_RANGE.fullmatch(text)
    if not m:
        raise ProtocolError(f"bad version string {text!r}")
    lo, hi = int(m.group(1)), int(m.group(2))
    if lo > hi:
        raise ProtocolError(f"bad version range {text!r}")
    return lo, hi, m.group(3) or ""


# ---- value formatting (server -> client) ----


def jdouble(x: float | None) -> str:
    """Format like Java's Double.toString: "0.0", "201.94", "1.0E7", "1.7976931348623157E308"; None -> unset."""
    if x is None or x >= UNSET_DOUBLE:
        return UNSET_DOUBLE_TEXT
    x = float(x)
    if x == 0:
        return "0.0"
    if 1e-3 <= abs(x) < 1e7:
        return repr(x)  # Python and Java agree here: shortest digits, always a fractional part
    sign, digits, exponent = Decimal(repr(x)).normalize().as_tuple()
    text = "".join(map(str, digits))
    return f"{'-' if sign else ''}{text[0]}.{text[1:] or '0'}E{len(digits) - 1 + exponent}"


def plain(x: float | int | Decimal | None, *, unset: str = "") -> str:
    """Plain decimal without exponent, integers without a fractional part: 100, 0.0001, 201.94, 6300."""
    if x is None or (isinstance(x, float) and x >= UNSET_DOUBLE):
        return unset
    if isinstance(x, int):
        return str(x)
    d = Decimal(repr(float(x))) if isinstance(x, float) else x
    return "0" if d == 0 else format(d.normalize(), "f")


def money(x: float) -> str:
    """Account values as TWS prints them: two decimals."""
    return f"{x:.2f}"


def flag(b: bool) -> str:
    return "1" if b else "0"


# ---- value parsing (client -> server) ----


def parse_double(s: str) -> float | None:
    """Parse a double sent by a client; both clients' unset forms ("", max double in either case) give None."""
    if s in _UNSET_DOUBLE_INPUTS:
        return None
    try:
        v = float(s)
    except ValueError:
        raise ProtocolError(f"not a number: {s!r}") from None
    if math.isinf(v) or v >= UNSET_DOUBLE:
        return None
    return v


def parse_int(s: str, default: int | None = None) -> int | None:
    if s == "" or s == str(UNSET_INTEGER):
        return default
    try:
        return int(s)
    except ValueError:
        try:
            f = float(s)
        except ValueError:
            raise ProtocolError(f"not an integer: {s!r}") from None
        if not f.is_integer():
            raise ProtocolError(f"not an integer: {s!r}") from None
        return int(f)


def parse_bool(s: str) -> bool:
    return s not in ("", "0", "false", "False")


def parse_decimal(s: str) -> Decimal | None:
    if s in _UNSET_DOUBLE_INPUTS:
        return None
    try:
        d = Decimal(s)
    except ArithmeticError:
        raise ProtocolError(f"not a decimal: {s!r}") from None
    if not d.is_finite():
        raise ProtocolError(f"not a decimal: {s!r}")
    return d
