"""Fixtures and helpers for tests that talk to the simulated gateway.

tests/conftest.py loads this module as a plugin (``pytest_plugins = ["sim_fixtures"]``), so the ``sim`` fixture is
available everywhere; import helpers directly (``from sim_fixtures import RawClient, run, gateway``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
import socket
import struct
import time
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from ib_async import IB

from ibg_audit.sim import SimulatedGateway, start_in_thread

# A Tuesday during US trading hours: front ES month is March 2026 (expires Friday 20260320), the expired one Dec 2025.
FIXED_NOW = dt.datetime(2026, 3, 10, 15, 30, tzinfo=dt.UTC)
GOLDEN = Path(__file__).parent / "sim_golden"
TIMEOUT = 5.0


@pytest.fixture
def sim():
    """A simulated gateway with the default scenario at FIXED_NOW, served from a background thread."""
    with start_in_thread(now=FIXED_NOW) as gw:
        yield gw


def run(coro, timeout: float = 15.0):
    """Run an async test body on a fresh event loop; nothing may take longer than `timeout` seconds."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


@asynccontextmanager
async def gateway(scenario=None, **kwargs):
    """A simulated gateway on the current event loop (default scenario, FIXED_NOW unless given)."""
    kwargs.setdefault("now", FIXED_NOW)
    async with SimulatedGateway(scenario, **kwargs) as gw:
        yield gw


@asynccontextmanager
async def ib_client(gw, client_id: int = 1, timeout: float = TIMEOUT, **kwargs):
    """An ib_async IB connected to `gw` (full startup sync); disconnected afterwards."""
    ib = IB()
    await ib.connectAsync("127.0.0.1", gw.port, clientId=client_id, timeout=timeout, **kwargs)
    try:
        yield ib
    finally:
        ib.disconnect()


async def wait_until(predicate, timeout: float = TIMEOUT, what: str = "condition") -> None:
    """Poll `predicate` on the event loop until it is true; fail the test after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


class RawClient:
    """A minimal TWS API client over a plain socket, for byte-exact checks; every read has a timeout."""

    def __init__(self, port: int, client_id: int = 1, versions: str = "v157..178", timeout: float = TIMEOUT):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""
        self.server_version = None
        self.connection_time = None
        self.versions = versions
        self.client_id = client_id

    def hello(self) -> list[str]:
        text = self.versions.encode()
        self.sock.sendall(b"API\0" + struct.pack(">I", len(text)) + text)
        reply = self.read()
        self.server_version, self.connection_time = int(reply[0]), reply[1]
        return reply

    def start(self) -> list[list[str]]:
        """Handshake + startApi; returns the bootstrap messages up to and including the last farm notice."""
        self.hello()
        self.send(71, 2, self.client_id, "")
        return self.read_until(lambda f: f[:4] == ["4", "2", "-1", "2158"])

    def send(self, *fields) -> None:
        payload = "".join(f"{f}\0" for f in fields).encode()
        self.sock.sendall(struct.pack(">I", len(payload)) + payload)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, n: int) -> None:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("gateway closed the connection")
            self.buffer += chunk

    def read(self) -> list[str]:
        self._fill(4)
        (length,) = struct.unpack(">I", self.buffer[:4])
        self._fill(4 + length)
        payload, self.buffer = self.buffer[4:4 + length], self.buffer[4 + length:]
        return payload.decode().split("\0")[:-1]

    def read_until(self, done) -> list[list[str]]:
        messages = []
        while True:
            fields = self.read()
            messages.append(fields)
            if done(fields):
                return messages

    def request(self, *fields, end_id: str) -> list[list[str]]:
        """Send a request and collect the replies up to the message whose id is end_id."""
        self.send(*fields)
        return self.read_until(lambda f: f[0] == end_id)

    def closed_by_peer(self) -> bool:
        """True when the gateway has closed the socket (reads EOF within the timeout)."""
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def golden_message(sample: str, prefix: str) -> list[str]:
    """Fields of the recorded message on the line of `sample` starting with `prefix`.

    Lines are `label : payload`; payloads use '|' (rust-ibapi fixtures, optionally quoted) or '\\x00'
    (nautilus, ibkr-go) as the field terminator.
    """
    for line in (GOLDEN / sample).read_text().splitlines():
        if not line.startswith(prefix):
            continue
        labelled = re.match(r'[^|"\\]{1,30}?:\s(.*)', line)
        payload = (labelled.group(1) if labelled else line).strip()
        if payload.startswith('"'):  # quoted payload, possibly followed by a comment
            payload = payload[1:payload.index('"', 1)]
        separator = "\\x00" if "\\x00" in payload else "\\0" if "\\0" in payload else "|"
        fields = payload.split(separator)
        assert fields[-1] == "", f"{sample}: {prefix!r} does not end with a terminator"
        return fields[:-1]
    raise LookupError(f"{prefix!r} not found in {sample}")


def captured_request(prefix: str) -> list[str]:
    """A request as a client wrote it (13_client_requests_captured.txt: fields joined by '|', then a comment)."""
    for line in (GOLDEN / "13_client_requests_captured.txt").read_text().splitlines():
        if line.startswith(prefix):
            return re.split(r"\s{2,}", line)[0].split("|")
    raise LookupError(f"{prefix!r} not found in 13_client_requests_captured.txt")


def substitute(recorded: list[str], actual: list[str], indexes) -> list[str]:
    """The recorded message with the per-message data at `indexes` taken from the actual one."""
    expected = list(recorded)
    for i in indexes:
        expected[i] = actual[i]
    return expected


@contextlib.contextmanager
def connected(port: int, client_id: int = 77):
    """A short-lived synchronous ib_async client, for tests that change the simulator between CLI calls
    (the CLI runs its own event loop, so one long-lived client in the test thread would not work)."""
    ib = IB()
    ib.connect("127.0.0.1", port, clientId=client_id, timeout=TIMEOUT)
    try:
        yield ib
    finally:
        ib.disconnect()


def wait_done(ib, *trades, statuses=("Filled", "Submitted", "Cancelled")) -> None:
    """Let ib_async run until every trade has one of `statuses`; fail after TIMEOUT seconds."""
    deadline = time.monotonic() + TIMEOUT
    while not all(t.orderStatus.status in statuses for t in trades):
        if time.monotonic() > deadline:
            raise AssertionError(f"orders not done: {[t.orderStatus.status for t in trades]}")
        ib.sleep(0.02)


def fill(port: int, account: str, action: str, symbol: str, qty: float, limit: float | None = None) -> None:
    """A marketable order through ib_async (market, or a limit through the price); the simulator fills it."""
    from ib_async import LimitOrder, MarketOrder, Stock

    order = LimitOrder(action, qty, limit, account=account) if limit else MarketOrder(action, qty, account=account)
    with connected(port) as ib:
        trade = ib.placeOrder(Stock(symbol, "SMART", "USD"), order)
        wait_done(ib, trade, statuses=("Filled",))
