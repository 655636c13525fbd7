"""Command line: parse options, call the library, render, exit with the documented code.

Kept thin on purpose: logic lives in the library modules, which raise typed errors (errors.py).
Commands that do not talk to a gateway must not import ib_async (start-up time), so gateway
modules are imported inside the commands that need them.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from pathlib import Path

import click

from .errors import EXIT_BAD_INPUT, EXIT_CHANGES, IbgAuditError
from .redact import redact
from .render import default_format, document_text, format_option, render_rows

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4002
DEFAULT_CLIENT_ID = 9001
DEFAULT_TIMEOUT = 10.0


class RequiredChoice(click.Choice):
    """click.Choice whose message for a missing value fits on the one error line (click lists one per line)."""

    def get_missing_message(self, param, ctx) -> str:
        return "Choose from: " + ", ".join(map(str, self.choices))


def default_db_path() -> Path:
    """IBG_AUDIT_DB wins (tools/ wrappers set it to the project's data/audit.db); else per-user data dir."""
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "ibg-audit" / "audit.db"


def handle_errors(fn):
    """Library errors become one 'Error: ...' line and their exit code, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except IbgAuditError as e:
            click.echo(f"Error: {e.message}", err=True)
            sys.exit(e.exit_code)

    return wrapper


def connection_options(fn):
    """--host/--port/--client-id/--timeout (with IBKR_* env vars) and --sim/--scenario."""
    options = [
        click.option("--host", envvar="IBKR_HOST", default=DEFAULT_HOST, show_default=True,
                     help="Gateway host [env: IBKR_HOST]."),
        click.option("--port", envvar="IBKR_PORT", type=click.IntRange(1, 65535), default=DEFAULT_PORT,
                     show_default=True, help="Gateway API port [env: IBKR_PORT]; 4002 = paper IB Gateway."),
        click.option("--client-id", envvar="IBKR_CLIENT_ID", type=click.IntRange(0, 2**31 - 2),
                     default=DEFAULT_CLIENT_ID, show_default=True, help="API client id [env: IBKR_CLIENT_ID]."),
        click.option("--client-id-tries", envvar="IBKR_CLIENT_ID_TRIES", type=click.IntRange(1, 20), default=3,
                     show_default=True,
                     help="When the client id is in use (IB error 326), try this many ids counting up "
                          "[env: IBKR_CLIENT_ID_TRIES]."),
        click.option("--timeout", envvar="IBKR_TIMEOUT", type=click.FloatRange(0.1, 600), default=DEFAULT_TIMEOUT,
                     show_default=True, help="Seconds for the whole gateway conversation [env: IBKR_TIMEOUT]."),
        click.option("--sim", is_flag=True,
                     help="Run against the built-in simulated IB Gateway (in-process, ephemeral port)."),
        click.option("--scenario", type=click.Path(dir_okay=False, path_type=Path),
                     help="Scenario file for --sim (default: the packaged paper-account scenario)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def store_options(fn):
    fn = click.option("--no-record", is_flag=True, help="Do not record this call in the audit store.")(fn)
    fn = click.option("--db", "db_path", envvar="IBG_AUDIT_DB", type=click.Path(path_type=Path),
                      help="Audit store file [env: IBG_AUDIT_DB; default: ~/.local/share/ibg-audit/audit.db].")(fn)
    return fn


def redact_option(fn):
    return click.option("--redact", "redact_output", is_flag=True,
                        help="Mask account ids in the output for sharing (DU1234567 -> DU***4567); "
                             "the audit store keeps them.")(fn)


def read_store_option(fn):
    return click.option("--db", "db_path", envvar="IBG_AUDIT_DB", type=click.Path(path_type=Path),
                        help="Audit store file [env: IBG_AUDIT_DB].")(fn)


def open_store_for(db_path: Path | None, *, create: bool = True):
    from .store import open_store

    return open_store(db_path or default_db_path(), create=create)


@contextlib.contextmanager
def gateway_endpoint(host, port, client_id, client_id_tries, timeout, sim, scenario):
    """The Endpoint to talk to; with --sim, a simulated gateway runs on a background thread meanwhile."""
    from .gateway import Endpoint, quiet_ib_async_logging

    quiet_ib_async_logging()
    if scenario and not sim:
        raise click.UsageError("--scenario only applies with --sim")
    if not sim:
        yield Endpoint(host, port, client_id, timeout, client_id_tries)
        return
    from .sim import ScenarioError, load_scenario, start_in_thread

    try:
        loaded = load_scenario(scenario) if scenario else None
    except ScenarioError as e:
        raise click.BadParameter(str(e), param_hint="--scenario") from None
    with start_in_thread(scenario=loaded, port=0) as gw:
        yield Endpoint("127.0.0.1", gw.port, client_id, timeout, client_id_tries, simulated=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ibg-audit")
def cli():
    """ibg-audit: look at an IB Gateway, test order logic safely, and see what changed.

    Every dump and smoke call prints one JSON document and is recorded in an SQLite audit store.
    """


@cli.command()
@click.argument("kind", type=RequiredChoice(["accounts", "positions", "orders", "account", "executions"]))
@click.option("--all", "all_values", is_flag=True, help="account: every value the gateway sends, not only the key figures.")
@click.option("--since", help="executions: only those at or after this ISO-8601 time (Z or offset; naive = UTC).")
@click.option("--load", "load_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Record a document printed earlier by `dump` instead of asking the gateway.")
@click.option("--diff", "with_delta", is_flag=True,
              help="Add a `delta` object: what changed since the previous snapshot of this kind and arguments.")
@redact_option
@connection_options
@store_options
@handle_errors
def dump(kind, all_values, since, load_file, with_delta, redact_output, host, port, client_id, client_id_tries, timeout, sim,
         scenario, db_path, no_record):
    """Print one JSON document with the gateway's KIND and record it.

    KIND is accounts, positions, orders (every open order, all client ids), account (key figures; --all for
    every value) or executions (--since ISO-8601). Connects read-only.
    """
    from .dumps import DumpRequest, finish, load_dump_file, parse_since, run_dump

    if all_values and kind != "account":
        raise click.UsageError("--all only applies to `dump account`")
    if since is not None and kind != "executions":
        raise click.UsageError("--since only applies to `dump executions`")
    request = DumpRequest(kind, all_values=all_values, since=parse_since(since) if since is not None else None)
    store = open_store_for(db_path) if (with_delta or not no_record) else None
    record_to = None if no_record else store
    delta_from = store if with_delta else None
    try:
        if load_file:
            envelope, data = load_dump_file(load_file, kind)
            doc, code = finish(envelope, data, record_to, delta_from=delta_from), 0
        else:
            with gateway_endpoint(host, port, client_id, client_id_tries, timeout, sim, scenario) as endpoint:
                doc, code = run_dump(request, endpoint, record_to, delta_from=delta_from)
    finally:
        if store is not None:
            store.close()
    click.echo(document_text(redact(doc) if redact_output else doc), nl=False)
    sys.exit(code)


@cli.command()
@click.option("--kind", type=click.Choice(["accounts", "positions", "orders", "account", "executions", "smoke"]),
              help="Only snapshots of this kind.")
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True, help="How many, newest first.")
@format_option()
@read_store_option
@handle_errors
def snapshots(kind, limit, fmt, db_path):
    """List recorded snapshots, newest first."""
    with open_store_for(db_path, create=False) as store:
        rows = store.list_snapshots(kind=kind, limit=limit)
    click.echo(render_rows(rows, fmt or default_format()), nl=False)


@cli.command()
@click.argument("snapshot_id", type=click.IntRange(1))
@click.option("--format", "fmt", type=click.Choice(["json", "table"]), default="json", show_default=True,
              help="json: the document byte for byte as printed; table: its data items.")
@read_store_option
@handle_errors
def show(snapshot_id, fmt, db_path):
    """Print a recorded snapshot exactly as it was printed."""
    with open_store_for(db_path, create=False) as store:
        doc = store.load_document(snapshot_id)
    if fmt == "json":
        click.echo(document_text(doc), nl=False)
    else:
        data = doc.get("data")
        click.echo(render_rows(data if isinstance(data, list) else [data], "table"), nl=False)


@cli.command()
@click.option("--port", type=click.IntRange(0, 65535), default=4002, show_default=True,
              help="Port to listen on (127.0.0.1); 0 picks a free one.")
@click.option("--scenario", type=click.Path(dir_okay=False, path_type=Path),
              help="Scenario file (default: the packaged paper-account scenario).")
@click.option("--fault", "faults", multiple=True,
              help="Inject a fault (repeatable): refuse, no-handshake, drop-after:N, delay:MS, "
                   "error:REQUEST:CODE, reject-orders, pacing, readonly.")
@click.option("--readonly", is_flag=True, help="Behave like a gateway with 'Read-Only API' ticked (error 321).")
def sim(port, scenario, faults, readonly):
    """Run the simulated IB Gateway in the foreground (Ctrl-C stops it)."""
    from .sim import ScenarioError, load_scenario, parse_fault, serve_forever

    try:
        loaded = load_scenario(scenario) if scenario else None
    except ScenarioError as e:
        raise click.BadParameter(str(e), param_hint="--scenario") from None
    parsed = []
    for spec in faults:
        try:
            parsed.append(parse_fault(spec))
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--fault") from None
    try:
        serve_forever(port=port, scenario=loaded, faults=parsed, readonly=readonly, banner=sys.stderr)
    except OSError as e:
        click.echo(f"Error: cannot listen on 127.0.0.1:{port}: {e.strerror}", err=True)
        sys.exit(EXIT_BAD_INPUT)


@cli.command("diff")
@click.argument("refs", nargs=-1)
@click.option("--kind", type=click.Choice(["accounts", "positions", "orders", "account", "executions"]),
              help="With `last`: which kind (default: the kind of the newest snapshot).")
@format_option(("table", "json", "markdown"),
               "table, json or markdown (short, for an agent); default: table on a terminal, json when piped.")
@click.option("--exit-code", is_flag=True, help="Exit 1 when there are changes (like git diff --exit-code).")
@click.option("--include-volatile", is_flag=True, help="Also compare fields that change on every read.")
@redact_option
@read_store_option
@handle_errors
def diff_command(refs, kind, fmt, exit_code, include_volatile, redact_output, db_path):
    """Show what changed between two snapshots.

    REFS is `last` (the default: the newest snapshot against the previous one of the same kind and
    arguments) or two references A B, each an id, `last` or `last~N`.
    """
    from .history import diff_refs

    refs = list(refs) or ["last"]
    if len(refs) > 2 or (len(refs) == 1 and refs != ["last"]):
        raise click.UsageError("give `last` or two snapshot references A B")
    with open_store_for(db_path, create=False) as store:
        report = diff_refs(store, refs, kind=kind, include_volatile=include_volatile)
    click.echo(render_diff(redact(report) if redact_output else report, fmt or default_format()), nl=False)
    if exit_code and any(report["summary"][k] for k in ("added", "removed", "changed")):
        sys.exit(EXIT_CHANGES)


def render_diff(report: dict, fmt: str) -> str:
    from .diff import render_markdown, render_table

    if fmt == "json":
        return json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    text = render_markdown(report) if fmt == "markdown" else render_table(report)
    return text if text.endswith("\n") else text + "\n"


@cli.command()
@click.option("--asset", required=True, type=RequiredChoice(["STK", "FUT"]),
              help="STK (stock, routed SMART) or FUT (future; needs --resolve-front-month or --expiry).")
@click.option("--symbol", required=True, help="Symbol, e.g. AAPL or ES (a futures root).")
@click.option("--order", "order_type", required=True, type=RequiredChoice(["LMT", "MKT"]),
              help="Order type; LMT needs --limit.")
@click.option("--limit", type=float, help="Limit price for --order LMT (greater than 0).")
@click.option("--action", type=click.Choice(["BUY", "SELL"]), default="BUY",
              show_default=True, help="Side.")
@click.option("--qty", type=float, default=1, show_default=True, help="Quantity (greater than 0).")
@click.option("--whatif", is_flag=True, help="Margin and commission only: nothing is sent for execution.")
@click.option("--auto-cancel", is_flag=True,
              help="Cancel a transmitted order right after submission and confirm the cancel.")
@click.option("--resolve-front-month", is_flag=True,
              help="FUT: trade the nearest month that has not expired (by last trade time in the exchange's zone).")
@click.option("--expiry", help="FUT: the month YYYYMM or last trade date YYYYMMDD to trade.")
@click.option("--exchange", help="Exchange (default: SMART for STK; the root's exchange, else CME, for FUT).")
@click.option("--currency", default="USD", show_default=True, help="Currency of the contract.")
@click.option("--account", help="Target account (default: the gateway's default account).")
@click.option("--tif", type=click.Choice(["DAY", "GTC", "IOC", "FOK", "OPG"]), default="DAY",
              show_default=True, help="Time in force.")
@connection_options
@store_options
@handle_errors
def smoke(asset, symbol, order_type, limit, action, qty, whatif, auto_cancel, resolve_front_month, expiry, exchange,
          currency, account, tif, host, port, client_id, client_id_tries, timeout, sim, scenario, db_path, no_record):
    """Run a what-if order, or send a paper order when every safety rail allows it; print and record one JSON.

    Modes: whatif (--whatif), blocked-transmit (a rail said no: a forced what-if, exit 10) and paper-transmit
    (ALLOW_ORDERS=1, IBKR_PAPER=1, every managed account paper, not a live port). See README "Safety rails".
    """
    from .errors import EXIT_BLOCKED_TRANSMIT, EXIT_CANCEL_UNCONFIRMED
    from .smoke import SmokeRequest, run_smoke

    request = SmokeRequest(
        asset=asset, symbol=symbol.upper(), order_type=order_type, limit=limit, action=action, qty=qty,
        whatif=whatif, auto_cancel=auto_cancel, resolve_front_month=resolve_front_month, expiry=expiry,
        exchange=exchange and exchange.upper(), currency=currency.upper(), account=account, tif=tif,
    )
    store = None if no_record else open_store_for(db_path)
    try:
        with gateway_endpoint(host, port, client_id, client_id_tries, timeout, sim, scenario) as endpoint:
            doc, code = run_smoke(request, endpoint, store, os.environ)
    finally:
        if store is not None:
            store.close()
    click.echo(document_text(doc), nl=False)
    if code == EXIT_BLOCKED_TRANSMIT:
        click.echo("Note: forced simulation, nothing was transmitted: " + "; ".join(doc["safety"]["reasons"]),
                   err=True)
    elif code == EXIT_CANCEL_UNCONFIRMED:
        click.echo(f"Error: {doc['error']['message']}", err=True)
    sys.exit(code)


@cli.command("orders-sent")
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True, help="How many, newest first.")
@format_option()
@read_store_option
@handle_errors
def orders_sent(limit, fmt, db_path):
    """List the orders smoke sent for execution, newest first, with their latest event and cancel status.

    An order without a latest_event was sent by a process that stopped before recording the outcome: it may
    still be working, so check the gateway.
    """
    with open_store_for(db_path, create=False) as store:
        rows = store.orders_sent(limit=limit)
    click.echo(render_rows(rows, fmt or default_format()), nl=False)


@cli.command()
@click.option("--port", type=click.IntRange(0, 65535), default=8001, show_default=True,
              help="Port to serve on; 0 picks a free one.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on. Anything but loopback exposes your account history (warns).")
@click.option("--open", "open_browser", is_flag=True, help="Open the store in your web browser.")
@read_store_option
@handle_errors
def browse(port, host, open_browser, db_path):
    """Browse the audit store in Datasette, read-only (Ctrl-C stops).

    Canned queries, views and charts come with it; see README "Browsing history in Datasette".
    """
    from .browse import serve

    serve(db_path or default_db_path(), host=host, port=port, open_browser=open_browser, banner=sys.stderr)


@cli.command()
@click.option("--probe-readonly", is_flag=True,
              help="Find out whether the API is read-only by cancelling an order id that cannot exist "
                   "(sends cancelOrder; never places an order).")
@format_option(("json", "table"), "json or table; default: table on a terminal, json when piped.")
@connection_options
@read_store_option
@handle_errors
def doctor(probe_readonly, fmt, host, port, client_id, client_id_tries, timeout, sim, scenario, db_path):
    """Run the troubleshooting checklist: gateway reachable, handshake, client id, accounts, port, store, .venv.

    Exit 0 only when everything dumps need is fine, else 1. Records nothing and never creates the store.
    """
    from .doctor import render_table, run_doctor

    with gateway_endpoint(host, port, client_id, client_id_tries, timeout, sim, scenario) as endpoint:
        doc, code = run_doctor(endpoint, db_path or default_db_path(), probe_readonly=probe_readonly)
    click.echo(document_text(doc) if (fmt or default_format()) == "json" else render_table(doc), nl=False)
    sys.exit(code)


@cli.command()
@click.option("--db", "db_path", type=click.Path(path_type=Path),
              help="Store to record the tour in (default: a new one in a temporary directory, never your audit store).")
@handle_errors
def demo(db_path):
    """A one-minute guided tour on the built-in simulated gateway.

    Records snapshots, runs a what-if, fills a paper order on the simulator, records again and prints the diff.
    """
    import tempfile

    from .demo import run_demo

    db_path = db_path or Path(tempfile.mkdtemp(prefix="ibg-audit-demo-")) / "audit.db"
    with open_store_for(db_path) as store, gateway_endpoint(
        DEFAULT_HOST, DEFAULT_PORT, DEFAULT_CLIENT_ID, 3, DEFAULT_TIMEOUT, True, None
    ) as endpoint:
        code = run_demo(endpoint, store, click.echo)
    sys.exit(code)


def dump_main():
    """Entry point of tools/ibg_dump: `ibg-audit dump ...`."""
    cli.main(args=["dump", *sys.argv[1:]], prog_name="ibg_dump")


def smoke_main():
    """Entry point of tools/ibg_order_smoke: `ibg-audit smoke ...`."""
    cli.main(args=["smoke", *sys.argv[1:]], prog_name="ibg_order_smoke")
