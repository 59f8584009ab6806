"""Artifact outputs: DataFrames, Series, arrays, Tables and registered types through every store."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from flow_workbench import (
    DAG,
    ArtifactRef,
    CorruptStateError,
    FlatBuffersStore,
    JSONFileStore,
    NodeStatus,
    SerializationError,
    UnknownOutputTypeError,
    Workflow,
    WorkflowData,
    WorkflowExecutionError,
    register_output_type,
    reset_nodes,
)
from flow_workbench.artifacts import OUTPUT_MARKER, artifact_preview, set_arrow_compression
from flow_workbench.stores.base import WorkflowStore
from flow_workbench.stores.files import FileStore
from flow_workbench.stores.memory import InMemoryStore
from flow_workbench.stores.redis import RedisStore
from flow_workbench.testing import StoreFactory
from tests.helpers.stores import IMPLEMENTATIONS


def _frame() -> pd.DataFrame:
    """Index, categorical, tz-aware datetimes, nullable ints, strings, non-string column names."""
    return pd.DataFrame(
        {
            "int": np.arange(4, dtype="int64"),
            "category": pd.Categorical(["b", "a", "b", None], categories=["b", "a"], ordered=True),
            "paris": pd.date_range("2026-03-29", periods=4, freq="h", tz="Europe/Paris"),
            "nullable": pd.array([1, None, 3, 4], dtype="Int64"),
            "text": ["x", None, "ü ✓", ""],
            7: [0.5, np.nan, -0.0, 1e300],
            2.5: [True, False, True, False],
        },
        index=pd.Index(["r0", "r1", "r2", "r3"], name="row"),
    )


class Point:
    """A user type stored through ``register_output_type`` (bytes in, bytes out)."""

    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    __hash__ = None  # type: ignore[assignment]


register_output_type(
    Point, "tests.Point", lambda p: f"{p.x},{p.y}".encode(), lambda raw: Point(*map(int, raw.split(b",")))
)

#: name -> (value factory, equality check)
KINDS: dict[str, tuple[Callable[[], Any], Callable[[Any, Any], None] | None]] = {
    "dataframe": (_frame, lambda a, b: pd.testing.assert_frame_equal(a, b, check_column_type=True)),
    "dataframe-range-index": (
        lambda: pd.DataFrame({"a": range(5), "b": list("abcde")}),
        pd.testing.assert_frame_equal,
    ),
    "dataframe-multiindex": (
        lambda: pd.DataFrame(
            np.arange(6).reshape(2, 3),
            columns=pd.MultiIndex.from_tuples([("a", "x"), ("a", "y"), ("b", "x")]),
            index=pd.MultiIndex.from_tuples([(1, "p"), (2, "q")], names=["n", "s"]),
        ),
        pd.testing.assert_frame_equal,
    ),
    "dataframe-int-columns": (lambda: pd.DataFrame(np.eye(3)), pd.testing.assert_frame_equal),
    "dataframe-empty": (lambda: pd.DataFrame(), pd.testing.assert_frame_equal),
    "series": (
        lambda: pd.Series([1.5, None, 3.0], name=("total", 2026), index=pd.Index([3, 1, 2], name="k")),
        pd.testing.assert_series_equal,
    ),
    "series-unnamed-tz": (
        lambda: pd.Series(pd.date_range("2026-01-01", periods=3, tz="UTC")),
        pd.testing.assert_series_equal,
    ),
    "ndarray-2d": (lambda: np.arange(12, dtype="int32").reshape(3, 4), np.testing.assert_array_equal),
    "ndarray-fortran": (lambda: np.asfortranarray(np.random.default_rng(1).random((3, 5))), None),
    "ndarray-complex": (lambda: np.array([1 + 2j, -3j], dtype="complex64"), None),
    "ndarray-strings": (lambda: np.array(["ab", "c", "ü✓"]), None),
    "ndarray-datetime-days": (lambda: np.array(["2026-01-01", "NaT"], dtype="datetime64[D]"), None),
    "ndarray-big-endian": (lambda: np.arange(5, dtype=">i8"), None),
    "ndarray-bool": (lambda: np.array([[True], [False]]), None),
    "ndarray-float16": (lambda: np.array([1.5, np.inf, -0.0], dtype="float16"), None),
    "ndarray-structured": (lambda: np.array([(1, 2.5)], dtype=[("a", "<i4"), ("b", "<f8")]), None),
    "ndarray-0d": (lambda: np.array(7.25), None),
    "ndarray-empty": (lambda: np.zeros((2, 0, 3)), None),
    "pyarrow-table": (
        lambda: pa.table({"x": [1, None], "y": ["a", "b"]}).replace_schema_metadata({"k": "v"}),
        lambda a, b: _check(a.equals(b, check_metadata=True)),
    ),
    "registered": (lambda: Point(3, -4), lambda a, b: _check(a == b)),
}


def _check(condition: bool) -> None:
    assert condition


def assert_same(kind: str, expected: Any, actual: Any) -> None:
    compare = KINDS[kind][1]
    if compare is None:  # arrays: dtype, shape and every value (NaN/NaT equal to themselves)
        assert type(actual) is np.ndarray
        assert actual.dtype == expected.dtype and actual.shape == expected.shape
        assert expected.tobytes() == np.ascontiguousarray(actual).tobytes()
        assert actual.flags.writeable
    else:
        compare(expected, actual)


def _state(node: str, value: Any, workflow_id: str = "wf") -> WorkflowData:
    data = WorkflowData(workflow_id)
    data.set_node_status(node, NodeStatus.COMPLETED)
    data.set_output(node, value)
    return data


def _ref(data: WorkflowData, node: str) -> ArtifactRef:
    ref = data.outputs(load_artifacts=False)[node]
    assert isinstance(ref, ArtifactRef)
    return ref


def _stored_artifacts(store: WorkflowStore, workflow_id: str) -> set[str]:
    """Hashes of the artifacts ``store`` holds for ``workflow_id``, looked at directly."""
    if isinstance(store, FileStore):
        folder = Path(store.base_dir) / f"{workflow_id}.artifacts"
        return {name.partition(".")[0] for name in os.listdir(folder)} if folder.exists() else set()
    if isinstance(store, RedisStore):
        # the store's client answers bytes (decode_responses is off)
        keys = cast(list[bytes], store.client.keys(f"{store.prefix}artifact:{workflow_id}:*"))
        members = cast(set[bytes], store.client.smembers(f"{store.prefix}artifacts:{workflow_id}"))
        hashes = {key.decode().rpartition(":")[2] for key in keys}
        assert hashes == {m.decode() for m in members}, "the set lists exactly the stored artifacts"
        return hashes
    assert isinstance(store, InMemoryStore)
    return set(store._artifacts._by_workflow.get(workflow_id, {}))


def _replace_artifact(store: WorkflowStore, workflow_id: str, ref: ArtifactRef, raw: bytes | None) -> str:
    """Overwrite (or remove, ``raw=None``) one stored artifact behind the store's back; returns
    the name an error about it must mention."""
    if isinstance(store, FileStore):
        path = Path(store.base_dir) / f"{workflow_id}.artifacts" / ref.file_name
        path.unlink() if raw is None else path.write_bytes(raw)
        return str(path)
    if isinstance(store, RedisStore):
        key = f"{store.prefix}artifact:{workflow_id}:{ref.hash}"
        store.client.delete(key) if raw is None else store.client.set(key, raw)
        return key
    assert isinstance(store, InMemoryStore)
    stored = store._artifacts._by_workflow[workflow_id]
    stored.pop(ref.hash) if raw is None else stored.__setitem__(ref.hash, raw)
    return ref.file_name


def _stored_bytes(store: WorkflowStore, workflow_id: str, ref: ArtifactRef) -> bytes:
    data = store.load(workflow_id)
    return bytes(data.artifact_stash.bytes_of(ref, "n"))


# --- round trips ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_round_trips_through_every_store(kind: str, store: WorkflowStore) -> None:
    """Saved with ``save``, then replaced through ``save_node`` (journal / node record), each
    kind reads back equal (index, dtypes, column names, metadata) from a fresh load."""
    make = KINDS[kind][0]
    data = _state("n", make())
    assert_same(kind, make(), data.get_output("n"))  # before any save: from the held bytes
    store.save(data)
    assert_same(kind, make(), store.load("wf").get_output("n"))
    assert_same(kind, make(), data.get_output("n"))  # the saved object now reads from the store
    data.set_output("other", make())
    data.set_node_status("other", NodeStatus.COMPLETED)
    store.save_node(data, "other")
    loaded = store.load("wf")
    assert_same(kind, make(), loaded.get_output("other"))
    assert_same(kind, make(), loaded.outputs()["n"])
    # Same content, one artifact: content addressing.
    assert _stored_artifacts(store, "wf") == {_ref(data, "n").hash}


def test_a_transaction_writes_the_artifacts_of_every_state(store: WorkflowStore) -> None:
    if not hasattr(store, "transaction"):
        pytest.skip("not transactional")
    first, second = _state("n", _frame(), "one"), _state("n", np.arange(3), "two")
    with store.transaction() as tx:
        tx.save(first)
        tx.save(second)
    assert_same("dataframe", _frame(), store.load("one").get_output("n"))
    assert_same("ndarray-2d", np.arange(3), store.load("two").get_output("n"))


def test_compressed_artifacts_read_back(store: WorkflowStore) -> None:
    try:
        for codec in ("zstd", "lz4"):
            set_arrow_compression(codec)
            data = _state("n", _frame(), f"wf-{codec}")
            store.save(data)
            assert_same("dataframe", _frame(), store.load(f"wf-{codec}").get_output("n"))
    finally:
        set_arrow_compression(None)
    with pytest.raises(ValueError, match="compression"):
        set_arrow_compression("gzip")


def test_the_reference_is_small_and_describes_the_artifact() -> None:
    frame = pd.DataFrame({f"c{i}": np.arange(1000) * i for i in range(30)})
    data = _state("n", frame)
    ref = _ref(data, "n")
    assert (ref.kind, ref.format, ref.shape, ref.size) == ("pandas.DataFrame", "arrow", (1000, 30), ref.size)
    assert len(ref.schema) == 20 and ref.schema[0] == ("c0", "int64")
    assert ref.size > 200_000
    with data.read_columns() as columns:
        stored = columns.outputs["n"]
    assert len(bytes(pickle.dumps(stored.__class__))) < 1_000  # a Fragment of a small JSON object
    text = artifact_preview(ref)
    assert text.startswith("DataFrame 1,000x30 (c0: int64, c1: int64, c2: int64, c3: int64, …)")
    assert "c0=0, c1=0" in text
    assert str(ref) == text
    array_text = artifact_preview(_ref(_state("a", np.arange(10.0)), "a"))
    assert array_text.startswith("ndarray 10 (dtype: float64) [0., 1., 2.")


def test_user_dicts_holding_the_marker_key_read_back_as_they_were(store: WorkflowStore) -> None:
    """A dict output that looks exactly like a reference is the user's dict, never an artifact."""
    lookalike = _ref(_state("x", np.arange(3)), "x").to_json()
    values = {
        "lookalike": lookalike,
        "escaped-looking": {OUTPUT_MARKER: "escaped", "value": 1},
        "nested": {"inner": {OUTPUT_MARKER: "artifact"}},
        "plain": {"a": 1},
    }
    data = WorkflowData("wf")
    for node, value in values.items():
        data.set_node_status(node, NodeStatus.COMPLETED)
        data.set_output(node, value)
    store.save(data)
    loaded = store.load("wf")
    assert loaded.outputs() == values
    assert {node: loaded.get_output(node) for node in values} == values
    assert _stored_artifacts(store, "wf") == set()


