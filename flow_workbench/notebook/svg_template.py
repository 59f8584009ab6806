"""An SVG laid out once by `dot` whose nodes are restyled in place (fill, border, glyph, tooltip)."""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Sequence
from concurrent.futures import Future
from enum import IntEnum
from itertools import repeat
from operator import itemgetter
from typing import Literal, NamedTuple

from ..columns_view import ColumnsView
from ..data import NodeHistory
from ..dot import (
    DEFAULT_TIMEOUT,
    ENGINE_STATUSES,
    STATUS_STYLES,
    GraphNode,
    Timing,
    detail_lines,
    moment_of_nanoseconds,
    present_statuses,
    render,
    timing_of,
    to_dot,
    wait_text,
)
from ..presentation import display_text
from ..status import NodeStatus

__all__ = ["Canvas", "NodeStates", "SvgTemplate", "layout", "layout_async"]

Rankdir = Literal["LR", "TB", "RL", "BT"]

# Graphviz writes "-" in ids as "&#45;"; accept both so other graphviz versions parse too. A node's
# group ends where the next node, edge, cluster or the legend starts, or at the end of the picture:
# one pass over these boundaries finds every node (searching ahead from each node for the next
# section end instead would rescan the rest of an edge-less picture per node: quadratic).
_BOUNDARY = re.compile(r'<g id="(?:node(?:&#45;|-)(\d+)" class="[^"]*">|(?:edge|legend|clust))|</svg>')
_TOOLTIP = re.compile(r'<a xlink:title="([^"]*)">')
_SHAPE = re.compile(r"<(polygon|path|ellipse|polyline)\b([^>]*?)(/?)>")
_TEXT = re.compile(r"<text\b([^>]*)>([^<]*)</text>")
_STYLE_ATTRIBUTES = re.compile(r'\s(?:fill|stroke|stroke-width|stroke-dasharray)="[^"]*"')
_FILL_ATTRIBUTE = re.compile(r'\sfill="[^"]*"')


class Slot(IntEnum):
    """The parts of a node element that change with its status (values index ``_fragments``)."""

    CLASS = 0
    SHAPE_STYLE = 1
    TEXT_FILL = 2
    GLYPH = 3
    TOOLTIP = 4


def xml_attribute(text: str) -> str:
    """``text`` escaped for a double-quoted XML attribute; line breaks kept as character references."""
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("\n", "&#10;")
    )


def ascii_xml(text: str) -> str:
    """``text`` (XML markup or content) with every non-ASCII character as a character reference.

    The same document to a parser, but an all-ASCII ``str`` joins by plain copying: one non-ASCII
    character (a status glyph) would make every frame of a large picture twice as large and slower
    to build, as Python then stores each character of it in two bytes.
    """
    return text if text.isascii() else text.encode("ascii", "xmlcharrefreplace").decode("ascii")


def _fragments(status: NodeStatus) -> tuple[str, str, str, str]:
    """Pre-built strings for one status, in ``Slot`` order, so restyling is list assignments."""
    style = STATUS_STYLES[status]
    shape = f' fill="{style.fill.lower()}" stroke="#000000"'
    if style.pen_width != 1.0:
        shape += f' stroke-width="{style.pen_width:g}"'
    if style.dash_array is not None:
        shape += f' stroke-dasharray="{style.dash_array}"'
    glyph = ascii_xml(style.glyph)
    return (f"node status-{status.value}", shape, f' fill="{style.font_color.lower()}"', glyph)


_FRAGMENTS: dict[NodeStatus | None, tuple[str, str, str, str]] = {
    status: _fragments(status) for status in NodeStatus
}
_FRAGMENTS[None] = _FRAGMENTS[NodeStatus.PENDING]


class NodeStates(NamedTuple):
    """What a picture shows of every node, in the template's drawing order (``SvgTemplate.order``)."""

    statuses: list[NodeStatus | None]
    #: Escaped tooltip text after each node's name (``details_xml``).
    details: list[str]


