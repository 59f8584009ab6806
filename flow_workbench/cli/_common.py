"""Shared plumbing of the commands: finding state files, opening their stores, formatting output."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeAlias

from ..data import WorkflowData
from ..errors import FlowWorkbenchError, WorkflowNotFoundError
from ..ids import validate_workflow_id
from ..presentation import printable as printable  # re-exported: the commands import it from here
from ..status import TERMINAL_STATUSES, NodeStatus
from ..stores import StateFormat, WorkflowStore, WorkflowSummary
from ..stores.open import FILE_KINDS, open_file_store

#: File suffix of each ``--format`` choice, in the order used when a workflow has both files.
SUFFIXES = {kind.name: kind.suffix for kind in FILE_KINDS}

#: Formats that can be written: file suffix, and whether the Go library's layout is used
#: ("go-fb"; JSON has none: ours is what Go reads). Listed json, fb, go-fb in ``--to``.
WRITE_FORMATS = {
    **{kind.name: (kind.suffix, False) for kind in reversed(FILE_KINDS)},
    **{f"go-{kind.name}": (kind.suffix, True) for kind in FILE_KINDS if kind.go_layout is not None},
}

FORMAT_LABELS = {
    StateFormat.JSON: "ours JSON",
    StateFormat.FLATBUFFERS: "ours FlatBuffers",
    StateFormat.GO_JSON: "Go JSON",
    StateFormat.GO_FLATBUFFERS: "Go FlatBuffers",
}

Handler = Callable[[argparse.Namespace], int]
#: What ``add_subparsers`` returns (only subscriptable for the type checker).
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class CommandError(Exception):
    """An expected failure with a one-line message for stderr (exit code 1)."""

    exit_code = 1


class UsageError(CommandError):
    """The command line asks for something impossible or ambiguous (exit code 2)."""

    exit_code = 2


class ProblemsFound(CommandError):
    """The command ran and already reported the problems it found (exit code 1, no message)."""


# --- stores ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StateFile:
    """One workflow's state file: the folder, the id and which of the two suffixes."""

    directory: Path
    workflow_id: str
    suffix: str

    @property
    def path(self) -> Path:
        return self.directory / (self.workflow_id + self.suffix)

    def store(self) -> WorkflowStore:
        return open_file_store(self.directory, self.suffix)

    def load(self) -> tuple[WorkflowData, StateFormat]:
        """The stored state and the layout of its file."""
        with self.store() as store:
            return store.load(self.workflow_id), store.summary(self.workflow_id).format


def add_workflow_arguments(parser: argparse.ArgumentParser, *, verb: str = "read") -> None:
    """The arguments naming one stored workflow: DIR, ID and ``--format`` (which file to ``verb``)."""
    parser.add_argument("dir", type=Path, metavar="DIR", help="folder of state files")
    parser.add_argument("id", metavar="ID", help="workflow id (the file name without .fb/.json)")
    parser.add_argument(
        "--format", choices=sorted(SUFFIXES), help=f"which file to {verb} when both ID.fb and ID.json exist"
    )


def existing_directory(path: Path) -> Path:
    """``path`` if it is a folder; the commands that read never create one."""
    if not path.is_dir():
        reason = "is not a directory" if path.exists() else "does not exist"
        raise FileNotFoundError(f"{path} {reason}")
    return path


def find_state_file(
    directory: Path, workflow_id: str, file_format: str | None, *, writing: bool
) -> StateFile:
    """The state file of ``workflow_id`` in ``directory``, optionally restricted to one format.

    When both ``<id>.fb`` and ``<id>.json`` exist, reading picks the one saved last (the .fb file
    on a tie) and says so on stderr; writing refuses to guess and asks for ``--format``.
    """
    existing_directory(directory)
    validate_workflow_id(workflow_id)
    suffixes = [SUFFIXES[file_format]] if file_format else list(SUFFIXES.values())
    found = [
        StateFile(directory, workflow_id, s) for s in suffixes if (directory / (workflow_id + s)).is_file()
    ]
    if not found:
        raise WorkflowNotFoundError(workflow_id, str(directory))
    if len(found) == 1:
        return found[0]
    names = " and ".join(f.path.name for f in found)
    if writing:
        raise UsageError(f"both {names} exist in {directory}; choose one with --format fb or --format json")
    times = {f: _updated_at(f) for f in found}
    chosen = max(found, key=lambda f: (times[f], f.suffix == ".fb"))
    if all(t == -math.inf for t in times.values()):
        why = "neither records when it was saved, so the .fb file is preferred"
    elif len(set(times.values())) == 1:
        why = "both were saved at the same time, so the .fb file is preferred"
    else:
        why = "it was saved last"
    note(f"both {names} exist; using {chosen.path.name} ({why}); choose with --format")
    return chosen


