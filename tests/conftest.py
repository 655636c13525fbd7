"""Shared fixtures: the simulated gateway (sim_fixtures) and an audit store in a temporary directory."""

import pytest

pytest_plugins = ["sim_fixtures", "audit_helpers"]


@pytest.fixture
def db(tmp_path):
    return tmp_path / "audit.db"


@pytest.fixture
def unused_port():
    """A port nothing listens on (bound then released; the kernel does not hand it out again at once)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
