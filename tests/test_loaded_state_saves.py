"""Issue #19: a loaded FlatBuffers state is saved without re-checking or re-encoding what it was
decoded from (deferred output column, decoder-checked values, reused node names)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from flow_workbench.cli import main as cli_main
from flow_workbench.data import WorkflowData
from flow_workbench.errors import CorruptStateError, SerializationError
from flow_workbench.status import NodeStatus
from flow_workbench.stores._fb_layout import _F_OUTPUTS
from flow_workbench.stores._fb_reader import root_table
from flow_workbench.stores.flatbuffers import FlatBuffersStore
from flow_workbench.stores.flatbuffers_codec import FlatBuffersCodec
from flow_workbench.stores.json_file import JSONFileStore
from flow_workbench.testing import rich_state
from tests.helpers.hostile import reseal_native


def outputs_document(raw: bytes) -> bytes:
    """The output column's JSON document as stored in a file of our layout."""
    root = root_table(memoryview(raw))
    start, count = root.vector(_F_OUTPUTS, 1)
    return raw[start : start + count]


def deferred_outputs(data: WorkflowData) -> bytes | None:
    """The stored bytes of ``data``'s output column while a load has left it undecoded."""
    with data.read_columns() as columns:
        raw = columns.deferred_raw("outputs")
        return None if raw is None else bytes(raw)


def is_checked(data: WorkflowData) -> bool:
    with data.read_columns() as columns:
        return columns.checked


def big_outputs_state(nodes: int = 300) -> WorkflowData:
    data = WorkflowData("wf", created_at=1.0)
    for i in range(nodes):
        data.set_node_status(f"n{i}", NodeStatus.COMPLETED)
        data.set_output(f"n{i}", {"rows": i, "path": f"s3://b/{i}", "f": i / 3})
    return data


def test_outputs_nobody_read_are_saved_as_the_stored_bytes(tmp_path: Path) -> None:
    store = FlatBuffersStore(tmp_path)
    store.save(big_outputs_state())
    before = outputs_document((tmp_path / "wf.fb").read_bytes())
    loaded = store.load("wf")
    assert deferred_outputs(loaded) == before  # not parsed by the load
    loaded.set_node_status("n7", NodeStatus.PENDING)
    store.save(loaded)
    assert deferred_outputs(loaded) == before  # nor by the save
    raw = (tmp_path / "wf.fb").read_bytes()
    assert outputs_document(raw) == before
    back = store.load("wf")
    assert back.get_node_status("n7") is NodeStatus.PENDING
    assert back.outputs() == big_outputs_state().outputs()
    assert back == loaded  # compares decoded values: both decode their outputs now


def test_outputs_read_or_changed_after_a_load_are_encoded_again(tmp_path: Path) -> None:
    store = FlatBuffersStore(tmp_path)
    store.save(big_outputs_state())
    loaded = store.load("wf")
    assert loaded.get_output("n3") == {"rows": 3, "path": "s3://b/3", "f": 1.0}
    assert deferred_outputs(loaded) is None  # decoded on first access
    loaded.set_output("n3", "changed")
    loaded.clear_output("n4")
    store.save(loaded)
    back = store.load("wf")
    assert back.get_output("n3") == "changed" and not back.has_output("n4")
    assert back.get_output("n5") == {"rows": 5, "path": "s3://b/5", "f": 5 / 3}


def test_a_copy_of_a_loaded_state_keeps_its_outputs_undecoded_and_independent(tmp_path: Path) -> None:
    store = FlatBuffersStore(tmp_path)
    store.save(big_outputs_state())
    loaded = store.load("wf")
    copy = loaded.copy()
    assert deferred_outputs(copy) == deferred_outputs(loaded)
    copy.set_output("n1", "only in the copy")
    assert loaded.get_output("n1") == {"rows": 1, "path": "s3://b/1", "f": 1 / 3}
    assert copy.get_output("n1") == "only in the copy"
    assert loaded != copy


def test_converting_a_loaded_state_to_json_writes_its_outputs(tmp_path: Path) -> None:
    FlatBuffersStore(tmp_path / "fb").save(big_outputs_state())
    loaded = FlatBuffersStore(tmp_path / "fb").load("wf")
    loaded.version = 0
    JSONFileStore(tmp_path / "json").save(loaded)
    assert JSONFileStore(tmp_path / "json").load("wf").outputs() == big_outputs_state().outputs()


def forged_outputs(tmp_path: Path, document: bytes) -> Path:
    """A file of ours whose output document is replaced (same length) and resealed: a forger's."""
    data = WorkflowData("wf", created_at=1.0)
    data.set_node_status("a", NodeStatus.COMPLETED)
    data.set_output("a", "x" * 40)
    raw = bytearray(FlatBuffersCodec().encode(data, version=1, updated_at=1.0))
    root = root_table(memoryview(raw))
    start, count = root.vector(_F_OUTPUTS, 1)
    raw[start : start + count] = document.ljust(count)
    path = tmp_path / "wf.fb"
    tmp_path.mkdir(parents=True, exist_ok=True)
    path.write_bytes(reseal_native(raw))
    return path


