"""Per-operation counters and timings every store keeps, as plain data a notebook can tabulate."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass


@dataclass
class OperationStats:
    """Counts and durations of one kind of store operation."""

    operation: str
    calls: int = 0
    failures: int = 0
    total_seconds: float = 0.0
    max_seconds: float = 0.0
    last_error: str | None = None

    @property
    def mean_seconds(self) -> float:
        return self.total_seconds / self.calls if self.calls else 0.0


class StoreMetrics:
    """Thread-safe operation statistics: ``with metrics.measure("save"): ...``."""

    OPERATIONS = ("save", "load", "list", "delete", "record", "summary", "commit")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats: dict[str, OperationStats] = {op: OperationStats(op) for op in self.OPERATIONS}

    @contextmanager
    def measure(self, operation: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        except BaseException as error:
            self._add(operation, time.perf_counter() - start, error)
            raise
        self._add(operation, time.perf_counter() - start, None)

    def _add(self, operation: str, seconds: float, error: BaseException | None) -> None:
        with self._lock:
            stats = self._stats.get(operation)
            if stats is None:
                stats = self._stats[operation] = OperationStats(operation)
            stats.calls += 1
            stats.total_seconds += seconds
            stats.max_seconds = max(stats.max_seconds, seconds)
            if error is not None:
                stats.failures += 1
                stats.last_error = f"{type(error).__name__}: {error}"

    def get(self, operation: str) -> OperationStats:
        with self._lock:
            stats = self._stats.get(operation) or OperationStats(operation)
            return OperationStats(**asdict(stats))

    def snapshot(self) -> list[dict[str, object]]:
        """One dict per operation (calls, failures, total/mean/max seconds, last error)."""
        with self._lock:
            return [{**asdict(s), "mean_seconds": s.mean_seconds} for s in self._stats.values()]

    def reset(self) -> None:
        with self._lock:
            self._stats = {op: OperationStats(op) for op in self.OPERATIONS}
