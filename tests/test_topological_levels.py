"""topological_levels: the one-pass path for nodes listed after their dependencies agrees with graphlib."""

from __future__ import annotations

import graphlib
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flow_workbench.dag import topological_levels
from flow_workbench.errors import CycleError, UnknownDependencyError
from flow_workbench.numbered_graph import NumberedGraph


def graphlib_levels(structure: dict[str, list[str]]) -> list[list[str]]:
    """graphlib's batches, each in the structure's order (what topological_levels promises)."""
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter(structure)
    sorter.prepare()
    order = {name: index for index, name in enumerate(structure)}
    levels = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=order.__getitem__)
        levels.append(ready)
        sorter.done(*ready)
    return levels


@given(st.integers(1, 60), st.integers(0, 2**32 - 1), st.booleans())
def test_levels_match_graphlib_for_any_listing(nodes: int, seed: int, shuffled: bool) -> None:
    rng = random.Random(seed)
    names = [f"n{i}" for i in range(nodes)]
    structure = {
        name: rng.sample(names[:index], k=min(index, rng.randint(0, 3))) for index, name in enumerate(names)
    }
    if shuffled:  # forward references: the graphlib path
        items = list(structure.items())
        rng.shuffle(items)
        structure = dict(items)
    assert topological_levels(structure) == graphlib_levels(structure)


def test_the_one_pass_path_is_taken_only_for_dependency_order() -> None:
    def one_pass(structure: dict[str, list[str]]) -> list[list[int]] | None:
        return NumberedGraph(structure)._levels_in_listed_order()

    assert one_pass({"a": [], "b": ["a"], "c": ["a", "b"]}) == [[0], [1], [2]]
    assert one_pass({"b": ["a"], "a": []}) is None
    assert one_pass({"a": ["a"]}) is None


def test_cycles_and_unknown_dependencies_still_raise() -> None:
    with pytest.raises(CycleError):
        topological_levels({"a": ["b"], "b": ["a"]})
    with pytest.raises(CycleError):
        topological_levels({"a": ["a"]})
    with pytest.raises(UnknownDependencyError):
        topological_levels({"a": [], "b": ["zz"]})
