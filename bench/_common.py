"""Shared helpers for the benchmark scripts: timing medians, random layered DAGs, result tables."""

from __future__ import annotations

import gc
import json
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Measurement:
    name: str
    median: float
    spread: float  # (max - min) / median across runs
    runs: list[float] = field(default_factory=list)


def measure(name: str, function: Callable[[], object], *, repeat: int = 7, warmup: int = 1) -> Measurement:
    """Median wall time of ``function`` over ``repeat`` runs after ``warmup`` runs, GC disabled."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            function()
            times.append(time.perf_counter() - start)
        finally:
            gc.enable()
    median = statistics.median(times)
    return Measurement(name, median, (max(times) - min(times)) / median if median else 0.0, times)


def measure_prepared(
    name: str, prepare: Callable[[], object], function: Callable[[object], object], *, repeat: int = 7
) -> Measurement:
    """Like ``measure``, but ``function(prepare())``: each run gets a new input, prepared untimed."""
    times = []
    for _ in range(repeat):
        prepared = prepare()
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            function(prepared)
            times.append(time.perf_counter() - start)
        finally:
            gc.enable()
    median = statistics.median(times)
    return Measurement(name, median, (max(times) - min(times)) / median if median else 0.0, times)


def layered_dag_structure(
    nodes: int, *, seed: int = 42, width: int = 50, max_deps: int = 3
) -> dict[str, list[str]]:
    """A random layered DAG: nodes in layers of ``width``, each depending on up to ``max_deps``
    nodes of the previous layer (fixed seed, so every run and every peer gets the same graph)."""
    rng = random.Random(seed)
    structure: dict[str, list[str]] = {}
    previous: list[str] = []
    for index in range(nodes):
        name = f"n{index}"
        deps = rng.sample(previous, k=min(len(previous), rng.randint(1, max_deps))) if previous else []
        structure[name] = deps
        if (index + 1) % width == 0 or index == nodes - 1:
            previous = [f"n{i}" for i in range(index + 1 - width, index + 1)] if index + 1 >= width else []
    return structure


def fmt_seconds(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} µs"


def print_table(title: str, rows: list[dict[str, str]]) -> None:
    print(f"\n{title}")
    if not rows:
        return
    headers = list(rows[0])
    widths = [max(len(h), *(len(r[h]) for r in rows)) for h in headers]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(row[h].ljust(w) for h, w in zip(headers, widths, strict=True)))


def write_json(path: Path, payload: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=lambda o: asdict(o)))
