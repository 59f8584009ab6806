"""Benchmark DAGView and StoreBrowser on edge-less Go JSON files of 1k, 8k and 16k nodes (issue #13).

Every Go file is edge-less (the Go library stores no DAG structure). Laid out by dot, its nodes
fell into one rank, and both dot and our SVG template parser took quadratic time: 8,000 nodes
took 17.5 s, and StoreBrowser on a 16,000-node file ran for 66 s into a TimeoutError. Goals:
at most 10x the time per 8x the nodes (1k -> 8k) for both, and StoreBrowser on the 16k file ready
(table, picture, node table and controls built) in under 5 s. Each run starts with an empty
layout cache, so it includes the Graphviz run. Exits 1 when a goal is missed.

Issue #17 adds a workflow with edges: a 1,000-node layered DAG (40 nodes per level, each with two
dependencies on the level before), failed midway. Goal: its first picture (``DAGView.svg()``)
and a ``RecoveryPanel`` ready to click (picture, list, node table) each in under 2 s.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

from _common import Measurement, fmt_seconds, print_table, report_goals, write_json

from flow_workbench import DAG, InMemoryStore, Workflow, WorkflowExecutionError
from flow_workbench.notebook import DAGView, RecoveryPanel, StoreBrowser
from flow_workbench.notebook._sources import load_state
from flow_workbench.notebook.svg_template import clear_layout_cache

SIZES = (1_000, 8_000, 16_000)
_STATUSES = ["completed"] * 6 + ["failed", "pending", "skipped"]
MAX_GROWTH_PER_8X = 10.0
BROWSER_LIMIT_SECONDS = 5.0
LAYERED_NODES = 1_000
FIRST_PICTURE_LIMIT_SECONDS = 2.0


def layered_workflow(nodes: int) -> tuple[DAG, InMemoryStore]:
    """A layered DAG of ``nodes`` nodes (40 per level, two dependencies each), run once: the node
    in the middle fails, so the picture mixes completed, failed and pending."""
    rnd = random.Random(7)
    dag = DAG(f"layered-{nodes}")
    names = [f"task_{index:05d}" for index in range(nodes)]
    failing = names[nodes // 2]

    def work(data: object) -> int:
        return 1

    def fail(data: object) -> None:
        raise RuntimeError("failed on purpose")

    for index, name in enumerate(names):
        level = index // 40
        dependencies = rnd.sample(names[(level - 1) * 40 : level * 40], 2) if level else []
        dag.add_node(name, fail if name == failing else work, depends_on=dependencies)
    store = InMemoryStore()
    with contextlib.suppress(WorkflowExecutionError):
        Workflow(dag, "layered", store).execute()
    return dag, store


def first_picture(workflow: object) -> None:
    dag, store = cast(tuple[DAG, InMemoryStore], workflow)  # interleaved() hands inputs on as object
    svg = DAGView(Workflow(dag, "layered", store)).svg()
    assert svg.count('class="node status-') == LAYERED_NODES


def first_panel(workflow: object) -> None:
    dag, store = cast(tuple[DAG, InMemoryStore], workflow)  # interleaved() hands inputs on as object
    panel = RecoveryPanel(store, "layered", dag=dag)
    assert len(panel.picture.node_names) == LAYERED_NODES and panel.table.value


def write_go_file(folder: Path, nodes: int) -> Path:
    """An edge-less Go JSON state of ``nodes`` nodes (mixed statuses, some outputs), as Go writes it."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"step_{index:05d}" for index in range(nodes)]
    document = {
        "__timestamp": 1_700_000_000_000,
        "data": {"region": "eu-west", "batch": nodes},
        "id": f"go-{nodes}",
        "nodeStatus": {name: _STATUSES[index % len(_STATUSES)] for index, name in enumerate(names)},
        "outputs": {name: {"rows": index} for index, name in enumerate(names) if index % 3 == 0},
    }
    path = folder / f"go-{nodes}.json"
    path.write_text(json.dumps(document, indent=2, sort_keys=True), encoding="utf-8")
    return path


def draw(path: object) -> None:
    data, _ = load_state(str(path))
    svg = DAGView(data).svg()
    assert svg.count('class="node status-') == len(data.node_statuses())


def browse(folder: object) -> None:
    browser = StoreBrowser(str(folder))
    panel = browser.panel
    assert panel is not None and "</svg>" in panel.picture.value, browser.message.value
    assert panel.table.value and len(panel.node_select.options) == int(browser.frame.at[0, "nodes"])


