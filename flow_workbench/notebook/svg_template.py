"""An SVG laid out once by `dot` whose nodes are restyled in place (fill, border, glyph, tooltip)."""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from concurrent.futures import Future
from enum import IntEnum
from typing import Literal

from ..data import NodeHistory
from ..dot import (
    DEFAULT_TIMEOUT,
    ENGINE_STATUSES,
    STATUS_STYLES,
    GraphNode,
    format_duration,
    render,
    to_dot,
    tooltip_details,
)
from ..status import NodeStatus

__all__ = ["Canvas", "SvgTemplate", "layout", "layout_async"]

Rankdir = Literal["LR", "TB", "RL", "BT"]

# Graphviz writes "-" in ids as "&#45;"; accept both so other graphviz versions parse too.
_NODE_GROUP = re.compile(r'<g id="node(?:&#45;|-)(\d+)" class="([^"]*)">')
_SECTION_END = re.compile(r'<g id="(?:edge|legend|clust)|</svg>')
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


def _fragments(status: NodeStatus) -> tuple[str, str, str, str]:
    """Pre-built strings for one status, in ``Slot`` order, so restyling is list assignments."""
    style = STATUS_STYLES[status]
    shape = f' fill="{style.fill.lower()}" stroke="#000000"'
    if style.pen_width != 1.0:
        shape += f' stroke-width="{style.pen_width:g}"'
    if style.dash_array is not None:
        shape += f' stroke-dasharray="{style.dash_array}"'
    return (f"node status-{status.value}", shape, f' fill="{style.font_color.lower()}"', style.glyph)


_FRAGMENTS: dict[NodeStatus | None, tuple[str, str, str, str]] = {
    status: _fragments(status) for status in NodeStatus
}
_FRAGMENTS[None] = _FRAGMENTS[NodeStatus.PENDING]


def xml_attribute(text: str) -> str:
    """``text`` escaped for a double-quoted XML attribute; line breaks kept as character references."""
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("\n", "&#10;")
    )


class SvgTemplate:
    """The parsed SVG of one layout: static text with slots for every node's status-dependent parts.

    Immutable and shared between views; each view restyles its own ``Canvas`` copy.
    """

    def __init__(self, svg: str, nodes: Sequence[GraphNode]) -> None:
        self.nodes = tuple(nodes)
        parts: list[str] = []
        slots: list[list[tuple[int, Slot]]] = [[] for _ in self.nodes]
        position = 0
        for match in _NODE_GROUP.finditer(svg):
            index = int(match.group(1))
            if index >= len(slots):
                raise ValueError(f"SVG has node element {index} but the layout has {len(slots)} nodes")
            end_match = _SECTION_END.search(svg, match.end())
            next_node = _NODE_GROUP.search(svg, match.end())
            end = min(
                end_match.start() if end_match else len(svg),
                next_node.start() if next_node else len(svg),
            )
            parts.append(svg[position : match.start()])
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
        self.name_prefixes = tuple(xml_attribute(node.name) + "&#10;" for node in self.nodes)
        neutral = _FRAGMENTS[None]
        for node in self.nodes:
            details = xml_attribute("\n".join(tooltip_details(None, None)))
            _fill(parts, self.slots[node.position], neutral, self.name_prefixes[node.position] + details)
        self.parts: tuple[str, ...] = tuple(parts)
        self._neutral_svg: str | None = None

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


class Canvas:
    """One view's copy of a template: ``set_node`` restyles a node, ``svg`` joins the parts."""

    def __init__(self, template: SvgTemplate) -> None:
        self.template = template
        self._parts = list(template.parts)
        self._pristine = True  # nothing restyled yet: the template's neutral SVG is this picture
        #: What each node is drawn as now (None: not in the state, drawn pending).
        self.statuses: list[NodeStatus | None] = [None] * len(template.nodes)

    def set_node(self, index: int, status: NodeStatus | None, history: NodeHistory | None) -> None:
        """Restyle node ``index`` for ``status`` and refresh its tooltip from ``history``."""
        self.restyle(index, status, details_xml(status, history))

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


_details_cache: dict[tuple[object, ...], str] = {}


def details_xml(status: NodeStatus | None, history: NodeHistory | None) -> str:
    """The escaped tooltip lines after the name."""
    if history is None:
        return details_xml_of(status, 0, None, None, None, None)
    return details_xml_of(
        status, history.attempts, history.started_at, history.finished_at, history.error_type, history.error
    )


def details_xml_of(
    status: NodeStatus | None,
    attempts: int,
    started_at: float | None,
    finished_at: float | None,
    error_type: str | None,
    error: str | None,
) -> str:
    """``details_xml`` from plain fields; most nodes of a run share their details, so they are cached."""
    # Keyed by the duration as shown, so the many "0.000 s" nodes of a fast run share one entry.
    duration = (
        None if started_at is None or finished_at is None else format_duration(finished_at - started_at)
    )
    key = (status, attempts, started_at is None, finished_at is None, duration, error_type, error)
    escaped = _details_cache.get(key)
    if escaped is None:
        history = NodeHistory("", attempts, started_at, finished_at, error, error_type)
        escaped = xml_attribute("\n".join(tooltip_details(status, history)))
        if len(_details_cache) >= _DETAILS_CACHE_LIMIT:
            _details_cache.clear()
        _details_cache[key] = escaped
    return escaped


# --- layout cache: one `dot` run per distinct graph ---------------------------------------------

_CACHE_SIZE = 16
_cache: OrderedDict[Hashable, Future[SvgTemplate]] = OrderedDict()
_cache_lock = threading.Lock()


def _layout_nodes(nodes: Sequence[GraphNode]) -> list[GraphNode]:
    """The nodes as the layout sees them: neutral status, so one layout serves every state."""
    return [node._replace(status=None, history=None) for node in nodes]


def _legend_statuses(nodes: Sequence[GraphNode]) -> tuple[NodeStatus, ...]:
    present = {node.status for node in nodes if node.status is not None}
    return tuple(status for status in NodeStatus if status in present or status in ENGINE_STATUSES)


def layout_async(
    nodes: Sequence[GraphNode],
    *,
    title: str | None = None,
    rankdir: Rankdir = "LR",
    timeout: float = DEFAULT_TIMEOUT,
) -> Future[SvgTemplate]:
    """The template of ``nodes``, laid out in a background thread unless an identical graph was.

    Views of the same DAG (and title, direction, legend) share one ``dot`` run; the future lets
    a run start while a large graph is still being laid out.
    """
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
) -> SvgTemplate:
    """The (cached) template of ``nodes``; raises ``GraphvizNotFoundError`` without ``dot``."""
    return layout_async(nodes, title=title, rankdir=rankdir, timeout=timeout).result(timeout + 5)


def clear_layout_cache() -> None:
    """Forget every cached layout (tests use it to count ``dot`` runs from a clean slate)."""
    with _cache_lock:
        _cache.clear()


def svg_mimebundle(svg: str, text: str, css_class: str) -> dict[str, str]:
    """Display data for an SVG picture: ``image/svg+xml`` for exports (nbconvert, GitHub), and
    ``text/html`` with the SVG inline, which front ends prefer: JupyterLab draws image/svg+xml
    as an ``<img>``, where tooltips (and CSS selectors) do not reach the nodes."""
    start = max(svg.find("<svg"), 0)
    return {
        "image/svg+xml": svg,
        "text/html": f'<div class="fw-picture {css_class}">{svg[start:]}</div>',
        "text/plain": text,
    }
