"""One node in detail: status, attempts, times, the full error, output, neighbours and audit entries."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..artifacts import ArtifactRef
from ..dag import DAG
from ..data import ATTEMPT_LOG_CAP, AttemptRecord, WorkflowData
from ..dot import STATUS_STYLES, format_duration, format_wait, shorten, status_label
from ..errors import CorruptStateError
from ..presentation import display_text
from ..status import NodeStatus
from .tables import (
    EMPTY,
    DamagedOutput,
    datetimes,
    format_datetime,
    output_preview,
    shown_outputs,
    table_html,
)

__all__ = ["HEAD_ROWS", "MAX_OUTPUT_CHARS", "node_details_html"]

#: Longest output shown in full in the pane (the store keeps it whole).
MAX_OUTPUT_CHARS = 4000
#: Rows of a DataFrame (or Series) output the pane shows.
HEAD_ROWS = 5
_PRE = "<pre style='margin: 0; white-space: pre-wrap'>"


def _time(seconds: object) -> str:
    """A stored unix time as the tables show it (to the millisecond, UTC; unknown: ``EMPTY``)."""
    return format_datetime(datetimes([seconds]).iloc[0])


def _text(text: str) -> str:
    """A long text from the file (an error, a traceback) escaped, cut to ``MAX_OUTPUT_CHARS``:
    writers bound them, a crafted file need not."""
    return html.escape(display_text(shorten(text, MAX_OUTPUT_CHARS)))


def _output(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, indent=2, default=repr)
    except ValueError:
        text = repr(value)
    text = display_text(text)
    if len(text) > MAX_OUTPUT_CHARS:
        text = text[: MAX_OUTPUT_CHARS - 1] + "\u2026"
    return text


def _artifact_html(data: WorkflowData, name: str, ref: ArtifactRef) -> str:
    """An artifact output: its description, and the first rows of a DataFrame or Series (read
    now); a missing or damaged artifact is said plainly, never raised."""
    described = html.escape(output_preview(ref, MAX_OUTPUT_CHARS))
    try:
        value = data.get_output(name)
    except CorruptStateError as error:
        problem = html.escape(display_text(f"the artifact is missing or damaged: {error}"))
        return f"{described}<div style='color: #B00020'>{problem}</div>"
    head = getattr(value, "head", None)
    if not callable(head):  # an array or a registered type: the description says what it is
        return described
    try:
        rows = head(HEAD_ROWS)
        frame = rows.to_frame() if hasattr(rows, "to_frame") and not hasattr(rows, "columns") else rows
        shown = table_html(frame, empty="no rows")
    except Exception as error:  # a frame the table path cannot style (e.g. a repeated index)
        shown = html.escape(display_text(f"cannot show its rows: {type(error).__name__}: {error}"))
    return f"{described}<div>first {HEAD_ROWS} rows:</div>{shown}"


def _output_html(data: WorkflowData, name: str, value: Any) -> str:
    if isinstance(value, ArtifactRef):
        return _artifact_html(data, name, value)
    if isinstance(value, DamagedOutput):
        return f"<div style='color: #B00020'>{html.escape(display_text(value))}</div>"
    return f"{_PRE}{html.escape(_output(value))}</pre>"


def _names(names: Sequence[str]) -> str:
    if not names:
        return EMPTY
    return ", ".join(f"<code>{html.escape(display_text(name))}</code>" for name in names)


def _row(label: str, value_html: str) -> str:
    return (
        f'<tr><th style="text-align: left; padding-right: 1em; vertical-align: top">{html.escape(label)}</th>'
        f'<td style="text-align: left">{value_html}</td></tr>'
    )


def _cell(text: str) -> str:
    return f'<td style="text-align: left; padding: 0 0.6em 0 0; vertical-align: top">{text}</td>'


def _attempts_html(log: Sequence[AttemptRecord]) -> str:
    """The node's attempt log as a table, oldest first, and under it the traceback of the newest
    attempt that kept one (only failed ones do)."""
    header = "".join(
        f'<th style="text-align: left; padding: 0 0.6em 0 0">{label}</th>'
        for label in ("run", "attempt", "started", "duration", "outcome", "error")
    )
    body = []
    # Writers keep ATTEMPT_LOG_CAP attempts; a crafted file may hold more: show the newest.
    for attempt in log[-ATTEMPT_LOG_CAP:]:
        kind = f"{attempt.error_type}: " if attempt.error_type else ""
        error = _text(kind + attempt.error) if attempt.error is not None else EMPTY
        duration = attempt.duration
        body.append(
            "<tr>"
            + _cell(f"<code>{html.escape(display_text(attempt.run_id))}</code>")
            + _cell(str(attempt.number))
            + _cell(_time(attempt.started_at))
            + _cell(format_duration(duration) if duration is not None else EMPTY)
            + _cell(html.escape(display_text(attempt.outcome)))
            + _cell(error)
            + "</tr>"
        )
    parts = [
        "<div>attempts of this node (oldest first):</div>",
        f"<table style='border-collapse: collapse'><tr>{header}</tr>{''.join(body)}</table>",
    ]
    newest = next((a for a in reversed(log) if a.traceback), None)
    if newest is not None and newest.traceback:
        run = html.escape(display_text(newest.run_id))
        parts.append(
            f"<div>traceback of the newest failed attempt (run <code>{run}</code>, "
            f"attempt {newest.number}):</div>"
            "<pre class='fw-traceback' style='white-space: pre-wrap; user-select: text; "
            "border-left: 4px solid #D55E00; padding: 4px 8px; margin: 2px 0'>"
            f"{_text(newest.traceback)}</pre>"
        )
    return "".join(parts)


def _structure(data: WorkflowData | None, dag: DAG | None) -> Mapping[str, Sequence[str]] | None:
    if dag is not None:
        return dag.structure()
    return data.dag_structure if data is not None else None


def node_details_html(data: WorkflowData | None, name: str, dag: DAG | None = None) -> str:
    """The detail pane of node ``name`` as HTML (every stored string shown by ``display_text``
    and escaped; inline styles only, so it survives an untrusted notebook's sanitiser). The error
    sits in a ``<pre>`` to copy; an unknown status shows its stored text, a Go timer its fire
    time, and a DataFrame output its first rows."""
    status = (data.node_statuses().get(name) if data is not None else None) or NodeStatus.PENDING
    status_text = data.status_text(name) if data is not None else None
    history = data.node_history(name) if data is not None else None
    style = STATUS_STYLES[status]
    badge = (
        f'<span style="background-color: {style.fill}; color: {style.font_color}; padding: 0 4px; '
        f'border: 1px solid #000000">{html.escape(style.glyph)} '
        f"{html.escape(status_label(status, status_text))}</span>"
    )
    rows = [_row("status", badge)]
    if data is not None and name in data.waits:
        rows.append(_row("waits until", html.escape(format_wait(data.wait_until(name)))))
    if history is not None:
        rows.append(_row("attempts", str(history.attempts)))
        rows.append(_row("started", _time(history.started_at)))
        rows.append(_row("finished", _time(history.finished_at)))
        duration = history.duration
        rows.append(_row("duration", format_duration(duration) if isinstance(duration, float) else EMPTY))
    structure = _structure(data, dag)
    if structure is not None:
        upstream = list(structure.get(name, ()))
        downstream = [other for other, deps in structure.items() if name in deps]
        rows.append(_row("upstream", _names(upstream)))
        rows.append(_row("downstream", _names(downstream)))
    else:
        rows.append(_row("upstream / downstream", "unknown (the state stores no DAG structure)"))
    outputs = shown_outputs(data) if data is not None else {}
    if data is not None and name in outputs:
        rows.append(_row("output", _output_html(data, name, outputs[name])))
    error = history.error if history is not None else None
    parts = [
        f"<div class='fw-node-details'><b>{html.escape(display_text(name))}</b>",
        f"<table style='border-collapse: collapse'>{''.join(rows)}</table>",
    ]
    if error:
        kind = f"{history.error_type}: " if history is not None and history.error_type else ""
        parts.append(
            "<div>last error (select to copy):</div>"
            "<pre class='fw-error' style='white-space: pre-wrap; user-select: text; "
            "border-left: 4px solid #D55E00; padding: 4px 8px; margin: 2px 0'>"
            f"{_text(kind + error)}</pre>"
        )
    log = data.attempt_log(name) if data is not None else ()
    if log:
        parts.append(_attempts_html(log))
    audit = [entry for entry in (data.audit if data is not None else ()) if name in entry.nodes]
    if audit:
        items = "".join(
            f"<li>{_time(entry.at)} <b>{html.escape(display_text(entry.action))}</b>"
            + (f": {html.escape(display_text(entry.detail))}" if entry.detail else "")
            + "</li>"
            for entry in audit
        )
        parts.append(f"<div>audit entries that touched it:</div><ul style='margin: 0'>{items}</ul>")
    else:
        parts.append("<div>no audit entries touched it</div>")
    parts.append("</div>")
    return "".join(parts)
