"""Timeline: a Gantt-like chart of when each node's attempts ran, coloured like the DAG picture."""

from __future__ import annotations

import html
import io
import re
from typing import Any, Literal

import matplotlib
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..dag import DAG
from ..data import AttemptOutcome, AttemptRecord, NodeHistory, WorkflowData
from ..dot import STATUS_STYLES, shorten
from ..engine import Workflow
from ..presentation import display_text
from ..status import NodeStatus
from ..stores.base import WorkflowStore
from .svg_display import svg_mimebundle
from .view import resolve_source

__all__ = ["Timeline"]

# Hatches are the greyscale cue, as border styles are in the DAG picture.
_HATCHES: dict[NodeStatus, str] = {
    NodeStatus.RUNNING: "//",
    NodeStatus.FAILED: "xx",
    NodeStatus.COMPENSATION_FAILED: "xx",
    NodeStatus.SKIPPED: "..",
    NodeStatus.WAITING: "\\\\",
}
#: Above this many rows the node names are left off the axis (the chart would be unreadable).
MAX_LABELLED_ROWS = 60
#: Longest node name on the axis (the detail pane and the DAG picture's tooltip keep it whole).
MAX_AXIS_CHARS = 32
#: How an earlier attempt of a retried node is drawn, by its outcome (the last attempt is drawn
#: in the node's status).
_OUTCOME_STATUS: dict[str, NodeStatus] = {
    AttemptOutcome.COMPLETED: NodeStatus.COMPLETED,
    AttemptOutcome.RUNNING: NodeStatus.RUNNING,
    AttemptOutcome.FAILED: NodeStatus.FAILED,
    AttemptOutcome.TIMEOUT: NodeStatus.FAILED,
    AttemptOutcome.CRASHED: NodeStatus.FAILED,
    AttemptOutcome.CANCELLED: NodeStatus.PENDING,
    AttemptOutcome.INTERRUPTED: NodeStatus.PENDING,
}
#: Element id prefix of a shortened axis label; ``svg`` gives it a ``<title>`` with the full name.
_LABEL_GID = "fw-timeline-label-"
_LABEL_GROUP = re.compile(rf'<g id="{_LABEL_GID}(\d+)">')
#: The shortest bar drawn, as a share of the chart's time span: a 1 ms node stays visible.
MIN_BAR_SHARE = 0.004


def _segments(
    history: NodeHistory, status: NodeStatus, log: tuple[AttemptRecord, ...]
) -> list[tuple[float, float | None, NodeStatus]]:
    """(start, finish, drawn status) of each attempt of the node's latest run, oldest first.

    Without an attempt log (Go files, files written before it existed) the history's last attempt
    is the only segment. The last segment takes the node's status (a completed retry is green).
    """
    if not log:
        assert history.started_at is not None
        return [(history.started_at, history.finished_at, status)]
    latest = [attempt for attempt in log if attempt.run_id == log[-1].run_id]
    segments = [
        (a.started_at, a.finished_at, _OUTCOME_STATUS.get(a.outcome, NodeStatus.UNKNOWN)) for a in latest
    ]
    start, finish, _ = segments[-1]
    segments[-1] = (start, finish, status)
    return segments


