"""Shared fixtures: one factory per WorkflowStore implementation, and the session's redis-server."""

from __future__ import annotations

import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from servers import RedisServer

from flow_workbench.stores.base import WorkflowStore
from flow_workbench.stores.flatbuffers import FlatBuffersStore
from flow_workbench.stores.json_file import JSONFileStore
from flow_workbench.stores.memory import InMemoryStore
from flow_workbench.stores.redis import RedisStore
from flow_workbench.testing import StoreFactory as StoreFactory  # re-exported to the test modules
from flow_workbench.testing import rich_state as rich_state

_redis_server: RedisServer | None = None


def shared_redis_url() -> str:
    """URL of one real redis-server shared by the whole session (started on first use)."""
    global _redis_server
    if _redis_server is None:
        _redis_server = RedisServer(Path(tempfile.mkdtemp(prefix="fw-redis-")))
        _redis_server.start()
    return _redis_server.url


def redis_store(folder: Path) -> RedisStore:
    """A RedisStore with a fresh key prefix on the session's redis-server."""
    return RedisStore(shared_redis_url(), prefix=f"contract-{uuid.uuid4().hex}:")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _redis_server is not None:
        _redis_server.stop()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print what the reliability tests survived (kills, faults, damaged inputs, conflicts)."""
    figures = sys.modules.get("reliability_helpers")
    totals: dict[str, int] = getattr(figures, "FIGURES", {}) if figures is not None else {}
    if totals:
        terminalreporter.section("reliability figures")
        for name, amount in sorted(totals.items()):
            terminalreporter.write_line(f"{amount:>10,}  {name}")


#: Every store the contract tests run against (Redis on a real server started on first use).
IMPLEMENTATIONS: dict[str, StoreFactory] = {
    "memory": lambda folder: InMemoryStore(),
    "json": lambda folder: JSONFileStore(folder),
    "flatbuffers": lambda folder: FlatBuffersStore(folder),
    "redis": redis_store,
}

#: Stores whose state lives in files under the folder given to the factory.
FILE_IMPLEMENTATIONS: dict[str, StoreFactory] = {
    "json": IMPLEMENTATIONS["json"],
    "flatbuffers": IMPLEMENTATIONS["flatbuffers"],
}

GOLDEN_GO = Path(__file__).parent / "golden" / "go"


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