class SvgTemplate:
    """The parsed SVG of one layout: static text with slots for every node's status-dependent parts.

    Immutable and shared between views (and threads). Two ways to draw a state on it: a ``Canvas``
    restyles one node at a time; ``render`` draws a whole state at once from its columns, with
    no per-node work in Python beyond the tooltips that changed (what a live view does per frame).
    """

    def __init__(self, svg: str, nodes: Sequence[GraphNode]) -> None:
        self.nodes = tuple(nodes)
        parts: list[str] = []
        slots: list[list[tuple[int, Slot]]] = [[] for _ in self.nodes]
        #: Where each node's group starts in ``parts``, in drawing order.
        group_starts: list[tuple[int, int]] = []
        position = 0
        boundaries = list(_BOUNDARY.finditer(svg))
        ends = [boundary.start() for boundary in boundaries[1:]] + [len(svg)]
        for match, end in zip(boundaries, ends, strict=True):
            if match.group(1) is None:  # an edge, cluster, the legend or the end
                continue
            index = int(match.group(1))
            if index >= len(slots):
                raise ValueError(f"SVG has node element {index} but the layout has {len(slots)} nodes")
            if slots[index]:
                raise ValueError(f"SVG has two elements of node {index}")
            parts.append(svg[position : match.start()])
            group_starts.append((index, len(parts)))
            parts.append(f'<g id="node-{index}" class="')
            slots[index].append((len(parts), Slot.CLASS))
            parts.append("")
            parts.append('">')
            self._parse_node(svg[match.end() : end], index, parts, slots[index])
            position = end
        parts.append(svg[position:])
        missing = [i for i, node_slots in enumerate(slots) if not node_slots]
        if missing:
            raise ValueError(f"SVG lacks the elements of node(s) {missing[:5]}")
        parts = [ascii_xml(part) for part in parts]
        self.slots: tuple[tuple[tuple[int, Slot], ...], ...] = tuple(tuple(s) for s in slots)
        # Fill every slot for the neutral (pending) state, with tooltips escaped by us: graphviz
        # versions disagree on backslashes in tooltips (2.43 expands "\\N" to the node id).
        # The same slots split for the hot path: (position, fragment index) pairs, and the tooltip.
        self.style_slots = tuple(
            tuple((position, int(slot)) for position, slot in node_slots if slot is not Slot.TOOLTIP)
            for node_slots in self.slots
        )
        self.tooltip_positions = tuple(
            next((position for position, slot in node_slots if slot is Slot.TOOLTIP), -1)
            for node_slots in self.slots
        )
        self.name_prefixes = tuple(
            ascii_xml(xml_attribute(display_text(node.name))) + "&#10;" for node in self.nodes
        )
        neutral = _FRAGMENTS[None]
        neutral_details = details_xml(None, None)
        for node in self.nodes:
            prefix = self.name_prefixes[node.position]
            _fill(parts, self.slots[node.position], neutral, prefix + neutral_details)
        self.parts: tuple[str, ...] = tuple(parts)
        self._neutral_svg: str | None = None
        self._init_columns(group_starts)

    # --- whole-state rendering -----------------------------------------------------------------
    #
    # The picture is cut into columns: a prefix, then six pieces per node in drawing order --
    # head (status-dependent: group start, class, title, tooltip opening, name), details (the
    # tooltip text after the name), middle (status-dependent), a static piece (the shape's
    # geometry, the bulk of the picture), tail (status-dependent: text colour, glyph) and a static
    # rest (label text, closing tags, the edges drawn after the node). Status-dependent pieces
    # are built once per status and layout, so a frame is a few C-level list operations and one
    # join of an all-ASCII string.

    _PIECES = 6

    def _init_columns(self, group_starts: list[tuple[int, int]]) -> None:
        parts = self.parts
        #: Node positions in drawing order, and their names (what a state's columns are read by).
        self.order: tuple[int, ...] = tuple(index for index, _ in group_starts)
        self.order_names: tuple[str, ...] = tuple(self.nodes[index].name for index in self.order)
        # Per node: (slice before the tooltip, slice middle, static geometry, slice tail, static rest)
        # as part index ranges; "dynamic" ranges are joined per status with their slots filled.
        self._ranges: list[tuple[tuple[int, int], tuple[int, int], int, tuple[int, int], int, int]] = []
        self._without_tooltip: list[int] = []  # drawing positions whose node has no tooltip slot
        frame = [parts[0] if not group_starts else "".join(parts[: group_starts[0][1]])]
        ends = [start for _, start in group_starts[1:]] + ([len(parts)] if group_starts else [])
        for drawing_position, ((index, start), end) in enumerate(zip(group_starts, ends, strict=True)):
            slot_positions = {position for position, _ in self.slots[index]}
            tooltip = self.tooltip_positions[index]
            if tooltip < 0:
                self._without_tooltip.append(drawing_position)
                tooltip = start - 1
            last_dynamic = max(slot_positions - {self.tooltip_positions[index]}, default=tooltip)
            last_dynamic = max(last_dynamic, tooltip)
            statics = [i for i in range(tooltip + 1, last_dynamic) if i not in slot_positions]
            geometry = max(statics, key=lambda i: len(parts[i]), default=-1)
            if geometry < 0:  # nothing static between the tooltip and the last slot
                middle, tail = (tooltip + 1, last_dynamic + 1), (last_dynamic + 1, last_dynamic + 1)
            else:
                middle, tail = (tooltip + 1, geometry), (geometry + 1, last_dynamic + 1)
            self._ranges.append(((start, tooltip), middle, geometry, tail, last_dynamic + 1, end))
            frame.extend(
                (
                    "",  # head
                    "",  # details
                    "",  # middle
                    parts[geometry] if geometry >= 0 else "",
                    "",  # tail
                    "".join(parts[last_dynamic + 1 : end]),
                )
            )
        #: The frame with its static pieces in place; ``render`` copies it and fills the rest.
        self._frame: tuple[str, ...] = tuple(frame)
        #: status -> (heads, middles, tails), each a list in drawing order; built on first use.
        self._pieces: dict[NodeStatus | None, tuple[list[str], list[str], list[str]]] = {}

    def _status_pieces(self, status: NodeStatus | None) -> tuple[list[str], list[str], list[str]]:
        pieces = self._pieces.get(status)
        if pieces is None:
            # Two threads may build the same entry; both results are equal, either one is kept.
            drawn = NodeStatus.PENDING if status is None else status
            pieces = self._pieces.get(drawn) or self._build_status_pieces(drawn)
            self._pieces[drawn] = self._pieces[status] = pieces
        return pieces

    def _build_status_pieces(self, status: NodeStatus) -> tuple[list[str], list[str], list[str]]:
        parts = list(self.parts)
        fragments = _FRAGMENTS[status]
        heads, middles, tails = [], [], []
        for index, ((start, tooltip), middle, _, tail, _, _) in zip(self.order, self._ranges, strict=True):
            for position, kind in self.style_slots[index]:
                parts[position] = fragments[kind]
            head = "".join(parts[start:tooltip])
            heads.append(head + self.name_prefixes[index] if self.tooltip_positions[index] >= 0 else head)
            middles.append("".join(parts[middle[0] : middle[1]]))
            tails.append("".join(parts[tail[0] : tail[1]]))
        return heads, middles, tails

    def node_states(self, columns: ColumnsView) -> NodeStates:
        """Statuses and tooltip texts of every node from a state's columns (hold its lock)."""
        names = self.order_names
        statuses = list(map(columns.statuses.get, names))
        times = list(
            zip(map(columns.started_at.get, names), map(columns.finished_at.get, names), strict=True)
        )
        try:
            timings = [
                timing_of(started, finished)
                if started is None or finished is None
                # The common case inline: the duration in whole milliseconds, as timing_of has it.
                else round((finished - started) * 1000)
                for started, finished in times
            ]
        except (TypeError, ValueError, OverflowError):  # a damaged file's times: timing_of copes
            timings = [timing_of(started, finished) for started, finished in times]
        attempts = list(map(columns.attempts.get, names, repeat(0)))
        count = len(names)
        unknown = NodeStatus.UNKNOWN in statuses
        if (
            count
            and not columns.errors
            and not columns.waits
            and not unknown
            and statuses.count(statuses[0]) == count
            and attempts.count(attempts[0]) == count
        ):
            # The usual end of a successful run: only the durations differ, so look the texts up
            # by duration alone (an int) rather than by a five-field key per node.
            return NodeStates(statuses, _details_by_timing(statuses[0], attempts[0], timings))
        if columns.errors:
            errors: Iterable[str | None] = map(columns.errors.get, names)
            error_types: Iterable[str | None] = map(columns.error_types.get, names)
        else:
            errors = error_types = repeat(None)
        status_texts: Iterable[str | None] = repeat(None)
        if unknown:  # the stored text of each UNKNOWN status (Go JSON files keep it)
            raw = columns.raw_statuses
            status_texts = [
                raw.get(name, "unknown") if status is NodeStatus.UNKNOWN else None
                for name, status in zip(names, statuses, strict=True)
            ]
        waits: Iterable[str | None] = repeat(None)
        if columns.waits:
            waits = [_wait_of(columns.waits.get(name, _NO_WAIT)) for name in names]
        # Not strict: the error columns may be endless repeat(None).
        keys = list(zip(statuses, attempts, timings, error_types, errors, status_texts, waits, strict=False))
        return NodeStates(statuses, _details_of_keys(keys))

    def render(self, columns: ColumnsView | None) -> str:
        """The picture of a state (None: every node pending); equal to restyling every node of a
        ``Canvas`` with its status and history. Hold the state's lock while calling it."""
        if columns is None:
            return self.neutral_svg
        return self.compose(self.node_states(columns))

    def compose(self, states: NodeStates) -> str:
        """The picture of ``states`` (from ``node_states``); needs no lock."""
        statuses, details = states
        count = len(statuses)
        if count == 0:
            return "".join(self._frame)
        frame = list(self._frame)
        first = statuses[0]
        if statuses.count(first) == count:  # one status for all, e.g. the end of a successful run
            heads, middles, tails = self._status_pieces(first)
        else:
            by_status = {status: self._status_pieces(status) for status in set(statuses)}
            rows = list(map(by_status.__getitem__, statuses))
            drawing_positions = range(count)
            pick = list.__getitem__
            heads = list(map(pick, map(_HEADS, rows), drawing_positions))
            middles = list(map(pick, map(_MIDDLES, rows), drawing_positions))
            tails = list(map(pick, map(_TAILS, rows), drawing_positions))
        pieces = self._PIECES
        frame[1::pieces] = heads
        frame[2::pieces] = details
        frame[3::pieces] = middles
        frame[5::pieces] = tails
        for drawing_position in self._without_tooltip:
            frame[2 + pieces * drawing_position] = ""
        return "".join(frame)

    @staticmethod
    def _parse_node(body: str, index: int, parts: list[str], slots: list[tuple[int, Slot]]) -> None:
        position = 0

        def static(upto: int) -> None:
            parts.append(body[position:upto])

        tooltip = _TOOLTIP.search(body)
        shape = _SHAPE.search(body)
        texts = list(_TEXT.finditer(body))
        edits: list[tuple[int, int, str, re.Match[str]]] = []
        if tooltip is not None:
            edits.append((tooltip.start(), tooltip.end(), "tooltip", tooltip))
        if shape is not None:
            edits.append((shape.start(), shape.end(), "shape", shape))
        edits.extend((text.start(), text.end(), "text", text) for text in texts)
        edits.sort(key=lambda edit: edit[0])
        first_text = True
        for start, end, kind, match in edits:
            static(start)
            if kind == "tooltip":
                parts.append('<a xlink:title="')
                slots.append((len(parts), Slot.TOOLTIP))
                parts.append("")
                parts.append('">')
            elif kind == "shape":
                tag, attributes, closing = match.group(1), match.group(2), match.group(3)
                parts.append(f"<{tag}")
                slots.append((len(parts), Slot.SHAPE_STYLE))
                parts.append("")
                parts.append(_STYLE_ATTRIBUTES.sub("", attributes) + f"{closing}>")
            else:
                parts.append("<text" + _FILL_ATTRIBUTE.sub("", match.group(1)))
                slots.append((len(parts), Slot.TEXT_FILL))
                parts.append("")
                parts.append(">")
                content = match.group(2)
                if first_text:
                    # The label starts with the status glyph and a space (see dot.label_text).
                    glyph_end = content.find(" ")
                    glyph_end = len(content) if glyph_end < 0 else glyph_end
                    slots.append((len(parts), Slot.GLYPH))
                    parts.append("")
                    content = content[glyph_end:]
                    first_text = False
                parts.append(content + "</text>")
            position = end
        parts.append(body[position:])

    def canvas(self) -> Canvas:
        return Canvas(self)

    @property
    def neutral_svg(self) -> str:
        """The picture with every node pending; computed once, as every fresh run starts with it."""
        if self._neutral_svg is None:
            self._neutral_svg = "".join(self.parts)
        return self._neutral_svg


