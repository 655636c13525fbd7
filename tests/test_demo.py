"""`ibg-audit demo`: the guided tour runs end to end on its own simulated gateway and records what it says."""

from click.testing import CliRunner

from ibg_audit.cli import cli
from ibg_audit.store import open_store


def test_demo_tour(db):
    result = CliRunner().invoke(cli, ["demo", "--db", str(db)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line for line in lines if line.startswith("==> ")] == [
        "==> 1. Snapshot the simulated paper gateway (ibg-audit dump positions / account)",
        "==> 2. What-if first: margin impact of buying 10 AAPL, nothing sent (ibg-audit smoke --whatif)",
        "==> 3. Paper order on the simulator: buy 10 AAPL at market "
        "(what ALLOW_ORDERS=1 IBKR_PAPER=1 ibg-audit smoke ... does)",
        "==> 4. Snapshot again and show what changed (ibg-audit diff last --format markdown)",
        f"==> Done. Browse what was recorded: ibg-audit browse --db {db}",
    ]
    # 10 AAPL at 227.48 is 2,274.80; STK initial margin is 25% of that in the simulator's model.
    assert "    mode whatif, transmitted false: initial margin 94,502.15 -> 95,070.85 (+568.70), " \
           "commission about 1.00" in lines
    assert "- AAPL STK DU1234567: position 400 -> 410 (+10)" in lines
    assert "- TotalCashValue USD DU1234567: 858,517.37 -> 856,241.57 (-2,275.80)" in lines
    with open_store(db) as store:
        kinds = [row["kind"] for row in store.db.query("select kind from snapshots order by id")]
        sent = list(store.db.query("select * from orders_sent"))
    assert kinds == ["positions", "account", "smoke", "smoke", "positions", "account"]
    assert [(o["symbol"], o["action"], o["orderType"], o["totalQuantity"]) for o in sent] == [("AAPL", "BUY", "MKT", 10)]
    assert (sent[0]["simulated"], sent[0]["latest_event"]) == (1, "submitted")
