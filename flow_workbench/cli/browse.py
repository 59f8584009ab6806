"""Commands that read state files: ``ls`` (one line per workflow) and ``show`` (one workflow in full)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..activity import Activity, activity
from ..artifacts import ArtifactRef, artifact_preview
from ..data import WorkflowData
from ..status import NodeStatus
from ..stores import FolderEntry, StateFormat, scan_folder, summary_from_data
from ..stores._versions import is_content_token
from ..stores.open import open_file_store
from ._common import (
    Commands,
    ProblemsFound,
    add_workflow_arguments,
    existing_directory,
    find_state_file,
    finished_nodes,
    format_counts,
    format_duration,
    format_label,
    format_progress,
    format_time,
    format_value,
    local_time,
    note,
    print_json,
    printable,
    say,
    shorten,
    table,
)

#: Go's rollback trigger causes (``WorkflowData.trigger_cause``).
TRIGGER_CAUSES = {0: "none", 1: "failure", 2: "canceled", 3: "deadline"}


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
    ls = commands.add_parser(
        "ls",
        parents=[common],
        help="list the workflows of a folder",
        description="One line per .json/.fb state file: id, format, node count, progress, update time "
        "and status counts. Unreadable files are listed with their error (exit code 1).",
    )
    ls.add_argument("dir", type=Path, metavar="DIR", help="folder of state files")
    ls.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    ls.set_defaults(handler=run_ls)

    show = commands.add_parser(
        "show",
        parents=[common],
        help="show one workflow: nodes, data, outputs, audit log",
        description="Node table (status, attempts, start and end, duration, error), key-value data, "
        "outputs and audit log of one workflow.",
    )
    add_workflow_arguments(show)
    show.add_argument("--full", action="store_true", help="do not shorten long values")
    show.add_argument("--json", action="store_true", help="print the whole state as JSON")
    show.set_defaults(handler=run_show)


# --- ls ----------------------------------------------------------------------------------------


def run_ls(args: argparse.Namespace) -> int:
    entries = scan_folder(existing_directory(args.dir))
    if args.json:
        print_json([_ls_json(entry) for entry in entries])
    else:
        rows = [_ls_row(entry) for entry in entries]
        if rows:
            say(table(["ID", "FORMAT", "NODES", "DONE", "UPDATED", "STATUSES"], rows))
        else:
            note(f"no .fb or .json state files in {args.dir}")
    bad = sum(1 for entry in entries if entry.summary is None)
    if bad:
        note(f"{bad} of {len(entries)} file(s) unreadable")
        raise ProblemsFound
    return 0


def _ls_row(entry: FolderEntry) -> list[str]:
    """One table row; the id shown is the file name's, the one the other commands take."""
    summary = entry.summary
    if summary is None:
        return [entry.workflow_id, "unreadable", "-", "-", "-", entry.error or "unreadable"]
    now = _activity(entry)
    return [
        entry.workflow_id,
        format_label(summary.format),
        str(summary.node_count),
        format_progress(summary),
        format_time(summary.updated_at),
        format_counts(summary.status_counts) + (f" ({now})" if now.state else ""),
    ]


def _activity(entry: FolderEntry) -> Activity:
    """Whether a process executes the workflow now (only asked when nodes are stored as running)."""
    assert entry.summary is not None
    if not entry.summary.status_counts.get("running"):
        return Activity("")  # no store opened for an idle workflow
    path = Path(entry.path)
    with open_file_store(path.parent, path.suffix) as store:
        return activity(store, entry.workflow_id, entry.summary)


def _ls_json(entry: FolderEntry) -> dict[str, Any]:
    row: dict[str, Any] = {"id": entry.workflow_id, "file": entry.path}
    summary = entry.summary
    if summary is None:
        return {**row, "error": entry.error, "error_type": entry.error_type}
    return {
        **row,
        "format": summary.format.value,
        "node_count": summary.node_count,
        "status_counts": summary.status_counts,
        "failed_nodes": list(summary.failed_nodes),
        "progress": summary.progress,
        "updated_at": summary.updated_at,
        "version": summary.version,
        "size_bytes": summary.size_bytes,
        "activity": (now := _activity(entry)).state,
        "lease": now.holder or None,
    }


# --- show --------------------------------------------------------------------------------------


def run_show(args: argparse.Namespace) -> int:
    state_file = find_state_file(args.dir, args.id, args.format, writing=False)
    data, layout = state_file.load()
    if args.json:
        print_json(state_json(data, str(state_file.path), layout))
    else:
        say(render_state(data, str(state_file.path), layout, limit=None if args.full else 100))
    return 0


def node_order(data: WorkflowData) -> list[str]:
    """Nodes in the order the state lists them, then DAG nodes the state has no status for."""
    names = data.node_statuses()
    structure = data.dag_structure or {}
    return [*names, *(name for name in structure if name not in names)]


