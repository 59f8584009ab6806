"""pandas tables of stored workflows, nodes, key-values, audit entries and store metrics."""

from __future__ import annotations

import html
import json
import math
import os
import re
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd
from pandas.io.formats.style import Styler

from ..artifacts import ArtifactRef, artifact_preview
from ..dag import DAG
from ..data import WorkflowData, plain_output
from ..dot import STATUS_STYLES, graph_nodes, shorten
from ..errors import CorruptStateError
from ..presentation import display_text, unique_labels
from ..status import TERMINAL_STATUSES, NodeStatus
from ..stores.base import StateFormat, WorkflowStore
from ..stores.files import FileStore
from ..stores.folder import FolderEntry, scan_folder
from ._sources import StateSource, load_state

__all__ = [
    "EMPTY",
    "DamagedOutput",
    "FORMAT_LABELS",
    "InlineStyler",
    "STATUS_ORDER",
    "STATUS_DTYPE",
    "audit_frame",
    "data_frame",
    "datetimes",
    "escaped_style",
    "format_datetime",
    "inline_styles",
    "metrics_frame",
    "node_row_names",
    "nodes_frame",
    "output_preview",
    "preview",
    "shown_outputs",
    "style_nodes",
    "style_workflows",
    "table_html",
    "entry_path",
    "workflow_entries",
    "workflows_frame",
    "workflows_table",
]

#: Statuses in lifecycle order: not started, in progress, finished well, finished otherwise,
#: then the Go library's saga outcomes. Sorting a nodes table by status follows this order.
STATUS_ORDER: tuple[NodeStatus, ...] = (
    NodeStatus.PENDING,
    NodeStatus.WAITING,
    NodeStatus.RUNNING,
    NodeStatus.COMPLETED,
    NodeStatus.BYPASSED,
    NodeStatus.SKIPPED,
    NodeStatus.FAILED,
    NodeStatus.COMPENSATED,
    NodeStatus.COMPENSATION_FAILED,
    NodeStatus.UNKNOWN,
)
STATUS_DTYPE = pd.CategoricalDtype([s.value for s in STATUS_ORDER], ordered=True)

#: How the ``format`` column names where a state came from.
FORMAT_LABELS: dict[StateFormat, str] = {
    StateFormat.JSON: "ours JSON",
    StateFormat.FLATBUFFERS: "ours FlatBuffers",
    StateFormat.GO_JSON: "Go JSON",
    StateFormat.GO_FLATBUFFERS: "Go FlatBuffers",
    StateFormat.REDIS: "redis",
    StateFormat.MEMORY: "memory",
}

#: Longest value preview in a table cell (the full value stays in the store).
PREVIEW_CHARS = 60
#: Rows a table draws as HTML by default (a frame may hold a whole folder or a huge DAG).
MAX_HTML_ROWS = 500
#: Unix seconds pandas holds as nanosecond timestamps (1677 to 2262), a second inside the limit;
#: a time outside it (a damaged or hostile file's 1e300) shows as unknown instead of raising.
_LIMIT_SECONDS = pd.Timestamp.max.value / 1e9 - 1.0


