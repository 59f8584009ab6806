"""Per-node journals: framing, torn tails, stale journals, compaction and sync policies."""

from __future__ import annotations

import itertools
import os
import shutil
import struct
import zlib
from pathlib import Path

import pytest

from flow_workbench.data import NodeRecord, WorkflowData
from flow_workbench.errors import CorruptStateError, SerializationError
from flow_workbench.status import NodeStatus
from flow_workbench.stores import _journal
from flow_workbench.stores._journal import (
    HEADER_SIZE,
    INITIAL_EXTENT,
    PREALLOCATE,
    JournalContents,
    JournalWriter,
    SyncPolicy,
    encode_header,
    encode_record,
    initial_image,
    journal_suffix,
    next_extent,
    parse_journal,
    replay,
)
from flow_workbench.stores.files import FileStore
from flow_workbench.stores.json_file import JSONFileStore
from flow_workbench.testing import StoreFactory, rich_state
from tests.helpers.stores import FILE_IMPLEMENTATIONS


def record(node: str, status: NodeStatus = NodeStatus.COMPLETED, output: object = "out") -> NodeRecord:
    return NodeRecord(node=node, status=status, attempts=1, has_output=True, output=output)


def journal_bytes(base: int, *records: NodeRecord) -> bytes:
    return encode_header(base) + b"".join(encode_record("wf", r, 10.0 + i) for i, r in enumerate(records))


# --- the file format -------------------------------------------------------------------------


def test_records_round_trip() -> None:
    raw = journal_bytes(3, record("a"), record("b", NodeStatus.FAILED, {"x": [1]}))
    contents = parse_journal(raw)
    assert (contents.base_version, contents.records, contents.valid_end) == (3, 2, len(raw))
    data = WorkflowData("wf")
    data.version = 3
    replay(data, contents, "journal")
    assert data.version == 5 and data.updated_at == 11.0
    assert data.get_node_status("b") is NodeStatus.FAILED and data.get_output("b") == {"x": [1]}


def test_every_torn_tail_is_dropped_silently() -> None:
    complete = journal_bytes(1, record("a"), record("b"))
    first_end = len(journal_bytes(1, record("a")))
    for length in range(first_end, len(complete)):
        contents = parse_journal(complete[:length])
        assert contents.records == 1 and contents.valid_end == first_end
    assert parse_journal(complete).records == 2


def test_a_flipped_bit_ends_the_journal_there() -> None:
    raw = bytearray(journal_bytes(1, record("a"), record("b"), record("c")))
    second = len(journal_bytes(1, record("a")))
    for offset in range(second, second + 20):
        damaged = bytearray(raw)
        damaged[offset] ^= 0x10
        contents = parse_journal(bytes(damaged))
        assert contents.records == 1 and not contents.clean_tail


def test_preallocated_zeros_end_the_journal_cleanly() -> None:
    raw = journal_bytes(2, record("a")) + bytes(4096)
    contents = parse_journal(raw)
    assert contents.records == 1 and contents.clean_tail


@pytest.mark.parametrize("raw", [b"", b"FWJ1", encode_header(1)[:-1], b"XXXX" + encode_header(1)[4:]])
def test_a_bad_header_means_no_journal(raw: bytes) -> None:
    contents = parse_journal(raw + encode_record("wf", record("a"), 1.0))
    assert contents.base_version is None and contents.records == 0
    assert not contents.applies_to(1)


def test_journals_never_apply_to_version_zero_snapshots() -> None:
    assert not JournalContents(base_version=0).applies_to(0)
    assert JournalContents(base_version=4).applies_to(4)
    assert not JournalContents(base_version=4).applies_to(5)


def test_a_checksummed_record_with_impossible_content_is_corrupt() -> None:
    bad = NodeRecord(node="a", status=NodeStatus.COMPLETED)
    raw = encode_header(1) + encode_record("wf", bad, 1.0).replace(b'"completed"', b'"exploded"')
    contents = parse_journal(raw)
    assert contents.records == 0  # the edit broke the checksum: a torn tail, dropped
    frame = encode_record("wf", bad, 1.0)
    payload = frame[8:].replace(b'"completed"', b'"exploded__"')
    length = struct.pack("<I", len(payload))
    forged = encode_header(1) + length + struct.pack("<I", zlib.crc32(payload, zlib.crc32(length))) + payload
    data = WorkflowData("wf")
    data.version = 1
    with pytest.raises(CorruptStateError, match="journal record 1"):
        replay(data, parse_journal(forged), "journal")


