"""Issue #13: state files crafted by someone else never hang, explode or crash a reader.

Classes: FlatBuffers entries sharing offsets (decode once, bounded decoded size), times no
display can show (kept in the state, unknown in summaries), wrong value types (one validation
for every decoder and encoder), duplicate keys in our JSON files (corrupt).
"""

from __future__ import annotations

import contextlib
import io
import math
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flow_workbench.artifacts import OUTPUT_MARKER, ArtifactRef
from flow_workbench.cli import main as cli_main
from flow_workbench.data import StateColumns, WorkflowData, plain_outputs
from flow_workbench.errors import (
    CorruptStateError,
    SerializationError,
    StoreError,
    UnknownOutputTypeError,
)
from flow_workbench.recovery import mark_nodes
from flow_workbench.status import STATUSES_BY_CODE, NodeStatus
from flow_workbench.stores._fb_go import decode_output
from flow_workbench.stores._fb_layout import _F_DAG, _F_DATA, _F_ERROR_TYPES, _F_ERRORS, _F_OUTPUTS, _F_WAITS
from flow_workbench.stores._fb_reader import MAX_FILE_BYTES, root_table
from flow_workbench.stores.base import StateFormat, WorkflowSummary
from flow_workbench.stores.files import FileStore
from flow_workbench.stores.flatbuffers import FlatBuffersStore
from flow_workbench.stores.flatbuffers_codec import FlatBuffersCodec
from flow_workbench.stores.folder import scan_folder
from flow_workbench.stores.json_codec import JSONCodec
from flow_workbench.stores.json_file import JSONFileStore
from flow_workbench.testing import rich_state
from flow_workbench.validation import TIME_MAX, TIME_MIN
from tests.helpers.hostile import (
    JSON_EXTENSION,
    append_journal_record,
    data_sharing_one_string,
    forged_native,
    go_fb_with_timestamp,
    go_json,
    ours_json,
    ours_json_document,
    ours_json_with_update_time,
    outputs_sharing_one_string,
    reseal_json,
    reseal_native,
    statuses_sharing_one_table,
)
from tests.helpers.paths import GOLDEN_GO
from tests.helpers.stores import IMPLEMENTATIONS

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


def run_cli(*args: str) -> tuple[int, str, str]:
    """The CLI with ``--debug``: an internal error raises instead of being printed."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main([*args, "--debug"])
    return code, out.getvalue(), err.getvalue()


def stores(folder: Path) -> dict[str, FileStore]:
    return {
        "json": JSONFileStore(folder),
        "flatbuffers": FlatBuffersStore(folder),
        "flatbuffers-go": FlatBuffersStore(folder, layout="go"),
    }


def place(folder: Path, name: str, raw: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(raw)
    return path


# --- 1. shared offsets: decode once, bounded decoded size ----------------------------------------------


SHARED_OFFSET_FILES: dict[str, Callable[[], bytes]] = {
    # 2,000 outputs of one 200 kB string: a 0.2 MB file that decodes to 400 MB without a bound.
    "outputs": lambda: outputs_sharing_one_string(2_000, 200_000),
    # 100,000 status entries pointing at one table whose name is 100 kB: 10 GB of names.
    "statuses": lambda: statuses_sharing_one_table(100_000, 100_000),
    "data": lambda: data_sharing_one_string(2_000, 200_000),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", sorted(SHARED_OFFSET_FILES))
def test_go_entries_sharing_one_offset_are_refused_past_the_decode_bound(kind: str, tmp_path: Path) -> None:
    """Regression: the Go reader decoded a shared string once per entry, so a 46 MB file made
    ``ls`` run for hours and a 21 MB one took 0.9 GB. Every reader now stops at the bound (4x the
    file, at least 1 MiB, at most 64 MiB) with a ``CorruptStateError`` naming the file and bound."""
    raw = SHARED_OFFSET_FILES[kind]()
    assert len(raw) < 1_000_000
    path = place(tmp_path / "states", "wf.fb", raw)
    store = FlatBuffersStore(path.parent)
    bound = min(max(4 * len(raw), 1 << 20), MAX_FILE_BYTES)
    for read in (lambda: store.load("wf"), lambda: store.summary("wf")):
        with pytest.raises(CorruptStateError, match=f"decoded data exceeds {bound} bytes") as info:
            read()
        assert info.value.source == str(path)
        assert str(MAX_FILE_BYTES) in info.value.reason
    if kind == "statuses":  # node_status reads the status entries, and stops there too
        with pytest.raises(CorruptStateError, match="decoded data exceeds"):
            store.node_status("wf", "n")
    else:
        assert store.node_status("wf", "n0") in (None, NodeStatus.COMPLETED)
    [entry] = scan_folder(path.parent)
    assert entry.error_type == "CorruptStateError" and "decoded data exceeds" in (entry.error or "")
    code, out, _ = run_cli("validate", str(path.parent))
    assert code == 1 and "decoded data exceeds" in out
    code, _, err = run_cli("ls", str(path.parent))
    assert code in (0, 1) and "internal error" not in err


def test_entries_sharing_one_table_are_decoded_once(tmp_path: Path) -> None:
    """100,000 references to one small status table: one table opened, one string decoded, one
    node; the reader's counter of decoded bytes charges every reference."""
    raw = statuses_sharing_one_table(100_000, 3)
    root = root_table(memoryview(raw))
    tables = root.tables(5)
    assert len(tables) == 100_000 and len({id(table) for table in tables}) == 1
    assert {table.string(0) for table in tables} == {"nnn"}
    assert len(root.budget.strings) == 1 and root.budget.used == 3 * 100_000
    path = place(tmp_path, "wf.fb", raw)
    assert FlatBuffersStore(tmp_path).load("wf").node_statuses() == {"nnn": NodeStatus.FAILED}
    assert FlatBuffersStore(tmp_path).summary("wf").failed_nodes == ("nnn",)
    assert path.exists()


