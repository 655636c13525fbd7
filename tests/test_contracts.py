import subprocess
import sys
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from ib_async import Contract, ContractDetails, Future, Stock

from ibg_audit.contracts import (
    FUT_EXCHANGES,
    IB_TIME_ZONES,
    AmbiguousContractError,
    ContractError,
    Selection,
    contract_to_json,
    future_contract,
    future_exchange,
    parse_expiry,
    pick_front_month,
    stock_contract,
)
from ibg_audit.errors import EXIT_BAD_INPUT, BadInputError

UTC = timezone.utc


def fut(local, day, clock="08:30", zone="US/Central", trading_class="ES", con_id=0):
    """A candidate as contract details give it (the split form ib_async produces)."""
    return {
        "conId": con_id,
        "symbol": "ES",
        "localSymbol": local,
        "tradingClass": trading_class,
        "lastTradeDateOrContractMonth": day,
        "lastTradeTime": clock,
        "timeZoneId": zone,
    }


# ES quarterlies; the last trade is 08:30 Chicago time: CDT (UTC-5) in March/June/September, CST (UTC-6) in December.
ESH5 = fut("ESH5", "20250321", con_id=1)  # 13:30 UTC (DST started 2025-03-09)
ESM5 = fut("ESM5", "20250620", con_id=2)  # 13:30 UTC
ESU5 = fut("ESU5", "20250919", con_id=3)  # 13:30 UTC
ESZ5 = fut("ESZ5", "20251219", con_id=4)  # 14:30 UTC
ESH6 = fut("ESH6", "20260320", con_id=5)  # 13:30 UTC (DST starts 2026-03-08)
CHAIN = [ESU5, ESH6, ESM5, ESZ5, ESH5]  # deliberately out of order


@pytest.mark.parametrize(
    ("now", "chosen"),
    [
        pytest.param(datetime(2025, 1, 2, 12, tzinfo=UTC), ESH5, id="well-before"),
        pytest.param(datetime(2025, 3, 21, 13, 29, 59, tzinfo=UTC), ESH5, id="spring-expiry-day-before-last-trade-CDT"),
        pytest.param(datetime(2025, 3, 21, 13, 30, tzinfo=UTC), ESM5, id="spring-expiry-day-at-last-trade-CDT"),
        pytest.param(datetime(2025, 6, 20, 13, 29, tzinfo=UTC), ESM5, id="summer-expiry-day-before-last-trade"),
        pytest.param(datetime(2025, 6, 20, 13, 31, tzinfo=UTC), ESU5, id="summer-expiry-day-after-last-trade"),
        pytest.param(datetime(2025, 6, 21, tzinfo=UTC), ESU5, id="expired-month-skipped"),
        # 13:31 UTC is 07:31 CST: still before the last trade, which a CDT reading would have put at 13:30 UTC.
        pytest.param(datetime(2025, 12, 19, 13, 31, tzinfo=UTC), ESZ5, id="winter-expiry-day-before-last-trade-CST"),
        pytest.param(datetime(2025, 12, 19, 14, 29, 59, tzinfo=UTC), ESZ5, id="winter-expiry-day-just-before-CST"),
        pytest.param(datetime(2025, 12, 19, 14, 30, tzinfo=UTC), ESH6, id="winter-after-rolls-into-next-year"),
        pytest.param(datetime(2025, 12, 31, 23, 59, tzinfo=UTC), ESH6, id="year-end"),
        # The same instant seen from Tokyo: comparisons are between moments, not wall clocks.
        pytest.param(
            datetime(2025, 6, 20, 22, 29, tzinfo=ZoneInfo("Asia/Tokyo")), ESM5, id="now-in-another-zone-before"
        ),
        pytest.param(
            datetime(2025, 6, 20, 22, 30, tzinfo=ZoneInfo("Asia/Tokyo")), ESU5, id="now-in-another-zone-after"
        ),
    ],
)
def test_front_month(now, chosen):
    assert pick_front_month(CHAIN, symbol="ES", now=now).chosen is chosen