# --- laziness, damage, absence ---------------------------------------------------------------------


def test_loading_reads_no_artifact_and_a_missing_one_is_corrupt_on_access(store: WorkflowStore) -> None:
    data = _state("n", _frame())
    data.set_output("kept", {"rows": 4})
    store.save(data)
    ref = _ref(data, "n")
    name = _replace_artifact(store, "wf", ref, None)
    loaded = store.load("wf")  # never at load
    assert loaded.get_output("kept") == {"rows": 4}
    assert loaded.outputs(load_artifacts=False)["n"] == ref  # tables show the reference
    with pytest.raises(CorruptStateError, match="missing") as raised:
        loaded.get_output("n")
    assert name in str(raised.value) and "'n'" in str(raised.value)
    with pytest.raises(CorruptStateError):
        loaded.outputs()
    reset_nodes(store, "wf", ["n"])  # the repair: the node runs again next time
    repaired = store.load("wf")
    assert not repaired.has_output("n") and repaired.get_output("kept") == {"rows": 4}


@pytest.mark.parametrize("damage", ["flipped", "truncated", "longer", "empty"])
def test_a_damaged_artifact_is_corrupt_on_access_naming_it(damage: str, store: WorkflowStore) -> None:
    data = _state("n", np.arange(1000))
    store.save(data)
    ref = _ref(data, "n")
    raw = bytearray(_stored_bytes(store, "wf", ref))
    changed = {
        "flipped": bytes(raw[:500]) + bytes([raw[500] ^ 0x10]) + bytes(raw[501:]),
        "truncated": bytes(raw[:-10]),
        "longer": bytes(raw) + b"\0",
        "empty": b"",
    }[damage]
    name = _replace_artifact(store, "wf", ref, changed)
    loaded = store.load("wf")
    with pytest.raises(CorruptStateError) as raised:
        loaded.get_output("n")
    assert name in str(raised.value)


