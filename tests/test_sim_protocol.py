"""Unit tests of the sim's field codec and request parsers (no sockets)."""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ib_async import (
    ComboLeg,
    Contract,
    DeltaNeutralContract,
    LimitOrder,
    Order,
    PriceCondition,
    TagValue,
    TimeCondition,
)
from ib_async.client import Client

from ibg_audit.sim.protocol import (
    ProtocolError,
    decode_payload,
    encode_fields,
    jdouble,
    parse_double,
    parse_hello,
    parse_int,
    plain,
)
from ibg_audit.sim.requests import parse_exec_time, parse_executions, parse_place_order, request_id
from sim_fixtures import captured_request

UTC = dt.UTC


@pytest.mark.parametrize("value, text", [
    (0, "0.0"), (0.0, "0.0"), (201.94, "201.94"), (6300, "6300.0"), (-3.5, "-3.5"), (0.001, "0.001"),
    (1e7, "1.0E7"), (12345678.5, "1.23456785E7"), (5e-05, "5.0E-5"), (-2.5e-4, "-2.5E-4"),
    (1.7976931348623157e308, "1.7976931348623157E308"), (None, "1.7976931348623157E308"),
])
def test_jdouble_prints_like_java(value, text):
    assert jdouble(value) == text


@pytest.mark.parametrize("value, text", [
    (0, "0"), (0.0, "0"), (100, "100"), (Decimal("100"), "100"), (Decimal("0.0001"), "0.0001"), (201.94, "201.94"),
    (6300.0, "6300"), (5e-05, "0.00005"), (-110.0, "-110"), (None, ""), (1.7976931348623157e308, ""),
])
def test_plain_prints_sizes_without_exponent_or_trailing_zero(value, text):
    assert plain(value) == text


@given(st.floats(allow_nan=False, allow_infinity=False, max_value=1e300, min_value=-1e300))
def test_jdouble_round_trips_every_finite_double(x):
    assert float(jdouble(x)) == x
    assert float(plain(x) or "nan") == x


@given(st.lists(st.text(alphabet=st.characters(blacklist_characters="\0", blacklist_categories=["Cs"])),
                max_size=20))
def test_frames_round_trip(fields):
    message = ["11", *fields]
    frame = encode_fields(message)
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4
    assert decode_payload(frame[4:]) == message


@pytest.mark.parametrize("text", ["", "1.7976931348623157E308", "1.7976931348623157e+308", "Infinity", "inf"])
def test_unset_doubles_from_either_client_parse_as_none(text):
    assert parse_double(text) is None


def test_parse_double_and_int():
    assert parse_double("6300") == 6300.0 and parse_double("0.0") == 0.0
    assert parse_int("") is None and parse_int("2147483647", -1) == -1 and parse_int("12") == 12
    assert parse_int("5.0") == 5
    for bad in ("abc", "1,5"):
        with pytest.raises(ProtocolError):
            parse_double(bad)
    with pytest.raises(ProtocolError, match="not an integer"):
        parse_int("5.5")


def test_framing_is_length_prefixed_nul_terminated_fields():
    assert encode_fields(["71", "2", "1", ""]) == b"\x00\x00\x00\x0871\x002\x001\x00\x00"
    assert decode_payload(b"15\x001\x00DU1234567\x00") == ["15", "1", "DU1234567"]
    with pytest.raises(ProtocolError, match="not NUL-terminated"):
        decode_payload(b"15\x001")
    with pytest.raises(ProtocolError, match="not a number"):
        decode_payload(b"GET\x00")
    with pytest.raises(ProtocolError, match="not a number"):
        decode_payload(b"\x00")
    with pytest.raises(ProtocolError, match="UTF-8"):
        decode_payload(b"4\x00\xff\x00")


def test_parse_hello():
    assert parse_hello("v157..178") == (157, 178, "")
    assert parse_hello("v100..226 +PACEAPI") == (100, 226, "+PACEAPI")
    for bad in ("v178", "v190..178", "x", "v1..two"):
        with pytest.raises(ProtocolError):
            parse_hello(bad)


@pytest.mark.parametrize("text, expected", [
    ("", None),
    ("20260310 09:15:00", dt.datetime(2026, 3, 10, 9, 15, tzinfo=UTC)),
    ("20260310-09:15:00", dt.datetime(2026, 3, 10, 9, 15, tzinfo=UTC)),
    ("20260310-09:15", dt.datetime(2026, 3, 10, 9, 15, tzinfo=UTC)),  # the ibapi docstring's example form
    ("20260310 09:15:00 UTC", dt.datetime(2026, 3, 10, 9, 15, tzinfo=UTC)),
    ("20260310 09:15:00 US/Eastern", dt.datetime(2026, 3, 10, 13, 15, tzinfo=UTC)),
    ("20260110 09:15:00 Europe/Zurich", dt.datetime(2026, 1, 10, 8, 15, tzinfo=UTC)),
])
def test_execution_filter_time_formats(text, expected):
    assert parse_exec_time(text) == expected


