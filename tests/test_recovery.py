"""Recovery API: reset, reset with downstream, reset failed, mark; dry runs; audit; resume."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from flow_workbench import (
    DAG,
    FlatBuffersStore,
    InMemoryStore,
    MissingDAGError,
    NodeStatus,
    UnknownNodeError,
    VersionConflictError,
    Workflow,
    WorkflowData,
    WorkflowExecutionError,
    mark_nodes,
    reset_failed,
    reset_nodes,
)
from flow_workbench.status import UPSTREAM_SKIP
from tests.helpers.line_count import lines_run

S = NodeStatus


class Pipeline:
    """extract -> clean -> (train, report); train -> publish; with a switchable failure in train."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.train_fails = True
        self.dag = DAG("pipeline")
        for name, deps in [
            ("extract", []),
            ("clean", ["extract"]),
            ("train", ["clean"]),
            ("report", ["clean"]),
            ("publish", ["train"]),
        ]:
            self.dag.add_node(name, self._action(name), depends_on=deps)
        self.store = InMemoryStore()
        self.workflow = Workflow(self.dag, "wf", self.store)

    def _action(self, name: str):  # type: ignore[no-untyped-def]
        def run(data: WorkflowData) -> str:
            self.calls[name] += 1
            if name == "train" and self.train_fails:
                raise RuntimeError("GPU on fire")
            return f"{name}-{self.calls[name]}"

        return run

    def run(self) -> None:
        with contextlib.suppress(WorkflowExecutionError):
            self.workflow.execute()

    def statuses(self) -> dict[str, str]:
        return {k: v.value for k, v in self.store.load("wf").node_statuses().items()}


def test_reset_failed_resets_failed_and_their_skipped_dependents_then_resumes() -> None:
    p = Pipeline()
    p.run()
    assert p.statuses() == {
        "extract": "completed",
        "clean": "completed",
        "train": "failed",
        "report": "completed",
        "publish": "skipped",
    }
    assert reset_failed(p.store, "wf") == ["train", "publish"]
    assert p.statuses()["train"] == "pending" and p.statuses()["publish"] == "pending"
    p.train_fails = False
    p.run()
    assert set(p.statuses().values()) == {"completed"}
    # Only the reset nodes ran again; everything else ran exactly once.
    assert p.calls == Counter({"extract": 1, "clean": 1, "train": 2, "report": 1, "publish": 1})
    audit = p.store.load("wf").audit
    assert [(a.action, a.nodes) for a in audit] == [("reset_failed", ("train", "publish"))]


def test_reset_one_node_reruns_only_it() -> None:
    p = Pipeline()
    p.train_fails = False
    p.run()
    assert reset_nodes(p.store, "wf", ["report"]) == ["report"]
    state = p.store.load("wf")
    assert state.get_node_status("report") is S.PENDING and not state.has_output("report")
    assert state.node_history("report").attempts == 1  # history keeps the count
    p.run()
    assert p.calls["report"] == 2 and p.calls["clean"] == 1 and p.calls["publish"] == 1


def test_reset_with_downstream_reruns_the_subtree() -> None:
    p = Pipeline()
    p.train_fails = False
    p.run()
    affected = reset_nodes(p.store, "wf", ["clean"], downstream=True)
    assert affected == ["clean", "train", "report", "publish"]
    p.run()
    assert p.calls == Counter({"extract": 1, "clean": 2, "train": 2, "report": 2, "publish": 2})
    assert p.store.load("wf").get_output("publish") == "publish-2"


@pytest.mark.parametrize(
    "change",
    [
        lambda s: reset_failed(s, "wf", dry_run=True),
        lambda s: reset_nodes(s, "wf", ["clean"], downstream=True, dry_run=True),
        lambda s: mark_nodes(s, "wf", ["train"], "completed", dry_run=True),
    ],
)
def test_dry_runs_report_but_change_nothing(change) -> None:  # type: ignore[no-untyped-def]
    p = Pipeline()
    p.run()
    before = p.store.load("wf")
    affected = change(p.store)
    assert affected  # there is something that would change
    after = p.store.load("wf")
    assert after == before and after.version == before.version


