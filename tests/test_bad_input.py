"""Bad input, table-driven: every malformed invocation gives one clear `Error: ...` line on stderr (besides click's
usage lines) and the documented exit code, prints nothing on stdout, sends nothing to the gateway (the simulated
gateway's transcript stays empty: not even a hello) and leaves every file in the store's directory byte for byte
as it was.

Placeholders in the arguments: {db} a store holding snapshots 1 (positions), 2 (accounts), 3 (failed positions);
{port} a running simulated gateway; {tmp} the directory they live in.
"""

import hashlib
import json
import socket

import pytest
from click.testing import CliRunner
from sim_fixtures import FIXED_NOW

from ibg_audit.cli import cli
from ibg_audit.errors import EXIT_BAD_INPUT, EXIT_STORE_ERROR
from ibg_audit.sim import start_in_thread

KINDS = "'accounts', 'positions', 'orders', 'account', 'executions'"
KIND_ARG = "'{accounts|positions|orders|account|executions}'"
DUMP = ["dump", "positions", "--port", "{port}", "--db", "{db}"]
SINCE = "--since must be an ISO-8601 time such as 2026-11-24T13:30:00Z, got "
SMOKE = ["smoke", "--port", "{port}", "--db", "{db}", "--whatif"]
STK = [*SMOKE, "--asset", "STK", "--symbol", "AAPL"]
FUT = [*SMOKE, "--asset", "FUT", "--symbol", "ES", "--order", "LMT", "--limit", "1"]
EXPIRY = "--expiry must be YYYYMM or YYYYMMDD, got "
B, S = EXIT_BAD_INPUT, EXIT_STORE_ERROR

