"""Order smoke orchestration: validate the request, decide the mode, resolve the contract, run a what-if or send a
paper order, and record everything.

The mode comes from safety.decide() only, fed with the two environment flags, the port we connect to and the
accounts the gateway manages. A transmit is write-ahead audited: the intent row is committed to the store before
placeOrder goes out, and every outcome is appended as an event afterwards, so a process that dies in between
leaves evidence of a possibly live order.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import math
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NoReturn

from . import contracts
from .dumps import TEARDOWN_S, envelope_for, finish, gateway_json, iso_utc, now_iso
from .errors import (
    EXIT_BLOCKED_TRANSMIT,
    EXIT_CANCEL_UNCONFIRMED,
    BadInputError,
    GatewayError,
    IbgAuditError,
    StoreError,
)
from .gateway import INFO_CODES, Endpoint, GatewaySession, open_session
from .ibvalues import clean_float, clean_int
from .safety import ENV_FLAGS, Decision, decide
from .store import Store, build_document

ASSETS = ("STK", "FUT")
ORDER_TYPES = ("LMT", "MKT")
ACTIONS = ("BUY", "SELL")
TIFS = ("DAY", "GTC", "IOC", "FOK", "OPG")
ORDER_REF = "ibg-audit smoke"  # lets an operator recognise smoke orders in TWS and in the gateway's logs

MARGIN_FIELDS = (
    "initMarginBefore", "initMarginChange", "initMarginAfter",
    "maintMarginBefore", "maintMarginChange", "maintMarginAfter",
    "equityWithLoanBefore", "equityWithLoanChange", "equityWithLoanAfter",
)
COMMISSION_FIELDS = ("commission", "minCommission", "maxCommission")

# Order statuses (IB's names) that end the wait after placeOrder.
ACCEPTED = frozenset({"PreSubmitted", "Submitted", "Filled"})
REFUSED = frozenset({"Cancelled", "ApiCancelled", "Inactive"})
CANCELLED = frozenset({"Cancelled", "ApiCancelled"})
FILLED_FIRST = "the order filled before it could be cancelled: a position was opened"
READ_ONLY_API = 321  # ib_async treats it as a warning and would wait forever; for us it is a refusal
ORDER_CANCELED = 202  # "Order Canceled - reason:", the gateway's notice that goes with status Cancelled


class CancelUnconfirmedError(IbgAuditError):
    """A transmitted order's --auto-cancel could not be confirmed: the order may still be working."""

    exit_code = EXIT_CANCEL_UNCONFIRMED
    error_type = "cancel_unconfirmed"


@dataclass(frozen=True)
class SmokeRequest:
    """What the user asked for; invalid combinations raise BadInputError on construction (nothing is sent)."""

    asset: str
    symbol: str
    order_type: str
    limit: float | None = None
    action: str = "BUY"
    qty: float = 1
    whatif: bool = False
    auto_cancel: bool = False
    resolve_front_month: bool = False
    expiry: str | None = None
    exchange: str | None = None
    currency: str = "USD"
    account: str | None = None
    tif: str = "DAY"

    def __post_init__(self):
        _one_of("--asset", self.asset, ASSETS)
        _one_of("--order", self.order_type, ORDER_TYPES)
        _one_of("--action", self.action, ACTIONS)
        _one_of("--tif", self.tif, TIFS)
        if not self.symbol or self.symbol != self.symbol.strip():
            raise BadInputError(f"--symbol must be a symbol such as AAPL, got {self.symbol!r}")
        if not _finite(self.qty) or self.qty <= 0:
            raise BadInputError(f"--qty must be a number greater than 0, got {self.qty!r}")
        if self.order_type == "LMT" and self.limit is None:
            raise BadInputError("--order LMT needs --limit PRICE")
        if self.order_type == "MKT" and self.limit is not None:
            raise BadInputError("--limit only applies to --order LMT")
        if self.limit is not None and (not _finite(self.limit) or self.limit <= 0):
            raise BadInputError(f"--limit must be a price greater than 0, got {self.limit!r}")
        if self.asset == "STK" and (self.resolve_front_month or self.expiry is not None):
            raise BadInputError("--resolve-front-month and --expiry only apply to --asset FUT")
        if self.asset == "FUT" and self.resolve_front_month == (self.expiry is not None):
            raise BadInputError("--asset FUT needs exactly one of --resolve-front-month or --expiry YYYYMM[DD]")
        if self.expiry is not None:
            contracts.parse_expiry(self.expiry)
        for option, value in (("--exchange", self.exchange), ("--account", self.account)):
            if value is not None and (not value or value != value.strip()):
                raise BadInputError(f"{option} must not be empty or padded, got {value!r}")
        if not (len(self.currency) == 3 and self.currency.isascii() and self.currency.isalpha()):
            raise BadInputError(f"--currency must be a three-letter code such as USD, got {self.currency!r}")

    def args(self) -> dict:
        """The request as recorded in the snapshot, under the command line's option names."""
        return {
            "asset": self.asset,
            "symbol": self.symbol,
            "order": self.order_type,
            "limit": clean_float(self.limit),
            "action": self.action,
            "qty": clean_float(self.qty),
            "whatif": self.whatif,
            "auto_cancel": self.auto_cancel,
            "resolve_front_month": self.resolve_front_month,
            "expiry": self.expiry,
            "exchange": self.exchange,
            "currency": self.currency,
            "account": self.account,
            "tif": self.tif,
        }