@pytest.mark.parametrize(
    ("document", "reason"),
    [(b'{"a": [1, 2', "not valid JSON"), (b'["a", 1]', "not a JSON object")],
)
def test_a_forged_output_column_is_refused_when_read_and_by_validate(
    document: bytes, reason: str, tmp_path: Path
) -> None:
    """Damage is caught at load by the checksums; a forger's resealed document that is not an
    object of outputs is refused as corrupt when the outputs are first read, and by ``validate``."""
    forged_outputs(tmp_path, document)
    loaded = FlatBuffersStore(tmp_path).load("wf")
    assert loaded.get_node_status("a") is NodeStatus.COMPLETED
    with pytest.raises(CorruptStateError, match=reason):
        loaded.get_output("a")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main(["validate", str(tmp_path), "--debug"])
    assert code == 1 and reason in out.getvalue()


def test_damaged_output_bytes_are_refused_at_load(tmp_path: Path) -> None:
    FlatBuffersStore(tmp_path).save(big_outputs_state())
    path = tmp_path / "wf.fb"
    raw = bytearray(path.read_bytes())
    document = outputs_document(bytes(raw))
    at = bytes(raw).index(document) + len(document) // 2
    raw[at] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptStateError, match="checksum"):
        FlatBuffersStore(tmp_path).load("wf")


def test_a_decoded_state_knows_its_values_are_checked_until_a_writer_stores_another_kind(
    tmp_path: Path,
) -> None:
    """The decoder validated the values, so the first save need not check them again; a writer
    storing a value of another kind (a non-str error, a str status) clears that knowledge, and
    the save refuses the value instead of writing a file the load refuses."""
    store = FlatBuffersStore(tmp_path)
    state = rich_state("wf")
    store.save(state)
    edits: list[Callable[[WorkflowData], object]] = [
        lambda data: data.set_node_error("failing", {"not": "a string"}),  # type: ignore[arg-type]
        lambda data: data.set_node_error("failing", "boom", 7),  # type: ignore[arg-type]
        lambda data: data.record_attempt_finished("failing", "failed", error=b"bytes"),  # type: ignore[arg-type]
    ]
    for edit in edits:
        loaded = store.load("wf")
        assert is_checked(loaded)
        edit(loaded)
        assert not is_checked(loaded)
        with pytest.raises(SerializationError):
            store.save(loaded)
    assert store.load("wf") == state


def test_names_reused_from_the_codecs_cache_are_those_of_the_file() -> None:
    """A codec reuses the node names it last wrote for a workflow only when the stored bytes are
    the same: another writer's file of that workflow, even of as many nodes, decodes its own."""
    mine, other = FlatBuffersCodec(), FlatBuffersCodec()
    data = WorkflowData("wf", created_at=1.0)
    for name in ("a", "b", "c"):
        data.set_node_status(name, NodeStatus.COMPLETED)
    raw = bytes(mine.encode(data, version=1, updated_at=1.0))
    assert list(mine.decode(raw, "t").node_statuses()) == ["a", "b", "c"]
    theirs = WorkflowData("wf", created_at=1.0)
    for name in ("a", "b", "d"):
        theirs.set_node_status(name, NodeStatus.FAILED)
    decoded = mine.decode(bytes(other.encode(theirs, version=2, updated_at=2.0)), "t")
    assert decoded.node_statuses() == dict.fromkeys(["a", "b", "d"], NodeStatus.FAILED)


def test_outputs_of_a_loaded_state_are_the_stored_json(tmp_path: Path) -> None:
    store = FlatBuffersStore(tmp_path)
    store.save(big_outputs_state(3))
    document = outputs_document((tmp_path / "wf.fb").read_bytes())
    assert store.load("wf").outputs() == orjson.loads(document)


def test_statuses_decoded_from_a_reused_name_column_are_those_of_the_file() -> None:
    """A codec patches the statuses it decoded last time for a workflow; every decode still gives
    the file's own statuses, and a state's edits never reach the next decode."""
    mine, other = FlatBuffersCodec(), FlatBuffersCodec()
    data = WorkflowData("wf", created_at=1.0)
    for i in range(50):
        data.set_node_status(f"n{i}", NodeStatus.COMPLETED)
    first = bytes(mine.encode(data, version=1, updated_at=1.0))
    loaded = mine.decode(first, "t")
    loaded.set_node_status("n3", NodeStatus.FAILED)  # an edit of the decoded state only
    changed = data.copy()
    changed.set_node_status("n7", NodeStatus.SKIPPED)
    changed.set_node_status("n49", NodeStatus.PENDING)
    second = bytes(other.encode(changed, version=2, updated_at=2.0))
    for raw, expected in ((first, data), (second, changed), (first, data), (first, data), (second, changed)):
        decoded = mine.decode(raw, "t")
        assert decoded.node_statuses() == expected.node_statuses()
        assert list(decoded.node_statuses()) == list(expected.node_statuses())
