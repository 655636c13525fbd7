"""`ibg-audit doctor`: the troubleshooting checklist (README) as one command and one JSON document.

Every check has a status (ok, warn, fail, unknown), whether dumps need it (`required`), a value and a one-line
detail; the exit code is 0 only when every required check is ok. The checks always come in the same order, so a
script can index them by name.

What can and cannot be known:
- reach: a plain TCP connect to host:port. handshake, serverVersion: an API session (startApi only, read-only).
- clientId: whether the configured id is free. When it is not, the next ids are tried (up to SUGGEST_IDS) to name
  a free one; a dump only gets as far as --client-id-tries, so the check fails when the free id lies beyond that.
- managedAccounts, paper: what the gateway reports at login; "paper" is read from the account ids (paper ids start
  with D), as the safety rails do: IB sends no paper flag.
- port: compared with the known live and paper ports; a remapped port is just "unknown" (the accounts tell).
- readOnly: the API cannot be asked whether "Read-Only API" is ticked. By default it is reported unknown. With
  --probe-readonly the doctor sends cancelOrder for an order id this client has never used (so there is nothing
  it could cancel; no order is placed): a read-only gateway answers 321, a writable one 10147 "not found".
- store: only read (the doctor never creates, migrates or writes it): SQLite integrity_check, the schema version
  and pending migrations (applied by the next dump), and the file mode (owner only).
- venv: the project's .venv that tools/ wrappers run in (they create it when missing, so only a warning).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
import sqlite3
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from .errors import EXIT_CHANGES, EXIT_OK, NotConnectedError
from .gateway import CLIENT_ID_IN_USE, Endpoint, open_session
from .render import render_rows
from .safety import LIVE_PORTS, PAPER_PORTS, is_paper_account
from .store import pending_migrations, schema_version

SUGGEST_IDS = 10  # how many ids to try, counting up, to suggest a free client id
READONLY_CODE, NOT_FOUND_CODE = 321, 10147
PROJECT_ROOT = Path(__file__).resolve().parent.parent
CHECKS = ("reach", "handshake", "serverVersion", "clientId", "managedAccounts", "paper", "port", "readOnly",
          "store", "schemaVersion", "storeFileMode", "venv")
REQUIRED = frozenset({"reach", "handshake", "clientId", "store"})


@dataclass
class Check:
    name: str
    status: str  # ok | warn | fail | unknown
    value: object
    detail: str

    def to_json(self) -> dict:
        return {"name": self.name, "status": self.status, "required": self.name in REQUIRED,
                "value": self.value, "detail": self.detail}


def run_doctor(endpoint: Endpoint, db_path: Path, *, probe_readonly: bool = False) -> tuple[dict, int]:
    """Run every check; returns (document, exit code: 0 when every required check is ok, else 1)."""
    found: dict[str, Check] = {}
    found["port"] = _port_check(endpoint.port)
    asyncio.run(_gateway_checks(endpoint, probe_readonly, found))
    found.update(_store_checks(Path(db_path).expanduser()))
    found["venv"] = _venv_check()
    checks = [found[name].to_json() for name in CHECKS]
    ok = all(c["status"] == "ok" for c in checks if c["required"])
    doc = {
        "ok": ok,
        "checked_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "gateway": {"host": endpoint.host, "port": endpoint.port, "clientId": endpoint.client_id,
                    "clientIdTries": endpoint.client_id_tries, "timeout": endpoint.timeout,
                    "simulated": endpoint.simulated},
        "checks": checks,
    }
    return doc, EXIT_OK if ok else EXIT_CHANGES


def render_table(doc: dict) -> str:
    # a required check that is not ok is shouted: it is why the exit code is 1
    rows = [{"check": c["name"],
             "status": c["status"].upper() if c["required"] and c["status"] != "ok" else c["status"],
             "value": c["value"], "detail": c["detail"]} for c in doc["checks"]]
    verdict = "everything dumps need is fine" if doc["ok"] else "something dumps need is NOT fine (exit 1)"
    return render_rows(rows, "table") + f"\ndoctor: {verdict}\n"


def _skip(found: dict, names, why: str) -> None:
    for name in names:
        found.setdefault(name, Check(name, "unknown", None, f"not checked: {why}"))


async def _gateway_checks(endpoint: Endpoint, probe_readonly: bool, found: dict) -> None:
    deadline = time.monotonic() + endpoint.timeout
    where = f"{endpoint.host}:{endpoint.port}"
    gateway_names = ("reach", "handshake", "serverVersion", "clientId", "managedAccounts", "paper", "readOnly")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(endpoint.host, endpoint.port), endpoint.timeout)
        writer.close()
    except (OSError, asyncio.TimeoutError) as e:
        why = "connection refused" if isinstance(e, ConnectionRefusedError) else (
            "no answer" if isinstance(e, asyncio.TimeoutError) else (e.strerror or str(e)))
        found["reach"] = Check("reach", "fail", where, f"{why}: is IB Gateway/TWS running, and is this its API port "
                                                       "(paper IB Gateway 4002, paper TWS 7497)?")
        _skip(found, gateway_names, f"cannot reach {where}")
        return
    found["reach"] = Check("reach", "ok", where, "the port accepts TCP connections")
    tries = max(endpoint.client_id_tries, SUGGEST_IDS)
    # one deadline for the whole conversation, reach included
    left = max(0.1, round(deadline - time.monotonic(), 1))
    probe = dataclasses.replace(endpoint, client_id_tries=tries, timeout=left)
    try:
        async with open_session(probe) as session:
            found["handshake"] = Check("handshake", "ok", "completed", "the API session started")
            found["serverVersion"] = Check("serverVersion", "ok", session.server_version,
                                           "the TWS API protocol version the gateway speaks")
            found["clientId"] = _client_id_check(endpoint, session.client_id)
            found.update(_account_checks(session.accounts))
            found["readOnly"] = (
                await _probe_readonly(session) if probe_readonly else
                Check("readOnly", "unknown", None, "the API cannot be asked; --probe-readonly tests it with a "
                                                   "cancel of an order id that cannot exist (nothing is placed)")
            )
    except NotConnectedError as e:
        if e.code == CLIENT_ID_IN_USE:
            found["handshake"] = Check("handshake", "ok", "completed", "the gateway answered and refused the ids")
            found["clientId"] = Check(
                "clientId", "fail", endpoint.client_id,
                f"client ids {endpoint.client_id}..{endpoint.client_id + tries - 1} are all in use; pass another "
                "--client-id (IBKR_CLIENT_ID)")
            _skip(found, gateway_names, "no free client id")
        else:
            found["handshake"] = Check("handshake", "fail", None, f"{e.message}: is the gateway logged in, with the "
                                                                  "API enabled and 127.0.0.1 in Trusted IPs?")
            _skip(found, gateway_names, "no API session")


def _client_id_check(endpoint: Endpoint, used: int) -> Check:
    wanted = endpoint.client_id
    if used == wanted:
        return Check("clientId", "ok", wanted, "free")
    if used < wanted + endpoint.client_id_tries:
        return Check("clientId", "ok", wanted,
                     f"in use; dumps fall back to {used} (within --client-id-tries {endpoint.client_id_tries}), "
                     f"or pass --client-id {used}")
    return Check("clientId", "fail", wanted, f"in use, and so are the next {endpoint.client_id_tries - 1} ids dumps "
                                             f"try; {used} is free: pass --client-id {used}")


def _account_checks(accounts: list[str]) -> dict[str, Check]:
    live = [a for a in accounts if not is_paper_account(a)]
    return {
        "managedAccounts": Check("managedAccounts", "ok" if accounts else "fail", accounts,
                                 f"{len(accounts)} account(s)" if accounts else "the gateway reports no account"),
        "paper": Check("paper", "warn" if live or not accounts else "ok", not live and bool(accounts),
                       f"LIVE account(s): {', '.join(live)}; dumps are read-only, smoke never transmits here"
                       if live else "every account is a paper account (id starts with D)"),
    }


def _port_check(port: int) -> Check:
    if port in LIVE_PORTS:
        return Check("port", "warn", port, f"the {LIVE_PORTS[port]} port: dumps work; smoke never transmits here")
    if port in PAPER_PORTS:
        return Check("port", "ok", port, f"the {PAPER_PORTS[port]} port")
    return Check("port", "ok", port, "not a standard IB port (a remapped or simulated gateway); see paper")


async def _probe_readonly(session) -> Check:
    ib = session.ib
    order_id = ib.client.getReqId()  # at or above nextValidId: no order of this client can have it
    answer = asyncio.get_running_loop().create_future()

    def on_error(req_id, code, message, _contract):
        if req_id == order_id and code in (READONLY_CODE, NOT_FOUND_CODE) and not answer.done():
            answer.set_result(code)

    ib.errorEvent += on_error
    try:
        ib.client.cancelOrder(order_id)
        code = await asyncio.wait_for(answer, session.remaining())
    except asyncio.TimeoutError:
        return Check("readOnly", "unknown", None, f"no answer to the probe cancel of order id {order_id}")
    finally:
        ib.errorEvent -= on_error
    if code == READONLY_CODE:
        return Check("readOnly", "ok", True, "Read-Only API is ticked: dumps work, every order (even a what-if) "
                                             "gets error 321")
    return Check("readOnly", "ok", False, "orders are accepted by the API (smoke still needs every safety rail)")


def _store_checks(path: Path) -> dict[str, Check]:
    shown = str(path)
    if not path.exists():
        parent = next((p for p in path.parents if p.exists()), None)
        creatable = parent is not None and parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)
        return {
            "store": Check("store", "ok" if creatable else "fail", shown,
                           "does not exist yet; the first dump creates it" if creatable else
                           f"does not exist and cannot be created ({parent} is not a writable directory)"),
            "schemaVersion": Check("schemaVersion", "ok", None, "applied when the store is created"),
            "storeFileMode": Check("storeFileMode", "ok", None, "created readable by its owner only (0600)"),
        }
    if path.is_dir():
        return {"store": Check("store", "fail", shown, "is a directory, not a database file"),
                "schemaVersion": Check("schemaVersion", "unknown", None, "not checked: no store"),
                "storeFileMode": Check("storeFileMode", "unknown", None, "not checked: no store")}
    mode = stat.S_IMODE(path.stat().st_mode)
    mode_check = Check("storeFileMode", "ok" if not mode & 0o077 else "warn", f"{mode:04o}",
                       "readable by its owner only" if not mode & 0o077 else
                       f"other users can read it: chmod 600 {shown}")
    try:
        # Only reads. Not mode=ro: a read-only connection to a WAL store leaves -wal/-shm files behind.
        conn = sqlite3.connect(str(path), timeout=5)
        try:
            result = [row[0] for row in conn.execute("PRAGMA integrity_check")]
            db = sqlite_utils.Database(conn)
            version, pending = schema_version(db), pending_migrations(db)
        finally:
            conn.close()
    except sqlite3.DatabaseError as e:
        return {"store": Check("store", "fail", shown, f"not a usable SQLite database: {e}"),
                "schemaVersion": Check("schemaVersion", "unknown", None, "not checked: not a database"),
                "storeFileMode": mode_check}
    healthy = result == ["ok"]
    schema = Check("schemaVersion", "ok" if version else "warn", version,
                   ("up to date" if not pending else f"{', '.join(pending)} pending: the next dump applies it")
                   if version else "not an ibg-audit store (no migration applied)")
    return {
        "store": Check("store", "ok" if healthy else "fail", shown,
                       "integrity_check ok" if healthy else f"integrity_check: {'; '.join(result[:3])}"),
        "schemaVersion": schema,
        "storeFileMode": mode_check,
    }


def _venv_check() -> Check:
    venv = PROJECT_ROOT / ".venv"
    if not (PROJECT_ROOT / "tools").is_dir():
        return Check("venv", "ok", None, "installed as a package (no project checkout, no tools/)")
    if (venv / "bin" / "python").exists():
        return Check("venv", "ok", str(venv), "present")
    return Check("venv", "warn", str(venv), "missing: the first tools/ibg_dump run creates it (takes a minute)")
