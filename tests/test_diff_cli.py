"""`ibg-audit diff` on snapshots recorded from the simulated gateway with known changes between them:
a fill that closes a position, one that opens a position, one that adds to a position, an order placed and
one cancelled, and the cash those fills moved. Exact added/removed/changed sets and labels, in all three
formats."""

import json

import pytest
from click.testing import CliRunner
from ib_async import LimitOrder, MarketOrder, Stock

from ibg_audit.cli import cli
from ibg_audit.sim import start_in_thread
from sim_fixtures import FIXED_NOW, connected, wait_done


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Snapshots 1-3 (positions, orders, account), the changes, then snapshots 4-6."""
    db = tmp_path_factory.mktemp("diff") / "audit.db"
    with start_in_thread(now=FIXED_NOW) as gw:
        def record(kind):
            result = CliRunner().invoke(cli, ["dump", kind, "--port", str(gw.port), "--db", str(db)])
            assert result.exit_code == 0, result.stdout

        # The CLI runs its own event loop, so each change is made by a short-lived ib_async connection
        # (client id 77 each time: the gateway keeps its orders across reconnects).
        with connected(gw.port) as ib:
            resting = ib.placeOrder(Stock("AAPL", "SMART", "USD"), LimitOrder("BUY", 10, 100.0, account="DU1234567"))
            wait_done(ib, resting)
        for kind in ("positions", "orders", "account"):
            record(kind)
        with connected(gw.port) as ib:
            ib.reqOpenOrders()
            ib.cancelOrder(resting.order)
            placed = ib.placeOrder(Stock("MSFT", "SMART", "USD"), LimitOrder("SELL", 5, 500.0, account="DU7654321"))
            close_short = ib.placeOrder(Stock("IBM", "SMART", "USD"), MarketOrder("BUY", 100, account="DU1234567"))
            open_new = ib.placeOrder(Stock("IBM", "SMART", "USD"), MarketOrder("BUY", 40, account="DU7654321"))
            add_to = ib.placeOrder(Stock("AAPL", "SMART", "USD"), MarketOrder("BUY", 10, account="DU7654321"))
            wait_done(ib, resting, placed, close_short, open_new, add_to)
        for kind in ("positions", "orders", "account"):
            record(kind)
    return db


def diff(db, *args):
    result = CliRunner().invoke(cli, ["diff", *args, "--db", str(db)])
    return result


def test_positions_json(store):
    result = diff(store, "last", "--kind", "positions", "--format", "json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert (report["from"]["snapshot_id"], report["to"]["snapshot_id"], report["kind"]) == (1, 4, "positions")
    assert report["summary"] == {"added": 1, "removed": 1, "changed": 1, "unchanged": 6}
    assert [(a["key"], a["label"]) for a in report["added"]] == [
        ({"account": "DU7654321", "conId": 8314}, "IBM STK DU7654321: added (position 40)"),
    ]
    assert [(r["key"], r["label"], r["item"]["position"]) for r in report["removed"]] == [
        ({"account": "DU1234567", "conId": 8314}, "IBM STK DU1234567: removed", -100),
    ]
    (changed,) = report["changed"]
    # avgCost includes the commission, as IB computes it: (20 * 219.875 + 10 * 227.48 + 1.00) / 30.
    assert changed["key"] == {"account": "DU7654321", "conId": 265598}
    assert [(c["field"], c["from"], c["to"], c["delta"], c["label"]) for c in changed["changes"]] == [
        ("avgCost", 219.875, 222.4433333, 2.5683333,
         "AAPL STK DU7654321: avgCost 219.875 -> 222.4433333 (+2.5683333)"),
        ("position", 20, 30, 10, "AAPL STK DU7654321: position 20 -> 30 (+10)"),
    ]
    assert report["ignored"] == ["marketPrice", "marketValue", "unrealizedPNL"]
    assert report["deepdiff"]["dictionary_item_added"] == ["root['{\"account\": \"DU7654321\", \"conId\": 8314}']"]
    assert report["deepdiff"]["dictionary_item_removed"] == ["root['{\"account\": \"DU1234567\", \"conId\": 8314}']"]


def test_positions_markdown(store):
    result = diff(store, "last", "--kind", "positions", "--format", "markdown")
    assert result.stdout == (
        "## positions: 1 added, 1 removed, 1 changed, 6 unchanged\n"
        "\n"
        "### Added\n"
        "- IBM STK DU7654321: added (position 40)\n"
        "\n"
        "### Removed\n"
        "- IBM STK DU1234567: removed\n"
        "\n"
        "### Changed\n"
        "- AAPL STK DU7654321: avgCost 219.875 -> 222.4433333 (+2.5683333)\n"
        "- AAPL STK DU7654321: position 20 -> 30 (+10)\n"
    )


def test_orders_table(store):
    result = diff(store, "last", "--kind", "orders", "--format", "table")
    assert result.stdout == (
        "change    item                                      field         from         to    delta\n"
        "--------  ----------------------------------------  -------  ---------  ---------  -------\n"
        "added     SELL 5 MSFT LMT @500 (permId 1096850008)  status              Submitted\n"
        "removed   BUY 10 AAPL LMT @100 (permId 1096850007)  status   Submitted\n"
        "\n"
        "orders: 1 added, 1 removed, 0 changed, 2 unchanged\n"
    )


def test_cash_moved_markdown(store):
    result = diff(store, "last", "--kind", "account", "--format", "markdown")
    lines = result.stdout.splitlines()
    assert lines[0] == "## account: 0 added, 0 removed, 22 changed, 4 unchanged"
    # IBM short of 100 covered at 232.00 (+1.00 commission); AAPL 10 bought at 227.48 (+1.00) and
    # IBM 40 at 232.00 (+1.00) in the second account.
    assert "- TotalCashValue USD DU1234567: 858,517.37 -> 835,316.37 (-23,201.00)" in lines
    assert "- NetLiquidation USD DU1234567: 997,382.24 -> 997,381.24 (-1.00)" in lines
    assert "- RealizedPnL USD DU1234567: 845.19 -> 1,774.55 (+929.36)" in lines
    assert "- TotalCashValue USD DU7654321: 956,307.82 -> 944,751.02 (-11,556.80)" in lines


def test_explicit_refs_and_exit_code(store):
    assert diff(store, "1", "4", "--exit-code", "--format", "json").exit_code == 1
    unchanged = diff(store, "4", "4", "--exit-code", "--format", "json")
    assert unchanged.exit_code == 0
    assert json.loads(unchanged.stdout)["summary"] == {"added": 0, "removed": 0, "changed": 0, "unchanged": 8}
    same = json.loads(diff(store, "last~1", "last", "--kind", "orders", "--format", "json").stdout)
    assert (same["from"]["snapshot_id"], same["to"]["snapshot_id"]) == (2, 5)


@pytest.mark.parametrize(
    "args, message",
    [
        (["1", "2"], "Error: snapshot 2 is of kind orders, not positions: diff compares snapshots of one kind\n"),
        (["1", "99"], "Error: no snapshot with id 99\n"),
        (["last~5", "last", "--kind", "orders"],
         "Error: last~5: only 2 successful orders snapshot(s) with arguments {}\n"),
        (["first", "last"], "Error: snapshot reference must be an id, 'last' or 'last~N', got 'first'\n"),
    ],
)
def test_bad_references(store, args, message):
    result = diff(store, *args)
    assert result.exit_code == 2
    assert result.stderr == message
    assert result.stdout == ""
