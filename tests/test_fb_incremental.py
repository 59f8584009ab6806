"""The FlatBuffers encoder's patched saves: every edit sequence writes what a full encode writes."""

from __future__ import annotations

import contextlib
import zlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flow_workbench import NodeStatus, WorkflowData
from flow_workbench.data import RunRecord
from flow_workbench.stores import _fb_encode, _fb_segments
from flow_workbench.stores import flatbuffers_codec as fb_codec
from flow_workbench.stores._fb_decode import _OurFile
from flow_workbench.stores._fb_layout import _F_CRCS
from flow_workbench.stores._fb_reader import root_table
from flow_workbench.stores.flatbuffers_codec import FlatBuffersCodec

NODES = [f"n{i}" for i in range(12)]
STATUSES = [
    NodeStatus.PENDING,
    NodeStatus.RUNNING,
    NodeStatus.COMPLETED,
    NodeStatus.FAILED,
    NodeStatus.SKIPPED,
]
VALUES = (
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.text(max_size=4)
    | st.lists(st.integers(0, 3), max_size=2)
)
NODE = st.sampled_from([*NODES, "new-a", "", "é\x00"])
TIME = st.floats(1.0, 1e6, allow_nan=False)

EDIT = st.one_of(
    st.tuples(st.just("status"), NODE, st.sampled_from(STATUSES)),
    st.tuples(st.just("output"), NODE, VALUES),
    st.tuples(st.just("clear_output"), NODE),
    st.tuples(st.just("started"), NODE, TIME),
    st.tuples(st.just("finished"), NODE, st.sampled_from(STATUSES), st.none() | st.text(max_size=3)),
    st.tuples(st.just("error"), NODE, st.none() | st.text(max_size=3)),
    st.tuples(st.just("data"), st.sampled_from(["a", "b", "c"]), VALUES),
    st.tuples(st.just("delete"), st.sampled_from(["a", "b"])),
    st.tuples(st.just("remove"), NODE),
    st.tuples(st.just("dag"), st.booleans()),
    st.tuples(st.just("attempt_log"), NODE),
    st.tuples(st.just("code_version"), NODE, st.none() | st.text(max_size=3)),
    st.tuples(st.just("wait"), NODE, st.none() | st.integers(0, 2**40)),
    st.tuples(st.just("audit")),
    st.tuples(st.just("run"), st.integers(0, 3)),
    st.tuples(st.just("int_time"), NODE),
    st.tuples(st.just("engine_start"), NODE, TIME),
    st.tuples(st.just("engine_complete"), NODE, st.booleans(), st.none() | st.text(max_size=3)),
    st.tuples(st.just("statuses"), st.lists(NODE, max_size=3), st.sampled_from(STATUSES)),
    st.tuples(st.just("copy")),
    st.tuples(st.just("reload")),
    st.tuples(st.just("save")),
)


def base_state() -> WorkflowData:
    data = WorkflowData("inc", created_at=10.0)
    for i, node in enumerate(NODES):
        data.record_attempt_started(node, at=100.0 + i)
        data.record_attempt_finished(
            node, STATUSES[i % len(STATUSES)], at=200.0 + i, error="e" if i % 4 else None
        )
        if i % 3:
            data.set_output(node, {"i": i, "s": "x" * i})
    data.set_dag_structure({node: NODES[:i][-1:] for i, node in enumerate(NODES)})
    data.set("a", 1)
    return data


def apply(data: WorkflowData, edit: tuple[Any, ...]) -> None:
    kind, *args = edit
    if kind == "status":
        data.set_node_status(args[0], args[1])
    elif kind == "output":
        data.set_output(args[0], args[1])
    elif kind == "clear_output":
        data.clear_output(args[0])
    elif kind == "started":
        data.record_attempt_started(args[0], at=args[1])
    elif kind == "finished":
        error = args[2]
        data.record_attempt_finished(
            args[0], args[1], at=300.0, error=error, error_type=None if error is None else "E"
        )
    elif kind == "error":
        data.set_node_error(args[0], args[1])
    elif kind == "data":
        data.set(args[0], args[1])
    elif kind == "delete":
        data.delete(args[0])
    elif kind == "remove":
        data.remove_node(args[0])
    elif kind == "dag":
        data.set_dag_structure(None if args[0] else {node: [] for node in data.node_statuses()})
    elif kind == "attempt_log":
        data.open_attempt(args[0], "run-1", 1, at=5.0, host="h", pid=1)
        data.close_attempt(args[0], "completed", at=6.0)
    elif kind == "code_version":
        data.set_code_version(args[0], args[1])
    elif kind == "wait":
        if args[1] is None:
            data.clear_wait(args[0])
        else:
            data.set_wait(args[0], args[1])
    elif kind == "audit":
        data.add_audit("mark", ["n1"], "why")
    elif kind == "run":
        data.put_run(RunRecord(f"run-{args[0]}", 1.0, 2.0, "succeeded"))
    elif kind == "engine_start":
        data.start_attempt(args[0], "run-2", number=2, at=args[1], host="h", pid=2)
    elif kind == "engine_complete":
        data.complete_attempt(args[0], at=400.0, code_version=args[2], keep_output=args[1])
    elif kind == "statuses":
        data.set_node_statuses(dict.fromkeys(args[0], args[1]))
    elif kind == "int_time":
        data.record_attempt_started(args[0], at=7)  # an int time: no longer typed
    else:  # pragma: no cover - the strategy has no other edits
        raise AssertionError(kind)