def state_json(data: WorkflowData, path: str, layout: StateFormat) -> dict[str, Any]:
    statuses = data.node_statuses()
    structure = data.dag_structure
    # Artifact outputs (DataFrames, arrays) as their stored reference: nothing is read for a listing.
    outputs = {
        node: value.to_json() if isinstance(value, ArtifactRef) else value
        for node, value in data.outputs(load_artifacts=False).items()
    }
    nodes = []
    for name in node_order(data):
        history = data.node_history(name)
        status = statuses.get(name)
        wait = data.wait_until(name)
        nodes.append(
            {
                "node": name,
                "status": None if status is None else status.value,
                # The text as stored: differs from "status" only for an unknown one ("bogus").
                "status_text": data.status_text(name),
                "wait_until": None if wait is None else wait.isoformat(),
                "depends_on": None if structure is None else structure.get(name, []),
                "attempts": history.attempts,
                "started_at": history.started_at,
                "finished_at": history.finished_at,
                "duration": history.duration,
                "error": history.error,
                "error_type": history.error_type,
                "has_output": name in outputs,
                "output": outputs.get(name),
            }
        )
    return {
        "id": data.id,
        "file": path,
        "format": layout.value,
        "version": data.version,
        "created_at": data.created_at,
        "updated_at": data.updated_at,
        "status_counts": summary_from_data(data, layout).status_counts,
        "nodes": nodes,
        "data": dict(data.items()),
        "audit": [entry.to_json() for entry in data.audit],
        "dag": structure,
        "waits": data.waits,  # unix nanoseconds, as stored
        "rolling_back": data.rolling_back,
        "trigger_cause": data.trigger_cause,
    }


def format_version(version: int) -> str:
    """``version 3``, or what stands in for it in a Go file (which stores none)."""
    if is_content_token(version):
        return "no version (Go file; saves compare its content)"
    return f"version {version}"


def format_status(status: NodeStatus | None, text: str | None) -> str:
    """The status value; an unknown one with its stored text, visibly: ``unknown "bogus"``."""
    if status is None:
        return "-"
    if status is NodeStatus.UNKNOWN:
        return f"unknown {json.dumps(text, ensure_ascii=False)}"
    return str(status.value)


def format_wait(nanoseconds: int) -> str:
    """A Go timer's fire time (unix nanoseconds) as a local time, or the raw number when no
    date can show it."""
    shown = format_time(nanoseconds / 1e9)
    return shown if shown != "-" else f"{nanoseconds} ns since 1970 (out of range)"


def render_state(data: WorkflowData, path: str, layout: StateFormat, *, limit: int | None) -> str:
    """The ``show`` text; every string from the file is escaped by ``printable`` where it is put
    into a line (a line break in it would otherwise start a forged line)."""
    summary = summary_from_data(data, layout)
    finished = finished_nodes(summary)
    lines = [
        f"workflow  {printable(data.id)}",
        f"file      {printable(path)} ({format_label(layout)}, {format_version(data.version)})",
        f"saved     {format_time(data.updated_at)} (created {format_time(data.created_at)})",
        f"progress  {finished}/{summary.node_count} nodes finished ({format_progress(summary)}): "
        f"{format_counts(summary.status_counts)}",
    ]
    if data.rolling_back or data.trigger_cause:
        cause = TRIGGER_CAUSES.get(data.trigger_cause, str(data.trigger_cause))
        lines.append(f"rollback  {'in progress' if data.rolling_back else 'no'} (trigger: {cause})")
    if data.dag_structure is None:
        lines.append("dag       not stored (dependencies unknown)")

    statuses = data.node_statuses()
    waits = data.waits
    rows = []
    for name in node_order(data):
        history = data.node_history(name)
        status = statuses.get(name)
        error = f"{history.error_type or 'Error'}: {history.error}" if history.error else ""
        # A duration between out-of-range times (1e300 - 1e300 = 0) would look real.
        known = local_time(history.started_at) is not None and local_time(history.finished_at) is not None
        if name in waits:
            error = f"waits until {format_wait(waits[name])}" + (f"; {error}" if error else "")
        rows.append(
            [
                name,
                format_status(status, data.status_text(name)),
                str(history.attempts),
                format_time(history.started_at),
                format_time(history.finished_at),
                format_duration(history.duration if known else None),
                shorten(" ".join(error.split()), limit),
            ]
        )
    lines += ["", table(["NODE", "STATUS", "ATTEMPTS", "STARTED", "FINISHED", "DURATION", "ERROR"], rows)]

    items = data.items()
    lines += ["", f"data ({len(items)} key{'s' if len(items) != 1 else ''})"]
    lines += [f"  {printable(key)} = {format_value(value, limit)}" for key, value in items]
    outputs = data.outputs(load_artifacts=False)
    lines += ["", f"outputs ({len(outputs)})"]
    lines += [
        f"  {printable(node)} = "
        + (
            printable(shorten(artifact_preview(value), limit))
            if isinstance(value, ArtifactRef)
            else format_value(value, limit)
        )
        for node, value in outputs.items()
    ]
    audit = data.audit
    lines += ["", f"audit log ({len(audit)} entr{'ies' if len(audit) != 1 else 'y'})"]
    for entry in audit:
        detail = f"  ({printable(entry.detail)})" if entry.detail else ""
        nodes = ", ".join(map(printable, entry.nodes))
        lines.append(f"  {format_time(entry.at)}  {printable(entry.action)}  {nodes}{detail}")
    return "\n".join(lines)
