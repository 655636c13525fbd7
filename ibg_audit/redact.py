"""--redact: mask account ids in printed dump and diff output, for sharing (DU1234567 -> DU***4567).

Every string in the document is masked, dict keys included (deepdiff paths carry the item keys), so an id reads
the same wherever it appears: in `account` fields, the gateway's account list, labels and error messages. Ids are
found two ways: the values of the document's account fields (whatever their shape) and any token shaped like an
IB account id (1-3 letters then 5-9 digits, e.g. U1234567, DU1234567, DUP770846). The letters and the last four
digits stay, so the reader can still tell paper from live and match the ids against their own.
Only the printed text is masked; the audit store keeps what the gateway sent.
"""

from __future__ import annotations

import re

ACCOUNT_KEYS = frozenset({"account", "accounts", "acctNumber", "acctCode"})
ACCOUNT_SHAPE = r"[A-Z]{1,3}\d{5,9}"
_PREFIX = re.compile(r"[A-Z]*")
KEEP = 4


def mask_account(account: str) -> str:
    """DU1234567 -> DU***4567; an id with no more than four characters after its letters loses them all."""
    letters = _PREFIX.match(account).group()
    rest = account[len(letters):]
    return f"{letters}***{rest[-KEEP:] if len(rest) > KEEP else ''}"


def redact(document):
    """A copy of a JSON-like document with every account id in every string (and dict key) masked."""
    known = sorted(set(_account_values(document)), key=len, reverse=True)
    alternatives = [re.escape(a) for a in known] + [ACCOUNT_SHAPE]
    pattern = re.compile(r"(?<![A-Za-z0-9])(?:" + "|".join(alternatives) + r")(?![A-Za-z0-9])")

    def walk(value):
        if isinstance(value, str):
            return pattern.sub(lambda m: mask_account(m.group()), value)
        if isinstance(value, dict):
            return {walk(k): walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return walk(document)


def _account_values(value):
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ACCOUNT_KEYS and isinstance(item, (str, list)):
                yield from (a for a in ([item] if isinstance(item, str) else item) if _looks_like_id(a))
            else:
                yield from _account_values(item)
    elif isinstance(value, list):
        for item in value:
            yield from _account_values(item)


def _looks_like_id(value) -> bool:
    """Letters and digits with at least one digit: an id, not a word like "All" that would mask too much."""
    return isinstance(value, str) and value.isalnum() and any(c.isdigit() for c in value)