def assert_blocks_verify(raw: bytes) -> None:
    """Every block checksum of the file matches its bytes, and the blocks tile the body."""
    view = memoryview(raw)
    file = _OurFile(view)
    start = file.body_start
    crcs = root_table(view).vector(_F_CRCS, 4)
    assert crcs[1] == len(file.block_ends)
    for k, end in enumerate(file.block_ends):
        begin = file.block_ends[k - 1] if k else 0
        stored = int.from_bytes(raw[crcs[0] + 4 * k : crcs[0] + 4 * k + 4], "little")
        assert zlib.crc32(view[start + begin : start + end]) == stored


def check_save(codec: FlatBuffersCodec, data: WorkflowData, version: int) -> bytes:
    """``codec`` (which may patch its last output) writes a file that decodes as a fresh codec's
    full encode does, every block verifies, and node_status / summarize read it right."""
    patched = bytes(codec.encode(data, version=version, updated_at=2.0))
    full = bytes(FlatBuffersCodec().encode(data, version=version, updated_at=2.0))
    assert_blocks_verify(patched)
    from_patched = FlatBuffersCodec().decode(patched, "patched")
    assert from_patched == FlatBuffersCodec().decode(full, "full")
    assert from_patched.same_content(data, ignore=("version", "updated_at"))
    for node, status in data.node_statuses().items():
        assert codec.node_status(patched, "patched", node) is status
    assert codec.node_status(patched, "patched", "no-such-node") is None
    assert codec.summarize(patched, "p").status_counts == codec.summarize(full, "f").status_counts
    return patched


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks and blocks of a few entries, so a dozen nodes span several of each."""
    monkeypatch.setattr(_fb_encode, "_DOC_CHUNK", 3)
    monkeypatch.setattr(_fb_encode, "_VALUE_BLOCK", 16)
    monkeypatch.setattr(_fb_segments, "BLOCK_SIZE", 32)


@pytest.mark.usefixtures("small_chunks")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(EDIT, max_size=25))
def test_patched_saves_decode_as_full_encodes(edits: list[tuple[Any, ...]]) -> None:
    codec = FlatBuffersCodec()
    data = base_state()
    last = check_save(codec, data, 1)
    version = 1
    for edit in [*edits, ("save",)]:
        if edit[0] == "save":
            version += 1
            last = check_save(codec, data, version)
        elif edit[0] == "copy":
            data = data.copy()
        elif edit[0] == "reload":
            data = codec.decode(last, "reload")  # the next save reuses the file's blocks
        else:
            with contextlib.suppress(ValueError):  # a writer refusing the name "" (set_node_status)
                apply(data, edit)


def test_a_level_save_patches_the_last_encode(monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine's path (a few nodes re-run, then a save) patches the last output instead of
    encoding every column again, and what it writes is what a full encode writes."""
    calls: list[bool] = []
    patch = _fb_encode._patch

    def counting(*args: Any) -> Any:
        result = patch(*args)
        calls.append(result is not None)
        return result

    monkeypatch.setattr(fb_codec, "_patch", counting)
    codec = FlatBuffersCodec()
    data = base_state()
    check_save(codec, data, 1)
    for level in range(3):
        for node in NODES[level * 2 : level * 2 + 2]:
            data.record_attempt_started(node, at=400.0 + level)
            data.record_attempt_finished(node, NodeStatus.COMPLETED, at=401.0 + level)
            data.set_output(node, {"level": level})
        check_save(codec, data, level + 2)
    assert calls == [True, True, True]


