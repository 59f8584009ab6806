"""DOT source for a workflow picture (status colours plus a greyscale-safe cue) and rendering with `dot`."""

from __future__ import annotations

import html
import math
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import chain
from types import MappingProxyType
from typing import Literal, NamedTuple

from .dag import DAG
from .data import NodeHistory, WorkflowData
from .errors import GraphvizError, GraphvizNotFoundError, UnknownNodeError
from .presentation import display_text
from .status import NodeStatus

__all__ = [
    "ENGINE_STATUSES",
    "ONE_TIMESTAMP",
    "STATUS_STYLES",
    "GraphNode",
    "RenderFormat",
    "StatusStyle",
    "Timing",
    "detail_lines",
    "dot_quote",
    "format_duration",
    "format_milliseconds",
    "level_summary",
    "find_dot",
    "focus_nodes",
    "format_wait",
    "graph_nodes",
    "label_text",
    "moment_of_nanoseconds",
    "node_element_id",
    "present_statuses",
    "render",
    "shorten",
    "status_label",
    "status_style",
    "timing_of",
    "to_dot",
    "tooltip_details",
    "tooltip_text",
    "wait_text",
    "workflow_to_dot",
]

RenderFormat = Literal["svg", "png"]

#: Longest node name drawn in full; longer names are cut in the label (the tooltip keeps them whole).
MAX_LABEL_CHARS = 48
#: Edge-less pictures with more nodes are laid out as a grid by graphviz's osage engine: dot puts
#: unconnected nodes (every Go file's) in one rank, a single column that is unreadable and costs
#: dot quadratic time (16,000 nodes: 8 s); osage packs them in drawing order in linear time.
MAX_COLUMN_NODES = 24
#: Longest error message shown in a tooltip.
MAX_ERROR_CHARS = 400
DEFAULT_TIMEOUT = 60.0

_DASH_PATTERNS = {"dashed": "5,2", "dotted": "1,5", "solid": None}


@dataclass(frozen=True)
class StatusStyle:
    """How one status is drawn: a fill colour, and a border and glyph that survive greyscale printing.

    The second cue is deliberately made of things an SVG can change in place (dash pattern, stroke
    width, label text) rather than shape or peripheries, so the live view can restyle a laid-out
    picture without running ``dot`` again and still look exactly like a fresh rendering.
    """

    fill: str
    font_color: str
    border: Literal["solid", "dashed", "dotted"]
    pen_width: float
    glyph: str

    @property
    def dot_style(self) -> str:
        return "rounded,filled" if self.border == "solid" else f"rounded,filled,{self.border}"

    @property
    def dash_array(self) -> str | None:
        """The SVG ``stroke-dasharray`` dot writes for this border (None for a solid one)."""
        return _DASH_PATTERNS[self.border]


# Okabe-Ito colours (safe for the common colour-vision deficiencies); pending and skipped use neutral
# white and grey because they mean "nothing happened (yet)". Glyphs are all in DejaVu Sans.
STATUS_STYLES: Mapping[NodeStatus, StatusStyle] = MappingProxyType(
    {
        NodeStatus.PENDING: StatusStyle("#FFFFFF", "#000000", "dashed", 1.0, "\u25cb"),  # ○
        NodeStatus.RUNNING: StatusStyle("#56B4E9", "#000000", "solid", 2.5, "\u25b6"),  # ▶
        # Waiting's thick dotted border tells it from skipped's thin one in greyscale.
        NodeStatus.WAITING: StatusStyle("#F0E442", "#000000", "dotted", 3.0, "\u25f7"),  # ◷
        NodeStatus.COMPLETED: StatusStyle("#009E73", "#000000", "solid", 1.0, "\u2713"),  # ✓
        NodeStatus.BYPASSED: StatusStyle("#E69F00", "#000000", "dashed", 2.0, "\u21b7"),  # ↷
        NodeStatus.SKIPPED: StatusStyle("#D9D9D9", "#000000", "dotted", 1.0, "\u2298"),  # ⊘
        NodeStatus.FAILED: StatusStyle("#D55E00", "#000000", "solid", 3.0, "\u2717"),  # ✗
        NodeStatus.COMPENSATED: StatusStyle("#0072B2", "#FFFFFF", "solid", 1.0, "\u21ba"),  # ↺
        NodeStatus.COMPENSATION_FAILED: StatusStyle("#CC79A7", "#000000", "dashed", 3.0, "\u26a0"),  # ⚠
        # A status text no library knows (kept from a Go JSON file): the last Okabe-Ito colour.
        NodeStatus.UNKNOWN: StatusStyle("#000000", "#FFFFFF", "dotted", 3.0, "?"),
    }
)

