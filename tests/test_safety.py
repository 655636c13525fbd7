import itertools
import json
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ibg_audit.safety import LIVE_PORTS, MODES, PAPER_PORTS, Decision, decide, is_paper_account

UNSET = object()  # marks an environment variable that is not set at all
ENV_VALUES = [UNSET, "", "0", "1", "true", " 1"]
PORTS = [4002, 7497, 4001, 7496, 5555]
ACCOUNTS = {
    "paper": ["DU1234567"],
    "live": ["U1234567"],
    "mixed": ["DU1234567", "U7654321"],
    "none": None,
}


def make_env(allow, paper):
    env = {"HOME": "/home/user"}
    if allow is not UNSET:
        env["ALLOW_ORDERS"] = allow
    if paper is not UNSET:
        env["IBKR_PAPER"] = paper
    return env


def expected_mode(whatif, allow, paper, port, accounts):
    """The rules of issue 4 written out literally, independently of the implementation."""
    if whatif:
        return "whatif"
    if allow == "1" and paper == "1" and port not in (4001, 7496) and accounts == "paper":
        return "paper-transmit"
    return "blocked-transmit"


MATRIX = list(itertools.product([True, False], ENV_VALUES, ENV_VALUES, PORTS, ACCOUNTS))


def cell_id(cell):
    whatif, allow, paper, port, accounts = cell
    show = lambda v: "unset" if v is UNSET else repr(v)  # noqa: E731
    return f"whatif={whatif}-ALLOW_ORDERS={show(allow)}-IBKR_PAPER={show(paper)}-port={port}-{accounts}"


@pytest.mark.parametrize("cell", MATRIX, ids=[cell_id(c) for c in MATRIX])
def test_matrix(cell):
    whatif, allow, paper, port, accounts = cell
    decision = decide(
        whatif=whatif,
        env=make_env(allow, paper),
        port=port,
        managed_accounts=ACCOUNTS[accounts],
        target_account=None,
    )
    mode = expected_mode(*cell)
    assert decision.mode == mode
    assert decision.transmit is (mode == "paper-transmit")
    assert [rail["ok"] for rail in decision.rails.values()] == [
        allow == "1",
        paper == "1",
        port not in (4001, 7496),
        accounts == "paper",
        True,
    ]
    # One reason per failed rail, and none at all for a what-if (nothing was refused).
    failed = sum(not rail["ok"] for rail in decision.rails.values())
    assert len(decision.reasons) == (0 if whatif else failed)


def test_matrix_has_exactly_the_allowed_cells():
    allowed = [c for c in MATRIX if expected_mode(*c) == "paper-transmit"]
    assert [(port, accounts) for _, _, _, port, accounts in allowed] == [
        (4002, "paper"),
        (7497, "paper"),
        (5555, "paper"),
    ]


def test_every_rail_failing_gives_every_reason_in_rail_order():
    decision = decide(
        whatif=False,
        env={"IBKR_PAPER": "true"},
        port=4001,
        managed_accounts=["DU1234567", "U7654321"],
        target_account="U7654321",
    )
    assert decision.reasons == [
        "ALLOW_ORDERS is unset, not exactly '1'",
        "IBKR_PAPER is 'true', not exactly '1'",
        "port 4001 is the IB Gateway live port",
        "not every managed account is a paper account (paper ids start with 'D'): 'U7654321'",
        "target account 'U7654321' is not a paper account (paper ids start with 'D')",
    ]


def test_blocked_to_json():
    decision = decide(
        whatif=False,
        env={"ALLOW_ORDERS": " 1", "IBKR_PAPER": "1"},
        port=7496,
        managed_accounts=None,
        target_account="DU1234567",
    )
    assert decision.to_json() == {
        "mode": "blocked-transmit",
        "transmit": False,
        "rails": {
            "ALLOW_ORDERS": {"value": " 1", "ok": False},
            "IBKR_PAPER": {"value": "1", "ok": True},
            "port": {"value": 7496, "ok": False},
            "managedAccounts": {"value": None, "ok": False},
            "account": {"value": "DU1234567", "ok": False},
        },
        "reasons": [
            "ALLOW_ORDERS is ' 1', not exactly '1'",
            "port 7496 is the TWS live port",
            "the gateway's managed accounts could not be determined",
            "target account 'DU1234567' is not one of the gateway's managed accounts",
        ],
    }


