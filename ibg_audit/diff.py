"""Compare two snapshots of one kind by stable item keys: what was added, removed and changed.

`diff_items(kind, before, after)` takes the `data` lists of two dumps (see the dump JSON contract) and returns a
JSON-serialisable report; `render_table` and `render_markdown` turn a report into text. Nothing here talks to a
gateway or the store.

Stable keys (an item's identity across snapshots):
- accounts: account; positions: (account, conId); account: (account, tag, currency, modelCode);
  executions: execId; orders: permId, or (clientId, orderId) while permId is 0 or null. An order that gets its
  permId between two snapshots therefore shows as removed (under its order id) and added (under its permId).
A key value that is an integral float counts as the int (conId 265598.0 is conId 265598). Two items with the
same key on one side, an item without a key field, or an unknown kind raise DiffError.

Comparison: one DeepDiff call compares the items as dicts keyed by the JSON text of their key (its paths read
root['{"account": "DU1234567", "conId": 265598}']['position']). Items equal on both sides are counted as
unchanged before that call, which keeps a diff of large, mostly unchanged snapshots cheap. Its raw result (text
view, verbose_level 1, lists and keys sorted) is kept under "deepdiff" for audit; the readable report is derived
from it.
- Numbers compare with math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9): deepdiff's math_epsilon is the absolute
  tolerance and math.isclose's default relative tolerance applies. So 0.1 + 0.2 equals 0.3 and 100 equals
  100.0, while a 0.01 change of a price is reported. A change no bigger than a billionth of the value is not
  reported: a one-cent change is reported on values below 9,999,000 and lost on values from 10,000,000.
- Anything else compares exactly; null against a number is a change.
- Volatile data that changes on every read is left out of the comparison unless include_volatile=True, and
  named in "ignored": the positions fields marketPrice, marketValue and unrealizedPNL (when a dump carries
  portfolio data; a position whose only change is there counts as unchanged), and account items whose tag is
  AccountTime (the account kind has one item per tag, so there a tag is volatile, not a field; such an item
  counts as unchanged when on both sides and is not counted when on one side only).

Report (lists sorted by key; key dicts keep the key fields in the order above):
  {"kind": str,
   "summary": {"added": n, "removed": n, "changed": n, "unchanged": n},   (counts of items)
   "added":   [{"key": {...}, "label": str, "item": {...}}],
   "removed": [{"key": {...}, "label": str, "item": {...}}],              (the item as it was)
   "changed": [{"key": {...}, "label": str, "changes": [{"field", "from", "to", "delta", "label"}]}],
   "ignored": [volatile field names or account tags], "tolerance": {"abs_tol", "rel_tol"},
   "deepdiff": {report type: ...}}
"changes" are sorted by field name. "delta" is to - from when both are numbers (bools are not), else null;
it is computed on the numbers' decimal text, so 1003421.17 -> 1001880.0 gives -1541.17, not
-1541.1699999999255. A field present on one side only is a change whose missing side is null and reads
"(absent)" in the label.

Labels (item labels use the newer item; a removed item's label uses the item as it was):
- positions:  "AAPL STK DU1234567"  (localSymbol, else symbol; secType; account)
- orders:     "BUY 1 AAPL LMT @0.01 (permId 123)"  (action, totalQuantity, localSymbol else symbol, orderType,
              "@" limit price, else stop (aux) price, left out when neither is set (null or 0); the key in
              parentheses: "(permId 123)" or "(orderId 5, clientId 0)")
- account:    "NetLiquidation USD DU1234567"  (tag, currency, account, "model X" when modelCode is set; empty
              parts are left out)
- executions: "execId 0000e0d5.01.01 BOT 100 AAPL @189.5"  (execId, side, shares, localSymbol else symbol, price)
- accounts:   "DU1234567"
- added:   "<item>: added", with the kind's main field for positions, orders and account:
           "AAPL STK DU1234567: added (position 100)", "BUY 1 AAPL LMT @0.01 (permId 123): added (status
           Submitted)", "NetLiquidation USD DU1234567: added (1,003,421.17)"
- removed: "<item>: removed"  ("ESZ6 FUT DU1234567: removed")
- changed: "<item>: <field> <from> -> <to>", plus " (<signed delta>)" for numbers:
           "AAPL STK DU1234567: position 100 -> 120 (+20)"; the account kind leaves out its one field name:
           "NetLiquidation USD DU1234567: 1,003,421.17 -> 1,001,880.00 (-1,541.17)"
Values in labels and tables: numbers with thousands separators; integral numbers without decimals; money
(account values that have a currency, avgCost, commission, realizedPNL) with 2 decimals, or with all their
digits when 2 would drop some; fields whose name ends in "Id" as plain digits; null as "null", booleans as
"true"/"false", the empty string as "".

render_table: one row per added item, removed item and field change (columns change, item, field, from, to,
delta; for added and removed rows field/to or field/from show the kind's main field), then the summary line
"positions: 1 added, 1 removed, 1 changed, 2 unchanged". render_markdown: a heading with that summary, then
bullet lines of labels under "Added", "Removed" and "Changed" (one line per field change), at most
MARKDOWN_GROUP_LIMIT lines per group followed by "- … and N more"; "No changes." when there are none.
"""

