"""DAG structure: levels, upstream/downstream, validation errors."""

from __future__ import annotations

import itertools

import pytest

from flow_workbench import (
    DAG,
    CycleError,
    DuplicateNodeError,
    InvalidNodeNameError,
    Node,
    UnknownDependencyError,
    UnknownNodeError,
)
from tests.helpers.line_count import lines_run


def diamond() -> DAG:
    dag = DAG("diamond")
    dag.add_node("a")
    dag.add_node("b", depends_on="a")
    dag.add_node("c", depends_on=["a"])
    dag.add_node("d", depends_on=["b", "c"])
    return dag


def test_levels_of_a_diamond() -> None:
    assert diamond().levels() == [["a"], ["b", "c"], ["d"]]


def test_levels_keep_insertion_order_within_a_level() -> None:
    dag = DAG()
    for name in ["z", "y", "x"]:
        dag.add_node(name)
    assert dag.levels() == [["z", "y", "x"]]


def test_downstream_and_upstream_are_transitive() -> None:
    dag = diamond()
    dag.add_node("e", depends_on="d")
    assert dag.downstream("b") == ["d", "e"]
    assert dag.downstream("a") == ["b", "c", "d", "e"]
    assert dag.upstream("e") == ["a", "b", "c", "d"]
    assert dag.upstream("a") == []
    assert dag.dependents("a") == ["b", "c"]
    assert dag.dependencies("d") == ["b", "c"]


def test_forward_references_are_allowed_until_validate() -> None:
    dag = DAG()
    dag.add_node("late", depends_on="early")
    dag.add_node("early")
    assert dag.levels() == [["early"], ["late"]]


def test_unknown_dependency_names_both_nodes() -> None:
    dag = DAG()
    dag.add_node("load", depends_on="extract")
    with pytest.raises(UnknownDependencyError) as info:
        dag.validate()
    assert (info.value.node, info.value.dependency) == ("load", "extract")
    assert "'load'" in str(info.value) and "'extract'" in str(info.value)


def test_cycle_error_carries_the_cycle_path() -> None:
    dag = DAG()
    dag.add_node("a", depends_on="c")
    dag.add_node("b", depends_on="a")
    dag.add_node("c", depends_on="b")
    dag.add_node("free")
    with pytest.raises(CycleError) as info:
        dag.validate()
    cycle = info.value.cycle
    assert cycle[0] == cycle[-1]
    assert set(cycle) == {"a", "b", "c"}
    # Each node in the path must run before the next one: the next one depends on it.
    for before, after in itertools.pairwise(cycle):
        assert before in dag.dependencies(after)
    assert " -> ".join(map(repr, cycle)) in str(info.value)


def test_dag_errors_quote_and_escape_names() -> None:
    """Names come from received files: quoted, with their controls escaped, a name can neither
    close the message early nor carry a terminal sequence or a line break into it."""
    hostile = "x -> y): ok\n\x1b[32mALL GOOD\u202e"
    cyclic = DAG.from_structure({hostile: ["b"], "b": [hostile]})
    with pytest.raises(CycleError) as cycle:
        cyclic.validate()
    unknown = DAG.from_structure({hostile: [hostile + "?"]})
    with pytest.raises(UnknownDependencyError) as missing:
        unknown.validate()
    for message in (str(cycle.value), str(missing.value)):
        assert repr(hostile) in message
        assert "\n" not in message and "\x1b" not in message and "\u202e" not in message


def test_self_dependency_is_a_cycle() -> None:
    dag = DAG()
    dag.add_node("a", depends_on="a")
    with pytest.raises(CycleError):
        dag.validate()


def test_duplicate_names_are_refused() -> None:
    dag = DAG()
    dag.add_node("a")
    with pytest.raises(DuplicateNodeError, match="'a'"):
        dag.add_node(Node("a"))


@pytest.mark.parametrize("bad", ["", "a\x00b", 3])
def test_invalid_node_names(bad: object) -> None:
    with pytest.raises(InvalidNodeNameError):
        DAG().add_node(bad)  # type: ignore[arg-type]


def test_add_dependency_and_cache_invalidation() -> None:
    dag = DAG()
    dag.add_node("a")
    dag.add_node("b")
    assert dag.levels() == [["a", "b"]]
    dag.add_dependency("a", "b")
    assert dag.levels() == [["a"], ["b"]]
    with pytest.raises(UnknownNodeError):
        dag.add_dependency("a", "nope")
    with pytest.raises(UnknownDependencyError):
        dag.add_dependency("nope", "b")


def test_from_structure_round_trips() -> None:
    dag = diamond()
    assert DAG.from_structure(dag.structure()).structure() == dag.structure()


def test_node_option_validation() -> None:
    with pytest.raises(ValueError, match="retries"):
        Node("a", retries=-1)
    with pytest.raises(ValueError, match="timeout"):
        Node("a", timeout=0)
    with pytest.raises(TypeError, match="execute"):
        Node("a", action=42)  # type: ignore[arg-type]


def test_backoff_grows_exponentially_and_is_capped() -> None:
    node = Node("a", retries=5, retry_delay=0.1, backoff_factor=2.0, max_retry_delay=0.5)
    assert [node.delay_before_retry(n) for n in (1, 2, 3, 4)] == [0.1, 0.2, 0.4, 0.5]
    jittery = Node("b", retry_delay=1.0, jitter=True)
    assert all(0 <= jittery.delay_before_retry(1) <= 1.0 for _ in range(50))


def test_downstream_and_upstream_queries_cost_their_answer_not_the_dag() -> None:
    """The engine asks ``downstream`` once per failed node (and ``upstream`` once per node with
    a node executor): a query of a leaf must not walk the whole DAG, or a level of failures
    costs nodes x failures."""
    steps = {}
    for leaves in (100, 800):
        dag = DAG.from_structure({"root": [], **{f"leaf{i}": ["root"] for i in range(leaves)}})
        dag.validate()
        names = [f"leaf{i}" for i in range(leaves)]
        steps[leaves] = lines_run(lambda: [(dag.downstream(n), dag.upstream(n)) for n in names])  # noqa: B023
        assert dag.downstream("leaf0") == [] and dag.upstream("leaf0") == ["root"]
        assert dag.downstream("root") == names
    assert steps[800] / steps[100] < 12, steps