class Timeline:
    """One row per node: a bar segment per attempt of the node's latest run (from its attempt
    log; earlier attempts coloured by outcome, the last by the node's status), or one bar from
    the stored start to finish when there is no log. Running nodes end at the last save, skipped
    ones are a mark at skip time, a started attempt that never finished a mark where it started."""

    def __init__(
        self, source: Workflow | WorkflowData | DAG | str, store: WorkflowStore | None = None
    ) -> None:
        data, _, title = resolve_source(source, store)
        if data is None:
            raise ValueError("a timeline needs a state: run the workflow first, or pass its id and store")
        self.data = data
        self.title = title or data.id
        statuses = data.node_statuses()
        self.rows: list[tuple[str, NodeStatus, NodeHistory]] = sorted(
            (
                (node, statuses[node], history)
                for node, history in data.history().items()
                if node in statuses and (history.started_at is not None or history.finished_at is not None)
            ),
            key=lambda row: (row[2].started_at or row[2].finished_at or 0.0, row[0]),
        )

    def figure(self) -> Figure:
        """The chart as a matplotlib Figure (no pyplot: nothing global changes)."""
        rows = self.rows
        height = min(40.0, 1.2 + 0.25 * max(1, len(rows)))
        figure = Figure(figsize=(9.0, height), layout="constrained")
        axes = figure.add_subplot()
        origin = min((h.started_at or h.finished_at or 0.0) for _, _, h in rows) if rows else 0.0
        ends = [h.finished_at for _, _, h in rows if h.finished_at is not None]
        starts = [h.started_at for _, _, h in rows if h.started_at is not None]
        # A running node's bar ends at the state's last save (the docstring's promise), never at
        # "now": a state read days later would otherwise draw a bar of days.
        end_of_running = max([self.data.updated_at or 0.0, *ends, *starts, origin])
        running = any(status is NodeStatus.RUNNING for _, status, _ in rows)
        span = max([*ends, end_of_running if running else origin, origin + 1e-3]) - origin
        minimum = span * MIN_BAR_SHARE
        logs = self.data.attempt_logs()
        present = dict.fromkeys(status for _, status, _ in rows)  # the legend: statuses drawn
        for row, (name, status, history) in enumerate(rows):
            if history.started_at is None:  # skipped: never started, only marked when skipped
                axes.plot(
                    [(history.finished_at or origin) - origin],
                    [row],
                    marker="|",
                    markersize=12,
                    color="#000000",
                )
                continue
            for start, finished, drawn in _segments(history, status, logs.get(name, ())):
                if finished is None and drawn is not NodeStatus.RUNNING:
                    # started, never finished, not running (a retry was abandoned, or the
                    # process died): a mark where it started, not a bar up to "now"
                    axes.plot([start - origin], [row], marker=">", markersize=8, color="#000000")
                    continue
                style = STATUS_STYLES[drawn]
                present[drawn] = None
                finish = finished if finished is not None else end_of_running
                axes.barh(
                    row,
                    max(finish - start, minimum),
                    left=start - origin,
                    height=0.7,
                    color=style.fill,
                    edgecolor="#000000",
                    linewidth=style.pen_width * 0.6,
                    linestyle="--" if style.border == "dashed" else ":" if style.border == "dotted" else "-",
                    hatch=_HATCHES.get(drawn),
                )
        axes.set_ylim(max(len(rows), 1) - 0.5, -0.5)
        if not rows:  # e.g. a Go file: the Go library records no times
            axes.text(0.5, 0.5, "no node has recorded times", ha="center", transform=axes.transAxes)
        if len(rows) <= MAX_LABELLED_ROWS:
            labels = [
                f"{STATUS_STYLES[status].glyph} {shorten(display_text(name), MAX_AXIS_CHARS)}"
                + (f" ({h.attempts} attempts)" if h.attempts > 1 else "")
                for name, status, h in rows
            ]
            # parse_math=False: a node named "$x$" is a name, not a formula.
            axes.set_yticks(range(len(rows)), labels=labels, parse_math=False)
            for row, (text, (name, _, _)) in enumerate(zip(axes.get_yticklabels(), rows, strict=True)):
                if shorten(display_text(name), MAX_AXIS_CHARS) != display_text(name):
                    text.set_gid(f"{_LABEL_GID}{row}")  # ``svg`` adds the full name as its <title>
        else:
            axes.set_yticks([])
            axes.set_ylabel(f"{len(rows)} nodes, by start time")
        axes.set_xlabel("seconds since the first start")
        axes.set_title(shorten(display_text(self.title), 120), loc="left")
        axes.title.set_parse_math(False)
        axes.grid(axis="x", alpha=0.3)
        handles = [
            Patch(facecolor=STATUS_STYLES[s].fill, edgecolor="#000000", hatch=_HATCHES.get(s), label=s.value)
            for s in NodeStatus
            if s in present
        ]
        if handles:
            # Outside the axes, one row under the chart: inside, it hid the last bars (usually
            # the failed ones, which start last).
            figure.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize="small")
        return figure

    def _save(self, format: Literal["svg", "png"]) -> bytes:
        buffer = io.BytesIO()
        # Text stays text in the SVG (smaller, searchable); a fixed hash salt keeps the output stable.
        with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "flow-workbench"}):
            self.figure().savefig(buffer, format=format, dpi=100)
        return buffer.getvalue()

    def svg(self) -> str:
        """The chart as SVG; a shortened node name shows whole on hover (a ``<title>``)."""
        svg = self._save("svg").decode("utf-8")
        names = [name for name, _, _ in self.rows]

        def titled(match: re.Match[str]) -> str:
            full = html.escape(display_text(names[int(match.group(1))]))
            return f"{match.group(0)}<title>{full}</title>"

        return _LABEL_GROUP.sub(titled, svg)

    def png(self) -> bytes:
        return self._save("png")

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None, **kwargs: Any) -> dict[str, str]:
        return svg_mimebundle(self.svg(), repr(self), "fw-timeline")

    def __repr__(self) -> str:
        return f"<Timeline {self.title!r}: {len(self.rows)} nodes>"
