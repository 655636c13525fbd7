"""`ibg-audit smoke` against the simulated gateway over real sockets: the seed's acceptance criteria, contracts,
gateway refusals, the auto-cancel and the write-ahead audit. What reached the gateway is read from the
simulator's transcript and state, never from our own JSON.

Most tests share one simulated gateway (default paper scenario, real clock) and drive the CLI in-process; tests
that need a fault or a fixed clock start their own. Futures tests with a fixed clock call run_smoke() with the
same `now` as the simulator (FIXED_NOW), the seam that makes the chosen month deterministic.
"""

import datetime as dt
import json
import sqlite3
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from ib_async import IB

from ibg_audit.cli import cli
from ibg_audit.gateway import Endpoint
from ibg_audit.sim import start_in_thread
from ibg_audit.smoke import SmokeRequest, run_smoke
from ibg_audit.store import Store, open_store
from sim_fixtures import FIXED_NOW

PAPER = {"ALLOW_ORDERS": "1", "IBKR_PAPER": "1"}
UNSET = {"ALLOW_ORDERS": None, "IBKR_PAPER": None}
AAPL_LMT = ["--asset", "STK", "--symbol", "AAPL", "--order", "LMT", "--limit", "0.01"]
AAPL_CONTRACT = {
    "conId": 265598, "symbol": "AAPL", "secType": "STK", "lastTradeDateOrContractMonth": "", "exchange": "SMART",
    "primaryExchange": "NASDAQ", "currency": "USD", "localSymbol": "AAPL", "tradingClass": "NMS", "multiplier": "",
}
# The simulator's margin model for 1 AAPL bought in DU1234567 (the default account) of the default scenario.
AAPL_WHATIF_STATE = {
    "status": "PreSubmitted",
    "initMarginBefore": 94502.15, "initMarginChange": 56.87, "initMarginAfter": 94559.02,
    "maintMarginBefore": 89976.62, "maintMarginChange": 56.87, "maintMarginAfter": 90033.49,
    "equityWithLoanBefore": 992532.24, "equityWithLoanChange": -1, "equityWithLoanAfter": 992531.24,
    "commission": None, "minCommission": 1, "maxCommission": 1, "commissionCurrency": "USD", "warningText": None,
}
ES_FIXED_CANDIDATES = [
    {"conId": 620202512, "localSymbol": "ESZ5", "tradingClass": "ES", "lastTradeDateOrContractMonth": "20251219",
     "expired": True, "reason": "expired: last trade 2025-12-19 08:30 US/Central has passed"},
    {"conId": 620202603, "localSymbol": "ESH6", "tradingClass": "ES", "lastTradeDateOrContractMonth": "20260320",
     "expired": False, "reason": "chosen: nearest month that has not expired"},
    {"conId": 620202606, "localSymbol": "ESM6", "tradingClass": "ES", "lastTradeDateOrContractMonth": "20260619",
     "expired": False, "reason": "later than the front month 202603"},
    {"conId": 620202609, "localSymbol": "ESU6", "tradingClass": "ES", "lastTradeDateOrContractMonth": "20260918",
     "expired": False, "reason": "later than the front month 202603"},
    {"conId": 620202612, "localSymbol": "ESZ6", "tradingClass": "ES", "lastTradeDateOrContractMonth": "20261218",
     "expired": False, "reason": "later than the front month 202603"},
]


@pytest.fixture(scope="module")
def gw():
    with start_in_thread() as gateway:
        yield gateway


def smoke(gw, db, *args, env=UNSET, timeout="5"):
    result = CliRunner().invoke(
        cli, ["smoke", *args, "--port", str(gw.port), "--db", str(db), "--timeout", timeout], env=env,
        catch_exceptions=False,
    )
    return result, (json.loads(result.stdout) if result.stdout else None)


def transmitted(gw) -> list[int]:
    """Order ids of the placeOrder requests the gateway received for execution (not what-if)."""
    return [o.order_id for o in gw.placed_orders(transmit_only=True)]


def events(db, intent_id) -> list[tuple]:
    with open_store(db) as store:
        return [tuple(r) for r in store.db.execute(
            "SELECT event, status, error_code, message FROM order_events WHERE intent_id = ? ORDER BY id", [intent_id]
        )]


