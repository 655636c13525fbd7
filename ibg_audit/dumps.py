"""Dump orchestration: connect read-only, collect one kind, build the JSON document, record it.

Success or failure, the document has the same envelope, and every call (unless --no-record) is a
snapshot in the audit store.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from dataclasses import dataclass
from pathlib import Path

from . import collectors
from .errors import BadInputError, GatewayError, IbgAuditError
from .gateway import Endpoint, open_session
from .store import Store, build_document

KINDS = ("accounts", "positions", "orders", "account", "executions")
# Slack on top of --timeout for tearing the connection down; the whole call stays within timeout + 1 s.
TEARDOWN_S = 0.8


@dataclass(frozen=True)
class DumpRequest:
    kind: str
    all_values: bool = False
    since: dt.datetime | None = None

    def args(self) -> dict:
        if self.kind == "account":
            return {"all": self.all_values}
        if self.kind == "executions":
            return {"since": iso_utc(self.since) if self.since else None}
        return {}


def parse_since(text: str) -> dt.datetime:
    """ISO-8601 with Z or an offset (a naive time is taken as UTC), returned in UTC."""
    try:
        value = dt.datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise BadInputError(
            f"--since must be an ISO-8601 time such as 2026-11-24T13:30:00Z, got {text!r}"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


def now_iso() -> str:
    """The current time as recorded in documents and audit rows: ISO-8601 UTC with milliseconds."""
    return iso_utc(dt.datetime.now(dt.timezone.utc), millis=True)


def iso_utc(value: dt.datetime, *, millis: bool = False) -> str:
    value = value.astimezone(dt.timezone.utc)
    if millis:
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


async def _collect(request: DumpRequest, endpoint: Endpoint, gateway: dict) -> list[dict]:
    async with open_session(endpoint, readonly=True) as session:
        gateway.update(clientId=session.client_id, serverVersion=session.server_version, accounts=session.accounts)
        if request.kind == "accounts":
            return await collectors.fetch_accounts(session)
        if request.kind == "positions":
            return await collectors.fetch_positions(session)
        if request.kind == "orders":
            return await collectors.fetch_orders(session)
        if request.kind == "account":
            return await collectors.fetch_account_values(session, all_values=request.all_values)
        return await collectors.fetch_executions(session, since=request.since)


def run_dump(request: DumpRequest, endpoint: Endpoint, store: Store | None, *,
             delta_from: Store | None = None) -> tuple[dict, int]:
    """Run one dump; returns (document, exit code). Connection and gateway failures are in the document."""
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.monotonic()
    gateway = gateway_json(endpoint)
    data, error = None, None
    try:
        data = asyncio.run(
            asyncio.wait_for(_collect(request, endpoint, gateway), endpoint.timeout + TEARDOWN_S)
        )
    except IbgAuditError as e:
        error = e
    except asyncio.TimeoutError:
        error = GatewayError(f"no complete answer from the gateway within the {endpoint.timeout:g}s timeout")
    envelope = envelope_for(
        request.kind,
        request.args(),
        started=started,
        duration_ms=int((time.monotonic() - t0) * 1000),
        gateway=gateway,
        error=error,
    )
    return finish(envelope, data, store, delta_from=delta_from), (error.exit_code if error else 0)


def gateway_json(endpoint: Endpoint) -> dict:
    return {
        "host": endpoint.host,
        "port": endpoint.port,
        "clientId": endpoint.client_id,
        "serverVersion": None,
        "accounts": [],
        "simulated": endpoint.simulated,
    }


def envelope_for(kind, args, *, started, duration_ms, gateway, error: IbgAuditError | None, connected=None) -> dict:
    if connected is None:
        connected = gateway.get("serverVersion") is not None
    return {
        "kind": kind,
        "args": args,
        "connected": bool(connected),
        "ok": error is None,
        "snapshot_id": None,
        "started_at": iso_utc(started, millis=True),
        "recorded_at": now_iso(),
        "duration_ms": duration_ms,
        "gateway": gateway,
        "error": error.to_json() if error else None,
    }


def finish(envelope: dict, data, store: Store | None, *, delta_from: Store | None = None) -> dict:
    """Record (when a store is given) and return the document exactly as it will be printed.

    With `delta_from`, a successful document gets a `delta` against the previous successful snapshot
    of the same kind and arguments (null when there is none yet).
    """
    if delta_from is not None and envelope["ok"]:
        from .history import delta
        from .store import previous_successful

        previous = previous_successful(delta_from, envelope["kind"], envelope.get("args") or {})
        envelope["delta"] = (
            delta(envelope["kind"], previous, delta_from.load_data(previous), data) if previous else None
        )
    snapshot_id = store.save_snapshot(envelope, data) if store is not None else None
    return build_document(envelope, data, snapshot_id)


def load_dump_file(path: Path, kind: str) -> tuple[dict, list]:
    """Read a document printed earlier by `dump` (for --load); returns (envelope, data)."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise BadInputError(f"cannot read --load file {path}: {e.strerror}") from None
    except ValueError as e:
        raise BadInputError(f"--load file {path} is not JSON: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise BadInputError(f"--load file {path} is not an ibg-audit dump document (no 'data' list)")
    if doc.get("kind") != kind:
        raise BadInputError(f"--load file {path} holds a dump of kind {doc.get('kind')!r}, not {kind!r}")
    if not doc.get("ok"):
        raise BadInputError(f"--load file {path} records a failed dump; only successful dumps can be loaded")
    envelope = {k: v for k, v in doc.items() if k != "data"}
    envelope["snapshot_id"] = None
    envelope["loaded_from"] = str(path)
    return envelope, doc["data"]