def test_considered_lists_every_candidate_with_its_reason():
    selection = pick_front_month(CHAIN, symbol="ES", now=datetime(2025, 6, 20, 13, 31, tzinfo=UTC))
    assert isinstance(selection, Selection)
    assert selection.considered == [
        {
            "conId": 1,
            "localSymbol": "ESH5",
            "tradingClass": "ES",
            "lastTradeDateOrContractMonth": "20250321",
            "expired": True,
            "reason": "expired: last trade 2025-03-21 08:30 US/Central has passed",
        },
        {
            "conId": 2,
            "localSymbol": "ESM5",
            "tradingClass": "ES",
            "lastTradeDateOrContractMonth": "20250620",
            "expired": True,
            "reason": "expired: last trade 2025-06-20 08:30 US/Central has passed",
        },
        {
            "conId": 3,
            "localSymbol": "ESU5",
            "tradingClass": "ES",
            "lastTradeDateOrContractMonth": "20250919",
            "expired": False,
            "reason": "chosen: nearest month that has not expired",
        },
        {
            "conId": 4,
            "localSymbol": "ESZ5",
            "tradingClass": "ES",
            "lastTradeDateOrContractMonth": "20251219",
            "expired": False,
            "reason": "later than the front month 202509",
        },
        {
            "conId": 5,
            "localSymbol": "ESH6",
            "tradingClass": "ES",
            "lastTradeDateOrContractMonth": "20260320",
            "expired": False,
            "reason": "later than the front month 202509",
        },
    ]


@pytest.mark.parametrize(
    ("now", "expired"),
    [
        (datetime(2025, 6, 21, 4, 59, 59, tzinfo=UTC), False),  # 23:59:59 CDT on the last trading day
        (datetime(2025, 6, 21, 5, 0, tzinfo=UTC), True),  # midnight in Chicago
    ],
)
def test_without_last_trade_time_the_whole_day_counts(now, expired):
    candidates = [fut("ESM5", "20250620", clock="", con_id=2), ESU5]
    selection = pick_front_month(candidates, symbol="ES", now=now)
    assert selection.considered[0]["expired"] is expired
    assert selection.considered[0]["reason"] == (
        "expired: last trade 2025-06-20 end of day US/Central has passed"
        if expired
        else "chosen: nearest month that has not expired"
    )


@pytest.mark.parametrize(
    ("now", "expired"),
    [(datetime(2025, 7, 1, 4, 59, tzinfo=UTC), False), (datetime(2025, 7, 1, 5, 0, tzinfo=UTC), True)],
)
def test_month_only_candidate_lives_until_the_month_ends(now, expired):
    selection = pick_front_month([fut("ESM5", "202506", clock="", con_id=2), ESU5], symbol="ES", now=now)
    assert selection.considered[0]["expired"] is expired


def test_wire_form_with_time_and_zone_in_one_field():
    packed = {
        "conId": 2,
        "localSymbol": "ESM5",
        "tradingClass": "ES",
        "lastTradeDateOrContractMonth": "20250620 08:30 US/Central",
    }
    before = pick_front_month([packed, ESU5], symbol="ES", now=datetime(2025, 6, 20, 13, 29, tzinfo=UTC))
    after = pick_front_month([packed, ESU5], symbol="ES", now=datetime(2025, 6, 20, 13, 30, tzinfo=UTC))
    assert before.chosen is packed
    assert before.considered[0]["lastTradeDateOrContractMonth"] == "20250620"
    assert after.chosen is ESU5


def test_ib_async_contract_details_are_accepted_and_returned_as_is():
    def details(local, day, con_id):
        contract = Future("ES", day, "CME", conId=con_id, localSymbol=local, tradingClass="ES", multiplier="50")
        return ContractDetails(contract=contract, lastTradeTime="08:30", timeZoneId="US/Central")

    june, september = details("ESM5", "20250620", 620731015), details("ESU5", "20250919", 637533641)
    selection = pick_front_month([september, june], symbol="ES", now=datetime(2025, 6, 20, 13, 29, tzinfo=UTC))
    assert selection.chosen is june
    assert [c["conId"] for c in selection.considered] == [620731015, 637533641]