def test_an_artifact_folder_that_is_a_symlink_is_never_followed(tmp_path: Path) -> None:
    store = JSONFileStore(tmp_path / "store")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "store" / "wf.artifacts").symlink_to(elsewhere)
    with pytest.raises(CorruptStateError, match="not a folder of artifacts"):
        store.save(_state("n", np.arange(3)))
    assert list(elsewhere.iterdir()) == []
    assert not store.exists("wf")  # no state was written without its artifact


def test_a_state_saved_with_a_missing_artifact_is_refused_not_copied(tmp_path: Path) -> None:
    source, target = JSONFileStore(tmp_path / "a"), FlatBuffersStore(tmp_path / "b")
    data = _state("n", np.arange(3))
    data.set_output("kept", np.arange(4))
    source.save(data)
    (tmp_path / "a" / "wf.artifacts" / _ref(data, "n").file_name).unlink()
    loaded = source.load("wf")
    loaded.set_output("n2", 1)
    with pytest.raises(CorruptStateError, match="missing"):
        target.save(loaded)
    assert not target.exists("wf")


# --- cleanup -----------------------------------------------------------------------------------------


def test_artifacts_no_longer_referenced_are_removed(store: WorkflowStore) -> None:
    data = _state("n", np.arange(3))
    data.set_node_status("m", NodeStatus.COMPLETED)
    data.set_output("m", np.arange(4))
    store.save(data)
    first, kept = _ref(data, "n").hash, _ref(data, "m").hash
    assert _stored_artifacts(store, "wf") == {first, kept}
    data.set_output("n", np.arange(5))  # re-run: the new version supersedes the old output
    store.save_node(data, "n")
    second = _ref(data, "n").hash
    # A node record removes nothing (other nodes' stored outputs may still need theirs); the
    # next full save does.
    assert _stored_artifacts(store, "wf") == {first, second, kept}
    store.save(data)
    assert _stored_artifacts(store, "wf") == {second, kept}
    data.set_output("n", {"plain": True})
    store.save(data)
    assert _stored_artifacts(store, "wf") == {kept}
    reset_nodes(store, "wf", ["m"])  # reset clears the output
    assert _stored_artifacts(store, "wf") == set()
    data = store.load("wf")
    data.set_output("n", np.arange(6))
    store.save(data)
    assert len(_stored_artifacts(store, "wf")) == 1
    store.delete("wf")
    assert _stored_artifacts(store, "wf") == set()
    if isinstance(store, FileStore):
        assert not (Path(store.base_dir) / "wf.artifacts").exists()


