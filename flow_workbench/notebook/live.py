"""LiveView: recolour a workflow's picture in place while it runs, plus a done/total progress bar."""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from types import TracebackType
from typing import Any, Literal, Protocol

from ..dag import DAG
from ..data import WorkflowData
from ..dot import DEFAULT_TIMEOUT, graph_nodes
from ..engine import RunResult, Workflow
from ..errors import WorkflowNotFoundError
from ..events import Event, EventKind
from ..status import TERMINAL_STATUSES, NodeStatus
from .svg_template import Canvas, SvgTemplate, details_xml, details_xml_of, layout_async, svg_mimebundle

__all__ = ["DisplayHandle", "LiveView", "Picture", "RecordingDisplay", "live", "run_live"]

Rankdir = Literal["LR", "TB", "RL", "BT"]

#: Updates never take more than this share of the run: after a push that took ``t`` seconds the
#: next one waits at least ``t / _MAX_PUSH_SHARE`` (a 1.4 MB SVG of 1,000 nodes costs ~2 ms).
_MAX_PUSH_SHARE = 0.05
_STARTED = EventKind.NODE_STARTED
# Failed and skipped nodes carry their error in the state, not fully in the event.
_READ_FROM_STATE = frozenset({NodeStatus.FAILED, NodeStatus.SKIPPED})


class DisplayHandle(Protocol):
    """What a live view pushes pictures to (``IPython.display.DisplayHandle`` satisfies it)."""

    def update(self, obj: Any) -> None: ...


Displayer = Callable[[Any], DisplayHandle]


class Picture:
    """One frame of a live view: an SVG, or a text line while the layout is not ready."""

    __slots__ = ("svg", "text")

    def __init__(self, svg: str | None, text: str) -> None:
        self.svg = svg
        self.text = text

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None, **kwargs: Any) -> dict[str, str]:
        if self.svg is None:
            return {"text/plain": self.text}
        return svg_mimebundle(self.svg, self.text, "fw-live")

    def __repr__(self) -> str:
        return self.text


class RecordingDisplay:
    """A headless display that keeps every frame a live view pushed (tests, benchmarks, scripts)."""

    def __init__(self) -> None:
        self.frames: list[Any] = []

    def __call__(self, obj: Any) -> RecordingDisplay:
        self.frames.append(obj)
        return self

    def update(self, obj: Any) -> None:
        self.frames.append(obj)

    @property
    def last_svg(self) -> str | None:
        """The SVG of the most recent frame that had one."""
        for frame in reversed(self.frames):
            svg = getattr(frame, "svg", None)
            if svg is not None:
                return str(svg)
        return None


class _NoHandle:
    """Stands in for a display handle outside IPython, where frames cannot be replaced."""

    def update(self, obj: Any) -> None:
        pass


def _ipython_display(obj: Any) -> DisplayHandle:
    from IPython.display import display

    handle = display(obj, display_id=True)  # type: ignore[no-untyped-call]
    # Outside an IPython shell, display() prints the frame's text and returns no handle: a plain
    # script then sees the first line and the progress bar, not a stream of reprints.
    return _NoHandle() if handle is None else handle


class _Graph:
    """What a live view derives from a DAG, kept per DAG so each new run of it starts cheaply."""

    def __init__(self, structure: dict[str, list[str]], dag: DAG) -> None:
        self.structure = structure
        self.nodes = graph_nodes(None, dag)
        self.index = {node.name: node.position for node in self.nodes}
        self._templates: dict[str, Future[SvgTemplate]] = {}

    def template(self, rankdir: Rankdir, timeout: float) -> Future[SvgTemplate]:
        future = self._templates.get(rankdir)
        if future is None or (future.done() and future.exception() is not None):
            future = self._templates[rankdir] = layout_async(self.nodes, rankdir=rankdir, timeout=timeout)
        return future


