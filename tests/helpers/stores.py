"""Every WorkflowStore implementation the contract tests run against, and the session's redis-server."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

from flow_workbench.stores.flatbuffers import FlatBuffersStore
from flow_workbench.stores.json_file import JSONFileStore
from flow_workbench.stores.memory import InMemoryStore
from flow_workbench.stores.redis import RedisStore
from flow_workbench.testing import StoreFactory
from tests.helpers.servers import RedisServer

_redis_server: RedisServer | None = None


def shared_redis_url() -> str:
    """URL of one real redis-server shared by the whole session (started on first use)."""
    global _redis_server
    if _redis_server is None:
        _redis_server = RedisServer(Path(tempfile.mkdtemp(prefix="fw-redis-")))
        _redis_server.start()
    return _redis_server.url


def stop_shared_redis() -> None:
    """Stop the session's redis-server if a test started it (``conftest.py`` calls it at the end)."""
    global _redis_server
    if _redis_server is not None:
        _redis_server.stop()
        _redis_server = None


def redis_store(folder: Path) -> RedisStore:
    """A RedisStore with a fresh key prefix on the session's redis-server."""
    return RedisStore(shared_redis_url(), prefix=f"contract-{uuid.uuid4().hex}:")


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
