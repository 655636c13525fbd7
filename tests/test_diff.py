"""diff_items, render_table and render_markdown on hand-made snapshot payloads (exact reports and text)."""

import json

import pytest

from ibg_audit.diff import (
    DiffError,
    diff_items,
    render_markdown,
    render_table,
)
from ibg_audit.errors import BadInputError

ACCOUNT = "DU1234567"


def position(conId, symbol, secType, qty, avgCost, *, localSymbol=None, account=ACCOUNT, **extra):
    item = {
        "account": account,
        "conId": conId,
        "symbol": symbol,
        "secType": secType,
        "lastTradeDateOrContractMonth": "",
        "strike": 0.0,
        "right": "",
        "multiplier": "",
        "exchange": "",
        "currency": "USD",
        "localSymbol": localSymbol or symbol,
        "tradingClass": "",
        "position": qty,
        "avgCost": avgCost,
    }
    item.update(extra)
    return item


def order(permId, status, *, orderId=1, clientId=0, action="BUY", qty=1.0, orderType="LMT", lmtPrice=0.01, **extra):
    item = {
        "orderId": orderId,
        "permId": permId,
        "clientId": clientId,
        "account": ACCOUNT,
        "conId": 265598,
        "symbol": "AAPL",
        "secType": "STK",
        "localSymbol": "AAPL",
        "action": action,
        "totalQuantity": qty,
        "orderType": orderType,
        "lmtPrice": lmtPrice,
        "auxPrice": None,
        "tif": "DAY",
        "status": status,
        "filled": 0.0,
        "remaining": qty,
        "avgFillPrice": None,
    }
    item.update(extra)
    return item


def account_value(tag, value, currency="USD", *, modelCode=""):
    return {"account": ACCOUNT, "tag": tag, "value": value, "currency": currency, "modelCode": modelCode}


def execution(execId, side, shares, price):
    return {
        "execId": execId,
        "time": "2026-11-24T14:31:05Z",
        "account": ACCOUNT,
        "conId": 265598,
        "symbol": "AAPL",
        "secType": "STK",
        "localSymbol": "AAPL",
        "side": side,
        "shares": shares,
        "price": price,
        "orderId": 3,
        "permId": 1888,
        "clientId": 0,
        "exchange": "ISLAND",
        "cumQty": shares,
        "avgPrice": price,
        "commission": None,
        "commissionCurrency": "",
        "realizedPNL": None,
    }


def labels(report):
    return {
        "added": [e["label"] for e in report["added"]],
        "removed": [e["label"] for e in report["removed"]],
        "changed": [c["label"] for e in report["changed"] for c in e["changes"]],
    }


# A fill opened TSLA and closed the ES future, AAPL grew, MSFT and SPY did not move (SPY's price did).
POSITIONS_BEFORE = [
    position(265598, "AAPL", "STK", 100.0, 150.0),
    position(495512557, "ES", "FUT", 1.0, 312500.5, localSymbol="ESZ6", multiplier="50"),
    position(272093, "MSFT", "STK", 10.0, 300.0),
    position(756733, "SPY", "STK", 5.0, 590.0, marketPrice=591.12, marketValue=2955.6, unrealizedPNL=5.6),
]
POSITIONS_AFTER = [
    position(756733, "SPY", "STK", 5.0, 590.0, marketPrice=592.0, marketValue=2960.0, unrealizedPNL=10.0),
    position(76792991, "TSLA", "STK", 5.0, 200.0),
    position(265598, "AAPL", "STK", 120.0, 155.25),
    position(272093, "MSFT", "STK", 10.0, 300.0),
]