def preview(value: Any, limit: int = PREVIEW_CHARS) -> str:
    """A stored value as one line of JSON, cut to ``limit`` characters, as shown (``display_text``:
    a lone surrogate of a Go string that is not UTF-8 reads ``\\udcff``)."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except ValueError:  # circular structures cannot come from a store, but a live state may hold one
        text = repr(value)
    text = display_text(" ".join(text.split()) if "\n" in text else text)
    return shorten(text, limit)


def output_preview(value: Any, limit: int = PREVIEW_CHARS) -> str:
    """An output as ``data.outputs(load_artifacts=False)`` gives it: an artifact (a DataFrame...)
    described from its reference alone (kind, shape, columns), never read; else ``preview``."""
    if isinstance(value, ArtifactRef):
        return shorten(display_text(" ".join(artifact_preview(value).split())), limit)
    if isinstance(value, DamagedOutput):
        return shorten(display_text(value), limit)
    return preview(value, limit)


class DamagedOutput(str):
    """What ``shown_outputs`` gives for an output whose stored form cannot be read: its error."""


def shown_outputs(data: WorkflowData) -> dict[str, Any]:
    """Every output as tables show it: artifacts (DataFrames...) as their ``ArtifactRef``, never
    read, so a lost one does not matter; an output whose stored reference is damaged is a
    ``DamagedOutput`` naming the problem instead of an error for the whole table."""
    try:
        return data.outputs(load_artifacts=False)
    except CorruptStateError:
        pass
    with data.read_columns() as columns:
        column = dict(columns.outputs)
    outputs: dict[str, Any] = {}
    for node, stored in column.items():
        try:
            one = {node: plain_output(stored)}
            outputs.update(data.artifact_stash.resolve_all(data.id, one, load=False))
        except CorruptStateError as error:
            outputs[node] = DamagedOutput(f"cannot be read: {error}")
    return outputs


def _shown(text: object) -> str | None:
    """A stored text as a table cell shows it; None stays missing."""
    return None if text is None else display_text(str(text))


def _seconds(value: object) -> float:
    """``value`` as seconds pandas can hold, else NaN: decoders of other people's files may hand
    over None, text, NaN, ints beyond float range or times millions of years away."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return math.nan
    try:
        seconds = float(value)
    except OverflowError:
        return math.nan
    return seconds if -_LIMIT_SECONDS < seconds < _LIMIT_SECONDS else math.nan


def _seconds_of_nanoseconds(value: object) -> float:
    """Unix nanoseconds (Go's ``UnixNano``) as seconds; NaN for anything else."""
    if not isinstance(value, int) or isinstance(value, bool):
        return math.nan
    try:
        return value / 1e9
    except OverflowError:  # beyond float range: surely not a time
        return math.nan


def datetimes(seconds: Sequence[object]) -> Any:
    """UTC datetimes of unix times; unknown, unrepresentable and 0 (the Go library never stamps
    its files) are NaT. Never raises."""
    values = [_seconds(value) or math.nan for value in seconds]
    return pd.to_datetime(pd.Series(values, dtype="float64"), unit="s", utc=True)


def _durations(started: Sequence[object], finished: Sequence[object]) -> Any:
    """Timedeltas of ``finished - started``; NaT where either is unknown or the span unrepresentable."""
    spans = [_seconds(_seconds(end) - _seconds(start)) for start, end in zip(started, finished, strict=True)]
    return pd.to_timedelta(pd.Series(spans, dtype="float64"), unit="s")


# --- stored workflows --------------------------------------------------------------------------


def workflow_entries(source: WorkflowStore | str | os.PathLike[str]) -> list[FolderEntry]:
    """Summaries of every stored workflow, each with its error instead when it cannot be read."""
    if isinstance(source, str | os.PathLike):
        return scan_folder(source)
    if isinstance(source, FileStore):  # one light scan of the store's folder, its suffix only
        return source.summaries()
    entries = []
    for workflow_id in source.list_workflows():
        try:
            summary = source.summary(workflow_id)
        except Exception as error:  # one unreadable state must not hide the others
            entries.append(FolderEntry("", workflow_id, None, str(error), type(error).__name__))
        else:
            entries.append(FolderEntry(summary.source, workflow_id, summary))
    return entries


def workflows_frame(source: WorkflowStore | str | os.PathLike[str]) -> Any:
    """One row per stored workflow of a folder or store; unreadable files are rows with an error.

    Columns: ``id``, ``format`` (ours/Go, JSON/FlatBuffers, redis, memory), one count column per
    status present (lifecycle order), ``nodes``, ``progress`` (fraction in a terminal status),
    ``failed_nodes``, ``updated`` (UTC; NaT when the file does not record it, as Go's do not),
    ``version``, ``size_bytes``, ``path`` and ``error``. A folder (or a file store) is read
    with ``scan_folder``'s light summaries, never a full decode per file.
    """
    return workflows_table(workflow_entries(source))