# Weak keys: a DAG that is dropped takes its cached layout with it.
_graphs: weakref.WeakKeyDictionary[DAG, _Graph] = weakref.WeakKeyDictionary()


def _graph_of(dag: DAG) -> _Graph:
    structure = dag.structure()  # compared, so a DAG edited between runs is laid out again
    graph = _graphs.get(dag)
    if graph is None or graph.structure != structure:
        graph = _graphs[dag] = _Graph(structure, dag)
    return graph


class LiveView:
    """A picture of ``workflow`` that follows its run: nodes change colour as they start and finish.

    The graph is laid out once per DAG (one ``dot`` run, in a background thread, shared by every
    view of the same DAG); each update rewrites only the status parts of that SVG and pushes it to
    a single display handle, at most every ``interval`` seconds, plus a final update when the run
    ends, so the last picture stays in the cell output. Use it as a context manager
    (``with LiveView(wf): wf.execute()``), or pass ``view.observer`` to ``execute(on_event=...)``.

    ``display`` is True for IPython, False for none (call ``svg()`` yourself), or a callable that
    shows a first frame and returns a handle with ``update(frame)`` (e.g. ``RecordingDisplay()``).
    """

    def __init__(
        self,
        workflow: Workflow | DAG,
        *,
        interval: float = 0.2,
        progress: bool = True,
        display: Displayer | bool = True,
        rankdir: Rankdir = "LR",
        title: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if interval < 0:
            raise ValueError(f"interval must be >= 0, got {interval}")
        self.workflow = workflow if isinstance(workflow, Workflow) else None
        dag = workflow.dag if isinstance(workflow, Workflow) else workflow
        self.title = (
            title if title is not None else (self.workflow.workflow_id if self.workflow else dag.name)
        )
        self.interval = interval
        self.timeout = timeout
        graph = _graph_of(dag)
        self._nodes, self._index = graph.nodes, graph.index
        #: Current status and history of every node, whether or not the picture exists yet.
        self._statuses: list[NodeStatus | None] = [None] * len(self._nodes)
        #: Escaped tooltip details of every node drawn differently from the neutral layout.
        self._details: list[str | None] = [None] * len(self._nodes)
        self._dirty: dict[str, Event] = {}  # node -> its latest event, not drawn yet
        self._started_at: dict[str, float] = {}
        self._lock = threading.RLock()
        self._next_push = 0.0
        #: Pushes what arrived inside the throttle window once it ends (None when none is due).
        self._trailing: threading.Timer | None = None
        self._finished = False  # the final frame of the current run was pushed
        self._changed = True  # something changed since the last frame was pushed
        self._canvas: Canvas | None = None
        self.error: BaseException | None = None
        self.updates = 0
        # No title in the picture: every run of a DAG (each with its own workflow id) then shares one
        # layout; the id shows in the progress bar and the frame's text.
        self._template: Future[SvgTemplate] = graph.template(rankdir, timeout)
        self._want_progress = progress
        self.progress_bar: Any = None
        self._unsubscribe: Callable[[], None] | None = None
        self._sync_from_state()
        self._handle: DisplayHandle | None = None
        if display is not False:
            displayer: Displayer = _ipython_display if display is True else display
            self._handle = displayer(self._frame())
            self._changed = False

    # --- events --------------------------------------------------------------------------------

    def observer(self, event: Event) -> None:
        """Feed one run event; cheap, so it can sit on every event of a large run."""
        node = event.node
        if node is not None:
            # The hot path (two events per node) takes no lock: a dict store is atomic, and
            # _apply_dirty swaps the dict out before reading it.
            self._dirty[node] = event
            if event.kind is _STARTED:
                self._started_at[node] = event.at
            if time.monotonic() >= self._next_push:
                with self._lock:
                    self._push()
            elif self._trailing is None:
                # Without this, a node that starts right after a push would be drawn pending until
                # the next event, which for a long node is when it finishes.
                self._schedule_trailing_push()
        elif event.kind is EventKind.RUN_STARTED:
            with self._lock:
                self._run_started()
        elif event.kind is EventKind.RUN_FINISHED:
            self.finish()

    def _run_started(self) -> None:
        self._finished = False
        self._sync_from_state()
        if self._want_progress:
            if self.progress_bar is not None:
                self.progress_bar.close()
            from tqdm.auto import tqdm

            self.progress_bar = tqdm(total=len(self._nodes), desc=self.title, unit="node")
        self._push()

    def _schedule_trailing_push(self) -> None:
        with self._lock:
            if self._trailing is not None:
                return
            timer = threading.Timer(max(0.0, self._next_push - time.monotonic()), self._trailing_push)
            timer.daemon = True
            self._trailing = timer
        timer.start()

    def _trailing_push(self) -> None:
        with self._lock:
            self._trailing = None
            if self._dirty:
                self._push()

    def _cancel_trailing_push(self) -> None:
        timer, self._trailing = self._trailing, None
        if timer is not None:
            timer.cancel()

    def finish(self) -> None:
        """Bring the picture in line with the stored state and push the final frame (idempotent)."""
        with self._lock:
            if self._finished and not self._dirty:
                return  # RUN_FINISHED already did it; leaving the ``with`` block need not redo it
            self._cancel_trailing_push()
            self._sync_from_state()
            if self._canvas is None and self.error is None:
                # A failure is recorded by _ensure_canvas; the run's outcome matters more.
                with contextlib.suppress(Exception):
                    self._template.result(self.timeout + 5)
            self._push(final=True)
            if self.progress_bar is not None:
                self.progress_bar.close()
            self._finished = True

    def wait_for_layout(self, timeout: float | None = None) -> bool:
        """Block until the picture is laid out (or ``dot`` failed); False on timeout."""
        try:
            self._template.result(timeout)
        except TimeoutError:
            return False
        except Exception:  # the failure is shown in the frame, see _ensure_canvas
            pass
        return True

    # --- context manager -----------------------------------------------------------------------

    def __enter__(self) -> LiveView:
        if self.workflow is None:
            raise TypeError("a LiveView of a bare DAG cannot subscribe: pass view.observer to execute()")
        self._unsubscribe = self.workflow.subscribe(self.observer)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.finish()

    # --- state ---------------------------------------------------------------------------------

    @property
    def done(self) -> int:
        """Nodes in a terminal status (they will not run again)."""
        return sum(1 for status in self._statuses if status in TERMINAL_STATUSES)

    @property
    def total(self) -> int:
        return len(self._nodes)

    def statuses(self) -> dict[str, NodeStatus | None]:
        """What each node is drawn as now (None: not in the state yet, drawn pending)."""
        with self._lock:
            self._apply_dirty()
            return {node.name: self._statuses[node.position] for node in self._nodes}

    def svg(self) -> str | None:
        """The current picture (None until the layout is ready, or if ``dot`` failed)."""
        with self._lock:
            self._apply_dirty()
            canvas = self._ensure_canvas()
            return canvas.svg() if canvas is not None else None

    def _state(self) -> WorkflowData | None:
        """The workflow's state: the running one, else the stored one (None for a bare DAG)."""
        if self.workflow is None:
            return None
        if self.workflow.data is not None:
            return self.workflow.data
        try:
            return self.workflow.load_state()
        except WorkflowNotFoundError:
            return None

    def _sync_from_state(self) -> None:
        """Redraw nodes whose stored status differs from the picture (some changes emit no event)."""
        self._apply_dirty()
        data = self._state()
        changed: list[tuple[int, NodeStatus | None, str | None]] = []
        if data is None:
            if self.workflow is None:
                # A bare DAG: when a run ends the engine leaves no node running.
                changed = [
                    (index, NodeStatus.PENDING, details_xml(NodeStatus.PENDING, None))
                    for index, status in enumerate(self._statuses)
                    if status is NodeStatus.RUNNING
                ]
        else:
            with data.lock:  # read the columns in bulk: this runs on every node at start and end
                columns = data.columns()
                stored, attempts, errors = columns.statuses, columns.attempts, columns.errors
                for node in self._nodes:
                    name, index = node.name, node.position
                    status, current = stored.get(name), self._statuses[index]
                    if status is current:
                        continue
                    if (
                        current is None
                        and status is NodeStatus.PENDING
                        and not (name in attempts or name in errors)
                    ):
                        self._statuses[index] = status  # a fresh pending node looks like an unknown one
                        continue
                    changed.append((index, status, details_xml(status, data.node_history(name))))
        for index, status, text in changed:
            self._statuses[index] = status
            self._details[index] = text
            if self._canvas is not None and text is not None:
                self._canvas.restyle(index, status, text)
        if changed:
            self._changed = True

    def _apply_dirty(self) -> None:
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, {}
        data = self.workflow.data if self.workflow is not None else None
        canvas, statuses, details, index_of = self._canvas, self._statuses, self._details, self._index
        started_at = self._started_at
        for name, event in list(dirty.items()):
            index = index_of.get(name)
            if index is None:
                continue  # an event of a node outside this DAG: nothing to draw
            status: NodeStatus | None = event.status
            if data is not None and status in _READ_FROM_STATE:
                status = data.get_node_status(name)
                text = details_xml(status, data.node_history(name))
            else:
                finished = event.at if status in TERMINAL_STATUSES else None
                text = details_xml_of(
                    status, event.attempt, started_at.get(name), finished, None, event.error
                )
            statuses[index] = status
            details[index] = text
            if canvas is not None:
                canvas.restyle(index, status, text)
        self._changed = True

    def _ensure_canvas(self) -> Canvas | None:
        if self._canvas is None and self.error is None and self._template.done():
            try:
                template = self._template.result()
            except Exception as error:  # GraphvizNotFoundError and friends: shown, not raised
                self.error = error
                self._changed = True
                return None
            canvas = template.canvas()
            for index, text in enumerate(self._details):
                if text is not None:
                    canvas.restyle(index, self._statuses[index], text)
            self._canvas = canvas
            self._changed = True
        return self._canvas

    # --- display -------------------------------------------------------------------------------

    def _frame(self) -> Picture:
        canvas = self._ensure_canvas()
        summary = f"{self.title}: {self.done}/{self.total} nodes done"
        if canvas is not None:
            return Picture(canvas.svg(), summary)
        if self.error is not None:
            return Picture(None, f"{summary} (cannot draw the graph: {self.error})")
        return Picture(None, f"{summary} (laying out {self.total} nodes with Graphviz...)")

    def _push(self, *, final: bool = False) -> None:
        started = time.monotonic()
        self._apply_dirty()
        had_canvas = self._canvas is not None
        frame_ready = self._ensure_canvas() is not None and not had_canvas
        if self.progress_bar is not None:
            self.progress_bar.n = self.done
            self.progress_bar.refresh()
        if self._handle is not None and (self._changed or frame_ready):
            self._handle.update(self._frame())
            self.updates += 1
            self._changed = False
        cost = time.monotonic() - started
        if not final:
            self._next_push = time.monotonic() + max(self.interval, cost / _MAX_PUSH_SHARE)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None, **kwargs: Any) -> dict[str, str]:
        with self._lock:
            self._apply_dirty()
            return self._frame()._repr_mimebundle_()

    def __repr__(self) -> str:
        return f"<LiveView {self.title!r}: {self.done}/{self.total} nodes done>"


def live(workflow: Workflow, **options: Any) -> LiveView:
    """``with live(wf): wf.execute()`` shows the DAG and recolours it as the run goes."""
    return LiveView(workflow, **options)


def run_live(workflow: Workflow, **options: Any) -> RunResult:
    """Execute ``workflow`` with a live view; the final picture stays in the cell output."""
    with LiveView(workflow, **options):
        return workflow.execute()
