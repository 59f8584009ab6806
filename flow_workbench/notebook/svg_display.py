"""Display data of an SVG picture: inline HTML for front ends, ``image/svg+xml`` for exports."""

from __future__ import annotations

__all__ = ["PICTURE_MAX_HEIGHT", "svg_mimebundle"]

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
