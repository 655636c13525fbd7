"""Scenario files: what the simulated gateway holds (accounts, contracts, positions, orders, executions).

The file format is described in README.md next to this module. Everything that depends on the date (futures and
option expiries, execution times) is written relative to "now" and resolved when the gateway starts, so a scenario
never goes stale. ``load_scenario`` only checks the shape; ``state.build_state`` resolves it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

SEC_TYPES = {"STK", "FUT", "OPT", "CASH", "IND"}


class ScenarioError(ValueError):
    """The scenario file is missing, not JSON, or not shaped like a scenario (one-line message)."""


@dataclass(frozen=True)
class Scenario:
    name: str
    accounts: list[dict[str, Any]]
    contracts: list[dict[str, Any]]
    positions: list[dict[str, Any]] = field(default_factory=list)
    executions: list[dict[str, Any]] = field(default_factory=list)
    open_orders: list[dict[str, Any]] = field(default_factory=list)
    completed_orders: list[dict[str, Any]] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    readonly: bool = False
    next_valid_id: int = 1
    time_zone: str = "US/Eastern"
    description: str = ""
    source: str = "<dict>"


def _require(cond: bool, where: str, message: str) -> None:
    if not cond:
        raise ScenarioError(f"{where}: {message}")


def _list_of_dicts(data: dict, key: str, where: str, *, required: bool = False) -> list[dict]:
    value = data.get(key, [] if not required else None)
    _require(isinstance(value, list), where, f"'{key}' must be a list")
    for i, item in enumerate(value):
        _require(isinstance(item, dict), where, f"'{key}[{i}]' must be an object")
    return value


def scenario_from_dict(data: Any, source: str = "<dict>") -> Scenario:
    """Check the shape of a scenario given as a parsed JSON object and return it as a Scenario."""
    _require(isinstance(data, dict), source, "a scenario must be a JSON object")
    accounts = _list_of_dicts(data, "accounts", source, required=True)
    _require(len(accounts) > 0, source, "'accounts' must name at least one account")
    ids = []
    for i, acct in enumerate(accounts):
        acct_id = acct.get("id")
        _require(isinstance(acct_id, str) and acct_id.isalnum(), source, f"accounts[{i}].id must be an account id")
        ids.append(acct_id)
    _require(len(set(ids)) == len(ids), source, "account ids must be unique")
    contracts = _list_of_dicts(data, "contracts", source, required=True)
    keys = set()
    for i, c in enumerate(contracts):
        _require(c.get("secType") in SEC_TYPES, source, f"contracts[{i}].secType must be one of {sorted(SEC_TYPES)}")
        _require(isinstance(c.get("symbol"), str) and c["symbol"], source, f"contracts[{i}].symbol is required")
        key = c.get("key", c["symbol"])
        _require(key not in keys, source, f"contracts[{i}]: duplicate key {key!r} (give it a distinct 'key')")
        keys.add(key)
    sections = {
        name: _list_of_dicts(data, name, source)
        for name in ("positions", "executions", "openOrders", "completedOrders")
    }
    for name, items in sections.items():
        for i, item in enumerate(items):
            _require(item.get("account") in ids, source, f"{name}[{i}].account must be one of {ids}")
            _require(isinstance(item.get("contract"), str), source, f"{name}[{i}].contract must name a contract key")
    faults = data.get("faults", [])
    _require(isinstance(faults, list) and all(isinstance(f, str) for f in faults), source,
             "'faults' must be a list of fault specs")
    next_id = data.get("nextValidId", 1)
    _require(isinstance(next_id, int) and next_id > 0, source, "'nextValidId' must be a positive integer")
    readonly = data.get("readonly", False)
    _require(isinstance(readonly, bool), source, "'readonly' must be true or false")
    scenario = Scenario(
        name=str(data.get("name", Path(source).stem)),
        description=str(data.get("description", "")),
        accounts=accounts,
        contracts=contracts,
        positions=sections["positions"],
        executions=sections["executions"],
        open_orders=sections["openOrders"],
        completed_orders=sections["completedOrders"],
        faults=faults,
        readonly=readonly,
        next_valid_id=next_id,
        time_zone=str(data.get("timeZone", "US/Eastern")),
        source=source,
    )
    _check_content(scenario)
    return scenario


def _check_content(scenario: Scenario) -> None:
    """Resolve the scenario once for today, so that bad contract keys or values are reported on loading."""
    import datetime as dt

    from .state import GatewayState  # state builds on this module

    GatewayState(scenario, dt.datetime.now(dt.UTC))


def load_scenario(path: str | Path) -> Scenario:
    """Read and check a scenario file (shape and content); raises ScenarioError with a one-line message."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"scenario file not found: {p}") from None
    except OSError as e:
        raise ScenarioError(f"cannot read scenario file {p}: {e.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ScenarioError(f"{p}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    return scenario_from_dict(data, str(p))


def default_scenario() -> Scenario:
    text = resources.files(__package__).joinpath("default_scenario.json").read_text(encoding="utf-8")
    return scenario_from_dict(json.loads(text), "default_scenario.json")


def resolve_scenario(scenario: None | str | Path | dict | Scenario) -> Scenario:
    if scenario is None:
        return default_scenario()
    if isinstance(scenario, Scenario):
        return scenario
    if isinstance(scenario, dict):
        return scenario_from_dict(scenario)
    return load_scenario(scenario)
