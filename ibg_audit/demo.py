"""`ibg-audit demo`: a one-minute guided tour on the built-in simulated gateway.

It records snapshots, runs a what-if, fills a paper order, records again and prints what changed: the same
library calls the commands make. The order goes to the embedded simulator only: the caller hands in the
endpoint of the simulator it started, and the rails are opened for that call alone, never from the
user's environment.
"""

from __future__ import annotations

from collections.abc import Callable

from .diff import render_markdown
from .dumps import DumpRequest, run_dump
from .gateway import Endpoint
from .history import delta
from .smoke import SmokeRequest, run_smoke
from .store import Store, previous_successful

SIM_RAILS_OPEN = {"ALLOW_ORDERS": "1", "IBKR_PAPER": "1"}


def _net_liq(doc: dict) -> str:
    values = [v for v in doc["data"] if v["tag"] == "NetLiquidation"]
    return ", ".join(f"{v['account']} {v['value']:,.2f} {v['currency']}" for v in values)


def run_demo(endpoint: Endpoint, store: Store, say: Callable[[str], None]) -> int:
    """Walk through the tour, narrating with `say`; returns 0, or the exit code of the step that failed."""
    if not endpoint.simulated:
        raise ValueError("the demo only ever talks to the embedded simulated gateway")

    def dump(kind: str) -> dict:
        doc, code = run_dump(DumpRequest(kind), endpoint, store)
        if code:
            raise _StepFailed(code, f"dump {kind}: {doc['error']['message']}")
        return doc

    try:
        say("==> 1. Snapshot the simulated paper gateway (ibg-audit dump positions / account)")
        positions, account = dump("positions"), dump("account")
        say(f"    {len(positions['data'])} positions recorded as snapshot {positions['snapshot_id']}; "
            f"NetLiquidation: {_net_liq(account)}")

        say("==> 2. What-if first: margin impact of buying 10 AAPL, nothing sent (ibg-audit smoke --whatif)")
        whatif = SmokeRequest(asset="STK", symbol="AAPL", order_type="MKT", qty=10, whatif=True)
        doc, code = run_smoke(whatif, endpoint, store, {})
        if code:
            raise _StepFailed(code, f"what-if: {doc['error']['message']}")
        state = doc["orderState"]
        say(f"    mode {doc['mode']}, transmitted {str(doc['transmitted']).lower()}: initial margin "
            f"{state['initMarginBefore']:,.2f} -> {state['initMarginAfter']:,.2f} "
            f"(+{state['initMarginChange']:,.2f}), commission about {state['maxCommission']:,.2f}")

        say("==> 3. Paper order on the simulator: buy 10 AAPL at market "
            "(what ALLOW_ORDERS=1 IBKR_PAPER=1 ibg-audit smoke ... does)")
        order = SmokeRequest(asset="STK", symbol="AAPL", order_type="MKT", qty=10)
        doc, code = run_smoke(order, endpoint, store, SIM_RAILS_OPEN)
        if code:
            raise _StepFailed(code, f"paper order: {doc['error']['message']}")
        say(f"    mode {doc['mode']}: orderId {doc['orderId']} accepted ({doc['status']}); it fills at the simulator's price")

        say("==> 4. Snapshot again and show what changed (ibg-audit diff last --format markdown)")
        for kind in ("positions", "account"):
            before = previous_successful(store, kind, DumpRequest(kind).args())
            after = dump(kind)
            say(render_markdown(delta(kind, before, store.load_data(before), after["data"])) + "\n")
        say(f"==> Done. Browse what was recorded: ibg-audit browse --db {store.path}")
        return 0
    except _StepFailed as e:
        say(f"Error: {e.message}")
        return e.code


class _StepFailed(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message