def test_shared_output_strings_below_the_bound_are_parsed_once() -> None:
    raw = outputs_sharing_one_string(50, 2_000)  # 100 kB decoded: under the 1 MiB floor
    data = FlatBuffersCodec().decode(raw, "t")
    with data.read_columns() as columns:
        assert len(columns.outputs) == 50 and len({id(value) for value in columns.outputs.values()}) == 1
    assert data.get_output("n7") == "x" * 2_000


def test_our_layout_with_fields_sharing_one_document_is_refused() -> None:
    """Our FlatBuffers layout: a forged header pointing every JSON field at one 1 MB document."""
    data = WorkflowData("wf", created_at=1.0)
    data.set("big", "d" * 1_000_000)
    data.set_node_status("a", NodeStatus.FAILED)
    data.set_output("a", 1)
    data.set_node_error("a", "boom", "E")
    data._unsafe_columns().waits["a"] = 1
    data.set_dag_structure({"a": []})
    raw = bytearray(FlatBuffersCodec().encode(data, version=1, updated_at=1.0))
    root = root_table(memoryview(raw))
    target = root.target(_F_DATA)
    for field in (
        _F_OUTPUTS,
        _F_ERRORS,
        _F_ERROR_TYPES,
        _F_WAITS,
        _F_DAG,
    ):
        at = root.field(field, 4)
        struct.pack_into("<I", raw, at, target - at)
    with pytest.raises(CorruptStateError, match="decoded data exceeds"):
        FlatBuffersCodec().decode(reseal_native(raw), "forged")


@pytest.mark.parametrize("layout", ["native", "go"])
def test_files_of_every_writer_stay_within_their_decode_bound(layout: str, tmp_path: Path) -> None:
    """No false alarm: golden Go files, and large states written in either layout, load."""
    for golden in sorted(GOLDEN_GO.glob("*.fb")):
        FlatBuffersCodec().decode(golden.read_bytes(), golden.name)
    data = WorkflowData("big", created_at=1.0)
    for i in range(5_000):
        data.set_node_status(f"node-{i}", NodeStatus.COMPLETED)
        data.set_output(f"node-{i}", f"s3://bucket/part-{i}" * 20)
        data.set(f"key-{i}", "v" * 50)
    store = FlatBuffersStore(tmp_path, layout=layout)
    store.save(data)
    assert store.load("big").outputs() == data.outputs()