def test_positions_fill_opens_closes_and_changes():
    report = diff_items("positions", POSITIONS_BEFORE, POSITIONS_AFTER)

    assert report["kind"] == "positions"
    assert report["summary"] == {"added": 1, "removed": 1, "changed": 1, "unchanged": 2}
    assert report["added"] == [
        {
            "key": {"account": ACCOUNT, "conId": 76792991},
            "label": "TSLA STK DU1234567: added (position 5)",
            "item": POSITIONS_AFTER[1],
        }
    ]
    assert report["removed"] == [
        {
            "key": {"account": ACCOUNT, "conId": 495512557},
            "label": "ESZ6 FUT DU1234567: removed",
            "item": POSITIONS_BEFORE[1],
        }
    ]
    assert report["changed"] == [
        {
            "key": {"account": ACCOUNT, "conId": 265598},
            "label": "AAPL STK DU1234567",
            "changes": [
                {
                    "field": "avgCost",
                    "from": 150.0,
                    "to": 155.25,
                    "delta": 5.25,
                    "label": "AAPL STK DU1234567: avgCost 150.00 -> 155.25 (+5.25)",
                },
                {
                    "field": "position",
                    "from": 100.0,
                    "to": 120.0,
                    "delta": 20.0,
                    "label": "AAPL STK DU1234567: position 100 -> 120 (+20)",
                },
            ],
        }
    ]
    assert report["ignored"] == ["marketPrice", "marketValue", "unrealizedPNL"]
    assert report["tolerance"] == {"abs_tol": 1e-9, "rel_tol": 1e-9}
    aapl = "root['{\"account\": \"DU1234567\", \"conId\": 265598}']"
    assert report["deepdiff"] == {
        "dictionary_item_added": ["root['{\"account\": \"DU1234567\", \"conId\": 76792991}']"],
        "dictionary_item_removed": ["root['{\"account\": \"DU1234567\", \"conId\": 495512557}']"],
        "values_changed": {
            f"{aapl}['avgCost']": {"new_value": 155.25, "old_value": 150.0},
            f"{aapl}['position']": {"new_value": 120.0, "old_value": 100.0},
        },
    }
    assert json.loads(json.dumps(report, allow_nan=False)) == report


def test_positions_table_and_markdown():
    report = diff_items("positions", POSITIONS_BEFORE, POSITIONS_AFTER)

    assert render_table(report) == (
        "change    item                field       from      to    delta\n"
        "--------  ------------------  --------  ------  ------  -------\n"
        "added     TSLA STK DU1234567  position               5\n"
        "removed   ESZ6 FUT DU1234567  position       1\n"
        "changed   AAPL STK DU1234567  avgCost   150.00  155.25    +5.25\n"
        "changed   AAPL STK DU1234567  position     100     120      +20\n"
        "\n"
        "positions: 1 added, 1 removed, 1 changed, 2 unchanged"
    )
    assert render_markdown(report) == (
        "## positions: 1 added, 1 removed, 1 changed, 2 unchanged\n"
        "\n"
        "### Added\n"
        "- TSLA STK DU1234567: added (position 5)\n"
        "\n"
        "### Removed\n"
        "- ESZ6 FUT DU1234567: removed\n"
        "\n"
        "### Changed\n"
        "- AAPL STK DU1234567: avgCost 150.00 -> 155.25 (+5.25)\n"
        "- AAPL STK DU1234567: position 100 -> 120 (+20)"
    )


def test_no_changes_in_every_format():
    report = diff_items("positions", POSITIONS_BEFORE, list(reversed(POSITIONS_BEFORE)))

    assert report["summary"] == {"added": 0, "removed": 0, "changed": 0, "unchanged": 4}
    assert (report["added"], report["removed"], report["changed"], report["deepdiff"]) == ([], [], [], {})
    assert render_table(report) == "positions: 0 added, 0 removed, 0 changed, 4 unchanged"
    assert render_markdown(report) == "## positions: 0 added, 0 removed, 0 changed, 4 unchanged\n\nNo changes."


def test_position_volatile_fields_shown_on_request():
    report = diff_items("positions", POSITIONS_BEFORE, POSITIONS_AFTER, include_volatile=True)

    assert report["ignored"] == []
    assert report["summary"] == {"added": 1, "removed": 1, "changed": 2, "unchanged": 1}
    assert labels(report)["changed"] == [
        "AAPL STK DU1234567: avgCost 150.00 -> 155.25 (+5.25)",
        "AAPL STK DU1234567: position 100 -> 120 (+20)",
        "SPY STK DU1234567: marketPrice 591.12 -> 592 (+0.88)",
        "SPY STK DU1234567: marketValue 2,955.6 -> 2,960 (+4.4)",
        "SPY STK DU1234567: unrealizedPNL 5.6 -> 10 (+4.4)",
    ]