@pytest.mark.parametrize(
    ("zone", "last_trade_utc"),
    [
        ("US/Central", datetime(2025, 6, 20, 13, 30, tzinfo=UTC)),
        ("America/Chicago", datetime(2025, 6, 20, 13, 30, tzinfo=UTC)),
        ("CST6CDT", datetime(2025, 6, 20, 13, 30, tzinfo=UTC)),
        ("US/Eastern", datetime(2025, 6, 20, 12, 30, tzinfo=UTC)),
        ("EST5EDT", datetime(2025, 6, 20, 12, 30, tzinfo=UTC)),
        ("GB", datetime(2025, 6, 20, 7, 30, tzinfo=UTC)),
        ("MET", datetime(2025, 6, 20, 6, 30, tzinfo=UTC)),
        ("Japan", datetime(2025, 6, 19, 23, 30, tzinfo=UTC)),
    ],
)
def test_ib_time_zone_ids(zone, last_trade_utc):
    candidates = [fut("XM5", "20250620", zone=zone, trading_class="X", con_id=1), fut("XU5", "20250919", con_id=2)]
    just_before = pick_front_month(candidates, symbol="X", now=last_trade_utc - timedelta(microseconds=1))
    at = pick_front_month(candidates, symbol="X", now=last_trade_utc)
    assert [c["expired"] for c in just_before.considered] == [False, False]
    assert [c["expired"] for c in at.considered] == [True, False]


@pytest.mark.parametrize(("legacy", "canonical"), sorted(IB_TIME_ZONES.items()))
def test_legacy_time_zone_ids_map_to_the_same_clock(legacy, canonical):
    # tzdata (an ib_async dependency) still carries the legacy links, so the two can be compared here.
    for moment in (datetime(2025, 1, 15, 12, tzinfo=UTC), datetime(2025, 7, 15, 12, tzinfo=UTC)):
        assert moment.astimezone(ZoneInfo(legacy)).utcoffset() == moment.astimezone(ZoneInfo(canonical)).utcoffset()


# --- several contracts in the front month ------------------------------------------------------------------


def test_same_month_prefers_trading_class_equal_to_symbol():
    other = fut("ESQ5", "20250620", trading_class="EST", con_id=7)
    selection = pick_front_month([other, ESM5, ESU5], symbol="ES", now=datetime(2025, 6, 1, tzinfo=UTC))
    assert selection.chosen is ESM5
    assert [(c["localSymbol"], c["reason"]) for c in selection.considered] == [
        ("ESM5", "chosen: nearest month that has not expired, tradingClass ES"),
        ("ESQ5", "same month, but tradingClass EST is not ES"),
        ("ESU5", "later than the front month 202506"),
    ]


def test_same_month_without_trading_class_match_is_ambiguous():
    candidates = [
        fut("XAM5", "20250620", trading_class="XA", con_id=11),
        fut("XBM5", "20250618", trading_class="XB", con_id=12),
        ESU5,
    ]
    with pytest.raises(AmbiguousContractError) as caught:
        pick_front_month(candidates, symbol="ES", now=datetime(2025, 6, 1, tzinfo=UTC))
    error = caught.value
    assert str(error) == (
        "cannot choose between 2 ES contracts in 202506 (0 with tradingClass ES): "
        "XBM5 (tradingClass XB, conId 12), XAM5 (tradingClass XA, conId 11)"
    )
    assert error.to_json() == {
        "type": "ambiguous_contract",
        "message": str(error),
        "code": None,
        "hint": None,
        "candidates": [
            {"localSymbol": "XBM5", "tradingClass": "XB", "conId": 12},
            {"localSymbol": "XAM5", "tradingClass": "XA", "conId": 11},
        ],
    }
    assert error.exit_code == EXIT_BAD_INPUT


def test_two_contracts_with_the_symbol_as_trading_class_are_ambiguous():
    twin = fut("ESM5", "20250620", con_id=22)
    with pytest.raises(AmbiguousContractError) as caught:
        pick_front_month([ESM5, twin], symbol="ES", now=datetime(2025, 6, 1, tzinfo=UTC))
    assert str(caught.value) == (
        "cannot choose between 2 ES contracts in 202506 (2 with tradingClass ES): "
        "ESM5 (tradingClass ES, conId 2), ESM5 (tradingClass ES, conId 22)"
    )


def test_an_expired_contract_in_the_month_does_not_make_it_ambiguous():
    early = fut("XAM5", "20250602", trading_class="XA", con_id=11)
    selection = pick_front_month([early, ESM5], symbol="ES", now=datetime(2025, 6, 10, tzinfo=UTC))
    assert selection.chosen is ESM5
    assert selection.considered[0]["reason"] == "expired: last trade 2025-06-02 08:30 US/Central has passed"
    assert selection.considered[1]["reason"] == "chosen: nearest month that has not expired"