def _fill(
    parts: list[str], slots: Sequence[tuple[int, Slot]], fragments: tuple[str, ...], tooltip: str
) -> None:
    for position, slot in slots:
        parts[position] = tooltip if slot is Slot.TOOLTIP else fragments[slot]


_DETAILS_CACHE_LIMIT = 4096
_HEADS, _MIDDLES, _TAILS = itemgetter(0), itemgetter(1), itemgetter(2)


class Canvas:
    """One view's copy of a template: ``set_node`` restyles a node, ``svg`` joins the parts."""

    def __init__(self, template: SvgTemplate) -> None:
        self.template = template
        self._parts = list(template.parts)
        self._pristine = True  # nothing restyled yet: the template's neutral SVG is this picture
        #: What each node is drawn as now (None: not in the state, drawn pending).
        self.statuses: list[NodeStatus | None] = [None] * len(template.nodes)

    def set_node(
        self,
        index: int,
        status: NodeStatus | None,
        history: NodeHistory | None,
        status_text: str | None = None,
        wait: str | None = None,
    ) -> None:
        """Restyle node ``index`` for ``status`` and refresh its tooltip from ``history`` (plus an
        UNKNOWN status's stored text and a Go timer's ``wait_text``, as ``GraphNode`` has them)."""
        self.restyle(index, status, details_xml(status, history, status_text, wait))

    def restyle(self, index: int, status: NodeStatus | None, details: str) -> None:
        """Restyle node ``index``; ``details`` is the escaped tooltip text after the name."""
        self._pristine = False
        self.statuses[index] = status
        parts, template, fragments = self._parts, self.template, _FRAGMENTS[status]
        for position, kind in template.style_slots[index]:
            parts[position] = fragments[kind]
        tooltip = template.tooltip_positions[index]
        if tooltip >= 0:
            parts[tooltip] = template.name_prefixes[index] + details

    def svg(self) -> str:
        return self.template.neutral_svg if self._pristine else "".join(self._parts)


