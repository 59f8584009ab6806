"""LiveView: recolour a workflow's picture in place while it runs, plus a done/total progress bar."""

from __future__ import annotations

import contextlib
import html
import logging
import os
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from operator import attrgetter
from types import TracebackType
from typing import Any, Protocol

from ..columns_view import ColumnsView
from ..dag import DAG
from ..data import StateColumns, WorkflowData
from ..dot import DEFAULT_TIMEOUT, STATUS_STYLES, graph_nodes
from ..engine import RunResult, Workflow
from ..errors import WorkflowNotFoundError
from ..events import Event, EventKind
from ..node import Node
from ..presentation import display_text
from ..status import FAILED_STATUSES, TERMINAL_STATUSES, NodeStatus
from .layout_cache import Rankdir, layout_async
from .svg_display import svg_mimebundle
from .svg_frames import NodeStates, SvgTemplate

__all__ = ["DisplayHandle", "LiveView", "Picture", "RecordingDisplay", "live", "progress_html", "run_live"]

logger = logging.getLogger(__name__)

#: Updates never take more than this share of the run: after a push that took ``t`` seconds the
#: next one waits at least ``t / _MAX_PUSH_SHARE`` (a frame of 1,000 nodes costs ~0.5 ms).
_MAX_PUSH_SHARE = 0.05
_RUN_STARTED, _RUN_FINISHED = EventKind.RUN_STARTED, EventKind.RUN_FINISHED
_NODE_STARTED, _NODE_COMPLETED = EventKind.NODE_STARTED, EventKind.NODE_COMPLETED
_ENDS_AN_ATTEMPT = frozenset({EventKind.NODE_COMPLETED, EventKind.NODE_FAILED, EventKind.NODE_SKIPPED})
_is_terminal = TERMINAL_STATUSES.__contains__


def _done(statuses: list[NodeStatus | None]) -> int:
    """How many of ``statuses`` are terminal."""
    return sum(map(_is_terminal, statuses))


def _has_failure(statuses: list[NodeStatus | None]) -> bool:
    """Whether a node of ``statuses`` failed (the progress bar then ends red)."""
    return not FAILED_STATUSES.isdisjoint(statuses)


class DisplayHandle(Protocol):
    """What a live view pushes pictures to (``IPython.display.DisplayHandle`` satisfies it)."""

    def update(self, obj: Any) -> None: ...


Displayer = Callable[[Any], DisplayHandle]


class Picture:
    """One frame of a live view: an SVG, or a text line while the layout is not ready; ``header``
    is the progress line drawn above the picture (trusted HTML, every name in it escaped)."""

    __slots__ = ("header", "svg", "text")

    def __init__(self, svg: str | None, text: str, header: str = "") -> None:
        self.svg = svg
        self.text = text
        self.header = header

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None, **kwargs: Any) -> dict[str, str]:
        if self.svg is None:
            if self.header:
                return {"text/html": self.header, "text/plain": self.text}
            return {"text/plain": self.text}
        return svg_mimebundle(self.svg, self.text, "fw-live", self.header)

    def __repr__(self) -> str:
        return self.text


def progress_html(title: str, total: int, statuses: list[NodeStatus | None], final: bool) -> str:
    """A progress line: a bar (blue while running, green when every node completed, red as soon
    as a node failed) and a summary; the final frame says how the run ended."""
    counts = Counter(NodeStatus.PENDING if status is None else status for status in statuses)
    done = sum(count for status, count in counts.items() if status in TERMINAL_STATUSES)
    failed = counts[NodeStatus.FAILED] + counts[NodeStatus.COMPENSATION_FAILED]
    if failed:
        colour = STATUS_STYLES[NodeStatus.FAILED].fill
    elif final and counts[NodeStatus.COMPLETED] == total:
        colour = STATUS_STYLES[NodeStatus.COMPLETED].fill
    else:
        colour = STATUS_STYLES[NodeStatus.RUNNING].fill
    breakdown = ", ".join(f"{count} {status.value}" for status, count in counts.items() if count)
    if final and failed:
        summary = f"run failed: {breakdown}"
    elif final:
        summary = f"finished: {breakdown}"
    else:
        summary = f"{done}/{total} nodes done" + (f" ({failed} failed)" if failed else "")
    share = 100.0 * done / total if total else 100.0
    return (
        '<div class="fw-progress" style="display: flex; align-items: center; gap: 8px; margin: 2px 0 4px 0">'
        '<div style="width: 240px; height: 10px; border: 1px solid #555555; background-color: #ffffff">'
        f'<div class="fw-progress-bar" style="width: {share:.1f}%; height: 100%; background-color: {colour}">'
        "</div></div>"
        f"<span><b>{html.escape(display_text(title))}</b>: {html.escape(summary)}</span></div>"
    )


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

    def __init__(self, dag: DAG, fingerprint: tuple[list[Node], list[tuple[str, ...]]]) -> None:
        self.fingerprint = fingerprint
        self.nodes = graph_nodes(None, dag)
        self.names = tuple(node.name for node in self.nodes)
        self._templates: dict[tuple[str, str | None], Future[SvgTemplate]] = {}

    def template(self, rankdir: Rankdir, timeout: float, title: str | None = None) -> Future[SvgTemplate]:
        key = (rankdir, title)
        future = self._templates.get(key)
        if future is None or (future.done() and future.exception() is not None):
            future = self._templates[key] = layout_async(
                self.nodes, title=title, rankdir=rankdir, timeout=timeout
            )
        return future


