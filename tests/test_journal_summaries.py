"""Summaries of a FlatBuffers snapshot with a short journal, without a full decode, equal to one."""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flow_workbench.data import RunRecord, WorkflowData
from flow_workbench.errors import CorruptStateError, SerializationError
from flow_workbench.status import STATUSES_BY_CODE, NodeStatus
from flow_workbench.stores import _fb_summary, folder
from flow_workbench.stores._fb_summary import MAX_JOURNAL_RECORDS
from flow_workbench.stores._journal import JOURNAL_SUFFIX, _framed, initial_image, read_journal, replay
from flow_workbench.stores.base import WorkflowSummary, summary_from_data
from flow_workbench.stores.codec import StateCodec
from flow_workbench.stores.flatbuffers import FlatBuffersStore
from flow_workbench.stores.flatbuffers_codec import FlatBuffersCodec
from flow_workbench.stores.folder import FolderEntry, scan_folder, summarize_state_file
from flow_workbench.stores.json_file import JSONFileStore

BIG = 1 << 30
FAILED = (NodeStatus.FAILED, NodeStatus.COMPENSATION_FAILED)

# A step of a journal: (node, status) pairs saved as one record, and whether a run goes with it.
Step = tuple[list[tuple[str, NodeStatus]], bool]


# --- the oracle and the spy ------------------------------------------------------------------


def full_summary(state_path: Path, codec: StateCodec) -> WorkflowSummary:
    """Today's full path: decode the whole snapshot, replay the journal, summarise the state."""
    raw = state_path.read_bytes()
    journal_path = str(state_path.with_suffix(JOURNAL_SUFFIX))
    data = codec.decode(raw, str(state_path))
    contents = read_journal(journal_path, BIG)
    assert contents is not None and contents.applies_to(data.version)
    replay(data, contents, journal_path)
    return summary_from_data(data, codec.format, source=str(state_path), size_bytes=len(raw))


@pytest.fixture
def full_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths folded by the full path (``folder._fold_journal``), which still runs as before."""
    calls: list[str] = []
    real = folder._fold_journal

    def spy(raw: Any, path: str, *args: Any) -> WorkflowSummary | None:
        calls.append(path)
        return real(raw, path, *args)

    monkeypatch.setattr(folder, "_fold_journal", spy)
    return calls


@pytest.fixture
def no_cheap_path(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Calling it turns the journaled summary off: every journal takes the full path, as on main."""

    def off() -> None:
        monkeypatch.setattr(FlatBuffersCodec, "summarize_with_journal", lambda *args: None)

    return off


def assert_same(cheap: WorkflowSummary, full: WorkflowSummary) -> None:
    assert cheap == full
    # Dict equality ignores order; the full path's Counter orders statuses by their first node.
    assert list(cheap.status_counts.items()) == list(full.status_counts.items())


# --- building states and journals ------------------------------------------------------------


def saved_state(base: Path, statuses: dict[str, NodeStatus], workflow_id: str = "wf") -> WorkflowData:
    data = WorkflowData(workflow_id, created_at=1_700_000_000.0)
    data.set_node_statuses(statuses)
    FlatBuffersStore(base).save(data)
    return data


def append_steps(base: Path, data: WorkflowData, steps: list[Step]) -> None:
    """One journal record per step (``save_nodes``), after setting its statuses in ``data``."""
    store = FlatBuffersStore(base)
    for number, (changes, with_run) in enumerate(steps):
        run_id = None
        if with_run:
            run_id = f"run-{number}"
            data.put_run(RunRecord(run_id, 1_700_000_000.0 + number))
        for node, status in changes:
            data.set_node_status(node, status)
        store.save_nodes(data, [node for node, _ in changes], run_id=run_id)