def _one_of(option: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise BadInputError(f"{option} must be one of {', '.join(allowed)}, got {value!r}")


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def run_smoke(
    request: SmokeRequest,
    endpoint: Endpoint,
    store: Store | None,
    env: Mapping[str, str],
    *,
    now: dt.datetime | None = None,
) -> tuple[dict, int]:
    """Run one smoke call; returns (document, exit code). Failures are in the document, never raised.

    ``env`` is read for ALLOW_ORDERS and IBKR_PAPER only. ``now`` (timezone-aware) fixes the clock that judges
    futures expiries; by default the real time at resolution. A transmit needs a store (the write-ahead audit):
    without one the call stops before placeOrder with a bad-input error.
    """
    call = _SmokeCall(request, endpoint, store, {k: env[k] for k in ENV_FLAGS if k in env}, now)
    return call.run()


class _SmokeCall:
    """The state of one call as it progresses, so that a failure at any step still yields a complete document."""

    def __init__(self, request: SmokeRequest, endpoint: Endpoint, store: Store | None, env: dict, now):
        self.request = request
        self.endpoint = endpoint
        self.store = store
        self.env = env
        self.now = now
        self.gateway = gateway_json(endpoint)
        # Until the gateway tells us its accounts the decision cannot allow a transmit.
        self.decision: Decision = self._decide(None)
        self.contract: dict | None = None
        self.candidates: list[dict] | None = None
        self.order: dict | None = None
        self.order_state: dict | None = None
        self.order_id: int | None = None
        self.perm_id: int | None = None
        self.status: str | None = None
        self.cancelled: bool | None = None
        self.final_status: str | None = None
        self.intent_id: int | None = None
        self.transmitted = False
        self.notes: list[str] = []
        self.trade = None
        self.no_answer_recorded = False

    def _decide(self, accounts) -> Decision:
        return decide(
            whatif=self.request.whatif,
            env=self.env,
            port=self.endpoint.port,
            managed_accounts=accounts,
            target_account=self.request.account,
        )

    # --- the call -----------------------------------------------------------------------------

    def run(self) -> tuple[dict, int]:
        started = dt.datetime.now(dt.timezone.utc)
        t0 = time.monotonic()
        error: IbgAuditError | None = None
        try:
            # The session's own deadline bounds every wait; this outer bound only catches a teardown that hangs.
            asyncio.run(asyncio.wait_for(self._converse(), self.endpoint.timeout + TEARDOWN_S))
        except IbgAuditError as e:
            error = e
        except asyncio.TimeoutError:
            error = GatewayError(f"no complete answer from the gateway within the {self.endpoint.timeout:g}s timeout")
            self._record_no_answer("the call timed out before the order's outcome was known")
        envelope = self._envelope(started, int((time.monotonic() - t0) * 1000), error)
        data = self._order_log() if self.trade is not None else None
        try:
            doc = finish(envelope, data, self.store)
        except (IbgAuditError, sqlite3.Error) as e:
            # The call happened and may have sent an order: print what we know even if the store failed.
            store_error = e if isinstance(e, IbgAuditError) else StoreError(f"cannot record the smoke call: {e}")
            envelope["ok"], envelope["error"] = False, store_error.to_json()
            return build_document(envelope, data, None), store_error.exit_code
        if error is not None:
            return doc, error.exit_code
        return doc, EXIT_BLOCKED_TRANSMIT if self.decision.mode == "blocked-transmit" else 0

    async def _converse(self) -> None:
        async with open_session(self.endpoint, readonly=False) as session:
            self.gateway.update(
                clientId=session.client_id, serverVersion=session.server_version, accounts=session.accounts
            )
            self.decision = self._decide(session.accounts)
            contract = await self._resolve(session)
            order = self._build_order()
            if not self.decision.transmit:
                if self.decision.mode == "blocked-transmit":
                    self.notes.append("forced simulation: a safety rail refused the transmit (see safety.reasons)")
                if self.request.auto_cancel:
                    self.notes.append("--auto-cancel: nothing to cancel, no order was transmitted")
                await self._what_if(session, contract, order)
                return
            if self.store is None:
                raise BadInputError(
                    "a transmitted order is always recorded in the audit store first: run without --no-record"
                )
            await self._transmit(session, contract, order)

    # --- contract -----------------------------------------------------------------------------

    async def _resolve(self, session: GatewaySession):
        request = self.request
        if request.asset == "STK":
            query = contracts.stock_contract(request.symbol, request.exchange or "SMART", request.currency)
            details = await self._contract_details(session, query)
            if len(details) > 1:
                found = [contracts.contract_to_json(d.contract) for d in details]
                raise contracts.AmbiguousContractError(
                    f"{len(details)} stocks match {request.symbol} on {query.exchange} in {request.currency}; "
                    "pass --exchange or --currency to choose one",
                    found,
                )
            contract = details[0].contract
        else:
            query = contracts.future_contract(request.symbol, request.exchange, request.currency)
            # Expired months too, so the audit row shows why they were passed over and an expired --expiry is
            # reported as expired rather than as unknown.
            query.includeExpired = True
            details = await self._contract_details(session, query)
            selection = contracts.pick_front_month(
                details,
                symbol=request.symbol,
                now=self.now or dt.datetime.now(dt.timezone.utc),
                expiry=request.expiry,
            )
            self.candidates = selection.considered
            contract = selection.chosen.contract
        self.contract = contracts.contract_to_json(contract)
        return contract

    async def _contract_details(self, session: GatewaySession, query) -> list:
        what = f"contract details for {self.request.asset} {self.request.symbol}"
        try:
            details = await session.request(what, session.ib.reqContractDetailsAsync(query))
        except GatewayError as e:
            if e.code == 200:
                _, message = session.last_error()
                raise contracts.ContractError(
                    f"no {self.request.asset} contract {self.request.symbol} on {query.exchange} in "
                    f"{self.request.currency} (IB error 200: {message})",
                    code=200,
                ) from None
            raise
        if not details:
            raise contracts.ContractError(f"the gateway returned no contract for {what}")
        return details

    # --- order --------------------------------------------------------------------------------

    def _build_order(self):
        from ib_async import Order

        request = self.request
        order = Order(
            action=request.action,
            totalQuantity=request.qty,
            orderType=request.order_type,
            tif=request.tif,
            account=request.account or "",
            orderRef=ORDER_REF,
        )
        if request.limit is not None:
            order.lmtPrice = request.limit
        self.order = {
            "action": request.action,
            "totalQuantity": clean_float(request.qty),
            "orderType": request.order_type,
            "lmtPrice": clean_float(request.limit),
            "tif": request.tif,
            "account": request.account,
            "orderRef": ORDER_REF,
        }
        return order

    async def _what_if(self, session: GatewaySession, contract, order) -> None:
        ib = session.ib
        probe = copy.copy(order)
        probe.whatIf = True
        order_id = ib.client.getReqId()
        # As ib_async's whatIfOrderAsync, but with the order id in hand: ib_async ends the request on the final
        # what-if state (margins filled in) or on an error, except 321, which it logs as a warning and never ends.
        future = ib.wrapper.startReq(order_id, contract)

        def on_error(req_id, code, message, _contract):
            if req_id == order_id and code == READ_ONLY_API and not future.done():
                future.set_exception(GatewayError(f"what-if order: IB error {code}: {message}", code=code))

        ib.errorEvent += on_error
        try:
            ib.client.placeOrder(order_id, contract, probe)
            state = await session.request("what-if order", future)
        finally:
            ib.errorEvent -= on_error
        self.order_state = order_state_json(state)

    async def _transmit(self, session: GatewaySession, contract, order) -> None:
        ib = session.ib
        order.orderId = ib.client.getReqId()
        self.order_id = order.orderId
        self.intent_id = self._save(
            lambda: self.store.save_order_intent(self._intent(session, order)), before_send=True
        )
        self.trade = ib.placeOrder(contract, order)
        self.transmitted = True

        try:
            await self._outcome(session)
        finally:
            self.final_status = self.trade.orderStatus.status

    async def _outcome(self, session: GatewaySession) -> None:
        """Wait for the gateway's first answer about the sent order, record it, then cancel when asked."""
        # With --auto-cancel, half of what is left is kept for the cancel, even when no answer comes.
        budget = session.remaining() / 2 if self.request.auto_cancel else session.remaining()
        status = await self._until(session, ACCEPTED | REFUSED, budget)
        self.status = status
        self.perm_id = clean_int(self.trade.order.permId) or None
        if status in ACCEPTED:
            self._event("submitted", status=status)
        elif status is not None:
            code, message = self._order_error(session)
            self._event("rejected", status=status, error_code=code, message=message)
            why = f"IB error {code}: {message}" if code is not None else f"status {status}"
            raise GatewayError(f"the gateway rejected order {self.order_id}: {why}", code=code)
        else:
            self._record_no_answer("no order status within the timeout")

        if self.request.auto_cancel:
            await self._auto_cancel(session)
        if status is None:
            raise GatewayError(
                f"order {self.order_id} was sent but the gateway did not confirm it within the "
                f"{self.endpoint.timeout:g}s timeout: it may be working, check the gateway"
            )

    async def _auto_cancel(self, session: GatewaySession) -> None:
        trade = self.trade
        self.cancelled = False
        if trade.orderStatus.status == "Filled":
            self._unconfirmed(FILLED_FIRST)
        if not session.ib.isConnected():
            self._unconfirmed("the connection was lost before the cancel could be sent")
        self._event("cancel_requested", status=trade.orderStatus.status)
        session.ib.cancelOrder(trade.order)
        # Half of what is left for the Cancelled status, the rest for asking the open orders.
        status = await self._until(session, CANCELLED | {"Filled"}, session.remaining() / 2)
        # ib_async also marks an order Cancelled when any error names it, a refused cancel (10147, 10148, 161...)
        # included; only a status from the gateway itself (or its cancel notice 202) confirms the cancel.
        last = trade.log[-1] if trade.log else None
        if status in CANCELLED and last is not None and last.errorCode in (0, ORDER_CANCELED):
            self._cancel_confirmed(status, f"status {status}")
            return
        if status == "Filled":
            self._unconfirmed(FILLED_FIRST)
        if not session.ib.isConnected():
            self._unconfirmed("no Cancelled status before the connection was lost")
        try:
            open_trades = await session.request("open orders", session.ib.reqAllOpenOrdersAsync())
        except IbgAuditError as e:
            self._unconfirmed(f"no Cancelled status, and the open orders could not be read: {e.message}")
        if any(self._is_ours(t) for t in open_trades):
            self._unconfirmed("no Cancelled status, and the order is still among the gateway's open orders")
        self._cancel_confirmed(trade.orderStatus.status, "absent from the gateway's open orders")

    def _cancel_confirmed(self, status: str, how: str) -> None:
        self.cancelled = True
        self._event("cancelled", status=status, message=f"cancel confirmed: {how}")

    def _unconfirmed(self, why: str) -> NoReturn:
        self._event("cancel_unconfirmed", status=self.trade.orderStatus.status, message=why)
        raise CancelUnconfirmedError(
            f"order {self.order_id} was transmitted but its cancel is not confirmed ({why}); check the gateway now"
        )

    def _is_ours(self, trade) -> bool:
        if self.perm_id and trade.order.permId == self.perm_id:
            return True
        return trade.order.clientId == self.trade.order.clientId and trade.order.orderId == self.order_id

    async def _until(self, session: GatewaySession, statuses: frozenset[str], timeout: float) -> str | None:
        """Wait until the order's status is one of ``statuses`` and return it; None when the timeout passes or the
        connection drops. A 321 for this order ends the wait too, with ib_async's status "ValidationError"."""
        trade = self.trade
        done = asyncio.get_running_loop().create_future()

        def check(*_):
            status = trade.orderStatus.status
            refused = status == "ValidationError" and self._order_error(session)[0] == READ_ONLY_API
            if (status in statuses or refused) and not done.done():
                done.set_result(status)

        def on_lost(*_):
            if not done.done():
                done.set_result(None)

        # ib_async sets ValidationError before it emits the error, so a 321 is judged again on the error itself.
        trade.statusEvent += check
        session.ib.errorEvent += check
        session.ib.disconnectedEvent += on_lost
        try:
            check()
            return await asyncio.wait_for(done, timeout)
        except asyncio.TimeoutError:
            return None
        finally:
            trade.statusEvent -= check
            session.ib.errorEvent -= check
            session.ib.disconnectedEvent -= on_lost

    def _order_error(self, session: GatewaySession) -> tuple[int | None, str | None]:
        for req_id, code, message in reversed(session.errors):
            if req_id == self.order_id and code not in INFO_CODES:
                return code, message
        return None, None

    # --- audit --------------------------------------------------------------------------------

    def _intent(self, session: GatewaySession, order) -> dict:
        contract = self.contract
        return {
            "created_at": now_iso(),
            "host": self.endpoint.host,
            "port": self.endpoint.port,
            "client_id": session.client_id,
            "simulated": self.endpoint.simulated,
            "orderId": order.orderId,
            "account": self.request.account,
            "conId": contract["conId"],
            "symbol": contract["symbol"],
            "secType": contract["secType"],
            "localSymbol": contract["localSymbol"],
            "lastTradeDateOrContractMonth": contract["lastTradeDateOrContractMonth"],
            "exchange": contract["exchange"],
            "currency": contract["currency"],
            "action": self.order["action"],
            "totalQuantity": self.order["totalQuantity"],
            "orderType": self.order["orderType"],
            "lmtPrice": self.order["lmtPrice"],
            "tif": self.order["tif"],
            "auto_cancel": self.request.auto_cancel,
            "safety": self.decision.to_json(),
        }

    def _event(self, event: str, *, status=None, error_code=None, message=None) -> None:
        perm_id = self.perm_id or clean_int(self.trade.order.permId) or None
        self._save(
            lambda: self.store.save_order_event(
                self.intent_id, event, at=now_iso(), status=status, perm_id=perm_id,
                error_code=error_code, message=message,
            )
        )

    def _record_no_answer(self, why: str) -> None:
        """Once per call: the order went out and its outcome is unknown."""
        if self.transmitted and self.status is None and not self.no_answer_recorded:
            self.no_answer_recorded = True
            self._event("no_answer", status=self.trade.orderStatus.status, message=why)

    def _save(self, write, *, before_send: bool = False):
        """Run a store write; a failure is a StoreError. Before placeOrder it stops the order from going out."""
        try:
            return write()
        except sqlite3.Error as e:
            when = "before the order was sent (nothing was sent)" if before_send else "after the order was sent"
            raise StoreError(f"cannot write the order audit {when}: {e}") from None

    # --- document -----------------------------------------------------------------------------

    def _envelope(self, started: dt.datetime, duration_ms: int, error: IbgAuditError | None) -> dict:
        base = envelope_for(
            "smoke", self.request.args(), started=started, duration_ms=duration_ms, gateway=self.gateway, error=error
        )
        return {
            "kind": base["kind"],
            "args": base["args"],
            "mode": self.decision.mode,
            "whatIf": not self.decision.transmit,
            "transmitted": self.transmitted,
            "connected": base["connected"],
            "ok": base["ok"],
            "snapshot_id": None,
            "started_at": base["started_at"],
            "recorded_at": base["recorded_at"],
            "duration_ms": base["duration_ms"],
            "gateway": base["gateway"],
            "safety": self.decision.to_json(),
            "contract": self.contract,
            "candidates": self.candidates,
            "order": self.order,
            "orderState": self.order_state,
            "orderId": self.order_id,
            "permId": self.perm_id,
            "status": self.status,
            "cancelled": self.cancelled,
            "finalStatus": self.final_status,
            "intent_id": self.intent_id,
            "notes": self.notes,
            "error": base["error"],
        }

    def _order_log(self) -> list[dict]:
        return [
            {
                "time": iso_utc(entry.time, millis=True),
                "status": entry.status,
                "message": entry.message,
                "errorCode": entry.errorCode,
            }
            for entry in self.trade.log
        ]


def order_state_json(state) -> dict:
    """An ib_async OrderState with IB's field names; margins arrive as text, unset sentinels become None."""
    return {
        "status": state.status,
        **{name: clean_float(getattr(state, name)) for name in MARGIN_FIELDS + COMMISSION_FIELDS},
        "commissionCurrency": state.commissionCurrency or None,
        "warningText": state.warningText or None,
    }
