"""Code versions and stale nodes: hashing actions, stale detection, rerun modes, every store, old files."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from flow_workbench import DAG, Event, EventKind, NodeStatus, Persistence, Workflow, WorkflowData
from flow_workbench.code_versions import action_fingerprint, dag_code_versions, stale_nodes
from flow_workbench.errors import CorruptStateError, SerializationError
from flow_workbench.stores.flatbuffers import FlatBuffersStore
from flow_workbench.stores.json_file import JSONFileStore
from flow_workbench.stores.memory import InMemoryStore
from flow_workbench.testing import StoreFactory
from tests.helpers.hostile import forged_native, ours_json, ours_json_document

#: A notebook cell: three nodes by parameter name, a helper, a module constant and a lambda.
CELL = """
SCALE = {scale}

def helper(x):
    return x * SCALE

def load():
    return [1, 2, 3]

def total(load):
    return sum(helper(v) for v in load)

def report(total):
    return {{"total": total, "tagged": "b" in {{"a", "b", "c"}}}}  # a frozenset constant

shout = lambda data: "{word}"
"""


def cell(scale: int = 2, word: str = "hi") -> dict[str, Any]:
    """The cell's functions, defined afresh (a new namespace, as re-running a notebook cell does)."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(CELL.format(scale=scale, word=word), "<cell>", "exec"), namespace)
    return namespace


def build(scale: int = 2, word: str = "hi", **versions: str) -> DAG:
    ns = cell(scale, word)
    dag = DAG("cell")
    for name in ("load", "total", "report"):
        dag.add(ns[name], version=versions.get(name))
    dag.add_node("shout", ns["shout"], depends_on="report", version=versions.get("shout"))
    return dag


def ran(dag: DAG, store: Any, **options: Any) -> list[str]:
    return Workflow(dag, "wf", store).execute(**options).executed


def test_redefining_identically_keeps_every_version() -> None:
    assert dag_code_versions(build()) == dag_code_versions(build())
    store = InMemoryStore()
    ran(build(), store)
    assert Workflow(build(), "wf", store).stale_nodes() == []
    assert ran(build(), store) == []


def test_a_changed_constant_in_a_helper_makes_its_callers_and_their_downstream_stale() -> None:
    store = InMemoryStore()
    assert ran(build(scale=2), store) == ["load", "total", "report", "shout"]
    wf = Workflow(build(scale=3), "wf", store)
    assert wf.stale_nodes() == ["total", "report", "shout"]
    result = wf.execute()  # resume semantics: nothing re-runs, the stale nodes are reported
    assert result.executed == [] and result.stale == ["total", "report", "shout"]
    assert "3 stale node(s) not re-run" in repr(result)


def test_an_upstream_change_makes_downstream_stale_and_only_that() -> None:
    before, after = dag_code_versions(build(word="hi")), dag_code_versions(build(word="ho"))
    assert [n for n in before if before[n] != after[n]] == ["shout"]  # a leaf: nothing below
    store = InMemoryStore()
    ran(build(), store)
    dag = build()
    dag.node("load").action = lambda: [1, 2, 4]  # the first node's code changes
    assert Workflow(dag, "wf", store).stale_nodes() == ["load", "total", "report", "shout"]


def test_lambdas_are_versioned_by_their_code() -> None:
    assert action_fingerprint(lambda data: 1) == action_fingerprint(lambda data: 1)
    assert action_fingerprint(lambda data: 1) != action_fingerprint(lambda data: 2)
    store = InMemoryStore()
    ran(build(word="hi"), store)
    assert Workflow(build(word="ho"), "wf", store).stale_nodes() == ["shout"]
    odd = DAG()  # node names may hold any character but NUL, a lone surrogate too
    odd.add_node("\udce9", lambda data: 1)
    odd.add_node("b", lambda data: 2, depends_on="\udce9")
    assert len(set(dag_code_versions(odd).values())) == 2