#: (status, attempts, timing, error type, error, status text, wait): what a tooltip depends on.
DetailsKey = tuple[NodeStatus | None, int, Timing, "str | None", "str | None", "str | None", "str | None"]

#: ``DetailsKey`` -> escaped tooltip text; most nodes of a run share
#: one (a fast run's nodes all read "completed, 1 attempt, 0.000 s"), so frames rarely build text.
_details_cache: dict[DetailsKey, str] = {}


def _details_text(key: DetailsKey) -> str:
    return ascii_xml(xml_attribute("\n".join(detail_lines(*key))))


def _details_of_keys(keys: list[DetailsKey]) -> list[str]:
    cache = _details_cache
    try:
        return list(map(cache.__getitem__, keys))  # the usual case: every text is known
    except KeyError:
        pass
    if len(cache) >= _DETAILS_CACHE_LIMIT:
        cache.clear()
    texts = []
    for key in keys:
        text = cache.get(key)
        if text is None:
            text = cache[key] = _details_text(key)
        texts.append(text)
    return texts


#: (status, attempts) -> {timing: escaped tooltip text} for nodes without an error.
_details_by_status: dict[tuple[NodeStatus | None, int], dict[Timing, str]] = {}


def _details_by_timing(status: NodeStatus | None, attempts: int, timings: list[Timing]) -> list[str]:
    texts = _details_by_status.get((status, attempts))
    if texts is None or len(texts) >= _DETAILS_CACHE_LIMIT:
        texts = _details_by_status[(status, attempts)] = {}
        if len(_details_by_status) >= _DETAILS_CACHE_LIMIT:
            _details_by_status.clear()
            _details_by_status[(status, attempts)] = texts
    try:
        return list(map(texts.__getitem__, timings))
    except KeyError:
        pass
    result = []
    for timing in timings:
        text = texts.get(timing)
        if text is None:
            text = texts[timing] = _details_text((status, attempts, timing, None, None, None, None))
        result.append(text)
    return result


