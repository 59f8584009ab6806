"""GraphSelect: a DAG picture whose nodes are selected by clicking them (an anywidget)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from ..dot import GraphNode, node_element_id

__all__ = ["GraphSelect", "node_names"]

_HERE = Path(__file__).resolve().parent


def node_names(nodes: Iterable[GraphNode]) -> dict[str, str]:
    """Element id -> node name for the nodes of a picture drawn by ``flow_workbench.dot``.

    The SVG's ``<title>`` holds graphviz's internal id, not the name, so the front end learns the
    names from this map (an SVG given without one falls back to ``<title>``, as graphviz writes it).
    """
    return {node_element_id(node.position): node.name for node in nodes}


class GraphSelect(anywidget.AnyWidget):
    """Shows an SVG picture of a DAG; clicking a node toggles it in ``selected``.

    ``value`` is the picture's markup (an SVG, or a message), drawn as given, like
    ``ipywidgets.HTML``: whoever sets it escapes the strings in it. ``node_names`` maps each node
    element's ``id`` to its node name. ``selected`` is the synced list of selected node names, in
    the order they were chosen; setting it from Python (or a test) has the same effect as clicks.
    Names the picture does not have are dropped. Without a front end (headless, static exports)
    the widget is a plain holder of these three values.

    In the browser a click (or Enter/Space on a focused node) toggles the node; selected nodes get
    a thick dashed black halo and bold, underlined text, which read in greyscale too.
    """

    _esm = _HERE / "graph_select.js"
    _css = _HERE / "graph_select.css"

    value = traitlets.Unicode("").tag(sync=True)
    node_names = traitlets.Dict(value_trait=traitlets.Unicode(), key_trait=traitlets.Unicode()).tag(sync=True)
    selected = traitlets.List(traitlets.Unicode()).tag(sync=True)

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
