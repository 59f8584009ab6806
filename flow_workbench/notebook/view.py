"""DAGView: a workflow's DAG coloured by status, shown in notebooks as an SVG (also in static exports)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..dag import DAG
from ..data import WorkflowData
from ..dot import (
    DEFAULT_TIMEOUT,
    GraphNode,
    RenderFormat,
    focus_nodes,
    graph_nodes,
    level_summary,
    render,
    to_dot,
)
from ..engine import Workflow
from ..errors import GraphvizError, WorkflowNotFoundError
from ..stores.base import WorkflowStore
from .layout_cache import Rankdir, layout
from .svg_display import svg_mimebundle

__all__ = ["SUMMARY_THRESHOLD", "DAGView", "resolve_source"]

#: DAGs (with edges) of more nodes are drawn as a level summary unless ``summarise=False``: a
#: wall of 10,000 boxes shows nothing, and dot needs minutes for it.
SUMMARY_THRESHOLD = 2_000


def resolve_source(
    source: Workflow | WorkflowData | DAG | str, store: WorkflowStore | None = None
) -> tuple[WorkflowData | None, DAG | None, str | None]:
    """(state, DAG, title) of what a view was given: a Workflow, a state, a DAG, or an id plus store."""
    if isinstance(source, Workflow):
        data = source.data
        if data is None:
            try:
                data = (store or source.store).load(source.workflow_id)
            except WorkflowNotFoundError:
                data = None  # never ran: draw the DAG, every node pending
        return data, source.dag, source.workflow_id
    if isinstance(source, WorkflowData):
        return source, None, source.id
    if isinstance(source, DAG):
        return None, source, source.name
    if isinstance(source, str):
        if store is None:
            raise TypeError("a workflow id needs a store: DAGView('my-id', store=store)")
        data = store.load(source)
        return data, None, data.id
    raise TypeError(f"expected a Workflow, WorkflowData, DAG or workflow id, not {type(source).__name__}")


class DAGView:
    """A snapshot picture of a workflow: one box per node, filled by status, with a legend.

    ``source`` is a ``Workflow`` (its current or stored state), a ``WorkflowData``, a ``DAG`` (all
    pending), or a workflow id read from ``store``. Jupyter displays it through
    ``_repr_mimebundle_`` (inline SVG, with the node details as tooltips; ``static.py`` turns it
    into an image for untrusted notebooks). ``widget()`` is the same picture to explore: zoom,
    pan, search, a status filter and clickable nodes (a ``GraphSelect``).

    ``focus`` draws only the part around one node: its ancestors (``upstream``) and descendants
    (``downstream``), at most ``depth`` edges away (None: all of them). ``summarise`` draws one
    box per level and status (``dot.level_summary``); by default a DAG with edges and more than
    ``SUMMARY_THRESHOLD`` nodes is summarised (edge-less pictures are grids, readable at any size).
    ``stable_legend`` lists the engine's statuses in the legend even when absent, as a live view
    does (by default the legend lists the statuses present).
    """

    def __init__(
        self,
        source: Workflow | WorkflowData | DAG | str,
        store: WorkflowStore | None = None,
        *,
        rankdir: Rankdir = "LR",
        timeout: float = DEFAULT_TIMEOUT,
        focus: str | None = None,
        upstream: bool = True,
        downstream: bool = True,
        depth: int | None = None,
        summarise: bool | None = None,
        stable_legend: bool = False,
    ) -> None:
        self.data, self.dag, self.title = resolve_source(source, store)
        #: The legend also lists the engine's statuses (as a live view's): a picture redrawn after a
        #: run (the recovery panel's) keeps its size; by default it lists the statuses present.
        self.stable_legend = stable_legend
        self.rankdir: Rankdir = rankdir
        self.timeout = timeout
        self.focus = focus
        self.nodes: list[GraphNode] = graph_nodes(self.data, self.dag) if (self.data or self.dag) else []
        if focus is not None:
            self.nodes = focus_nodes(self.nodes, focus, upstream=upstream, downstream=downstream, depth=depth)
        if summarise is None:
            has_edges = any(node.dependencies for node in self.nodes)
            summarise = has_edges and len(self.nodes) > SUMMARY_THRESHOLD
        #: Whether the picture is a level summary (its boxes are groups, not nodes).
        self.summarised = summarise
        if summarise:
            self.nodes = level_summary(self.nodes)
        self._svg: str | None = None

    @property
    def dot_source(self) -> str:
        """The DOT source (statuses, tooltips and legend included); feed it to ``dot`` yourself."""
        return to_dot(self.nodes, title=self.title, rankdir=self.rankdir)

    def widget(self, *, max_height: int = 600) -> Any:
        """The picture as a ``GraphSelect`` widget: zoom, pan, search, status filter, clickable
        nodes (``widget.selected``, ``widget.active``). Needs ipywidgets and a widget front end."""
        from .graph_select import GraphSelect, node_names

        return GraphSelect(value=self.svg(), node_names=node_names(self.nodes), max_height=max_height)

    def svg(self) -> str:
        """The picture as SVG text; the layout is shared with other views of the same DAG."""
        if self._svg is None:
            template = layout(
                self.nodes,
                title=self.title,
                rankdir=self.rankdir,
                timeout=self.timeout,
                stable_legend=self.stable_legend,
            )
            canvas = template.canvas()
            for node in self.nodes:
                canvas.set_node(node.position, node.status, node.history, node.status_text, node.wait)
            self._svg = canvas.svg()
        return self._svg

    def png(self) -> bytes:
        return render(self.dot_source, "png", timeout=self.timeout)

    def save(self, path: str | Path, format: RenderFormat | None = None) -> Path:
        """Write the picture; the format comes from the suffix (.svg, .png) unless given."""
        target = Path(path)
        chosen = format or target.suffix.lstrip(".").lower()
        if chosen == "svg":
            target.write_text(self.svg(), encoding="utf-8")
        elif chosen == "png":
            target.write_bytes(self.png())
        else:
            raise ValueError(f"cannot tell the format of {target.name!r}: use .svg or .png, or pass format=")
        return target

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None, **kwargs: Any) -> dict[str, str]:
        try:
            return svg_mimebundle(self.svg(), repr(self), "fw-dag")
        except GraphvizError as error:
            # A missing `dot` should read as the fix, not as a traceback from a display hook.
            return {"text/plain": f"{self!r}\ncannot draw: {error}"}

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for node in self.nodes:
            key = node.status.value if node.status is not None else "pending"
            counts[key] = counts.get(key, 0) + 1
        summary = ", ".join(f"{status}={count}" for status, count in sorted(counts.items())) or "empty"
        return f"<DAGView {self.title!r}: {len(self.nodes)} nodes; {summary}>"