def details_xml(
    status: NodeStatus | None,
    history: NodeHistory | None,
    status_text: str | None = None,
    wait: str | None = None,
) -> str:
    """The escaped tooltip lines after the name."""
    if history is None:
        return details_xml_of(status, 0, None, None, None, None, status_text, wait)
    return details_xml_of(
        status,
        history.attempts,
        history.started_at,
        history.finished_at,
        history.error_type,
        history.error,
        status_text,
        wait,
    )


def details_xml_of(
    status: NodeStatus | None,
    attempts: int,
    started_at: float | None,
    finished_at: float | None,
    error_type: str | None,
    error: str | None,
    status_text: str | None = None,
    wait: str | None = None,
) -> str:
    """``details_xml`` from plain fields (cached, like the texts ``SvgTemplate.render`` uses)."""
    timing = timing_of(started_at, finished_at)
    return _details_of_keys([(status, attempts, timing, error_type, error, status_text, wait)])[0]


_NO_WAIT = object()


def _wait_of(nanoseconds: object) -> str | None:
    """``wait_text`` of a stored Go timer (unix nanoseconds), as ``WorkflowData.wait_until`` reads it."""
    if nanoseconds is _NO_WAIT:
        return None
    return wait_text(moment_of_nanoseconds(nanoseconds))


