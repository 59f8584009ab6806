"""Shared helpers for the benchmark scripts: timing medians, random layered DAGs, result tables, goals."""

from __future__ import annotations

import gc
import json
import os
import random
import statistics
import time
from collections.abc import Callable, Sequence
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


def interleaved(*cases: tuple[str, Callable[[], object]], repeat: int) -> list[Measurement]:
    """Medians of ``repeat`` runs per case, the cases alternating run by run (after one warm-up
    each), so load from other processes on the machine hits every case alike."""
    for _, function in cases:
        function()
    times: list[list[float]] = [[] for _ in cases]
    for _ in range(repeat):
        for index, (_, function) in enumerate(cases):
            gc.collect()
            gc.disable()
            try:
                started = time.perf_counter()
                function()
                times[index].append(time.perf_counter() - started)
            finally:
                gc.enable()
    results = []
    for (name, _), runs in zip(cases, times, strict=True):
        median = statistics.median(runs)
        results.append(Measurement(name, median, (max(runs) - min(runs)) / median, runs))
    return results


def paired_ratio(numerator: Measurement, denominator: Measurement) -> float:
    """Median of the run-by-run ratios of two cases ``interleaved`` measured alternately.

    Each pair ran within milliseconds of each other, so the shared disk's speed, which drifts by
    tens of percent between moments (and several times under other processes' syncs), cancels
    within the pair instead of landing on one side of a ratio of medians (as in P5's rounds).
    """
    return statistics.median(a / b for a, b in zip(numerator.runs, denominator.runs, strict=True))


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


#: Where ``report_goals`` writes each script's goals; ``bench/run.py`` reads them after every run.
GOALS_DIR_VARIABLE = "FLOW_WORKBENCH_BENCH_GOALS"
DEFAULT_GOALS_DIR = Path("bench/results/goals")


def goals_dir() -> Path:
    return Path(os.environ.get(GOALS_DIR_VARIABLE) or DEFAULT_GOALS_DIR)


def report_goals(script: str, goals: Sequence[tuple[str, float, str, bool]]) -> int:
    """Print the goals (name, measured value, target text, met) of one run of ``script`` as a
    table and write them to ``<goals dir>/<script>.json`` in the one format ``bench/run.py``
    aggregates; returns the exit status the script should end with (1 if a goal was missed).

    The target text starts with the comparison (``"<= 0.6"``): ``met`` is decided by the script,
    which may combine several conditions, and the text is what the summary shows.
    """
    print_table(
        "Goals",
        [
            {"goal": name, "measured": f"{value:.3g}", "target": target, "met": "yes" if met else "NO"}
            for name, value, target, met in goals
        ],
    )
    write_json(
        goals_dir() / f"{script}.json",
        {
            "script": script,
            "goals": [
                {"goal": name, "value": float(value), "target": target, "met": bool(met)}
                for name, value, target, met in goals
            ],
        },
    )
    return 0 if all(met for *_, met in goals) else 1
