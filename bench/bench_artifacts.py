"""Artifact outputs: the cost of saving a big DataFrame output, and loads that read no artifact.

1. Saving a 1,000,000-row x 10-column DataFrame as a node output (``set_output`` + ``save``:
   Arrow IPC encode, content hash, durable artifact write, durable state write) against writing
   the same frame alone with pyarrow in the same format with the same durability (temp file,
   fsync, rename, directory fsync). Goal: at most 1.5x.
2. Loading a state with 100 artifact outputs against one with 100 small JSON outputs. Goal: at
   most 1.5x (loads read no artifact); reading every artifact is shown for contrast.

Runs are interleaved (baseline, ours, ..., in a rotating order) so that machine noise hits all
cases alike; medians.
Exit status 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.ipc
from _common import report_goals

from flow_workbench import FlatBuffersStore, JSONFileStore, NodeStatus, WorkflowData
from flow_workbench.stores._atomic import fsync, fsync_directory
from flow_workbench.stores.files import FileStore

SAVE_GOAL = 1.5
LOAD_GOAL = 1.5


def frame(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {f"c{i}": rng.random(rows) if i % 2 else rng.integers(0, 1 << 40, rows) for i in range(10)}
    )


def pyarrow_alone(df: pd.DataFrame, folder: Path) -> None:
    """The frame written with pyarrow, as durably as a state: temp file, fsync, rename, dir fsync."""
    table = pa.Table.from_pandas(df)
    temp = folder / ".frame.arrow.tmp"
    with pa.OSFile(str(temp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    fd = os.open(temp, os.O_RDONLY)
    try:
        fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, folder / "frame.arrow")
    fsync_directory(str(folder))


def as_output(df: pd.DataFrame, store: FileStore) -> None:
    data = WorkflowData("bench")
    data.set_node_status("frame", NodeStatus.COMPLETED)
    data.set_output("frame", df)
    store.save(data)


def interleaved(
    runs: int, cases: dict[str, Callable[[], float]], baseline: str
) -> dict[str, tuple[float, float]]:
    """Each case's (median seconds, median of its per-round ratios to ``baseline``).

    The cases run in turn ``runs`` times after a warm-up, in an order that rotates every round
    (a case can leave the disk or the allocator busy for the next). On a shared machine whose
    load drifts, a ratio of two runs of the same round is steadier than a ratio of medians.
    """
    times: dict[str, list[float]] = {name: [] for name in cases}
    for case in cases.values():
        case()
    names = list(cases)
    for round_number in range(runs):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(cases[name]())
    return {
        name: (
            statistics.median(values),
            statistics.median(v / b for v, b in zip(values, times[baseline], strict=True)),
        )
        for name, values in times.items()
    }


def timed(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def bench_save(rows: int, runs: int, root: Path) -> list[tuple[str, float, float]]:
    df = frame(rows)
    counter = [0]

    def fresh(name: str) -> Path:
        counter[0] += 1
        folder = root / f"{name}-{counter[0]}"
        folder.mkdir()
        return folder

    def baseline() -> float:
        folder = fresh("pyarrow")
        try:
            return timed(lambda: pyarrow_alone(df, folder))
        finally:
            shutil.rmtree(folder)

    def ours(kind: type[FlatBuffersStore] | type[JSONFileStore]) -> Callable[[], float]:
        def case() -> float:
            folder = fresh(kind.__name__)
            store = kind(folder)  # a new store: the artifact is written, never found already there
            try:
                return timed(lambda: as_output(df, store))
            finally:
                store.close()
                shutil.rmtree(folder)

        return case

    results = interleaved(
        runs,
        {"pyarrow": baseline, "flatbuffers": ours(FlatBuffersStore), "json": ours(JSONFileStore)},
        "pyarrow",
    )
    return [
        (
            f"save a {rows:,}x10 DataFrame output ({name} store)",
            *results[name],
        )
        for name in ("flatbuffers", "json")
    ] + [(f"pyarrow alone, same format and durability ({rows:,}x10)", results["pyarrow"][0], 1.0)]


def bench_load(runs: int, root: Path) -> list[tuple[str, float, float]]:
    store = FlatBuffersStore(root / "load")
    with_artifacts, without = WorkflowData("artifacts"), WorkflowData("plain")
    for index in range(100):
        node = f"n{index:03d}"
        for data in (with_artifacts, without):
            data.set_node_status(node, NodeStatus.COMPLETED)
        with_artifacts.set_output(node, np.arange(20_000, dtype="float64") + index)  # 160 kB each
        without.set_output(node, {"rows": index, "label": f"output {index}"})
    store.save(with_artifacts)
    store.save(without)

    def read_all() -> float:
        data = store.load("artifacts")
        return timed(lambda: data.outputs())

    results = interleaved(
        runs,
        {
            "plain": lambda: timed(lambda: store.load("plain")),
            "artifacts": lambda: timed(lambda: store.load("artifacts")),
            "read": read_all,
        },
        "plain",
    )
    return [
        (
            "load a state with 100 artifact outputs",
            *results["artifacts"],
        ),
        ("load a state with 100 small JSON outputs", results["plain"][0], 1.0),
        (
            "(contrast) read all 100 artifacts (16 MB) after a load",
            *results["read"],
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-artifacts-", dir=os.environ.get("BENCH_DIR")))
    try:
        saves = bench_save(args.rows, args.runs, root)
        loads = bench_load(args.runs * 3, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    width = max(len(name) for name, _, _ in saves + loads)
    print(f"{'':<{width}}  median time  ratio (median of same-round ratios)")
    for name, seconds, ratio in saves + loads:
        print(f"{name:<{width}}  {seconds * 1000:8.2f} ms  {ratio:6.2f}x")
    goals = [
        (f"{name} / pyarrow alone", ratio, f"<= {SAVE_GOAL}", ratio <= SAVE_GOAL)
        for name, _, ratio in saves[:2]
    ]
    goals.append(
        (f"{loads[0][0]} / small JSON outputs", loads[0][2], f"<= {LOAD_GOAL}", loads[0][2] <= LOAD_GOAL)
    )
    return report_goals("artifacts", goals)


if __name__ == "__main__":
    sys.exit(main())