def append_payload(journal: Path, document: object) -> None:
    """Append a record with a valid checksum holding ``document`` (any JSON, or raw bytes)."""
    payload = document if isinstance(document, bytes) else orjson.dumps(document)
    if not journal.exists():  # a first record: a journal on the snapshot's version
        snapshot = journal.with_suffix(".fb")
        journal.write_bytes(initial_image(FlatBuffersCodec().stored_version(snapshot.read_bytes(), "")))
    image = bytearray(journal.read_bytes())
    contents = read_journal(str(journal), BIG)
    assert contents is not None
    end = contents.valid_end
    frame = _framed(payload)
    image[end : end + len(frame)] = frame
    journal.write_bytes(bytes(image))


def journal_records(base: Path, workflow_id: str = "wf") -> int:
    contents = read_journal(str(base / (workflow_id + JOURNAL_SUFFIX)), BIG)
    return 0 if contents is None else contents.records


@pytest.fixture
def base() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="fw-journal-summary-"))
    yield path
    shutil.rmtree(path)


# --- the property ----------------------------------------------------------------------------

names = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=8)
statuses = st.sampled_from(STATUSES_BY_CODE)


@st.composite
def journaled_states(draw: st.DrawFn) -> tuple[dict[str, NodeStatus], list[Step]]:
    snapshot = draw(st.dictionaries(names, statuses, max_size=40))
    extra = draw(st.lists(names, max_size=6, unique=True))  # candidates for nodes added later
    pool = [*snapshot, *extra]
    node = st.sampled_from(pool) if pool else names
    step = st.tuples(st.lists(st.tuples(node, statuses), max_size=5), st.booleans())
    steps = draw(st.lists(step, min_size=1, max_size=8).filter(lambda s: any(c or r for c, r in s)))
    return snapshot, [(changes, with_run) for changes, with_run in steps if changes or with_run]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(journaled_states())
def test_journaled_summary_equals_the_full_decode(case: tuple[dict[str, NodeStatus], list[Step]]) -> None:
    snapshot, steps = case
    base = Path(tempfile.mkdtemp(prefix="fw-journal-summary-"))
    search_factor = _fb_summary._SEARCH_FACTOR
    try:
        data = saved_state(base, snapshot)
        append_steps(base, data, steps)
        assert journal_records(base) == len(steps)  # the store did not fall back to a snapshot
        codec = FlatBuffersCodec()
        state_path = base / "wf.fb"
        raw = state_path.read_bytes()
        contents = read_journal(str(base / "wf.journal"), BIG)
        assert contents is not None
        full = full_summary(state_path, codec)
        # Either way of finding the records' nodes: binary searches (factor 0), one split (huge).
        for factor in (0, 10**9):
            _fb_summary._SEARCH_FACTOR = factor
            cheap = codec.summarize_with_journal(raw, str(state_path), contents, str(base / "wf.journal"))
            assert cheap is not None  # taken, not declined
            assert_same(cheap, full)
        _fb_summary._SEARCH_FACTOR = search_factor
        assert_same(FlatBuffersStore(base).summary("wf"), full)
        # And the state a load gives agrees with both (the journal really changed something).
        assert full.node_count == len(data.node_statuses())
        assert full.version == data.version
    finally:
        _fb_summary._SEARCH_FACTOR = search_factor
        shutil.rmtree(base)


@pytest.mark.parametrize("seed", range(4))
def test_large_states_through_the_store(base: Path, seed: int, full_decodes: list[str]) -> None:
    """Past the small-state thresholds: numpy tallies (> 256 nodes), names from one split (> 64
    failed), failed nodes added after the snapshot, nodes changed several times."""
    rng = random.Random(seed)
    snapshot = {f"n{i:05d}-{rng.choice('aé€😀')}": rng.choice(STATUSES_BY_CODE) for i in range(3000)}
    data = saved_state(base, snapshot)
    pool = [*snapshot, *(f"new-{k}-{rng.choice('xyzé')}" for k in range(20))]
    steps: list[Step] = []
    for _ in range(rng.randint(1, MAX_JOURNAL_RECORDS)):
        changes = [
            (rng.choice(pool), rng.choice((*FAILED, *STATUSES_BY_CODE))) for _ in range(rng.randint(0, 3))
        ]
        steps.append((changes, not changes or rng.random() < 0.2))
    append_steps(base, data, steps)
    summary = FlatBuffersStore(base).summary("wf")
    assert full_decodes == []  # the cheap path answered
    assert_same(summary, full_summary(base / "wf.fb", FlatBuffersCodec()))
    assert len(summary.failed_nodes) > 64