# Weak keys: a DAG that is dropped takes its cached layout with it.
_graphs: weakref.WeakKeyDictionary[DAG, _Graph] = weakref.WeakKeyDictionary()
_dependencies_of = attrgetter("depends_on")


def _graph_of(dag: DAG) -> _Graph:
    # Compared on every view, so a DAG edited between runs (a node added, a dependency added) is
    # laid out again. C-level passes whose lists compare element by identity first: microseconds.
    fingerprint = (list(dag), list(map(_dependencies_of, dag)))
    graph = _graphs.get(dag)
    if graph is None or graph.fingerprint != fingerprint:
        graph = _graphs[dag] = _Graph(dag, fingerprint)
    return graph


class _Ticker:
    """One daemon thread that pushes the throttled frames of every live view when they fall due.

    A view asks at most once per frame (``LiveView._request_frame``); the thread sleeps until the
    earliest due time and is woken only when a request is due before that. It starts on the first
    request and lives as long as the process, idle (blocked, no polling) while nothing is due.
    """

    def __init__(self) -> None:
        self._start_afresh()

    def _start_afresh(self) -> None:
        """Also run in a forked child: the parent's thread is gone and its lock may be held."""
        self._wake = threading.Condition(threading.Lock())
        self._due: dict[LiveView, float] = {}
        self._sleeping_until = float("inf")
        self._thread: threading.Thread | None = None

    def request(self, view: LiveView, at: float) -> None:
        with self._wake:
            self._due[view] = min(at, self._due.get(view, at))
            if self._thread is None or not self._thread.is_alive():  # first use, or after a fork
                self._thread = threading.Thread(target=self._run, name="flow-workbench-live", daemon=True)
                self._thread.start()
            if at < self._sleeping_until:
                self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                now = time.monotonic()
                ready = [view for view, at in self._due.items() if at <= now]
                for view in ready:
                    del self._due[view]
                if not ready:
                    self._sleeping_until = min(self._due.values(), default=float("inf"))
                    wait = None if not self._due else self._sleeping_until - now
                    self._wake.wait(wait)
                    self._sleeping_until = float("-inf")  # awake: requests need not notify
                    continue
            for view in ready:
                try:
                    view._tick()
                except Exception:  # a failing display must not stop the frames of other views
                    logger.exception("live view %r failed to push a frame", view)


_ticker = _Ticker()
os.register_at_fork(after_in_child=_ticker._start_afresh)


