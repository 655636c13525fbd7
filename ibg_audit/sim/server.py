"""The simulated IB Gateway: an asyncio TCP server speaking the TWS API protocol at server version 178."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import socket
import struct
import sys
import threading
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from . import messages as msg
from .contracts import match_contracts
from .faults import Fault, parse_fault
from .protocol import (
    HELLO_PREFIX,
    MAX_FRAME,
    SERVER_VERSION,
    ProtocolError,
    decode_payload,
    encode_fields,
    jdouble,
    money,
    parse_hello,
    parse_int,
)
from .requests import (
    KNOWN_REQUEST_IDS,
    ExecFilter,
    In,
    PlaceOrder,
    parse_cancel_order,
    parse_contract_details,
    parse_executions,
    parse_place_order,
    request_id,
)
from .scenario import Scenario, resolve_scenario
from .state import Execution, GatewayState, Order, Position

log = logging.getLogger("ibg_audit.sim")

FARM_NOTICES = (
    (2104, "Market data farm connection is OK:usfarm"),
    (2106, "HMDS data farm connection is OK:ushmds"),
    (2158, "Sec-def data farm connection is OK:secdefil"),
)

# Texts the real gateway uses for the codes the sim sends (IB's message-code table).
ERROR_TEXTS = {
    100: "Max rate of messages per second has been exceeded",
    103: "Duplicate order id",
    162: "Historical Market Data Service error message:API historical data query cancelled",
    200: "No security definition has been found for the request",
    201: "Order rejected - reason:",
    202: "Order Canceled - reason:",
    320: "Server error when reading an API client request.",
    321: "Error validating request.-'bN' : cause - The API interface is currently in Read-Only mode.",
    322: "Server error when processing an API client request.",
    326: "Unable to connect as the client id is already in use. Retry with a unique client id.",
    327: "Only API connections with clientId set to 0 can set the auto bind TWS orders property.",
    354: "Requested market data is not subscribed.",
    504: "Not connected",
    1100: "Connectivity between IB and Trader Workstation has been lost.",
    10147: "OrderId {id} that needs to be cancelled is not found.",
}



@dataclass(frozen=True)
class TranscriptEntry:
    """One message on the wire. The handshake has msg_id 0: in, the client's version string ("v157..178");
    out, the reply (server version, connection time)."""

    direction: str  # "in" (client -> gateway) or "out"
    conn_id: int
    client_id: int | None  # None before startApi
    msg_id: int
    fields: list[str]
    at: float

    def __repr__(self) -> str:
        return f"<{self.direction} c{self.client_id} {'|'.join(self.fields)[:120]}>"


@dataclass
class Connection:
    conn_id: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    peer: str
    client_id: int | None = None
    sent: int = 0
    closed: bool = False
    account_updates: str | None = None
    positions: bool = False
    multi: dict[int, list[str]] = field(default_factory=dict)  # reqAccountUpdatesMulti: reqId -> accounts
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)


class _DropConnection(Exception):
    """Ends a connection's session (duplicate client id, fault, bad input) without touching the others."""