def order_sent(db, intent_id) -> dict:
    with open_store(db) as store:
        return next(r for r in store.orders_sent() if r["intent_id"] == intent_id)


def direct(sim, db, request, env=None, timeout=5.0):
    """run_smoke() against `sim` with the simulator's fixed clock; returns (document, exit code)."""
    with open_store(db) as store:
        return run_smoke(request, Endpoint("127.0.0.1", sim.port, timeout=timeout), store, env or {}, now=FIXED_NOW)


# --- the seed's acceptance criteria -------------------------------------------------------------


def test_whatif_reports_margins_and_transmits_nothing(gw, db):
    before = transmitted(gw)
    placed = len(gw.placed_orders(transmit_only=False))

    result, doc = smoke(gw, db, *AAPL_LMT, "--whatif", env=PAPER)

    assert result.exit_code == 0
    assert (doc["mode"], doc["whatIf"], doc["transmitted"], doc["ok"], doc["connected"]) == (
        "whatif", True, False, True, True)
    assert doc["orderState"] == AAPL_WHATIF_STATE
    assert doc["contract"] == AAPL_CONTRACT
    assert doc["order"] == {"action": "BUY", "totalQuantity": 1, "orderType": "LMT", "lmtPrice": 0.01, "tif": "DAY",
                            "account": None, "orderRef": "ibg-audit smoke"}
    assert (doc["orderId"], doc["permId"], doc["status"], doc["cancelled"], doc["intent_id"]) == (None,) * 5
    assert doc["safety"]["reasons"] == [] and doc["safety"]["transmit"] is False
    # The gateway saw exactly one placeOrder, a what-if, and nothing for execution.
    assert transmitted(gw) == before
    probes = gw.placed_orders(transmit_only=False)[placed:]
    assert [(p.what_if, p.contract["conId"], p.lmt_price) for p in probes] == [(True, 265598, 0.01)]

    with open_store(db) as store:
        assert store.load_document(doc["snapshot_id"]) == doc
        row = store.db.execute(
            "SELECT mode, whatIf, transmitted, conId, initMarginChange, maintMarginAfter, commission, minCommission,"
            " allow_orders, ibkr_paper FROM smoke_calls WHERE snapshot_id = ?", [doc["snapshot_id"]]).fetchone()
    assert row == ("whatif", 1, 0, 265598, 56.87, 90033.49, None, 1, "1", "1")


def test_paper_transmit_with_auto_cancel_is_cancelled_at_the_gateway(gw, db):
    before = transmitted(gw)

    result, doc = smoke(gw, db, *AAPL_LMT, "--auto-cancel", "--account", "DU1234567", env=PAPER)

    assert result.exit_code == 0, result.output
    assert (doc["mode"], doc["whatIf"], doc["transmitted"], doc["ok"]) == ("paper-transmit", False, True, True)
    assert transmitted(gw) == before + [doc["orderId"]]
    assert isinstance(doc["permId"], int) and doc["permId"] > 0
    assert (doc["status"], doc["cancelled"], doc["finalStatus"], doc["orderState"]) == (
        "PreSubmitted", True, "Cancelled", None)
    assert doc["permId"] not in gw.state.open_orders
    [cancel] = [e for e in gw.messages("in", 4) if int(e.fields[2]) == doc["orderId"]]
    # Whether Submitted arrives before the cancel goes out depends on the scheduler; the rest is fixed.
    statuses = [entry["status"] for entry in doc["data"]]
    assert statuses in (["PendingSubmit", "PreSubmitted", "Submitted", "PendingCancel", "Cancelled"],
                        ["PendingSubmit", "PreSubmitted", "PendingCancel", "Submitted", "Cancelled"],
                        ["PendingSubmit", "PreSubmitted", "PendingCancel", "Cancelled"])
    recorded = events(db, doc["intent_id"])
    assert [recorded[0], recorded[2]] == [
        ("submitted", "PreSubmitted", None, None),
        ("cancelled", "Cancelled", None, "cancel confirmed: status Cancelled"),
    ]
    assert recorded[1][0] == "cancel_requested" and len(recorded) == 3
    sent = order_sent(db, doc["intent_id"])
    assert {k: sent[k] for k in ("snapshot_id", "orderId", "permId", "account", "conId", "latest_event",
                                 "cancel_status", "cancel_confirmed", "auto_cancel")} == {
        "snapshot_id": doc["snapshot_id"], "orderId": doc["orderId"], "permId": doc["permId"],
        "account": "DU1234567", "conId": 265598, "latest_event": "cancelled", "cancel_status": "confirmed",
        "cancel_confirmed": True, "auto_cancel": True,
    }


