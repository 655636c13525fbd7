"""Rendering: the one place that turns documents and rows into text (JSON, NL-JSON, CSV, table)."""

from __future__ import annotations

import csv
import io
import json
import sys

import click

ROW_FORMATS = ("json", "nl", "csv", "table")


def document_text(doc: dict) -> str:
    """The exact text printed for a dump/smoke document (and returned by `show`)."""
    return json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def default_format() -> str:
    """Table for a person at a terminal, JSON for a pipe or a coding agent."""
    return "table" if sys.stdout.isatty() else "json"


def format_option(choices=ROW_FORMATS, help_text: str | None = None):
    """Shared --format option (auto: table on a terminal, json when piped)."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(choices),
        default=None,
        help=help_text or f"Output format ({', '.join(choices)}); default: table on a terminal, json when piped.",
    )


def render_rows(rows: list[dict], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(rows, indent=2, ensure_ascii=False) + "\n"
    if fmt == "nl":
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    columns = list(rows[0]) if rows else []
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)
        return out.getvalue()
    if fmt == "table":
        from tabulate import tabulate

        return tabulate([[_cell(row[c]) for c in columns] for row in rows], headers=columns) + "\n"
    raise ValueError(f"unknown format {fmt!r}")


def _cell(value):
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return value