def entry_path(entry: FolderEntry) -> str:
    """The file (or key) a row of the workflows table stands for, unescaped."""
    return entry.path or (entry.summary.source if entry.summary else "")


def workflows_table(entries: Sequence[FolderEntry]) -> Any:
    """``workflows_frame`` of scanned entries, one row per entry in their order: the frame shows
    ids, paths and errors escaped (``display_text``), the entries keep the real ones."""
    present = {status for entry in entries if entry.summary for status in entry.summary.status_counts}
    statuses = [s.value for s in STATUS_ORDER if s.value in present]
    names = ("id", "format", *statuses, "nodes", "failed_nodes", "updated", "version", "size_bytes")
    columns: dict[str, list[Any]] = {name: [] for name in (*names, "path", "error")}
    for entry in entries:
        row = _workflow_row(entry, statuses)
        for name, values in columns.items():
            values.append(row.get(name))
    frame = pd.DataFrame(columns)
    for name in (*statuses, "nodes", "version", "size_bytes"):
        frame[name] = frame[name].astype("Int64")
    frame["updated"] = datetimes(columns["updated"])
    # WorkflowSummary.progress, computed per column: the fraction of nodes in a terminal status.
    terminal = [s.value for s in STATUS_ORDER if s in TERMINAL_STATUSES and s.value in statuses]
    done = frame[terminal].sum(axis=1, min_count=1) if terminal else frame["nodes"] * 0
    progress = (done / frame["nodes"]).mask(frame["nodes"].eq(0).fillna(False), 1.0)
    frame.insert(frame.columns.get_loc("nodes") + 1, "progress", progress.astype("float64"))
    return frame


def _workflow_row(entry: FolderEntry, statuses: Sequence[str]) -> dict[str, Any]:
    """One row of the workflows table; a summary that cannot be tabulated is a row with its error."""
    summary = entry.summary
    row: dict[str, Any] = {"id": display_text(entry.workflow_id), "path": display_text(entry_path(entry))}
    if summary is None:
        row["error"] = _shown(f"{entry.error_type}: {entry.error}" if entry.error_type else entry.error)
        return row
    try:
        counts = summary.status_counts
        values: dict[str, Any] = {
            "format": FORMAT_LABELS.get(summary.format, getattr(summary.format, "value", "?")),
            **{status: _count(counts.get(status, 0)) for status in statuses},
            "nodes": _count(summary.node_count),
            "failed_nodes": display_text(", ".join(map(str, summary.failed_nodes))),
            "updated": _seconds(summary.updated_at),
            "version": _count(summary.version),
            "size_bytes": _count(summary.size_bytes),
        }
    except Exception as error:  # one odd summary must not hide the other rows
        row["error"] = display_text(f"{type(error).__name__}: {error}")
        return row
    return row | values


