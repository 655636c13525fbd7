"""Faults: the real `ibg-audit` executable against the simulated gateway's fault modes.

For every fault: one JSON document with `ok` false (and `connected` false when the API session never came up),
IB's error code where there is one, the documented exit code, a wall time never above --timeout plus one second
(measured around the whole process), and the failed call recorded as a failed snapshot without data.
"""

import asyncio

import pytest
from audit_helpers import ITEM_TABLES, consistency_problems, ibg_audit, item_count, query, snapshot_rows
from sim_fixtures import FIXED_NOW, run

from ibg_audit import collectors
from ibg_audit.errors import EXIT_BAD_INPUT, EXIT_GATEWAY_ERROR, EXIT_NOT_CONNECTED, NotConnectedError
from ibg_audit.gateway import Endpoint, open_session
from ibg_audit.sim import SimulatedGateway, start_in_thread

# Messages the sim sends after startApi before any request: managedAccounts, nextValidId, three farm notices.
BOOTSTRAP = 5
BOUND_SLACK_S = 1.0  # the contract: never longer than the timeout plus one second


def dump(port, db, kind, timeout, *extra):
    return ibg_audit("dump", kind, "--port", port, "--db", db, "--timeout", timeout, *extra)


def assert_failed_and_recorded(result, db, timeout, *, exit_code, connected, error_type, code, message):
    assert result.elapsed <= timeout + BOUND_SLACK_S, f"took {result.elapsed:.2f}s with --timeout {timeout}"
    assert result.returncode == exit_code, result.stderr
    assert result.stderr == ""
    doc = result.doc
    assert (doc["connected"], doc["ok"], doc["data"], doc["snapshot_id"]) == (connected, False, [], 1)
    assert doc["error"]["type"] == error_type
    assert doc["error"]["code"] == code
    assert doc["error"]["message"] == message
    [row] = snapshot_rows(db)
    assert (row["id"], row["ok"], row["connected"], row["payload_hash"]) == (1, 0, int(connected), None)
    assert (row["error_type"], row["error_code"], row["error_message"]) == (error_type, code, message)
    assert all(item_count(db, table) == 0 for table in ITEM_TABLES)
    assert item_count(db, "payloads") == 0


# (fault, kind, --timeout, exit code, connected, error type, IB code, message; {port} is filled in)
FAILURES = [
    ("refuse", "positions", 2, EXIT_NOT_CONNECTED, False, "not_connected", None,
     "connection refused at 127.0.0.1:{port}: nothing is listening on that port"),
    ("no-handshake", "positions", 1.5, EXIT_NOT_CONNECTED, False, "not_connected", None,
     "no API handshake from 127.0.0.1:{port} within the 1.5s timeout"),
    ("no-handshake", "accounts", 1, EXIT_NOT_CONNECTED, False, "not_connected", None,
     "no API handshake from 127.0.0.1:{port} within the 1s timeout"),
    # every message 1 s late: the handshake reply arrives, the startApi replies do not within 1.5 s
    ("delay:1000", "accounts", 1.5, EXIT_NOT_CONNECTED, False, "not_connected", None,
     "no API handshake from 127.0.0.1:{port} within the 1.5s timeout"),
    # 0.6 s per message: connected after ~1.2 s, the positions answer would come at ~1.8 s
    ("delay:600", "positions", 1.5, EXIT_GATEWAY_ERROR, True, "gateway_error", None,
     "positions: no answer from the gateway within the 1.5s timeout"),
    ("drop-after:1", "accounts", 2, EXIT_NOT_CONNECTED, False, "not_connected", None,
     "the gateway at 127.0.0.1:{port} closed the connection before the API was ready"),
    ("pacing", "positions", 2, EXIT_GATEWAY_ERROR, True, "gateway_error", 100,
     "positions: IB error 100: Max rate of messages per second has been exceeded"),
    ("pacing", "executions", 2, EXIT_GATEWAY_ERROR, True, "gateway_error", 100,
     "executions: IB error 100: Max rate of messages per second has been exceeded"),
    ("error:allOpenOrders:322", "orders", 2, EXIT_GATEWAY_ERROR, True, "gateway_error", 322,
     "open orders: IB error 322: Server error when processing an API client request."),
    ("error:accountUpdatesMulti:321", "account", 2, EXIT_GATEWAY_ERROR, True, "gateway_error", 321,
     "account values for DU1234567: IB error 321: Error validating request.-'bN' : cause - The API interface is "
     "currently in Read-Only mode."),
    ("error:executions:200", "executions", 2, EXIT_GATEWAY_ERROR, True, "gateway_error", 200,
     "executions: IB error 200: No security definition has been found for the request"),
]


