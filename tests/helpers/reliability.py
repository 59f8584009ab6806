"""Shared pieces of the reliability suite (tests/test_reliability_*.py).

``HEAVY`` is true when ``FLOW_WORKBENCH_HEAVY=1``: the suites then run their long variants
(hundreds of kills, thousands of hostile inputs, 8 x 200 increments).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest

from flow_workbench.data import WorkflowData
from flow_workbench.status import NodeStatus
from flow_workbench.stores.files import FileStore
from flow_workbench.stores.flatbuffers import FlatBuffersStore
from flow_workbench.stores.json_file import JSONFileStore

HEAVY = os.environ.get("FLOW_WORKBENCH_HEAVY", "") not in ("", "0")

_SKIP_LIGHT = pytest.mark.skipif(not HEAVY, reason="heavy variant: set FLOW_WORKBENCH_HEAVY=1 to run it")

F = TypeVar("F", bound=Callable[..., Any])


def heavy(test: F) -> F:
    """Mark a long variant: ``@pytest.mark.heavy`` and skipped unless FLOW_WORKBENCH_HEAVY=1."""
    return cast(F, pytest.mark.heavy(_SKIP_LIGHT(test)))


def scaled(normal: int, heavy_value: int) -> int:
    """``heavy_value`` under FLOW_WORKBENCH_HEAVY=1, else ``normal``."""
    return heavy_value if HEAVY else normal


FILE_KINDS = ["json", "flatbuffers"]


def open_file_store(kind: str, folder: str | os.PathLike[str], **options: object) -> FileStore:
    """A FileStore of ``kind`` ("json" or "flatbuffers") on ``folder``."""
    cls = JSONFileStore if kind == "json" else FlatBuffersStore
    return cls(folder, **options)  # type: ignore[arg-type]


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` (not following symlinks) with its file type and size."""
    found: dict[str, tuple[int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            info = os.lstat(path)
            size = info.st_size if stat.S_ISREG(info.st_mode) else 0
            found[os.path.relpath(path, root)] = (stat.S_IFMT(info.st_mode), size)
    return found


def temp_files(folder: Path) -> list[str]:
    """Temp files (of saves or commits) anywhere under ``folder``."""
    return sorted(p.name for p in folder.rglob("*.tmp"))


# --- figures for the report ------------------------------------------------------------------------

#: Totals the reliability tests add to as they run; ``conftest.py`` prints them after the run.
FIGURES: dict[str, int] = {}


def record_figure(name: str, amount: int) -> None:
    """Add to a reported total (kills survived, faults injected, damaged inputs, conflicts seen)."""
    FIGURES[name] = FIGURES.get(name, 0) + amount


# --- the write operations fault and crash tests drive ----------------------------------------------

#: A write under test: (store, the workflow it writes, a second one for transactions).
Operation = Callable[[FileStore, WorkflowData, WorkflowData], None]


def op_save(store: FileStore, victim: WorkflowData, other: WorkflowData) -> None:
    store.save(victim)


def op_save_node(store: FileStore, victim: WorkflowData, other: WorkflowData) -> None:
    store.save_node(victim, "node_0")


def op_commit(store: FileStore, victim: WorkflowData, other: WorkflowData) -> None:
    with store.transaction() as tx:
        tx.save(victim)
        tx.save(other)


def stage_victims(
    store: FileStore, with_journal: bool, *, new_victim: bool = False
) -> tuple[WorkflowData, WorkflowData]:
    """Save two workflows (``victim`` with a journal record if asked), then change both in memory
    so that a write under test has something new to store. ``new_victim``: ``victim`` is never
    saved (a write under test is its first one: for ``save_node``, snapshot and journal at once)."""
    from flow_workbench.testing import rich_state

    victim, other = rich_state("victim"), rich_state("other")
    if not new_victim:
        store.save(victim)
    store.save(other)
    if with_journal and not new_victim:
        victim.set_node_status("node_1", NodeStatus.SKIPPED)
        store.save_node(victim, "node_1")
    victim.set_node_status("node_0", NodeStatus.FAILED)
    victim.set_output("node_0", {"new": True})
    victim.set("new", True)
    other.set("new", True)
    return victim, other


def exit_at_io_call(folder: str, call_names: tuple[str, ...], die_at: int) -> list[int]:
    """In a child process about to write into ``folder``: make the ``die_at``-th call of the ``os``
    functions ``call_names`` that touches ``folder`` end the process (``os._exit(3)``, no clean-up)
    just before it runs. Returns the counter of such calls (``[n]``) for the child to report."""
    root = os.path.realpath(folder)
    calls = [0]

    def ours(name: str, args: tuple[object, ...]) -> bool:
        if name in ("replace", "rename", "mkdir", "unlink"):
            path = args[1] if name in ("replace", "rename") else args[0]  # os.replace(source, target)
            return isinstance(path, str) and os.path.realpath(path).startswith(root)
        try:
            return os.readlink(f"/proc/self/fd/{args[0]}").startswith(root)
        except OSError:
            return False

    def wrap(name: str, real: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if ours(name, args):
                calls[0] += 1
                if calls[0] == die_at:
                    os._exit(3)
            return real(*args, **kwargs)

        return wrapper

    for name in call_names:
        setattr(os, name, wrap(name, getattr(os, name)))
    return calls
