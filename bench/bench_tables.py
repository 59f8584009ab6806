"""Benchmark workflows_frame over a folder of FlatBuffers files against loading every file fully."""

from __future__ import annotations

import argparse
import gc
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _common import Measurement, fmt_seconds, print_table, write_json

from flow_workbench.data import WorkflowData
from flow_workbench.status import NodeStatus
from flow_workbench.stores.base import summary_from_data
from flow_workbench.stores.flatbuffers import FlatBuffersStore
from flow_workbench.stores.folder import FolderEntry

_CYCLE = [NodeStatus.COMPLETED] * 6 + [NodeStatus.PENDING, NodeStatus.SKIPPED, NodeStatus.FAILED]


def make_state(workflow_id: str, nodes: int, seed: int) -> WorkflowData:
    """A finished-looking run of ``nodes`` chained nodes with outputs, history and some failures."""
    data = WorkflowData(workflow_id, created_at=1_700_000_000.0)
    data.set("customer", f"customer-{seed}")
    data.set("batch", seed)
    structure: dict[str, list[str]] = {}
    for index in range(nodes):
        node = f"step_{index:03d}"
        structure[node] = [f"step_{index - 1:03d}"] if index else []
        status = _CYCLE[(index + seed) % len(_CYCLE)]
        if status is NodeStatus.PENDING:
            data.set_node_status(node, status)
            continue
        data.record_attempt_started(node, at=1_700_000_000.0 + index)
        error = "upstream API returned HTTP 503" if status is NodeStatus.FAILED else None
        data.record_attempt_finished(node, status, at=1_700_000_001.5 + index, error=error)
        data.set_output(node, {"rows": index * 10, "path": f"/data/{workflow_id}/{node}.parquet"})
    data.set_dag_structure(structure)
    return data


def fill_folder(folder: Path, files: int, nodes: int) -> None:
    store = FlatBuffersStore(folder, durability="none")
    for index in range(files):
        store.save(make_state(f"wf-{index:05d}", nodes, index))
    store.close()


def full_parse_frame(folder: Path) -> object:
    """The same table built the slow way: list the store, load every state in full, summarise it."""
    from flow_workbench.notebook.tables import _workflows_table

    store = FlatBuffersStore(folder)
    entries = []
    for workflow_id in store.list_workflows():
        data = store.load(workflow_id)
        path = store.path_of(workflow_id)
        entries.append(FolderEntry(path, workflow_id, summary_from_data(data, store.format, path)))
    store.close()
    return _workflows_table(entries)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--nodes", type=int, default=20, help="nodes per workflow")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from flow_workbench.notebook.tables import workflows_frame

    folder = Path(tempfile.mkdtemp(prefix="bench-tables-"))
    try:
        started = time.perf_counter()
        fill_folder(folder, args.files, args.nodes)
        took = time.perf_counter() - started
        print(f"wrote {args.files} FlatBuffers files of {args.nodes} nodes each in {took:.1f} s")
        light, full = interleaved(
            ("workflows_frame (scan_folder)", lambda: workflows_frame(folder)),
            ("full load of every file", lambda: full_parse_frame(folder)),
            repeat=args.repeat,
        )
        frame = workflows_frame(folder)
        assert len(frame) == args.files and frame["error"].isna().all()
        rows = [
            {
                "table of all workflows": m.name,
                "median": fmt_seconds(m.median),
                "min": fmt_seconds(min(m.runs)),
                "spread": f"{m.spread:.0%}",
            }
            for m in (light, full)
        ]
        print_table(f"{args.files} files, medians of {args.repeat} runs", rows)
        print(f"\nratio full / light: {full.median / light.median:.1f}x")
        print(f"light under 2 s: {'yes' if light.median < 2 else 'NO'}")
        write_json(
            Path("bench/results/tables.json"),
            {
                "benchmark": "P7 folder table",
                "files": args.files,
                "nodes": args.nodes,
                "light": light,
                "full": full,
                "ratio": full.median / light.median,
            },
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