@pytest.mark.parametrize(
    "fault, kind, timeout, exit_code, connected, error_type, code, message", FAILURES,
    ids=[f"{f[0]}-{f[1]}" for f in FAILURES],
)
def test_fault_is_a_bounded_recorded_failure(db, fault, kind, timeout, exit_code, connected, error_type, code,
                                              message):
    with start_in_thread(faults=[fault], now=FIXED_NOW) as gw:
        result = dump(gw.port, db, kind, timeout)
    assert_failed_and_recorded(result, db, timeout, exit_code=exit_code, connected=connected,
                               error_type=error_type, code=code, message=message.format(port=gw.port))


# The connection drops while the data is on the wire: some items were sent, the end marker never was.
# (kind, messages delivered before the drop, the item message id, its end message id, what was being fetched)
MID_TRANSFER = [
    ("positions", 3, 61, 62, "positions"),
    ("account", 10, 73, 74, "account values for DU1234567"),
    ("executions", 3, 11, 55, "executions"),
    ("orders", 1, 5, 53, "open orders"),
]


@pytest.mark.parametrize("kind, items, item_msg, end_msg, what", MID_TRANSFER, ids=[m[0] for m in MID_TRANSFER])
def test_drop_mid_transfer_never_records_partial_data(db, kind, items, item_msg, end_msg, what):
    with start_in_thread(faults=[f"drop-after:{BOOTSTRAP + items}"], now=FIXED_NOW) as gw:
        result = dump(gw.port, db, kind, 3)
        sent = [e.msg_id for e in gw.transcript if e.direction == "out"]
    assert item_msg in sent and end_msg not in sent  # the drop really came in the middle of the data
    assert_failed_and_recorded(result, db, 3, exit_code=EXIT_NOT_CONNECTED, connected=True,
                               error_type="not_connected", code=None,
                               message=f"the gateway closed the connection during {what}")


def test_slow_gateway_within_the_timeout_gives_the_same_data(db, tmp_path):
    with start_in_thread(now=FIXED_NOW) as gw:
        plain = dump(gw.port, tmp_path / "plain.db", "positions", 5)
    with start_in_thread(faults=["delay:100"], now=FIXED_NOW) as gw:
        slow = dump(gw.port, db, "positions", 5)
    assert (plain.returncode, slow.returncode) == (0, 0)
    assert slow.doc["ok"] and len(slow.doc["data"]) == 8
    assert slow.doc["data"] == plain.doc["data"]
    assert slow.elapsed <= 5 + BOUND_SLACK_S


def test_dumps_work_on_a_read_only_gateway(db):
    with start_in_thread(faults=["readonly"], now=FIXED_NOW) as gw:
        result = dump(gw.port, db, "orders", 5)
    assert result.returncode == 0, result.stderr
    assert (result.doc["ok"], len(result.doc["data"])) == (True, 2)


def test_pacing_does_not_stop_a_dump_that_needs_no_request(db):
    """`accounts` comes from the handshake's managedAccounts; a gateway refusing every request still answers it."""
    with start_in_thread(faults=["pacing"], now=FIXED_NOW) as gw:
        result = dump(gw.port, db, "accounts", 2)
        requests = [e.msg_id for e in gw.transcript if e.direction == "in"]
    assert result.returncode == 0, result.stderr
    assert [a["account"] for a in result.doc["data"]] == ["DU1234567", "DU7654321"]
    assert requests == [0, 71]  # hello and startApi only: the dump fetches nothing it does not need