# (id, arguments, extra environment, exit code, the error line)
CASES = [
    # dump
    ("unknown kind", ["dump", "bogus", "--port", "{port}", "--db", "{db}"], {}, B,
     f"Invalid value for {KIND_ARG}: 'bogus' is not one of {KINDS}."),
    ("no kind", ["dump", "--port", "{port}", "--db", "{db}"], {}, B,
     f"Missing argument {KIND_ARG}. Choose from: accounts, positions, orders, account, executions"),
    ("since not a time", ["dump", "executions", "--since", "yesterday", "--port", "{port}", "--db", "{db}"], {}, B,
     SINCE + "'yesterday'"),
    ("since month 13", ["dump", "executions", "--since", "2026-13-01", "--port", "{port}"], {}, B,
     SINCE + "'2026-13-01'"),
    ("since empty", ["dump", "executions", "--since", "", "--port", "{port}"], {}, B, SINCE + "''"),
    ("since hour 25", ["dump", "executions", "--since", "2026-11-24T25:00:00Z", "--port", "{port}"], {}, B,
     SINCE + "'2026-11-24T25:00:00Z'"),
    ("since bad offset", ["dump", "executions", "--since", "2026-11-24T13:00:00+25:00", "--port", "{port}"], {}, B,
     SINCE + "'2026-11-24T13:00:00+25:00'"),
    ("since on positions", [*DUMP, "--since", "2026-01-01"], {}, B, "--since only applies to `dump executions`"),
    ("all on positions", [*DUMP, "--all"], {}, B, "--all only applies to `dump account`"),
    ("port not a number", ["dump", "positions", "--port", "abc", "--db", "{db}"], {}, B,
     "Invalid value for '--port': 'abc' is not a valid integer range."),
    ("port 0", ["dump", "positions", "--port", "0"], {}, B,
     "Invalid value for '--port': 0 is not in the range 1<=x<=65535."),
    ("port 70000", ["dump", "positions", "--port", "70000"], {}, B,
     "Invalid value for '--port': 70000 is not in the range 1<=x<=65535."),
    ("IBKR_PORT not a number", ["dump", "positions", "--db", "{db}"], {"IBKR_PORT": "4002x"}, B,
     "Invalid value for '--port': '4002x' is not a valid integer range."),
    ("negative client id", [*DUMP, "--client-id", "-1"], {}, B,
     "Invalid value for '--client-id': -1 is not in the range 0<=x<=2147483646."),
    ("client id not a number", [*DUMP, "--client-id", "x"], {}, B,
     "Invalid value for '--client-id': 'x' is not a valid integer range."),
    ("IBKR_CLIENT_ID fraction", DUMP, {"IBKR_CLIENT_ID": "1.5"}, B,
     "Invalid value for '--client-id': '1.5' is not a valid integer range."),
    ("client id tries 0", [*DUMP, "--client-id-tries", "0"], {}, B,
     "Invalid value for '--client-id-tries': 0 is not in the range 1<=x<=20."),
    ("client id tries 21", [*DUMP, "--client-id-tries", "21"], {}, B,
     "Invalid value for '--client-id-tries': 21 is not in the range 1<=x<=20."),
    ("timeout 0", [*DUMP, "--timeout", "0"], {}, B,
     "Invalid value for '--timeout': 0.0 is not in the range 0.1<=x<=600."),
    ("timeout negative", [*DUMP, "--timeout", "-5"], {}, B,
     "Invalid value for '--timeout': -5.0 is not in the range 0.1<=x<=600."),
    ("IBKR_TIMEOUT not a number", DUMP, {"IBKR_TIMEOUT": "forever"}, B,
     "Invalid value for '--timeout': 'forever' is not a valid float range."),
    ("scenario without sim", [*DUMP, "--scenario", "{tmp}/bad.json"], {}, B, "--scenario only applies with --sim"),
    ("scenario not JSON", ["dump", "positions", "--sim", "--scenario", "{tmp}/bad.json", "--db", "{db}"], {}, B,
     "Invalid value for --scenario: {tmp}/bad.json: invalid JSON at line 1 column 2: Expecting property name "
     "enclosed in double quotes"),
    ("scenario wrong shape", ["dump", "positions", "--sim", "--scenario", "{tmp}/no_accounts.json", "--db", "{db}"],
     {}, B, "Invalid value for --scenario: {tmp}/no_accounts.json: 'accounts' must name at least one account"),
    ("scenario missing", ["dump", "positions", "--sim", "--scenario", "{tmp}/missing.json", "--db", "{db}"], {}, B,
     "Invalid value for --scenario: scenario file not found: {tmp}/missing.json"),
    ("store not SQLite", ["dump", "positions", "--port", "{port}", "--db", "{tmp}/not_sqlite.db"], {}, S,
     "{tmp}/not_sqlite.db is not a usable SQLite audit store: file is not a database"),
    ("store under a file", ["dump", "positions", "--port", "{port}", "--db", "{tmp}/bad.json/audit.db"], {}, S,
     "cannot create audit store {tmp}/bad.json/audit.db: {tmp}/bad.json is not a directory"),
    ("store is a directory", ["dump", "positions", "--port", "{port}", "--db", "{tmp}"], {}, S,
     "--db {tmp} is a directory, not a database file"),
    ("IBG_AUDIT_DB is a directory", ["dump", "positions", "--port", "{port}"], {"IBG_AUDIT_DB": "{tmp}"}, S,
     "--db {tmp} is a directory, not a database file"),
    ("load missing", [*DUMP, "--load", "{tmp}/missing.json"], {}, B,
     "cannot read --load file {tmp}/missing.json: No such file or directory"),
    ("load not JSON", [*DUMP, "--load", "{tmp}/bad.json"], {}, B,
     "--load file {tmp}/bad.json is not JSON: Expecting property name enclosed in double quotes: line 1 column 2 "
     "(char 1)"),
    ("load other kind", [*DUMP, "--load", "{tmp}/accounts_doc.json"], {}, B,
     "--load file {tmp}/accounts_doc.json holds a dump of kind 'accounts', not 'positions'"),
    ("load failed dump", [*DUMP, "--load", "{tmp}/failed_doc.json"], {}, B,
     "--load file {tmp}/failed_doc.json records a failed dump; only successful dumps can be loaded"),
    ("load not a dump", [*DUMP, "--load", "{tmp}/list.json"], {}, B,
     "--load file {tmp}/list.json is not an ibg-audit dump document (no 'data' list)"),
    ("unknown option", [*DUMP, "--bogus"], {}, B, "No such option '--bogus'. Did you mean '--host'?"),
    ("unknown command", ["bogus"], {}, B, "No such command 'bogus'."),
    # show, snapshots, diff
    ("show id 0", ["show", "0", "--db", "{db}"], {}, B, "Invalid value for 'SNAPSHOT_ID': 0 is not in the range x>=1."),
    ("show id not a number", ["show", "x", "--db", "{db}"], {}, B,
     "Invalid value for 'SNAPSHOT_ID': 'x' is not a valid integer range."),
    ("show unknown id", ["show", "99", "--db", "{db}"], {}, B, "no snapshot with id 99"),
    ("show bad format", ["show", "1", "--format", "csv", "--db", "{db}"], {}, B,
     "Invalid value for '--format': 'csv' is not one of 'json', 'table'."),
    ("show without store", ["show", "1", "--db", "{tmp}/nothere.db"], {}, S,
     "no audit store at {tmp}/nothere.db (record a dump first, or pass --db)"),
    ("snapshots limit 0", ["snapshots", "--limit", "0", "--db", "{db}"], {}, B,
     "Invalid value for '--limit': 0 is not in the range x>=1."),
    ("snapshots unknown kind", ["snapshots", "--kind", "bogus", "--db", "{db}"], {}, B,
     f"Invalid value for '--kind': 'bogus' is not one of {KINDS}, 'smoke'."),
    ("snapshots store not SQLite", ["snapshots", "--db", "{tmp}/not_sqlite.db"], {}, S,
     "{tmp}/not_sqlite.db is not a usable SQLite audit store: file is not a database"),
    ("diff three refs", ["diff", "1", "2", "3", "--db", "{db}"], {}, B, "give `last` or two snapshot references A B"),
    ("diff one ref", ["diff", "1", "--db", "{db}"], {}, B, "give `last` or two snapshot references A B"),
    ("diff bad ref", ["diff", "last~x", "1", "--db", "{db}"], {}, B,
     "snapshot reference must be an id, 'last' or 'last~N', got 'last~x'"),
    ("diff unknown id", ["diff", "1", "99", "--db", "{db}"], {}, B, "no snapshot with id 99"),
    ("diff two kinds", ["diff", "1", "2", "--db", "{db}"], {}, B,
     "snapshot 2 is of kind accounts, not positions: diff compares snapshots of one kind"),
    ("diff failed snapshot", ["diff", "1", "3", "--db", "{db}"], {}, B,
     "snapshot 3 is a failed call (not_connected: connection refused at 127.0.0.1:{closed}: nothing is listening on "
     "that port): nothing to compare"),
    ("diff too far back", ["diff", "last~5", "last", "--kind", "positions", "--db", "{db}"], {}, B,
     "last~5: only 1 successful positions snapshot(s) with arguments {}"),
    ("diff bad format", ["diff", "--format", "csv", "--db", "{db}"], {}, B,
     "Invalid value for '--format': 'csv' is not one of 'table', 'json', 'markdown'."),
    ("diff without store", ["diff", "--db", "{tmp}/nothere.db"], {}, S,
     "no audit store at {tmp}/nothere.db (record a dump first, or pass --db)"),
    # smoke
    ("smoke unknown asset", [*SMOKE, "--asset", "BOND", "--symbol", "X", "--order", "LMT", "--limit", "1"], {}, B,
     "Invalid value for '--asset': 'BOND' is not one of 'STK', 'FUT'."),
    ("smoke no asset", [*SMOKE, "--symbol", "AAPL", "--order", "LMT", "--limit", "1"], {}, B,
     "Missing option '--asset'. Choose from: STK, FUT"),
    ("smoke LMT without limit", [*STK, "--order", "LMT"], {}, B, "--order LMT needs --limit PRICE"),
    ("smoke MKT with limit", [*STK, "--order", "MKT", "--limit", "1"], {}, B, "--limit only applies to --order LMT"),
    ("smoke negative limit", [*STK, "--order", "LMT", "--limit", "-1"], {}, B,
     "--limit must be a price greater than 0, got -1.0"),
    ("smoke limit not a number", [*STK, "--order", "LMT", "--limit", "abc"], {}, B,
     "Invalid value for '--limit': 'abc' is not a valid float."),
    ("smoke limit nan", [*STK, "--order", "LMT", "--limit", "nan"], {}, B,
     "--limit must be a price greater than 0, got nan"),
    ("smoke qty 0", [*STK, "--order", "LMT", "--limit", "1", "--qty", "0"], {}, B,
     "--qty must be a number greater than 0, got 0.0"),
    ("smoke negative qty", [*STK, "--order", "LMT", "--limit", "1", "--qty", "-5"], {}, B,
     "--qty must be a number greater than 0, got -5.0"),
    ("smoke qty not a number", [*STK, "--order", "LMT", "--limit", "1", "--qty", "x"], {}, B,
     "Invalid value for '--qty': 'x' is not a valid float."),
    ("smoke FUT without month", FUT, {}, B,
     "--asset FUT needs exactly one of --resolve-front-month or --expiry YYYYMM[DD]"),
    ("smoke FUT month and front", [*FUT, "--expiry", "202603", "--resolve-front-month"], {}, B,
     "--asset FUT needs exactly one of --resolve-front-month or --expiry YYYYMM[DD]"),
    ("smoke expiry a year", [*FUT, "--expiry", "2026"], {}, B, EXPIRY + "'2026'"),
    ("smoke expiry month 13", [*FUT, "--expiry", "202613"], {}, B, EXPIRY + "'202613'"),
    ("smoke expiry Feb 30", [*FUT, "--expiry", "20260230"], {}, B, EXPIRY + "'20260230'"),
    ("smoke STK with expiry", [*STK, "--order", "LMT", "--limit", "1", "--expiry", "202603"], {}, B,
     "--resolve-front-month and --expiry only apply to --asset FUT"),
    ("smoke empty symbol", [*SMOKE, "--asset", "STK", "--symbol", "", "--order", "LMT", "--limit", "1"], {}, B,
     "--symbol must be a symbol such as AAPL, got ''"),
    ("smoke unknown order type", [*STK, "--order", "STP", "--limit", "1"], {}, B,
     "Invalid value for '--order': 'STP' is not one of 'LMT', 'MKT'."),
    ("smoke unknown tif", [*STK, "--order", "LMT", "--limit", "1", "--tif", "GTX"], {}, B,
     "Invalid value for '--tif': 'GTX' is not one of 'DAY', 'GTC', 'IOC', 'FOK', 'OPG'."),
    ("smoke bad currency", [*STK, "--order", "LMT", "--limit", "1", "--currency", "US"], {}, B,
     "--currency must be a three-letter code such as USD, got 'US'"),
    ("smoke empty account", [*STK, "--order", "LMT", "--limit", "1", "--account", ""], {}, B,
     "--account must not be empty or padded, got ''"),
    ("smoke store not SQLite",
     ["smoke", "--port", "{port}", "--db", "{tmp}/not_sqlite.db", "--whatif", "--asset", "STK", "--symbol", "AAPL",
      "--order", "LMT", "--limit", "1"], {}, S,
     "{tmp}/not_sqlite.db is not a usable SQLite audit store: file is not a database"),
    # doctor, sim
    ("doctor bad format", ["doctor", "--format", "csv", "--port", "{port}", "--db", "{db}"], {}, B,
     "Invalid value for '--format': 'csv' is not one of 'json', 'table'."),
    ("doctor port not a number", ["doctor", "--port", "abc", "--db", "{db}"], {}, B,
     "Invalid value for '--port': 'abc' is not a valid integer range."),
    ("sim unknown fault", ["sim", "--port", "0", "--fault", "bogus"], {}, B,
     "Invalid value for --fault: bad fault 'bogus': expected one of refuse, no-handshake, drop-after:N, delay:MS, "
     "error:REQUEST:CODE, reject-orders[:REASON], pacing, readonly"),
    ("sim fault count not a number", ["sim", "--port", "0", "--fault", "drop-after:x"], {}, B,
     "Invalid value for --fault: bad fault 'drop-after:x': N must be a number"),
    ("sim scenario not JSON", ["sim", "--port", "0", "--scenario", "{tmp}/bad.json"], {}, B,
     "Invalid value for --scenario: {tmp}/bad.json: invalid JSON at line 1 column 2: Expecting property name "
     "enclosed in double quotes"),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A running simulated gateway and a store with three snapshots, plus the malformed files the cases use."""
    tmp = tmp_path_factory.mktemp("bad_input")
    db = tmp / "audit.db"
    with start_in_thread(now=FIXED_NOW) as gw:
        runner = CliRunner()
        docs = [runner.invoke(cli, ["dump", kind, "--port", str(gw.port), "--db", str(db)])
                for kind in ("positions", "accounts")]
        with socket.socket() as unused:
            unused.bind(("127.0.0.1", 0))
            closed = unused.getsockname()[1]
        failed = runner.invoke(cli, ["dump", "positions", "--port", str(closed), "--db", str(db), "--timeout", "2"])
        assert [r.exit_code for r in docs] + [failed.exit_code] == [0, 0, 3]
        (tmp / "bad.json").write_text("{bad")
        (tmp / "no_accounts.json").write_text('{"accounts": [], "contracts": []}')
        (tmp / "not_sqlite.db").write_text("not a database")
        (tmp / "accounts_doc.json").write_text(docs[1].stdout)
        (tmp / "failed_doc.json").write_text(failed.stdout)
        (tmp / "list.json").write_text(json.dumps([1, 2]))
        gw.transcript.clear()
        yield {"tmp": tmp, "db": db, "port": gw.port, "closed": closed, "gw": gw}


def fill(text: str, world: dict) -> str:
    for name in ("tmp", "db", "port", "closed"):
        text = text.replace("{" + name + "}", str(world[name]))
    return text


def test_there_are_at_least_forty_cases():
    assert len(CASES) >= 40
    assert len({case[0] for case in CASES}) == len(CASES)


@pytest.mark.parametrize("name, args, env, exit_code, error", CASES, ids=[c[0] for c in CASES])
def test_bad_input(world, name, args, env, exit_code, error):
    before = fingerprint_dir(world["tmp"])
    result = CliRunner().invoke(
        cli, [fill(a, world) for a in args], env={"IBG_AUDIT_DB": None, **{k: fill(v, world) for k, v in env.items()}}
    )
    assert result.exit_code == exit_code, result.output
    assert isinstance(result.exception, SystemExit)  # never a traceback
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line]
    assert lines[-1] == "Error: " + fill(error, world)
    assert all(line.startswith(("Usage: ", "Try '")) for line in lines[:-1]), lines
    assert world["gw"].transcript == []  # not even a hello reached the gateway
    assert fingerprint_dir(world["tmp"]) == before


def fingerprint_dir(directory) -> dict:
    """Every file under the directory with the hash of its bytes: a new, removed or changed file shows up."""
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}
