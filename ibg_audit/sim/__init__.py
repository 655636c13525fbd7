"""Simulated IB Gateway: a TWS API server (protocol version 178) that ib_async cannot tell from a paper gateway.

Protocol-level and stdlib-only: nothing here imports the rest of ibg_audit.
"""

from .faults import REQUEST_TYPES, Fault, FaultSpecError, parse_fault
from .scenario import Scenario, ScenarioError, load_scenario
from .server import SimulatedGateway, TranscriptEntry, serve_forever, start_in_thread

__all__ = [
    "REQUEST_TYPES",
    "Fault",
    "FaultSpecError",
    "Scenario",
    "ScenarioError",
    "SimulatedGateway",
    "TranscriptEntry",
    "load_scenario",
    "parse_fault",
    "serve_forever",
    "start_in_thread",
]