from __future__ import annotations

import contextlib
import gc
import json
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from deepdiff import DeepDiff

from ibg_audit.errors import BadInputError

FLOAT_TOLERANCE = {"abs_tol": 1e-9, "rel_tol": 1e-9}
VOLATILE_FIELDS = {"positions": ("marketPrice", "marketValue", "unrealizedPNL")}
VOLATILE_ACCOUNT_TAGS = ("AccountTime",)
MARKDOWN_GROUP_LIMIT = 50


class DiffError(BadInputError):
    """The two payloads cannot be compared: unknown kind, an item without its key, a key used twice."""

    error_type = "diff_error"


_ABSENT = object()  # a field missing from one side of a changed item


def _fixed_key(*names: str) -> Callable[[dict], tuple[str, ...]]:
    return lambda item: names


def _order_key(item: dict) -> tuple[str, ...]:
    return ("permId",) if item.get("permId") not in (0, None) else ("clientId", "orderId")


def _join(*parts) -> str:
    return " ".join(str(part) for part in parts if part not in (None, ""))


def _symbol(item: dict):
    return item.get("localSymbol") or item.get("symbol")


def _position_label(item: dict) -> str:
    return _join(_symbol(item), item.get("secType"), item.get("account"))


def _order_label(item: dict) -> str:
    price = next((item.get(f) for f in ("lmtPrice", "auxPrice") if item.get(f) not in (0, None)), None)
    if _order_key(item) == ("permId",):
        ref = f"permId {item['permId']}"
    else:
        ref = f"orderId {item.get('orderId')}, clientId {item.get('clientId')}"
    text = _join(
        item.get("action"),
        None if item.get("totalQuantity") is None else _fmt(item["totalQuantity"]),
        _symbol(item),
        item.get("orderType"),
        None if price is None else "@" + _fmt(price),
    )
    return f"{text} ({ref})"


def _account_value_label(item: dict) -> str:
    model = item.get("modelCode")
    return _join(item.get("tag"), item.get("currency"), item.get("account"), model and f"model {model}")


def _execution_label(item: dict) -> str:
    return _join(
        "execId",
        item.get("execId"),
        item.get("side"),
        None if item.get("shares") is None else _fmt(item["shares"]),
        _symbol(item),
        None if item.get("price") is None else "@" + _fmt(item["price"]),
    )


@dataclass(frozen=True)
class _Kind:
    key_fields: Callable[[dict], tuple[str, ...]]
    label: Callable[[dict], str]
    main_field: str | None  # shown with an added or removed item
    is_money: Callable[[dict, str], bool] = lambda key, field: False
    unnamed_field: str | None = None  # the one comparable field, left out of labels

    def value_text(self, key: dict, field: str, value) -> str:
        if value is _ABSENT:
            return "(absent)"
        return _fmt(value, money=self.is_money(key, field), plain=field.endswith("Id"))

    def field_text(self, field: str, value_text: str) -> str:
        return value_text if field == self.unnamed_field else f"{field} {value_text}"


_KINDS = {
    "accounts": _Kind(_fixed_key("account"), lambda item: str(item.get("account")), None),
    "positions": _Kind(
        _fixed_key("account", "conId"), _position_label, "position", lambda key, field: field == "avgCost"
    ),
    "orders": _Kind(_order_key, _order_label, "status"),
    "account": _Kind(
        _fixed_key("account", "tag", "currency", "modelCode"),
        _account_value_label,
        "value",
        # The currency is part of the key: "Cushion" has none, "NetLiquidation" has one.
        lambda key, field: field == "value" and bool(key["currency"]),
        unnamed_field="value",
    ),
    "executions": _Kind(
        _fixed_key("execId"), _execution_label, None, lambda key, field: field in ("commission", "realizedPNL")
    ),
}


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fmt(value, *, money: bool = False, plain: bool = False) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value or '""'
    if _is_number(value):
        if plain:
            return str(value)
        if money and round(value, 2) == value:
            return f"{value:,.2f}"
        if float(value).is_integer():
            return f"{int(value):,}"
        return f"{value:,}"
    return json.dumps(value, sort_keys=True)


