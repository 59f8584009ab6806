"""Run events (node started/finished/failed/retrying/skipped, level done, state saved) and observers."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from .status import NodeStatus

logger = logging.getLogger(__name__)


class EventKind(StrEnum):
    RUN_STARTED = "run_started"
    NODE_STARTED = "node_started"
    NODE_RETRYING = "node_retrying"
    NODE_COMPLETED = "node_completed"
    NODE_FAILED = "node_failed"
    NODE_SKIPPED = "node_skipped"
    #: Completed nodes whose code changed were not re-run (``detail`` names them).
    STALE_NODES = "stale_nodes"
    LEVEL_COMPLETED = "level_completed"
    STATE_SAVED = "state_saved"
    SAVE_FAILED = "save_failed"
    RUN_FINISHED = "run_finished"


@dataclass(slots=True)
class Event:
    """Something that happened during a run. ``status`` is the node's status after the event.

    Treat events as read-only; they are not frozen only because a frozen dataclass costs 2.5x as
    much to build, and runs emit one per node start and finish.
    """

    kind: EventKind
    workflow_id: str
    at: float
    node: str | None = None
    attempt: int = 0
    level: int | None = None
    status: NodeStatus | None = None
    error: str | None = None
    #: Seconds until the next attempt (retrying), or free text (run outcome, save target).
    delay: float | None = None
    detail: str = ""


Observer = Callable[[Event], None]


class EventBus:
    """Delivers events to observers in order; an observer that raises is logged, never fatal."""

    def __init__(self) -> None:
        #: The observers, oldest first: replaced (copy on write), never changed in place, so hot
        #: paths read it without the lock (``if bus.observers: bus.deliver(...)``). Read only.
        self.observers: tuple[Observer, ...] = ()
        self._lock = threading.Lock()

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        """Add an observer; returns a function that removes it."""
        with self._lock:
            self.observers = (*self.observers, observer)

        def unsubscribe() -> None:
            with self._lock:
                self.observers = tuple(o for o in self.observers if o is not observer)

        return unsubscribe

    @property
    def active(self) -> bool:
        return bool(self.observers)

    def emit(self, kind: EventKind, workflow_id: str, **fields: object) -> None:
        observers = self.observers  # copy-on-write: safe to iterate without the lock
        if not observers:
            return
        self.deliver(Event(kind, workflow_id, time.time(), **fields))  # type: ignore[arg-type]

    def deliver(self, event: Event) -> None:
        """Hand a ready-made event to every observer (hot paths build it positionally)."""
        for observer in self.observers:
            try:
                observer(event)
            except Exception:
                logger.exception("event observer %r failed on %s", observer, event.kind)