def interleaved(
    cases: list[tuple[str, int, Callable[[object], None], object]], *, repeat: int
) -> list[list[float]]:
    """Wall times of ``repeat`` runs per case, the cases alternating run by run (after one warm-up
    each), so load from other processes on the machine hits every size alike. Each run starts
    with an empty layout cache: it includes the Graphviz run, the cost of a first view."""
    for _, _, function, argument in cases:
        function(argument)
    times: list[list[float]] = [[] for _ in cases]
    for _ in range(repeat):
        for index, (_, _, function, argument) in enumerate(cases):
            clear_layout_cache()
            gc.collect()
            gc.disable()
            try:
                started = time.perf_counter()
                function(argument)
                times[index].append(time.perf_counter() - started)
            finally:
                gc.enable()
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-notebook-scale-"))
    cases: list[tuple[str, int, Callable[[object], None], object]] = []
    try:
        for nodes in SIZES:
            path = write_go_file(root / str(nodes), nodes)
            cases += [("DAGView", nodes, draw, path), ("StoreBrowser", nodes, browse, path.parent)]
        times = interleaved(cases, repeat=args.repeat)
        layered = layered_workflow(LAYERED_NODES)
        first = interleaved(
            [
                ("DAGView", LAYERED_NODES, first_picture, layered),
                ("RecoveryPanel", LAYERED_NODES, first_panel, layered),
            ],
            repeat=args.repeat,
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    results: dict[str, dict[int, Measurement]] = {"DAGView": {}, "StoreBrowser": {}}
    for (name, nodes, _, _), runs in zip(cases, times, strict=True):
        median = statistics.median(runs)
        results[name][nodes] = Measurement(f"{name} {nodes}", median, (max(runs) - min(runs)) / median, runs)

    rows = []
    for name, by_size in results.items():
        rows.append(
            {
                "view": name,
                **{f"{size:,} nodes": fmt_seconds(by_size[size].median) for size in SIZES},
                "1k -> 8k": f"{by_size[8_000].median / by_size[1_000].median:.1f}x",
                "8k -> 16k": f"{by_size[16_000].median / by_size[8_000].median:.1f}x",
            }
        )
    title = f"edge-less Go JSON files, medians of {args.repeat} interleaved runs (empty layout cache)"
    print_table(title, rows)

    first_medians = {
        "DAGView first picture": statistics.median(first[0]),
        "RecoveryPanel ready": statistics.median(first[1]),
    }
    print_table(
        f"a {LAYERED_NODES:,}-node layered DAG with edges, medians of {args.repeat} runs (empty cache)",
        [{"view": name, "seconds": fmt_seconds(median)} for name, median in first_medians.items()],
    )
    growth = {name: by_size[8_000].median / by_size[1_000].median for name, by_size in results.items()}
    browser_16k = results["StoreBrowser"][16_000].median
    missed = [
        f"{name} grows {ratio:.1f}x per 8x nodes"
        for name, ratio in growth.items()
        if ratio > MAX_GROWTH_PER_8X
    ]
    if browser_16k >= BROWSER_LIMIT_SECONDS:
        missed.append(f"StoreBrowser on 16k nodes takes {browser_16k:.2f} s")
    for name, median in first_medians.items():
        met = median < FIRST_PICTURE_LIMIT_SECONDS
        print(
            f"goal: {name} at {LAYERED_NODES:,} nodes < {FIRST_PICTURE_LIMIT_SECONDS:g} s: {median:.2f} s, "
            f"{'met' if met else 'NOT MET'}"
        )
        if not met:
            missed.append(f"{name} at {LAYERED_NODES:,} nodes takes {median:.2f} s")
    for name, ratio in growth.items():
        verdict = "met" if ratio <= MAX_GROWTH_PER_8X else "NOT MET"
        print(f"goal: {name} <= {MAX_GROWTH_PER_8X:g}x per 8x nodes: {ratio:.1f}x, {verdict}")
    print(
        f"goal: StoreBrowser on 16k nodes < {BROWSER_LIMIT_SECONDS:g} s: {browser_16k:.2f} s, "
        f"{'met' if browser_16k < BROWSER_LIMIT_SECONDS else 'NOT MET'}"
    )
    write_json(
        Path("bench/results/notebook_scale.json"),
        {
            "benchmark": "issue #13: DAGView and StoreBrowser of edge-less Go files",
            "sizes": list(SIZES),
            "results": {
                name: {str(size): m for size, m in by_size.items()} for name, by_size in results.items()
            },
            "growth_1k_to_8k": growth,
            "layered_1k_first_view_seconds": first_medians,
            "goals_met": not missed,
        },
    )
    goals = [
        (
            f"{name} growth per 8x nodes (1k -> 8k)",
            ratio,
            f"<= {MAX_GROWTH_PER_8X:g}",
            ratio <= MAX_GROWTH_PER_8X,
        )
        for name, ratio in growth.items()
    ]
    goals.append(
        (
            "StoreBrowser on 16k nodes (s)",
            browser_16k,
            f"< {BROWSER_LIMIT_SECONDS:g}",
            browser_16k < BROWSER_LIMIT_SECONDS,
        )
    )
    return report_goals("notebook_scale", goals)


if __name__ == "__main__":
    sys.exit(main())
