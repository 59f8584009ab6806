"""pandas tables of a workflow's run history and attempt log, and of which stored workflows run now."""

from __future__ import annotations

import os
from typing import Any

import pandas as pd

from ..activity import activity
from ..dot import shorten
from ..presentation import display_text
from ..stores.base import WorkflowStore
from ..stores.open import open_file_store
from ._sources import StateSource, load_state
from .tables import _durations, datetimes, preview, workflow_entries, workflows_table

__all__ = ["attempts_frame", "runs_frame", "workflows_activity_frame"]

_RUN_COUNTS = ("nodes_run", "completed", "failed", "skipped")


def runs_frame(source: StateSource, workflow_id: str | None = None, *, preview_chars: int = 80) -> Any:
    """The run history, one row per ``execute`` call (oldest first), indexed by ``run_id``.

    ``source`` is what ``nodes_frame`` takes (a state, a ``Workflow`` or ``RunResult``, a store or
    folder plus ``workflow_id``). Columns: ``started``, ``finished`` (UTC; NaT while running),
    ``duration``, ``outcome``, ``reason`` (new, resume, after reset, re-run), ``nodes_run``,
    ``completed``, ``failed``, ``skipped``, ``user``, ``host``, ``pid`` and ``params`` (a JSON preview
    of the run parameters; empty when none were given).
    """
    data, _ = load_state(source, workflow_id)
    runs = data.runs()
    started = [run.started_at for run in runs]
    finished = [run.finished_at for run in runs]
    frame = pd.DataFrame(
        {
            "started": datetimes(started).to_numpy(),
            "finished": datetimes(finished).to_numpy(),
            "duration": _durations(started, finished).to_numpy(),
            "outcome": pd.Series([run.outcome for run in runs], dtype="object").to_numpy(),
            "reason": pd.Series([run.reason for run in runs], dtype="object").to_numpy(),
            **{name: pd.array([getattr(run, name) for run in runs], dtype="Int64") for name in _RUN_COUNTS},
            "user": pd.Series([_shown(run.user) for run in runs], dtype="object").to_numpy(),
            "host": pd.Series([_shown(run.host) for run in runs], dtype="object").to_numpy(),
            "pid": pd.array([run.pid for run in runs], dtype="Int64"),
            "params": pd.Series(
                [None if run.params is None else preview(run.params, preview_chars) for run in runs],
                dtype="object",
            ).to_numpy(),
        },
        index=pd.Index([_shown(run.run_id) for run in runs], name="run_id", dtype="object"),
    )
    return frame


def attempts_frame(
    source: StateSource,
    workflow_id: str | None = None,
    *,
    node: str | None = None,
    preview_chars: int = 200,
) -> Any:
    """The attempt log: one row per attempt (every node's, or ``node``'s), in start order.

    Columns: ``node``, ``run_id``, ``attempt`` (number within its run), ``started``, ``finished``
    (UTC; NaT while running or when its process died), ``duration``, ``outcome`` (running,
    completed, failed, timeout, cancelled, interrupted, crashed), ``error_type``, ``error`` (cut
    to ``preview_chars``), ``host``, ``pid`` and ``traceback`` (the kept last frames, or empty).
    """
    data, _ = load_state(source, workflow_id)
    logs = {node: data.attempt_log(node)} if node is not None else data.attempt_logs()
    attempts = sorted((a for log in logs.values() for a in log), key=lambda a: a.started_at)
    started = [a.started_at for a in attempts]
    finished = [a.finished_at for a in attempts]

    def text(values: list[str | None]) -> Any:
        # Names, errors and hosts come from files: shown escaped as everywhere in the notebook
        # (a Go name that is not UTF-8 would not even fit in a pandas string).
        return pd.Series([_shown(value) for value in values], dtype="object").to_numpy()

    return pd.DataFrame(
        {
            "node": text([a.node for a in attempts]),
            "run_id": text([a.run_id for a in attempts]),
            "attempt": pd.array([a.number for a in attempts], dtype="Int64"),
            "started": datetimes(started).to_numpy(),
            "finished": datetimes(finished).to_numpy(),
            "duration": _durations(started, finished).to_numpy(),
            "outcome": text([a.outcome for a in attempts]),
            "error_type": text([a.error_type for a in attempts]),
            "error": text([None if a.error is None else shorten(a.error, preview_chars) for a in attempts]),
            "host": text([a.host for a in attempts]),
            "pid": pd.array([a.pid for a in attempts], dtype="Int64"),
            "traceback": text([a.traceback for a in attempts]),
        }
    )


def workflows_activity_frame(source: WorkflowStore | str | os.PathLike[str]) -> Any:
    """``workflows_frame`` plus ``activity``: "running" while a process holds the workflow's
    execution lease (``lease`` says who and since when), "interrupted" for running nodes without
    a live lease (their process died), empty when idle. See ``flow_workbench.activity``."""
    entries = workflow_entries(source)
    return with_activity(workflows_table(entries), source, entries)


def with_activity(frame: Any, source: WorkflowStore | str | os.PathLike[str], entries: Any) -> Any:
    """``frame`` (``workflows_table(entries)``) with the ``activity`` and ``lease`` columns added."""
    states, holders = [], []
    for entry in entries:
        found = _activity(source, entry)
        states.append(found.state if found is not None else None)
        holders.append(_shown(found.holder) if found is not None and found.holder else None)
    frame.insert(frame.columns.get_loc("failed_nodes"), "activity", pd.Series(states, dtype="object"))
    frame.insert(frame.columns.get_loc("activity") + 1, "lease", pd.Series(holders, dtype="object"))
    return frame


def _activity(source: WorkflowStore | str | os.PathLike[str], entry: Any) -> Any:
    """The activity of one listed workflow, or None when it cannot be told (unreadable, no summary)."""
    if entry.summary is None:
        return None
    try:
        if isinstance(source, WorkflowStore):
            return activity(source, entry.workflow_id, entry.summary)
        store = open_file_store(os.path.dirname(entry.path), os.path.splitext(entry.path)[1])
        try:
            return activity(store, entry.workflow_id, entry.summary)
        finally:
            store.close()
    except Exception:  # one workflow whose lease cannot be read must not hide the others
        return None


def _shown(text: str | None) -> str | None:
    return None if text is None else display_text(text)