def test_mark_completed_lets_dependents_run_and_mark_skipped_skips_them() -> None:
    p = Pipeline()
    p.run()
    assert mark_nodes(p.store, "wf", ["train"], S.COMPLETED) == ["train", "publish"]
    p.run()
    assert p.statuses()["publish"] == "completed" and p.calls["train"] == 1
    assert mark_nodes(p.store, "wf", ["report"], "skipped") == ["report"]
    assert mark_nodes(p.store, "wf", ["report"], "skipped") == []  # nothing to change
    actions = [a.action for a in p.store.load("wf").audit]
    assert actions == ["mark_completed", "mark_skipped"]


def test_marking_a_failed_node_completed_re_pends_the_nodes_skipped_because_of_it() -> None:
    """Before: publish stayed skipped, so "run again" succeeded while publish never ran."""
    p = Pipeline()
    p.dag.add_node("notify", lambda data: "sent", depends_on="publish")
    p.run()
    assert p.statuses()["publish"] == "skipped" and p.statuses()["notify"] == "skipped"
    before = p.store.load("wf")
    assert mark_nodes(p.store, "wf", ["train"], "completed", dry_run=True) == ["train", "publish", "notify"]
    assert p.store.load("wf") == before  # the preview lists them and changes nothing
    assert mark_nodes(p.store, "wf", ["train"], "completed") == ["train", "publish", "notify"]
    after = p.store.load("wf")
    assert (after.get_node_status("publish"), after.get_node_status("notify")) == (S.PENDING, S.PENDING)
    assert after.node_history("publish").error is None
    assert after.audit[-1].action == "mark_completed" and after.audit[-1].nodes == (
        "train",
        "publish",
        "notify",
    )
    assert "publish, notify" in after.audit[-1].detail
    result = p.workflow.execute()
    assert result.succeeded and result.executed == ["publish", "notify"]
    assert p.calls["publish"] == 1 and p.calls["train"] == 1


def test_marking_skipped_leaves_the_nodes_skipped_because_of_it_skipped() -> None:
    p = Pipeline()
    p.run()
    assert mark_nodes(p.store, "wf", ["train"], "skipped") == ["train"]
    assert p.statuses()["publish"] == "skipped"  # the engine skips what depends on a skipped node
    p.run()
    assert p.calls["publish"] == 0


def _two_failed_upstreams() -> InMemoryStore:
    """left and right failed; both -> join -> end; join and end skipped because of left."""
    data = WorkflowData("wf")
    data.set_dag_structure({"left": [], "right": [], "join": ["left", "right"], "end": ["join"]})
    for name in ("left", "right"):
        data.record_attempt_finished(name, S.FAILED, error="boom", error_type="RuntimeError")
    for name in ("join", "end"):
        data.record_attempt_finished(
            name, S.SKIPPED, error="dependency 'left' failed", error_type=UPSTREAM_SKIP
        )
    store = InMemoryStore()
    store.save(data)
    return store


def test_a_skipped_node_stays_skipped_while_another_upstream_still_failed() -> None:
    store = _two_failed_upstreams()
    assert mark_nodes(store, "wf", ["left"], "completed") == ["left"]
    assert store.load("wf").get_node_status("join") is S.SKIPPED
    # Its recorded cause (left) no longer matters: marking the other failed upstream releases it.
    assert mark_nodes(store, "wf", ["right"], "completed") == ["right", "join", "end"]
    statuses = store.load("wf").node_statuses()
    assert (statuses["join"], statuses["end"]) == (S.PENDING, S.PENDING)


def test_nodes_skipped_by_hand_are_not_re_pended() -> None:
    store = _two_failed_upstreams()
    assert mark_nodes(store, "wf", ["end"], "skipped") == ["end"]  # a choice: end must not run
    assert store.load("wf").node_history("end").error is None
    assert mark_nodes(store, "wf", ["left", "right"], "completed") == ["left", "right", "join"]
    assert store.load("wf").get_node_status("end") is S.SKIPPED


def test_the_engine_records_skips_as_mark_nodes_expects() -> None:
    p = Pipeline()
    p.run()
    assert p.store.load("wf").node_history("publish").error_type == UPSTREAM_SKIP


def test_recovery_after_a_run_through_the_same_go_layout_store(tmp_path: Path) -> None:
    """Before: the store remembered the version it counted, not the 0 a Go file reads back as,
    so an edit through the store object that ran the workflow got a VersionConflictError."""
    store = FlatBuffersStore(tmp_path, layout="go")
    dag = DAG()
    dag.add_node("a", lambda data: "a-out")
    dag.add_node("b", lambda data: "b-out", depends_on="a")
    Workflow(dag, "wf", store, persistence="node").execute()
    assert reset_nodes(store, "wf", ["b"]) == ["b"]
    assert FlatBuffersStore(tmp_path, layout="go").load("wf").get_node_status("b") is S.PENDING
    Workflow(dag, "wf", store, persistence="node").execute()
    assert store.load("wf").get_node_status("b") is S.COMPLETED