# --- layout cache: one `dot` run per distinct graph ---------------------------------------------

_CACHE_SIZE = 16
_cache: OrderedDict[Hashable, Future[SvgTemplate]] = OrderedDict()
_cache_lock = threading.Lock()


def _layout_nodes(nodes: Sequence[GraphNode]) -> list[GraphNode]:
    """The nodes as the layout sees them: neutral status, so one layout serves every state."""
    return [node._replace(status=None, history=None, status_text=None, wait=None) for node in nodes]


def _legend_statuses(nodes: Sequence[GraphNode]) -> tuple[NodeStatus, ...]:
    present = {node.status for node in nodes if node.status is not None}
    return tuple(status for status in NodeStatus if status in present or status in ENGINE_STATUSES)


def layout_async(
    nodes: Sequence[GraphNode],
    *,
    title: str | None = None,
    rankdir: Rankdir = "LR",
    timeout: float = DEFAULT_TIMEOUT,
    legend: tuple[NodeStatus, ...] | None = None,
) -> Future[SvgTemplate]:
    """The template of ``nodes``, laid out in a background thread unless an identical graph was.

    Views of the same DAG (and title, direction, legend) share one ``dot`` run; the future lets
    a run start while a large graph is still being laid out.
    """
    if legend is None:  # a live view: the engine's statuses too, so the layout stays put
        legend = _legend_statuses(nodes)
    # The key is the structure, not the DOT text: building 1,000 nodes of DOT costs milliseconds.
    key: Hashable = (title, rankdir, legend, tuple((node.name, node.dependencies) for node in nodes))
    with _cache_lock:
        future = _cache.get(key)
        if future is not None and not (future.done() and future.exception() is not None):
            _cache.move_to_end(key)
            return future
        future = Future()
        _cache[key] = future
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    layout_nodes = _layout_nodes(nodes)

    def work() -> None:
        try:
            source = to_dot(layout_nodes, title=title, rankdir=rankdir, legend=legend)
            svg = render(source, "svg", timeout=timeout).decode("utf-8")
            future.set_result(SvgTemplate(svg, layout_nodes))
        except BaseException as error:  # delivered to whoever waits on the future
            future.set_exception(error)

    threading.Thread(target=work, daemon=True, name="flow-workbench-layout").start()
    return future


