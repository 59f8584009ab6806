"""Tests of FlatBuffersCodec: exact round trips, cheap reads, corruption handling, encode errors."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flow_workbench.data import AuditEntry, StateColumns, WorkflowData
from flow_workbench.errors import CorruptStateError, SerializationError
from flow_workbench.status import STATUS_CODES, STATUSES_BY_CODE, NodeStatus
from flow_workbench.stores import _fb_reader
from flow_workbench.stores._fb_decode import _OurFile
from flow_workbench.stores._fb_summary import _FEW_FAILED, _SMALL_NODE_COUNT, _status_tally
from flow_workbench.stores.base import StateFormat, summary_from_data
from flow_workbench.stores.flatbuffers_codec import IDENTIFIER, FlatBuffersCodec
from tests.helpers.hostile import reseal_native

INT64_MAX = (1 << 63) - 1

JSON_VALUES: list[Any] = [
    "",
    "plain",
    "unicodé ✓ 𝄞 \x00 inside",
    0,
    1,
    -1,
    INT64_MAX,
    -INT64_MAX,
    -(1 << 63),
    9007199254740993,
    0.0,
    -0.0,
    1.0,
    3.141592653589793,
    1e308,
    5e-324,
    True,
    False,
    None,
    [],
    {},
    [1, 2.5, "x", None, True, [[]], {"k": [{}]}],
    {"nested": {"deeper": [1, {"n": None}], "b": False}, "": "empty key"},
]


def full_state() -> WorkflowData:
    data = WorkflowData("wf-full", created_at=1_700_000_000.25)
    for i, value in enumerate(JSON_VALUES):
        data.set(f"key{i}", value)
    statuses = list(STATUSES_BY_CODE)  # every status this layout can hold
    for i in range(30):
        data.set_node_status(f"node-{(i * 7) % 30}", statuses[i % len(statuses)])
    data.set_node_status("ünïcode-节点", NodeStatus.COMPLETED)
    data.set_output("node-1", {"rows": 3, "ok": True})
    data.set_output("node-2", "a string output")
    data.set_output("node-3", None)
    data.set_output("not-a-status-node", [1, 2, 3])
    data.set_output("node-4", "x" * 200_000)
    data.record_attempt_started("node-5", at=10.0)
    data.record_attempt_finished("node-5", NodeStatus.FAILED, at=12.5, error="boom", error_type="ValueError")
    data.record_attempt_started("node-6", at=11.0)
    data.set_dag_structure({"node-5": [], "node-6": ["node-5"], "node-7": ["node-5", "node-6"]})
    data.add_audit("reset", ["node-5", "node-6"], "manual retry")
    data.add_audit("skip", [], "")
    col = data._unsafe_columns()
    col.waits["node-8"] = 1893456000000
    col.rolling_back = True
    col.trigger_cause = 2
    return data


def roundtrip(data: WorkflowData, codec: FlatBuffersCodec | None = None) -> WorkflowData:
    codec = codec or FlatBuffersCodec()
    return codec.decode(codec.encode(data, version=data.version, updated_at=data.updated_at), "test")


@functools.cache
def small_file() -> bytes:
    data = WorkflowData("small", created_at=1.0)
    data.set("k", {"v": [1, 2]})
    for i, status in enumerate(STATUSES_BY_CODE):
        data.set_node_status(f"n{i}", status)
    data.set_output("n1", "out")
    data.record_attempt_started("n2", at=1.0)
    data.set_dag_structure({"n1": [], "n2": ["n1"]})
    data._unsafe_columns().audit.append(AuditEntry("reset", ("n1",), at=5.0))
    return bytes(FlatBuffersCodec().encode(data, version=3, updated_at=2.0))


# --- round trips -------------------------------------------------------------------------------


def test_codec_identity() -> None:
    codec = FlatBuffersCodec()
    assert codec.format is StateFormat.FLATBUFFERS
    assert codec.suffix == ".fb"


def test_full_state_round_trips_exactly() -> None:
    data = full_state()
    back = roundtrip(data)
    assert data.differences(back) == []
    assert list(back.node_statuses()) == list(data.node_statuses())  # insertion order kept
    with back.read_columns() as theirs, data.read_columns() as mine:
        assert list(theirs.data) == list(mine.data)


def test_encode_stamps_version_and_update_time_without_touching_data() -> None:
    data = full_state()
    before = data.copy()
    codec = FlatBuffersCodec()
    raw = codec.encode(data, version=41, updated_at=123.5)
    assert data.differences(before) == []
    back = codec.decode(raw, "t")
    assert (back.version, back.updated_at) == (41, 123.5)
    assert back.differences(data, ignore=("version", "updated_at")) == []
    assert codec.stored_version(raw, "t") == 41


@pytest.mark.parametrize("value", JSON_VALUES, ids=repr)
def test_every_json_value_keeps_type_and_value(value: Any) -> None:
    data = WorkflowData("values")
    data.set("v", value)
    data.set_node_status("n", NodeStatus.COMPLETED)
    data.set_output("n", value)
    back = roundtrip(data)
    for got in (back.get("v"), back.get_output("n")):
        assert type(got) is type(value)
        assert got == value or (value != value and got != got)
    assert back.differences(data) == []


def test_int_float_bool_are_not_confused() -> None:
    data = WorkflowData("types")
    for key, value in {"i": 1, "f": 1.0, "b": True, "z": 0, "zf": 0.0, "no": False}.items():
        data.set(key, value)
    back = roundtrip(data)
    assert [type(back.get(k)) for k in ("i", "f", "b", "z", "zf", "no")] == [
        int,
        float,
        bool,
        int,
        float,
        bool,
    ]


def test_dag_none_and_empty_are_distinct() -> None:
    none_dag = WorkflowData("d")
    empty_dag = WorkflowData("d")
    empty_dag.set_dag_structure({})
    assert roundtrip(none_dag).dag_structure is None
    assert roundtrip(empty_dag).dag_structure == {}


def test_empty_state_round_trips() -> None:
    data = WorkflowData("empty", created_at=0.0)
    codec = FlatBuffersCodec()
    raw = codec.encode(data, version=0, updated_at=0.0)
    assert codec.decode(raw, "t").differences(data) == []
    summary = codec.summarize(raw, "t")
    assert (summary.node_count, summary.status_counts, summary.failed_nodes) == (0, {}, ())
    assert codec.node_status(raw, "t", "anything") is None


def test_sparse_history_and_audit_round_trip() -> None:
    data = full_state()
    back = roundtrip(data)
    assert back.node_history("node-5").error == "boom"
    assert back.node_history("node-5").duration == 2.5
    assert back.node_history("node-6").finished_at is None
    assert back.node_history("node-1").attempts == 0
    assert back.audit == data.audit
    assert all(isinstance(entry, AuditEntry) for entry in back.audit)
    assert back.waits == {"node-8": 1893456000000}
    assert (back.rolling_back, back.trigger_cause) == (True, 2)


def test_node_names_containing_the_separator_round_trip() -> None:
    columns = StateColumns(workflow_id="nul")
    for name in ("a\x00b", "", "\x00", "plain", "é\x00"):
        columns.statuses[name] = NodeStatus.FAILED
    data = WorkflowData.from_columns(columns)
    codec = FlatBuffersCodec()
    raw = codec.encode(data, version=1, updated_at=1.0)
    back = codec.decode(raw, "t")
    assert list(back.node_statuses()) == list(columns.statuses)
    for name in columns.statuses:
        assert codec.node_status(raw, "t", name) is NodeStatus.FAILED
    assert codec.summarize(raw, "t").failed_nodes == tuple(columns.statuses)


def test_large_state_round_trips() -> None:
    data = WorkflowData("large")
    rng = random.Random(5)
    statuses = list(STATUSES_BY_CODE)
    for i in range(5000):
        node = f"n{rng.randrange(10**9)}-{i}"
        data.set_node_status(node, statuses[i % len(statuses)])
        data.set_output(node, {"i": i, "blob": "y" * (i % 50)})
    back = roundtrip(data)
    assert back.differences(data) == []


# --- cheap reads agree with the full decode ----------------------------------------------------

node_names = st.text(min_size=1, max_size=12)
status_maps = st.dictionaries(node_names, st.sampled_from(STATUSES_BY_CODE), max_size=60)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(statuses=status_maps, absent=node_names)
def test_summary_and_node_status_agree_with_full_decode(statuses: dict[str, NodeStatus], absent: str) -> None:
    columns = StateColumns(workflow_id="agree", statuses=dict(statuses))
    data = WorkflowData.from_columns(columns)
    codec = FlatBuffersCodec()
    raw = codec.encode(data, version=5, updated_at=7.5)
    decoded = codec.decode(raw, "src")
    for node, status in decoded.node_statuses().items():
        assert codec.node_status(raw, "src", node) is status
    if absent not in statuses:
        assert codec.node_status(raw, "src", absent) is None
    expected = summary_from_data(decoded, StateFormat.FLATBUFFERS, "src", len(raw))
    assert codec.summarize(raw, "src") == expected


def test_summary_lists_many_failed_nodes_in_order() -> None:
    data = WorkflowData("failing")
    for i in range(300):
        data.set_node_status(f"n{299 - i}", NodeStatus.FAILED if i % 2 else NodeStatus.COMPENSATION_FAILED)
    data.set_node_status("ok", NodeStatus.COMPLETED)
    codec = FlatBuffersCodec()
    raw = codec.encode(data, version=1, updated_at=1.0)
    summary = codec.summarize(raw, "t")
    assert summary.failed_nodes == tuple(f"n{299 - i}" for i in range(300))
    assert summary.status_counts == {"failed": 150, "compensation_failed": 150, "completed": 1}


#: Node counts and failure shares around the summary's thresholds (bytes tally vs numpy, names
#: read one by one vs one split of the column).
_SMALL = _SMALL_NODE_COUNT
_FEW = _FEW_FAILED
_NAME_CHARS = "ab_\x00é节𝄞"


def random_statuses(rng: random.Random, n: int, failing: float, nul: bool) -> dict[str, NodeStatus]:
    """``n`` unique names (non-ASCII, empty prefixes, NUL inside when ``nul``) with random statuses,
    a share ``failing`` of them failed or compensation_failed."""
    chars = _NAME_CHARS if nul else _NAME_CHARS.replace("\x00", "")
    others = [s for s in STATUSES_BY_CODE if s not in (NodeStatus.FAILED, NodeStatus.COMPENSATION_FAILED)]
    statuses = {}
    for i in range(n):
        name = "".join(rng.choice(chars) for _ in range(rng.randrange(4))) + str(i)
        if rng.random() < failing:
            statuses[name] = rng.choice([NodeStatus.FAILED, NodeStatus.COMPENSATION_FAILED])
        else:
            statuses[name] = rng.choice(others)
    return statuses


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32),
    n=st.sampled_from([0, 1, 2, 20, _FEW, _FEW + 2, _SMALL - 1, _SMALL, _SMALL + 1, 1500]),
    failing=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
    nul=st.booleans(),
)
def test_summary_equals_the_full_decode_summary(seed: int, n: int, failing: float, nul: bool) -> None:
    statuses = random_statuses(random.Random(seed), n, failing, nul)
    data = WorkflowData.from_columns(StateColumns(workflow_id="wf-é", statuses=statuses))
    codec = FlatBuffersCodec()
    raw = bytes(codec.encode(data, version=9, updated_at=123.5))
    summary = codec.summarize(raw, "src")
    assert summary == summary_from_data(codec.decode(raw, "src"), StateFormat.FLATBUFFERS, "src", len(raw))
    assert list(summary.status_counts) == [s.value for s in NodeStatus if s.value in summary.status_counts]


def test_status_tally_paths_agree_with_a_plain_count() -> None:
    rng = random.Random(3)
    codes = range(len(STATUSES_BY_CODE))
    failed_codes = {
        STATUS_CODES[NodeStatus.FAILED],
        STATUS_CODES[NodeStatus.COMPENSATION_FAILED],
    }
    for n in (0, 1, 7, _SMALL - 1, _SMALL, _SMALL + 1, 5000):
        for share in (0.0, 0.3, 1.0):
            raw = bytes(
                rng.choice(sorted(failed_codes)) if rng.random() < share else rng.choice(codes)
                for _ in range(n)
            )
            counts, failed = _status_tally(raw)
            assert counts == [raw.count(code) for code in codes]
            assert failed == [i for i, code in enumerate(raw) if code in failed_codes]


def node_block_end(raw: bytes) -> int:
    """Where the first body block ends: header and node vectors of a small file lie before it."""
    f = _OurFile(memoryview(raw))
    return f.body_start + f.block_ends[0]


def test_every_bit_flip_in_what_a_summary_reads_raises() -> None:
    """The header, the node vectors' block and the header checksum: a summary of a small file
    reads from nothing else, and must refuse any damage there rather than answer."""
    codec = FlatBuffersCodec()
    data = WorkflowData.from_columns(
        StateColumns(workflow_id="bits", statuses=random_statuses(random.Random(1), 20, 0.2, nul=True))
    )
    data.set("customer", {"id": 7})
    data.set_output(next(iter(data.node_statuses())), {"rows": 1})
    raw = bytes(codec.encode(data, version=2, updated_at=3.0))
    stop = node_block_end(raw)
    assert stop < len(raw) - 4, "the file must have blocks after the node vectors"
    for at in [*range(stop), *range(len(raw) - 4, len(raw))]:
        for bit in range(8):
            flipped = bytearray(raw)
            flipped[at] ^= 1 << bit
            with pytest.raises(CorruptStateError):
                codec.summarize(bytes(flipped), "t")


def test_unknown_status_codes_are_refused_by_every_read() -> None:
    raw = bytearray(small_file())
    f = _OurFile(memoryview(bytes(raw)))
    statuses_start, n = f.node_vectors()[3:]
    codec = FlatBuffersCodec()
    for code in (len(STATUSES_BY_CODE), 200, 255):
        forged = bytearray(raw)
        forged[statuses_start + n - 1] = code
        sealed = reseal_native(forged)
        for read in (codec.decode, codec.summarize):
            with pytest.raises(CorruptStateError, match="unknown status code"):
                read(sealed, "f")


def test_tables_with_more_slots_than_read_eagerly() -> None:
    import flatbuffers

    builder = flatbuffers.Builder(0)
    fields = 3 * _fb_reader._EAGER_SLOTS
    builder.StartObject(fields)
    builder.PrependInt32Slot(1, 11, 0)
    builder.PrependInt32Slot(_fb_reader._EAGER_SLOTS, 22, 0)
    builder.PrependInt32Slot(fields - 1, 33, 0)
    builder.Finish(builder.EndObject())
    root = _fb_reader.root_table(memoryview(bytes(builder.Output())))
    assert len(root.slots) == _fb_reader._EAGER_SLOTS
    read = functools.partial(root.scalar, fmt=_fb_reader.I32, default=-1)
    assert [read(1), read(2), read(_fb_reader._EAGER_SLOTS), read(fields - 1), read(fields)] == [
        11,
        -1,
        22,
        33,
        -1,
    ]


def test_node_status_of_unencodable_name_is_none() -> None:
    codec = FlatBuffersCodec()
    raw = small_file()
    assert codec.node_status(raw, "t", "\ud800") is None
    assert codec.node_status(raw, "t", "n3") is NodeStatus.FAILED


def test_sorted_index_cache_never_serves_a_stale_order() -> None:
    codec = FlatBuffersCodec()
    data = WorkflowData("cache")
    for name in ("m", "c", "x"):
        data.set_node_status(name, NodeStatus.COMPLETED)

    def check() -> None:
        raw = codec.encode(data, version=1, updated_at=1.0)
        for node, status in data.node_statuses().items():
            assert codec.node_status(raw, "t", node) is status
        assert list(codec.decode(raw, "t").node_statuses()) == list(data.node_statuses())

    check()
    check()  # cache hit
    data.set_node_status("a", NodeStatus.FAILED)  # node added
    check()
    data.remove_node("m")  # node removed
    check()
    data.remove_node("x")
    data.set_node_status("b", NodeStatus.RUNNING)  # same count, different names
    check()
    other = WorkflowData("cache")  # same id, different state object and node set
    other.set_node_status("zz", NodeStatus.SKIPPED)
    raw = codec.encode(other, version=1, updated_at=1.0)
    assert codec.node_status(raw, "t", "zz") is NodeStatus.SKIPPED
    assert codec.node_status(raw, "t", "a") is None


# --- corrupt input -----------------------------------------------------------------------------


def all_reads(codec: FlatBuffersCodec, raw: bytes) -> None:
    codec.decode(raw, "src")
    codec.summarize(raw, "src")
    codec.node_status(raw, "src", "n3")
    codec.stored_version(raw, "src")


def test_every_truncation_is_detected() -> None:
    raw = small_file()
    codec = FlatBuffersCodec()
    for size in range(len(raw)):
        for read in (codec.decode, codec.summarize, codec.stored_version):
            with pytest.raises(CorruptStateError):
                read(raw[:size], "src")
        with pytest.raises(CorruptStateError):
            codec.node_status(raw[:size], "src", "n3")


def test_every_bit_flip_is_detected_by_a_full_decode() -> None:
    raw = small_file()
    codec = FlatBuffersCodec()
    for bit in range(len(raw) * 8):
        flipped = bytearray(raw)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(CorruptStateError) as info:
            codec.decode(bytes(flipped), "file.fb")
        assert info.value.source == "file.fb"


def test_cheap_reads_after_a_bit_flip_raise_or_answer_correctly() -> None:
    raw = small_file()
    codec = FlatBuffersCodec()
    expected_status = codec.node_status(raw, "t", "n3")
    expected_summary = codec.summarize(raw, "t")
    for bit in range(len(raw) * 8):
        flipped = bytearray(raw)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with contextlib.suppress(CorruptStateError):
            assert codec.node_status(flipped, "t", "n3") is expected_status
        with contextlib.suppress(CorruptStateError):
            assert codec.summarize(flipped, "t") == expected_summary


def test_checksum_mismatch_is_reported() -> None:
    raw = bytearray(small_file())
    raw[-10] ^= 0xFF
    with pytest.raises(CorruptStateError, match="checksum"):
        FlatBuffersCodec().decode(raw, "x")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_raise_only_corrupt_state(blob: bytes) -> None:
    codec = FlatBuffersCodec()
    for candidate in (blob, blob[:4] + IDENTIFIER + blob[8:]):
        with contextlib.suppress(CorruptStateError):
            all_reads(codec, candidate)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_random_overwrites_raise_corrupt_state(data: st.DataObject) -> None:
    raw = bytearray(small_file())
    start = data.draw(st.integers(0, len(raw) - 1))
    patch = data.draw(st.binary(min_size=1, max_size=16))
    if raw[start : start + len(patch)] == patch:
        return
    raw[start : start + len(patch)] = patch
    with pytest.raises(CorruptStateError):
        FlatBuffersCodec().decode(bytes(raw), "x")


def test_reseal_helper_makes_a_tampered_file_pass_the_checksums() -> None:
    raw = bytearray(small_file())
    raw[-20] ^= 0x01
    with pytest.raises(CorruptStateError, match="checksum"):
        FlatBuffersCodec().decode(bytes(raw), "x")
    with pytest.raises(CorruptStateError) as info:
        FlatBuffersCodec().decode(bytes(reseal_native(raw)), "x")
    assert "checksum" not in info.value.reason


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_forged_files_with_valid_checksums_raise_only_corrupt_state(data: st.DataObject) -> None:
    """Checksums stop accidents, not forgers: the bounds checks must hold on their own."""
    raw = bytearray(small_file())
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(8, len(raw) - 5))
        width = data.draw(st.sampled_from([1, 4]))
        value = data.draw(st.sampled_from([0, 1, 0xFF, 0x7FFFFFFF, 0xFFFFFFFF, len(raw), 1 << 20]))
        raw[at : at + width] = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "little")[: len(raw) - at]
    try:
        forged = bytes(reseal_native(raw))
    except Exception:
        return  # the header itself no longer parses: nothing for a forger to seal
    codec = FlatBuffersCodec()
    for read in (
        lambda: codec.decode(forged, "f"),
        lambda: codec.summarize(forged, "f"),
        lambda: codec.node_status(forged, "f", "n3"),
        lambda: codec.stored_version(forged, "f"),
    ):
        with contextlib.suppress(CorruptStateError):
            read()


def test_oversized_input_is_refused_before_reading() -> None:
    huge = bytearray(64 * 1024 * 1024 + 1)
    huge[4:8] = IDENTIFIER
    with pytest.raises(CorruptStateError, match="cap"):
        FlatBuffersCodec().decode(memoryview(huge), "x")


# --- encode errors -----------------------------------------------------------------------------


class Opaque:
    pass


@pytest.mark.parametrize(
    ("setup", "named"),
    [
        (lambda d: d.set("bad_key", Opaque()), "bad_key"),
        (lambda d: d.set("too_big", 1 << 64), "too_big"),
        (lambda d: d.set("when", datetime.datetime(2024, 1, 1)), "when"),
        (lambda d: d.set("deep", {"x": [1, {2: "non-str key"}]}), "deep"),
        (lambda d: d.set_output("node-9", {1, 2}), "node-9"),
        (lambda d: d.set_output("node-8", [Opaque()]), "node-8"),
        (lambda d: d.set("nan", float("nan")), "nan"),
        (lambda d: d.set_output("node-7", float("-inf")), "node-7"),
        (lambda d: d.record_attempt_started("node-6", at=float("inf")), "node-6"),
    ],
)
def test_non_json_values_raise_serialization_error_naming_the_culprit(setup: Any, named: str) -> None:
    data = WorkflowData("bad")
    data.set("fine", 1)
    data.set_node_status("node-9", NodeStatus.COMPLETED)
    with pytest.raises(SerializationError) as info:  # outputs are refused by set_output already
        setup(data)
        FlatBuffersCodec().encode(data, version=1, updated_at=1.0)
    assert named in info.value.field
    assert info.value.workflow_id == "bad"
    assert named in str(info.value)


def test_unencodable_node_name_raises_serialization_error() -> None:
    columns = StateColumns(workflow_id="surrogate", statuses={"\ud800": NodeStatus.PENDING})
    with pytest.raises(SerializationError, match="node name"):
        FlatBuffersCodec().encode(WorkflowData.from_columns(columns), version=1, updated_at=1.0)


# --- typed history columns ---------------------------------------------------------------------


def stored_fields(raw: bytes) -> set[str]:
    """Which history encodings a file uses, read with the flatc-generated reader."""
    import sys

    from flow_workbench.stores import _generated

    sys.path.insert(0, _generated.__path__[0])
    try:
        from fwb.WorkflowState import WorkflowState  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
    root = WorkflowState.GetRootAs(raw, 0)
    found = set()
    for name in ("AttemptsValues", "StartedAtValues", "FinishedAtValues", "AttemptsJson", "StartedAtJson"):
        if not getattr(root, f"{name}IsNone")():
            found.add(name)
    return found


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        # keys equal the node list -> typed, sharing the node-name vector
        ({"a": (1, 1.5, 2.5), "b": (2, 3.0, 4.0)}, {"AttemptsValues", "StartedAtValues", "FinishedAtValues"}),
        # keys a subset in another order -> typed with their own (then shared) keys vector
        ({"b": (1, 1.5, 2.5)}, {"AttemptsValues", "StartedAtValues", "FinishedAtValues"}),
        # an int start time must stay an int -> JSON for started_at only
        ({"a": (1, 7, 2.5)}, {"AttemptsValues", "StartedAtJson", "FinishedAtValues"}),
        # a key holding the separator -> JSON
        ({"x\x00y": (1, 1.0, 2.0)}, {"AttemptsJson", "StartedAtJson", "FinishedAtValues"}),
    ],
)
def test_history_columns_round_trip_exactly_typed_or_json(
    history: dict[str, tuple[Any, Any, Any]], expected: set[str]
) -> None:
    columns = StateColumns(workflow_id="hist", statuses={"a": NodeStatus.COMPLETED, "b": NodeStatus.FAILED})
    for node, (attempts, started, _) in history.items():
        columns.attempts[node] = attempts
        columns.started_at[node] = started
    # finished_at in insertion order of its own (reversed), with the separator case kept typed
    for node, (_, _, finished) in reversed(list(history.items())):
        columns.finished_at[node.replace("\x00", "-")] = finished
    data = WorkflowData.from_columns(columns)
    raw = bytes(FlatBuffersCodec().encode(data, version=1, updated_at=1.0))
    back = FlatBuffersCodec().decode(raw, "t")
    assert back.differences(data, ignore=("version", "updated_at")) == []
    for name in ("attempts", "started_at", "finished_at"):
        mine = getattr(columns, name)
        with back.read_columns() as back_columns:
            theirs = dict(getattr(back_columns, name))
        assert [type(v) for v in theirs.values()] == [type(v) for v in mine.values()]
        assert list(theirs) == list(mine)
    assert stored_fields(raw) == expected


def test_dag_encoding_is_reused_only_while_the_structure_is_unchanged() -> None:
    codec = FlatBuffersCodec()
    data = WorkflowData("dag-cache")
    data.set_dag_structure({"a": []})
    first = codec.decode(codec.encode(data, version=1, updated_at=1.0), "first")
    again = codec.decode(codec.encode(data, version=2, updated_at=2.0), "again")
    data.set_dag_structure({"a": [], "b": ["a"]})
    changed = codec.decode(codec.encode(data, version=3, updated_at=3.0), "changed")
    other = WorkflowData("other")
    other.set_dag_structure({"x": []})
    foreign = codec.decode(codec.encode(other, version=1, updated_at=1.0), "foreign")
    assert first.dag_structure == again.dag_structure == {"a": []}
    assert changed.dag_structure == {"a": [], "b": ["a"]}
    assert foreign.dag_structure == {"x": []}


# --- encode fast paths (exact-type counting, piecewise block checksums) ------------------------


def test_history_of_subclassed_numbers_is_never_stored_as_a_typed_vector() -> None:
    import enum

    class Attempt(enum.IntEnum):
        ONE = 1

    class When(float):
        pass

    columns = StateColumns(workflow_id="sub", statuses={"a": NodeStatus.COMPLETED, "b": NodeStatus.FAILED})
    columns.attempts.update(a=Attempt.ONE, b=2)  # an int subclass: JSON, never the int64 vector
    columns.started_at.update(a=1.0, b=2.0)
    columns.finished_at.update(a=1.5, b=2.5)
    raw = bytes(FlatBuffersCodec().encode(WorkflowData.from_columns(columns), version=1, updated_at=1.0))
    assert stored_fields(raw) == {"AttemptsJson", "StartedAtValues", "FinishedAtValues"}
    with FlatBuffersCodec().decode(raw, "t").read_columns() as decoded:
        assert decoded.attempts == {"a": 1, "b": 2}
    columns.started_at["b"] = When(2.0)  # a float subclass has no JSON form either: refused, not coerced
    with pytest.raises(SerializationError, match="started_at of node 'b'"):
        FlatBuffersCodec().encode(WorkflowData.from_columns(columns), version=1, updated_at=1.0)


def test_nan_is_refused_in_a_column_whose_other_values_are_not_floats() -> None:
    data = WorkflowData("nan-mixed")
    for i in range(100):
        data.set_output(f"n{i}", {"rows": i, "none": None})  # nulls everywhere, no top-level float
    assert roundtrip(data).outputs() == data.outputs()
    with pytest.raises(SerializationError, match="n50"):
        data.set_output("n50", float("nan"))
    columns = data._unsafe_columns()
    columns.outputs["n50"] = float("nan")  # bypassing set_output, in hand-built (unchecked) columns
    data = WorkflowData.from_columns(dataclasses.replace(columns, checked=False))
    for _ in range(2):  # a refused encode does not mark the values as checked
        with pytest.raises(SerializationError, match="n50"):
            FlatBuffersCodec().encode(data, version=1, updated_at=1.0)
        assert not is_checked(data)
    data.set_output("n50", 2.5)  # a finite top-level float next to nested nulls is fine
    assert roundtrip(data).get_output("n50") == 2.5


@pytest.mark.parametrize("nodes", [1, 3, 1023, 1024, 1025, 4093, 5000])
def test_piecewise_block_checksums_match_the_written_bytes(nodes: int) -> None:
    """Node vectors are checksummed piecewise (prefix, payload, pad) across 4 KiB blocks; each crc
    must be that of the written block, for vectors ending on and around block boundaries."""
    data = WorkflowData("parts", created_at=1.0)
    for i in range(nodes):
        name = f"n{i:0{i % 7 + 1}d}"  # ragged name lengths: the name blob ends anywhere in a block
        data.record_attempt_started(name, at=float(i))
        data.record_attempt_finished(name, NodeStatus.COMPLETED if i % 5 else NodeStatus.FAILED, at=i + 0.5)
        data.set_output(name, {"i": i})
    codec = FlatBuffersCodec()
    raw = bytes(codec.encode(data, version=4, updated_at=2.0))
    assert codec.summarize(raw, "t").node_count == nodes  # reads (and verifies) the status blocks
    back = codec.decode(raw, "t")
    assert back.differences(data, ignore=("version", "updated_at")) == []
    last = f"n{nodes - 1:0{(nodes - 1) % 7 + 1}d}"
    assert codec.node_status(raw, "t", last) is data.get_node_status(last)
    # A flipped byte in any block (probes < 4 KiB apart, plus random ones) fails the full decode.
    rng = random.Random(nodes)
    for at in {*range(0, len(raw), 997), *rng.sample(range(len(raw)), min(40, len(raw)))}:
        damaged = bytearray(raw)
        damaged[at] ^= 0x10
        with pytest.raises(CorruptStateError):
            codec.decode(bytes(damaged), "t")


def test_cached_name_vectors_are_read_only() -> None:
    """The name column is shared by later encodes (their bodies refer to it uncopied): it must not change."""
    codec = FlatBuffersCodec()
    data = WorkflowData("ro")
    data.set_node_status("a", NodeStatus.PENDING)
    codec.encode(data, version=1, updated_at=1.0)
    column = codec._names.get("ro", ["a"])
    with pytest.raises(ValueError):
        column.order[0] = 1
    with pytest.raises(ValueError):
        column.ends[0] = 1


def is_checked(data: WorkflowData) -> bool:
    """``StateColumns.checked`` of ``data``: whether its values are known to be of the typed kinds."""
    with data.read_columns() as columns:
        return columns.checked


def test_history_type_knowledge_is_kept_honest_by_the_writers() -> None:
    codec = FlatBuffersCodec()
    data = WorkflowData("typed")
    assert is_checked(data)  # a new state: the engine's writers only store floats/ints
    data.record_attempt_started("a", at=1.5)
    data.record_attempt_finished("a", NodeStatus.COMPLETED, at=2.5)
    raw = bytes(codec.encode(data, version=1, updated_at=1.0))
    assert stored_fields(raw) == {"AttemptsValues", "StartedAtValues", "FinishedAtValues"}
    decoded = codec.decode(raw, "typed")
    assert is_checked(decoded)  # read from typed vectors and checked by the decoder
    codec.encode(decoded, version=2, updated_at=2.0)
    assert is_checked(decoded)
    decoded.record_attempt_started("b", at=7)  # an int time: no longer known typed, kept exact
    assert not is_checked(decoded)
    again = codec.decode(codec.encode(decoded, version=3, updated_at=3.0), "typed")
    assert type(again.node_history("b").started_at) is int
    assert not is_checked(again)  # a history column read from JSON: its types are not known
    decoded.record_attempt_finished("b", NodeStatus.COMPLETED, at=float("nan"))
    with pytest.raises(SerializationError, match="finished_at of node 'b'"):
        codec.encode(decoded, version=4, updated_at=4.0)
    record = decoded.node_record("a")
    copy = data.copy()
    assert is_checked(copy)
    copy.apply_node_record(dataclasses.replace(record, started_at=3))  # a journal record with an int
    assert not is_checked(copy)