def _count(value: object) -> int | None:
    """A count for an Int64 column: None unless an int that fits (a summary of a damaged file)."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not -(2**63) < value < 2**63:
        raise TypeError(f"not a count: {value!r}")
    return value


# --- one workflow ------------------------------------------------------------------------------


def nodes_frame(
    source: StateSource,
    workflow_id: str | None = None,
    *,
    dag: DAG | None = None,
    preview_chars: int = PREVIEW_CHARS,
) -> Any:
    """One row per node, indexed by node name as shown, in the DAG picture's order
    (``dot.graph_nodes``; ``node_row_names`` gives the real names, row by row).

    ``source`` is a ``WorkflowData``, a ``Workflow`` or ``RunResult``, a store plus
    ``workflow_id``, or a folder plus ``workflow_id`` (or the path of one state file). Columns:
    ``status`` (ordered categorical over every status), ``attempts``, ``started``, ``finished``
    (UTC), ``duration`` (timedelta of the last attempt), ``error``, ``error_type``, ``output``
    (JSON preview; an artifact such as a DataFrame described from its reference, never read),
    ``upstream`` and ``downstream`` (direct dependency and dependent counts; NA when the
    structure is unknown, as for Go files), plus ``status_text`` when a status is unknown (the
    text its file stores, e.g. ``bogus``) and ``wait_until`` when a Go timer is set (NaT when
    out of range). Nodes of ``dag`` the state has never seen are shown pending, as the engine
    treats them.

    Every text from the state is shown by ``presentation.display_text``: a lone surrogate (a Go
    string that is not UTF-8) reads ``\\udcff``, controls, bidi and zero-width characters are
    escaped too; names that then look alike get a `` (2)`` suffix, so rows never merge.
    """
    data, dag = load_state(source, workflow_id, dag)
    structure = dag.structure() if dag is not None else data.dag_structure
    statuses = data.node_statuses()
    names = node_row_names(data, dag)
    dependents: dict[str, int] = {}
    for deps in (structure or {}).values():
        for dep in deps:
            dependents[dep] = dependents.get(dep, 0) + 1
    outputs = shown_outputs(data)
    rows: dict[str, list[Any]] = {
        name: []
        for name in (
            "status",
            "attempts",
            "started",
            "finished",
            "error",
            "error_type",
            "output",
            "upstream",
            "downstream",
        )
    }
    for name in names:
        history = data.node_history(name)
        rows["status"].append(statuses.get(name, NodeStatus.PENDING).value)
        rows["attempts"].append(history.attempts)
        rows["started"].append(history.started_at)
        rows["finished"].append(history.finished_at)
        rows["error"].append(_shown(history.error))
        rows["error_type"].append(_shown(history.error_type))
        rows["output"].append(output_preview(outputs[name], preview_chars) if name in outputs else None)
        known = structure is not None and name in structure
        rows["upstream"].append(len(structure[name]) if known and structure is not None else None)
        rows["downstream"].append(dependents.get(name, 0) if known else None)
    frame = pd.DataFrame(rows, index=pd.Index(unique_labels(names), name="node", dtype="object"))
    frame["status"] = frame["status"].astype(STATUS_DTYPE)
    unknown = data.unknown_statuses()
    if unknown:
        texts = [_shown(unknown.get(name)) for name in names]
        frame.insert(
            frame.columns.get_loc("status") + 1, "status_text", pd.Series(texts, dtype="object").to_numpy()
        )
    frame["attempts"] = frame["attempts"].astype("int64")
    for column in ("started", "finished"):
        frame[column] = datetimes(rows[column]).to_numpy()
    frame.insert(
        frame.columns.get_loc("finished") + 1,
        "duration",
        _durations(rows["started"], rows["finished"]).to_numpy(),
    )
    for column in ("upstream", "downstream"):
        frame[column] = frame[column].astype("Int64")
    waits = data.waits
    if waits:
        # Go's timers store unix nanoseconds (timer.go writes UnixNano).
        fire_at = [_seconds_of_nanoseconds(waits.get(name)) for name in names]
        frame["wait_until"] = datetimes(fire_at).to_numpy()
    return frame


def node_row_names(data: WorkflowData, dag: DAG | None = None) -> list[str]:
    """The real node names of ``nodes_frame``'s rows, in its order (its index shows them escaped):
    what actions on a chosen row must use."""
    return [node.name for node in graph_nodes(data, dag)]  # the picture's order


def data_frame(source: StateSource, workflow_id: str | None = None, *, preview_chars: int = 80) -> Any:
    """The key-value data, one row per key (index ``key``, shown as ``nodes_frame`` shows names):
    a JSON ``value`` preview and its ``type``."""
    data, _ = load_state(source, workflow_id)
    items = data.items()
    return pd.DataFrame(
        {
            "value": [preview(value, preview_chars) for _, value in items],
            "type": [_type_name(value) for _, value in items],
        },
        index=pd.Index(unique_labels(key for key, _ in items), name="key", dtype="object"),
    )


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def audit_frame(source: StateSource, workflow_id: str | None = None) -> Any:
    """The manual edits recorded in the state (oldest first): when, what, which nodes, detail."""
    data, _ = load_state(source, workflow_id)
    entries = data.audit
    frame = pd.DataFrame(
        {
            "action": [_shown(entry.action) for entry in entries],
            "nodes": [_shown(", ".join(entry.nodes)) for entry in entries],
            "detail": [_shown(entry.detail) for entry in entries],
        },
        dtype="object",
    )
    frame.insert(0, "at", datetimes([entry.at for entry in entries]).to_numpy())
    return frame


def metrics_frame(store: WorkflowStore) -> Any:
    """The store's operation metrics (calls, failures, total/mean/max seconds, last error) by operation."""
    snapshot = store.metrics.snapshot()
    columns = ("calls", "failures", "total_seconds", "mean_seconds", "max_seconds", "last_error")
    frame = pd.DataFrame(
        {
            name: [_shown(row[name]) if name == "last_error" else row[name] for row in snapshot]
            for name in columns
        },
        index=pd.Index([row["operation"] for row in snapshot], name="operation", dtype="object"),
    )
    return frame.astype({"calls": "int64", "failures": "int64"})