def test_one_hundred_thousand_nodes_and_three_records(base: Path, full_decodes: list[str]) -> None:
    snapshot = {f"node-{i:06d}": STATUSES_BY_CODE[i % 9] for i in range(100_000)}
    data = saved_state(base, snapshot)
    steps: list[Step] = [
        ([("node-000003", NodeStatus.COMPLETED)], True),
        ([("node-054321", NodeStatus.FAILED), ("node-new", NodeStatus.COMPENSATION_FAILED)], False),
        ([("node-000008", NodeStatus.PENDING)], True),
    ]
    append_steps(base, data, steps)
    summary = FlatBuffersStore(base).summary("wf")
    assert full_decodes == []
    assert_same(summary, full_summary(base / "wf.fb", FlatBuffersCodec()))
    assert summary.node_count == 100_001 and summary.version == 4
    assert summary.failed_nodes[-1] == "node-new" and "node-054321" in summary.failed_nodes
    # Both were failed in the snapshot (codes 3 and 8) and are not any more.
    assert not {"node-000003", "node-000008"} & set(summary.failed_nodes)


# --- what the summary reads from the records --------------------------------------------------


def test_update_time_follows_the_records_and_statuses_keep_their_order(
    base: Path, full_decodes: list[str]
) -> None:
    data = saved_state(base, {"a": NodeStatus.PENDING, "b": NodeStatus.PENDING})
    snapshot_time = FlatBuffersStore(base).summary("wf").updated_at
    journal = base / "wf.journal"
    # No "_updated_at": replay keeps the snapshot's time. The record makes "a" the first node
    # completed; the statuses still come in NodeStatus order, as in every other summary.
    append_payload(journal, {"node": "a", "status": "completed"})
    first = FlatBuffersStore(base).summary("wf")
    assert first.updated_at == snapshot_time
    assert list(first.status_counts) == ["pending", "completed"]
    append_payload(journal, {"records": [{"node": "c", "status": "failed"}], "_updated_at": 1_800_000_000})
    second = FlatBuffersStore(base).summary("wf")
    assert second.updated_at == 1_800_000_000.0 and second.version == data.version + 2
    assert second.failed_nodes == ("c",)
    assert full_decodes == []
    assert_same(second, full_summary(base / "wf.fb", FlatBuffersCodec()))


def test_a_record_setting_unknown_is_counted_as_a_full_decode_counts_it(base: Path) -> None:
    """NodeStatus.parse accepts "unknown", which no FlatBuffers byte stands for."""
    saved_state(base, {"a": NodeStatus.FAILED, "b": NodeStatus.COMPLETED})
    append_payload(base / "wf.journal", {"node": "a", "status": "unknown", "_updated_at": 5.0})
    append_payload(base / "wf.journal", {"node": "z", "status": "unknown", "_updated_at": 6.0})
    summary = FlatBuffersStore(base).summary("wf")
    assert summary.status_counts == {"unknown": 2, "completed": 1} and summary.failed_nodes == ()
    assert_same(summary, full_summary(base / "wf.fb", FlatBuffersCodec()))


def test_a_stale_journal_is_ignored_as_before(base: Path, full_decodes: list[str]) -> None:
    data = saved_state(base, {"a": NodeStatus.PENDING})
    append_steps(base, data, [([("a", NodeStatus.FAILED)], False)])
    stale = (base / "wf.journal").read_bytes()
    FlatBuffersStore(base).save(data)  # a newer snapshot; the crash left the old journal
    (base / "wf.journal").write_bytes(stale)
    summary = FlatBuffersStore(base).summary("wf")
    assert full_decodes == []
    assert summary == FlatBuffersCodec().summarize((base / "wf.fb").read_bytes(), str(base / "wf.fb"))
    assert summary.version == data.version and summary.failed_nodes == ("a",)