def test_version_replaces_the_code_hash_in_every_way_of_adding_a_node() -> None:
    store = InMemoryStore()
    ran(build(scale=2, total="1"), store)
    # The code of total changes, its version does not: nothing is stale.
    assert Workflow(build(scale=3, total="1"), "wf", store).stale_nodes() == []
    assert Workflow(build(scale=2, total="2"), "wf", store).stale_nodes() == ["total", "report", "shout"]

    def versions(version: str) -> dict[str, str]:
        dag = DAG()
        dag.add_node("a", lambda data: 1, version=version)
        dag.add(lambda: 2, name="b", version=version)

        @dag.node(version=version)
        def c(b: int) -> int:
            return b

        return dag_code_versions(dag)

    first, second = versions("1"), versions("2")
    assert all(first[n] != second[n] for n in "abc") and versions("1") == first
    with pytest.raises(TypeError, match="version must be a str"):
        DAG().add_node("a", version=2)


def test_rerun_stale_runs_exactly_the_stale_nodes_and_their_downstream() -> None:
    store = InMemoryStore()
    ran(build(), store)
    dag = build(word="ho")
    events: list[Event] = []
    assert Workflow(dag, "wf", store).execute(on_event=events.append).stale == ["shout"]
    assert [e.detail for e in events if e.kind is EventKind.STALE_NODES] == [
        "not re-run (execute(rerun='stale') re-runs them): shout"
    ]
    result = Workflow(dag, "wf", store).execute(rerun="stale")
    assert result.executed == ["shout"] and result.stale == []
    assert store.load("wf").get_output("shout") == "ho"
    assert Workflow(dag, "wf", store).stale_nodes() == []
    assert ran(build(scale=5), store, rerun="stale") == ["total", "report", "shout"]
    assert store.load("wf").get_output("report")["total"] == 30


def test_rerun_all_runs_every_node_and_keeps_the_history() -> None:
    store = InMemoryStore()
    ran(build(), store)
    result = Workflow(build(), "wf", store).execute(rerun="all")
    assert sorted(result.executed) == ["load", "report", "shout", "total"]
    assert len(result.data.runs()) == 2 and len(result.data.attempt_log("load")) == 2
    assert result.data.node_history("load").attempts == 2
    with pytest.raises(ValueError, match="rerun must be"):
        Workflow(build(), "wf", store).execute(rerun="some")  # type: ignore[arg-type]


def test_versions_are_the_same_in_another_process() -> None:
    """No id, address or str hash in a version: another interpreter (another hash seed) agrees."""
    script = (
        "import sys, orjson; from tests.test_code_versions import build; "
        "from flow_workbench.code_versions import dag_code_versions; "
        "sys.stdout.write(orjson.dumps(dag_code_versions(build())).decode())"
    )
    root = Path(__file__).resolve().parent.parent
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", script],
            cwd=root,
            env={"PYTHONHASHSEED": seed, "PYTHONPATH": str(root), "PATH": ""},
            capture_output=True,
            check=True,
        ).stdout
        assert orjson.loads(out) == dag_code_versions(build())


class Doubler:
    def __init__(self, factor: int) -> None:
        self.factor = factor

    def execute(self, data: WorkflowData) -> int:
        return 2


def test_objects_partials_and_builtins_have_stable_versions() -> None:
    assert action_fingerprint(Doubler(1)) == action_fingerprint(Doubler(2))  # attributes: not hashed
    assert action_fingerprint(functools.partial(pow, 2)) != action_fingerprint(functools.partial(pow, 3))
    assert action_fingerprint(len) == action_fingerprint(len) != action_fingerprint(abs)
    assert action_fingerprint(None) != action_fingerprint(lambda data: None)