def _updated_at(state_file: StateFile) -> float:
    try:
        with state_file.store() as store:
            updated = store.summary(state_file.workflow_id).updated_at
    except (FlowWorkbenchError, OSError):
        return -math.inf  # an unreadable file never wins over a readable one
    return updated if updated is not None and updated > 0 else -math.inf


# --- output ------------------------------------------------------------------------------------


def say(text: str = "") -> None:
    """Print human output on stdout, line by line through ``printable`` (the line breaks kept)."""
    print("\n".join(printable(line) for line in text.split("\n")))


def note(message: str) -> None:
    """A one-line remark on stderr that does not change the exit code."""
    print(f"flow-workbench: {printable(message)}", file=sys.stderr)


def print_json(value: Any) -> None:
    text = json.dumps(value, ensure_ascii=False, indent=2)
    # A lone surrogate (a byte of a Go string that is not UTF-8) can only sit inside a JSON string,
    # where backslashreplace's "\udcff" is exactly its JSON escape: the output stays valid UTF-8.
    sys.stdout.write(text.encode("utf-8", "backslashreplace").decode("utf-8") + "\n")


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces; the last column is not padded.

    Cells are escaped by ``printable`` before the widths are measured, so a line break or a
    control in a cell can neither add a row nor shift the columns.
    """
    materialized = [list(headers), *([printable(cell) for cell in row] for row in rows)]
    widths = [max(len(row[i]) for row in materialized) for i in range(len(headers) - 1)]
    lines = []
    for row in materialized:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def format_label(state_format: StateFormat) -> str:
    return FORMAT_LABELS.get(state_format, state_format.value)


def format_time(timestamp: float | None) -> str:
    """Local date and time to the second, or '-' when unknown (see ``local_time``)."""
    moment = local_time(timestamp)
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


def local_time(timestamp: float | None) -> datetime | None:
    """The local time of a unix timestamp; None when not set (Go files leave times at 0), not
    finite, or out of range (a received file may hold 1e300; years past 9999 included)."""
    if timestamp is None or not math.isfinite(timestamp) or timestamp <= 0:
        return None
    try:
        return datetime.fromtimestamp(timestamp)
    except (OverflowError, OSError, ValueError):
        return None


#: Longest span between two times ``format_time`` shows (years 1 to 9999): a longer duration
#: comes from an out-of-range time and is unknown too.
LONGEST_DURATION = 9999 * 366 * 86400.0


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds) or abs(seconds) > LONGEST_DURATION:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_counts(counts: dict[str, int]) -> str:
    """'5 completed, 1 failed' in status order; '-' for no nodes."""
    ordered = [s.value for s in NodeStatus]
    ordered += sorted(name for name in counts if name not in ordered)
    return ", ".join(f"{counts[name]} {name}" for name in ordered if counts.get(name)) or "-"


def finished_nodes(summary: WorkflowSummary) -> int:
    """How many nodes are in a terminal status (what ``WorkflowSummary.progress`` divides)."""
    return sum(summary.status_counts.get(status.value, 0) for status in TERMINAL_STATUSES)


def format_progress(summary: WorkflowSummary) -> str:
    """Share of nodes in a terminal status, rounded down (in integers) so 100% means done."""
    if not summary.node_count:
        return "100%"
    return f"{finished_nodes(summary) * 100 // summary.node_count}%"


def format_value(value: Any, limit: int | None = 100) -> str:
    """A JSON rendering of a stored value on one line, shortened to ``limit`` characters."""
    return printable(shorten(json.dumps(value, ensure_ascii=False), limit))


def shorten(text: str, limit: int | None) -> str:
    """``text`` cut to ``limit`` characters, the last one an ellipsis; unchanged for no limit."""
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def one_line(text: str) -> str:
    """Messages of multi-line errors joined into one line, escaped by ``printable``."""
    return printable("; ".join(line.strip() for line in text.splitlines() if line.strip()))
