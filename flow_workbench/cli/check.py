"""The ``validate`` command: decode every state file in full and check its structure."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..dag import DAG
from ..data import WorkflowData
from ..errors import DAGError, FlowWorkbenchError
from ..ids import is_valid_workflow_id
from ..stores import WorkflowStore
from ..stores.folder import open_file_store
from ._common import SUFFIXES, Commands, ProblemsFound, existing_directory, print_json, printable, say

_BAD_NAME = "the file name is not a valid workflow id, so no store opens it"


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
    validate = commands.add_parser(
        "validate",
        parents=[common],
        help="check every state file of a folder; exit code 1 if any is bad",
        description="Decode every .json/.fb state file of DIR in full (checksums, journals, field "
        "types) and check its structure: the stored DAG has no cycle or unknown dependency and holds "
        "every node that has a status, and every output, history entry and timer belongs to a node "
        "that has a status. A .json/.fb file whose name "
        "is not a valid workflow id counts as bad too (no store would open it). Prints the bad files "
        "with their reasons; exit code 1 if there is any.",
    )
    validate.add_argument("dir", type=Path, metavar="DIR", help="folder of state files")
    validate.add_argument("-v", "--verbose", action="store_true", help="also list the files that are fine")
    validate.add_argument("--json", action="store_true", help="print one JSON result per file")
    validate.set_defaults(handler=run_validate)


@dataclass
class FileCheck:
    """The verdict on one file."""

    path: Path
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"file": str(self.path), "ok": not self.problems, "problems": self.problems}


def run_validate(args: argparse.Namespace) -> int:
    directory = existing_directory(args.dir)
    checks = [FileCheck(directory / name, [_BAD_NAME]) for name in _misnamed_files(directory)]
    for suffix in SUFFIXES.values():
        with open_file_store(directory, suffix) as store:
            checks += [
                _check(store, directory, workflow_id, suffix) for workflow_id in store.list_workflows()
            ]
    checks.sort(key=lambda check: check.path.name)
    bad = [check for check in checks if check.problems]
    if args.json:
        print_json([check.to_json() for check in checks])
    else:
        for check in checks:
            if check.problems:
                problems = "; ".join(printable(problem) for problem in check.problems)
                say(f"BAD  {printable(str(check.path))}: {problems}")
            elif args.verbose:
                say(f"ok   {printable(str(check.path))}")
        say(f"{len(checks)} file(s) checked, {len(checks) - len(bad)} ok, {len(bad)} bad")
    if bad:
        raise ProblemsFound
    return 0


def _misnamed_files(directory: Path) -> list[str]:
    """State-file names whose stem is not a workflow id (hidden and temp files are skipped)."""
    names = []
    with os.scandir(directory) as entries:
        for entry in entries:
            stem, suffix = os.path.splitext(entry.name)
            if (
                suffix in SUFFIXES.values()
                and not entry.name.startswith(".")
                and not is_valid_workflow_id(stem)
                and entry.is_file(follow_symlinks=False)
            ):
                names.append(entry.name)
    return names


def _check(store: WorkflowStore, directory: Path, workflow_id: str, suffix: str) -> FileCheck:
    check = FileCheck(directory / (workflow_id + suffix))
    try:
        data = store.load(workflow_id)
        with data.lock:
            data.columns().decode_deferred()  # in full: columns a load leaves for first access too
    except (FlowWorkbenchError, OSError) as error:
        check.problems.append(str(error))
    else:
        check.problems += structure_problems(data)
    return check


def structure_problems(data: WorkflowData) -> list[str]:
    """Inconsistencies no run or recovery step produces: a malformed DAG, entries of unknown nodes."""
    problems = []
    structure = data.dag_structure
    with data.lock:
        columns = data.columns()
        known = set(columns.statuses)
        orphans = {
            "outputs": [n for n in columns.outputs if n not in known],
            "history": [
                n
                for column in (columns.attempts, columns.started_at, columns.finished_at, columns.errors)
                for n in column
                if n not in known
            ],
            "timer waits": [n for n in columns.waits if n not in known],
        }
    if structure is not None:
        try:
            DAG.from_structure(structure).validate()
        except DAGError as error:
            problems.append(f"stored DAG is malformed: {error}")
        outside = [name for name in known if name not in structure]
        if outside:
            problems.append(f"status of node(s) not in the stored DAG: {_names(outside)}")
    for what, names in orphans.items():
        if names:
            problems.append(f"{what} of node(s) without a status: {_names(list(dict.fromkeys(names)))}")
    return problems


def _names(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(map(repr, names[:limit]))
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