def test_paper_transmit_to_json():
    decision = decide(
        whatif=False,
        env={"ALLOW_ORDERS": "1", "IBKR_PAPER": "1"},
        port=4002,
        managed_accounts=["DU1234567", "DUP770846"],
        target_account="DUP770846",
    )
    assert decision.to_json() == {
        "mode": "paper-transmit",
        "transmit": True,
        "rails": {
            "ALLOW_ORDERS": {"value": "1", "ok": True},
            "IBKR_PAPER": {"value": "1", "ok": True},
            "port": {"value": 4002, "ok": True},
            "managedAccounts": {"value": ["DU1234567", "DUP770846"], "ok": True},
            "account": {"value": "DUP770846", "ok": True},
        },
        "reasons": [],
    }


def test_whatif_reports_rails_but_no_reasons():
    decision = decide(
        whatif=True, env={"ALLOW_ORDERS": "0"}, port=4001, managed_accounts=["U1234567"], target_account=None
    )
    assert decision.to_json() == {
        "mode": "whatif",
        "transmit": False,
        "rails": {
            "ALLOW_ORDERS": {"value": "0", "ok": False},
            "IBKR_PAPER": {"value": None, "ok": False},
            "port": {"value": 4001, "ok": False},
            "managedAccounts": {"value": ["U1234567"], "ok": False},
            "account": {"value": None, "ok": True},
        },
        "reasons": [],
    }


def test_no_managed_accounts_is_not_paper():
    decision = decide(
        whatif=False, env={"ALLOW_ORDERS": "1", "IBKR_PAPER": "1"}, port=4002, managed_accounts=[], target_account=None
    )
    assert decision.mode == "blocked-transmit"
    assert decision.reasons == ["the gateway reported no managed accounts"]


def test_target_account_not_managed():
    decision = decide(
        whatif=False,
        env={"ALLOW_ORDERS": "1", "IBKR_PAPER": "1"},
        port=4002,
        managed_accounts=["DU1234567"],
        target_account="DU7654321",
    )
    assert decision.mode == "blocked-transmit"
    assert decision.reasons == ["target account 'DU7654321' is not one of the gateway's managed accounts"]


ODD_VALUES = [
    1,
    1.0,
    True,
    b"1",
    ["1"],
    "１",  # fullwidth digit one
    "1\n",
    "\t1",
    "1\x00",
    "01",
    "yes",
    "1 ",
    "\udcff",  # lone surrogate, as os.environ gives for undecodable bytes
    "1" * 100_000,
    type("Str", (str,), {})("1"),  # a str subclass is not the plain "1" the user typed
]


@pytest.mark.parametrize("value", ODD_VALUES, ids=[f"{type(v).__name__}-{v!r:.20}" for v in ODD_VALUES])
def test_odd_env_values_mean_no_and_stay_serialisable(value):
    decision = decide(
        whatif=False,
        env={"ALLOW_ORDERS": value, "IBKR_PAPER": "1"},
        port=4002,
        managed_accounts=["DU1234567"],
        target_account=None,
    )
    assert decision.mode == "blocked-transmit"
    assert [rail["ok"] for rail in decision.rails.values()] == [False, True, True, True, True]
    assert len(decision.reasons) == 1
    assert decision.reasons[0].startswith("ALLOW_ORDERS is ")
    assert len(decision.reasons[0]) < 200
    json.dumps(decision.to_json(), ensure_ascii=False).encode("utf-8")


@pytest.mark.parametrize(
    ("value", "reason", "shown"),
    [
        ("", "ALLOW_ORDERS is '', not exactly '1'", ""),
        ("1\n", "ALLOW_ORDERS is '1\\n', not exactly '1'", "1\n"),
        (b"1", "ALLOW_ORDERS is a bytes value, not exactly '1'", "<bytes>"),
        (1, "ALLOW_ORDERS is 1, not exactly '1'", 1),
        ("\udcff", "ALLOW_ORDERS is '\\udcff', not exactly '1'", "\\udcff"),
        ("x" * 65, f"ALLOW_ORDERS is {'x' * 64!r}... (65 characters), not exactly '1'", "x" * 64 + "..."),
    ],
)
def test_odd_values_are_shown_escaped(value, reason, shown):
    decision = decide(whatif=False, env={"ALLOW_ORDERS": value}, port=4002, managed_accounts=None, target_account=None)
    assert decision.reasons[0] == reason
    assert decision.rails["ALLOW_ORDERS"]["value"] == shown


@pytest.mark.parametrize("port", ["4002", 4002.0, None, True])
def test_port_that_is_not_an_int_means_no(port):
    decision = decide(
        whatif=False,
        env={"ALLOW_ORDERS": "1", "IBKR_PAPER": "1"},
        port=port,
        managed_accounts=["DU1234567"],
        target_account=None,
    )
    assert decision.mode == "blocked-transmit"
    assert decision.rails["port"]["ok"] is False