def test_each_kind_sends_only_its_own_request(db):
    # 0 is the hello, 71 startApi
    expected = {"accounts": [0, 71], "positions": [0, 71, 61], "orders": [0, 71, 16], "executions": [0, 71, 7],
                "account": [0, 71, 76, 76]}
    for kind, requests in expected.items():
        with start_in_thread(now=FIXED_NOW) as gw:
            result = dump(gw.port, db, kind, 5)
            sent = [e.msg_id for e in gw.transcript if e.direction == "in"]
        assert result.returncode == 0, result.stderr
        assert sent == requests, kind


# --- client id in use (326): a second, real client holds the id ---------------------------------------------


def test_client_id_in_use_retries_the_next_id_and_reports_it(db, holders):
    with start_in_thread(now=FIXED_NOW) as gw:
        holders(gw.port, 9001)
        result = dump(gw.port, db, "positions", 5)
        start_apis = [e.fields[2] for e in gw.messages("in", 71)]
    assert result.returncode == 0, result.stderr
    doc = result.doc
    assert (doc["ok"], doc["connected"], doc["gateway"]["clientId"], len(doc["data"])) == (True, True, 9002, 8)
    assert start_apis == ["9001", "9001", "9002"]  # the holder, the refused try, the retry
    [row] = snapshot_rows(db)
    assert (row["ok"], row["client_id"]) == (1, 9002)


def test_client_id_tries_from_the_environment(db, holders):
    with start_in_thread(now=FIXED_NOW) as gw:
        holders(gw.port, 9001, 9002, 9003)
        result = ibg_audit("dump", "accounts", "--port", gw.port, "--db", db, "--timeout", 5,
                           env={"IBKR_CLIENT_ID_TRIES": "4"})
    assert result.returncode == 0, result.stderr
    assert result.doc["gateway"]["clientId"] == 9004


def test_every_tried_client_id_in_use_is_error_326(db, holders):
    with start_in_thread(now=FIXED_NOW) as gw:
        holders(gw.port, 9001, 9002, 9003)
        result = dump(gw.port, db, "positions", 3)
        tried = [e.fields[2] for e in gw.messages("in", 71)][3:]
    assert tried == ["9001", "9002", "9003"]
    assert_failed_and_recorded(
        result, db, 3, exit_code=EXIT_NOT_CONNECTED, connected=False, error_type="not_connected", code=326,
        message=f"client ids 9001..9003 are all in use at 127.0.0.1:{gw.port} (tried 3; pass a free --client-id, "
                "or try more ids with --client-id-tries)",
    )


def test_one_try_reports_the_id_in_use(db, holders):
    with start_in_thread(now=FIXED_NOW) as gw:
        holders(gw.port, 9001)
        result = dump(gw.port, db, "positions", 3, "--client-id-tries", "1")
    assert_failed_and_recorded(
        result, db, 3, exit_code=EXIT_NOT_CONNECTED, connected=False, error_type="not_connected", code=326,
        message=f"client id 9001 is already in use at 127.0.0.1:{gw.port}",
    )


# --- library level -------------------------------------------------------------------------------------------


def test_request_on_a_connection_the_gateway_just_closed_is_not_connected():
    """ib_async raises a bare ConnectionError when a request is written to a closed socket; the session turns
    it into NotConnectedError instead of letting it escape as a traceback."""

    async def body():
        gw = SimulatedGateway(now=FIXED_NOW)
        await gw.start()
        with pytest.raises(NotConnectedError) as raised:
            async with open_session(Endpoint(port=gw.port, timeout=3)) as session:
                await gw.stop()
                while session.ib.client.isConnected():
                    await asyncio.sleep(0.01)
                await collectors.fetch_positions(session)
        assert raised.value.message == f"the gateway at 127.0.0.1:{gw.port} closed the connection"

    run(body())


# --- order smoke ---------------------------------------------------------------------------------------------

ORDER = ["--asset", "STK", "--symbol", "AAPL", "--order", "LMT", "--limit", "0.01"]
PAPER_RAILS = {"ALLOW_ORDERS": "1", "IBKR_PAPER": "1"}
READ_ONLY_TEXT = "Error validating request.-'bN' : cause - The API interface is currently in Read-Only mode."

