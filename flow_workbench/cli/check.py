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
from ..ids import workflow_id_problem
from ..stores import StateFormat, WorkflowStore
from ..stores._atomic import TEMP_SUFFIX
from ..stores.open import open_file_store
from ..validation import is_utf8
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
        "with their reasons; exit code 1 if there is any. Warnings (exit code unchanged): unknown "
        "status texts kept from a Go JSON file, a Go FlatBuffers file whose inner id is not its file "
        "name, strings that are not UTF-8 (only the Go FlatBuffers layout can save them).",
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
    #: Things that load and save fine but deserve a look (they never change the exit code).
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "file": str(self.path),
            "ok": not self.problems,
            "problems": self.problems,
            "warnings": self.warnings,
        }


def run_validate(args: argparse.Namespace) -> int:
    directory = existing_directory(args.dir)
    checks = [
        FileCheck(directory / name, [f"{_BAD_NAME}: {reason}"]) for name, reason in _misnamed_files(directory)
    ]
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
            for warning in check.warnings:
                say(f"WARN {printable(str(check.path))}: {printable(warning)}")
        say(f"{len(checks)} file(s) checked, {len(checks) - len(bad)} ok, {len(bad)} bad")
    if bad:
        raise ProblemsFound
    return 0


def _misnamed_files(directory: Path) -> list[tuple[str, str]]:
    """(name, reason) of state files whose stem is not a workflow id (temp files are skipped)."""
    names = []
    with os.scandir(directory) as entries:
        for entry in entries:
            stem, dot, extension = entry.name.rpartition(".")
            problem = workflow_id_problem(stem) if dot else None
            if (
                dot + extension in SUFFIXES.values()
                and not entry.name.endswith(TEMP_SUFFIX)
                and problem is not None
                and entry.is_file(follow_symlinks=False)
            ):
                names.append((entry.name, problem))
    return names


def _check(store: WorkflowStore, directory: Path, workflow_id: str, suffix: str) -> FileCheck:
    check = FileCheck(directory / (workflow_id + suffix))
    try:
        data = store.load(workflow_id)
        with data.read_columns() as columns:
            columns.decode_deferred()  # in full: columns a load leaves for first access too
        summary = store.summary(workflow_id)
    except (FlowWorkbenchError, OSError) as error:
        check.problems.append(str(error))
    else:
        check.problems += structure_problems(data)
        check.warnings += go_warnings(data, summary.workflow_id, summary.format)
    return check


def go_warnings(data: WorkflowData, stored_id: str, layout: StateFormat) -> list[str]:
    """What loads and saves, but only as it is or only in some layouts (Go files' oddities)."""
    warnings = []
    unknown = data.unknown_statuses()
    if unknown:
        shown = ", ".join(f"{node!r} = {text!r}" for node, text in list(unknown.items())[:5])
        warnings.append(
            f"unknown status text(s), kept as they are: {shown}"
            + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
            + "; the engine runs this workflow only once they are reset or marked"
        )
    if stored_id != data.id and layout is StateFormat.GO_FLATBUFFERS:
        warnings.append(
            f"the file holds workflow id {stored_id!r}; Go names it by its file ({data.id!r}), "
            "so does this library, and a save writes that id"
        )
    not_utf8 = _not_utf8(data)
    if not_utf8:
        warnings.append(
            f"string(s) that are not UTF-8 ({_names(not_utf8)}): kept byte for byte by the Go "
            "FlatBuffers layout; JSON and our FlatBuffers layout refuse to save them"
        )
    return warnings


def _not_utf8(data: WorkflowData) -> list[str]:
    """Where ``data`` holds strings with surrogates (bytes of a Go string that are not UTF-8)."""
    found = []
    with data.read_columns() as columns:
        for what, values in (
            ("node", columns.statuses),
            ("data key", columns.data),
            ("output of", columns.outputs),
        ):
            for key, value in values.items():
                if not is_utf8(key) or (isinstance(value, str) and not is_utf8(value)):
                    found.append(f"{what} {key!r}")
    return found


def structure_problems(data: WorkflowData) -> list[str]:
    """Inconsistencies no run or recovery step produces: a malformed DAG, entries of unknown nodes."""
    problems = []
    structure = data.dag_structure
    with data.read_columns() as columns:
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