# --- --expiry --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("expiry", ["202509", "20250919"])
def test_expiry_hit(expiry):
    selection = pick_front_month(CHAIN, symbol="ES", now=datetime(2025, 6, 1, tzinfo=UTC), expiry=expiry)
    assert selection.chosen is ESU5
    assert [c["reason"] for c in selection.considered] == [
        f"not the requested expiry {expiry}",
        f"not the requested expiry {expiry}",
        f"chosen: the requested expiry {expiry}",
        f"not the requested expiry {expiry}",
        f"not the requested expiry {expiry}",
    ]


def test_expiry_on_its_last_day_before_the_last_trade():
    now = datetime(2025, 6, 20, 13, 29, tzinfo=UTC)
    assert pick_front_month(CHAIN, symbol="ES", now=now, expiry="202506").chosen is ESM5


@pytest.mark.parametrize(
    ("expiry", "message"),
    [
        ("202507", "no ES contract for expiry 202507; available months: 202503, 202506, 202509, 202512, 202603"),
        (
            "20250918",
            "no ES contract for expiry 20250918; available last trade dates: "
            "20250321, 20250620, 20250919, 20251219, 20260320",
        ),
        ("202506", "expiry 202506 has expired (last trade 2025-06-20 08:30 US/Central)"),
        ("20250620", "expiry 20250620 has expired (last trade 2025-06-20 08:30 US/Central)"),
        ("2025-13", "--expiry must be YYYYMM or YYYYMMDD, got '2025-13'"),
    ],
)
def test_expiry_errors(expiry, message):
    with pytest.raises(ContractError) as caught:
        pick_front_month(CHAIN, symbol="ES", now=datetime(2025, 6, 20, 13, 30, tzinfo=UTC), expiry=expiry)
    assert str(caught.value) == message
    assert caught.value.to_json()["type"] == "contract_error"


@pytest.mark.parametrize("text", ["202506", "20250620", "20240229", "199912", "20251231"])
def test_parse_expiry_accepts(text):
    assert parse_expiry(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "2025-13",
        "202513",
        "202500",
        "000001",
        "20250230",
        "20230229",
        "20250632",
        "2025061",
        "2025062000",
        "2025",
        " 202506",
        "202506\n",
        "٢٠٢٥٠٦",  # Arabic-Indic digits are digits to str.isdigit, not to us
        "",
        "2025-06",
    ],
)
def test_parse_expiry_rejects(text):
    with pytest.raises(ContractError) as caught:
        parse_expiry(text)
    assert str(caught.value) == f"--expiry must be YYYYMM or YYYYMMDD, got {text!r}"
    assert isinstance(caught.value, BadInputError)
    assert caught.value.exit_code == EXIT_BAD_INPUT


# --- what cannot be decided ---------------------------------------------------------------------------------


def test_every_contract_expired():
    with pytest.raises(ContractError) as caught:
        pick_front_month([ESH5, ESM5], symbol="ES", now=datetime(2025, 7, 1, tzinfo=UTC))
    assert str(caught.value) == "every ES contract found has expired (latest last trade 2025-06-20 08:30 US/Central)"


def test_no_candidates():
    with pytest.raises(ContractError) as caught:
        pick_front_month([], symbol="ES", now=datetime(2025, 7, 1, tzinfo=UTC))
    assert str(caught.value) == "no ES futures contracts found"


@pytest.mark.parametrize(
    ("candidate", "message"),
    [
        (fut("ESM5", "20250620", zone=""), "contract ESM5 has no time zone, so its expiry cannot be judged"),
        (fut("ESM5", "20250620", zone="Mars/Olympus"), "contract ESM5 has an unknown time zone 'Mars/Olympus'"),
        (fut("ESM5", "20250620", zone="../etc/passwd"), "contract ESM5 has an unknown time zone '../etc/passwd'"),
        (fut("ESM5", "20250620", zone="America"), "contract ESM5 has an unknown time zone 'America'"),
        (fut("ESM5", "2025-06-20"), "contract ESM5 has an unreadable last trade date '2025-06-20'"),
        (fut("ESM5", ""), "contract ESM5 has an unreadable last trade date ''"),
        (fut("ESM5", "20250620", clock="8.30"), "contract ESM5 has an unreadable last trade time '8.30'"),
        (fut("ESM5", "20250620", clock="25:00"), "contract ESM5 has an unreadable last trade time '25:00'"),
    ],
)
def test_unreadable_contract_details(candidate, message):
    with pytest.raises(ContractError) as caught:
        pick_front_month([candidate], symbol="ES", now=datetime(2025, 6, 1, tzinfo=UTC))
    assert str(caught.value) == message