# --- damaged and hostile records: the errors of a load ---------------------------------------

#: 300 levels: parsed by orjson (1024 levels) but not written back (254), so only applying the
#: record (which encodes the output) refuses it.
DEEP = b'{"node": "a", "status": "completed", "output": ' + b"[" * 300 + b"]" * 300 + b"}"
HOSTILE_RECORDS: dict[str, list[object]] = {
    "not JSON": [b"{not json"],
    "not an object": [[1, 2]],
    "no node": [{"status": "completed"}],
    "unknown status text": [{"node": "a", "status": "done"}],
    "status not a string": [{"node": "a", "status": 3}],
    "negative attempts": [{"node": "a", "status": "completed", "attempts": -1}],
    "update time a string": [{"node": "a", "status": "completed", "_updated_at": "noon"}],
    "empty records list": [{"records": []}],
    "a record not an object": [{"records": ["a"]}],
    "bad run": [{"records": [], "run": {"run_id": 5}}],
    "good record, then a bad one": [{"node": "b", "status": "failed"}, {"node": 7, "status": "failed"}],
    # Parsed and checked fine, refused when applied (orjson writes 254 levels at most):
    # SerializationError, not CorruptStateError, exactly as a load raises it.
    "output too deep to encode": [DEEP],
}


@pytest.mark.parametrize("documents", HOSTILE_RECORDS.values(), ids=HOSTILE_RECORDS)
def test_a_damaged_record_raises_what_the_full_path_raises(
    base: Path, documents: list[object], full_decodes: list[str]
) -> None:
    saved_state(base, {"a": NodeStatus.PENDING, "b": NodeStatus.COMPLETED})
    for document in documents:
        append_payload(base / "wf.journal", document)
    with pytest.raises((CorruptStateError, SerializationError)) as expected:
        full_summary(base / "wf.fb", FlatBuffersCodec())
    with pytest.raises(type(expected.value)) as cheap:
        FlatBuffersStore(base).summary("wf")
    assert str(cheap.value) == str(expected.value)
    assert full_decodes == []  # raised by the cheap path itself
    with pytest.raises(type(expected.value)) as load:
        FlatBuffersStore(base).load("wf")
    assert str(load.value) == str(expected.value)


# --- the bounds: longer journals keep the full path ------------------------------------------


def test_a_journal_over_the_record_bound_takes_the_full_path(base: Path, full_decodes: list[str]) -> None:
    data = saved_state(base, {f"n{i}": NodeStatus.PENDING for i in range(10)})
    steps: list[Step] = [([(f"n{i % 10}", FAILED[i % 2])], False) for i in range(MAX_JOURNAL_RECORDS + 1)]
    append_steps(base, data, steps[:-1])
    FlatBuffersStore(base).summary("wf")
    assert full_decodes == []  # exactly at the bound: cheap
    append_steps(base, data, steps[-1:])
    assert journal_records(base) == MAX_JOURNAL_RECORDS + 1
    summary = FlatBuffersStore(base).summary("wf")
    assert len(full_decodes) == 1
    assert_same(summary, full_summary(base / "wf.fb", FlatBuffersCodec()))


