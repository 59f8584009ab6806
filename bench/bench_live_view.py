"""Benchmark a 1,000-node run with a headless LiveView against the same run without (paired runs)."""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import random
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from _common import report_goals, write_json

from flow_workbench import DAG, InMemoryStore, Workflow
from flow_workbench.notebook import LiveView, RecordingDisplay
from flow_workbench.notebook.svg_template import clear_layout_cache

GOAL_RATIO = 1.2
GOAL_DOT_RUNS = 1


def layered_dag(nodes: int, *, width: int = 40, seed: int = 7) -> DAG:
    """A random layered DAG: each node depends on 1-3 nodes of the previous layer (fixed seed)."""
    rng = random.Random(seed)
    dag = DAG(f"layered-{nodes}")
    names: list[str] = []
    for index in range(nodes):
        layer_start = (index // width) * width
        previous = names[max(0, layer_start - width) : layer_start]
        dependencies = rng.sample(previous, k=min(len(previous), rng.randint(1, 3))) if previous else []
        name = f"node_{index:04d}"
        dag.add_node(name, depends_on=dependencies)  # no action: a no-op node
        names.append(name)
    return dag


@contextlib.contextmanager
def count_dot_runs() -> Iterator[list[int]]:
    """Count subprocesses whose program is graphviz ``dot`` while the block runs."""
    counter = [0]
    original = subprocess.run

    def counting(args: Any, *rest: Any, **kwargs: Any) -> Any:
        program = str(args[0] if isinstance(args, list | tuple) else args)
        if program.rsplit("/", 1)[-1] == "dot":
            counter[0] += 1
        return original(args, *rest, **kwargs)

    subprocess.run = counting
    try:
        yield counter
    finally:
        subprocess.run = original


def timed(run: Callable[[], object]) -> float:
    gc.collect()
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=31, help="measured runs of each kind (>= 5)")
    parser.add_argument("--interval", type=float, default=0.2, help="LiveView update interval (s)")
    parser.add_argument(
        "--executor",
        choices=("threads", "inline"),
        default="threads",
        help="the engine's executor for every run (inline: no thread pool, the fastest engine)",
    )
    args = parser.parse_args(argv)
    dag = layered_dag(args.nodes)
    store = InMemoryStore()
    counter = iter(range(10**9))
    frame_counts: list[int] = []

    def plain() -> None:
        Workflow(dag, f"plain-{next(counter)}", store, executor=args.executor).execute()

    def with_noop_observer() -> None:
        workflow = Workflow(dag, f"observed-{next(counter)}", store, executor=args.executor)
        workflow.execute(on_event=lambda event: None)

    def with_view() -> None:
        workflow = Workflow(dag, f"live-{next(counter)}", store, executor=args.executor)
        display = RecordingDisplay()
        with LiveView(workflow, display=display, interval=args.interval):
            workflow.execute()
        # Only the count is kept: a notebook does not keep the frames it replaced either, and
        # keeping every 1.4 MB frame of every run would make each new one land on fresh memory
        # (page faults cost more than drawing the frame).
        frame_counts.append(len(display.frames))

    clear_layout_cache()
    # tqdm writes the progress bar to stderr when not in a notebook; keep the table readable.
    with count_dot_runs() as dot_runs, contextlib.redirect_stderr(io.StringIO()):
        cold = timed(with_view)  # includes the one layout, in a background thread
        for _ in range(3):  # warm-up: imports, thread pools, allocator
            plain()
            with_view()
        without: list[float] = []
        observed: list[float] = []
        with_live: list[float] = []
        for _ in range(max(5, args.repeats)):  # interleaved, so drift hits every kind alike
            without.append(timed(plain))
            observed.append(timed(with_noop_observer))
            with_live.append(timed(with_view))
    base, floor, live = statistics.median(without), statistics.median(observed), statistics.median(with_live)
    # The goal's ratio: the median of each iteration's own ratio. A run lasts ~15 ms and the two
    # kinds ran back to back, so a slow moment of the shared machine lands on both of a pair
    # instead of on one side of a ratio of medians (as in the stores' paired_ratio).
    ratio = statistics.median(
        live_run / plain_run for live_run, plain_run in zip(with_live, without, strict=True)
    )
    updates = statistics.median(frame_counts)
    rows = [
        ("nodes", f"{args.nodes}", f"executor {args.executor}"),
        ("runs measured (each kind)", f"{len(without)}", "after 3 warm-up runs"),
        ("median without live view", f"{base * 1000:.1f} ms", ""),
        (
            "median with a no-op observer",
            f"{floor * 1000:.1f} ms",
            "what any event observer costs (a view in a with block subscribes none)",
        ),
        ("median with live view", f"{live * 1000:.1f} ms", "headless, RecordingDisplay + tqdm"),
        (
            "ratio (median of paired runs)",
            f"{ratio:.2f}x",
            f"goal <= {GOAL_RATIO}x: {'met' if ratio <= GOAL_RATIO else 'MISSED'}",
        ),
        ("ratio of the medians", f"{live / base:.2f}x", "informational"),
        ("no-op observer vs without", f"{floor / base:.2f}x", "the engine building and delivering events"),
        (
            "overhead per run",
            f"{(live - base) * 1000:.2f} ms",
            f"{(live - base) / (2 * args.nodes) * 1e6:.2f} us per node event (informational:"
            f" the goal is the ratio)",
        ),
        (
            "ratio of the fastest runs",
            f"{min(with_live) / min(without):.2f}x",
            "min/min: less noise from other load",
        ),
        ("first run with view (cold)", f"{cold * 1000:.1f} ms", "includes waiting for the one layout"),
        ("dot invocations (all runs)", f"{dot_runs[0]}", f"goal {GOAL_DOT_RUNS}"),
        ("frames per run (median)", f"{updates:g}", "initial display + throttled + final"),
    ]
    width = max(len(row[0]) for row in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>10}  {note}")
    suffix = "" if args.executor == "threads" else f"_{args.executor}"
    write_json(
        Path(f"bench/results/live_view{suffix}.json"),
        {
            "benchmark": "P6 live view",
            "nodes": args.nodes,
            "executor": args.executor,
            "overhead": live - base,
            "frames_per_run": updates,
            "median_without": base,
            "median_noop_observer": floor,
            "median_live": live,
            "ratio": ratio,
            "goal_ratio": GOAL_RATIO,
            "dot_runs": dot_runs[0],
            "runs": {"without": without, "observer": observed, "live": with_live},
        },
    )
    return report_goals(
        f"live_view{suffix}",
        [
            (
                f"P6 run with live view / without ({args.executor})",
                ratio,
                f"<= {GOAL_RATIO}",
                ratio <= GOAL_RATIO,
            ),
            (
                "P6 dot invocations (all runs)",
                dot_runs[0],
                f"<= {GOAL_DOT_RUNS}",
                dot_runs[0] <= GOAL_DOT_RUNS,
            ),
        ],
    )


if __name__ == "__main__":
    raise SystemExit(main())