@pytest.mark.parametrize("text", ["yesterday", "2026-03-10 09:15", "20261310 09:15:00", "20260310 09:15:00 Mars/Base"])
def test_bad_execution_filter_times_are_rejected(text):
    with pytest.raises(ProtocolError, match="invalid ExecutionFilter time"):
        parse_exec_time(text)


def test_captured_execution_requests_parse():
    req_id, flt = parse_executions(captured_request("7|3|9|0||20250415"))
    assert req_id == 9 and flt.time == dt.datetime(2025, 4, 15, tzinfo=UTC) and flt.client_id == 0
    assert request_id(captured_request("7|3|2|0")) == 2
    assert request_id(["61", "1"]) == -1


def test_captured_ib_async_what_if_place_order_parses():
    order = parse_place_order(captured_request("3|6|637533641|ES|FUT"))
    assert (order.order_id, order.contract["conId"], order.contract["localSymbol"], order.action,
            order.total_quantity, order.order_type, order.lmt_price, order.aux_price, order.what_if,
            order.transmit, order.open_close) == (6, 637533641, "ESU5", "BUY", 1, "LMT", 6300.0, None, True, True, "O")


def test_captured_ibapi_what_if_place_order_parses_with_python_style_unset_doubles():
    order = parse_place_order(captured_request("3|1|637533641|ES|FUT|202509"))
    assert (order.order_id, order.contract["lastTradeDateOrContractMonth"], order.contract["strike"], order.action,
            order.total_quantity, order.lmt_price, order.what_if, order.cash_qty, order.trail_stop_price) == (
        1, "202509", 0.0, "BUY", 1, 6300.0, True, None, None)


def ib_async_place_order_fields(contract: Contract, order: Order) -> list[str]:
    """The exact fields ib_async 2.1 writes for placeOrder at server version 178."""
    sent = []
    client = Client(wrapper=None)
    client._serverVersion = 178
    client.connState = Client.CONNECTED
    client.sendMsg = sent.append
    client.placeOrder(42, contract, order)
    return sent[0].split("\0")[:-1]


def test_place_order_parser_walks_every_conditional_group():
    bag = Contract(secType="BAG", symbol="AAPL", exchange="SMART", currency="USD", comboLegs=[
        ComboLeg(conId=1, ratio=1, action="BUY", exchange="SMART"),
        ComboLeg(conId=2, ratio=1, action="SELL", exchange="SMART")])
    bag.deltaNeutralContract = DeltaNeutralContract(conId=265598, delta=0.5, price=227.0)
    order = LimitOrder("BUY", 3, 1.25, orderComboLegs=[], smartComboRoutingParams=[TagValue("NonGuaranteed", "1")],
                       deltaNeutralOrderType="LMT", scalePriceIncrement=0.05, hedgeType="D", hedgeParam="0.5",
                       algoStrategy="Adaptive", algoParams=[TagValue("adaptivePriority", "Normal")],
                       conditions=[PriceCondition(price=230.0, conId=265598, exch="SMART"),
                                   TimeCondition(time="20260310 16:00:00")],
                       conditionsCancelOrder=True, trailStopPrice=1.1, cashQty=500.0)
    fields = ib_async_place_order_fields(bag, order)
    parsed = parse_place_order(fields)
    assert parsed.combo_legs == 2
    assert parsed.delta_neutral_contract == ("265598", "0.5", "227.0")
    assert parsed.scale_price_increment == "0.05" and len(parsed.scale_extra) == 7
    assert parsed.hedge == ("D", "0.5")
    assert parsed.algo_strategy == "Adaptive" and parsed.algo_params == (("adaptivePriority", "Normal"),)
    assert parsed.conditions == (("1", "a", "1", "230.0", "265598", "SMART", "0"), ("3", "a", "1", "20260310 16:00:00"))
    assert parsed.conditions_cancel_order and not parsed.conditions_ignore_rth
    assert (parsed.trail_stop_price, parsed.cash_qty, parsed.lmt_price) == (1.1, 500.0, 1.25)
    with pytest.raises(ProtocolError, match="1 unexpected trailing fields"):
        parse_place_order([*fields, "extra"])
    with pytest.raises(ProtocolError, match="ended after"):
        parse_place_order(fields[:-3])


@pytest.mark.parametrize("order_type, extra", [
    ("PEG BENCH", dict(referenceContractId=265598, peggedChangeAmount=0.1, referenceChangeAmount=0.2)),
    ("PEG BEST", dict(minCompeteSize=100, competeAgainstBestOffset=math.inf, midOffsetAtWhole=0.01,
                      midOffsetAtHalf=0.005)),
    ("PEG BEST", dict(minCompeteSize=100, competeAgainstBestOffset=0.02)),
    ("PEG MID", dict(midOffsetAtWhole=0.01, midOffsetAtHalf=0.005)),
])
def test_place_order_parser_handles_pegged_order_extras(order_type, extra):
    order = Order(action="BUY", totalQuantity=10, orderType=order_type, lmtPrice=100.0, **extra)
    parsed = parse_place_order(ib_async_place_order_fields(Contract(conId=265598, exchange="IBKRATS"), order))
    assert parsed.order_type == order_type
    assert len(parsed.peg_bench) == (5 if order_type == "PEG BENCH" else 0)
