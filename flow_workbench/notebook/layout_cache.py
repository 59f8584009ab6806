"""One `dot` run per distinct graph: templates laid out in a background thread and cached."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from concurrent.futures import Future
from typing import Literal

from ..dot import DEFAULT_TIMEOUT, ENGINE_STATUSES, GraphNode, present_statuses, render, to_dot
from ..status import NodeStatus
from .svg_frames import SvgTemplate

__all__ = ["Rankdir", "clear_layout_cache", "layout", "layout_async"]

Rankdir = Literal["LR", "TB", "RL", "BT"]

_CACHE_SIZE = 16
_cache: OrderedDict[Hashable, Future[SvgTemplate]] = OrderedDict()
_cache_lock = threading.Lock()


def _layout_nodes(nodes: Sequence[GraphNode]) -> list[GraphNode]:
    """The nodes as the layout sees them: neutral status, so one layout serves every state."""
    return [node._replace(status=None, history=None, status_text=None, wait=None) for node in nodes]


def _legend_statuses(nodes: Sequence[GraphNode]) -> tuple[NodeStatus, ...]:
    present = {node.status for node in nodes if node.status is not None}
    return tuple(status for status in NodeStatus if status in present or status in ENGINE_STATUSES)


def layout_async(
    nodes: Sequence[GraphNode],
    *,
    title: str | None = None,
    rankdir: Rankdir = "LR",
    timeout: float = DEFAULT_TIMEOUT,
    legend: tuple[NodeStatus, ...] | None = None,
) -> Future[SvgTemplate]:
    """The template of ``nodes``, laid out in a background thread unless an identical graph was.

    Views of the same DAG (and title, direction, legend) share one ``dot`` run; the future lets
    a run start while a large graph is still being laid out.
    """
    if legend is None:  # a live view: the engine's statuses too, so the layout stays put
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
    stable_legend: bool = False,
) -> SvgTemplate:
    """The (cached) template of a static picture of ``nodes``, whose legend lists the statuses
    present (``stable_legend``: the engine's statuses too, as a live view's, so a picture that is
    redrawn after a run keeps its size); raises ``GraphvizNotFoundError`` without ``dot``."""
    legend = (
        None if stable_legend else tuple(status for status in NodeStatus if status in present_statuses(nodes))
    )
    future = layout_async(nodes, title=title, rankdir=rankdir, timeout=timeout, legend=legend)
    return future.result(timeout + 5)


def clear_layout_cache() -> None:
    """Forget every cached layout (tests use it to count ``dot`` runs from a clean slate)."""
    with _cache_lock:
        _cache.clear()
