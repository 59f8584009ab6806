"""dag_code_versions reuses its last result on the same DAG only while nothing it depends on changed."""

from __future__ import annotations

import types

from flow_workbench import DAG
from flow_workbench.code_versions import dag_code_versions


def module_with(source: str) -> types.ModuleType:
    """A module whose functions are defined by ``source`` (a notebook's namespace, in effect)."""
    module = types.ModuleType("cells")
    exec(compile(source, "<cell>", "exec"), module.__dict__)
    return module


def test_an_edited_helper_changes_the_versions_of_the_same_dag() -> None:
    cells = module_with("def helper():\n    return 1\n\ndef step():\n    return helper()\n")
    dag = DAG("d")
    dag.add_node("step", cells.step)
    dag.add_node("after", cells.step, depends_on=["step"])
    before = dag_code_versions(dag)
    assert dag_code_versions(dag) == before  # nothing changed: the same versions
    exec(compile("def helper():\n    return 2\n", "<cell>", "exec"), cells.__dict__)
    after = dag_code_versions(dag)
    assert after["step"] != before["step"]
    assert after["after"] != before["after"]  # downstream follows


def test_a_new_edge_or_version_changes_the_versions_of_the_same_dag() -> None:
    dag = DAG("d")
    dag.add_node("a", None)
    dag.add_node("b", None)
    first = dag_code_versions(dag)
    dag.add_dependency("a", "b")
    second = dag_code_versions(dag)
    assert second["b"] != first["b"] and second["a"] == first["a"]
    dag.node("a").version = "2"
    third = dag_code_versions(dag)
    assert third["a"] != second["a"] and third["b"] != second["b"]


def test_the_returned_versions_are_the_callers_own() -> None:
    dag = DAG("d")
    dag.add_node("a", None)
    versions = dag_code_versions(dag)
    versions["a"] = "changed by the caller"
    assert dag_code_versions(dag)["a"] != "changed by the caller"