def test_a_loaded_state_is_saved_from_the_blocks_it_was_read_from() -> None:
    """Load, change one status, save: every block but the one holding that status is the
    file's own (bytes and checksum), and the result decodes as a full encode does."""
    codec = FlatBuffersCodec()
    raw = bytes(codec.encode(base_state(), version=1, updated_at=1.0))
    loaded = codec.decode(raw, "t")
    loaded.set_node_status("n3", NodeStatus.SKIPPED)
    saved = bytes(codec.encode(loaded, version=2, updated_at=2.0))
    assert loaded._unsafe_columns().deferred_raw("outputs") is not None  # nothing parsed the outputs
    assert check_save(codec, loaded, 2) == saved
    before, after = _OurFile(memoryview(raw)), _OurFile(memoryview(saved))
    assert before.block_ends == after.block_ends
    old_crcs = root_table(memoryview(raw)).vector(_F_CRCS, 4)
    new_crcs = root_table(memoryview(saved)).vector(_F_CRCS, 4)
    changed = [
        k
        for k in range(len(before.block_ends))
        if raw[old_crcs[0] + 4 * k : old_crcs[0] + 4 * k + 4]
        != saved[new_crcs[0] + 4 * k : new_crcs[0] + 4 * k + 4]
    ]
    assert len(changed) == 1
    assert raw[before.body_start : before.body_end] != saved[after.body_start : after.body_end]


def test_history_columns_are_decoded_on_first_access_and_checked_at_load() -> None:
    codec = FlatBuffersCodec()
    data = base_state()
    raw = bytes(codec.encode(data, version=1, updated_at=1.0))
    loaded = codec.decode(raw, "t")
    columns = loaded._unsafe_columns()
    assert columns.deferred_raw("started_at") is not None
    assert loaded.node_history("n2") == data.node_history("n2")
    assert columns.deferred_raw("started_at") is None
    assert loaded.same_content(data, ignore=("version", "updated_at"))


def test_encoding_leaves_the_state_as_it_was() -> None:
    """Regression (#18): the encoder set ``checked`` on the state it encoded; what it learns is
    now the codec's own (its per-state cache), and the state is not modified."""
    data = base_state()
    columns = data._unsafe_columns()
    columns.checked = False  # e.g. a journal replay that stored an attempt log
    FlatBuffersCodec().encode(data, version=1, updated_at=1.0)
    assert not data._unsafe_columns().checked


def test_two_states_saved_in_turn_do_not_check_their_dags_again() -> None:
    """Regression: the check of an unchanged DAG was skipped only for the DAG checked last, so
    two states saved in turn (a state and its copy, two stores) checked both DAGs at every save
    (~5-30 ms each at 100k nodes)."""
    from flow_workbench import validation

    first, second = base_state(), base_state()
    for data in (first, second):
        validation.check_columns(data._unsafe_columns())
    kept = validation._LastDag.checked
    assert any(dag is first._unsafe_columns().dag for dag in kept)
    assert any(dag is second._unsafe_columns().dag for dag in kept)


#: WorkflowData methods that write the columns without a change-log entry, and why that is right.
UNLOGGED_WRITERS = {
    "__init__": "a new state: no encoder has an output of it",
    "__setstate__": "a new state (unpickled): a new change log",
    "from_columns": "a new state (decoded): a new change log",
    "copy": "a new state: a new change log",
    "set_dag_structure": "the DAG document is compared by identity and content, never patched",
    "version": "a header field, written by every save",
    "updated_at": "a header field, written by every save",
    "set_rolling_back": "a header field, written by every save",
    "set_trigger_cause": "a header field, written by every save",
}
#: Methods that only read the columns (their writes go to local copies).
READERS = {"__repr__", "differences", "history"}


def test_every_writer_of_the_columns_logs_its_change() -> None:
    """A writer that forgets ``self.changes`` makes patched saves miss its change: every method of
    WorkflowData that writes a column either logs it or is listed above with its reason."""
    import ast
    import inspect
    import textwrap

    from flow_workbench import data as data_module

    source = textwrap.dedent(inspect.getsource(data_module.WorkflowData))
    writes = (".pop(", ".update(", ".append(", ".clear(", "] = ", ".setdefault(", " = value", "_put(")
    silent = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef):
            continue
        body = ast.get_source_segment(source, node) or ""
        touches_columns = "self._c" in body or "c = self._c" in body
        if touches_columns and any(w in body for w in writes) and "changes." not in body:
            silent.append(node.name)
    unexpected = sorted(set(silent) - set(UNLOGGED_WRITERS) - READERS)
    assert not unexpected, f"WorkflowData writers without a change-log entry: {unexpected}"
