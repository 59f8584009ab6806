"""Headless demo: run a sample workflow, let one node fail, reset it and resume; print the nodes."""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from .dag import DAG
from .data import WorkflowData
from .engine import Persistence, Workflow
from .errors import WorkflowExecutionError
from .recovery import reset_failed
from .stores.base import WorkflowStore
from .stores.flatbuffers import FlatBuffersStore


def sample_dag(*, fail: set[str] | None = None, delay: float = 0.0) -> DAG:
    """An ETL-shaped DAG; nodes named in ``fail`` raise, so recovery has something to do."""
    failing = fail if fail is not None else set()

    def step(name: str, compute):  # type: ignore[no-untyped-def]
        def action(data: WorkflowData) -> object:
            if delay:
                time.sleep(delay * random.uniform(0.5, 1.5))
            if name in failing:
                raise RuntimeError(f"{name}: upstream API returned HTTP 503")
            return compute(data)

        return action

    dag = DAG("etl")
    dag.add_node("extract_orders", step("extract_orders", lambda d: {"rows": 1200}))
    dag.add_node("extract_customers", step("extract_customers", lambda d: {"rows": 310}))
    dag.add_node("clean_orders", step("clean_orders", lambda d: {"rows": 1180}), depends_on="extract_orders")
    dag.add_node(
        "join",
        step("join", lambda d: {"rows": d.get_output("clean_orders")["rows"]}),
        depends_on=["clean_orders", "extract_customers"],
    )
    dag.add_node("revenue_report", step("revenue_report", lambda d: "report.html"), depends_on="join")
    dag.add_node(
        "churn_model",
        step("churn_model", lambda d: {"auc": 0.87}),
        depends_on="join",
        retries=1,
        retry_delay=0.01,
    )
    dag.add_node("publish", step("publish", lambda d: "ok"), depends_on=["revenue_report", "churn_model"])
    return dag


def print_nodes(store: WorkflowStore, workflow_id: str) -> None:
    data = store.load(workflow_id)
    print(f"{'node':<20} {'status':<10} {'attempts':>8}  error")
    for node, status in data.node_statuses().items():
        history = data.node_history(node)
        print(f"{node:<20} {status.value:<10} {history.attempts:>8}  {history.error or ''}")
    print()


def default_store(folder: Path) -> WorkflowStore:
    """The embedded default: FlatBuffers files in a local folder (no server needed)."""
    return FlatBuffersStore(folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, default=Path("workbench-data"), help="store folder")
    args = parser.parse_args(argv)
    store = default_store(args.dir)
    workflow_id = f"demo-{int(time.time())}"
    print(f"1. running {workflow_id!r} (churn_model will fail) into {args.dir}/")
    try:
        Workflow(sample_dag(fail={"churn_model"}), workflow_id, store, persistence=Persistence.NODE).execute()
    except WorkflowExecutionError as error:
        print(f"   -> {error}".replace("\n", "\n   "))
    print_nodes(store, workflow_id)
    print(f"2. reset_failed -> {reset_failed(store, workflow_id)}; resuming with the fault fixed")
    Workflow(sample_dag(), workflow_id, store).execute()
    print_nodes(store, workflow_id)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