def layout(
    nodes: Sequence[GraphNode],
    *,
    title: str | None = None,
    rankdir: Rankdir = "LR",
    timeout: float = DEFAULT_TIMEOUT,
    stable_legend: bool = False,
) -> SvgTemplate:
    """The (cached) template of a static picture of ``nodes``, whose legend lists the statuses
    present (``stable_legend``: the engine's statuses too, as a live view's, so a picture that is
    redrawn after a run keeps its size); raises ``GraphvizNotFoundError`` without ``dot``."""
    legend = (
        None if stable_legend else tuple(status for status in NodeStatus if status in present_statuses(nodes))
    )
    future = layout_async(nodes, title=title, rankdir=rankdir, timeout=timeout, legend=legend)
    return future.result(timeout + 5)


def clear_layout_cache() -> None:
    """Forget every cached layout (tests use it to count ``dot`` runs from a clean slate)."""
    with _cache_lock:
        _cache.clear()


#: Pictures taller than this scroll inside their output instead of shrinking to the cell width.
PICTURE_MAX_HEIGHT = 720


def svg_mimebundle(svg: str, text: str, css_class: str, header: str = "") -> dict[str, str]:
    """Display data for an SVG picture: ``image/svg+xml`` for exports (nbconvert, GitHub), and
    ``text/html`` with the SVG inline, which front ends prefer: JupyterLab draws image/svg+xml
    as an ``<img>``, where tooltips (and CSS selectors) do not reach the nodes.

    The inline SVG keeps its natural size (JupyterLab's stylesheet would shrink it to the cell
    width: 3 px labels at 1,000 nodes) in a box that scrolls. ``header`` is trusted HTML shown
    above the picture (a live view's progress line). ``static.make_outputs_static`` turns the
    SVG into an ``<img>`` for untrusted notebooks, keeping the header.
    """
    start = max(svg.find("<svg"), 0)
    inline = svg[start:].replace("<svg", '<svg style="max-width: none; height: auto"', 1)
    return {
        "image/svg+xml": svg,
        "text/html": (
            f'<div class="fw-picture {css_class}">{header}'
            f'<div class="fw-scroll" style="overflow: auto; max-height: {PICTURE_MAX_HEIGHT}px">'
            f"{inline}</div></div>"
        ),
        "text/plain": text,
    }
