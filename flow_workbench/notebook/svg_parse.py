"""Cut a `dot` SVG into static text and per-node slots, and the XML the slots are filled with."""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import IntEnum
from typing import NamedTuple

from ..dot import STATUS_STYLES
from ..status import NodeStatus

__all__ = ["STATUS_FRAGMENTS", "ParsedSvg", "Slot", "ascii_xml", "fill_slots", "parse_svg", "xml_attribute"]

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
    """The parts of a node element that change with its status (values index ``STATUS_FRAGMENTS``)."""

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


#: status -> the strings of its ``Slot``s but the tooltip (None: not in the state, drawn pending).
STATUS_FRAGMENTS: dict[NodeStatus | None, tuple[str, str, str, str]] = {
    status: _fragments(status) for status in NodeStatus
}
STATUS_FRAGMENTS[None] = STATUS_FRAGMENTS[NodeStatus.PENDING]


class ParsedSvg(NamedTuple):
    """An SVG cut into parts: static text, with an empty part at every slot."""

    parts: list[str]
    #: Per node (by position in the layout): (part index, slot) of each of its slots.
    slots: list[list[tuple[int, Slot]]]
    #: (node position, part index where its group starts), in drawing order.
    group_starts: list[tuple[int, int]]


def parse_svg(svg: str, node_count: int) -> ParsedSvg:
    """Cut ``svg`` (laid out by `dot` from ``dot.to_dot``, whose node ids are ``node-<position>``)
    into parts; ``ValueError`` when its node elements do not match ``node_count`` nodes."""
    parts: list[str] = []
    slots: list[list[tuple[int, Slot]]] = [[] for _ in range(node_count)]
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
        _parse_node(svg[match.end() : end], parts, slots[index])
        position = end
    parts.append(svg[position:])
    missing = [i for i, node_slots in enumerate(slots) if not node_slots]
    if missing:
        raise ValueError(f"SVG lacks the elements of node(s) {missing[:5]}")
    return ParsedSvg(parts, slots, group_starts)


def _parse_node(body: str, parts: list[str], slots: list[tuple[int, Slot]]) -> None:
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


def fill_slots(
    parts: list[str], slots: Sequence[tuple[int, Slot]], fragments: tuple[str, ...], tooltip: str
) -> None:
    """Put ``fragments`` (a status's, in ``Slot`` order) and ``tooltip`` into a node's slots."""
    for position, slot in slots:
        parts[position] = tooltip if slot is Slot.TOOLTIP else fragments[slot]
