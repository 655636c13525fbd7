"""The smoke command line: bad input is refused before anything connects or is recorded, and tools/ibg_order_smoke
runs as a real subprocess with --sim (its own simulated gateway on an ephemeral port)."""

import json
import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from ibg_audit.cli import cli
from ibg_audit.errors import BadInputError
from ibg_audit.sim import start_in_thread
from ibg_audit.smoke import SmokeRequest, order_state_json
from test_smoke import AAPL_CONTRACT, AAPL_WHATIF_STATE

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "ibg_order_smoke"
DOCUMENT_KEYS = [
    "kind", "args", "mode", "whatIf", "transmitted", "connected", "ok", "snapshot_id", "started_at", "recorded_at",
    "duration_ms", "gateway", "safety", "contract", "candidates", "order", "orderState", "orderId", "permId",
    "status", "cancelled", "finalStatus", "intent_id", "notes", "data", "error",
]


@pytest.fixture(scope="module")
def gw():
    with start_in_thread() as gateway:
        yield gateway


@pytest.mark.parametrize("args, message", [
    (["--asset", "STK", "--symbol", "AAPL", "--order", "LMT"], "--order LMT needs --limit PRICE"),
    (["--asset", "STK", "--symbol", "AAPL", "--order", "MKT", "--limit", "1"], "--limit only applies to --order LMT"),
    (["--asset", "FUT", "--symbol", "ES", "--order", "MKT"],
     "--asset FUT needs exactly one of --resolve-front-month or --expiry YYYYMM[DD]"),
    (["--asset", "FUT", "--symbol", "ES", "--order", "MKT", "--resolve-front-month", "--expiry", "202612"],
     "--asset FUT needs exactly one of --resolve-front-month or --expiry YYYYMM[DD]"),
    (["--asset", "STK", "--symbol", "AAPL", "--order", "MKT", "--expiry", "202612"],
     "--resolve-front-month and --expiry only apply to --asset FUT"),
    (["--asset", "STK", "--symbol", "AAPL", "--order", "MKT", "--resolve-front-month"],
     "--resolve-front-month and --expiry only apply to --asset FUT"),
    (["--asset", "STK", "--symbol", "AAPL", "--order", "MKT", "--qty", "0"], "--qty must be a number greater than 0, got 0.0"),
    (["--asset", "STK", "--symbol", "AAPL", "--order", "MKT", "--qty", "-2"], "--qty must be a number greater than 0, got -2.0"),
    (["--asset", "STK", "--symbol", "AAPL", "--order", "MKT", "--qty", "nan"], "--qty must be a number greater than 0, got nan"),
    (["--asset", "STK", "--symbol", "AAPL", "--order", "LMT", "--limit", "-0.01"],
     "--limit must be a price greater than 0, got -0.01"),
    (["--asset", "STK", "--symbol", "AAPL", "--order", "LMT", "--limit", "inf"],
     "--limit must be a price greater than 0, got inf"),
    (["--asset", "FUT", "--symbol", "ES", "--order", "MKT", "--expiry", "202613"],
     "--expiry must be YYYYMM or YYYYMMDD, got '202613'"),
    (["--asset", "FUT", "--symbol", "ES", "--order", "MKT", "--expiry", "2026-12"],
     "--expiry must be YYYYMM or YYYYMMDD, got '2026-12'"),
    (["--asset", "STK", "--symbol", " ", "--order", "MKT"], "--symbol must be a symbol such as AAPL, got ' '"),
    (["--asset", "STK", "--symbol", "AAPL", "--order", "MKT", "--account", ""],
     "--account must not be empty or padded, got ''"),
    (["--asset", "STK", "--symbol", "AAPL", "--order", "MKT", "--currency", "US"],
     "--currency must be a three-letter code such as USD, got 'US'"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_is_connected_or_recorded(gw, tmp_path, args, message):
    db = tmp_path / "audit.db"
    seen = len(gw.transcript)
    result = CliRunner().invoke(cli, ["smoke", *args, "--port", str(gw.port), "--db", str(db)],
                                env={"ALLOW_ORDERS": "1", "IBKR_PAPER": "1"})
    assert (result.exit_code, result.stdout, result.stderr) == (2, "", f"Error: {message}\n")
    assert len(gw.transcript) == seen
    assert not db.exists()


def test_request_refuses_values_the_command_line_cannot_produce():
    with pytest.raises(BadInputError, match="--asset must be one of STK, FUT, got 'OPT'"):
        SmokeRequest("OPT", "AAPL", "MKT")
    with pytest.raises(BadInputError, match="--qty must be a number greater than 0, got True"):
        SmokeRequest("STK", "AAPL", "MKT", qty=True)


def test_order_state_unset_sentinels_become_null():
    from ib_async import OrderState

    state = OrderState(status="PreSubmitted", initMarginBefore="1.7976931348623157E308", initMarginChange="12.5",
                       commission=1.7976931348623157e308, minCommission=1.0, commissionCurrency="USD")
    assert order_state_json(state) == {
        "status": "PreSubmitted", "initMarginBefore": None, "initMarginChange": 12.5, "initMarginAfter": None,
        "maintMarginBefore": None, "maintMarginChange": None, "maintMarginAfter": None,
        "equityWithLoanBefore": None, "equityWithLoanChange": None, "equityWithLoanAfter": None,
        "commission": None, "minCommission": 1, "maxCommission": None, "commissionCurrency": "USD",
        "warningText": None,
    }


# --- tools/ibg_order_smoke as a subprocess --------------------------------------------------------


def run_tool(tmp_path, *args, **env):
    clean = {k: v for k, v in os.environ.items() if k not in ("ALLOW_ORDERS", "IBKR_PAPER", "IBKR_PORT")}
    result = subprocess.run([str(TOOL), "--sim", "--db", str(tmp_path / "audit.db"), *args],
                            capture_output=True, text=True, timeout=60, env={**clean, **env})
    return result, json.loads(result.stdout)


def test_tool_whatif(tmp_path):
    result, doc = run_tool(tmp_path, "--asset", "STK", "--symbol", "AAPL", "--order", "LMT", "--limit", "0.01",
                           "--whatif")
    assert (result.returncode, result.stderr) == (0, "")
    assert list(doc) == DOCUMENT_KEYS
    assert {k: doc[k] for k in ("kind", "mode", "whatIf", "transmitted", "connected", "ok", "snapshot_id",
                                "orderId", "cancelled", "data", "error")} == {
        "kind": "smoke", "mode": "whatif", "whatIf": True, "transmitted": False, "connected": True, "ok": True,
        "snapshot_id": 1, "orderId": None, "cancelled": None, "data": [], "error": None}
    assert doc["args"] == {
        "asset": "STK", "symbol": "AAPL", "order": "LMT", "limit": 0.01, "action": "BUY", "qty": 1, "whatif": True,
        "auto_cancel": False, "resolve_front_month": False, "expiry": None, "exchange": None, "currency": "USD",
        "account": None, "tif": "DAY"}
    assert (doc["gateway"]["simulated"], doc["gateway"]["accounts"]) == (True, ["DU1234567", "DU7654321"])
    assert (doc["contract"], doc["orderState"]) == (AAPL_CONTRACT, AAPL_WHATIF_STATE)


def test_tool_blocked_transmit_on_a_live_login(tmp_path):
    result, doc = run_tool(tmp_path, "--scenario", str(ROOT / "ibg_audit" / "sim" / "live_scenario.json"),
                           "--asset", "STK", "--symbol", "AAPL", "--order", "LMT", "--limit", "0.01", "--auto-cancel",
                           ALLOW_ORDERS="1", IBKR_PAPER="1")
    reason = "not every managed account is a paper account (paper ids start with 'D'): 'U7654321'"
    assert (result.returncode, result.stderr) == (10, f"Note: forced simulation, nothing was transmitted: {reason}\n")
    assert (doc["mode"], doc["whatIf"], doc["transmitted"], doc["ok"]) == ("blocked-transmit", True, False, True)
    assert doc["safety"]["reasons"] == [reason]
    assert doc["safety"]["rails"]["managedAccounts"] == {"value": ["U7654321"], "ok": False}
    assert doc["orderState"]["initMarginChange"] is not None


def test_tool_paper_transmit_with_auto_cancel(tmp_path):
    result, doc = run_tool(tmp_path, "--asset", "STK", "--symbol", "AAPL", "--order", "LMT", "--limit", "0.01",
                           "--auto-cancel", ALLOW_ORDERS="1", IBKR_PAPER="1")
    assert (result.returncode, result.stderr) == (0, "")
    assert (doc["mode"], doc["whatIf"], doc["transmitted"], doc["ok"]) == ("paper-transmit", False, True, True)
    # The default scenario's nextValidId is 5; ib_async spends it on the contract details request.
    assert (doc["orderId"], doc["status"], doc["cancelled"], doc["finalStatus"], doc["intent_id"]) == (
        6, "PreSubmitted", True, "Cancelled", 1)
    listing = subprocess.run([str(ROOT / ".venv" / "bin" / "ibg-audit"), "orders-sent", "--db",
                              str(tmp_path / "audit.db"), "--format", "json"],
                             capture_output=True, text=True, timeout=60)
    [row] = json.loads(listing.stdout)
    assert (row["orderId"], row["permId"], row["cancel_status"], row["simulated"]) == (
        6, doc["permId"], "confirmed", True)