class LiveView:
    """A picture of ``workflow`` that follows its run: nodes change colour as they start and finish.

    The graph is laid out once per DAG (one ``dot`` run, in a background thread, shared by every
    view of the same DAG). Each frame is drawn from the workflow's state in one pass over that
    layout (see ``SvgTemplate.render``) and pushed to a single display handle: at most every
    ``interval`` seconds while the run goes, and a final one when it ends, so the last picture
    stays in the cell output. Use it as a context manager (``with LiveView(wf): wf.execute()``),
    or pass ``view.observer`` to ``execute(on_event=...)`` (the only way for a bare DAG).

    Where frames are drawn: intermediate frames on one shared background thread (the "ticker"),
    from the state under the state's lock; the final frame on the thread that leaves the ``with``
    block, or delivers the run's end (``RUN_FINISHED``) to the observer, whichever comes first.
    No frame follows the final one.

    * Inside a ``with`` block the view does not subscribe to events at all (so the engine need not
      build any): the ticker looks at the running state every ``interval`` seconds and pushes a
      frame when the picture changed. A node that starts is drawn running at the next look.
    * Through ``observer`` (events may come from any engine thread, one at a time), a node event
      costs one flag check; the first one after a frame asks the ticker for the next frame at the
      end of the throttle window, so a node that starts inside the window is drawn running before
      it finishes. A bare DAG's events are kept and drawn, as it has no state to read.

    ``display`` is True for IPython, False for none (call ``svg()`` yourself), or a callable that
    shows a first frame and returns a handle with ``update(frame)`` (e.g. ``RecordingDisplay()``).

    ``progress``: in IPython each frame carries a progress line above the picture (so the cell
    keeps the final one, red with a summary when the run failed, also in static exports);
    elsewhere a ``tqdm`` bar (``progress_bar``) counts the nodes done.
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
        title_in_picture: bool = False,
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
        self._names = graph.names
        # A bare DAG has no state to read: its events are kept (appended by the observer, folded
        # into these columns when a frame is drawn) and drawn instead.
        self._recorded: list[Event] | None = None if self.workflow is not None else []
        self._recorded_columns = StateColumns(self.title)
        self._lock = threading.RLock()
        #: No node event since the last frame (or one is already requested): the observer's flag.
        self._quiet = True
        self._finished = False  # the final frame of the current run was pushed
        #: Inside a ``with`` block: the ticker keeps looking at the state.
        self._attached = False
        #: The state of an earlier run, seen when the ``with`` block began: not worth looking at.
        self._stale_data: WorkflowData | None = None
        self._next_push = 0.0
        self.error: BaseException | None = None
        self.updates = 0
        # No title in the picture: every run of a DAG (each with its own workflow id) then shares one
        # layout; the id shows in the progress bar and the frame's text.
        # ``title_in_picture``: the picture looks like a DAGView's (a panel swaps one for the other
        # when a run starts and ends, and must not jump), at the cost of a layout per workflow id.
        self._template: Future[SvgTemplate] = graph.template(
            rankdir, timeout, self.title if title_in_picture else None
        )
        # In IPython the frames carry the progress line; elsewhere tqdm shows it.
        self._progress_line = progress and display is True
        self._want_progress = progress and not self._progress_line
        self.progress_bar: Any = None
        self._handle: DisplayHandle | None = None
        self._showing_picture = False  # the last frame pushed had the picture, not a text line
        self._drawn: NodeStates | None = None  # what the last picture pushed shows
        self._pushed_failure = False  # a node of the last frame pushed had failed
        self._shown_text = ""
        if display is not False:
            displayer: Displayer = _ipython_display if display is True else display
            with self._lock:
                svg, statuses, self._drawn = self._draw(self._ready_template())
                first = self._picture(svg, _done(statuses), self._drawn)
                self._handle = displayer(first)
                self._showing_picture = svg is not None
                self._shown_text = first.text
                self._next_push = time.monotonic() + self.interval
        if not self._template.done():
            # Show the picture as soon as it is laid out, even before (or without) a run.
            self._template.add_done_callback(lambda _: self._request_frame())

    # --- events --------------------------------------------------------------------------------

    def observer(self, event: Event) -> None:
        """Feed one run event; cheap (a flag check per node event), from any thread."""
        if event.node is not None:
            if self._recorded is not None:
                self._recorded.append(event)
            if self._quiet:
                self._request_frame()
        elif event.kind is _RUN_STARTED:
            with self._lock:
                self._finished = False
                self._start_progress()
        elif event.kind is _RUN_FINISHED:
            self.finish()

    def _request_frame(self) -> None:
        """Have the ticker push a frame at the end of the throttle window (or now, if it ended)."""
        self._quiet = False
        _ticker.request(self, self._next_push)

    def _tick(self) -> None:
        """A frame (the ticker calls it when one is due)."""
        with self._lock:
            if self._finished:
                return  # the final frame is out; nothing may replace it
            self._quiet = True  # before drawing: an event from now on asks for another frame
            if not self._attached:
                self._push()
                return
            data = self.workflow.data if self.workflow is not None else None
            if data is None or data is self._stale_data:
                self._next_push = time.monotonic() + self.interval  # the run has not begun
            else:
                self._push(skip_unchanged=True)
            _ticker.request(self, self._next_push)

    def _start_progress(self) -> None:
        if self._want_progress:
            if self.progress_bar is not None:
                self.progress_bar.close()
            from tqdm.auto import tqdm

            # Shown once the run has lasted an update interval (tqdm's delay): a shorter run is
            # over before a bar could show progress, and its final picture says it all.
            self.progress_bar = tqdm(
                total=len(self._names), desc=self.title, unit="node", delay=self.interval
            )
        if self._handle is not None and not self._showing_picture and self._template.done():
            self._push()  # laid out since the last frame: show the picture before nodes run

    def finish(self) -> None:
        """Push the final frame, drawn from the workflow's state, and close the progress bar.

        Idempotent: leaving the ``with`` block calls it, and so does ``RUN_FINISHED``.
        """
        with self._lock:
            if self._finished and self._quiet:
                return
            if self._recorded is not None:
                # A bare DAG: when a run ends the engine leaves no node running.
                self._fold_recorded()
                statuses = self._recorded_columns.statuses
                for name, status in statuses.items():
                    if status is NodeStatus.RUNNING:
                        statuses[name] = NodeStatus.PENDING
            if not self._template.done():
                # A failure is recorded by _ready_template; the run's outcome matters more.
                with contextlib.suppress(Exception):
                    self._template.result(self.timeout + 5)
            self._quiet = True
            self._push(final=True)
            if self.progress_bar is not None:
                if self._pushed_failure:  # what the final frame shows: no second read of the state
                    self.progress_bar.colour = STATUS_STYLES[NodeStatus.FAILED].fill  # ends red
                    self.progress_bar.set_postfix_str("run failed", refresh=False)
                self.progress_bar.close()
            self._finished = True

    def wait_for_layout(self, timeout: float | None = None) -> bool:
        """Block until the picture is laid out (or ``dot`` failed); False on timeout."""
        try:
            self._template.result(timeout)
        except TimeoutError:
            return False
        except Exception:  # the failure is shown in the frame, see _ready_template
            pass
        return True

    # --- context manager -----------------------------------------------------------------------

    def __enter__(self) -> LiveView:
        if self.workflow is None:
            raise TypeError("a LiveView of a bare DAG cannot subscribe: pass view.observer to execute()")
        with self._lock:
            self._finished = False
            self._attached = True
            self._stale_data = self.workflow.data
            self._start_progress()
            if self._handle is not None or self.progress_bar is not None:
                self._quiet = False
                _ticker.request(self, self._next_push)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        with self._lock:
            self._attached = False
            self._stale_data = None
        self.finish()

    # --- state ---------------------------------------------------------------------------------

    @property
    def done(self) -> int:
        """Nodes in a terminal status (they will not run again)."""
        return sum(map(_is_terminal, self.statuses().values()))

    @property
    def total(self) -> int:
        return len(self._names)

    def statuses(self) -> dict[str, NodeStatus | None]:
        """What each node is drawn as now (None: not in the state yet, drawn pending)."""
        with self._lock, self._read_columns() as columns:
            if columns is None:
                return dict.fromkeys(self._names)
            return dict(zip(self._names, map(columns.statuses.get, self._names), strict=True))

    def svg(self) -> str | None:
        """The current picture (None until the layout is ready, or if ``dot`` failed)."""
        with self._lock:
            return self._draw(self._ready_template())[0]

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

    @contextlib.contextmanager
    def _read_columns(self) -> Iterator[ColumnsView | None]:
        """The columns to draw, read under the state's lock while the block runs (None without a
        state); call with ``self._lock`` held."""
        if self._recorded is not None:
            self._fold_recorded()
            yield ColumnsView(self._recorded_columns)  # this view's own: only it writes them
            return
        data = self._state()
        if data is None:
            yield None
            return
        with data.read_columns() as columns:
            yield columns

    def _fold_recorded(self) -> None:
        """Apply the events a bare DAG's observer kept, in order (call with ``self._lock`` held)."""
        recorded = self._recorded
        if not recorded:
            return
        count = len(recorded)
        events = recorded[:count]
        del recorded[:count]  # the observer may append meanwhile: both are atomic list operations
        columns = self._recorded_columns
        for event in events:
            name = event.node
            if name is None or event.status is None:
                continue
            columns.statuses[name] = event.status
            if event.attempt:
                columns.attempts[name] = event.attempt
            if event.kind is _NODE_STARTED:
                columns.started_at[name] = event.at
                columns.finished_at.pop(name, None)
            elif event.kind in _ENDS_AN_ATTEMPT:
                columns.finished_at[name] = event.at
            if event.error is not None:
                columns.errors[name] = event.error
            elif event.kind is _NODE_STARTED or event.kind is _NODE_COMPLETED:
                columns.errors.pop(name, None)

    def _ready_template(self) -> SvgTemplate | None:
        """The layout if it is ready; None while ``dot`` runs, or if it failed (see ``error``)."""
        if not self._template.done():
            return None
        try:
            return self._template.result()
        except Exception as error:  # GraphvizNotFoundError and friends: shown, not raised
            self.error = error
            return None

    def _draw(
        self, template: SvgTemplate | None, unless: NodeStates | None = None
    ) -> tuple[str | None, list[NodeStatus | None], NodeStates | None]:
        """(the picture, or None without a layout or when it would show ``unless``; every node's
        status, none without a state; what the picture shows) of the current state."""
        states = None
        with self._read_columns() as columns:
            if columns is None:
                return (template.neutral_svg if template is not None else None), [], None
            if template is None:
                statuses = list(map(columns.statuses.get, self._names))
            else:
                states = template.node_states(columns)
                statuses = states.statuses
        if template is None or states is None or states == unless:
            return None, statuses, states
        return template.compose(states), statuses, states

    # --- display -------------------------------------------------------------------------------

    def _picture(self, svg: str | None, done: int, states: NodeStates | None, final: bool = False) -> Picture:
        summary = f"{self.title}: {done}/{len(self._names)} nodes done"
        header = ""
        if self._progress_line:
            statuses = states.statuses if states is not None else [None] * len(self._names)
            header = progress_html(self.title, len(self._names), list(statuses), final)
        if svg is not None:
            return Picture(svg, summary, header)
        if self.error is not None:
            return Picture(None, f"{summary} (cannot draw the graph: {self.error})", header)
        return Picture(None, f"{summary} (laying out {len(self._names)} nodes with Graphviz...)", header)

    def _push(self, *, final: bool = False, skip_unchanged: bool = False) -> None:
        """Draw and push a frame, and move the progress bar (call with ``self._lock`` held)."""
        started = time.monotonic()
        if self._handle is not None or self.progress_bar is not None:
            # Without a display only the count is needed: no picture is drawn.
            template = self._ready_template() if self._handle is not None else None
            unchanged = self._drawn if skip_unchanged and self._showing_picture else None
            svg, statuses, states = self._draw(template, unless=unchanged)
            done = _done(statuses)
            self._pushed_failure = _has_failure(statuses)
            if self._handle is not None and not (unchanged is not None and states == unchanged):
                picture = self._picture(svg, done, states, final)
                if not (skip_unchanged and svg is None and picture.text == self._shown_text):
                    self._handle.update(picture)
                    self._showing_picture = svg is not None
                    self._shown_text = picture.text
                    self._drawn = states
                    self.updates += 1
            if self.progress_bar is not None and self.progress_bar.n != done:
                self.progress_bar.n = done
                if not final:  # close() draws the bar once more anyway
                    self.progress_bar.refresh()
        cost = time.monotonic() - started
        self._next_push = time.monotonic() + max(self.interval, cost / _MAX_PUSH_SHARE)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None, **kwargs: Any) -> dict[str, str]:
        with self._lock:
            svg, statuses, states = self._draw(self._ready_template())
            return self._picture(svg, _done(statuses), states, self._finished)._repr_mimebundle_()

    def __repr__(self) -> str:
        return f"<LiveView {self.title!r}: {self.done}/{self.total} nodes done>"


def live(workflow: Workflow, **options: Any) -> LiveView:
    """``with live(wf): wf.execute()`` shows the DAG and recolours it as the run goes."""
    return LiveView(workflow, **options)


def run_live(workflow: Workflow, **options: Any) -> RunResult:
    """Execute ``workflow`` with a live view; the final picture stays in the cell output."""
    with LiveView(workflow, **options):
        return workflow.execute()