# --- styled display ----------------------------------------------------------------------------


def _status_css(status: NodeStatus) -> str:
    style = STATUS_STYLES[status]
    return f"background-color: {style.fill}; color: {style.font_color}"


_CSS_BY_STATUS = {status.value: _status_css(status) for status in NodeStatus}


#: How every table shows a missing value (NaN, NaT, None, pd.NA alike).
EMPTY = "\u2014"


_NO_WRAP = "white-space: nowrap"
_WRAP_LONG = "min-width: 12em; max-width: 40em; overflow-wrap: anywhere"
#: Columns of free text: they wrap inside a width instead of widening the table without end.
_LONG_TEXT_COLUMNS = frozenset({"error", "output", "value", "detail", "last_error", "failed_nodes", "path"})


def format_datetime(value: Any) -> str:
    """A UTC timestamp to the millisecond (``2026-12-02 05:10:41.302 UTC``)."""
    if pd.isna(value):
        return EMPTY
    return f"{value:%Y-%m-%d %H:%M:%S}.{value.microsecond // 1000:03d} UTC"


def _format_duration(value: Any) -> str:
    """A duration in seconds to the millisecond (``0.302 s``): no "0 days 00:00:00.302000"."""
    if pd.isna(value):
        return EMPTY
    return f"{value.total_seconds():.3f} s"


class InlineStyler(Styler):  # type: ignore[misc]
    """A ``Styler`` whose notebook HTML carries its CSS in ``style`` attributes.

    JupyterLab's sanitizer (untrusted notebooks: every committed one) drops ``<style>`` blocks
    but keeps ``style`` attributes, so colours written inline survive a fresh clone.
    """

    def _repr_html_(self) -> str | None:
        rendered = super()._repr_html_()
        return None if rendered is None else inline_styles(rendered)


_STYLE_BLOCK = re.compile(r'<style type="text/css">\s*(.*?)</style>\s*', re.DOTALL)
_RULE = re.compile(r"([^{}]+)\{([^{}]*)\}")
_ID_ATTRIBUTE = re.compile(r'<(td|th|tr|table)\b([^>]*?)\sid="([^"]+)"')


def inline_styles(document: str) -> str:
    """A pandas ``Styler`` HTML table with its ``#id`` rules moved into ``style`` attributes.

    Rules with other selectors stay in a ``<style>`` block (trusted front ends still apply them).
    The declarations come from this module's styling functions, never from table contents.
    """
    block = _STYLE_BLOCK.search(document)
    if block is None:
        return document
    by_id: dict[str, list[str]] = {}
    leftover: list[str] = []
    for rule in _RULE.finditer(block.group(1)):
        selectors = [selector.strip() for selector in rule.group(1).split(",")]
        declarations = " ".join(rule.group(2).split())
        if all(selector.startswith("#") and " " not in selector for selector in selectors):
            for selector in selectors:
                by_id.setdefault(selector[1:], []).append(declarations.strip())
        else:
            leftover.append(rule.group(0))
    body = document[: block.start()] + document[block.end() :]

    def attach(match: re.Match[str]) -> str:
        css = by_id.get(match.group(3))
        start = match.group(0)
        if not css:
            return start
        return start + f' style="{html.escape(" ".join(css))}"'

    body = _ID_ATTRIBUTE.sub(attach, body)
    if leftover:
        body = '<style type="text/css">\n' + "\n".join(leftover) + "\n</style>\n" + body
    return body