def test_paper_transmit_without_auto_cancel_leaves_the_order_working(gw, db):
    result, doc = smoke(gw, db, *AAPL_LMT, "--qty", "3", "--tif", "GTC", env=PAPER)

    assert result.exit_code == 0
    assert (doc["orderId"] in transmitted(gw), doc["status"], doc["cancelled"]) == (True, "PreSubmitted", None)
    working = gw.state.open_orders[doc["permId"]]
    assert (working.order_id, working.status, working.total_quantity, working.tif) == (
        doc["orderId"], "Submitted", 3, "GTC")
    assert events(db, doc["intent_id"]) == [("submitted", "PreSubmitted", None, None)]
    assert order_sent(db, doc["intent_id"])["cancel_status"] == "not requested"


def test_blocked_transmit_is_a_forced_whatif_with_every_reason(gw, db):
    before = transmitted(gw)

    result, doc = smoke(gw, db, *AAPL_LMT, "--auto-cancel", env={"ALLOW_ORDERS": "1", "IBKR_PAPER": "true"})

    assert result.exit_code == 10
    assert result.stderr == "Note: forced simulation, nothing was transmitted: IBKR_PAPER is 'true', not exactly '1'\n"
    assert (doc["mode"], doc["whatIf"], doc["transmitted"], doc["ok"], doc["error"]) == (
        "blocked-transmit", True, False, True, None)
    assert doc["safety"]["reasons"] == ["IBKR_PAPER is 'true', not exactly '1'"]
    assert doc["orderState"] == AAPL_WHATIF_STATE
    assert doc["notes"] == ["forced simulation: a safety rail refused the transmit (see safety.reasons)",
                            "--auto-cancel: nothing to cancel, no order was transmitted"]
    assert transmitted(gw) == before


def test_the_environment_is_not_stored_beyond_the_two_flags(gw, db):
    result, doc = smoke(gw, db, *AAPL_LMT, "--whatif", env={**PAPER, "SECRET_TOKEN": "hunter2"})
    assert result.exit_code == 0
    with sqlite3.connect(db) as conn:
        dump = "\n".join(conn.iterdump())
    conn.close()
    assert "hunter2" not in dump and "SECRET_TOKEN" not in dump


# --- contracts ----------------------------------------------------------------------------------


def expected_es_front_month(now: dt.datetime) -> str:
    """The simulator's ES listing rule, independently: quarterly months, last trade the third Friday 08:30 Chicago."""
    year, month = now.year, now.month
    while True:
        if month % 3 == 0:
            first = dt.date(year, month, 1)
            third_friday = first + dt.timedelta(days=(4 - first.weekday()) % 7 + 14)
            if dt.datetime.combine(third_friday, dt.time(8, 30), ZoneInfo("America/Chicago")) > now:
                return third_friday.strftime("%Y%m%d")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def test_future_front_month_on_the_real_clock(gw, db):
    expected = expected_es_front_month(dt.datetime.now(dt.timezone.utc))

    result, doc = smoke(gw, db, "--asset", "FUT", "--symbol", "ES", "--resolve-front-month", "--order", "LMT",
                        "--limit", "1.00", "--whatif")

    assert result.exit_code == 0, result.output
    assert doc["contract"]["lastTradeDateOrContractMonth"] == expected
    assert doc["contract"]["conId"] == 620000000 + int(expected[:6])
    assert [c for c in doc["candidates"] if c["reason"].startswith("chosen")] == [{
        "conId": doc["contract"]["conId"], "localSymbol": doc["contract"]["localSymbol"], "tradingClass": "ES",
        "lastTradeDateOrContractMonth": expected, "expired": False,
        "reason": "chosen: nearest month that has not expired"}]
    # Futures margin in the simulator: the scenario's initial margin per contract.
    assert (doc["orderState"]["initMarginChange"], doc["orderState"]["maintMarginChange"]) == (24150, 21955)