@pytest.mark.parametrize(("named", "searches"), [(3, 3), (500, 0)])
def test_few_nodes_are_searched_and_many_found_from_one_split(
    base: Path, named: int, searches: int, full_decodes: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record about many nodes (a reset of a whole level) is folded from one split of the name
    column, not by a full decode nor by hundreds of binary searches."""
    calls: list[str] = []
    real = _fb_summary._index_of

    def spy(f: Any, vectors: Any, sorted_start: int, node: str) -> int | None:
        calls.append(node)
        return real(f, vectors, sorted_start, node)

    monkeypatch.setattr(_fb_summary, "_index_of", spy)
    data = saved_state(base, {f"n{i:04d}": NodeStatus.COMPLETED for i in range(3000)})
    append_steps(base, data, [([(f"n{i * 5:04d}", NodeStatus.FAILED) for i in range(named)], False)])
    summary = FlatBuffersStore(base).summary("wf")
    assert (len(calls), full_decodes) == (searches, [])
    assert len(summary.failed_nodes) == named
    assert_same(summary, full_summary(base / "wf.fb", FlatBuffersCodec()))


def test_json_journals_keep_the_full_path(base: Path, full_decodes: list[str]) -> None:
    store = JSONFileStore(base)
    data = WorkflowData("wf")
    data.set_node_statuses({"a": NodeStatus.PENDING, "b": NodeStatus.PENDING})
    store.save(data)
    data.set_node_status("a", NodeStatus.FAILED)
    store.save_node(data, "a")
    assert store.summary("wf").failed_nodes == ("a",)
    assert len(full_decodes) == 1


# --- folder tables ---------------------------------------------------------------------------


def mixed_folder(base: Path) -> None:
    """Short, long, stale, damaged and no journals, a JSON store's file, an invalid id."""
    short = saved_state(base, {"a": NodeStatus.COMPLETED, "b": NodeStatus.FAILED}, "short")
    append_steps(base, short, [([("b", NodeStatus.COMPLETED), ("c", NodeStatus.FAILED)], True)])
    long = saved_state(base, {"a": NodeStatus.PENDING}, "long")
    append_steps(base, long, [([("a", FAILED[i % 2])], False) for i in range(MAX_JOURNAL_RECORDS + 3)])
    saved_state(base, {"a": NodeStatus.RUNNING}, "plain")
    stale = saved_state(base, {"a": NodeStatus.PENDING}, "stale")
    append_steps(base, stale, [([("a", NodeStatus.FAILED)], False)])
    old_journal = (base / "stale.journal").read_bytes()
    FlatBuffersStore(base).save(stale)
    (base / "stale.journal").write_bytes(old_journal)
    saved_state(base, {"a": NodeStatus.PENDING}, "damaged")
    append_payload(base / "damaged.journal", {"node": "a", "status": "nope"})
    saved_state(base, {"a": NodeStatus.PENDING}, "deep")
    append_payload(base / "deep.journal", DEEP)
    json_state = WorkflowData("json")
    json_state.set_node_statuses({"a": NodeStatus.PENDING})
    JSONFileStore(base).save(json_state)
    json_state.set_node_status("a", NodeStatus.FAILED)
    JSONFileStore(base).save_node(json_state, "a")
    shutil.copy(base / "plain.fb", base / "bad\x01name.fb")


def entries_equal(left: list[FolderEntry], right: list[FolderEntry]) -> None:
    assert left == right
    for a, b in zip(left, right, strict=True):
        if a.summary is not None and b.summary is not None:
            assert list(a.summary.status_counts.items()) == list(b.summary.status_counts.items())


def test_scan_folder_gives_the_entries_it_gave_before(
    base: Path, full_decodes: list[str], no_cheap_path: Callable[[], None]
) -> None:
    mixed_folder(base)
    cheap = scan_folder(base)
    # The full path: the long journal and JSON's, not the short, stale or damaged ones.
    assert sorted(os.path.basename(p) for p in full_decodes) == ["json.json", "long.fb"]
    assert [e.workflow_id for e in cheap if not e.ok] == ["bad\x01name", "damaged", "deep"]
    by_id = {e.workflow_id: e for e in cheap}
    assert by_id["deep"].error_type == "SerializationError"
    assert by_id["short"].summary is not None and by_id["short"].summary.failed_nodes == ("c",)
    no_cheap_path()
    entries_equal(cheap, scan_folder(base))
    assert FlatBuffersStore(base).summaries() == scan_folder(base, codecs={".fb": FlatBuffersCodec()})


def test_summarize_state_file_without_the_cheap_path_is_unchanged(
    base: Path, no_cheap_path: Callable[[], None]
) -> None:
    mixed_folder(base)
    path = str(base / "short.fb")
    journal = str(base / "short.journal")
    cheap = summarize_state_file(path, FlatBuffersCodec(), journal_path=journal)
    no_cheap_path()
    assert_same(cheap, summarize_state_file(path, FlatBuffersCodec(), journal_path=journal))