def test_mark_refuses_other_statuses() -> None:
    p = Pipeline()
    p.run()
    with pytest.raises(ValueError, match="completed or skipped"):
        mark_nodes(p.store, "wf", ["train"], "failed")


def test_unknown_nodes_are_named_and_nothing_changes() -> None:
    p = Pipeline()
    p.run()
    version = p.store.load("wf").version
    with pytest.raises(UnknownNodeError) as info:
        reset_nodes(p.store, "wf", ["train", "nope", "ghost"])
    assert info.value.nodes == ["nope", "ghost"]
    assert "'nope'" in str(info.value)
    with pytest.raises(UnknownNodeError):
        mark_nodes(p.store, "wf", ["nope"], "completed")
    assert p.store.load("wf").version == version


def test_downstream_reset_of_a_state_without_dag_needs_one() -> None:
    store = InMemoryStore()
    state = WorkflowData("go-file")
    state.set_node_status("a", S.FAILED)
    state.set_node_status("b", S.SKIPPED)
    store.save(state)
    with pytest.raises(MissingDAGError):
        reset_nodes(store, "go-file", ["a"], downstream=True)
    dag = DAG()
    dag.add_node("a")
    dag.add_node("b", depends_on="a")
    assert reset_nodes(store, "go-file", ["a"], downstream=True, dag=dag) == ["a", "b"]


def test_reset_failed_without_dag_resets_only_failed_nodes() -> None:
    store = InMemoryStore()
    state = WorkflowData("go-file")
    state.set_node_status("a", S.FAILED)
    state.set_node_status("b", S.SKIPPED)
    store.save(state)
    assert reset_failed(store, "go-file") == ["a"]


def test_recovery_edit_on_a_stale_copy_conflicts() -> None:
    p = Pipeline()
    p.run()
    stale = p.store.load("wf")
    reset_failed(p.store, "wf")  # someone else saved a newer version
    stale.set_node_status("train", S.PENDING)
    with pytest.raises(VersionConflictError):
        p.store.save(stale)


def test_workflow_conveniences_delegate_to_the_recovery_api() -> None:
    p = Pipeline()
    p.run()
    assert p.workflow.reset_failed(dry_run=True) == ["train", "publish"]
    assert p.workflow.mark_nodes(["train"], "completed") == ["train", "publish"]
    # publish is pending already: marking train completed re-pended it
    assert p.workflow.reset_nodes(["clean"], downstream=True, dry_run=True) == ["clean", "train", "report"]


# --- no quadratic traps --------------------------------------------------------------------------


def failed_chain(nodes: int) -> InMemoryStore:
    """A chain of nodes where every 4th failed and every other node was skipped because of one."""
    data = WorkflowData("chain")
    names = [f"n{index}" for index in range(nodes)]
    data.set_dag_structure({name: names[index - 1 : index] for index, name in enumerate(names)})
    for index, name in enumerate(names):
        data.set_node_status(name, S.FAILED if index % 4 == 0 else S.SKIPPED)
    store = InMemoryStore()
    store.save(data)
    return store


EDITS: dict[str, Callable[[InMemoryStore, int], list[str]]] = {
    "reset_failed": lambda store, nodes: reset_failed(store, "chain"),
    "reset_failed dry run": lambda store, nodes: reset_failed(store, "chain", dry_run=True),
    "reset_nodes downstream": lambda store, nodes: reset_nodes(
        store, "chain", [f"n{index}" for index in range(0, nodes, 4)], downstream=True
    ),
    "mark_nodes": lambda store, nodes: mark_nodes(
        store, "chain", [f"n{i}" for i in range(nodes)], "completed"
    ),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_recovery_work_grows_linearly_with_the_failed_nodes(edit: str) -> None:
    """The dependents map is built once and one walk covers every failed node: 8x the nodes (and
    8x the failed ones) is about 8x the steps, not 64x."""
    steps = {}
    for nodes in (100, 800):
        store = failed_chain(nodes)
        affected: list[str] = []
        steps[nodes] = lines_run(lambda: affected.extend(EDITS[edit](store, nodes)))  # noqa: B023
        assert len(affected) == nodes
    assert steps[800] / steps[100] < 12, steps