def test_future_front_month_with_a_fixed_clock_stores_the_candidates(sim, db):
    request = SmokeRequest("FUT", "ES", "LMT", 1.0, whatif=True, resolve_front_month=True)

    doc, code = direct(sim, db, request)

    assert code == 0
    assert doc["contract"] == {
        "conId": 620202603, "symbol": "ES", "secType": "FUT", "lastTradeDateOrContractMonth": "20260320",
        "exchange": "CME", "primaryExchange": "", "currency": "USD", "localSymbol": "ESH6", "tradingClass": "ES",
        "multiplier": "50"}
    assert doc["candidates"] == ES_FIXED_CANDIDATES
    with open_store(db) as store:
        conid, candidates = store.db.execute(
            "SELECT conId, candidates FROM smoke_calls WHERE snapshot_id = ?", [doc["snapshot_id"]]).fetchone()
    assert (conid, json.loads(candidates)) == (620202603, ES_FIXED_CANDIDATES)


def test_future_explicit_expiry(sim, db):
    doc, code = direct(sim, db, SmokeRequest("FUT", "ES", "MKT", whatif=True, expiry="202609"))
    assert code == 0
    assert (doc["contract"]["conId"], doc["contract"]["localSymbol"]) == (620202609, "ESU6")


@pytest.mark.parametrize("expiry, message", [
    ("202512", "expiry 202512 has expired (last trade 2025-12-19 08:30 US/Central)"),
    ("202604", "no ES contract for expiry 202604; available months: 202512, 202603, 202606, 202609, 202612"),
])
def test_future_expired_or_unlisted_expiry_is_a_clear_error(sim, db, expiry, message):
    doc, code = direct(sim, db, SmokeRequest("FUT", "ES", "LMT", 1.0, whatif=True, expiry=expiry))
    assert code == 2
    assert (doc["ok"], doc["connected"], doc["contract"]) == (False, True, None)
    assert doc["error"] == {"type": "contract_error", "message": message, "code": None, "hint": None}
    assert sim.placed_orders(transmit_only=False) == []


def test_unknown_symbol_is_a_clear_error(gw, db):
    result, doc = smoke(gw, db, "--asset", "STK", "--symbol", "ZZZZ", "--order", "MKT", "--whatif")
    assert result.exit_code == 2
    assert doc["error"] == {
        "type": "contract_error", "code": 200, "hint": None,
        "message": "no STK contract ZZZZ on SMART in USD "
                   "(IB error 200: No security definition has been found for the request)",
    }
    with open_store(db) as store:
        assert store.snapshot_row(doc["snapshot_id"])["error_code"] == 200


# --- the gateway refuses ------------------------------------------------------------------------


@pytest.mark.parametrize("fault, code, message", [
    ("reject-orders", 201, "what-if order: IB error 201: Order rejected - reason:Simulated rejection"),
    ("error:placeOrder:110", 110, "what-if order: IB error 110: Error"),
])
def test_rejected_whatif_is_ok_false_with_the_ib_code(db, fault, code, message):
    with start_in_thread(faults=[fault]) as sim:
        doc, exit_code = direct(sim, db, SmokeRequest("STK", "AAPL", "LMT", 0.01, whatif=True))
    assert exit_code == 4
    assert (doc["ok"], doc["orderState"], doc["transmitted"]) == (False, None, False)
    assert doc["error"] == {"type": "gateway_error", "message": message, "code": code, "hint": None}


def test_readonly_api_321_ends_the_whatif_at_once(db):
    """ib_async would wait for ever on a 321; with a 120 s timeout the call must still end on the error itself."""
    with start_in_thread(readonly=True) as sim:
        doc, code = direct(sim, db, SmokeRequest("STK", "AAPL", "LMT", 0.01, whatif=True), timeout=120)
    assert code == 4
    assert doc["error"]["code"] == 321
    assert doc["error"]["message"].startswith("what-if order: IB error 321: Error validating request.")
    assert doc["duration_ms"] < 60_000  # far below the timeout: it did not wait for it


