"""NumberedGraph, the integer form recovery walks: the same answers as the name-keyed walks."""

from __future__ import annotations

import gc
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flow_workbench.dag import dependents_map, reachable, topological_levels
from flow_workbench.errors import CycleError, UnknownDependencyError
from flow_workbench.numbered_graph import NumberedGraph


@st.composite
def structures(draw: st.DrawFn) -> dict[str, list[str]]:
    """An acyclic structure, listed in a shuffled order (so not always dependencies first)."""
    count = draw(st.integers(0, 30))
    names = [f"n{index}" for index in range(count)]
    structure = {
        name: draw(st.lists(st.sampled_from(names[:index]), max_size=4)) if index else []
        for index, name in enumerate(names)
    }
    order = draw(st.permutations(names))
    return {name: structure[name] for name in order}


@settings(max_examples=200, deadline=None)
@given(structures(), st.data())
def test_order_downstream_and_sort_agree_with_the_name_keyed_walks(
    structure: dict[str, list[str]], data: st.DataObject
) -> None:
    graph = NumberedGraph(structure)
    expected_order = _reference_order(structure)
    assert graph.named(graph.order()) == expected_order
    assert [name for level in topological_levels(structure) for name in level] == expected_order

    starts = data.draw(st.lists(st.sampled_from(list(structure)), max_size=5)) if structure else []
    assert set(graph.named(graph.downstream(graph.numbered(starts)))) == set(
        reachable(dependents_map(structure), starts)
    )
    picked = data.draw(st.lists(st.sampled_from(list(structure)), max_size=8)) if structure else []
    assert graph.sort([*picked, "not-in-the-dag", *picked]) == [
        *(name for name in expected_order if name in picked),
        "not-in-the-dag",
    ]


def _reference_order(structure: dict[str, list[str]]) -> list[str]:
    """By level (one more than the deepest dependency's), then as listed: graphlib's batches."""
    level: dict[str, int] = {}

    def depth(name: str) -> int:
        if name not in level:
            level[name] = 1 + max(map(depth, structure[name]), default=-1)
        return level[name]

    listed = list(structure)
    return sorted(listed, key=lambda name: (depth(name), listed.index(name)))


def test_dependents_reverse_the_edges() -> None:
    graph = NumberedGraph({"a": [], "b": ["a"], "c": ["a", "b"]})
    assert [graph.named(d) for d in graph.dependents()] == [["b", "c"], ["c"], []]
    assert graph.numbered(["c", "zz", "a"]) == [2, 0]


def test_a_start_is_in_the_downstream_only_when_another_start_reaches_it() -> None:
    graph = NumberedGraph({"a": [], "b": ["a"], "c": ["b"]})
    assert sorted(graph.named(graph.downstream(graph.numbered(["a", "b"])))) == ["b", "c"]
    assert graph.downstream(graph.numbered(["c"])) == []


def test_an_unknown_dependency_is_named() -> None:
    with pytest.raises(UnknownDependencyError) as raised:
        NumberedGraph({"a": [], "b": ["a", "ghost"]})
    assert (raised.value.node, raised.value.dependency) == ("b", "ghost")


@pytest.mark.parametrize(
    "structure",
    [{"a": ["b"], "b": ["a"]}, {"a": ["a"]}, {"x": [], "a": ["c"], "b": ["a"], "c": ["b", "x"]}],
)
def test_a_cycle_is_reported_with_its_names(structure: dict[str, list[str]]) -> None:
    with pytest.raises(CycleError) as raised:
        NumberedGraph(structure).order()
    cycle = raised.value.cycle
    assert cycle[0] == cycle[-1]
    for dependency, node in itertools.pairwise(cycle):
        assert dependency in structure[node]  # each node is a dependency of the next


def test_building_and_walking_leave_the_collector_as_found() -> None:
    structure = {f"n{i}": [f"n{i - 1}"] if i else [] for i in range(2_000)}
    for enabled in (True, False):
        gc.enable() if enabled else gc.disable()
        try:
            graph = NumberedGraph(structure)
            graph.order()
            graph.downstream([0])
            assert gc.isenabled() is enabled
        finally:
            gc.enable()