class SimulatedGateway:
    """A TWS-protocol server holding the state of a scenario; see README.md next to this module."""

    def __init__(
        self,
        scenario: None | str | Path | dict | Scenario = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        faults=(),
        readonly: bool = False,
        now: dt.datetime | None = None,
    ):
        self.scenario = resolve_scenario(scenario)
        self.host = host
        self.port = port
        self.faults: list[Fault] = [parse_fault(f) for f in self.scenario.faults] + [
            f if isinstance(f, Fault) else parse_fault(f) for f in faults
        ]
        self.readonly = readonly or self.scenario.readonly or self._has("readonly")
        if now is not None and now.tzinfo is None:
            now = now.replace(tzinfo=dt.UTC)  # a naive fixed time is taken as UTC
        self._fixed_now = now.astimezone(dt.UTC) if now else None
        self.state = GatewayState(self.scenario, self.now())
        self.transcript: list[TranscriptEntry] = []
        self._connections: dict[int, Connection] = {}
        self._next_conn_id = 1
        self._server: asyncio.AbstractServer | None = None
        self._refuse_socket: socket.socket | None = None
        self._sessions: set[asyncio.Task] = set()

    # ---- lifecycle ----

    def now(self) -> dt.datetime:
        return self._fixed_now or dt.datetime.now(dt.UTC)

    def _has(self, kind: str) -> Fault | None:
        return next((f for f in self.faults if f.kind == kind), None)

    async def start(self) -> None:
        if self._has("refuse"):
            # a bound socket that never listens: connecting gets ECONNREFUSED, like a gateway that is down
            self._refuse_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._refuse_socket.bind((self.host, self.port))
            self.port = self._refuse_socket.getsockname()[1]
        else:
            self._server = await asyncio.start_server(self._serve, self.host, self.port)
            self.port = self._server.sockets[0].getsockname()[1]
        log.info("simulated gateway on %s:%d (scenario %s, faults %s, readonly %s)", self.host, self.port,
                 self.scenario.name, [str(f) for f in self.faults] or "none", self.readonly)

    async def stop(self) -> None:
        if self._refuse_socket is not None:
            self._refuse_socket.close()
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections.values()):
            self._close(conn)  # the session sees EOF and ends by itself
        sessions = list(self._sessions)
        if sessions:
            await asyncio.wait(sessions, timeout=5)
        if self._server is not None:
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def __aenter__(self) -> SimulatedGateway:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    @property
    def clients(self) -> dict[int, int | None]:
        """Open connections: connection id -> client id (None until startApi)."""
        return {c.conn_id: c.client_id for c in self._connections.values()}

    # ---- transcript helpers ----

    def placed_orders(self, transmit_only: bool = True) -> list[PlaceOrder]:
        """placeOrder requests seen on the wire; with transmit_only, only those that were not what-if and had
        transmit set (i.e. orders that a real gateway would have sent to the market)."""
        orders = [parse_place_order(e.fields) for e in self.transcript
                  if e.direction == "in" and e.msg_id == In.PLACE_ORDER]
        return [o for o in orders if not transmit_only or (o.transmit and not o.what_if)]

    def messages(self, direction: str, msg_id: int, client_id: int | None = None) -> list[TranscriptEntry]:
        return [e for e in self.transcript if e.direction == direction and e.msg_id == msg_id
                and (client_id is None or e.client_id == client_id)]

    # ---- connection handling ----

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        conn = Connection(self._next_conn_id, reader, writer, f"{peer[0]}:{peer[1]}" if peer else "?")
        self._next_conn_id += 1
        self._connections[conn.conn_id] = conn
        session = asyncio.current_task()
        self._sessions.add(session)
        session.add_done_callback(self._sessions.discard)
        sender = asyncio.get_running_loop().create_task(self._sender(conn))
        try:
            await self._session(conn)
        except _DropConnection as e:
            log.info("conn %d (%s): closing: %s", conn.conn_id, conn.peer, e)
        except ProtocolError as e:
            log.warning("conn %d (%s): bad input, dropping client: %s", conn.conn_id, conn.peer, e)
        except (asyncio.IncompleteReadError, ConnectionError):
            log.info("conn %d (%s): client disconnected", conn.conn_id, conn.peer)
        except Exception:  # a bug must cost one connection, never the server
            log.exception("conn %d (%s): internal error, dropping client", conn.conn_id, conn.peer)
        finally:
            await self._flush_and_close(conn, sender)

    async def _flush_and_close(self, conn: Connection, sender: asyncio.Task) -> None:
        if not conn.closed and not sender.done():
            conn.queue.put_nowait(None)  # let queued messages (e.g. error 326) go out before closing
            with suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(sender), 5)
        sender.cancel()
        self._close(conn)

    def _close(self, conn: Connection) -> None:
        if not conn.closed:
            conn.closed = True
            conn.writer.close()
        self._connections.pop(conn.conn_id, None)

    async def _session(self, conn: Connection) -> None:
        head = await conn.reader.readexactly(len(HELLO_PREFIX))
        if head != HELLO_PREFIX:
            raise ProtocolError(f"expected the API hello, got {head!r}")
        (length,) = struct.unpack(">I", await conn.reader.readexactly(4))
        if not 0 < length <= 256:
            raise ProtocolError(f"bad hello length {length}")
        text = (await conn.reader.readexactly(length)).decode("ascii", errors="replace")
        self.transcript.append(TranscriptEntry("in", conn.conn_id, None, 0, [text], time.time()))
        low, high, options = parse_hello(text)
        if not low <= SERVER_VERSION <= high:
            # the real gateway closes the socket on a client whose range it cannot serve
            raise _DropConnection(f"client version range {low}..{high} excludes {SERVER_VERSION}")
        if self._has("no-handshake"):
            log.info("conn %d: fault no-handshake: hello %r left unanswered", conn.conn_id, text)
            while await conn.reader.read(4096):
                pass
            return
        log.info("conn %d (%s): hello %s%s, speaking %d", conn.conn_id, conn.peer, text,
                 f" options {options!r}" if options else "", SERVER_VERSION)
        stamp = self.now().strftime("%Y%m%d %H:%M:%S") + " Coordinated Universal Time"
        self._send(conn, msg.handshake_reply(SERVER_VERSION, stamp), handshake=True)
        while True:
            (length,) = struct.unpack(">I", await conn.reader.readexactly(4))
            if not 0 < length <= MAX_FRAME:
                raise ProtocolError(f"bad frame length {length}")
            fields = decode_payload(await conn.reader.readexactly(length))
            msg_id = int(fields[0])
            self.transcript.append(TranscriptEntry("in", conn.conn_id, conn.client_id, msg_id, fields, time.time()))
            log.debug("conn %d c%s <<< %s", conn.conn_id, conn.client_id, "|".join(fields))
            self._dispatch(conn, msg_id, fields)

    # ---- sending ----

    def _send(self, conn: Connection, fields: list[str], handshake: bool = False) -> None:
        if not conn.closed:
            conn.queue.put_nowait((fields, handshake, asyncio.get_running_loop().time()))

    async def _sender(self, conn: Connection) -> None:
        # one writer per connection keeps messages in order; a delay fault holds each message back by the
        # same latency (measured from when it was produced), so a reply burst arrives late, not spread out
        delay = self._has("delay")
        drop = self._has("drop-after")
        loop = asyncio.get_running_loop()
        while (item := await conn.queue.get()) is not None:
            fields, handshake, produced = item
            if delay:
                await asyncio.sleep(max(0.0, produced + delay.delay_ms / 1000 - loop.time()))
            if conn.closed:
                return
            conn.writer.write(encode_fields(fields))
            msg_id = 0 if handshake else int(fields[0])
            self.transcript.append(TranscriptEntry("out", conn.conn_id, conn.client_id, msg_id, fields, time.time()))
            log.debug("conn %d c%s >>> %s", conn.conn_id, conn.client_id, "|".join(fields))
            with suppress(ConnectionError):
                await conn.writer.drain()
            if not handshake:
                conn.sent += 1
                if drop and conn.sent >= drop.count:
                    log.info("conn %d: fault drop-after:%d: closing", conn.conn_id, drop.count)
                    self._close(conn)
                    return

    def _error(self, conn: Connection, req_id: int, code: int, text: str | None = None) -> None:
        self._send(conn, msg.error(req_id, code, text if text is not None else ERROR_TEXTS.get(code, "Error")))

    # ---- dispatch ----

    def _dispatch(self, conn: Connection, msg_id: int, fields: list[str]) -> None:
        if msg_id == In.START_API:
            self._start_api(conn, fields)
            return
        if conn.client_id is None:
            raise ProtocolError(f"message {msg_id} before startApi")
        handler = self._handlers.get(msg_id)
        if handler is None:
            if msg_id in KNOWN_REQUEST_IDS:
                log.warning("conn %d: request %d is not simulated; ignored", conn.conn_id, msg_id)
                return
            raise ProtocolError(f"unknown message id {msg_id}")
        req_id = request_id(fields)
        if self._has("pacing"):
            self._error(conn, req_id, 100)
            return
        injected = next((f for f in self.faults if f.kind == "error" and f.msg_id == msg_id), None)
        if injected:
            self._error(conn, req_id, injected.code)
            return
        handler(self, conn, fields)

    def _start_api(self, conn: Connection, fields: list[str]) -> None:
        if conn.client_id is not None:
            raise ProtocolError("startApi sent twice")
        client_id = parse_int(fields[2] if len(fields) > 2 else "", None)
        if client_id is None:
            raise ProtocolError("startApi without a client id")
        if any(c.client_id == client_id for c in self._connections.values()):
            self._error(conn, -1, 326)
            raise _DropConnection(f"client id {client_id} already in use")
        conn.client_id = client_id
        log.info("conn %d (%s): startApi clientId %d", conn.conn_id, conn.peer, client_id)
        self._send(conn, msg.managed_accounts(self.state.managed_accounts))
        self._send(conn, msg.next_valid_id(self.state.next_valid_id))
        for code, text in FARM_NOTICES:
            self._error(conn, -1, code, text)

    # ---- simple requests ----

    def _req_ids(self, conn: Connection, fields: list[str]) -> None:
        self._send(conn, msg.next_valid_id(self.state.next_valid_id))

    def _req_current_time(self, conn: Connection, fields: list[str]) -> None:
        self._send(conn, msg.current_time(int(self.now().timestamp())))

    def _req_managed_accts(self, conn: Connection, fields: list[str]) -> None:
        self._send(conn, msg.managed_accounts(self.state.managed_accounts))

    def _ignore(self, conn: Connection, fields: list[str]) -> None:
        pass

    # ---- positions and account data ----

    def _req_positions(self, conn: Connection, fields: list[str]) -> None:
        for p in self.state.positions.values():
            self._send(conn, msg.position(p.account, p.contract, p.position, p.avg_cost))
        self._send(conn, msg.position_end())
        conn.positions = True

    def _cancel_positions(self, conn: Connection, fields: list[str]) -> None:
        conn.positions = False

    def _account_values(self, account: str) -> list[tuple[str, str, str]]:
        """(key, value, currency) rows of reqAccountUpdates, as TWS sends them (per currency incl. BASE)."""
        acct = self.state.accounts[account]
        s = self.state.summary(account)
        rows = [("AccountCode", account, ""), ("AccountOrGroup", account, "BASE"), ("AccountReady", "true", ""),
                ("AccountType", acct.account_type, "")]
        rows += [(key, money(value), acct.base_currency) for key, value in self._summary_values(s).items()]
        rows.append(("Cushion", f"{s['Cushion']:.6f}", ""))
        return rows + self._ledger_rows(account, "$LEDGER:ALL")

    @staticmethod
    def _summary_values(s: dict[str, float]) -> dict[str, float]:
        """The base-currency account summary values under all the names IB reports them by."""
        return {
            "NetLiquidation": s["NetLiquidation"],
            "TotalCashValue": s["TotalCashValue"],
            "SettledCash": s["TotalCashValue"],
            "AccruedCash": 0.0,
            "BuyingPower": s["BuyingPower"],
            "EquityWithLoanValue": s["EquityWithLoanValue"],
            "PreviousDayEquityWithLoanValue": s["EquityWithLoanValue"],
            "GrossPositionValue": s["GrossPositionValue"],
            "RegTEquity": s["EquityWithLoanValue"],
            "RegTMargin": s["GrossPositionValue"] * 0.5,
            "SMA": max(s["EquityWithLoanValue"] - s["GrossPositionValue"] * 0.5, 0.0),
            "InitMarginReq": s["InitMarginReq"],
            "MaintMarginReq": s["MaintMarginReq"],
            "AvailableFunds": s["AvailableFunds"],
            "ExcessLiquidity": s["ExcessLiquidity"],
            "FullInitMarginReq": s["InitMarginReq"],
            "FullMaintMarginReq": s["MaintMarginReq"],
            "FullAvailableFunds": s["AvailableFunds"],
            "FullExcessLiquidity": s["ExcessLiquidity"],
            "LookAheadInitMarginReq": s["InitMarginReq"],
            "LookAheadMaintMarginReq": s["MaintMarginReq"],
            "LookAheadAvailableFunds": s["AvailableFunds"],
            "LookAheadExcessLiquidity": s["ExcessLiquidity"],
        }

    def _portfolio(self, p: Position) -> list[str]:
        return msg.portfolio_value(
            p.contract, p.position, p.contract.price, self.state.market_value(p), p.avg_cost,
            self.state.unrealized_pnl(p), p.realized_pnl, p.account,
        )

    def _send_account_update(self, conn: Connection, account: str, positions: list[Position]) -> None:
        for key, value, ccy in self._account_values(account):
            self._send(conn, msg.account_value(key, value, ccy, account))
        for p in positions:
            self._send(conn, self._portfolio(p))
        self._send(conn, msg.account_update_time(self.now().astimezone(self.state.tz).strftime("%H:%M")))

    def _req_account_updates(self, conn: Connection, fields: list[str]) -> None:
        subscribe = fields[2] not in ("0", "") if len(fields) > 2 else False
        account = fields[3] if len(fields) > 3 else ""
        if not subscribe:
            conn.account_updates = None
            return
        account = account or self.state.managed_accounts[0]
        if account not in self.state.accounts:
            self._error(conn, -1, 321, f"Error validating request.-'bA' : cause - Account {account} is not managed")
            return
        conn.account_updates = account
        self._send_account_update(conn, account, self.state.account_positions(account))
        self._send(conn, msg.account_download_end(account))

    def _multi_rows(self, req_id: int, account: str) -> list[list[str]]:
        return [msg.account_update_multi(req_id, account, "", key, value, ccy)
                for key, value, ccy in self._account_values(account)]

    def _req_account_updates_multi(self, conn: Connection, fields: list[str]) -> None:
        req_id = parse_int(fields[2])
        account = fields[3] if len(fields) > 3 else ""
        accounts = self.state.managed_accounts if account in ("", "All") else [account]
        if not set(accounts) <= set(self.state.accounts):
            self._error(conn, req_id, 321, f"Error validating request.-'bA' : cause - Account {account} is not managed")
            return
        for acct in accounts:
            for row in self._multi_rows(req_id, acct):
                self._send(conn, row)
        conn.multi[req_id] = accounts
        self._send(conn, msg.account_update_multi_end(req_id))

    def _cancel_account_updates_multi(self, conn: Connection, fields: list[str]) -> None:
        conn.multi.pop(parse_int(fields[2]), None)

    def _req_account_summary(self, conn: Connection, fields: list[str]) -> None:
        req_id, tags = parse_int(fields[2]), fields[4].split(",") if len(fields) > 4 else []
        for account in self.state.managed_accounts:
            s = self.state.summary(account)
            values = self._summary_values(s)
            base = self.state.accounts[account].base_currency
            for tag in sorted(tags):  # the recorded gateway answers in tag order, not request order
                if tag == "AccountType":
                    rows = [(tag, self.state.accounts[account].account_type, "")]
                elif tag == "Cushion":
                    rows = [(tag, f"{s['Cushion']:.6f}", "")]
                elif tag in values:
                    rows = [(tag, money(values[tag]), base)]
                elif tag.startswith("$LEDGER"):
                    rows = self._ledger_rows(account, tag)
                else:
                    rows = []
                for key, value, ccy in rows:
                    self._send(conn, msg.account_summary(req_id, account, key, value, ccy))
        self._send(conn, msg.account_summary_end(req_id))

    def _ledger_rows(self, account: str, tag: str) -> list[tuple[str, str, str]]:
        """$LEDGER (base currency), $LEDGER:ALL (every currency) or $LEDGER:CCY (one currency)."""
        wanted = tag.partition(":")[2] or "BASE"
        base = self.state.accounts[account].base_currency
        rows = []
        for ccy, values in self.state.currency_ledger(account).items():
            if wanted not in ("ALL", ccy):
                continue
            rate = "1.00" if ccy in ("BASE", base) else jdouble(self.state.fx_rate(ccy, base))
            rows += [("Currency", ccy, ccy), ("ExchangeRate", rate, ccy)]
            rows += [(key, money(values[key]), ccy) for key in values]
            rows.append(("TotalCashBalance", money(values["CashBalance"]), ccy))
        return rows

    # ---- orders ----

    def _visible_to(self, conn: Connection, order: Order) -> bool:
        return order.client_id == conn.client_id

    def _send_open_orders(self, conn: Connection, orders) -> None:
        for o in orders:
            self._send(conn, msg.open_order(o))
            self._send(conn, msg.order_status(o))
        self._send(conn, msg.open_order_end())

    def _req_open_orders(self, conn: Connection, fields: list[str]) -> None:
        self._send_open_orders(conn, [o for o in self.state.open_orders.values() if self._visible_to(conn, o)])

    def _req_all_open_orders(self, conn: Connection, fields: list[str]) -> None:
        self._send_open_orders(conn, list(self.state.open_orders.values()))

    def _req_auto_open_orders(self, conn: Connection, fields: list[str]) -> None:
        if conn.client_id != 0:
            self._error(conn, -1, 327)

    def _req_completed_orders(self, conn: Connection, fields: list[str]) -> None:
        api_only = len(fields) > 1 and fields[1] == "1"
        for o in self.state.completed_orders:
            if not (api_only and o.client_id == 0 and o.order_id == 0):
                self._send(conn, msg.completed_order(o))
        self._send(conn, msg.completed_orders_end())

    def _req_executions(self, conn: Connection, fields: list[str]) -> None:
        req_id = request_id(fields)
        try:
            req_id, flt = parse_executions(fields)
        except ProtocolError as e:
            self._error(conn, req_id, 320, f"{ERROR_TEXTS[320]} {e}")
            return
        for e in self.state.executions:
            if _exec_matches(e, flt):
                self._send(conn, msg.exec_details(req_id, e, self.state.format_time(e.time)))
                self._send(conn, msg.commission_report(e))
        self._send(conn, msg.exec_details_end(req_id))

    def _req_contract_details(self, conn: Connection, fields: list[str]) -> None:
        req_id, query = parse_contract_details(fields)
        found = match_contracts(self.state.contracts.values(), query)
        if not found:
            self._error(conn, req_id, 200)
            return
        for c in found:
            self._send(conn, msg.contract_details(req_id, c))
        self._send(conn, msg.contract_details_end(req_id))

    def _place_order(self, conn: Connection, fields: list[str]) -> None:
        req = parse_place_order(fields)
        oid = req.order_id
        self.state.next_valid_id = max(self.state.next_valid_id, oid + 1)
        if self.readonly:
            self._error(conn, oid, 321)
            return
        reject = self._has("reject-orders")
        if reject:
            self._error(conn, oid, 201, ERROR_TEXTS[201] + reject.reason)
            return
        contracts = match_contracts(self.state.contracts.values(), req.contract)
        if len(contracts) != 1:
            text = None if not contracts else (
                f"The contract description specified for {req.contract['symbol']} is ambiguous.")
            self._error(conn, oid, 200, text)
            return
        account = req.account or self.state.managed_accounts[0]
        if account not in self.state.accounts:
            self._error(conn, oid, 201, f"{ERROR_TEXTS[201]}Account {account} is not managed by this login.")
            return
        if req.action not in ("BUY", "SELL", "SSHORT") or req.total_quantity <= 0:
            self._error(conn, oid, 201, f"{ERROR_TEXTS[201]}Invalid action or order size.")
            return
        existing = self.state.find_open_order(conn.client_id, oid)
        if existing is None and any(o.client_id == conn.client_id and o.order_id == oid
                                    for o in self.state.completed_orders):
            self._error(conn, oid, 103)
            return
        if req.what_if:  # never becomes an order, so it gets no permId
            perm_id = 0
        else:
            perm_id = existing.perm_id if existing else self.state.new_perm_id()
        order = _order_from_request(req, conn.client_id, account, contracts[0], perm_id)
        if req.what_if:
            self.state.what_if(order)
            self._send(conn, msg.open_order(order))
            return
        if existing is not None:
            order.status = existing.status
        self.state.open_orders[order.perm_id] = order
        if existing is None:
            self._send(conn, msg.open_order(order))
            self._send(conn, msg.order_status(order))
        if not req.transmit:
            return
        if self.state.is_marketable(order):
            execution = self.state.fill(order, self.now())
            self._send(conn, msg.exec_details(-1, execution, self.state.format_time(execution.time)))
            self._send(conn, msg.open_order(order, with_commission=False))
            self._send(conn, msg.order_status(order))
            self._send(conn, msg.open_order(order))
            self._send(conn, msg.commission_report(execution))
            self._broadcast_account_change(order.account, execution)
        else:
            order.status = "Submitted"
            self._send(conn, msg.open_order(order))
            self._send(conn, msg.order_status(order))

    def _broadcast_account_change(self, account: str, execution: Execution) -> None:
        pos = self.state.positions[(account, execution.contract.conId)]
        for conn in list(self._connections.values()):
            if conn.client_id is None:
                continue
            if conn.positions:
                self._send(conn, msg.position(pos.account, pos.contract, pos.position, pos.avg_cost))
            if conn.account_updates == account:
                self._send_account_update(conn, account, [pos])
            for req_id, accounts in conn.multi.items():
                if account in accounts:
                    for row in self._multi_rows(req_id, account):
                        self._send(conn, row)

    def _cancel_order(self, conn: Connection, fields: list[str]) -> None:
        oid = parse_cancel_order(fields)
        if self.readonly:
            self._error(conn, oid, 321)
            return
        order = self.state.find_open_order(conn.client_id, oid)
        if order is None:
            self._error(conn, oid, 10147, ERROR_TEXTS[10147].format(id=oid))
            return
        self._cancel(conn, order)

    def _cancel(self, conn: Connection, order: Order) -> None:
        self.state.cancel(order, self.now())
        self._send(conn, msg.order_status(order))
        self._error(conn, order.order_id, 202)

    def _req_global_cancel(self, conn: Connection, fields: list[str]) -> None:
        if self.readonly:
            self._error(conn, -1, 321)
            return
        owners = {c.client_id: c for c in self._connections.values() if c.client_id is not None}
        for order in list(self.state.open_orders.values()):
            target = owners.get(order.client_id)
            if target is not None:
                self._cancel(target, order)
            else:
                self.state.cancel(order, self.now())

    _handlers = {
        In.PLACE_ORDER: _place_order,
        In.CANCEL_ORDER: _cancel_order,
        In.REQ_OPEN_ORDERS: _req_open_orders,
        In.REQ_ACCOUNT_UPDATES: _req_account_updates,
        In.REQ_EXECUTIONS: _req_executions,
        In.REQ_IDS: _req_ids,
        In.REQ_CONTRACT_DETAILS: _req_contract_details,
        In.SET_SERVER_LOG_LEVEL: _ignore,
        In.REQ_AUTO_OPEN_ORDERS: _req_auto_open_orders,
        In.REQ_ALL_OPEN_ORDERS: _req_all_open_orders,
        In.REQ_MANAGED_ACCTS: _req_managed_accts,
        In.REQ_CURRENT_TIME: _req_current_time,
        In.REQ_GLOBAL_CANCEL: _req_global_cancel,
        In.REQ_POSITIONS: _req_positions,
        In.REQ_ACCOUNT_SUMMARY: _req_account_summary,
        In.CANCEL_ACCOUNT_SUMMARY: _ignore,
        In.CANCEL_POSITIONS: _cancel_positions,
        In.REQ_ACCOUNT_UPDATES_MULTI: _req_account_updates_multi,
        In.CANCEL_ACCOUNT_UPDATES_MULTI: _cancel_account_updates_multi,
        In.REQ_COMPLETED_ORDERS: _req_completed_orders,
    }