def test_a_state_without_versions_is_unknown_not_stale(tmp_path: Path) -> None:
    """Go files and files written before versions existed hold none: nothing is stale."""
    store = JSONFileStore(tmp_path)
    ran(build(scale=2), store)
    document = orjson.loads((tmp_path / "wf.json").read_bytes())
    assert set(document["flow_workbench"].pop("code_versions")) == {"load", "total", "report", "shout"}
    (tmp_path / "wf.json").write_bytes(ours_json(document))
    wf = Workflow(build(scale=3), "wf", store)
    assert wf.stale_nodes() == []
    assert wf.execute().stale == []
    go = FlatBuffersStore(tmp_path / "go", layout="go")
    go.save(store.load("wf"))
    assert Workflow(build(scale=3), "wf", go).stale_nodes() == []


def test_a_reset_drops_the_version_and_the_next_run_records_the_new_one() -> None:
    store = InMemoryStore()
    ran(build(scale=2), store)
    dag = build(scale=3)
    wf = Workflow(dag, "wf", store)
    wf.reset_nodes(["total"], downstream=True)
    assert store.load("wf").code_version("total") is None
    assert wf.stale_nodes() == []
    wf.execute()
    assert store.load("wf").code_versions() == dag_code_versions(dag)


@pytest.mark.parametrize("persistence", [Persistence.LEVEL, Persistence.NODE])
def test_every_store_keeps_the_versions(
    store_factory: StoreFactory, persistence: Persistence, tmp_path: Path
) -> None:
    store = store_factory(tmp_path / "store")
    try:
        Workflow(build(), "wf", store, persistence=persistence).execute()
        assert store.load("wf").code_versions() == dag_code_versions(build())
        wf = Workflow(build(word="ho"), "wf", store, persistence=persistence)
        assert wf.stale_nodes() == ["shout"]
        assert wf.execute(rerun="stale").executed == ["shout"]
        assert stale_nodes(build(word="ho"), store.load("wf")) == []
    finally:
        store.close()


def test_versions_no_load_could_read_are_refused(tmp_path: Path) -> None:
    data = WorkflowData("wf")
    data.set_node_status("n", NodeStatus.COMPLETED)
    data.set_code_version("n", 5)  # type: ignore[arg-type]
    for store in (JSONFileStore(tmp_path / "j"), FlatBuffersStore(tmp_path / "f")):
        with pytest.raises(SerializationError, match="code version"):
            store.save(data)
    document = ours_json_document()
    document["flow_workbench"]["code_versions"] = {"node_0": 5}
    (tmp_path / "wf.json").write_bytes(ours_json(document))
    with pytest.raises(CorruptStateError, match="code version"):
        JSONFileStore(tmp_path).load("wf")
    (tmp_path / "wf.fb").write_bytes(forged_native(data._unsafe_columns()))
    with pytest.raises(CorruptStateError, match="code version"):
        FlatBuffersStore(tmp_path).load("wf")


def test_the_picture_marks_stale_nodes_greyscale_safe_with_a_legend_entry() -> None:
    from flow_workbench.dot import STALE_GLYPH, workflow_to_dot

    store = InMemoryStore()
    ran(build(), store)
    current = workflow_to_dot(store.load("wf"), build())
    assert STALE_GLYPH not in current and "peripheries" not in current
    source = workflow_to_dot(store.load("wf"), build(word="ho"))
    lines = {line for line in source.splitlines() if "peripheries=2" in line}
    assert len(lines) == 1 and f"shout {STALE_GLYPH}" in lines.pop()  # a double border and a glyph
    assert f"{STALE_GLYPH} stale: code changed" in source  # the legend says what they mean


def test_the_panel_re_runs_the_stale_nodes() -> None:
    pytest.importorskip("ipywidgets")
    from flow_workbench.notebook import RecoveryPanel

    store = InMemoryStore()
    ran(build(), store)
    panel = RecoveryPanel(store, "wf", workflow=Workflow(build(word="ho"), "wf", store))
    assert panel.rerun_stale_button.description == "re-run stale"
    panel.rerun_stale_button.click()
    assert panel.last_result is not None and panel.last_result.executed == ["shout"]
    assert store.load("wf").get_output("shout") == "ho"