# (fault, smoke arguments, environment, exit code, connected, error type, IB code, message, what the sim saw placed:
# (what-if, transmit) per placeOrder, and the intent's events when an order went out for execution)
SMOKE_FAILURES = [
    ("reject-orders", ["--whatif"], {}, EXIT_GATEWAY_ERROR, True, "gateway_error", 201,
     "what-if order: IB error 201: Order rejected - reason:Simulated rejection", [(True, True)], None),
    ("readonly", ["--whatif"], {}, EXIT_GATEWAY_ERROR, True, "gateway_error", 321,
     f"what-if order: IB error 321: {READ_ONLY_TEXT}", [(True, True)], None),
    ("reject-orders", ["--auto-cancel"], PAPER_RAILS, EXIT_GATEWAY_ERROR, True, "gateway_error", 201,
     "the gateway rejected order 6: IB error 201: Order rejected - reason:Simulated rejection", [(False, True)],
     [("rejected", 201)]),
    ("readonly", ["--auto-cancel"], PAPER_RAILS, EXIT_GATEWAY_ERROR, True, "gateway_error", 321,
     f"the gateway rejected order 6: IB error 321: {READ_ONLY_TEXT}", [(False, True)], [("rejected", 321)]),
    ("error:contractDetails:200", ["--whatif"], {}, EXIT_BAD_INPUT, True, "contract_error", 200,
     "no STK contract AAPL on SMART in USD (IB error 200: No security definition has been found for the request)",
     [], None),
    ("pacing", ["--whatif"], {}, EXIT_GATEWAY_ERROR, True, "gateway_error", 100,
     "contract details for STK AAPL: IB error 100: Max rate of messages per second has been exceeded", [], None),
    (f"drop-after:{BOOTSTRAP + 1}", ["--whatif"], {}, EXIT_NOT_CONNECTED, True, "not_connected", None,
     "the gateway closed the connection during contract details for STK AAPL", [], None),
    ("no-handshake", ["--whatif"], {}, EXIT_NOT_CONNECTED, False, "not_connected", None,
     "no API handshake from 127.0.0.1:{port} within the 1.5s timeout", [], None),
]


@pytest.mark.parametrize(
    "fault, extra, env, exit_code, connected, error_type, code, message, placed, events", SMOKE_FAILURES,
    ids=[f"{f[0]}{f[1][0]}" for f in SMOKE_FAILURES],
)
def test_smoke_fault_is_a_bounded_recorded_failure(db, fault, extra, env, exit_code, connected, error_type, code,
                                                    message, placed, events):
    timeout = 1.5
    with start_in_thread(faults=[fault], now=FIXED_NOW) as gw:
        result = ibg_audit("smoke", *ORDER, *extra, "--port", gw.port, "--db", db, "--timeout", timeout,
                           env={"ALLOW_ORDERS": None, "IBKR_PAPER": None, **env})
        seen = [(o.what_if, o.transmit) for o in gw.placed_orders(transmit_only=False)]
    assert result.elapsed <= timeout + BOUND_SLACK_S, f"took {result.elapsed:.2f}s"
    assert result.returncode == exit_code, result.stderr
    doc = result.doc
    message = message.format(port=gw.port)
    assert (doc["connected"], doc["ok"], doc["transmitted"]) == (connected, False, events is not None)
    assert (doc["error"]["type"], doc["error"]["code"], doc["error"]["message"]) == (error_type, code, message)
    assert seen == placed
    [row] = snapshot_rows(db)
    assert (row["kind"], row["ok"], row["error_code"], row["error_message"]) == ("smoke", 0, code, message)
    [call] = query(db, "SELECT ok, transmitted, intent_id FROM smoke_calls")
    assert (call["ok"], call["transmitted"]) == (0, int(events is not None))
    recorded = query(db, "SELECT event, error_code FROM order_events ORDER BY id")
    assert [(e["event"], e["error_code"]) for e in recorded] == (events or [])
    assert consistency_problems(db) == []