def test_orders_placed_cancelled_and_status_change():
    before = [
        order(111, "Submitted"),
        order(222, "PreSubmitted", orderId=2),
        order(0, "PendingSubmit", orderId=7, clientId=3),
    ]
    after = [
        order(222, "Submitted", orderId=2),
        order(333, "Submitted", orderId=3, action="SELL", qty=100.0, orderType="MKT", lmtPrice=None),
        order(0, "PendingSubmit", orderId=7, clientId=3),
    ]
    report = diff_items("orders", before, after)

    assert report["summary"] == {"added": 1, "removed": 1, "changed": 1, "unchanged": 1}
    assert [e["key"] for e in report["added"]] == [{"permId": 333}]
    assert [e["key"] for e in report["removed"]] == [{"permId": 111}]
    assert report["changed"] == [
        {
            "key": {"permId": 222},
            "label": "BUY 1 AAPL LMT @0.01 (permId 222)",
            "changes": [
                {
                    "field": "status",
                    "from": "PreSubmitted",
                    "to": "Submitted",
                    "delta": None,
                    "label": "BUY 1 AAPL LMT @0.01 (permId 222): status PreSubmitted -> Submitted",
                }
            ],
        }
    ]
    assert labels(report) == {
        "added": ["SELL 100 AAPL MKT (permId 333): added (status Submitted)"],
        "removed": ["BUY 1 AAPL LMT @0.01 (permId 111): removed"],
        "changed": ["BUY 1 AAPL LMT @0.01 (permId 222): status PreSubmitted -> Submitted"],
    }
    assert render_table(report) == (
        "change    item                               field            from         to    delta\n"
        "--------  ---------------------------------  -------  ------------  ---------  -------\n"
        "added     SELL 100 AAPL MKT (permId 333)     status                 Submitted\n"
        "removed   BUY 1 AAPL LMT @0.01 (permId 111)  status      Submitted\n"
        "changed   BUY 1 AAPL LMT @0.01 (permId 222)  status   PreSubmitted  Submitted\n"
        "\n"
        "orders: 1 added, 1 removed, 1 changed, 1 unchanged"
    )


def test_orders_without_perm_id_are_keyed_by_client_and_order_id():
    before = [order(0, "PendingSubmit", orderId=7, clientId=3), order(None, "PendingSubmit", orderId=8, clientId=3)]
    after = [order(None, "PreSubmitted", orderId=7, clientId=3), order(0, "PendingSubmit", orderId=7, clientId=4)]
    report = diff_items("orders", before, after)

    assert [e["key"] for e in report["added"]] == [{"clientId": 4, "orderId": 7}]
    assert [e["key"] for e in report["removed"]] == [{"clientId": 3, "orderId": 8}]
    assert labels(report) == {
        "added": ["BUY 1 AAPL LMT @0.01 (orderId 7, clientId 4): added (status PendingSubmit)"],
        "removed": ["BUY 1 AAPL LMT @0.01 (orderId 8, clientId 3): removed"],
        "changed": [
            "BUY 1 AAPL LMT @0.01 (orderId 7, clientId 3): permId 0 -> null",
            "BUY 1 AAPL LMT @0.01 (orderId 7, clientId 3): status PendingSubmit -> PreSubmitted",
        ],
    }


def test_order_price_in_label_is_the_limit_else_the_stop_price():
    stop = order(5, "Submitted", orderType="STP", lmtPrice=0.0, auxPrice=180.25)
    stop_limit = order(6, "Submitted", orderType="STP LMT", lmtPrice=179.5, auxPrice=180.25)
    report = diff_items("orders", [], [stop, stop_limit])

    assert labels(report)["added"] == [
        "BUY 1 AAPL STP @180.25 (permId 5): added (status Submitted)",
        "BUY 1 AAPL STP LMT @179.5 (permId 6): added (status Submitted)",
    ]


def test_account_cash_moved_with_deltas_and_formatting():
    before = [
        account_value("NetLiquidation", 1003421.17),
        account_value("TotalCashValue", 250000.0),
        account_value("Cushion", 0.4523, ""),
        account_value("DayTradesRemaining", -1, ""),
        account_value("AccountType", "INDIVIDUAL", ""),
        account_value("AccountTime", "14:30", ""),
    ]
    after = [
        account_value("NetLiquidation", 1001880.0),
        account_value("TotalCashValue", 248458.83),
        account_value("Cushion", 0.4519, ""),
        account_value("DayTradesRemaining", 3, ""),
        account_value("AccountType", "INDIVIDUAL", ""),
        account_value("AccountTime", "14:31", ""),
        account_value("ExchangeRate", 1.0834, "EUR"),
    ]
    report = diff_items("account", before, after)

    assert report["summary"] == {"added": 1, "removed": 0, "changed": 4, "unchanged": 2}
    assert report["ignored"] == ["AccountTime"]
    assert report["changed"][2] == {
        "key": {"account": ACCOUNT, "tag": "NetLiquidation", "currency": "USD", "modelCode": ""},
        "label": "NetLiquidation USD DU1234567",
        "changes": [
            {
                "field": "value",
                "from": 1003421.17,
                "to": 1001880.0,
                "delta": -1541.17,
                "label": "NetLiquidation USD DU1234567: 1,003,421.17 -> 1,001,880.00 (-1,541.17)",
            }
        ],
    }
    assert labels(report) == {
        "added": ["ExchangeRate EUR DU1234567: added (1.0834)"],
        "removed": [],
        "changed": [
            "Cushion DU1234567: 0.4523 -> 0.4519 (-0.0004)",
            "DayTradesRemaining DU1234567: -1 -> 3 (+4)",
            "NetLiquidation USD DU1234567: 1,003,421.17 -> 1,001,880.00 (-1,541.17)",
            "TotalCashValue USD DU1234567: 250,000.00 -> 248,458.83 (-1,541.17)",
        ],
    }
    assert render_markdown(report) == (
        "## account: 1 added, 0 removed, 4 changed, 2 unchanged\n"
        "\n"
        "### Added\n"
        "- ExchangeRate EUR DU1234567: added (1.0834)\n"
        "\n"
        "### Changed\n"
        "- Cushion DU1234567: 0.4523 -> 0.4519 (-0.0004)\n"
        "- DayTradesRemaining DU1234567: -1 -> 3 (+4)\n"
        "- NetLiquidation USD DU1234567: 1,003,421.17 -> 1,001,880.00 (-1,541.17)\n"
        "- TotalCashValue USD DU1234567: 250,000.00 -> 248,458.83 (-1,541.17)"
    )

    everything = diff_items("account", before, after, include_volatile=True)
    assert everything["ignored"] == []
    assert everything["summary"] == {"added": 1, "removed": 0, "changed": 5, "unchanged": 1}
    assert labels(everything)["changed"][0] == "AccountTime DU1234567: 14:30 -> 14:31"


