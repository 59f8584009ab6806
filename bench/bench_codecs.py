"""Benchmark FlatBuffersCodec against orjson on an equivalent plain dict (medians; run as a script)."""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from _common import write_json

from flow_workbench.data import WorkflowData
from flow_workbench.status import NodeStatus
from flow_workbench.stores.flatbuffers_codec import FlatBuffersCodec

_CYCLE = [NodeStatus.COMPLETED] * 6 + [NodeStatus.PENDING, NodeStatus.RUNNING, NodeStatus.FAILED]


def make_state(n: int) -> WorkflowData:
    """A finished-looking run: every node has a status and a ~50-byte output, most a history."""
    data = WorkflowData(f"bench-{n}", created_at=1_700_000_000.0)
    data.set("customer", "acme")
    data.set("balance_cents", 9007199254740993)
    for i in range(n):
        node = f"node_{(i * 7919) % n:06d}"  # not in sorted order, like real DAG insertion order
        status = _CYCLE[i % len(_CYCLE)]
        data.set_node_status(node, status)
        data.set_output(node, {"rows": i, "path": f"/data/out/{i}.parquet", "ok": True})
        if status is not NodeStatus.PENDING:
            data.record_attempt_started(node, at=1_700_000_000.0 + i)
            data.record_attempt_finished(node, status, at=1_700_000_001.5 + i)
            if status is NodeStatus.FAILED:
                data.set_node_error(node, "boom", "ValueError")
    return data


def as_plain_dict(data: WorkflowData) -> dict[str, Any]:
    """What a JSON store built on orjson would write for the same state (its own dicts: built
    once, outside the timings, as such a store would hold them)."""
    with data.read_columns() as c:
        return {
            "id": c.workflow_id,
            "version": 1,
            "created_at": c.created_at,
            "updated_at": c.updated_at,
            "data": dict(c.data),
            "nodeStatus": dict(c.statuses),  # orjson writes str enums as their values
            "outputs": dict(c.outputs),
            "attempts": dict(c.attempts),
            "started_at": dict(c.started_at),
            "finished_at": dict(c.finished_at),
            "errors": dict(c.errors),
            "error_types": dict(c.error_types),
            "audit": [],
        }


def interleaved_medians(actions: list[Callable[[], object]], runs: int, warmup: int = 2) -> list[float]:
    """Median seconds of each action, timed in turn within every round.

    The host's timings drift 2-3x with other load; alternating the contenders run by run makes
    that drift hit all of them alike, so the ratios stay meaningful.
    """
    for _ in range(warmup):
        for action in actions:
            action()
    times: list[list[float]] = [[] for _ in actions]
    for _ in range(runs):
        for action, bucket in zip(actions, times, strict=True):
            gc.collect()
            start = time.perf_counter()
            action()
            bucket.append(time.perf_counter() - start)
    return [statistics.median(bucket) for bucket in times]


def fmt(seconds: float) -> str:
    if seconds >= 1e-3:
        return f"{seconds * 1e3:8.2f} ms"
    return f"{seconds * 1e6:8.1f} us"


def json_store_codec() -> Any:
    """The JSON store's codec (another module of this project), when it is present."""
    try:
        from flow_workbench.stores.json_codec import JSONCodec
    except ImportError:
        return None
    return JSONCodec()


def bench(n: int, runs: int) -> list[tuple[str, float, float]]:
    state = make_state(n)
    codec = FlatBuffersCodec()
    plain = as_plain_dict(state)
    fb = bytes(codec.encode(state, version=1, updated_at=1.0))
    js = orjson.dumps(plain)
    probe = next(iter(state.node_statuses()))

    def js_status() -> object:
        return orjson.loads(js)["nodeStatus"].get(probe)

    def js_summary() -> object:
        statuses = orjson.loads(js)["nodeStatus"]
        counts: dict[str, int] = {}
        for value in statuses.values():
            counts[value] = counts.get(value, 0) + 1
        return counts

    json_codec = json_store_codec()
    jraw = bytes(json_codec.encode(state, version=1, updated_at=1.0)) if json_codec is not None else b""
    operations: list[tuple[str, list[Callable[[], object]]]] = [
        (
            "encode",
            [
                lambda: codec.encode(state, version=1, updated_at=1.0),
                lambda: orjson.dumps(plain),
                lambda: json_codec.encode(state, version=1, updated_at=1.0),
            ],
        ),
        (
            "full decode",
            [
                lambda: codec.decode(fb, "bench"),
                lambda: orjson.loads(js),
                lambda: json_codec.decode(jraw, "bench"),
            ],
        ),
        (
            "summarize",
            [lambda: codec.summarize(fb, "bench"), js_summary, lambda: json_codec.summarize(jraw, "bench")],
        ),
        (
            "one node status",
            [
                lambda: codec.node_status(fb, "bench", probe),
                js_status,
                lambda: json_codec.node_status(jraw, "bench", probe),
            ],
        ),
    ]
    rows: list[tuple[str, float, float]] = []
    store_times: list[float | None] = []
    for name, actions in operations:
        medians = interleaved_medians(actions if json_codec is not None else actions[:2], runs)
        rows.append((name, medians[0], medians[1]))
        store_times.append(medians[2] if json_codec is not None else None)
    print(f"\n{n:,} nodes: FlatBuffers file {len(fb):,} bytes, JSON {len(js):,} bytes")
    header = f"{'operation':<18}{'FlatBuffers':>12}{'orjson':>12}{'orjson/FB':>11}"
    print(header + (f"{'JSONCodec':>12}{'JSONCodec/FB':>14}" if json_codec is not None else ""))
    for (name, fb_time, js_time), store_time in zip(rows, store_times, strict=True):
        line = f"{name:<18}{fmt(fb_time):>12}{fmt(js_time):>12}{js_time / fb_time:>10.1f}x"
        if store_time is not None:
            line += f"{fmt(store_time):>12}{store_time / fb_time:>13.1f}x"
        print(line)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7, help="timed runs per figure (median reported)")
    parser.add_argument("--sizes", type=int, nargs="*", default=[1_000, 100_000])
    args = parser.parse_args()
    print("medians after 2 warm-up rounds, contenders interleaved run by run; the orjson column is")
    print("dumps/loads of an equivalent plain dict, JSONCodec is the JSON store's codec")
    print("(the plain dict holds copies of the columns, made once before the timings: pure dumps/loads)")
    results = {n: bench(n, max(5, args.runs)) for n in args.sizes}
    write_json(Path("bench/results/codecs.json"), {"benchmark": "codecs", "results": results})


if __name__ == "__main__":
    main()
