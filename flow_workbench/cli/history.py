"""The ``history`` command: a workflow's run history and the attempt log of its nodes."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from ..activity import activity
from ..data import AttemptRecord, WorkflowData
from ._common import (
    Commands,
    add_workflow_arguments,
    find_state_file,
    format_duration,
    format_time,
    format_value,
    local_time,
    print_json,
    printable,
    say,
    shorten,
    table,
)


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
    history = commands.add_parser(
        "history",
        parents=[common],
        help="show a workflow's runs and the attempts of its nodes",
        description="The run history (one line per execute: when, outcome, why it ran, node counts, "
        "user, host, pid) and the attempt log (one line per attempt: node, run, number, times, "
        "outcome, error), oldest first; whether a process executes the workflow now.",
    )
    add_workflow_arguments(history)
    history.add_argument("--node", help="only the attempts of this node")
    history.add_argument(
        "--tracebacks", action="store_true", help="print the kept traceback of each failed attempt"
    )
    history.add_argument("--full", action="store_true", help="do not shorten long values")
    history.add_argument("--json", action="store_true", help="print runs and attempts as JSON")
    history.set_defaults(handler=run_history)


def run_history(args: argparse.Namespace) -> int:
    state_file = find_state_file(args.dir, args.id, args.format, writing=False)
    with state_file.store() as store:
        data = store.load(state_file.workflow_id)
        now = activity(store, state_file.workflow_id)
    attempts = _attempts(data, args.node)
    if args.json:
        print_json(
            {
                "id": data.id,
                "file": str(state_file.path),
                "activity": now.state,
                "lease": now.holder or None,
                "runs": [run.to_json() for run in data.runs()],
                "attempts": [asdict(attempt) for attempt in attempts],
            }
        )
        return 0
    limit = None if args.full else 80
    lines = [f"workflow  {printable(data.id)}", f"file      {printable(str(state_file.path))}"]
    if now.state:
        lines.append(f"now       {printable(str(now))}")
    runs = data.runs()
    lines += ["", f"runs ({len(runs)})"]
    if runs:
        rows = [
            [
                run.run_id,
                format_time(run.started_at),
                format_duration(run.duration),
                run.outcome,
                run.reason,
                f"{run.nodes_run}/{run.completed}/{run.failed}/{run.skipped}",
                f"{run.user}@{run.host}:{run.pid}",
                "" if run.params is None else format_value(run.params, limit),
            ]
            for run in runs
        ]
        headers = ["RUN", "STARTED", "DURATION", "OUTCOME", "REASON", "RUN/OK/FAILED/SKIPPED", "BY", "PARAMS"]
        lines.append(table(headers, rows))
    lines += ["", f"attempts ({len(attempts)})"]
    if attempts:
        rows = [
            [
                attempt.node,
                attempt.run_id,
                str(attempt.number),
                format_time(attempt.started_at),
                format_duration(attempt.duration if local_time(attempt.started_at) else None),
                attempt.outcome,
                shorten(_error(attempt), limit),
            ]
            for attempt in attempts
        ]
        lines.append(table(["NODE", "RUN", "#", "STARTED", "DURATION", "OUTCOME", "ERROR"], rows))
    if args.tracebacks:
        for attempt in attempts:
            if attempt.traceback:
                title = f"traceback of {attempt.node} attempt {attempt.number} ({attempt.run_id}):"
                lines += ["", printable(title)]
                # Line by line: each escaped, so the text cannot forge lines or control the terminal.
                lines += ["  " + printable(line) for line in attempt.traceback.splitlines()]
    say("\n".join(lines))
    return 0


def _attempts(data: WorkflowData, node: str | None) -> list[AttemptRecord]:
    logs = {node: data.attempt_log(node)} if node is not None else data.attempt_logs()
    return sorted((a for log in logs.values() for a in log), key=lambda a: a.started_at)


def _error(attempt: AttemptRecord) -> str:
    if attempt.error is None and attempt.error_type is None:
        return ""
    return " ".join(f"{attempt.error_type or 'Error'}: {attempt.error or ''}".split())
