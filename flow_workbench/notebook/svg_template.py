"""An SVG laid out once by `dot` whose nodes are restyled in place (fill, border, glyph, tooltip)."""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from enum import Enum
from typing import Literal

from ..data import NodeHistory
from ..dot import (
    DEFAULT_TIMEOUT,
    ENGINE_STATUSES,
    STATUS_STYLES,
    GraphNode,
    render,
    to_dot,
    tooltip_details,
    tooltip_text,
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


class Slot(Enum):
    """The parts of a node element that change with its status."""

    CLASS = "class"
    TOOLTIP = "tooltip"
    SHAPE_STYLE = "shape_style"
    TEXT_FILL = "text_fill"
    GLYPH = "glyph"


@dataclass(frozen=True)
class _Fragments:
    """Pre-built strings for one status, so restyling a node is a few list assignments."""

    css_class: str
    shape_style: str
    text_fill: str
    glyph: str


def _fragments(status: NodeStatus) -> _Fragments:
    style = STATUS_STYLES[status]
    shape = f' fill="{style.fill.lower()}" stroke="#000000"'
    if style.pen_width != 1.0:
        shape += f' stroke-width="{style.pen_width:g}"'
    if style.dash_array is not None:
        shape += f' stroke-dasharray="{style.dash_array}"'
    return _Fragments(
        css_class=f"node status-{status.value}",
        shape_style=shape,
        text_fill=f' fill="{style.font_color.lower()}"',
        glyph=style.glyph,
    )


_FRAGMENTS: dict[NodeStatus, _Fragments] = {status: _fragments(status) for status in NodeStatus}


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
        neutral = _FRAGMENTS[NodeStatus.PENDING]
        for node in self.nodes:
            _fill(parts, self.slots[node.index], neutral, xml_attribute(tooltip_text(node)))
        self.parts: tuple[str, ...] = tuple(parts)

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


def _fill(parts: list[str], slots: Sequence[tuple[int, Slot]], fragments: _Fragments, tooltip: str) -> None:
    for position, slot in slots:
        if slot is Slot.CLASS:
            parts[position] = fragments.css_class
        elif slot is Slot.SHAPE_STYLE:
            parts[position] = fragments.shape_style
        elif slot is Slot.TEXT_FILL:
            parts[position] = fragments.text_fill
        elif slot is Slot.GLYPH:
            parts[position] = fragments.glyph
        else:
            parts[position] = tooltip


_TOOLTIP_CACHE_LIMIT = 4096


class Canvas:
    """One view's copy of a template: ``set_node`` restyles a node, ``svg`` joins the parts."""

    def __init__(self, template: SvgTemplate) -> None:
        self.template = template
        self._parts = list(template.parts)
        self._name_prefixes = [xml_attribute(node.name) + "&#10;" for node in template.nodes]
        #: What each node is drawn as now (None: not in the state, drawn pending).
        self.statuses: list[NodeStatus | None] = [None] * len(template.nodes)
        # Most nodes of a run end with the same details ("completed, 1 attempt, 0.000 s"): escape once.
        self._details: dict[tuple[str, ...], str] = {}

    def set_node(self, index: int, status: NodeStatus | None, history: NodeHistory | None) -> None:
        """Restyle node ``index`` for ``status`` and refresh its tooltip from ``history``."""
        details = tuple(tooltip_details(status, history))
        escaped = self._details.get(details)
        if escaped is None:
            escaped = xml_attribute("\n".join(details))
            if len(self._details) < _TOOLTIP_CACHE_LIMIT:
                self._details[details] = escaped
        self.statuses[index] = status
        fragments = _FRAGMENTS[status or NodeStatus.PENDING]
        _fill(self._parts, self.template.slots[index], fragments, self._name_prefixes[index] + escaped)

    def svg(self) -> str:
        return "".join(self._parts)


# --- layout cache: one `dot` run per distinct graph ---------------------------------------------

_CACHE_SIZE = 16
_cache: OrderedDict[Hashable, Future[SvgTemplate]] = OrderedDict()
_cache_lock = threading.Lock()


def _layout_nodes(nodes: Sequence[GraphNode]) -> list[GraphNode]:
    """The nodes as the layout sees them: neutral status, so one layout serves every state."""
    return [replace(node, status=None, history=None) for node in nodes]


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