def test_rejected_transmit_is_recorded_as_rejected(db):
    with start_in_thread(faults=["reject-orders"]) as sim:
        doc, code = direct(sim, db, SmokeRequest("STK", "AAPL", "LMT", 0.01, auto_cancel=True), PAPER)
        assert transmitted(sim) == [doc["orderId"]]
    assert code == 4
    assert (doc["transmitted"], doc["status"], doc["cancelled"], doc["ok"]) == (True, "Cancelled", None, False)
    assert doc["error"]["message"] == (
        f"the gateway rejected order {doc['orderId']}: IB error 201: Order rejected - reason:Simulated rejection")
    assert events(db, doc["intent_id"]) == [
        ("rejected", "Cancelled", 201, "Order rejected - reason:Simulated rejection")]


# --- auto-cancel that cannot be confirmed --------------------------------------------------------


def test_cancel_refused_by_the_gateway_is_unconfirmed(db):
    """The gateway answers the cancel with an error and keeps the order: ib_async marks the order Cancelled
    locally anyway; we must not believe it."""
    with start_in_thread(faults=["error:cancelOrder:10148"]) as sim:
        result = CliRunner().invoke(
            cli, ["smoke", *AAPL_LMT, "--auto-cancel", "--port", str(sim.port), "--db", str(db)], env=PAPER)
        doc = json.loads(result.stdout)
        still_working = doc["permId"] in sim.state.open_orders
    assert still_working
    assert result.exit_code == 6
    message = (f"order {doc['orderId']} was transmitted but its cancel is not confirmed (no Cancelled status, and "
               "the order is still among the gateway's open orders); check the gateway now")
    assert result.stderr == f"Error: {message}\n"
    assert (doc["transmitted"], doc["cancelled"], doc["ok"]) == (True, False, False)
    assert doc["error"] == {"type": "cancel_unconfirmed", "message": message, "code": None, "hint": None}
    assert [e[0] for e in events(db, doc["intent_id"])] == ["submitted", "cancel_requested", "cancel_unconfirmed"]
    assert order_sent(db, doc["intent_id"])["cancel_status"] == "unconfirmed"


def test_marketable_order_fills_before_the_cancel(db):
    with start_in_thread() as sim:
        doc, code = direct(sim, db, SmokeRequest("STK", "AAPL", "MKT", auto_cancel=True), PAPER)
        position = sim.state.positions[("DU1234567", 265598)].position
    assert code == 6
    assert position == 401
    assert (doc["cancelled"], doc["finalStatus"]) == (False, "Filled")
    assert doc["error"]["message"] == (
        f"order {doc['orderId']} was transmitted but its cancel is not confirmed (the order filled before it could "
        "be cancelled: a position was opened); check the gateway now")
    assert order_sent(db, doc["intent_id"])["cancel_status"] == "unconfirmed"


def test_no_answer_is_recorded_and_the_cancel_is_still_confirmed(db):
    """A 399 is only a warning to ib_async and the simulator sends no status: the order's fate is unknown until
    the auto-cancel finds it absent from the open orders."""
    with start_in_thread(faults=["error:placeOrder:399"]) as sim:
        doc, code = direct(sim, db, SmokeRequest("STK", "AAPL", "LMT", 0.01, auto_cancel=True), PAPER, timeout=2)
    assert code == 4
    assert (doc["transmitted"], doc["status"], doc["cancelled"]) == (True, None, True)
    assert doc["error"]["message"] == (
        f"order {doc['orderId']} was sent but the gateway did not confirm it within the 2s timeout: "
        "it may be working, check the gateway")
    assert [(e[0], e[3]) for e in events(db, doc["intent_id"])] == [
        ("no_answer", "no order status within the timeout"),
        ("cancel_requested", None),
        ("cancelled", "cancel confirmed: absent from the gateway's open orders"),
    ]


# --- the write-ahead audit ----------------------------------------------------------------------