def test_volatile_account_items_that_come_and_go_are_left_out():
    before = [account_value("AccountTime", "14:30", "")]
    after = [account_value("AccountTime", "14:31", "", modelCode="M1")]

    quiet = diff_items("account", before, after)
    assert quiet["summary"] == {"added": 0, "removed": 0, "changed": 0, "unchanged": 0}
    assert quiet["deepdiff"] == {}

    loud = diff_items("account", before, after, include_volatile=True)
    assert labels(loud) == {
        "added": ["AccountTime DU1234567 model M1: added (14:31)"],
        "removed": ["AccountTime DU1234567: removed"],
        "changed": [],
    }


def test_executions_added_and_commission_arrives():
    first = execution("0000e0d5.6571d4e7.01.01", "BOT", 100.0, 189.5)
    with_commission = dict(first, commission=1.0, commissionCurrency="USD")
    second = execution("0000e0d5.6571d4e8.01.01", "SLD", 40.0, 190.25)
    report = diff_items("executions", [first], [with_commission, second])

    assert report["summary"] == {"added": 1, "removed": 0, "changed": 1, "unchanged": 0}
    assert report["added"][0]["key"] == {"execId": "0000e0d5.6571d4e8.01.01"}
    assert labels(report) == {
        "added": ["execId 0000e0d5.6571d4e8.01.01 SLD 40 AAPL @190.25: added"],
        "removed": [],
        "changed": [
            "execId 0000e0d5.6571d4e7.01.01 BOT 100 AAPL @189.5: commission null -> 1.00",
            'execId 0000e0d5.6571d4e7.01.01 BOT 100 AAPL @189.5: commissionCurrency "" -> USD',
        ],
    }
    assert [c["delta"] for c in report["changed"][0]["changes"]] == [None, None]


def test_accounts_added():
    report = diff_items("accounts", [{"account": "DU1234567", "paper": True}], [
        {"account": "DU7654321", "paper": True},
        {"account": "DU1234567", "paper": True},
    ])

    assert report["summary"] == {"added": 1, "removed": 0, "changed": 0, "unchanged": 1}
    assert report["added"] == [
        {"key": {"account": "DU7654321"}, "label": "DU7654321: added", "item": {"account": "DU7654321", "paper": True}}
    ]
    assert report["ignored"] == []
    assert render_markdown(report) == (
        "## accounts: 1 added, 0 removed, 0 changed, 1 unchanged\n\n### Added\n- DU7654321: added"
    )


@pytest.mark.parametrize(
    ("old", "new", "changed"),
    [
        (0.3, 0.1 + 0.2, False),
        (100, 100.0, False),
        (189.5, 189.51, True),
        (0.0, 1e-10, False),  # absolute tolerance
        (0.0, 2e-9, True),
        (1_000_000_000.0, 1_000_000_000.5, False),  # relative tolerance
        (1_000_000_000.0, 1_000_000_002.0, True),
        (9_998_999.99, 9_999_000.0, True),  # a cent is seen below 9,999,000 ...
        (10_000_000.0, 10_000_000.01, False),  # ... and lost from 10,000,000
    ],
)
def test_float_tolerance(old, new, changed):
    report = diff_items("positions", [position(1, "X", "STK", 1.0, old)], [position(1, "X", "STK", 1.0, new)])

    assert report["summary"]["changed"] == int(changed)
    assert report["summary"]["unchanged"] == int(not changed)


