"""A picture laid out once by `dot` whose nodes are restyled in place: the names of its modules."""

# svg_parse cuts the SVG into static text and per-node slots; tooltips builds (and caches) the
# tooltip texts; svg_frames draws states on a parsed layout (SvgTemplate, Canvas); layout_cache
# runs `dot` once per distinct graph; svg_display makes the display data.

from __future__ import annotations

from .layout_cache import Rankdir, clear_layout_cache, layout, layout_async
from .svg_display import PICTURE_MAX_HEIGHT, svg_mimebundle
from .svg_frames import Canvas, NodeStates, SvgTemplate
from .svg_parse import ascii_xml, xml_attribute
from .tooltips import details_xml, details_xml_of

__all__ = [
    "PICTURE_MAX_HEIGHT",
    "Canvas",
    "NodeStates",
    "Rankdir",
    "SvgTemplate",
    "ascii_xml",
    "clear_layout_cache",
    "details_xml",
    "details_xml_of",
    "layout",
    "layout_async",
    "svg_mimebundle",
    "xml_attribute",
]