def _exec_matches(e: Execution, f: ExecFilter) -> bool:
    side = {"BUY": "BOT", "SELL": "SLD"}.get(f.side.upper(), f.side.upper())
    return all((
        not f.client_id or e.client_id == f.client_id,
        not f.account or e.account == f.account,
        f.time is None or e.time >= f.time,
        not f.symbol or e.contract.symbol.upper() == f.symbol.upper(),
        not f.sec_type or e.contract.secType == f.sec_type.upper(),
        not f.exchange or e.exchange.upper() == f.exchange.upper(),
        not side or e.side == side,
    ))


def _order_from_request(req: PlaceOrder, client_id: int, account: str, contract, perm_id: int) -> Order:
    return Order(
        order_id=req.order_id,
        client_id=client_id,
        perm_id=perm_id,
        account=account,
        contract=contract,
        action=req.action,
        total_quantity=req.total_quantity,
        order_type=req.order_type,
        lmt_price=req.lmt_price,
        aux_price=req.aux_price,
        tif=req.tif,
        oca_group=req.oca_group,
        open_close=req.open_close if contract.secType == "OPT" else "",  # TWS keeps it for options only
        origin=req.origin,
        order_ref=req.order_ref,
        outside_rth=req.outside_rth,
        hidden=req.hidden,
        good_after_time=req.good_after_time,
        good_till_date=req.good_till_date,
        parent_id=req.parent_id,
        trail_stop_price=req.trail_stop_price,
        trailing_percent=req.trailing_percent,
        cash_qty=req.cash_qty,
        model_code=req.model_code,
        hedge=req.hedge,
        scale_extra=req.scale_extra,
        scale_price_increment=req.scale_price_increment,
        delta_neutral_contract=req.delta_neutral_contract,
        algo_strategy=req.algo_strategy,
        algo_params=req.algo_params,
        peg_bench=req.peg_bench,
        conditions=req.conditions,
        conditions_ignore_rth=req.conditions_ignore_rth,
        conditions_cancel_order=req.conditions_cancel_order,
        what_if=req.what_if,
        transmit=req.transmit,
    )


