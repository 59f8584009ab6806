"""reset_failed (dry run and real) on 1k/8k/64k-node states: time must grow linearly with the nodes.

Issue #13: the dependents map was rebuilt per failed node, so a dry run on 8,000 nodes took 69 s
(and the recovery panel runs it three times). The goal: at most 10x the time per 8x the nodes.
Each state is a random layered DAG (``_common.layered_dag_structure``) where every 10th node
failed, every node downstream of a failure was skipped and the rest completed, stored in a
FlatBuffers file as the workbench reads it (or in memory with ``--store memory``, which leaves
only the recovery logic and a copy). A real run gets a freshly saved state each time (untimed).

The sizes are timed in rounds (each round times every size once: a dry run, a real run and the
fastest of five floor passes), so that what other processes do to the machine's caches and disk
lands on every size alike rather than on whichever size ran at that moment. Growth is taken
from the fastest run of each size over the rounds (least disturbed by other load). On a small
machine even a single linear pass grows faster than 8x from 8k to 64k nodes, once the data no
longer fits the CPU caches; so a floor is measured in the same run (one pass over the DAG
looking every edge's far end up by name: the least any walk of it does) and the goal is judged
on the growth normalised by the floor's: ``growth * 8 / floor growth``, i.e. as if the machine
scaled linear work perfectly.
A quadratic step still shows as ~64x there; the raw growth is printed next to it.
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import tempfile
from functools import partial
from pathlib import Path

from _common import (
    Measurement,
    fmt_seconds,
    layered_dag_structure,
    measure,
    measure_prepared,
    print_table,
    report_goals,
    write_json,
)

from flow_workbench import InMemoryStore, WorkflowData, reset_failed
from flow_workbench.dag import dependents_map, reachable
from flow_workbench.status import NodeStatus
from flow_workbench.stores.base import WorkflowStore
from flow_workbench.stores.flatbuffers import FlatBuffersStore

GOAL_GROWTH = 10.0  # time ratio allowed per 8x nodes
WORKFLOW = "bench-recovery"


def failed_state(nodes: int) -> WorkflowData:
    """Every 10th node failed, its downstream skipped, the rest completed (with history)."""
    structure = layered_dag_structure(nodes)
    failed = [name for index, name in enumerate(structure) if index % 10 == 0]
    skipped = reachable(dependents_map(structure), failed)
    data = WorkflowData(WORKFLOW, created_at=1_700_000_000.0)
    data.set_dag_structure(structure)
    failed_set = set(failed)
    for index, name in enumerate(structure):
        if name in failed_set:
            data.record_attempt_started(name, at=1_700_000_000.0 + index)
            data.record_attempt_finished(
                name, NodeStatus.FAILED, at=1_700_000_001.0 + index, error="HTTP 503"
            )
        elif name in skipped:
            data.set_node_status(name, NodeStatus.SKIPPED)
        else:
            data.record_attempt_started(name, at=1_700_000_000.0 + index)
            data.record_attempt_finished(name, NodeStatus.COMPLETED, at=1_700_000_001.0 + index)
    return data


def edge_pass(structure: dict[str, list[str]]) -> dict[str, list[int]]:
    """The floor: one linear pass over the DAG that looks up every edge's far end by name (what
    any walk of the graph does at least), building a list per node as a copy of it would."""
    position = {name: index for index, name in enumerate(structure)}
    return {name: [position[dependency] for dependency in deps] for name, deps in structure.items()}


def open_store(kind: str, folder: Path) -> WorkflowStore:
    return InMemoryStore() if kind == "memory" else FlatBuffersStore(folder, durability="none")


def fresh(store: WorkflowStore, state: WorkflowData) -> WorkflowStore:
    """``store`` holding ``state`` again as version 1 (the previous real run reset it)."""
    if store.exists(WORKFLOW):
        store.delete(WORKFLOW)
    copy = state.copy()
    copy.version = 0
    store.save(copy)
    return store


def _measurement(name: str, runs: list[float]) -> Measurement:
    median = statistics.median(runs)
    return Measurement(name, median, (max(runs) - min(runs)) / median if median else 0.0, runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="*", default=[1_000, 8_000, 64_000])
    parser.add_argument("--repeat", type=int, default=7, help="rounds (each times every size once)")
    parser.add_argument("--store", choices=["fb", "memory"], default="fb")
    parser.add_argument("--json", type=Path, default=Path("bench/results/recovery.json"))
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bench-recovery-"))
    sizes = list(args.sizes)
    runs: dict[int, dict[str, list[float]]] = {n: {"floor": [], "dry run": [], "real": []} for n in sizes}
    affected: dict[int, int] = {}
    try:
        states = {nodes: failed_state(nodes) for nodes in sizes}
        stores = {n: fresh(open_store(args.store, folder / str(n)), states[n]) for n in sizes}
        for nodes in sizes:  # also the warm-up run of each size
            affected[nodes] = len(reset_failed(stores[nodes], WORKFLOW, dry_run=True))
        # Rounds, each timing every size once, so that what other processes do to the machine's
        # caches and disk lands on every size alike instead of on whichever size ran then.
        for _ in range(args.repeat):
            for nodes in sizes:
                store, state = stores[nodes], states[nodes]
                structure = state.dag_structure or {}
                # Cheap (0.1 ms at 1k nodes), so several runs: the fastest steadies the normalisation.
                floor = measure("floor", partial(edge_pass, structure), repeat=5, warmup=0)
                dry = measure("dry", partial(reset_failed, store, WORKFLOW, dry_run=True), repeat=1, warmup=0)
                real = measure_prepared(
                    "real",
                    partial(fresh, store, state),
                    lambda prepared: reset_failed(prepared, WORKFLOW),  # type: ignore[arg-type]
                    repeat=1,
                )
                runs[nodes]["floor"].append(min(floor.runs))
                runs[nodes]["dry run"].append(dry.runs[0])
                runs[nodes]["real"].append(real.runs[0])
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    results = {n: {kind: _measurement(kind, runs[n][kind]) for kind in ("dry run", "real")} for n in sizes}
    floors = {n: _measurement("floor", runs[n]["floor"]) for n in sizes}
    for nodes in sizes:
        dry_median, real_median = (results[nodes][kind].median for kind in ("dry run", "real"))
        print(
            f"{nodes} nodes: {affected[nodes]} to reset, "
            f"dry {fmt_seconds(dry_median)}, real {fmt_seconds(real_median)}"
        )

    rows = []
    growth: dict[str, list[float]] = {"dry run": [], "real": [], "floor": []}
    normalised: dict[str, list[float]] = {"dry run": [], "real": []}
    for index, nodes in enumerate(sizes):
        row = {"nodes": f"{nodes:,}", "to reset": f"{affected[nodes]:,}"}
        floor_growth = 0.0
        for kind in ("floor", "dry run", "real"):
            measured = floors[nodes] if kind == "floor" else results[nodes][kind]
            row[kind] = f"{fmt_seconds(measured.median)} (min {fmt_seconds(min(measured.runs))})"
            if not index:
                row[f"{kind} growth"] = "-"
                continue
            previous = sizes[index - 1]
            before = floors[previous] if kind == "floor" else results[previous][kind]
            # Per 8x nodes, so any step between sizes compares with the goal.
            ratio = (min(measured.runs) / min(before.runs)) ** (math.log(8) / math.log(nodes / previous))
            growth[kind].append(ratio)
            if kind == "floor":
                floor_growth = ratio
                row["floor growth"] = f"{ratio:.1f}x"
            else:
                normalised[kind].append(ratio * 8 / floor_growth)
                row[f"{kind} growth"] = f"{ratio:.1f}x ({ratio * 8 / floor_growth:.1f}x)"
        rows.append(row)
    print_table(
        f"reset_failed on a {args.store} store, medians and minimums of {args.repeat} rounds; "
        "growth per 8x nodes (normalised by the floor's)",
        rows,
    )
    worst = max((ratio for ratios in normalised.values() for ratio in ratios), default=0.0)
    worst_raw = max((ratio for kind in ("dry run", "real") for ratio in growth[kind]), default=0.0)
    met = worst <= GOAL_GROWTH
    print(
        f"\ngoal: time grows at most {GOAL_GROWTH:g}x per 8x nodes (normalised); worst {worst:.1f}x: "
        f"{'met' if met else 'NOT MET'} (raw worst {worst_raw:.1f}x; the floor grew "
        f"{', '.join(f'{ratio:.1f}x' for ratio in growth['floor'])})"
    )
    write_json(
        args.json,
        {
            "benchmark": "reset_failed growth",
            "store": args.store,
            "sizes": sizes,
            "affected": affected,
            "results": {str(nodes): results[nodes] for nodes in sizes},
            "floor": {str(nodes): floors[nodes] for nodes in sizes},
            "growth_per_8x": growth,
            "normalised_growth_per_8x": normalised,
            "goal_growth": GOAL_GROWTH,
            "goal_met": met,
        },
    )
    return report_goals(
        f"recovery_{args.store}",
        [(f"reset_failed growth per 8x nodes, normalised ({args.store})", worst, f"<= {GOAL_GROWTH:g}", met)],
    )


if __name__ == "__main__":
    raise SystemExit(main())