def _delta(old, new):
    if not (_is_number(old) and _is_number(new)):
        return None
    if isinstance(old, int) and isinstance(new, int):
        return new - old
    return float(Decimal(repr(new)) - Decimal(repr(old)))


def _normalise_key_value(value):
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# An item's key is the tuple of its (key field, value) pairs: hashable, and dict(key) is the report's "key".
def _key_order(key: tuple) -> tuple:
    # None first, then numbers, then strings: never compares a number with a string.
    return tuple(
        (name, value is not None, isinstance(value, str), 0 if value is None else value) for name, value in key
    )


def _key_text(key: tuple) -> str:
    return json.dumps(dict(key), ensure_ascii=False)


def _index(kind: str, spec: _Kind, items, side: str) -> dict[tuple, dict]:
    """Map each item's key to the item."""
    if not isinstance(items, list):
        raise DiffError(f"{kind} {side}: expected a list of items, got {type(items).__name__}")
    by_key: dict[tuple, dict] = {}
    position: dict[tuple, int] = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise DiffError(f"{kind} {side}: item {i} is not an object")
        try:
            key = tuple((name, _normalise_key_value(item[name])) for name in spec.key_fields(item))
        except KeyError as missing:
            raise DiffError(f"{kind} {side}: item {i} has no key field {missing}") from None
        if key in by_key:
            raise DiffError(f"{kind} {side}: items {position[key]} and {i} have the same key {_key_text(key)}")
        by_key[key] = item
        position[key] = i
    return by_key


def _deepdiff_json(result: DeepDiff) -> dict:
    raw = json.loads(result.to_json(verbose_level=1))
    return {
        report_type: sorted(found) if isinstance(found, list) else dict(sorted(found.items()))
        for report_type, found in sorted(raw.items())
    }


def _field_change(spec: _Kind, key: dict, item_label: str, field: str, old_item: dict, new_item: dict) -> dict:
    old = old_item.get(field, _ABSENT)
    new = new_item.get(field, _ABSENT)
    delta = _delta(old, new)
    text = spec.field_text(field, f"{spec.value_text(key, field, old)} -> {spec.value_text(key, field, new)}")
    if delta is not None:
        text += f" ({_signed(spec, key, field, delta)})"
    return {
        "field": field,
        "from": None if old is _ABSENT else old,
        "to": None if new is _ABSENT else new,
        "delta": delta,
        "label": f"{item_label}: {text}",
    }


def _signed(spec: _Kind, key: dict, field: str, delta) -> str:
    return ("+" if delta > 0 else "") + spec.value_text(key, field, delta)


def _main_value(spec: _Kind, key: dict, item: dict) -> tuple[str, str]:
    """The kind's main field of an added or removed item and its value as text; ("", "") when there is none."""
    field = spec.main_field
    if field is None or field not in item:
        return "", ""
    return field, spec.value_text(key, field, item[field])


def _added_label(spec: _Kind, key: dict, item: dict) -> str:
    field, value = _main_value(spec, key, item)
    return f"{spec.label(item)}: added" + (f" ({spec.field_text(field, value)})" if field else "")


@contextlib.contextmanager
def _cyclic_gc_paused():
    # Items are plain, acyclic JSON data, so the cyclic collector finds nothing here; left on, its full
    # collections re-walk every live item while the keys of 100,000 of them are built, which made the diff's
    # time grow faster than the number of items.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def diff_items(kind: str, before: list[dict], after: list[dict], *, include_volatile: bool = False) -> dict:
    """Compare two snapshots' items of `kind`; see the module docstring for the report."""
    with _cyclic_gc_paused():
        return _diff_items(kind, before, after, include_volatile=include_volatile)