# ---- running it ----


class _ThreadedGateway:
    """Runs a SimulatedGateway on its own event loop in a daemon thread (see start_in_thread)."""

    def __init__(self, gateway: SimulatedGateway):
        self.gateway = gateway
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="ibg-sim", daemon=True)

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.gateway.start(), self.loop).result(10)

    def stop(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.gateway.stop(), self.loop).result(10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()


@contextmanager
def start_in_thread(scenario=None, *, faults=(), port: int = 0, host: str = "127.0.0.1", readonly: bool = False,
                    now: dt.datetime | None = None):
    """Run a simulated gateway in a background thread; yields the SimulatedGateway (its .port is bound)."""
    gateway = SimulatedGateway(scenario, host=host, port=port, faults=faults, readonly=readonly, now=now)
    runner = _ThreadedGateway(gateway)
    runner.start()
    try:
        yield gateway
    finally:
        runner.stop()


def serve_forever(port: int = 4002, scenario=None, faults=(), readonly: bool = False, banner=sys.stderr,
                  host: str = "127.0.0.1") -> None:
    """Run in the foreground until Ctrl-C; prints one banner line.

    Raises ScenarioError / FaultSpecError for a bad scenario or fault before anything listens, and OSError when
    the port cannot be bound."""

    gateway = SimulatedGateway(scenario, host=host, port=port, faults=faults, readonly=readonly)

    async def main() -> None:
        await gateway.start()
        accounts = ",".join(gateway.state.managed_accounts)
        fault_text = " faults=" + ",".join(str(f) for f in gateway.faults) if gateway.faults else ""
        print(f"ibg-audit sim: simulated IB Gateway on {host}:{gateway.port} (server version {SERVER_VERSION}, "
              f"scenario {gateway.scenario.name}, accounts {accounts}{' readonly' if gateway.readonly else ''}"
              f"{fault_text}) - Ctrl-C to stop", file=banner, flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await gateway.stop()

    with suppress(KeyboardInterrupt):
        asyncio.run(main())
