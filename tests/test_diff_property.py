"""Property: applying a diff report's added/removed/changed to snapshot A gives snapshot B.

Up to the documented float tolerance and the ignored volatile data. Also: every reported change is real (from is
A's value, to is B's, and they differ beyond the tolerance), the counts add up, the report is JSON, and it does
not depend on the order of the items.
"""

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from ibg_audit.diff import FLOAT_TOLERANCE, VOLATILE_ACCOUNT_TAGS, VOLATILE_FIELDS, diff_items

SETTINGS = settings(max_examples=200, deadline=None)

numbers = st.one_of(
    st.floats(min_value=-1e9, max_value=1e9, allow_nan=False),
    st.integers(min_value=-10_000, max_value=10_000),
)
maybe_number = st.one_of(st.none(), numbers)
words = st.text(alphabet="ABCXYZ .", max_size=4)

POSITION_KEYS = [(account, conId) for account in ("DU1", "DU2") for conId in range(1, 13)]
POSITION_FIELDS = {
    "symbol": words,
    "secType": st.sampled_from(["STK", "FUT", "OPT"]),
    "localSymbol": words,
    "multiplier": st.sampled_from(["", "50", "100"]),
    "strike": maybe_number,
    "position": maybe_number,
    "avgCost": maybe_number,
    "marketPrice": maybe_number,
    "marketValue": maybe_number,
    "unrealizedPNL": maybe_number,
}
ACCOUNT_KEYS = [
    ("DU1", tag, currency, model)
    for tag in ("NetLiquidation", "TotalCashValue", "Cushion", "AccountType", "AccountTime")
    for currency in ("USD", "")
    for model in ("", "M1")
]
ACCOUNT_FIELDS = {"value": st.one_of(maybe_number, words)}

KINDS = {
    "positions": (("account", "conId"), POSITION_KEYS, POSITION_FIELDS),
    "account": (("account", "tag", "currency", "modelCode"), ACCOUNT_KEYS, ACCOUNT_FIELDS),
}


def nudged(value):
    """A value the tolerance must treat as equal to `value`."""
    if isinstance(value, float):
        return value * (1 + 1e-12) + 1e-12
    if isinstance(value, int):
        return float(value)
    return value


@st.composite
def change(draw, value, strategy):
    how = draw(st.sampled_from(["keep", "nudge", "replace", "none"]))
    if how == "keep":
        return value
    if how == "nudge":
        return nudged(value)
    if how == "none":
        return None
    return draw(strategy)


@st.composite
def snapshot_pair(draw, kind):
    key_fields, key_space, fields = KINDS[kind]
    before = {}
    for key in draw(st.lists(st.sampled_from(key_space), unique=True)):
        before[key] = {**dict(zip(key_fields, key)), **{f: draw(s) for f, s in fields.items()}}
    after = {}
    for key, item in before.items():
        fate = draw(st.sampled_from(["same", "removed", "changed"]))
        if fate == "same":
            after[key] = dict(item)
        elif fate == "changed":
            after[key] = {**item, **{f: draw(change(item[f], s)) for f, s in fields.items()}}
    for key in draw(st.lists(st.sampled_from(key_space), unique=True)):
        if key not in before:
            after[key] = {**dict(zip(key_fields, key)), **{f: draw(s) for f, s in fields.items()}}
    return before, after


def same(a, b):
    if a == b and type(a) is type(b):
        return True
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b))
    return numeric and math.isclose(a, b, **FLOAT_TOLERANCE)


def check(kind, before, after, include_volatile, shuffled_before, shuffled_after):
    report = diff_items(kind, list(before.values()), list(after.values()), include_volatile=include_volatile)

    assert json.loads(json.dumps(report, allow_nan=False)) == report
    assert diff_items(kind, shuffled_before, shuffled_after, include_volatile=include_volatile) == report

    ignored_fields = set() if include_volatile else set(VOLATILE_FIELDS.get(kind, ()))
    ignored_tags = set() if include_volatile or kind != "account" else set(VOLATILE_ACCOUNT_TAGS)
    assert sorted(ignored_fields | ignored_tags) == report["ignored"]

    state = {key: dict(item) for key, item in before.items()}
    for entry in report["removed"]:
        key = tuple(entry["key"].values())
        assert key not in after and entry["item"] == before[key]
        del state[key]
    for entry in report["added"]:
        key = tuple(entry["key"].values())
        assert key not in before and entry["item"] == after[key]
        state[key] = dict(entry["item"])
    for entry in report["changed"]:
        key = tuple(entry["key"].values())
        assert entry["changes"], "a changed item lists its changes"
        for c in entry["changes"]:
            assert c["field"] not in ignored_fields
            assert c["from"] == before[key][c["field"]] and c["to"] == after[key][c["field"]]
            assert not same(c["from"], c["to"])
            state[key][c["field"]] = c["to"]

    def compared(snapshot):  # the account kind's key is (account, tag, currency, modelCode)
        return {key: item for key, item in snapshot.items() if not (kind == "account" and key[1] in ignored_tags)}

    assert compared(state).keys() == compared(after).keys()
    for key, item in compared(after).items():
        for field, value in item.items():
            if field not in ignored_fields:
                assert same(state[key][field], value), (key, field, state[key][field], value)

    summary = report["summary"]
    assert summary == {
        "added": len(report["added"]),
        "removed": len(report["removed"]),
        "changed": len(report["changed"]),
        "unchanged": len(before.keys() & after.keys()) - len(report["changed"]),
    }


def run(kind, data):
    before, after = data.draw(snapshot_pair(kind))
    include_volatile = data.draw(st.booleans())
    shuffled_before = data.draw(st.permutations(list(before.values())))
    shuffled_after = data.draw(st.permutations(list(after.values())))
    check(kind, before, after, include_volatile, shuffled_before, shuffled_after)


@SETTINGS
@given(st.data())
def test_applying_position_changes_to_a_gives_b(data):
    run("positions", data)


@SETTINGS
@given(st.data())
def test_applying_account_value_changes_to_a_gives_b(data):
    run("account", data)