class Crash(BaseException):
    """Stands for the process dying (like KeyboardInterrupt, not an Exception), without a real signal."""


def test_intent_is_committed_before_place_order_and_survives_a_crash(sim, db, monkeypatch):
    seen_by_another_connection = []
    place_order = IB.placeOrder

    def crash_after_sending(self, contract, order):
        with sqlite3.connect(db) as conn:
            seen_by_another_connection.extend(conn.execute("SELECT orderId, conId FROM order_intents").fetchall())
        conn.close()
        place_order(self, contract, order)
        raise Crash  # the process dies right after the order went out

    monkeypatch.setattr(IB, "placeOrder", crash_after_sending)
    with pytest.raises(Crash):
        direct(sim, db, SmokeRequest("STK", "AAPL", "LMT", 0.01), PAPER)

    [order_id] = transmitted(sim)
    assert seen_by_another_connection == [(order_id, 265598)]
    with open_store(db) as store:
        [row] = store.orders_sent()
    assert (row["orderId"], row["latest_event"], row["cancel_status"], row["snapshot_id"]) == (
        order_id, None, "not requested", None)


def test_store_failure_before_sending_sends_nothing(sim, db, monkeypatch):
    def fail(self, intent):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(Store, "save_order_intent", fail)
    doc, code = direct(sim, db, SmokeRequest("STK", "AAPL", "LMT", 0.01), PAPER)
    assert code == 5
    assert transmitted(sim) == []
    assert doc["error"]["message"] == (
        "cannot write the order audit before the order was sent (nothing was sent): disk I/O error")


def test_a_transmit_is_never_unrecorded(gw, db):
    before = transmitted(gw)
    result, doc = smoke(gw, db, *AAPL_LMT, "--no-record", env=PAPER)
    assert result.exit_code == 2
    assert (doc["mode"], doc["transmitted"], doc["snapshot_id"]) == ("paper-transmit", False, None)
    assert doc["error"]["message"] == (
        "a transmitted order is always recorded in the audit store first: run without --no-record")
    assert transmitted(gw) == before
    assert not db.exists()


def test_history_tables_are_append_only(gw, db):
    result, doc = smoke(gw, db, *AAPL_LMT, "--auto-cancel", env=PAPER)
    assert result.exit_code == 0
    with open_store(db) as store:
        for statement in ("UPDATE order_events SET event = 'submitted'", "DELETE FROM order_events",
                          "UPDATE order_intents SET orderId = 0", "DELETE FROM order_intents"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                store.db.execute(statement)


def test_not_connected_is_recorded(db, unused_port):
    result = CliRunner().invoke(cli, ["smoke", *AAPL_LMT, "--port", str(unused_port), "--db", str(db)], env=PAPER)
    doc = json.loads(result.stdout)
    assert result.exit_code == 3
    assert (doc["connected"], doc["ok"], doc["mode"], doc["transmitted"], doc["error"]["type"]) == (
        False, False, "blocked-transmit", False, "not_connected")
    assert doc["safety"]["reasons"] == ["the gateway's managed accounts could not be determined"]
    with open_store(db) as store:
        assert store.db.execute("SELECT mode, ok FROM smoke_calls").fetchall() == [("blocked-transmit", 0)]


def test_orders_sent_command(gw, db):
    smoke(gw, db, *AAPL_LMT, "--auto-cancel", "--account", "DU7654321", env=PAPER)
    smoke(gw, db, *AAPL_LMT, "--whatif", env=PAPER)

    result = CliRunner().invoke(cli, ["orders-sent", "--db", str(db), "--format", "json"])

    assert result.exit_code == 0
    [row] = json.loads(result.stdout)
    assert {k: row[k] for k in ("account", "symbol", "orderType", "lmtPrice", "latest_event", "latest_status",
                                "cancel_status", "cancel_confirmed", "simulated")} == {
        "account": "DU7654321", "symbol": "AAPL", "orderType": "LMT", "lmtPrice": 0.01, "latest_event": "cancelled",
        "latest_status": "Cancelled", "cancel_status": "confirmed", "cancel_confirmed": True, "simulated": False}