@pytest.mark.parametrize(
    ("account", "paper"),
    [
        ("DU1234567", True),
        ("DUP770846", True),
        ("DF1234567", True),
        ("D1", True),
        ("D", False),
        ("U1234567", False),
        ("F1234567", False),
        ("du1234567", False),
        ("Du1234567", False),
        (" DU1234567", False),
        ("DU1234567 ", False),
        ("DU1234567\n", False),
        ("DU 1234567", False),
        ("DU-1234567", False),
        ("DÜ1234567", False),
        ("DU１２３", False),  # fullwidth digits are not ASCII
        ("", False),
        (None, False),
        (b"DU1234567", False),
    ],
)
def test_is_paper_account(account, paper):
    assert is_paper_account(account) is paper


def test_constants():
    assert MODES == ("whatif", "blocked-transmit", "paper-transmit")
    assert dict(LIVE_PORTS) == {4001: "IB Gateway live", 7496: "TWS live"}
    assert dict(PAPER_PORTS) == {4002: "IB Gateway paper", 7497: "TWS paper"}


def test_decision_modes_are_the_documented_ones():
    assert {
        decide(whatif=w, env=make_env(a, p), port=4002, managed_accounts=["DU1"], target_account=None).mode
        for w, a, p in itertools.product([True, False], ENV_VALUES, ENV_VALUES)
    } == set(MODES)


# --- property: transmit exactly when every rail is literally satisfied ---------------------------------------

PAPER_CHARS = string.ascii_uppercase + string.digits


def oracle_paper(account):
    return (
        isinstance(account, str)
        and len(account) >= 2
        and account[0] == "D"
        and all(ch in PAPER_CHARS for ch in account[1:])
    )


def mostly(good, bad):
    """Draw from ``good`` four times in five, so that every rail holds together often enough to matter."""
    return st.integers(min_value=0, max_value=4).flatmap(lambda n: good if n else bad)


NEAR_ONE = ["", "0", " 1", "1 ", "01", "1\n", "true", "yes", "１"]
env_value = mostly(st.just("1"), st.one_of(st.none(), st.sampled_from(NEAR_ONE), st.text(max_size=8)))
paper_id = st.text(alphabet=PAPER_CHARS, min_size=1, max_size=9).map(lambda tail: "D" + tail)
not_paper_id = st.one_of(
    st.text(alphabet=string.digits, min_size=1, max_size=8).map(lambda tail: "U" + tail),
    st.sampled_from(["D", "du123", "Du123", "DUp770846", "DU123 ", " DU123", "DU\n", "DU１", "DÜ123", ""]),
    st.text(max_size=10),
)
account_id = st.one_of(paper_id, not_paper_id)
port_number = mostly(
    st.one_of(st.sampled_from(sorted(PAPER_PORTS)), st.integers(min_value=0, max_value=65535)),
    st.sampled_from(sorted(LIVE_PORTS)),
)
managed = mostly(
    st.lists(paper_id, min_size=1, max_size=4),
    st.one_of(st.none(), st.just([]), st.lists(account_id, min_size=1, max_size=4)),
)


@settings(max_examples=500)
@given(
    whatif=mostly(st.just(False), st.just(True)),
    allow=env_value,
    paper=env_value,
    port=port_number,
    accounts=managed,
    data=st.data(),
)
def test_transmit_iff_every_rail_holds(whatif, allow, paper, port, accounts, data):
    own = st.sampled_from(accounts) if accounts else st.none()
    target = data.draw(mostly(st.one_of(st.none(), own), account_id), label="target")
    env = {name: value for name, value in (("ALLOW_ORDERS", allow), ("IBKR_PAPER", paper)) if value is not None}
    decision = decide(whatif=whatif, env=env, port=port, managed_accounts=accounts, target_account=target)

    target_ok = target is None or (oracle_paper(target) and accounts is not None and target in accounts)
    allowed = (
        not whatif
        and allow == "1"
        and paper == "1"
        and port not in (4001, 7496)
        and accounts is not None
        and len(accounts) > 0
        and all(oracle_paper(a) for a in accounts)
        and target_ok
    )
    assert isinstance(decision, Decision)
    assert decision.transmit is allowed
    assert decision.mode == ("whatif" if whatif else "paper-transmit" if allowed else "blocked-transmit")
    assert (decision.reasons == []) is (whatif or allowed)
    json.dumps(decision.to_json(), ensure_ascii=False).encode("utf-8")
