"""--redact: account ids masked in printed dump and diff output, everywhere and consistently; the store keeps them."""

import json

import pytest
from click.testing import CliRunner

from ibg_audit.cli import cli
from ibg_audit.redact import mask_account, redact

ACCOUNTS = ("DU1234567", "DU7654321")


@pytest.mark.parametrize("account, masked", [
    ("DU1234567", "DU***4567"),
    ("U7654321", "U***4321"),
    ("DUP770846", "DUP***0846"),
    ("DF12345", "DF***2345"),
    ("DU1234", "DU***"),
])
def test_mask_account(account, masked):
    assert mask_account(account) == masked


def test_every_string_and_key_is_masked_consistently():
    doc = {
        "gateway": {"accounts": ["DU1234567", "U7654321"]},
        "data": [{"account": "DU1234567", "symbol": "AAPL", "conId": 265598, "localSymbol": "AAPL  260515C00250000"}],
        "error": {"message": "Account DU1234567 is not managed; neither is DF9876543."},
        "deepdiff": {"root['{\"account\": \"U7654321\", \"conId\": 1}']": 1},
        "label": "AAPL STK DU1234567",
        "isin": "US0378331005",
        "modelCode": "All",
    }
    assert redact(doc) == {
        "gateway": {"accounts": ["DU***4567", "U***4321"]},
        "data": [{"account": "DU***4567", "symbol": "AAPL", "conId": 265598, "localSymbol": "AAPL  260515C00250000"}],
        "error": {"message": "Account DU***4567 is not managed; neither is DF***6543."},
        "deepdiff": {"root['{\"account\": \"U***4321\", \"conId\": 1}']": 1},
        "label": "AAPL STK DU***4567",
        "isin": "US0378331005",  # 10 digits: not an account id
        "modelCode": "All",
    }


def test_an_account_field_of_unusual_shape_is_masked_too():
    assert redact({"account": "X12", "note": "X12 and X123"}) == {"account": "X***", "note": "X*** and X123"}


def test_input_is_not_modified():
    doc = {"account": "DU1234567"}
    redact(doc)
    assert doc == {"account": "DU1234567"}


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_dump_redact_masks_the_output_and_records_the_real_ids(sim, db):
    plain = invoke("dump", "positions", "--port", sim.port, "--db", db, "--no-record")
    masked = invoke("dump", "positions", "--port", sim.port, "--db", db, "--redact")
    assert masked.exit_code == 0
    doc = json.loads(masked.stdout)
    assert doc["gateway"]["accounts"] == ["DU***4567", "DU***4321"]
    assert {p["account"] for p in doc["data"]} == {"DU***4567", "DU***4321"}
    assert not any(a in masked.stdout for a in ACCOUNTS)
    # apart from the ids (and timing), the redacted document is the plain one
    expected = json.loads(plain.stdout)
    for volatile in ("snapshot_id", "started_at", "recorded_at", "duration_ms"):
        expected.pop(volatile), doc.pop(volatile)
    assert doc == redact(expected)
    shown = invoke("show", "1", "--db", db)
    assert json.loads(shown.stdout)["gateway"]["accounts"] == list(ACCOUNTS)


@pytest.mark.parametrize("fmt", ["json", "table", "markdown"])
def test_diff_redact(sim, db, tmp_path, fmt):
    first = json.loads(invoke("dump", "positions", "--port", sim.port, "--db", db).stdout)
    changed = dict(first, data=[dict(p, position=p["position"] + 5) if p["account"] == "DU7654321" else p
                                for p in first["data"]])
    (tmp_path / "changed.json").write_text(json.dumps(changed))
    assert invoke("dump", "positions", "--load", tmp_path / "changed.json", "--db", db).exit_code == 0
    plain = invoke("diff", "last", "--db", db, "--format", fmt)
    masked = invoke("diff", "last", "--db", db, "--format", fmt, "--redact")
    assert masked.exit_code == 0
    assert "DU7654321" in plain.stdout
    assert not any(a in masked.stdout for a in ACCOUNTS)
    assert masked.stdout == plain.stdout.replace("DU7654321", "DU***4321").replace("DU1234567", "DU***4567")
