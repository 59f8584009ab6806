"""Widgets where none runs (static fallbacks in saved notebooks) and LiveView frames in a widget."""

from __future__ import annotations

import html
from typing import Any

from ..presentation import display_text
from .live_view import Picture
from .static import static_picture_html

__all__ = ["TABLE_MAX_HEIGHT", "WidgetDisplay", "picture_fallback", "widget_bundle"]

#: Tables scroll inside this height (the browser's 200 nodes were a 14,000 px page).
TABLE_MAX_HEIGHT = "360px"


class WidgetDisplay:
    """A ``LiveView`` display that draws each frame into an ``HTML`` widget instead of a cell output."""

    def __init__(self, target: Any) -> None:
        self.target = target

    def __call__(self, frame: Any) -> WidgetDisplay:
        self.update(frame)
        return self

    def update(self, frame: Any) -> None:
        if isinstance(frame, Picture) and frame.svg is not None:
            self.target.value = frame.svg
        else:
            self.target.value = f"<pre>{html.escape(display_text(str(frame)))}</pre>"


def widget_bundle(widget: Any, text: str, fallback: str, **kwargs: Any) -> Any:
    """The display bundle of ``widget``, with ``text`` and the HTML ``fallback`` where the widget
    cannot be shown.

    Front ends with a live widget model prefer the widget view. A saved notebook keeps no widget
    state, and an untrusted one (every notebook JupyterLab did not run itself) renders no widget
    and sanitises HTML: there ``fallback`` (built with ``static_picture_html`` and tables whose
    colours are inline) shows the widget's moment, as do nbconvert and GitHub.
    """
    bundle = widget._repr_mimebundle_(**kwargs)
    if isinstance(bundle, dict):
        bundle["text/plain"] = text
        bundle["text/html"] = fallback
    return bundle


def picture_fallback(picture: str, text: str) -> str:
    """A widget's picture value (an SVG, or a message in HTML) as sanitizer-safe static HTML."""
    if picture.lstrip().startswith(("<?xml", "<svg")):
        return static_picture_html(picture, text, "fw-dag")
    return picture
