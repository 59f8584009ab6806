"""numpy scalars returned by actions or set as key-values are stored as the JSON values they equal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flow_workbench import DAG, SerializationError, Workflow, WorkflowData, WorkflowExecutionError
from flow_workbench.stores.base import WorkflowStore
from tests.helpers.modules import modules_loaded_by
from tests.helpers.stores import IMPLEMENTATIONS

#: (what an action returns, what reading it back gives); compared with their exact types.
SCALARS: dict[str, tuple[Any, Any]] = {
    "int64": (np.int64(-(2**63) + 1), -(2**63) + 1),
    "int32": (np.int32(-7), -7),
    "uint8": (np.uint8(255), 255),
    "float64": (np.float64(2.5), 2.5),
    # The exact float a float32 holds, not orjson's shortest float32 form (0.1): equal to the input.
    "float32": (np.float32(0.1), 0.10000000149011612),
    "bool_true": (np.bool_(True), True),
    "bool_false": (np.bool_(False), False),
    "nested": (
        {"total": np.int64(5), "flags": [np.bool_(False), np.float32(0.5)], "pair": (np.int8(1), 2)},
        {"total": 5, "flags": [False, 0.5], "pair": [1, 2]},
    ),
}


def same(a: Any, b: Any) -> bool:
    """Equal, with the same types all the way down (1 is not True, 1 is not 1.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@pytest.mark.parametrize("kind", sorted(SCALARS))
def test_numpy_scalar_outputs_and_key_values_round_trip_through_every_store(
    store: WorkflowStore, kind: str
) -> None:
    value, expected = SCALARS[kind]

    def produce(data: WorkflowData) -> Any:
        data.set("kept", value)
        return value

    dag = DAG()
    dag.add_node("produce", produce)
    Workflow(dag, "np", store).execute()

    loaded = store.load("np")
    assert same(loaded.get_output("produce"), expected)
    assert same(loaded.get("kept"), expected)


def test_float32_is_stored_as_the_float_it_holds() -> None:
    data = WorkflowData("wf")
    data.set_output("n", np.float32(0.1))
    assert data.get_output("n") == float(np.float32(0.1))
    assert np.float32(data.get_output("n")) == np.float32(0.1)


def test_key_values_hold_plain_values_from_the_moment_they_are_set() -> None:
    data = WorkflowData("wf")
    data.set("count", np.int64(3))
    data.set("unchanged", ("a", 1))  # no numpy inside: stored as given
    assert type(data.get("count")) is int
    assert data.get("unchanged") == ("a", 1)


def test_an_array_output_is_stored_as_an_artifact() -> None:
    """Arrays are artifacts now (tests/test_artifacts.py); an object array still fails its node."""
    dag = DAG()
    dag.add_node("array", lambda data: np.arange(3))
    dag.add_node("objects", lambda data: np.array([object()]))
    workflow = Workflow(dag, "np")
    with pytest.raises(WorkflowExecutionError) as raised:
        workflow.execute()
    assert np.array_equal(workflow.load_state().get_output("array"), np.arange(3))
    failure = raised.value.failures["objects"]
    assert failure.error_type == "SerializationError"
    assert "numpy.ndarray" in failure.message


def test_an_array_inside_a_container_is_refused_too() -> None:
    with pytest.raises(SerializationError, match=r"numpy\.ndarray"):
        WorkflowData("wf").set_output("n", {"values": np.arange(3), "n": np.int64(3)})


@pytest.mark.parametrize(
    "value",
    [np.float64("nan"), np.float32("inf"), np.longdouble(1.5), np.complex64(1j), np.datetime64("2026-01-01")],
    ids=["nan", "inf", "longdouble", "complex", "datetime64"],
)
def test_numpy_values_without_an_exact_json_form_are_refused(value: Any) -> None:
    with pytest.raises(SerializationError, match="output of node 'n'"):
        WorkflowData("wf").set_output("n", value)


@pytest.mark.parametrize("kind", ["json", "flatbuffers", "redis"])  # InMemoryStore keeps objects as is
def test_an_array_key_value_is_refused_when_the_state_is_saved(kind: str, tmp_path: Path) -> None:
    store = IMPLEMENTATIONS[kind](tmp_path)
    data = WorkflowData("np")
    data.set("values", np.arange(3))
    try:
        with pytest.raises(SerializationError, match="values"):
            store.save(data)
    finally:
        store.close()


def test_outputs_and_key_values_never_import_numpy() -> None:
    code = (
        "import flow_workbench\n"
        "data = flow_workbench.WorkflowData('wf')\n"
        "data.set_output('n', {'a': [1, 2.5, True]})\n"
        "data.set('k', [1, {'b': None}])\n"
        "try:\n"
        "    data.set_output('bad', {1, 2})\n"
        "except flow_workbench.SerializationError:\n"
        "    pass\n"
    )
    assert modules_loaded_by(code, ["numpy"]) == []
