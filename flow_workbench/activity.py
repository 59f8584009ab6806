"""Is a stored workflow being executed now? Its execution lease holder, and what its running nodes mean.

A node stored as running (``Persistence.NODE`` records starts) is running only while some process
holds the workflow's execution lease; without a live lease its process died: the node is
**interrupted**, and the next ``execute`` closes its attempt as crashed (``flow_workbench.runs``).
Stores tell who holds a lease through ``store.lease_holder(workflow_id)``; a store whose holder
answers do not cover other processes (``lease_holder_sees_every_process`` false, e.g. a custom
store keeping the base in-process lease) cannot tell, and its running nodes are shown as running.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from .status import NodeStatus
from .stores.base import WorkflowStore, WorkflowSummary

__all__ = ["Activity", "activity", "describe_holder"]

RUNNING: Final = "running"
INTERRUPTED: Final = "interrupted"
IDLE: Final = ""


@dataclass(frozen=True)
class Activity:
    """``state``: ``"running"`` (a lease is held, or running nodes and no way to ask),
    ``"interrupted"`` (running nodes, no lease: their process died) or ``""`` (idle).
    ``holder`` describes the lease holder (e.g. "pid 4242 on host 'box' since 10:00:00"), or "".
    """

    state: str
    holder: str = ""
    running_nodes: int = 0

    def __str__(self) -> str:
        if self.state == RUNNING and self.holder:
            return f"running ({self.holder})"
        return self.state


def activity(store: WorkflowStore, workflow_id: str, summary: WorkflowSummary | None = None) -> Activity:
    """What ``workflow_id`` in ``store`` is doing now (``summary``: its summary, if already read).

    Asks for the lease holder only when the state has running nodes, so listing a folder of idle
    workflows costs nothing more.
    """
    if summary is None:
        summary = store.summary(workflow_id)
    running = summary.status_counts.get(NodeStatus.RUNNING.value, 0)
    if not running:
        return Activity(IDLE)
    ask = getattr(store, "lease_holder", None)
    if ask is None or not getattr(store, "lease_holder_sees_every_process", False):
        return Activity(RUNNING, running_nodes=running)  # cannot tell a live run from a dead one
    holder = ask(workflow_id)
    if holder is None:
        return Activity(INTERRUPTED, running_nodes=running)
    return Activity(RUNNING, describe_holder(holder), running)


def describe_holder(holder: Any) -> str:
    """A lease holder in a few words: its own ``describe()`` when it has one, else pid and host."""
    describe = getattr(holder, "describe", None)
    if callable(describe):
        return str(describe())
    pid, host = getattr(holder, "pid", None), getattr(holder, "host", None)
    return " ".join(
        part for part in (f"pid {pid}" if pid is not None else "", f"on {host}" if host else "") if part
    )
