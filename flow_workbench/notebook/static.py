"""Outputs that survive untrusted notebooks: pictures as ``<img>`` data URIs, widgets as static HTML.

JupyterLab opens a notebook it did not execute (a fresh clone, Binder, a colleague's file) as
untrusted: it renders ``text/html`` through its sanitizer, which drops inline ``<svg>`` (leaving
its text as garbage) and ``<style>`` blocks, and never renders ``image/svg+xml`` or widget views.
An ``<img>`` whose source is a ``data:image/svg+xml`` URI passes the sanitizer (and a browser runs
no script inside an image), as do inline ``style`` attributes. ``static_bundle`` builds such an
output; ``make_outputs_static`` rewrites a whole executed notebook into that form, keeping each
picture once.
"""

from __future__ import annotations

import base64
import html
import re
from typing import Any

from .svg_display import PICTURE_MAX_HEIGHT

__all__ = [
    "PICTURE_MAX_HEIGHT",
    "WIDGET_VIEW",
    "image_tag",
    "make_outputs_static",
    "static_bundle",
    "static_picture_html",
]

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
SVG = "image/svg+xml"
HTML = "text/html"

#: An inline picture in HTML: from its start tag to the last end tag (nested <svg> included).
_SVG_ELEMENT = re.compile(r"<svg\b.*</svg>", re.IGNORECASE | re.DOTALL)


def _svg_only(svg: str) -> str:
    """The ``<svg>`` element of ``svg``: the XML declaration and DOCTYPE are dead weight in a URI."""
    start = svg.find("<svg")
    return svg[start:] if start > 0 else svg


def image_tag(svg: str, alt: str) -> str:
    """``svg`` as an ``<img>`` with a base64 data URI, drawn at its natural size (as the inline
    picture is: shrinking a big DAG to the cell width makes its labels unreadable). ``alt`` is
    escaped; the picture's own strings were escaped when it was drawn, and an image runs no script.
    """
    encoded = base64.b64encode(_svg_only(svg).encode("utf-8")).decode("ascii")
    return f'<img src="data:image/svg+xml;base64,{encoded}" alt="{html.escape(alt)}" style="max-width: none">'


def static_picture_html(svg: str, alt: str, css_class: str = "") -> str:
    """``image_tag(svg, alt)`` in a box that scrolls past a height."""
    classes = " ".join(["fw-picture", "fw-static", *css_class.split()])
    return (
        f'<div class="{html.escape(classes)}" style="overflow: auto; max-height: {PICTURE_MAX_HEIGHT}px">'
        f"{image_tag(svg, alt)}</div>"
    )


def static_bundle(svg: str, text: str, css_class: str = "") -> dict[str, str]:
    """Display data that shows ``svg`` in any front end, trusted or not: the picture once."""
    return {HTML: static_picture_html(svg, text, css_class), "text/plain": text}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else "".join(value)


def make_outputs_static(notebook: Any) -> int:
    """Rewrite an executed notebook (an nbformat node, or its dict) for readers who cannot trust it.

    Each output with an SVG picture gets its ``text/html`` as ``static_picture_html`` (replacing
    an inline ``<svg>``) and loses the ``image/svg+xml`` copy; widget views go when the notebook
    saved no widget state (JupyterLab would show "Error displaying widget" for them), leaving the
    static fallback their ``text/html`` carries. Returns how many outputs changed.
    """
    metadata = notebook.get("metadata", {})
    widget_state = bool(metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json"))
    changed = 0
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []):
            data = output.get("data")
            if not data:
                continue
            before = set(data), data.get(HTML)
            if WIDGET_VIEW in data and not widget_state:
                del data[WIDGET_VIEW]
            if SVG in data:
                svg = _text(data.pop(SVG))
                current = _text(data.get(HTML, ""))
                text = _text(data.get("text/plain", "picture"))
                if not current:
                    data[HTML] = static_picture_html(svg, text)
                elif (inline := _SVG_ELEMENT.search(current)) is not None:
                    # the picture becomes an image; what surrounds it (a progress line) stays
                    data[HTML] = current[: inline.start()] + image_tag(svg, text) + current[inline.end() :]
            if (set(data), data.get(HTML)) != before:
                changed += 1
    return changed
