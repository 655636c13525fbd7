"""Deltas between recorded snapshots: the store finds them, the diff engine compares them."""

from __future__ import annotations

import json

from .diff import diff_items
from .store import Store, resolve_refs


def _side(row: dict) -> dict:
    return {"snapshot_id": row["id"], "recorded_at": row["recorded_at"], "args": json.loads(row["args"])}


def delta(kind: str, before_row: dict, before_data, after_data, *, after_row: dict | None = None,
          include_volatile: bool = False) -> dict:
    """A diff report with `from`/`to` naming the snapshots (to is None for a document not yet recorded)."""
    report = diff_items(kind, before_data, after_data, include_volatile=include_volatile)
    return {"from": _side(before_row), "to": _side(after_row) if after_row else None, **report}


def diff_refs(store: Store, refs: list[str], *, kind: str | None = None, include_volatile: bool = False) -> dict:
    """Compare two snapshot references ('last', 'last~N' or ids); `['last']` means the newest vs the one before."""
    if refs == ["last"]:
        refs = ["last~1", "last"]
    before, after = resolve_refs(store, refs, kind)
    return delta(
        before["kind"], before, store.load_data(before), store.load_data(after),
        after_row=after, include_volatile=include_volatile,
    )