def test_a_failed_save_removes_nothing(store: WorkflowStore) -> None:
    data = _state("n", np.arange(3))
    store.save(data)
    stale = store.load("wf")
    data.set_output("n", np.arange(4))
    store.save(data)
    stale.set_output("n", np.arange(9))
    with pytest.raises(Exception, match=r"version|conflict"):
        store.save(stale)
    loaded = store.load("wf")
    assert np.array_equal(loaded.get_output("n"), np.arange(4))


def test_a_dropped_artifact_of_another_workflow_is_kept(store: WorkflowStore) -> None:
    """Artifacts are per workflow: equal content in two workflows, one removed, the other kept."""
    one, two = _state("n", np.arange(3), "one"), _state("n", np.arange(3), "two")
    store.save(one)
    store.save(two)
    store.delete("one")
    assert np.array_equal(store.load("two").get_output("n"), np.arange(3))


# --- the Go layout, convert ----------------------------------------------------------------------


def test_the_go_layout_refuses_artifact_outputs_naming_the_node(tmp_path: Path) -> None:
    store = FlatBuffersStore(tmp_path / "go", layout="go")
    with pytest.raises(SerializationError, match=r"node 'table'.*Go FlatBuffers layout cannot hold"):
        store.save(_state("table", _frame()))
    assert not store.exists("wf")
    assert list((tmp_path / "go").glob("*.artifacts")) == []


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    return subprocess.run(
        [sys.executable, "-m", "flow_workbench", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_convert_copies_artifacts_and_refuses_them_for_the_go_layout(tmp_path: Path) -> None:
    source = JSONFileStore(tmp_path / "src")
    source.save(_state("n", _frame(), "frames"))
    source.save(_state("n", {"plain": 1}, "plain"))
    done = _cli("convert", str(tmp_path / "src"), str(tmp_path / "fb"), "--to", "fb")
    assert done.returncode == 0, done.stderr
    copied = FlatBuffersStore(tmp_path / "fb").load("frames")
    assert_same("dataframe", _frame(), copied.get_output("n"))
    go = _cli("convert", str(tmp_path / "src"), str(tmp_path / "go"), "--to", "go-fb")
    assert go.returncode != 0
    assert "frames" in go.stderr and "cannot hold artifact outputs" in go.stderr
    assert FlatBuffersStore(tmp_path / "go", layout="go").list_workflows() == ["plain"]


# --- registered types ----------------------------------------------------------------------------


class Unregistered:
    pass


def test_an_unknown_type_still_fails_the_node_with_the_clear_error() -> None:
    dag = DAG()
    dag.add_node("odd", lambda data: Unregistered())
    workflow = Workflow(dag, "odd")
    with pytest.raises(WorkflowExecutionError) as raised:
        workflow.execute()
    failure = raised.value.failures["odd"]
    assert failure.error_type == "SerializationError"
    assert "Unregistered" in failure.message and "not JSON serializable" in failure.message


def test_a_kind_nobody_registered_here_is_named_on_access(tmp_path: Path) -> None:
    class Temporary:
        pass

    register_output_type(Temporary, "tests.Temporary", lambda value: b"t", lambda raw: Temporary())
    store = JSONFileStore(tmp_path)
    store.save(_state("n", Temporary()))
    from flow_workbench import artifacts

    del artifacts._BY_NAME["tests.Temporary"], artifacts._BY_CLASS[Temporary]
    loaded = store.load("wf")
    with pytest.raises(UnknownOutputTypeError, match=r"tests\.Temporary.*register_output_type"):
        loaded.get_output("n")


def test_encoder_failures_and_bad_registrations_are_clear() -> None:
    class Bad:
        pass

    def encode(value: Bad) -> Any:
        return "text, not bytes"  # an encoder that breaks its contract

    register_output_type(Bad, "tests.Bad", encode, lambda raw: Bad())
    with pytest.raises(SerializationError, match=r"node 'n' \(a tests\.Bad\).*not bytes"):
        _state("n", Bad())
    with pytest.raises(ValueError, match="built-in"):
        register_output_type(Bad, "pandas.DataFrame", bytes, bytes)
    with pytest.raises(ValueError, match="name"):
        register_output_type(Bad, "../escape", bytes, bytes)
    with pytest.raises(TypeError, match="class"):
        register_output_type("Bad", "tests.Str", bytes, bytes)  # type: ignore[arg-type]
    with pytest.raises(SerializationError, match="Python objects"):
        _state("n", np.array([object()]))
    with pytest.raises(SerializationError, match="Duplicate column names"):
        _state("n", pd.DataFrame([[1, 2]], columns=["a", "a"]))


# --- the engine ------------------------------------------------------------------------------------


def test_a_dataframe_pipeline_runs_resumes_and_reads_inputs_from_the_store(tmp_path: Path) -> None:
    calls: list[str] = []

    def load() -> pd.DataFrame:
        calls.append("load")
        return _frame()

    def total(load: pd.DataFrame) -> pd.Series:
        calls.append("total")
        return load.groupby("category", observed=True)["int"].sum()

    def fail_once(total: pd.Series) -> np.ndarray:
        calls.append("fail_once")
        if calls.count("fail_once") == 1:
            raise RuntimeError("first time")
        values: np.ndarray = total.to_numpy()
        return values

    dag = DAG()
    dag.add(load)
    dag.add(total)
    dag.add(fail_once)
    store = JSONFileStore(tmp_path)
    with pytest.raises(WorkflowExecutionError):
        Workflow(dag, "pipe", store=store).execute()
    again = Workflow(dag, "pipe", store=store)
    again.reset_failed()
    again.execute()  # resumes: "total" is read from its artifact
    assert calls == ["load", "total", "fail_once", "fail_once"]
    state = store.load("pipe")
    expected = _frame().groupby("category", observed=True)["int"].sum()
    pd.testing.assert_series_equal(state.get_output("total"), expected)
    assert np.array_equal(state.get_output("fail_once"), expected.to_numpy())
    assert len(os.listdir(tmp_path / "pipe.artifacts")) == 3


def test_a_state_with_artifacts_pickles_for_remote_workers(tmp_path: Path) -> None:
    store = FlatBuffersStore(tmp_path)
    store.save(_state("n", _frame()))
    loaded = store.load("wf")
    shipped = pickle.loads(pickle.dumps(loaded))
    shutil.rmtree(tmp_path / "wf.artifacts")  # the copy carries its bytes
    assert_same("dataframe", _frame(), shipped.get_output("n"))


def test_importing_flow_workbench_loads_no_artifact_library() -> None:
    code = "import sys, flow_workbench\nprint(sorted({'pyarrow', 'xxhash', 'pandas'} & set(sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", sorted(IMPLEMENTATIONS))
def test_a_hundred_artifact_outputs_load_without_reading_one(name: str, tmp_path: Path) -> None:
    """Laziness, counted rather than timed: every artifact removed, the state still loads."""
    factory: StoreFactory = IMPLEMENTATIONS[name]
    store = factory(tmp_path / "store")
    data = WorkflowData("many")
    for index in range(100):
        data.set_node_status(f"n{index}", NodeStatus.COMPLETED)
        data.set_output(f"n{index}", np.arange(index + 1))
    store.save(data)
    refs = data.outputs(load_artifacts=False)
    for ref in refs.values():
        _replace_artifact(store, "many", ref, None)
    loaded = store.load("many")
    assert loaded.outputs(load_artifacts=False) == refs
    assert loaded.node_statuses() == data.node_statuses()


def test_show_lists_artifact_outputs_without_reading_them(tmp_path: Path) -> None:
    store = JSONFileStore(tmp_path)
    store.save(_state("n", _frame()))
    shutil.rmtree(tmp_path / "wf.artifacts")  # nothing is read: the listing still works
    text = _cli("show", str(tmp_path), "wf")
    assert text.returncode == 0, text.stderr
    assert "n = DataFrame 4x7 (int: int64, category: category" in text.stdout
    shown = _cli("show", str(tmp_path), "wf", "--json")
    assert shown.returncode == 0, shown.stderr
    import json

    output = json.loads(shown.stdout)["nodes"][0]["output"]
    assert output[OUTPUT_MARKER] == "artifact" and output["shape"] == [4, 7]