def test_non_json_output_names_the_node() -> None:
    with pytest.raises(SerializationError, match="node 'a'"):
        encode_record("wf", record("a", output={1, 2}), 1.0)


def test_batched_policy_syncs_every_k_records() -> None:
    policy = SyncPolicy("batched", batch_records=3, batch_ms=60_000)
    assert [policy.sync_now(n, last_sync=1e18) for n in (1, 2, 3)] == [False, False, True]
    assert SyncPolicy("full").sync_now(1, 0.0) and not SyncPolicy("none").sync_now(10**6, 0.0)
    with pytest.raises(ValueError):
        SyncPolicy("sometimes")


# --- journals inside a store ---------------------------------------------------------------------


@pytest.fixture(params=sorted(FILE_IMPLEMENTATIONS))
def factory(request: pytest.FixtureRequest) -> StoreFactory:
    return FILE_IMPLEMENTATIONS[request.param]


def journal_path(store: FileStore, workflow_id: str) -> Path:
    return Path(store.base_dir) / (workflow_id + journal_suffix(store.codec.suffix))


def test_torn_record_after_a_crash_is_dropped_and_appends_continue(
    factory: StoreFactory, tmp_path: Path
) -> None:
    store = factory(tmp_path)
    assert isinstance(store, FileStore)
    data = rich_state("torn")
    store.save(data)
    for node in ("node_0", "node_1", "node_2"):
        data.set_node_status(node, NodeStatus.FAILED)
        store.save_node(data, node)
    expected = data.copy()
    path = journal_path(store, "torn")
    contents = parse_journal(path.read_bytes())
    assert contents.records == 3
    # A crash mid-append: half of a fourth record after the valid ones.
    frame = encode_record("torn", record("node_0", NodeStatus.SKIPPED), 99.0)
    with open(path, "r+b") as handle:
        handle.seek(contents.valid_end)
        handle.write(frame[: len(frame) // 2])
    store.close()
    reopened = factory(tmp_path)
    loaded = reopened.load("torn")
    assert loaded.differences(expected) == [] and loaded.version == 4
    loaded.set_node_status("node_2", NodeStatus.COMPLETED)
    reopened.save_node(loaded, "node_2")
    final = factory(tmp_path).load("torn")
    assert final.version == 5 and final.get_node_status("node_2") is NodeStatus.COMPLETED
    assert final.get_node_status("node_0") is NodeStatus.FAILED


def test_stale_journal_after_a_crash_between_snapshot_and_cleanup_is_ignored(
    factory: StoreFactory, tmp_path: Path
) -> None:
    store = factory(tmp_path)
    assert isinstance(store, FileStore)
    data = rich_state("stale")
    store.save(data)
    data.set_node_status("node_0", NodeStatus.FAILED)
    store.save_node(data, "node_0")
    data.set_node_status("node_1", NodeStatus.FAILED)
    store.save_node(data, "node_1")
    old_journal = journal_path(store, "stale").read_bytes()
    data.set_node_status("node_0", NodeStatus.COMPLETED)
    data.set_node_status("node_1", NodeStatus.SKIPPED)
    store.save(data)  # snapshot version 4, journal removed
    assert not journal_path(store, "stale").exists()
    journal_path(store, "stale").write_bytes(old_journal)  # as if the removal never happened
    store.close()
    reopened = factory(tmp_path)
    assert isinstance(reopened, FileStore)
    loaded = reopened.load("stale")
    assert loaded.version == 4 and loaded.differences(data) == []
    assert loaded.get_node_status("node_1") is NodeStatus.SKIPPED
    summary = reopened.summary("stale")
    assert summary.version == 4 and summary.status_counts["failed"] == 1
    assert reopened.node_status("stale", "node_0") is NodeStatus.COMPLETED
    loaded.set_node_status("node_2", NodeStatus.FAILED)
    reopened.save_node(loaded, "node_2")  # replaces the stale journal
    assert parse_journal(journal_path(reopened, "stale").read_bytes()).base_version == 4
    assert factory(tmp_path).load("stale").differences(loaded) == []


def test_journal_left_by_a_deleted_workflow_never_applies_to_a_new_one(tmp_path: Path) -> None:
    store = JSONFileStore(tmp_path)
    first = rich_state("reused")
    store.save(first)
    first.set_node_status("node_0", NodeStatus.FAILED)
    store.save_node(first, "node_0")
    leftover = journal_path(store, "reused").read_bytes()
    store.delete("reused")
    assert sorted(os.listdir(tmp_path)) == ["reused.lock"]
    journal_path(store, "reused").write_bytes(leftover)  # base version 1, like the new snapshot's
    second = rich_state("reused")
    store.save(second)
    assert second.version == 1
    assert store.load("reused").get_node_status("node_0") is NodeStatus.COMPLETED


def test_long_journals_are_compacted_into_a_snapshot(tmp_path: Path) -> None:
    store = JSONFileStore(tmp_path, compact_after=5)
    data = rich_state("compact", nodes=2)
    store.save(data)
    for index in range(14):  # 5 records, a snapshot, 5 records, a snapshot, 2 records
        data.set_output("node_0", index)
        store.save_node(data, "node_0")
    contents = parse_journal(journal_path(store, "compact").read_bytes())
    assert (contents.base_version, contents.records) == (13, 2)
    assert store.load("compact").differences(data) == [] and data.version == 15


def test_another_process_appending_is_noticed(tmp_path: Path) -> None:
    writer_a, writer_b = JSONFileStore(tmp_path), JSONFileStore(tmp_path)
    data = rich_state("shared")
    writer_a.save(data)
    copy = writer_b.load("shared")
    data.set_output("node_0", "from a")
    writer_a.save_node(data, "node_0")
    copy.set_output("node_1", "from b")
    with pytest.raises(Exception, match="version conflict"):
        writer_b.save_node(copy, "node_1")
    fresh = writer_b.load("shared")
    fresh.set_output("node_1", "from b")
    writer_b.save_node(fresh, "node_1")
    data = writer_a.load("shared")
    data.set_output("node_2", "from a again")
    writer_a.save_node(data, "node_2")  # a's cached journal state is stale: it must re-read
    final = JSONFileStore(tmp_path).load("shared")
    assert [final.get_output(n) for n in ("node_0", "node_1", "node_2")] == [
        "from a",
        "from b",
        "from a again",
    ]
    assert final.version == 4


@pytest.mark.parametrize(
    ("durability", "expected_syncs", "flush_syncs"), [("full", 7, 0), ("batched", 2, 1), ("none", 0, 1)]
)
def test_durability_modes_sync_as_documented(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, durability: str, expected_syncs: int, flush_syncs: int
) -> None:
    store = JSONFileStore(tmp_path, durability=durability, batch_records=3, batch_ms=60_000)
    data = rich_state("synced")
    store.save(data)
    data.set_node_status("node_0", NodeStatus.FAILED)
    store.save_node(data, "node_0")  # creates the journal
    calls: list[int] = []
    real = os.fdatasync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", counting)
    for index in range(7):
        data.set_output("node_1", index)
        store.save_node(data, "node_1")
    assert len(calls) == expected_syncs
    other = JSONFileStore(tmp_path)  # the page cache is shared: another process sees every record
    assert other.load("synced").get_output("node_1") == 6
    store.flush()
    assert len(calls) == expected_syncs + flush_syncs


def test_journal_module_constants_describe_the_file() -> None:
    assert HEADER_SIZE == len(encode_header(1)) == 16
    assert _journal.JOURNAL_SUFFIX == ".journal"


def test_copying_a_store_folder_keeps_its_journals(tmp_path: Path) -> None:
    store = JSONFileStore(tmp_path / "a")
    data = rich_state("copied")
    store.save(data)
    data.set_node_status("node_0", NodeStatus.FAILED)
    store.save_node(data, "node_0")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    assert JSONFileStore(tmp_path / "b").load("copied").differences(data) == []


# --- how a journal is created and grows ---------------------------------------------------------------


def test_journal_extents_double_from_a_small_first_one_up_to_the_cap() -> None:
    kib = 1024
    assert (16 * kib, 256 * kib) == (INITIAL_EXTENT, PREALLOCATE)
    assert [next_extent(size * kib) for size in (0, 16, 20, 64, 200, 256, 1024)] == [
        extent * kib for extent in (16, 16, 20, 64, 200, 256, 256)
    ]
    image = initial_image(7)
    assert len(image) == INITIAL_EXTENT and image[:HEADER_SIZE] == encode_header(7)
    frame = encode_record("w", record("a"), 1.0)
    with_record = parse_journal(initial_image(7, frame))
    assert (with_record.base_version, with_record.records, with_record.clean_tail) == (7, 1, True)
    big = encode_record("w", record("a", output="x" * 40_000), 1.0)
    assert len(initial_image(7, big)) == HEADER_SIZE + len(big) + INITIAL_EXTENT


def test_a_journal_grows_geometrically_as_records_are_appended(tmp_path: Path) -> None:
    """A short run writes (and syncs) 16 KiB of journal, not 256 KiB; a long one grows the
    file by doubling, so the number of extensions stays logarithmic, then by 256 KiB."""
    store = JSONFileStore(tmp_path)
    data = rich_state("grows", nodes=1)
    store.save(data)
    path = journal_path(store, "grows")
    sizes: list[int] = []
    for index in range(200):
        data.set_output("node_0", "x" * 3000 + str(index))  # about 3 KiB a record
        store.save_node(data, "node_0")
        size = path.stat().st_size
        if not sizes or sizes[-1] != size:
            sizes.append(size)
    contents = parse_journal(path.read_bytes())
    assert contents.records == 200 and contents.clean_tail
    assert sizes[0] == INITIAL_EXTENT
    for before, after in itertools.pairwise(sizes):
        # Grown at the record that did not fit: by that record plus one extent.
        assert before + next_extent(before) <= after <= before + next_extent(before) + 4 * 1024
    assert sizes[-1] - contents.valid_end <= PREALLOCATE
    assert len(sizes) <= 8  # 16 KiB -> ~600 KiB: 16, 32, 64, 128, 256, 512, then +256 KiB
    assert store.load("grows").get_output("node_0") == "x" * 3000 + "199"


def test_the_first_record_onto_a_snapshot_is_written_with_the_journal(tmp_path: Path) -> None:
    store = JSONFileStore(tmp_path)
    data = rich_state("onto")
    store.save(data)
    data.set_node_status("node_0", NodeStatus.FAILED)
    store.save_node(data, "node_0")
    raw = journal_path(store, "onto").read_bytes()
    contents = parse_journal(raw)
    assert (contents.base_version, contents.records, len(raw)) == (1, 1, INITIAL_EXTENT)
    assert data.version == 2 and store.load("onto").differences(data) == []
    inode = journal_path(store, "onto").stat().st_ino
    data.set_node_status("node_1", NodeStatus.FAILED)
    store.save_node(data, "node_1")  # appended to the same file
    assert journal_path(store, "onto").stat().st_ino == inode
    assert JSONFileStore(tmp_path).load("onto").differences(data) == [] and data.version == 3


def test_the_first_record_of_a_new_workflow_writes_its_snapshot_and_an_empty_journal(
    factory: StoreFactory, tmp_path: Path
) -> None:
    """No stored state: the record is in the new snapshot (version 1), and an empty journal
    based on it is created alongside, so the next record is an append (no rename, no new file)."""
    store = factory(tmp_path)
    assert isinstance(store, FileStore)
    data = rich_state("brand-new")
    data.set_node_status("node_0", NodeStatus.FAILED)
    store.save_node(data, "node_0")
    assert data.version == 1
    raw = journal_path(store, "brand-new").read_bytes()
    contents = parse_journal(raw)
    assert (contents.base_version, contents.records, len(raw)) == (1, 0, INITIAL_EXTENT)
    names = sorted(os.listdir(tmp_path))
    suffix = store.codec.suffix
    assert names == sorted(["brand-new" + suffix, "brand-new" + journal_suffix(suffix), "brand-new.lock"])
    assert store.load("brand-new").differences(data) == []
    inode = journal_path(store, "brand-new").stat().st_ino
    snapshot = Path(store.path_of("brand-new")).read_bytes()
    for node in ("node_1", "node_2"):
        data.set_node_status(node, NodeStatus.SKIPPED)
        store.save_node(data, node)
    assert journal_path(store, "brand-new").stat().st_ino == inode
    assert Path(store.path_of("brand-new")).read_bytes() == snapshot
    assert parse_journal(journal_path(store, "brand-new").read_bytes()).records == 2
    assert factory(tmp_path).load("brand-new").differences(data) == [] and data.version == 3


def test_an_empty_journal_without_its_snapshot_is_ignored_and_replaced(
    factory: StoreFactory, tmp_path: Path
) -> None:
    """What a crash between the journal's and the snapshot's rename leaves: no state."""
    store = factory(tmp_path)
    assert isinstance(store, FileStore)
    journal_path(store, "half").write_bytes(initial_image(1))
    assert store.list_workflows() == [] and scan_stems(tmp_path) == []
    with pytest.raises(Exception, match="not found"):
        store.load("half")
    data = rich_state("half")
    store.save_node(data, "node_0")
    data.set_node_status("node_1", NodeStatus.FAILED)
    store.save_node(data, "node_1")
    assert factory(tmp_path).load("half").differences(data) == [] and data.version == 2


@pytest.mark.parametrize("cut", [0, 1, HEADER_SIZE - 1, HEADER_SIZE, HEADER_SIZE + 100])
def test_a_new_workflows_journal_cut_short_at_its_name_is_no_journal(
    factory: StoreFactory, tmp_path: Path, cut: int
) -> None:
    """A new workflow's empty journal is written straight at its name, before the snapshot's
    rename: a crash (or a power loss that kept the names but not the journal's bytes) can leave
    it cut at any length, with or without its snapshot. Without one there is no state; with one
    the snapshot loads as it is; and either way the next records are written and load back."""
    store = factory(tmp_path / "alone")
    assert isinstance(store, FileStore)
    journal_path(store, "cut").write_bytes(initial_image(1)[:cut])
    assert store.list_workflows() == [] and scan_stems(tmp_path / "alone") == []
    data = rich_state("cut")
    store.save_node(data, "node_0")
    assert data.version == 1
    data.set_node_status("node_1", NodeStatus.FAILED)
    store.save_node(data, "node_1")
    assert factory(tmp_path / "alone").load("cut").differences(data) == [] and data.version == 2

    store = factory(tmp_path / "beside")
    assert isinstance(store, FileStore)
    data = rich_state("cut")
    store.save_node(data, "node_0")
    store.close()
    journal_path(store, "cut").write_bytes(initial_image(1)[:cut])
    reopened = factory(tmp_path / "beside")
    assert reopened.load("cut").differences(data) == [] and reopened.load("cut").version == 1
    data.set_node_status("node_1", NodeStatus.FAILED)
    reopened.save_node(data, "node_1")
    assert factory(tmp_path / "beside").load("cut").differences(data) == [] and data.version == 2


def test_a_new_workflows_journal_is_written_at_its_name_without_a_temp_file(
    factory: StoreFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first record of a new workflow renames only its snapshot: its empty journal needs no
    temp file (nothing reads it before the snapshot is in place)."""
    store = factory(tmp_path)
    renamed: list[str] = []
    real = os.replace

    def replace(src: str, dst: str) -> None:
        renamed.append(os.path.basename(dst))
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    data = rich_state("direct")
    store.save_node(data, "node_0")
    assert isinstance(store, FileStore)
    assert renamed == ["direct" + store.codec.suffix]
    assert parse_journal(journal_path(store, "direct").read_bytes()).base_version == 1


def test_a_failed_journal_creation_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "w.journal"
    real = os.replace

    def failing(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(Exception, match="create journal"):
        JournalWriter.create(str(path), 1, durable=True, first_frame=encode_record("w", record("a"), 1.0))
    assert os.listdir(tmp_path) == []
    monkeypatch.setattr(os, "replace", real)
    writer = JournalWriter.create(
        str(path), 1, durable=False, first_frame=encode_record("w", record("a"), 1.0)
    )
    try:
        assert writer.records == 1 and writer.unsynced == 1  # not synced: flush() will sync it
    finally:
        writer.close()


def scan_stems(folder: Path) -> list[str]:
    from flow_workbench.stores.folder import scan_folder

    return [Path(entry.path).stem for entry in scan_folder(folder)]
