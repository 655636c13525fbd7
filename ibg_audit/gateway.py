"""Gateway session: connect to IB Gateway/TWS with ib_async, bounded in time, and map failures to typed errors.

Everything a call does with the gateway runs under one deadline (the --timeout), so a silent or
misbehaving gateway can never hold a command longer than that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from ib_async import IB
from ib_async.wrapper import RequestError

from .errors import GatewayError, NotConnectedError

CLIENT_ID_IN_USE = 326
# IB codes that are informational (farm status etc.), never a failure of a request.
INFO_CODES = frozenset(range(2100, 2200)) | {1102}
# Connection-wide notices sent with reqId -1 that do not refuse the request in flight: IB-server connectivity
# lost (1100) and restored (1101, 1102); the request may still be answered.
NOT_REQUEST_ERRORS = INFO_CODES | {1100, 1101}


@dataclass(frozen=True)
class Endpoint:
    host: str = "127.0.0.1"
    port: int = 4002
    client_id: int = 9001
    timeout: float = 10.0
    client_id_tries: int = 3
    simulated: bool = False


@dataclass
class GatewaySession:
    """A connected ib_async client plus what we learned about the gateway."""

    ib: IB
    endpoint: Endpoint
    client_id: int
    deadline: float
    errors: list[tuple[int, int, str]] = field(default_factory=list)

    @property
    def server_version(self) -> int:
        return self.ib.client.serverVersion()

    @property
    def accounts(self) -> list[str]:
        return sorted(self.ib.managedAccounts())

    def remaining(self) -> float:
        return max(0.05, self.deadline - time.monotonic())

    async def request(self, what: str, awaitable):
        """Await one request; turn IB errors, a dropped socket and the deadline into typed errors."""
        loop = asyncio.get_running_loop()
        lost, refused = loop.create_future(), loop.create_future()

        def on_lost(*_):
            if not lost.done():
                lost.set_result(None)

        def on_error(req_id, code, message, _contract):
            # Requests without a request id (positions, all open orders) are refused with reqId -1; ib_async
            # cannot tie that error to them, so without this they would wait for the whole timeout.
            if req_id == -1 and code not in NOT_REQUEST_ERRORS and not refused.done():
                refused.set_result((code, message))

        self.ib.disconnectedEvent += on_lost
        self.ib.errorEvent += on_error
        task = asyncio.ensure_future(awaitable)
        try:
            done, _ = await asyncio.wait(
                {task, lost, refused}, timeout=self.remaining(), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            self.ib.disconnectedEvent -= on_lost
            self.ib.errorEvent -= on_error
        if task in done:
            try:
                return task.result()
            except RequestError as e:
                raise GatewayError(f"{what}: IB error {e.code}: {e.message}", code=e.code) from None
            except ConnectionError:
                # ib_async fails the pending requests with ConnectionError when the socket closes
                raise NotConnectedError(f"the gateway closed the connection during {what}") from None
        task.cancel()
        if refused in done:
            code, message = refused.result()
            raise GatewayError(f"{what}: IB error {code}: {message}", code=code)
        if lost in done:
            raise NotConnectedError(f"the gateway closed the connection during {what}")
        code, message = self.last_error()
        if code is not None:
            raise GatewayError(f"{what}: IB error {code}: {message}", code=code)
        raise GatewayError(f"{what}: no answer from the gateway within the {self.endpoint.timeout:g}s timeout")

    def last_error(self) -> tuple[int | None, str | None]:
        for _req_id, code, message in reversed(self.errors):
            if code not in INFO_CODES:
                return code, message
        return None, None


def quiet_ib_async_logging(verbose: bool = False) -> None:
    """ib_async logs every IB notice at ERROR; our JSON carries what matters, so keep stderr clean."""
    logging.getLogger("ib_async").setLevel(logging.DEBUG if verbose else logging.CRITICAL)


@contextlib.asynccontextmanager
async def open_session(endpoint: Endpoint, *, readonly: bool = True):
    """Connect (retrying the next client ids when one is in use) and yield a GatewaySession."""
    deadline = time.monotonic() + endpoint.timeout
    last_error: NotConnectedError | None = None
    for attempt in range(max(1, endpoint.client_id_tries)):
        client_id = endpoint.client_id + attempt
        ib = IB()
        ib.RaiseRequestErrors = True
        session = GatewaySession(ib, endpoint, client_id, deadline)
        try:
            await _connect(session, readonly)
        except NotConnectedError as e:
            ib.disconnect()
            last_error = e
            if e.code == CLIENT_ID_IN_USE and time.monotonic() < deadline:
                continue
            raise
        try:
            yield session
        except ConnectionError:
            # ib_async raises it when a request is written to a socket the gateway has just closed
            raise NotConnectedError(
                f"the gateway at {endpoint.host}:{endpoint.port} closed the connection"
            ) from None
        finally:
            ib.disconnect()
        return
    tries = max(1, endpoint.client_id_tries)
    if tries == 1:
        raise last_error
    raise NotConnectedError(
        f"client ids {endpoint.client_id}..{endpoint.client_id + tries - 1} are all in use at "
        f"{endpoint.host}:{endpoint.port} (tried {tries}; pass a free --client-id, or try more ids with "
        "--client-id-tries)",
        code=CLIENT_ID_IN_USE,
    )


async def _connect(session: GatewaySession, readonly: bool) -> None:
    ib, endpoint = session.ib, session.endpoint
    failed = asyncio.get_running_loop().create_future()

    def on_error(req_id, code, message, _contract):
        session.errors.append((req_id, code, message))
        if code == CLIENT_ID_IN_USE and not failed.done():
            failed.set_result((code, message))

    def on_api_error(message):
        if not failed.done():
            failed.set_result((None, message))

    ib.errorEvent += on_error
    ib.client.apiError += on_api_error
    # The client-level connect (handshake + startApi, ready at nextValidId and managedAccounts): IB.connectAsync
    # always requests positions too, whatever fetchFields says, so an error or a pacing violation on positions
    # would fail every kind's connect, and every dump would fetch positions it does not need.
    ib.wrapper.clientId = session.client_id
    connect = asyncio.ensure_future(
        ib.client.connectAsync(endpoint.host, endpoint.port, session.client_id, session.remaining())
    )
    where = f"{endpoint.host}:{endpoint.port}"
    try:
        done, _ = await asyncio.wait({connect, failed}, timeout=session.remaining(), return_when=asyncio.FIRST_COMPLETED)
    finally:
        ib.client.apiError -= on_api_error
    if connect in done and connect.exception() is None and not failed.done():
        if session.client_id == 0 and not readonly:
            # what IB.connectAsync does for client 0; it binds TWS's manual orders, so never on a read-only session
            ib.reqAutoOpenOrders(True)
        return
    connect.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await connect
    failure = None if connect.cancelled() else connect.exception()
    if failed.done() and (failed.result()[0] or session.last_error()[0]) == CLIENT_ID_IN_USE:
        raise NotConnectedError(f"client id {session.client_id} is already in use at {where}", code=CLIENT_ID_IN_USE)
    if isinstance(failure, ConnectionRefusedError):
        raise NotConnectedError(f"connection refused at {where}: nothing is listening on that port")
    if isinstance(failure, OSError) and not isinstance(failure, TimeoutError):
        raise NotConnectedError(f"cannot connect to {where}: {failure.strerror or failure}")
    if failed.done():
        raise NotConnectedError(f"the gateway at {where} closed the connection before the API was ready")
    raise NotConnectedError(f"no API handshake from {where} within the {endpoint.timeout:g}s timeout")
