"""`ibg-audit browse`: the audit store in Datasette, read-only, with the shipped metadata and charts.

Datasette runs in this process (uvicorn on a socket bound here), so tests drive the very Datasette object the
command serves through Datasette's own test client. The files in datasette/ next to this module are the shipped
configuration: metadata.yaml (descriptions, sort orders, facets, canned queries, the datasette-dashboards
charts) and settings.json.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import ipaddress
import json
import os
import socket
import webbrowser
from pathlib import Path
from typing import TextIO

import uvicorn
from datasette.app import Datasette
from datasette.database import Database
from datasette.utils import parse_metadata
from datasette.utils.asgi import Forbidden

from .errors import BadInputError
from .store import open_store

# The name the store is served under (/audit), whatever its file is called: metadata.yaml is keyed by it.
DATABASE_NAME = "audit"
DASHBOARD_PATH = "/-/dashboards/ibg-audit"


class ReadOnlyDatabase(Database):
    """The store, read through `?mode=ro` connections and never through a write connection.

    Not Datasette's immutable mode: that ignores the WAL and assumes the file never changes, so snapshots
    recorded while browsing (a cron job, say) would be invisible or, after a checkpoint, read as corrupt.
    Every Datasette write (canned write queries, plugins) goes through execute_write_fn, refused here.
    """

    def __init__(self, ds: Datasette, path: str | os.PathLike):
        super().__init__(ds, path=str(path), is_mutable=True)

    async def execute_write_fn(self, fn, block=True):
        raise Forbidden("the audit store is served read-only: browsing never changes it")


def _config_text(name: str) -> str:
    return importlib.resources.files("ibg_audit").joinpath("datasette", name).read_text(encoding="utf-8")


def load_metadata() -> dict:
    return parse_metadata(_config_text("metadata.yaml"))


def load_settings() -> dict:
    return json.loads(_config_text("settings.json"))


def build_datasette(db_path: str | os.PathLike, metadata: dict | None = None) -> Datasette:
    """A Datasette serving only the store at `db_path`, read-only, as /audit (`metadata`: default the shipped one)."""
    ds = Datasette(metadata=load_metadata() if metadata is None else metadata, settings=load_settings())
    # With no files Datasette adds an in-memory database; the store is the only one to show.
    ds.remove_database("_memory")
    ds.add_database(ReadOnlyDatabase(ds, db_path), name=DATABASE_NAME)
    return ds


def prepare_store(db_path: str | os.PathLike) -> None:
    """Fail cleanly (StoreError) when there is no usable store; bring its schema and views up to date.

    Like every other command, this migrates an older store; serving it afterwards never writes.
    """
    open_store(db_path, create=False).close()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, port: int) -> str | None:
    if is_loopback(host):
        return None
    return (f"Warning: serving on {host}, not 127.0.0.1: anyone who can reach this machine on port {port} can read "
            "your accounts, positions and orders (there is no login)")


def listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen()
    except OSError as e:
        sock.close()
        raise BadInputError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    return sock


def base_url(host: str, port: int) -> str:
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def serve(db_path: str | os.PathLike, *, host: str, port: int, open_browser: bool, banner: TextIO) -> None:
    """Serve the store until Ctrl-C; a warning (when not on loopback) and one banner line go to `banner`."""
    prepare_store(db_path)
    ds = build_datasette(db_path)
    sock = listen(host, port)
    port = sock.getsockname()[1]
    warning = exposure_warning(host, port)
    if warning:
        print(warning, file=banner, flush=True)
    url = f"{base_url(host, port)}/{DATABASE_NAME}"
    print(f"ibg-audit browse: {Path(db_path)} read-only at {url} (charts: {base_url(host, port)}{DASHBOARD_PATH})"
          " - Ctrl-C to stop", file=banner, flush=True)
    if open_browser:
        webbrowser.open(url)
    server = uvicorn.Server(uvicorn.Config(ds.app(), log_level="warning", lifespan="on"))
    # uvicorn shuts down gracefully on Ctrl-C, then raises it again: that is the normal way to stop.
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[sock])
