"""GraphSelect: a DAG picture whose nodes are selected by clicking them (an anywidget)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from ..dot import STATUS_STYLES, GraphNode, node_element_id

__all__ = ["GraphSelect", "chip_styles", "node_names"]

_HERE = Path(__file__).resolve().parent


def node_names(nodes: Iterable[GraphNode]) -> dict[str, str]:
    """Element id -> node name for the nodes of a picture drawn by ``flow_workbench.dot``.

    The SVG's ``<title>`` holds graphviz's internal id, not the name, so the front end learns the
    names from this map (an SVG given without one falls back to ``<title>``, as graphviz writes it).
    """
    return {node_element_id(node.position): node.name for node in nodes}


def chip_styles() -> dict[str, list[str]]:
    """status -> [fill, glyph, text colour], in lifecycle order: the count chips above the picture."""
    from .tables import STATUS_ORDER

    return {
        status.value: [
            STATUS_STYLES[status].fill,
            STATUS_STYLES[status].glyph,
            STATUS_STYLES[status].font_color,
        ]
        for status in STATUS_ORDER
    }


class GraphSelect(anywidget.AnyWidget):
    """Shows an SVG picture of a DAG; clicking a node toggles it in ``selected``.

    ``value`` is the picture's markup (an SVG, or a message), drawn as given, like
    ``ipywidgets.HTML``: whoever sets it escapes the strings in it. ``node_names`` maps each node
    element's ``id`` to its node name. ``selected`` is the synced list of selected node names, in
    the order they were chosen; setting it from Python (or a test) has the same effect as clicks.
    Names the picture does not have are dropped. Without a front end (headless, static exports)
    the widget is a plain holder of these three values.

    In the browser a click (or Enter/Space on a focused node) toggles the node and makes it
    ``active`` (the node whose details a panel shows); selected nodes get a thick dashed black halo
    and bold, underlined text, which read in greyscale too. Above the picture: the node count per
    status (a click on one shows only those nodes, dimming the rest), a search box (matches are
    outlined and the view centres on them) and zoom buttons; ctrl+wheel or a pinch zooms, dragging
    pans, "fit" shows it whole and "100%" at its natural size. A large picture first shows at
    natural size centred on its failed (or running) node, so labels stay readable.
    """

    _esm = _HERE / "graph_select.js"
    _css = _HERE / "graph_select.css"

    value = traitlets.Unicode("").tag(sync=True)
    node_names = traitlets.Dict(value_trait=traitlets.Unicode(), key_trait=traitlets.Unicode()).tag(sync=True)
    selected = traitlets.List(traitlets.Unicode()).tag(sync=True)
    #: Nodes marked as affected (a panel's preview): a thick orange dotted outline.
    highlighted = traitlets.List(traitlets.Unicode()).tag(sync=True)
    #: The node last clicked (or chosen from Python): the one whose details are shown.
    active = traitlets.Unicode("").tag(sync=True)
    status_styles = traitlets.Dict(default_value=chip_styles()).tag(sync=True)
    #: The picture's viewport grows with the picture up to this height (px), then zooms and pans.
    max_height = traitlets.Int(600).tag(sync=True)

    @property
    def names(self) -> list[str]:
        """The selectable node names, in drawing order."""
        return list(self.node_names.values())

    @traitlets.validate("selected")
    def _known_names_once(self, proposal: dict[str, Any]) -> list[str]:
        known = set(self.node_names.values())
        chosen: list[str] = []
        for name in proposal["value"]:
            # Without a name map (a plain graphviz SVG) the front end reads names from <title>.
            if (name in known or not known) and name not in chosen:
                chosen.append(name)
        return chosen

    @traitlets.observe("node_names")
    def _drop_vanished(self, change: dict[str, Any]) -> None:
        known = set(change["new"].values())
        if known and any(name not in known for name in self.selected):
            self.selected = [name for name in self.selected if name in known]

    def __repr__(self) -> str:
        return f"<GraphSelect: {len(self.node_names)} nodes, selected {self.selected!r}>"
