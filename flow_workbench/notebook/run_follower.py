"""RunFollower: redraw a panel's node list and table while its workflow runs, a few times a second."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..data import WorkflowData
from ..events import Event, EventKind

if TYPE_CHECKING:
    from ..engine import Workflow

__all__ = ["LIST_REFRESH_SECONDS", "RunFollower"]

#: While the panel runs its workflow, the node list and table follow the run this often at most.
LIST_REFRESH_SECONDS = 0.5
_NODE_EVENTS = frozenset(
    {EventKind.NODE_STARTED, EventKind.NODE_COMPLETED, EventKind.NODE_FAILED, EventKind.NODE_SKIPPED}
)


class RunFollower:
    """Redraws a panel's node list and table while its workflow runs: on node events, at most every
    ``LIST_REFRESH_SECONDS``; an event inside that window schedules one trailing redraw, so the
    last change is always shown. Never raises into the run (the end of the run redraws anyway)."""

    def __init__(self, workflow: Workflow, draw: Callable[[WorkflowData], None]) -> None:
        self._workflow = workflow
        self._draw = draw
        self._lock = threading.Lock()
        self._last = 0.0
        self._timer: threading.Timer | None = None
        self._stopped = False
        self._drawing = threading.Lock()  # stop() waits for a redraw under way

    def __call__(self, event: Event) -> None:
        if event.kind not in _NODE_EVENTS:
            return
        with self._lock:
            if self._stopped or self._timer is not None:
                return  # a trailing redraw is due and will show this change too
            wait = self._last + LIST_REFRESH_SECONDS - time.monotonic()
            if wait > 0:
                self._timer = threading.Timer(wait, self._redraw)
                self._timer.daemon = True
                self._timer.start()
                return
            self._last = time.monotonic()
        self._redraw_now()

    def _redraw(self) -> None:
        with self._lock:
            self._timer = None
            if self._stopped:
                return
            self._last = time.monotonic()
        self._redraw_now()

    def _redraw_now(self) -> None:
        with self._drawing:
            running = self._workflow.data
            if self._stopped or running is None:
                return
            try:
                self._draw(running.copy())
            except Exception:  # a display refresh must never disturb the run
                return

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        with self._drawing:  # a redraw under way ends before the caller draws the end state
            pass