def test_none_and_number_changes_have_no_delta():
    before = [position(1, "X", "STK", None, 10.0), position(2, "Y", "STK", 5.0, 10.0)]
    after = [position(1, "X", "STK", 5.0, 10.0), position(2, "Y", "STK", None, 10.0)]
    report = diff_items("positions", before, after)

    assert [(e["key"]["conId"], e["changes"]) for e in report["changed"]] == [
        (1, [{"field": "position", "from": None, "to": 5.0, "delta": None,
              "label": "X STK DU1234567: position null -> 5"}]),
        (2, [{"field": "position", "from": 5.0, "to": None, "delta": None,
              "label": "Y STK DU1234567: position 5 -> null"}]),
    ]
    pos_1 = "root['{\"account\": \"DU1234567\", \"conId\": 1}']['position']"
    assert report["deepdiff"]["type_changes"][pos_1] == {
        "old_type": "NoneType",
        "new_type": "float",
        "old_value": None,
        "new_value": 5.0,
    }


def test_field_present_on_one_side_only():
    before = [position(1, "X", "STK", 1.0, 10.0)]
    report = diff_items("positions", before, [position(1, "X", "STK", 1.0, 10.0, note="x")])

    assert report["changed"][0]["changes"] == [
        {"field": "note", "from": None, "to": "x", "delta": None, "label": "X STK DU1234567: note (absent) -> x"}
    ]


def test_integral_float_key_matches_int_key():
    before = [position(265598, "AAPL", "STK", 1.0, 10.0)]
    report = diff_items("positions", before, [position(265598.0, "AAPL", "STK", 2.0, 10.0)])

    assert report["summary"] == {"added": 0, "removed": 0, "changed": 1, "unchanged": 0}
    assert report["changed"][0]["key"] == {"account": ACCOUNT, "conId": 265598}


def test_results_sorted_by_key_whatever_the_input_order():
    accounts = ["DU2", "DU1"]
    after = [position(c, f"S{c}", "STK", 1.0, 1.0, account=a) for a in accounts for c in (10, 9, 100)]
    report = diff_items("positions", [], after)

    assert [(e["key"]["account"], e["key"]["conId"]) for e in report["added"]] == [
        ("DU1", 9), ("DU1", 10), ("DU1", 100), ("DU2", 9), ("DU2", 10), ("DU2", 100),
    ]


def test_markdown_caps_long_groups():
    after = [position(c, f"S{c}", "STK", 1.0, 1.0) for c in range(1, 53)]
    text = render_markdown(diff_items("positions", [], after))

    lines = text.split("\n")
    assert lines[:4] == [
        "## positions: 52 added, 0 removed, 0 changed, 0 unchanged",
        "",
        "### Added",
        "- S1 STK DU1234567: added (position 1)",
    ]
    assert lines[-2:] == ["- S50 STK DU1234567: added (position 1)", "- … and 2 more"]
    assert len(lines) == 3 + 50 + 1


def test_duplicate_key_raises():
    items = [position(1, "X", "STK", 1.0, 1.0), position(2, "Y", "STK", 1.0, 1.0), position(1, "X", "STK", 2.0, 1.0)]
    with pytest.raises(DiffError) as caught:
        diff_items("positions", [], items)

    assert str(caught.value) == 'positions after: items 0 and 2 have the same key {"account": "DU1234567", "conId": 1}'
    assert isinstance(caught.value, BadInputError)
    assert caught.value.to_json()["type"] == "diff_error"


def test_duplicate_order_keys_raise():
    with pytest.raises(DiffError, match=r'^orders before: items 0 and 1 have the same key \{"permId": 5\}$'):
        diff_items("orders", [order(5, "Submitted"), order(5, "Filled", orderId=2)], [])


def test_unknown_kind_raises():
    with pytest.raises(DiffError) as caught:
        diff_items("trades", [], [])

    assert str(caught.value) == (
        "unknown kind 'trades'; expected one of account, accounts, executions, orders, positions"
    )


@pytest.mark.parametrize(
    ("before", "message"),
    [
        (None, "positions before: expected a list of items, got NoneType"),
        ([["DU1", 1]], "positions before: item 0 is not an object"),
        ([{"account": "DU1"}], "positions before: item 0 has no key field 'conId'"),
    ],
)
def test_malformed_payload_raises(before, message):
    with pytest.raises(DiffError) as caught:
        diff_items("positions", before, [])

    assert str(caught.value) == message