def escaped_style(frame: Any, *, precision: int = 3) -> Any:
    """A pandas ``Styler`` of ``frame`` that HTML-escapes every cell and every row and column label.

    The one way a table of this package reaches HTML: names, errors, keys, outputs and paths come
    from files other people wrote, and an ``<img onerror=...>`` among them must stay text. Style
    it further with ``map``/``apply``; a later ``format`` call must pass ``escape="html"`` again.
    Timestamps show to the millisecond in UTC, durations in seconds (``0.302 s``) and every
    missing value as ``EMPTY``; its notebook HTML has its colours inline (``InlineStyler``).
    """
    styler = InlineStyler(frame).format(na_rep=EMPTY, precision=precision, escape="html")
    unbroken = []  # ids, times and durations never wrap; long texts (errors) do, within a width
    for column in frame.columns:
        dtype = frame[column].dtype
        if pd.api.types.is_datetime64_any_dtype(dtype):
            styler = styler.format(format_datetime, subset=[column], escape="html")
            unbroken.append(column)
        elif pd.api.types.is_timedelta64_dtype(dtype):
            styler = styler.format(_format_duration, subset=[column], escape="html")
            unbroken.append(column)
        elif pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
            # A crafted file can hold megabytes in one error or detail: cells show the start.
            styler = styler.format(_cell_text, subset=[column], na_rep=EMPTY, escape="html")
    if unbroken:
        styler = styler.map(lambda _: _NO_WRAP, subset=unbroken)
    texts = [column for column in frame.columns if column in _LONG_TEXT_COLUMNS]
    if texts:
        styler = styler.map(lambda _: _WRAP_LONG, subset=texts)
    styler = styler.map_index(lambda _: _NO_WRAP, axis=0)
    return styler.format_index(_cell_text, escape="html", axis=0).format_index(escape="html", axis=1)


#: Longest text a table cell or row label shows (the frame itself keeps the whole value).
MAX_CELL_CHARS = 2000


def _cell_text(value: Any) -> Any:
    return shorten(value, MAX_CELL_CHARS) if isinstance(value, str) else value


def table_html(
    frame: Any,
    *,
    empty: str = "no rows",
    style: Callable[[Any], Any] = escaped_style,
    max_rows: int = MAX_HTML_ROWS,
) -> str:
    """``frame`` as an HTML table through ``style`` (escaped, colours inline): its first
    ``max_rows`` rows, with a note saying how many there are; ``empty`` in italics when it has
    no rows."""
    if frame.empty:
        return f"<i>{html.escape(empty)}</i>"
    if len(frame) <= max_rows:
        return inline_styles(str(style(frame).to_html()))
    # Cut before styling: a Styler styles every row it is given, shown or not.
    note = f"<p><i>showing the first {max_rows} of {len(frame)} rows</i></p>"
    return note + inline_styles(str(style(frame.iloc[:max_rows]).to_html()))


def style_nodes(frame: Any) -> Any:
    """A pandas ``Styler`` of a ``nodes_frame``: status cells in the DAG picture's colours, text escaped."""
    return escaped_style(frame).map(lambda value: _CSS_BY_STATUS.get(str(value), ""), subset=["status"])


def style_workflows(frame: Any) -> Any:
    """A pandas ``Styler`` of a ``workflows_frame``: non-zero status counts coloured, errors in red,
    text escaped."""
    statuses = [column for column in frame.columns if column in _CSS_BY_STATUS]

    def count_css(column: Any) -> list[str]:
        css = _CSS_BY_STATUS[column.name]
        return [css if positive else "" for positive in column.fillna(0).gt(0)]

    styler = escaped_style(frame, precision=2)
    if statuses:
        styler = styler.apply(count_css, subset=statuses)
    return styler.map(lambda value: "color: #B00020; font-weight: bold" if value else "", subset=["error"])