# --- 2. times no display can show --------------------------------------------------------------------


OUT_OF_RANGE_TIMES: dict[str, tuple[str, Callable[[], bytes]]] = {
    "go-json-1e300": ("wf.json", lambda: go_json(__timestamp=1e300)),
    "go-json-minus-1e300": ("wf.json", lambda: go_json(__timestamp=-1e300)),
    "go-json-uint64": ("wf.json", lambda: go_json(__timestamp=(1 << 64) - 1)),
    "ours-json-1e300": ("wf.json", lambda: ours_json_with_update_time(1e300)),
    "ours-fb-1e300": (
        "wf.fb",
        lambda: bytes(FlatBuffersCodec().encode(rich_state("wf"), version=1, updated_at=1e300)),
    ),
    "go-fb-int64-max-ms": ("wf.fb", lambda: go_fb_with_timestamp(INT64_MAX)),
    "go-fb-int64-min-ms": ("wf.fb", lambda: go_fb_with_timestamp(INT64_MIN)),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", sorted(OUT_OF_RANGE_TIMES))
def test_times_no_display_can_show_are_kept_and_summarised_as_unknown(case: str, tmp_path: Path) -> None:
    """Regression: one file with ``"__timestamp": 1e300`` (or ``updated_at=1e300`` in ours) made
    ``ls`` print "internal error: OverflowError" and ``workflows_frame`` raise. The state keeps the
    time; summaries, folder rows and tables show it as unknown (None)."""
    name, make = OUT_OF_RANGE_TIMES[case]
    path = place(tmp_path / "states", name, make())
    store = JSONFileStore(path.parent) if name.endswith(".json") else FlatBuffersStore(path.parent)
    loaded = store.load("wf")
    assert not TIME_MIN <= loaded.updated_at <= TIME_MAX  # kept as stored
    assert store.summary("wf").updated_at is None
    [entry] = scan_folder(path.parent)
    assert entry.ok and entry.summary is not None and entry.summary.updated_at is None
    code, _, err = run_cli("ls", str(path.parent))
    assert code == 0, err
    pytest.importorskip("pandas")
    from flow_workbench.notebook.tables import workflows_frame

    assert len(workflows_frame(path.parent)) == 1


def test_workflow_summary_times_are_finite_and_showable_or_none() -> None:
    def updated(value: Any) -> float | None:
        return WorkflowSummary("wf", StateFormat.JSON, 0, updated_at=value).updated_at

    assert updated(1_700_000_000.5) == 1_700_000_000.5
    assert updated(1_700_000_000) == 1_700_000_000.0
    for unshowable in (1e300, -1e300, math.inf, -math.inf, math.nan, 1 << 70, TIME_MAX * 2, None):
        assert updated(unshowable) is None


@pytest.mark.parametrize("wait", [INT64_MIN, INT64_MAX])
def test_waits_keep_any_int64_through_every_store(wait: int, tmp_path: Path) -> None:
    """Go accepts any int64 timer (unix ns): kept exactly by every store, summaries unaffected."""
    place(tmp_path / "go", "wf.json", go_json(waits={"a": wait}))
    loaded = JSONFileStore(tmp_path / "go").load("wf")
    assert loaded.waits == {"a": wait}
    for kind, store in stores(tmp_path / "out").items():
        copy = loaded.copy()
        copy.version = 0
        path = Path(store.path_of("wf"))
        if path.exists():
            path.unlink()
        store.save(copy)
        assert store.load("wf").waits == {"a": wait}, kind
        assert store.summary("wf").node_count == 1


@pytest.mark.parametrize("wait", [INT64_MAX + 1, (1 << 64) - 1])
def test_waits_beyond_int64_are_corrupt_as_in_go(wait: int, tmp_path: Path) -> None:
    path = place(tmp_path, "wf.json", go_json(waits={"a": wait}))
    with pytest.raises(CorruptStateError, match="wait of node 'a'") as info:
        JSONFileStore(tmp_path).load("wf")
    assert info.value.source == str(path)


@pytest.mark.parametrize("field", ["updated_at", "created_at", "started_at"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_times_in_our_flatbuffers_are_corrupt(field: str, value: float, tmp_path: Path) -> None:
    """A time JSON cannot hold (NaN, infinity) in a FlatBuffers file: refused by load and by
    summary alike, never carried into a JSON save that would write ``null``."""
    data = rich_state("wf")
    columns = data._unsafe_columns()
    updated_at = 1.0
    if field == "updated_at":
        updated_at = value
    elif field == "created_at":
        columns.created_at = value
    else:
        columns.started_at["node_0"] = value
    place(tmp_path, "wf.fb", forged_native(columns, updated_at=updated_at))
    store = FlatBuffersStore(tmp_path)
    with pytest.raises(CorruptStateError, match=field):
        store.load("wf")
    if field == "updated_at":
        with pytest.raises(CorruptStateError, match=field):
            store.summary("wf")


# --- 3. one validation for every decoder and encoder ---------------------------------------------------

#: (column, node, hostile value, what the error names) of values a decoder once let through.
WRONG_TYPES = [
    ("started_at", "node_0", "yesterday", "started_at of node 'node_0'"),
    ("finished_at", "node_1", [1.0], "finished_at of node 'node_1'"),
    ("errors", "failing", {"message": "boom"}, "error of node 'failing'"),
    ("error_types", "failing", 7, "error_type of node 'failing'"),
    ("attempts", "node_0", True, "attempts of node 'node_0'"),
    ("attempts", "node_0", -1, "attempts of node 'node_0'"),
    ("dag", "waiting", [1, 2], "dag dependencies of node 'waiting'"),
    ("dag", "waiting", "failing", "dag dependencies of node 'waiting'"),
]


def hostile_columns(column: str, node: str, value: Any) -> StateColumns:
    columns = rich_state("wf")._unsafe_columns()
    target = columns.dag if column == "dag" else getattr(columns, column)
    assert target is not None
    target[node] = value
    columns.checked = False
    return columns


@pytest.mark.parametrize(("column", "node", "value", "named"), WRONG_TYPES)
def test_every_decoder_refuses_the_same_wrong_types(
    column: str, node: str, value: Any, named: str, tmp_path: Path
) -> None:
    """Regression: journal records and our FlatBuffers columns accepted a string start time, a
    dict error, DAG dependencies that are not names, which the JSON decoder refused; ``show``,
    ``dot`` and ``reset-failed`` then failed with TypeError while ``validate`` said ok."""
    columns = hostile_columns(column, node, value)
    # our JSON layout (the document written as it is, checksum recomputed)
    document = ours_json_document()
    document[JSON_EXTENSION][column] = getattr(columns, column)
    place(tmp_path / "json", "wf.json", ours_json(document))
    # our FlatBuffers layout
    place(tmp_path / "fb", "wf.fb", forged_native(columns))
    for store in (JSONFileStore(tmp_path / "json"), FlatBuffersStore(tmp_path / "fb")):
        with pytest.raises(CorruptStateError, match=named):
            store.load("wf")
        code, out, _ = run_cli("validate", str(store.base_dir))
        assert code == 1 and named in out
    if column == "dag":
        return  # journal and Redis records carry no DAG
    # a journal record with the value, framed as the writer frames records
    store = JSONFileStore(tmp_path / "journal")
    data = rich_state("wf")
    store.save(data)
    data.set_output("node_0", "journaled")
    store.save_node(data, "node_0")
    record = data.node_record(node).to_json()
    record[{"errors": "error", "error_types": "error_type"}.get(column, column)] = value
    append_journal_record(tmp_path / "journal", record)
    with pytest.raises(CorruptStateError, match=named):
        JSONFileStore(tmp_path / "journal").load("wf")


@pytest.mark.parametrize(("column", "node", "value", "named"), [w for w in WRONG_TYPES if w[0] != "dag"])
def test_an_acknowledged_mark_never_writes_a_file_the_store_refuses(
    column: str, node: str, value: Any, named: str, tmp_path: Path
) -> None:
    """Regression: a journal record with a string start time (or a dict error...) was replayed
    as it was; ``mark`` then saved it into a snapshot that ``load`` refused ever after. Now the
    load under ``mark`` refuses the record, and nothing is written."""
    store = JSONFileStore(tmp_path)
    data = rich_state("wf")
    store.save(data)
    data.set_output("node_0", "journaled")
    store.save_node(data, "node_0")
    record = data.node_record(node).to_json()
    record[{"errors": "error", "error_types": "error_type"}.get(column, column)] = value
    append_journal_record(tmp_path, record)
    try:
        mark_nodes(JSONFileStore(tmp_path), "wf", ["waiting"], NodeStatus.COMPLETED)
    except CorruptStateError as error:
        assert named in error.reason
    with pytest.raises(CorruptStateError, match=named):
        JSONFileStore(tmp_path).load("wf")  # still the forged journal, not a poisoned snapshot
    assert b'"waiting":"completed"' not in (tmp_path / "wf.json").read_bytes()


@pytest.mark.parametrize(("column", "node", "value", "named"), [w for w in WRONG_TYPES if w[0] != "dag"])
def test_redis_records_are_checked_like_every_decoder(
    column: str, node: str, value: Any, named: str, tmp_path: Path
) -> None:
    store = IMPLEMENTATIONS["redis"](tmp_path)
    try:
        data = rich_state("wf")
        store.save(data)
        record = data.node_record(node).to_json()
        record[{"errors": "error", "error_types": "error_type"}.get(column, column)] = value
        store.client.hset(store._key("nodes", "wf"), node, orjson.dumps(record))  # type: ignore[attr-defined]
        with pytest.raises(CorruptStateError, match=named):
            store.load("wf")
    finally:
        store.close()


@pytest.mark.parametrize(("column", "node", "value", "named"), WRONG_TYPES)
@pytest.mark.parametrize("kind", ["json", "flatbuffers", "flatbuffers-go"])
def test_a_save_never_writes_what_a_load_refuses(
    kind: str, column: str, node: str, value: Any, named: str, tmp_path: Path
) -> None:
    """Values put into a state by hand (columns, set_node_error) that a load would refuse: the
    save raises ``SerializationError`` naming them, the stored state stays loadable."""
    store = stores(tmp_path)[kind]
    store.save(rich_state("wf"))
    before = store.load("wf")
    columns = hostile_columns(column, node, value)
    columns.version = before.version  # the stored version (a Go file's: its content token)
    data = WorkflowData.from_columns(columns)
    with pytest.raises(SerializationError, match=named.split(" of ")[0]):
        store.save(data)
    with pytest.raises(SerializationError):
        if column != "dag":
            store.save_node(data, node)
        else:
            store.save(data)
    assert store.load("wf") == before


@pytest.mark.parametrize("kind", ["json", "flatbuffers", "flatbuffers-go"])
def test_non_finite_creation_time_is_refused_on_save(kind: str, tmp_path: Path) -> None:
    """Regression: ``WorkflowData(created_at=inf)`` saved to JSON wrote ``null`` and never loaded."""
    store = stores(tmp_path)[kind]
    with pytest.raises(SerializationError, match="created_at"):
        store.save(WorkflowData("wf", created_at=math.inf))
    assert not store.exists("wf")


def test_set_node_error_with_a_non_string_is_refused_by_save_node(tmp_path: Path) -> None:
    store = JSONFileStore(tmp_path)
    data = rich_state("wf")
    store.save(data)
    data.set_node_error("failing", {"not": "a string"})  # type: ignore[arg-type]
    with pytest.raises(SerializationError, match="error of node 'failing'"):
        store.save_node(data, "failing")
    assert store.load("wf").node_history("failing").error == "boom: ünïcode"


# --- property: anything a load accepts survives save + load ------------------------------------------

NAMES = st.text(max_size=6) | st.sampled_from(["", "\x00", "\x1b[31m", "\u202e", "a\x00b", "节点", "𝄞"])
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(INT64_MIN, (1 << 64) - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
#: Outputs holding the reserved key of artifact references and escaped dicts (flow_workbench/
#: artifacts.py): escaped values, references whose artifact no store has, and damaged markers.
MARKED_OUTPUTS = (
    st.fixed_dictionaries({OUTPUT_MARKER: st.just("escaped"), "value": JSON_VALUES})
    | st.builds(
        lambda digest, size, kind: ArtifactRef(kind, digest, size, shape=(size,)).to_json(),
        st.text("0123456789abcdef", min_size=32, max_size=32),
        st.integers(0, 1 << 40),
        st.sampled_from(["pandas.DataFrame", "numpy.ndarray", "tests.Unknown"]),
    )
    | st.dictionaries(st.text(max_size=4), JSON_VALUES, max_size=2).flatmap(
        lambda extra: st.sampled_from(["artifact", "escaped", "bogus", 1, None]).map(
            lambda marker: {**extra, OUTPUT_MARKER: marker}
        )
    )
)
STATUS_TEXT = st.sampled_from([s.value for s in NodeStatus] + ["bogus", ""])
TIMES = st.integers(-(10**15), 10**19) | st.floats(allow_nan=False, allow_infinity=False)

GO_DOCUMENTS = st.fixed_dictionaries(
    {
        "id": st.just("wf"),
        "data": st.dictionaries(NAMES, JSON_VALUES, max_size=4),
        "nodeStatus": st.dictionaries(NAMES, STATUS_TEXT, max_size=5),
        "outputs": st.dictionaries(NAMES, JSON_VALUES | MARKED_OUTPUTS, max_size=4),
    },
    optional={
        "waits": st.dictionaries(NAMES, st.integers(INT64_MIN, INT64_MAX), max_size=3),
        "__timestamp": TIMES,
        "rolling_back": st.booleans(),
        "trigger_cause": st.integers(0, 255),
    },
)


@st.composite
def our_documents(draw: st.DrawFn) -> dict[str, Any]:
    """Documents of our JSON layout with hostile-looking but valid values in every field."""
    document: dict[str, Any] = {JSON_EXTENSION: {}, **draw(GO_DOCUMENTS)}
    nodes = list(document["nodeStatus"])
    document["nodeStatus"] = {n: draw(st.sampled_from([s.value for s in NodeStatus])) for n in nodes}
    node = st.sampled_from(nodes) if nodes else NAMES
    document[JSON_EXTENSION] = {
        "checksum": "00000000",
        "format": 1,
        "version": draw(st.integers(0, INT64_MAX)),
        "created_at": draw(TIMES),
        "updated_at": draw(TIMES),
        "attempts": draw(st.dictionaries(node, st.integers(0, INT64_MAX), max_size=3)),
        "started_at": draw(st.dictionaries(node, TIMES, max_size=3)),
        "finished_at": draw(st.dictionaries(node, TIMES, max_size=3)),
        "errors": draw(st.dictionaries(node, st.text(max_size=8), max_size=3)),
        "error_types": draw(st.dictionaries(node, st.text(max_size=8), max_size=3)),
        "dag": draw(st.none() | st.dictionaries(node, st.lists(NAMES, max_size=3), max_size=3)),
        "audit": draw(
            st.lists(
                st.fixed_dictionaries(
                    {
                        "action": st.text(max_size=6),
                        "nodes": st.lists(NAMES, max_size=2),
                        "at": TIMES,
                        "detail": st.text(max_size=6),
                    }
                ),
                max_size=2,
            )
        ),
    }
    document.pop("__timestamp", None)
    document["__timestamp"] = 5
    return document


def stored_outputs(data: WorkflowData) -> dict[str, Any]:
    """Outputs as stored: artifact references and escaped dicts as their JSON objects."""
    with data.read_columns() as columns:
        return plain_outputs(dict(columns.outputs))


def assert_outputs_read_or_are_corrupt(data: WorkflowData) -> None:
    """Every output reads back, or (a reference without its artifact, a damaged marker) raises
    ``CorruptStateError`` on access; ``UnknownOutputTypeError`` for a kind nobody registered."""
    for node in stored_outputs(data):
        with contextlib.suppress(CorruptStateError, UnknownOutputTypeError):
            data.get_output(node)


def representable_in_go_layout(data: WorkflowData) -> bool:
    return all(not isinstance(v, int) or INT64_MIN <= v <= INT64_MAX for _, v in data.items())


def assert_survives_every_store(loaded: WorkflowData, tmp_path: Path) -> None:
    for kind, store in stores(tmp_path).items():
        path = Path(store.path_of("wf"))
        if path.exists():
            path.unlink()
        copy = loaded.copy()
        copy.version = 0
        if kind == "flatbuffers" and loaded.unknown_statuses():
            with pytest.raises(SerializationError):  # no byte for an unknown status text
                store.save(copy)
            continue
        if kind == "flatbuffers-go":
            if not representable_in_go_layout(loaded):
                with pytest.raises(SerializationError):
                    store.save(copy)
                continue
            store.save(copy)
            back = store.load("wf")
            # As Go writes them: an unknown status as pending, a str output verbatim (so one
            # whose text is JSON reads back as that JSON value).
            assert back.node_statuses() == {
                node: NodeStatus.PENDING if status is NodeStatus.UNKNOWN else status
                for node, status in loaded.node_statuses().items()
            }
            assert stored_outputs(back) == {
                node: decode_output(value) if isinstance(value, str) else value
                for node, value in stored_outputs(loaded).items()
            }
            assert (back.waits, back.rolling_back, back.trigger_cause) == (
                loaded.waits,
                loaded.rolling_back,
                loaded.trigger_cause,
            )
            scalars = {
                k: v for k, v in loaded.items() if v is None or isinstance(v, bool | int | float | str)
            }
            assert {k: v for k, v in back.items() if k in scalars and scalars[k] is not None} == {
                k: v for k, v in scalars.items() if v is not None
            }
            continue
        store.save(copy)
        back = store.load("wf")
        assert back.differences(loaded, ignore=("version", "updated_at")) == [], kind
        assert store.summary("wf").node_count == len(loaded.node_statuses())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=GO_DOCUMENTS | our_documents())
def test_anything_a_load_accepts_survives_save_and_load(
    document: dict[str, Any], tmp_path_factory: Any
) -> None:
    """Go JSON and our JSON documents with control characters, bidi overrides, empty and NUL
    names, int64 extremes, huge and tiny floats and times, outputs holding the artifact marker
    key: whatever ``load`` accepts saves and loads back equal in the JSON store and our
    FlatBuffers store, and (what it can hold) in the Go FlatBuffers layout; ``save`` never
    writes a file its own ``load`` refuses; an output that is a reference without its artifact
    (or a damaged marker) loads, and is a ``CorruptStateError`` only when it is read."""
    folder = tmp_path_factory.mktemp("prop")
    raw = ours_json(document) if JSON_EXTENSION in document else orjson.dumps(document)
    place(folder / "in", "wf.json", raw)
    try:
        loaded = JSONFileStore(folder / "in").load("wf")
    except CorruptStateError:
        return
    assert_outputs_read_or_are_corrupt(loaded)
    assert_survives_every_store(loaded, folder / "out")


EDITS = st.lists(
    st.tuples(
        st.sampled_from(["status", "mark", "error", "output", "attempt", "save_node"]),
        NAMES,
        st.sampled_from(STATUSES_BY_CODE),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=EDITS, kind=st.sampled_from(["json", "flatbuffers", "flatbuffers-go"]))
def test_acknowledged_edits_always_load_back(
    edits: list[tuple[str, str, NodeStatus]], kind: str, tmp_path_factory: Any
) -> None:
    """``set_node_status``, ``mark_nodes``, errors, outputs and attempts with hostile node names:
    every edit a store acknowledges (no exception) leaves a file the store loads."""
    folder = tmp_path_factory.mktemp("edits")
    store = stores(folder)[kind]
    data = rich_state("wf")
    store.save(data)
    for action, node, status in edits:
        acknowledged = False
        with contextlib.suppress(ValueError, LookupError, StoreError, TypeError):
            if action == "mark":
                mark_nodes(store, "wf", [node], NodeStatus.SKIPPED)
                data = store.load("wf")
                continue
            if action == "status":
                data.set_node_status(node, status)
            elif action == "error":
                data.set_node_error(node, f"error \x1b[2J of {node}", "E\u202e")
            elif action == "output":
                data.set_output(node, {"k": node, "n": INT64_MIN})
            elif action == "attempt":
                data.record_attempt_started(node, at=1e300)
                data.record_attempt_finished(node, status, at=-1e300)
            if action == "save_node" and data.get_node_status(node) is not None:
                store.save_node(data, node)
            else:
                store.save(data)
            acknowledged = True
        loaded = store.load("wf")  # never a CorruptStateError
        if acknowledged:
            assert loaded.node_statuses() == data.node_statuses()


# --- 4. duplicate keys -------------------------------------------------------------------------------


def with_duplicate(raw: bytes, after: bytes, duplicate: bytes) -> bytes:
    """Insert ``duplicate`` (a ``"key":value,`` pair) right after the first ``after`` in ``raw``."""
    at = raw.index(after) + len(after)
    return reseal_json(raw[:at] + duplicate + raw[at:])


def our_json_raw() -> bytes:
    data = rich_state("wf")
    data.set("note", 'colon: here, quote " and brace {')
    return bytes(JSONCodec().encode(data, version=3, updated_at=5.0))


DUPLICATES = {
    # the issue's case: the header's version says 3, orjson's last one 9
    "version": (b'"version":3,', b'"version":9,'),
    "id": (b'"id":"wf",', b'"id":"other",'),
    "node status": (b'"nodeStatus":{', b'"node_0":"failed",'),
    "data key": (b'"data":{', b'"text":"shadowed",'),
    "nested in an output": (b'"rows":0,', b'"rows":1,'),
    "updated_at": (b'"updated_at":5.0,', b'"updated_at":6.0,'),
}


@pytest.mark.parametrize("where", sorted(DUPLICATES))
@pytest.mark.parametrize("escaped_colon", [False, True])
def test_duplicate_keys_in_our_json_files_are_corrupt(
    where: str, escaped_colon: bool, tmp_path: Path
) -> None:
    """Regression: a file of ours with a second ``"version"`` key and a valid checksum passed
    ``validate`` (orjson keeps the last key) but could never be saved again (the version check
    reads the first). A repeated key anywhere in our files is corruption, for every reader."""
    raw = our_json_raw()
    if escaped_colon:  # a colon written as \\u003a takes the exact (slower) duplicate check
        raw = raw.replace(b"colon: here", b"colon\\u003a here")
    after, duplicate = DUPLICATES[where]
    path = place(tmp_path, "wf.json", with_duplicate(raw, after, duplicate))
    store = JSONFileStore(tmp_path)
    for read in (
        lambda: store.load("wf"),
        lambda: store.summary("wf"),
        lambda: store.node_status("wf", "node_0"),
    ):
        with pytest.raises(CorruptStateError, match="duplicate key") as info:
            read()
        assert info.value.source == str(path)
    code, out, _ = run_cli("validate", str(tmp_path))
    assert code == 1 and "duplicate key" in out


def test_escaped_colons_without_duplicates_load(tmp_path: Path) -> None:
    raw = our_json_raw().replace(b"colon: here", b"colon\\u003a here")
    place(tmp_path, "wf.json", reseal_json(raw))
    assert JSONFileStore(tmp_path).load("wf").get("note") == 'colon: here, quote " and brace {'


def test_go_json_duplicate_keys_read_the_last_one_everywhere(tmp_path: Path) -> None:
    """Go's encoding/json keeps the last of repeated keys: every reader of a Go file does too,
    so the id check, the summary and the decoder agree (and the file stays readable)."""
    raw = (
        b'{"id":"other","nodeStatus":{"a":"failed","a":"completed"},'
        b'"id":"wf","__timestamp":1,"__timestamp":2000}'
    )
    place(tmp_path, "wf.json", raw)
    store = JSONFileStore(tmp_path)
    loaded = store.load("wf")
    summary = store.summary("wf")
    assert (loaded.id, summary.workflow_id) == ("wf", "wf")
    assert loaded.node_statuses() == {"a": NodeStatus.COMPLETED}
    assert summary.status_counts == {"completed": 1} and store.node_status("wf", "a") is NodeStatus.COMPLETED
    assert loaded.updated_at == summary.updated_at == 2.0
