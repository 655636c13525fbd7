"""The safety rails end to end: every cell of whatif x ALLOW_ORDERS x IBKR_PAPER x port x accounts runs the real
`smoke` command (in-process, real sockets) against the simulated gateway. Whether an order went out for execution
is read from the simulator's transcript, not from our JSON: it must happen in exactly the allowed cells.

Live ports. A test cannot own 127.0.0.1:4001 or :7496 on every machine (a real gateway or TWS may hold them), so
for those cells the command is run with `--port 4001` / `--port 7496` exactly as a user would, and the `dial`
fixture redirects only the TCP connect inside ib_async (Connection.connectAsync) to the simulator. Everything above
the socket - the Endpoint, the port rail, the JSON, the audit row - sees the live port.
"""

import json
import sqlite3

import pytest
from click.testing import CliRunner
from ib_async.connection import Connection

from ibg_audit.cli import cli
from ibg_audit.sim import start_in_thread

FLAG_VALUES = [None, "", "0", "1", "true", " 1"]
FLAG_IDS = ["unset", "empty", "0", "1", "true", "space1"]
LIVE_PORTS = (4001, 7496)


@pytest.fixture(scope="module")
def gateways():
    """One simulated gateway per login kind for the whole module: paper (default scenario) and live."""
    with start_in_thread() as paper, start_in_thread("ibg_audit/sim/live_scenario.json") as live:
        yield {"paper": paper, "live": live}


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return tmp_path_factory.mktemp("rails") / "audit.db"


@pytest.fixture
def dial(monkeypatch):
    """port -> port actually dialled; ports not in it are dialled as given."""
    routes = {}
    connect = Connection.connectAsync

    async def redirected(self, host, port):
        assert host == "127.0.0.1"
        return await connect(self, host, routes.get(port, port))

    monkeypatch.setattr(Connection, "connectAsync", redirected)
    return routes


def smoke(db, port, env, *extra):
    args = ["smoke", "--asset", "STK", "--symbol", "AAPL", "--order", "LMT", "--limit", "0.01", "--auto-cancel",
            "--port", str(port), "--db", str(db), "--timeout", "5", *extra]
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    return result, json.loads(result.stdout)


@pytest.mark.parametrize("accounts", ["paper", "live"])
@pytest.mark.parametrize("port", ["sim", *LIVE_PORTS])
@pytest.mark.parametrize("ibkr_paper", FLAG_VALUES, ids=FLAG_IDS)
@pytest.mark.parametrize("allow_orders", FLAG_VALUES, ids=FLAG_IDS)
@pytest.mark.parametrize("whatif", [True, False], ids=["whatif", "no-whatif"])
def test_rail_cell(gateways, db, dial, whatif, allow_orders, ibkr_paper, port, accounts):
    gw = gateways[accounts]
    if port == "sim":
        port = gw.port
    else:
        dial[port] = gw.port
    allowed = not whatif and allow_orders == "1" and ibkr_paper == "1" and port not in LIVE_PORTS \
        and accounts == "paper"
    gw.transcript.clear()  # the previous cells' calls are done: the transcript now covers this call only

    result, doc = smoke(db, port, {"ALLOW_ORDERS": allow_orders, "IBKR_PAPER": ibkr_paper},
                        *(["--whatif"] if whatif else []))

    # The gateway's own record: one placeOrder per call, transmitted for execution only in the allowed cell.
    placed = gw.placed_orders(transmit_only=False)
    assert len(placed) == 1 and placed[0].what_if is not allowed
    assert len(gw.placed_orders(transmit_only=True)) == (1 if allowed else 0)

    mode = "whatif" if whatif else "paper-transmit" if allowed else "blocked-transmit"
    assert (result.exit_code, doc["mode"], doc["ok"]) == (0 if mode != "blocked-transmit" else 10, mode, True)
    assert (doc["whatIf"], doc["transmitted"]) == (not allowed, allowed)
    assert doc["gateway"]["port"] == port
    assert doc["safety"]["rails"]["port"] == {"value": port, "ok": port not in LIVE_PORTS}
    assert doc["safety"]["rails"]["ALLOW_ORDERS"] == {"value": allow_orders, "ok": allow_orders == "1"}
    assert doc["safety"]["rails"]["IBKR_PAPER"] == {"value": ibkr_paper, "ok": ibkr_paper == "1"}
    assert doc["safety"]["rails"]["managedAccounts"]["ok"] is (accounts == "paper")
    if mode == "blocked-transmit":
        assert doc["safety"]["reasons"] and doc["orderState"]["initMarginChange"] is not None
        assert doc["notes"] == [
            "forced simulation: a safety rail refused the transmit (see safety.reasons)",
            "--auto-cancel: nothing to cancel, no order was transmitted",
        ]
    if allowed:
        assert (doc["status"], doc["cancelled"], doc["finalStatus"]) == ("PreSubmitted", True, "Cancelled")
        assert doc["permId"] not in {o.perm_id for o in gw.state.open_orders.values()}
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "SELECT mode, transmitted, port, allow_orders, ibkr_paper FROM smoke_calls WHERE snapshot_id = ?",
            [doc["snapshot_id"]],
        ).fetchone()
    conn.close()
    assert row == (mode, int(allowed), port, allow_orders, ibkr_paper)
