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

from ib_async import IB, StartupFetchNONE
from ib_async.wrapper import RequestError

from .errors import GatewayError, NotConnectedError

CLIENT_ID_IN_USE = 326
# IB codes that are informational (farm status etc.), never a failure of a request.
INFO_CODES = frozenset(range(2100, 2200)) | {1102}


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
        lost = asyncio.get_running_loop().create_future()

        def on_lost(*_):
            if not lost.done():
                lost.set_result(None)

        self.ib.disconnectedEvent += on_lost
        task = asyncio.ensure_future(awaitable)
        try:
            done, _ = await asyncio.wait({task, lost}, timeout=self.remaining(), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.ib.disconnectedEvent -= on_lost
        if task in done:
            try:
                return task.result()
            except RequestError as e:
                raise GatewayError(f"{what}: IB error {e.code}: {e.message}", code=e.code) from None
        task.cancel()
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
        finally:
            ib.disconnect()
        return
    raise last_error


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
    connect = asyncio.ensure_future(
        ib.connectAsync(
            endpoint.host,
            endpoint.port,
            clientId=session.client_id,
            timeout=session.remaining(),
            readonly=readonly,
            fetchFields=StartupFetchNONE,
        )
    )
    where = f"{endpoint.host}:{endpoint.port}"
    try:
        done, _ = await asyncio.wait({connect, failed}, timeout=session.remaining(), return_when=asyncio.FIRST_COMPLETED)
    finally:
        ib.client.apiError -= on_api_error
    if connect in done and connect.exception() is None and not failed.done():
        return
    connect.cancel()
    with contextlib.suppress(BaseException):
        await connect
    if failed.done():
        code, message = failed.result()
        code = code or _code_from(session)
        if code == CLIENT_ID_IN_USE:
            raise NotConnectedError(
                f"client id {session.client_id} is already in use at {where}", code=CLIENT_ID_IN_USE
            )
    if connect.done() and not connect.cancelled() and isinstance(connect.exception(), ConnectionRefusedError):
        raise NotConnectedError(f"connection refused at {where}: nothing is listening on that port")
    if connect.done() and not connect.cancelled() and isinstance(connect.exception(), OSError):
        raise NotConnectedError(f"cannot connect to {where}: {connect.exception().strerror or connect.exception()}")
    if failed.done():
        raise NotConnectedError(f"the gateway at {where} closed the connection before the API was ready")
    raise NotConnectedError(
        f"no API handshake from {where} within the {endpoint.timeout:g}s timeout"
    )


def _code_from(session: GatewaySession) -> int | None:
    code, _ = session.last_error()
    return code