@pytest.mark.parametrize(("clock", "expired"), [("08:30:00", True), ("0830", True), ("08:30:01", False)])
def test_last_trade_time_formats(clock, expired):
    selection = pick_front_month(
        [fut("ESM5", "20250620", clock=clock, con_id=2), ESU5],
        symbol="ES",
        now=datetime(2025, 6, 20, 13, 30, tzinfo=UTC),
    )
    assert selection.considered[0]["expired"] is expired


def test_now_must_be_timezone_aware():
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        pick_front_month(CHAIN, symbol="ES", now=datetime(2025, 6, 1))


# --- builders and JSON ---------------------------------------------------------------------------------------


def test_fut_exchanges():
    assert dict(FUT_EXCHANGES) == {
        "ES": "CME",
        "NQ": "CME",
        "RTY": "CME",
        "6E": "CME",
        "CL": "NYMEX",
        "NG": "NYMEX",
        "GC": "COMEX",
        "SI": "COMEX",
        "ZN": "CBOT",
        "ZB": "CBOT",
        "ZC": "CBOT",
    }


@pytest.mark.parametrize(
    ("symbol", "override", "exchange"),
    [("CL", None, "NYMEX"), ("gc", None, "COMEX"), ("ZB", None, "CBOT"), ("XYZ", None, "CME"), ("CL", "ICE", "ICE")],
)
def test_future_exchange(symbol, override, exchange):
    assert future_exchange(symbol, override) == exchange


def test_future_contract():
    contract = future_contract("CL")
    assert isinstance(contract, Future)
    assert contract_to_json(contract) == {
        "conId": 0,
        "symbol": "CL",
        "secType": "FUT",
        "lastTradeDateOrContractMonth": "",
        "exchange": "NYMEX",
        "primaryExchange": "",
        "currency": "USD",
        "localSymbol": "",
        "tradingClass": "",
        "multiplier": "",
    }
    chosen = future_contract("ES", exchange="GLOBEX", currency="USD", expiry="202509")
    assert (chosen.exchange, chosen.lastTradeDateOrContractMonth) == ("GLOBEX", "202509")


def test_future_contract_rejects_a_malformed_expiry():
    with pytest.raises(ContractError, match=r"^--expiry must be YYYYMM or YYYYMMDD, got '2509'$"):
        future_contract("ES", expiry="2509")


def test_stock_contract():
    contract = stock_contract("AAPL")
    assert isinstance(contract, Stock)
    assert (contract.secType, contract.symbol, contract.exchange, contract.currency) == ("STK", "AAPL", "SMART", "USD")
    assert stock_contract("SAP", "IBIS", "EUR").exchange == "IBIS"


def test_contract_to_json_qualified_future():
    contract = Contract(
        conId=620731015,
        symbol="ES",
        secType="FUT",
        lastTradeDateOrContractMonth="20250620",
        exchange="CME",
        currency="USD",
        localSymbol="ESM5",
        tradingClass="ES",
        multiplier="50",
    )
    assert contract_to_json(contract) == {
        "conId": 620731015,
        "symbol": "ES",
        "secType": "FUT",
        "lastTradeDateOrContractMonth": "20250620",
        "exchange": "CME",
        "primaryExchange": "",
        "currency": "USD",
        "localSymbol": "ESM5",
        "tradingClass": "ES",
        "multiplier": "50",
    }


@pytest.mark.parametrize(
    ("con_id", "multiplier", "expected"),
    [
        (2147483647, 50.0, (None, "50")),
        (9223372036854775807, 0.1, (None, "0.1")),
        (265598, 1.7976931348623157e308, (265598, None)),
        (265598, None, (265598, None)),
    ],
)
def test_contract_to_json_sentinels(con_id, multiplier, expected):
    result = contract_to_json(SimpleNamespace(conId=con_id, multiplier=multiplier, symbol="AAPL"))
    assert (result["conId"], result["multiplier"]) == expected
    assert result["symbol"] == "AAPL"
    assert result["primaryExchange"] is None  # an attribute the object does not have


def test_importing_contracts_does_not_load_ib_async():
    code = "import sys, ibg_audit.contracts, ibg_audit.safety; print('ib_async' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout == "False\n"
