"""Run history bookkeeping: new run ids, why a run runs, and what a run inherits from one that crashed.

Pure functions over a ``WorkflowData`` (no store, no engine), called by ``Workflow.execute`` while it
holds the execution lease: any run still recorded as running then, and any attempt still open, was
left by a process that died.

Crashed attempts count. A node whose process died while it ran (killed, out of memory,
``os._exit`` in its action) is found with its last attempt still open: that attempt is closed as
``crashed``, and the run that resumes the workflow continues the crashed run's attempt numbering
for the node (``ctx.attempt``), so a crashed attempt uses up one of the node's ``max_attempts``
for its ordinary failures. A node is not run again once its latest attempt crashed and was
attempt number ``max(max_attempts, MIN_CRASHED_ATTEMPTS)``: it is marked failed with error type
``"Crashed"``. The floor of 3 lets a workflow survive a few interruptions that were not the
node's fault (a machine restart, a lapsed lease) with the default ``retries=0``, while a node that
kills its own process every time stops after 3 attempts instead of being re-run forever. A
manual edit of the node (reset, mark; an audit entry naming it) after the crash starts its count
afresh. Crashes are known only when the start was durable (``Persistence.NODE``).
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import replace

from .data import AttemptOutcome, AuditEntry, RunOutcome, RunReason, WorkflowData
from .status import TERMINAL_STATUSES, NodeStatus

__all__ = [
    "CRASHED_ERROR_TYPE",
    "MIN_CRASHED_ATTEMPTS",
    "close_crashed",
    "new_run_id",
    "run_reason",
]

#: ``error_type`` of a node failed because its process died during its last attempts.
CRASHED_ERROR_TYPE = "Crashed"
#: Attempts a node gets, whatever its ``max_attempts``, before crashes alone fail it.
MIN_CRASHED_ATTEMPTS = 3


def new_run_id(at: float | None = None) -> str:
    """A unique run id that sorts by start time: ``20261202T051533-3fa9c1`` (UTC)."""
    when = time.time() if at is None else at
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(when)) + "-" + secrets.token_hex(3)


def run_reason(data: WorkflowData, *, existed: bool) -> str:
    """Why a run of ``data`` (as loaded, before anything is changed) runs; see ``RunReason``."""
    if not existed:
        return RunReason.NEW
    runs = data.runs()
    statuses = data.node_statuses()
    last = runs[-1] if runs else None
    if NodeStatus.RUNNING in statuses.values() or (
        last is not None and last.outcome not in (RunOutcome.SUCCEEDED, RunOutcome.FAILED)
    ):
        return RunReason.RESUME
    since = last.started_at if last is not None else -math.inf
    if any(entry.at > since for entry in data.audit):
        return RunReason.AFTER_RESET
    if last is None and any(s not in TERMINAL_STATUSES for s in statuses.values()):
        return RunReason.RESUME  # a state written before run histories existed
    return RunReason.RERUN


def close_crashed(
    data: WorkflowData, max_attempts: Mapping[str, int], *, at: float | None = None
) -> tuple[dict[str, int], list[str]]:
    """Close what a dead process left open in ``data``: its runs (outcome ``crashed``) and its
    nodes' open attempts (outcome ``crashed``); fail the nodes whose crashed attempt was their
    last allowed one (``max_attempts``: node -> its max_attempts, for the nodes of the DAG).

    Returns (node -> attempts the resuming run inherits, nodes changed). A changed node's status
    is left as it was unless it failed here (the engine makes unfinished nodes pending).
    """
    now = time.time() if at is None else at
    inherited: dict[str, int] = {}
    changed: list[str] = []
    edited = _last_edits(data.audit, max_attempts)
    for node, log in data.attempt_logs().items():
        last = log[-1]
        if last.outcome == AttemptOutcome.RUNNING:
            data.close_attempt(node, AttemptOutcome.CRASHED, at=None)
            changed.append(node)
        elif last.outcome != AttemptOutcome.CRASHED:
            continue
        if node not in max_attempts or last.started_at <= edited.get(node, -math.inf):
            continue
        if last.number >= max(max_attempts[node], MIN_CRASHED_ATTEMPTS):
            data.record_attempt_finished(
                node,
                NodeStatus.FAILED,
                at=now,
                error=f"its process died during attempt {last.number}, its last allowed one",
                error_type=CRASHED_ERROR_TYPE,
            )
            if node not in changed:
                changed.append(node)
        elif data.get_node_status(node) not in TERMINAL_STATUSES:
            inherited[node] = last.number
    _close_crashed_runs(data)
    return inherited, changed


def _last_edits(audit: Iterable[AuditEntry], nodes: Mapping[str, int]) -> dict[str, float]:
    """node -> time of the last audit entry naming it."""
    edited: dict[str, float] = {}
    for entry in audit:
        for node in entry.nodes:
            if node in nodes and entry.at > edited.get(node, -math.inf):
                edited[node] = entry.at
    return edited


def _close_crashed_runs(data: WorkflowData) -> None:
    """Runs still recorded as running become ``crashed``, with counts taken from the attempt log
    (per-node persistence stores a run record only when it starts)."""
    open_runs = [run for run in data.runs() if run.outcome == RunOutcome.RUNNING]
    if not open_runs:
        return
    logs = data.attempt_logs()
    statuses = data.node_statuses()
    for run in open_runs:
        ran = completed = failed = 0
        for node, log in logs.items():
            mine = [entry for entry in log if entry.run_id == run.run_id]
            if not mine:
                continue
            ran += 1
            if mine[-1].outcome == AttemptOutcome.COMPLETED:
                completed += 1
            elif statuses.get(node) is NodeStatus.FAILED and mine[-1].outcome in (
                AttemptOutcome.FAILED,
                AttemptOutcome.TIMEOUT,
            ):
                failed += 1
        data.put_run(
            replace(
                run,
                outcome=RunOutcome.CRASHED,
                nodes_run=max(run.nodes_run, ran),
                completed=max(run.completed, completed),
                failed=max(run.failed, failed),
            )
        )