def _diff_items(kind: str, before: list[dict], after: list[dict], *, include_volatile: bool) -> dict:
    spec = _KINDS.get(kind)
    if spec is None:
        raise DiffError(f"unknown kind {kind!r}; expected one of {', '.join(sorted(_KINDS))}")
    old = _index(kind, spec, before, "before")
    new = _index(kind, spec, after, "after")
    volatile_fields = () if include_volatile else VOLATILE_FIELDS.get(kind, ())
    volatile_tags = VOLATILE_ACCOUNT_TAGS if kind == "account" and not include_volatile else ()

    def volatile(item: dict) -> bool:
        return item.get("tag") in volatile_tags

    def comparable(item: dict) -> dict:
        return {f: v for f, v in item.items() if f not in volatile_fields} if volatile_fields else item

    # Only items that can differ go to deepdiff, without their volatile data: identical items are most of two
    # snapshots, and deepdiff takes about half a millisecond per item.
    common = old.keys() & new.keys()
    differing = [
        k for k in common if old[k] != new[k] and not volatile(old[k]) and comparable(old[k]) != comparable(new[k])
    ]
    gone = [k for k in old.keys() - new.keys() if not volatile(old[k])]
    came = [k for k in new.keys() - old.keys() if not volatile(new[k])]
    keys = {_key_text(k): k for k in (*differing, *gone, *came)}
    result = DeepDiff(
        {text: comparable(old[k]) for text, k in keys.items() if k in old},
        {text: comparable(new[k]) for text, k in keys.items() if k in new},
        view="tree",
        math_epsilon=FLOAT_TOLERANCE["abs_tol"],
        ignore_numeric_type_changes=True,
        # deepdiff reports a whole dict as replaced when few keys are shared; we always want per-key results.
        threshold_to_diff_deeper=0,
    )

    added, removed, changed_fields = [], [], {}
    for report_type, levels in result.items():
        for level in levels:
            path = level.path(output_format="list")
            key = keys[path[0]]
            if len(path) == 1 and report_type == "dictionary_item_added":
                added.append(key)
            elif len(path) == 1 and report_type == "dictionary_item_removed":
                removed.append(key)
            else:
                changed_fields.setdefault(key, set()).add(path[1])

    changed = []
    for k in sorted(changed_fields, key=_key_order):
        label = spec.label(new[k])
        changes = [_field_change(spec, dict(k), label, f, old[k], new[k]) for f in sorted(changed_fields[k])]
        changed.append({"key": dict(k), "label": label, "changes": changes})
    return {
        "kind": kind,
        "summary": {
            "added": len(added),
            "removed": len(removed),
            "changed": len(changed),
            "unchanged": len(common) - len(changed),
        },
        "added": [
            {"key": dict(k), "label": _added_label(spec, dict(k), new[k]), "item": dict(new[k])}
            for k in sorted(added, key=_key_order)
        ],
        "removed": [
            {"key": dict(k), "label": f"{spec.label(old[k])}: removed", "item": dict(old[k])}
            for k in sorted(removed, key=_key_order)
        ],
        "changed": changed,
        "ignored": sorted(volatile_fields or volatile_tags),
        "tolerance": dict(FLOAT_TOLERANCE),
        "deepdiff": _deepdiff_json(result),
    }


def _summary_line(report: dict) -> str:
    s = report["summary"]
    return (
        f"{report['kind']}: {s['added']} added, {s['removed']} removed, {s['changed']} changed, "
        f"{s['unchanged']} unchanged"
    )


_TABLE_ALIGN = ("left", "left", "left", "right", "right", "right")


def render_table(report: dict) -> str:
    """One row per added item, removed item and field change, then the summary line."""
    from tabulate import tabulate  # only the table format needs it

    spec = _KINDS[report["kind"]]
    rows = []
    for entry in report["added"]:
        field, value = _main_value(spec, entry["key"], entry["item"])
        rows.append(["added", spec.label(entry["item"]), field, "", value, ""])
    for entry in report["removed"]:
        field, value = _main_value(spec, entry["key"], entry["item"])
        rows.append(["removed", spec.label(entry["item"]), field, value, "", ""])
    for entry in report["changed"]:
        key = entry["key"]
        for change in entry["changes"]:
            field, delta = change["field"], change["delta"]
            rows.append(
                [
                    "changed",
                    entry["label"],
                    field,
                    spec.value_text(key, field, change["from"]),
                    spec.value_text(key, field, change["to"]),
                    "" if delta is None else _signed(spec, key, field, delta),
                ]
            )
    if not rows:
        return _summary_line(report)
    headers = ["change", "item", "field", "from", "to", "delta"]
    # disable_numparse: tabulate would otherwise reformat "1,003,421.17" and drop the "+" of a delta.
    table = tabulate(rows, headers=headers, disable_numparse=True, colalign=_TABLE_ALIGN)
    return table + "\n\n" + _summary_line(report)


def render_markdown(report: dict) -> str:
    """A heading with the counts, then the labels grouped by Added, Removed and Changed."""
    groups = [
        ("Added", [entry["label"] for entry in report["added"]]),
        ("Removed", [entry["label"] for entry in report["removed"]]),
        ("Changed", [change["label"] for entry in report["changed"] for change in entry["changes"]]),
    ]
    lines = [f"## {_summary_line(report)}"]
    for title, labels in groups:
        if not labels:
            continue
        lines += ["", f"### {title}"]
        lines += [f"- {label}" for label in labels[:MARKDOWN_GROUP_LIMIT]]
        if len(labels) > MARKDOWN_GROUP_LIMIT:
            lines.append(f"- … and {len(labels) - MARKDOWN_GROUP_LIMIT} more")
    if len(lines) == 1:
        lines += ["", "No changes."]
    return "\n".join(lines)
