"""Fixtures and hooks only: the store factories, the session's redis-server, the reliability figures.

Code the tests share lives in ``tests/helpers/`` (imported as ``tests.helpers.*``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from flow_workbench.stores.base import WorkflowStore
from flow_workbench.testing import StoreFactory
from tests.helpers.reliability import FIGURES
from tests.helpers.stores import FILE_IMPLEMENTATIONS, IMPLEMENTATIONS, shared_redis_url, stop_shared_redis


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    stop_shared_redis()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print what the reliability tests survived (kills, faults, damaged inputs, conflicts)."""
    if FIGURES:
        terminalreporter.section("reliability figures")
        for name, amount in sorted(FIGURES.items()):
            terminalreporter.write_line(f"{amount:>10,}  {name}")


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def store_factory(request: pytest.FixtureRequest) -> StoreFactory:
    """The factory of one implementation; call it with a folder (ignored by in-memory stores)."""
    return IMPLEMENTATIONS[request.param]


@pytest.fixture
def store(store_factory: StoreFactory, tmp_path: Path) -> Iterator[WorkflowStore]:
    created = store_factory(tmp_path / "store")
    yield created
    created.close()


@pytest.fixture
def redis_location() -> str:
    """``<url> <prefix>`` of a fresh key prefix on the session's redis-server, for other processes."""
    return f"{shared_redis_url()} test-{uuid.uuid4().hex}:"


@pytest.fixture(params=sorted(FILE_IMPLEMENTATIONS))
def file_store_factory(request: pytest.FixtureRequest) -> StoreFactory:
    return FILE_IMPLEMENTATIONS[request.param]