#: Statuses the Python engine produces; a live view's legend always lists them.
ENGINE_STATUSES: tuple[NodeStatus, ...] = (
    NodeStatus.PENDING,
    NodeStatus.RUNNING,
    NodeStatus.COMPLETED,
    NodeStatus.FAILED,
    NodeStatus.SKIPPED,
)


def status_style(status: NodeStatus | None) -> StatusStyle:
    """The style of ``status``; a node the state has not seen yet is drawn as pending."""
    return STATUS_STYLES[NodeStatus.PENDING if status is None else status]


class GraphNode(NamedTuple):
    """One node of the picture: its position in the drawing, dependencies, status and history.

    A named tuple rather than a dataclass: views build one per node of large DAGs on every run.
    """

    position: int
    name: str
    dependencies: tuple[str, ...]
    status: NodeStatus | None
    history: NodeHistory | None = None
    #: The stored text of an UNKNOWN status (``"bogus"``), else None.
    status_text: str | None = None
    #: When the node's Go timer fires (``wait_text``), else None.
    wait: str | None = None
    #: Completed with code that has changed since (``code_versions.stale_nodes``), or downstream of such.
    stale: bool = False


def graph_nodes(data: WorkflowData | None = None, dag: DAG | None = None) -> list[GraphNode]:
    """The nodes to draw, in a stable order: the DAG's (or the stored structure's), then any others.

    The structure comes from ``dag`` when given, else from ``data.dag_structure``; without either
    (Go files store none) the nodes are drawn unconnected. Nodes the state knows but the structure
    does not, and dependencies nobody declares, are drawn too: the picture never hides a node.
    """
    if data is None and dag is None:
        raise TypeError("graph_nodes needs a WorkflowData, a DAG, or both")
    structure: dict[str, list[str]] = {}
    if dag is not None:
        structure = dag.structure()
    elif data is not None:
        structure = data.dag_structure or {}
    statuses = data.node_statuses() if data is not None else {}
    names = dict.fromkeys(chain(structure, chain.from_iterable(structure.values()), statuses))
    if data is None:  # the live view's case, once per run: keep it lean
        return [
            GraphNode(index, name, tuple(structure.get(name, ())), None) for index, name in enumerate(names)
        ]
    unknown = data.unknown_statuses()
    waits = data.waits
    stale: set[str] = set()
    if dag is not None and data.code_versions():  # only a DAG's code can tell; none stored: none stale
        from .code_versions import stale_nodes

        stale = set(stale_nodes(dag, data))
    return [
        GraphNode(
            index,
            name,
            tuple(structure.get(name, ())),
            statuses.get(name),
            data.node_history(name) if name in statuses else None,
            unknown.get(name),
            wait_text(data.wait_until(name)) if name in waits else None,
            name in stale,
        )
        for index, name in enumerate(names)
    ]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def moment_of_nanoseconds(nanoseconds: object) -> datetime | None:
    """Unix nanoseconds (a Go timer's ``UnixNano``) as an aware UTC datetime, as
    ``WorkflowData.wait_until`` reads them; None for anything else or out of range."""
    if type(nanoseconds) is not int:
        return None
    try:
        return _EPOCH + timedelta(microseconds=nanoseconds // 1000)
    except OverflowError:
        return None


def format_wait(moment: datetime | None) -> str:
    """A Go timer's fire time (``WorkflowData.wait_until``) to the millisecond in UTC; a stored
    time no datetime can hold (None) is unknown, never an error."""
    if moment is None:
        return "unknown (out of range)"
    return moment.replace(tzinfo=None).isoformat(sep=" ", timespec="milliseconds") + " UTC"


def wait_text(moment: datetime | None) -> str:
    """The tooltip and detail line of a waiting node: ``waits until 2030-01-01 00:00:00.000 UTC``."""
    return f"waits until {format_wait(moment)}"


def focus_nodes(
    nodes: Sequence[GraphNode],
    focus: str,
    *,
    upstream: bool = True,
    downstream: bool = True,
    depth: int | None = None,
) -> list[GraphNode]:
    """The part of a picture around ``focus``: the node, its ancestors (``upstream``) and its
    descendants (``downstream``), each at most ``depth`` edges away (None: all), renumbered.

    Raises ``UnknownNodeError`` (a ``LookupError``) when the picture has no node ``focus``.
    """
    by_name = {node.name: node for node in nodes}
    if focus not in by_name:
        raise UnknownNodeError([focus])
    if depth is not None and depth < 0:
        raise ValueError(f"depth must be >= 0 or None, not {depth}")
    dependents: dict[str, list[str]] = {}
    for node in nodes:
        for dependency in node.dependencies:
            dependents.setdefault(dependency, []).append(node.name)
    kept = {focus}
    for wanted, step in ((upstream, lambda name: by_name[name].dependencies), (downstream, dependents.get)):
        if not wanted:
            continue
        frontier, distance = [focus], 0
        while frontier and (depth is None or distance < depth):
            distance += 1
            following = []
            for name in frontier:
                for neighbour in step(name) or ():
                    if neighbour in by_name and neighbour not in kept:
                        kept.add(neighbour)
                        following.append(neighbour)
            frontier = following
    chosen = [node for node in nodes if node.name in kept]
    return [
        node._replace(position=index, dependencies=tuple(d for d in node.dependencies if d in kept))
        for index, node in enumerate(chosen)
    ]


def level_summary(nodes: Sequence[GraphNode]) -> list[GraphNode]:
    """A picture of a huge DAG that stays readable: one box per level and status.

    A node's level is its longest path from a node without dependencies. Each box is named like
    ``"level 3: 480 completed"``, carries that status, and depends on the boxes holding the
    dependencies of its nodes; the picture has at most levels x statuses boxes.
    """
    by_name = {node.name: node for node in nodes}
    levels: dict[str, int] = {}
    for node in nodes:  # iterative longest-path levels: no recursion limit on deep chains
        if node.name in levels:
            continue
        stack = [node.name]
        while stack:
            name = stack[-1]
            pending = [d for d in by_name[name].dependencies if d in by_name and d not in levels]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            deps = [levels[d] for d in by_name[name].dependencies if d in by_name]
            levels[name] = 1 + max(deps) if deps else 0
    groups: dict[tuple[int, NodeStatus], list[str]] = {}
    for node in nodes:
        key = (levels[node.name], node.status or NodeStatus.PENDING)
        groups.setdefault(key, []).append(node.name)
    order = sorted(groups, key=lambda key: (key[0], list(NodeStatus).index(key[1])))
    label = {key: f"level {key[0]}: {len(groups[key])} {key[1].value}" for key in order}
    group_of = {name: key for key in order for name in groups[key]}
    summary = []
    for index, key in enumerate(order):
        dependencies = dict.fromkeys(
            label[group_of[dependency]]
            for name in groups[key]
            for dependency in by_name[name].dependencies
            if dependency in group_of
        )
        summary.append(GraphNode(index, label[key], tuple(dependencies), key[1]))
    return summary


def node_element_id(index: int) -> str:
    """The ``id`` of a node's element in the SVG; stable for a given node order."""
    return f"node-{index}"


def dot_quote(text: str) -> str:
    """``text`` as a quoted DOT string that graphviz shows literally in labels and tooltips.

    Backslashes are doubled (escString sequences such as ``\\N`` must not expand), quotes escaped,
    line breaks become ``\\n``, and ``&`` becomes ``&amp;`` because graphviz decodes entities even in
    plain labels (a node named ``&lt;`` would otherwise be drawn as ``<``). Controls, bidi and
    zero-width characters and lone surrogates (Go strings that are not UTF-8) are shown as
    escapes (``presentation.display_text``): graphviz reads UTF-8 only, and a picture must not
    lie about a name.
    """
    text = display_text(text.replace("\r\n", "\n").replace("\r", "\n")).replace("\t", "\\t")
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("&", "&amp;").replace("\n", "\\n")
    return f'"{escaped}"'


def shorten(text: str, limit: int = MAX_LABEL_CHARS) -> str:
    """``text`` cut to ``limit`` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


#: Marks a stale node: after its label, and a double border (``peripheries=2``), both greyscale-safe.
STALE_GLYPH = "\u21bb"  # ↻


def label_text(node: GraphNode) -> str:
    """The node's label: the status glyph, then its name (cut when very long), ``↻`` if stale."""
    text = f"{status_style(node.status).glyph} {shorten(display_text(node.name), MAX_LABEL_CHARS)}"
    return f"{text} {STALE_GLYPH}" if node.stale else text


def format_duration(seconds: float) -> str:
    """Seconds as tooltips show them: milliseconds under a minute, then minutes and seconds."""
    return format_milliseconds(round(seconds * 1000))


def format_milliseconds(milliseconds: int) -> str:
    """``format_duration`` of a whole number of milliseconds.

    Tooltips depend on a duration only through its rounded milliseconds, so a live view can key
    its cache of tooltip texts by them (most nodes of a fast run share one text).
    """
    if milliseconds < 60_000:
        return f"{milliseconds / 1000:.3f} s"
    minutes, rest = divmod(milliseconds, 60_000)
    return f"{minutes} min {rest / 1000:.0f} s"


def tooltip_text(node: GraphNode) -> str:
    """The hover text: name, status, attempts, duration of the last attempt, its error and a
    Go timer's fire time; shown text (``display_text``)."""
    details = tooltip_details(node.status, node.history, node.status_text, node.wait)
    return "\n".join([display_text(node.name), *details])


def tooltip_details(
    status: NodeStatus | None,
    history: NodeHistory | None,
    status_text: str | None = None,
    wait: str | None = None,
) -> list[str]:
    """The tooltip lines after the name (a live view rebuilds only these)."""
    if history is None:
        return detail_lines(status, 0, None, None, None, status_text, wait)
    return detail_lines(
        status,
        history.attempts,
        timing_of(history.started_at, history.finished_at),
        history.error_type,
        history.error,
        status_text,
        wait,
    )


#: ``timing_of`` a node with only one of its two timestamps (running, or an odd stored state).
ONE_TIMESTAMP = "one timestamp"

Timing = int | str | None


def timing_of(started_at: float | None, finished_at: float | None) -> Timing:
    """What a tooltip shows of a node's timestamps: the duration in whole milliseconds when it has
    both, ``ONE_TIMESTAMP`` when it has one, None when it has none."""
    if started_at is None or finished_at is None:
        return None if started_at is None and finished_at is None else ONE_TIMESTAMP
    try:
        return round((finished_at - started_at) * 1000)
    except (TypeError, ValueError, OverflowError):  # a damaged or hostile file: no usable duration
        return ONE_TIMESTAMP


def status_label(status: NodeStatus | None, status_text: str | None = None) -> str:
    """A status as people read it: its value, an UNKNOWN one with its stored text
    (``unknown ("bogus")``, the text shown by ``display_text``)."""
    shown = (status or NodeStatus.PENDING).value
    if status is NodeStatus.UNKNOWN and status_text is not None:
        return f'{shown} ("{display_text(status_text)}")'
    return shown


def detail_lines(
    status: NodeStatus | None,
    attempts: int,
    timing: Timing,
    error_type: str | None,
    error: str | None,
    status_text: str | None = None,
    wait: str | None = None,
) -> list[str]:
    """``tooltip_details`` from the few values it depends on (``timing`` as from ``timing_of``);
    the stored texts in them are shown by ``display_text``."""
    lines = [f"status: {status_label(status, status_text)}"]
    if wait is not None:
        lines.append(wait)
    if attempts or timing is not None:
        lines.append(f"attempts: {attempts}")
        if isinstance(timing, int):
            lines.append(f"duration: {format_milliseconds(timing)}")
    if error:
        kind = f"{display_text(error_type)}: " if error_type else ""
        lines.append(f"last error: {kind}{shorten(display_text(error), MAX_ERROR_CHARS)}")
    return lines


def present_statuses(nodes: Iterable[GraphNode]) -> set[NodeStatus]:
    """The statuses ``nodes`` are drawn in (a node without a status is drawn pending)."""
    return {node.status or NodeStatus.PENDING for node in nodes}


def _attribute_list(attributes: Mapping[str, str]) -> str:
    return ", ".join(f"{key}={value}" for key, value in attributes.items())


def _legend_row(statuses: Iterable[NodeStatus], stale: bool = False) -> str:
    """The legend: one row of cells, each with a status's fill, border, glyph and name (and the
    stale cue when a node is stale)."""
    cells = ['<TD BORDER="0"><FONT POINT-SIZE="12"><B>status</B></FONT></TD>']
    for status in statuses:
        style = STATUS_STYLES[status]
        border_style = "" if style.border == "solid" else f' STYLE="{style.border}"'
        text = html.escape(f"{style.glyph} {status.value}")
        cells.append(
            f'<TD BGCOLOR="{style.fill}" BORDER="{max(1, round(style.pen_width))}"{border_style}>'
            f'<FONT COLOR="{style.font_color}" POINT-SIZE="12">{text}</FONT></TD>'
        )
    if stale:
        cells.append(f'<TD BORDER="3"><FONT POINT-SIZE="12">{STALE_GLYPH} stale: code changed</FONT></TD>')
    return f'<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="3"><TR>{"".join(cells)}</TR></TABLE>'


def _graph_label(title: str | None, legend: Iterable[NodeStatus] | None, stale: bool = False) -> str:
    """The picture's label above the nodes: the title, and under it the legend in one row.

    A label rather than a legend node: a node is laid out among the others (in a left-right
    picture it made a tall column beside the first rank and hid nodes behind it).
    """
    rows = []
    if title is not None:
        # An HTML-like label decodes entities and ignores line breaks: escape, and show controls.
        one_line = title.replace("\r\n", " ").replace("\n", " ")
        text = html.escape(display_text(one_line).replace("\t", "\\t"), quote=False)
        rows.append(f'<TR><TD BORDER="0" ALIGN="LEFT"><FONT POINT-SIZE="14">{text}</FONT></TD></TR>')
    if legend is not None:
        rows.append(f'<TR><TD BORDER="0" ALIGN="LEFT">{_legend_row(legend, stale)}</TD></TR>')
    return f'<<TABLE BORDER="0" CELLSPACING="0" CELLPADDING="1">{"".join(rows)}</TABLE>>'


def _grid_start(count: int, rankdir: str) -> str:
    """The cluster that packs ``count`` unconnected nodes in a grid, in drawing order: filled
    column by column for a left-right picture (as dot draws them, one column), else row by row."""
    columns = max(1, math.ceil(math.sqrt(count / 4)))  # boxes are about four times wider than tall
    rows = math.ceil(count / columns)
    packmode = f"array_cu{rows}" if rankdir in ("LR", "RL") else f"array_u{columns}"
    attributes = f'peripheries=0, label="", margin=0, sortv=1, packmode="{packmode}"'
    return f"  subgraph cluster_grid {{\n    graph [{attributes}];"


def to_dot(
    nodes: Sequence[GraphNode],
    *,
    title: str | None = None,
    rankdir: Literal["LR", "TB", "RL", "BT"] = "LR",
    legend: bool | Iterable[NodeStatus] = True,
) -> str:
    """DOT source for ``nodes``: ``legend=True`` lists the statuses drawn (a live view passes
    its own list, which keeps the engine's statuses so the layout does not change as a run goes)."""
    if rankdir not in ("LR", "TB", "RL", "BT"):
        raise ValueError(f"rankdir must be LR, TB, RL or BT, not {rankdir!r}")
    ids = {node.name: f"n{node.position}" for node in nodes}
    grid = len(nodes) > MAX_COLUMN_NODES and not any(
        dep in ids for node in nodes for dep in node.dependencies
    )
    legend_statuses: list[NodeStatus] | None = None
    if legend is not False:
        wanted = present_statuses(nodes) if legend is True else set(legend)
        legend_statuses = [status for status in NodeStatus if status in wanted]
    stale = any(node.stale for node in nodes)
    label = (
        f", label={_graph_label(title, legend_statuses, stale)}, labelloc=t, labeljust=l"
        if title is not None or legend_statuses is not None
        else ""
    )
    lines = [
        "digraph workflow {",
        f"  graph [rankdir={rankdir}, fontname=Helvetica, fontsize=14, nodesep=0.25, ranksep=0.45"
        + label
        + (', layout=osage, packmode="array_u2"' if grid else "")
        + "];",
        '  node [shape=box, fontname=Helvetica, fontsize=12, height=0.3, margin="0.12,0.04"];',
        '  edge [color="#555555", arrowsize=0.7];',
    ]
    if grid:
        lines.append(_grid_start(len(nodes), rankdir))
    for node in nodes:
        style = status_style(node.status)
        attributes = {
            "id": f'"{node_element_id(node.position)}"',
            "class": f'"status-{(node.status or NodeStatus.PENDING).value}"',
            "label": dot_quote(label_text(node)),
            "tooltip": dot_quote(tooltip_text(node)),
            "style": f'"{style.dot_style}"',
            "fillcolor": f'"{style.fill}"',
            "fontcolor": f'"{style.font_color}"',
            "color": '"#000000"',
            "penwidth": f"{style.pen_width:g}",
        }
        if node.stale:
            attributes["peripheries"] = "2"
        if grid:
            attributes["sortv"] = str(node.position)  # the grid keeps the drawing order
        lines.append(f"  {ids[node.name]} [{_attribute_list(attributes)}];")
    if grid:
        lines.append("  }")
    for node in nodes:
        lines.extend(f"  {ids[dep]} -> {ids[node.name]};" for dep in node.dependencies if dep in ids)
    if not nodes:  # a state or DAG without nodes: say so rather than draw a blank
        lines.append('  empty [id="empty", shape=plaintext, fontcolor="#555555", label="no nodes"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def workflow_to_dot(
    data: WorkflowData | None = None,
    dag: DAG | None = None,
    *,
    title: str | None = None,
    rankdir: Literal["LR", "TB", "RL", "BT"] = "LR",
    legend: bool | Iterable[NodeStatus] = True,
) -> str:
    """DOT source of a workflow: its DAG (or stored structure) coloured by the stored statuses."""
    if title is None and data is not None:
        title = data.id
    return to_dot(graph_nodes(data, dag), title=title, rankdir=rankdir, legend=legend)


def find_dot() -> str:
    """Path of the ``dot`` executable (``FLOW_WORKBENCH_DOT`` overrides the ``PATH`` lookup)."""
    override = os.environ.get("FLOW_WORKBENCH_DOT")
    found = shutil.which(override or "dot")
    if found is None:
        raise GraphvizNotFoundError(override or "dot")
    return found


def render(dot_source: str, format: RenderFormat = "svg", *, timeout: float = DEFAULT_TIMEOUT) -> bytes:
    """Run ``dot`` on ``dot_source`` and return the picture (SVG text as UTF-8 bytes, or PNG)."""
    if format not in ("svg", "png"):
        raise ValueError(f"format must be 'svg' or 'png', not {format!r}")
    executable = find_dot()
    try:
        completed = subprocess.run(
            [executable, f"-T{format}"],
            input=dot_source.encode("utf-8"),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:  # removed between the lookup and the call
        raise GraphvizNotFoundError(executable) from None
    except subprocess.TimeoutExpired:
        raise GraphvizError(f"dot did not finish within {timeout:g} s", returncode=None) from None
    if completed.returncode != 0:
        stderr = completed.stderr.decode("utf-8", "replace").strip()
        raise GraphvizError(f"dot failed: {stderr}", returncode=completed.returncode, stderr=stderr)
    return completed.stdout
