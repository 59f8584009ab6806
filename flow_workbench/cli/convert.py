"""The ``convert`` command: copy workflows between JSON, FlatBuffers and the Go FlatBuffers layout."""

from __future__ import annotations

import argparse
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FlowWorkbenchError
from ..ids import validate_workflow_id
from ..stores import WorkflowStore
from ..stores._versions import is_stale
from ..stores.open import open_file_store
from ._common import (
    SUFFIXES,
    WRITE_FORMATS,
    Commands,
    ProblemsFound,
    UsageError,
    existing_directory,
    note,
    print_json,
    printable,
    say,
)

#: What the Go layout cannot hold, by ``StateColumns`` field, in words.
GO_LOSSES = {
    "attempts": "node history",
    "started_at": "node history",
    "finished_at": "node history",
    "errors": "node history",
    "error_types": "node history",
    "dag": "DAG structure",
    "audit": "audit log",
    "attempt_log": "attempt log",
    "runs": "run history",
    "code_versions": "code versions",
    "data": "non-scalar data values (kept as JSON text)",
    "outputs": "string outputs whose text reads as JSON (they read back as that JSON value)",
    "statuses": "unknown status texts (written as pending, as Go does)",
    "raw_statuses": "unknown status texts (written as pending, as Go does)",
}


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
    convert = commands.add_parser(
        "convert",
        parents=[common],
        help="convert workflows between JSON, FlatBuffers and the Go FlatBuffers layout",
        description="Copy workflows from SRC (a folder, or one .json/.fb file) into the folder DST in "
        "another format, keeping every value exactly. Each copy is read back and compared with its "
        "source. The Go layout (go-fb) cannot hold the version, creation time, node history, DAG "
        "structure or audit log: what a workflow loses is reported as a warning. The copy gets a new version "
        "number and save time.",
    )
    convert.add_argument("src", type=Path, metavar="SRC", help="folder of state files, or one state file")
    convert.add_argument("dst", type=Path, metavar="DST", help="target folder (created if missing)")
    convert.add_argument("--to", required=True, choices=list(WRITE_FORMATS), help="target format")
    convert.add_argument(
        "--id", dest="ids", action="append", metavar="ID", help="convert only this workflow (repeatable)"
    )
    convert.add_argument(
        "--from", dest="source_format", choices=sorted(SUFFIXES), help="read only files of this format"
    )
    convert.add_argument("--overwrite", action="store_true", help="replace workflows that exist in DST")
    convert.add_argument("--json", action="store_true", help="print the results as JSON")
    convert.set_defaults(handler=run_convert)


@dataclass
class Outcome:
    """What happened to one workflow."""

    workflow_id: str
    source: str
    target: str = ""
    lost: list[str] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.workflow_id,
            "source": self.source,
            "target": self.target or None,
            "lost": self.lost,
            "error": self.error,
        }


def run_convert(args: argparse.Namespace) -> int:
    suffix, go_layout = WRITE_FORMATS[args.to]
    sources = _sources(args)
    outcomes = []
    with contextlib.ExitStack() as stack:
        target = stack.enter_context(open_file_store(args.dst, suffix, go_layout=go_layout))
        readers: dict[tuple[Path, str], WorkflowStore] = {}  # one store per source folder and suffix
        for workflow_id, candidates in sources.items():
            outcome = Outcome(workflow_id, " and ".join(str(path) for path in candidates))
            try:
                if len(candidates) != 1:
                    raise UsageError("both a .fb and a .json file exist; choose one with --from")
                path = candidates[0]
                outcome.source = str(path)
                outcome.target = str(args.dst / (workflow_id + suffix))
                key = (path.parent, path.suffix)
                if key not in readers:
                    readers[key] = stack.enter_context(open_file_store(*key))
                outcome.lost = _convert_one(path, readers[key], target, args)
            except (FlowWorkbenchError, OSError, UsageError) as error:
                outcome.error = str(error)
            outcomes.append(outcome)
    _report(args, outcomes)
    if any(outcome.error for outcome in outcomes):
        raise ProblemsFound
    return 0


def _sources(args: argparse.Namespace) -> dict[str, list[Path]]:
    """Workflow id -> its source files (two when both a .fb and a .json file exist)."""
    src: Path = args.src
    if src.is_file():
        if args.ids or args.source_format:
            raise UsageError("--id and --from apply to a source folder, not to a single file")
        if src.suffix not in SUFFIXES.values():
            raise UsageError(f"{src} is not a .json or .fb state file")
        return {validate_workflow_id(src.stem): [src]}
    existing_directory(src)
    suffixes = [SUFFIXES[args.source_format]] if args.source_format else list(SUFFIXES.values())
    found: dict[str, list[Path]] = {}
    for suffix in suffixes:
        with open_file_store(src, suffix) as store:
            for workflow_id in store.list_workflows():
                found.setdefault(workflow_id, []).append(src / (workflow_id + suffix))
    if args.ids:
        wanted = {validate_workflow_id(workflow_id): found.get(workflow_id, []) for workflow_id in args.ids}
        missing = [workflow_id for workflow_id, files in wanted.items() if not files]
        if missing:
            raise UsageError(f"no state file for {', '.join(map(repr, missing))} in {src}")
        return wanted
    if not found:
        raise UsageError(f"no .fb or .json state files in {src}")
    return dict(sorted(found.items()))


def _convert_one(
    path: Path, source: WorkflowStore, target: WorkflowStore, args: argparse.Namespace
) -> list[str]:
    """Copy one workflow and read it back; returns what the target layout could not keep."""
    workflow_id = path.stem
    suffix, go_layout = WRITE_FORMATS[args.to]
    if path.suffix == suffix and (args.dst / path.name).resolve() == path.resolve():
        raise UsageError("source and target are the same file; choose another DST")
    data = source.load(workflow_id)
    original = data.copy()
    if target.exists(workflow_id):
        if not args.overwrite:
            raise UsageError(f"{workflow_id!r} exists in {args.dst} (pass --overwrite to replace it)")
        # Replacing is a deliberate overwrite: start from the stored version (or a Go file's
        # content token) so the save's compare-and-set accepts it, and replace the file
        # atomically like any other save.
        stored = target.load(workflow_id).version  # a Go file's content token has no summary
        if is_stale(data.version, stored):
            data.version = stored
    target.save(data)
    copy = target.load(workflow_id)
    ignored = ["version", "updated_at"] + (["created_at"] if go_layout else [])
    differences = original.differences(copy, ignore=ignored)
    if not go_layout and differences:
        raise FlowWorkbenchError(f"the copy differs from its source in: {', '.join(differences)}")
    return list(dict.fromkeys(GO_LOSSES.get(name, name) for name in differences))


def _report(args: argparse.Namespace, outcomes: list[Outcome]) -> None:
    if args.json:
        print_json([outcome.to_json() for outcome in outcomes])
        return
    for outcome in outcomes:
        if outcome.error:
            note(f"error: {outcome.workflow_id}: {outcome.error}")
            continue
        say(f"{printable(outcome.source)} -> {printable(outcome.target)}")
        if outcome.lost:
            note(f"warning: {outcome.workflow_id}: the Go layout cannot hold its {', '.join(outcome.lost)}")
    converted = sum(1 for outcome in outcomes if not outcome.error)
    failed = len(outcomes) - converted
    say(f"converted {converted} workflow(s) to {args.to}" + (f", {failed} failed" if failed else ""))
