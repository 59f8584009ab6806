"""JSONFileStore and FlatBuffersStore: files on disk, Go interop, faults, crashes, several processes."""

from __future__ import annotations

import contextlib
import errno
import json
import multiprocessing
import os
import random
import shutil
import signal
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import filelock
import orjson
import pytest

from flow_workbench.data import WorkflowData
from flow_workbench.errors import (
    CorruptStateError,
    StoreError,
    StoreIOError,
    VersionConflictError,
    WorkflowNotFoundError,
)
from flow_workbench.status import NodeStatus
from flow_workbench.stores._journal import journal_suffix
from flow_workbench.stores._manifests import TRANSACTIONS_DIR
from flow_workbench.stores._manifests import encode_manifest as _encode_manifest
from flow_workbench.stores.base import StateFormat, WorkflowSummary, summary_from_data
from flow_workbench.stores.files import FileStore
from flow_workbench.stores.flatbuffers import FlatBuffersStore
from flow_workbench.stores.folder import scan_folder
from flow_workbench.stores.json_file import JSONFileStore
from flow_workbench.testing import StoreFactory, rich_state
from tests.helpers.paths import GOLDEN_GO
from tests.helpers.reliability import Operation, op_commit, op_save, op_save_node, stage_victims
from tests.helpers.stores import FILE_IMPLEMENTATIONS


@pytest.fixture(params=sorted(FILE_IMPLEMENTATIONS))
def factory(request: pytest.FixtureRequest) -> StoreFactory:
    return FILE_IMPLEMENTATIONS[request.param]


def open_store(factory: StoreFactory, folder: Path) -> FileStore:
    store = factory(folder)
    assert isinstance(store, FileStore)
    return store


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.tmp"))


# --- files, modes, Go interop ---------------------------------------------------------------------


def test_files_are_private_and_the_folder_is_created(factory: StoreFactory, tmp_path: Path) -> None:
    folder = tmp_path / "nested" / "store"
    store = open_store(factory, folder)
    data = rich_state("private")
    store.save(data)
    data.set_node_status("node_0", NodeStatus.FAILED)
    store.save_node(data, "node_0")
    names = sorted(os.listdir(folder))
    suffix = store.codec.suffix
    assert names == sorted(["private" + suffix, "private" + journal_suffix(suffix), "private.lock"])
    for name in names:
        assert stat.S_IMODE(os.stat(folder / name).st_mode) == 0o600, name


def test_go_json_golden_loads_value_exact_and_is_rewritten_readably(tmp_path: Path) -> None:
    shutil.copy(GOLDEN_GO / "v012_format_full.json", tmp_path / "v012_format_full.json")
    store = JSONFileStore(tmp_path)
    assert store.list_workflows() == ["v012_format_full"]
    data = store.load("v012_format_full")
    assert data.get("balance_cents") == 9007199254740993 and data.version >= 1 << 62  # content token
    assert store.summary("v012_format_full").format is StateFormat.GO_JSON
    data.set_node_status("waiting_node", NodeStatus.COMPLETED)
    store.save_node(data, "waiting_node")  # no journal on a Go file: rewritten whole, in our layout
    assert not (tmp_path / "v012_format_full.journal").exists()
    document = json.loads((tmp_path / "v012_format_full.json").read_bytes())
    assert document["data"]["balance_cents"] == 9007199254740993
    assert document["nodeStatus"]["waiting_node"] == "completed"
    assert document["waits"] == {"waiting_node": 1893456000000} and document["trigger_cause"] == 2
    assert store.summary("v012_format_full").format is StateFormat.JSON


def test_go_flatbuffers_goldens_load_value_exact(tmp_path: Path) -> None:
    for name in ("v012_format_full.fb", "m1_format_int.fb"):
        shutil.copy(GOLDEN_GO / name, tmp_path / name)
    store = FlatBuffersStore(tmp_path)
    assert store.list_workflows() == ["m1_format_int", "v012_format_full"]
    full = store.load("v012_format_full")
    assert full.get("balance_cents") == 9007199254740993 and full.get("vip") is True
    assert full.get_node_status("compfailed_node") is NodeStatus.COMPENSATION_FAILED
    assert store.load("m1_format_int").get("small") == 42


def test_go_layout_store_writes_files_the_go_reader_layout_holds(tmp_path: Path) -> None:
    store = FlatBuffersStore(tmp_path, layout="go")
    data = rich_state("to-go")
    store.save(data)
    loaded = FlatBuffersStore(tmp_path).load("to-go")
    assert loaded.node_statuses() == data.node_statuses() and loaded.outputs() == data.outputs()
    assert loaded.node_history("failing").attempts == 0  # history is what the Go layout drops
    with pytest.raises(ValueError, match="layout"):
        FlatBuffersStore(tmp_path, layout="columnar")


# --- hostile files --------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_every_truncation_of_a_state_file_is_corrupt(factory: StoreFactory, tmp_path: Path) -> None:
    store = open_store(factory, tmp_path)
    data = WorkflowData("cut")
    data.set("k", "v")
    data.set_node_status("a", NodeStatus.COMPLETED)
    store.save(data)
    path = Path(store.path_of("cut"))
    raw = path.read_bytes()
    for length in range(len(raw)):
        path.write_bytes(raw[:length])
        with pytest.raises(CorruptStateError):
            store.load("cut")
    path.write_bytes(raw)
    assert store.load("cut").differences(data) == []


@pytest.mark.timeout(120)
def test_bit_flips_and_random_bytes_are_corrupt(factory: StoreFactory, tmp_path: Path) -> None:
    store = open_store(factory, tmp_path)
    data = rich_state("flipped", nodes=1)
    store.save(data)
    path = Path(store.path_of("flipped"))
    raw = path.read_bytes()
    step = max(1, len(raw) // 400)
    for index in range(0, len(raw), step):
        damaged = bytearray(raw)
        damaged[index] ^= 1 << (index % 8)
        path.write_bytes(bytes(damaged))
        with pytest.raises(CorruptStateError):
            store.load("flipped")
        # Summaries may skip bytes they do not read (FlatBuffers verifies per block); never another error.
        with contextlib.suppress(CorruptStateError):
            assert store.summary("flipped").workflow_id == "flipped"
    for seed in range(50):
        path.write_bytes(os.urandom(seed * 13))
        with pytest.raises(CorruptStateError):
            store.load("flipped")


def test_oversized_files_are_corrupt(tmp_path: Path) -> None:
    store = JSONFileStore(tmp_path, max_file_bytes=100)
    store_big = JSONFileStore(tmp_path)
    store_big.save(rich_state("big"))
    with pytest.raises(CorruptStateError, match="cap"):
        store.load("big")


@pytest.mark.parametrize("kind", ["symlink", "directory"])
def test_a_symlink_or_directory_in_place_of_a_state_file_is_refused(
    factory: StoreFactory, tmp_path: Path, kind: str
) -> None:
    store = open_store(factory, tmp_path / "store")
    path = Path(store.path_of("planted"))
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    if kind == "symlink":
        path.symlink_to(outside)
    else:
        path.mkdir()
    expected = "symbolic link" if kind == "symlink" else "directory"
    with pytest.raises(CorruptStateError, match=expected):
        store.load("planted")
    with pytest.raises(CorruptStateError, match=expected):
        store.save(WorkflowData("planted"))
    with pytest.raises(StoreError):
        store.delete("planted")
    assert outside.read_text() == "secret"
    assert store.list_workflows() == []


def tree(folder: Path) -> dict[str, bytes | None]:
    """Every entry under ``folder`` with its bytes (None for a folder), symlinks not followed."""
    return {
        str(path.relative_to(folder)): None if path.is_dir() else path.read_bytes()
        for path in sorted(folder.rglob("*"))
    }


def plant_transactions_symlink(store: FileStore, tmp_path: Path) -> Path:
    """Point the store's ``.transactions`` at a folder outside it, holding a file of its own."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("not the store's")
    (Path(store.base_dir) / TRANSACTIONS_DIR).symlink_to(outside, target_is_directory=True)
    return outside


@pytest.mark.filterwarnings("ignore:ignoring transaction manifests")  # asserted in the next test
def test_a_commit_never_writes_through_a_symlinked_transactions_folder(
    factory: StoreFactory, tmp_path: Path
) -> None:
    store = open_store(factory, tmp_path / "store")
    a, b = rich_state("a"), rich_state("b")
    store.save(a)
    store.save(b)
    outside = plant_transactions_symlink(store, tmp_path)
    before = tree(outside)
    a.set("txn", 1)
    b.set("txn", 1)
    with pytest.raises(CorruptStateError, match="symbolic link") as refused, store.transaction() as tx:
        tx.save(a)
        tx.save(b)
    assert TRANSACTIONS_DIR in str(refused.value)
    assert tree(outside) == before
    assert temp_files(tmp_path / "store") == []
    assert {store.load(x).get("txn") for x in ("a", "b")} == {None}  # nothing half-committed
    assert (a.version, b.version) == (1, 1)
    store.save(a)  # plain saves need no manifest and still work
    assert store.load("a").get("txn") == 1


def test_recovery_never_reads_manifests_through_a_symlinked_transactions_folder(
    factory: StoreFactory, tmp_path: Path
) -> None:
    """A manifest outside the folder, reached through a planted symlink, would rename a planted
    temp file over a state file; recovery ignores the link (with a warning) instead."""
    folder = tmp_path / "store"
    store = open_store(factory, folder)
    store.save(rich_state("a"))
    suffix = store.codec.suffix
    forged_state = rich_state("a")
    forged_state.set("forged", True)
    donor = open_store(factory, tmp_path / "donor")
    donor.save(forged_state)
    temp_name = f".a{suffix}.forged.tmp"
    shutil.copy(donor.path_of("a"), folder / temp_name)
    outside = plant_transactions_symlink(store, tmp_path)
    (outside / f"{'0' * 32}.manifest").write_bytes(_encode_manifest([("a", temp_name, f"a{suffix}")]))
    before = tree(outside)

    with pytest.warns(UserWarning, match="symbolic link"):
        reopened = open_store(factory, folder)
    with pytest.warns(UserWarning, match="symbolic link"):
        assert reopened.load("a").get("forged") is None
    assert tree(outside) == before


def test_stray_files_are_ignored_by_list_workflows(factory: StoreFactory, tmp_path: Path) -> None:
    store = open_store(factory, tmp_path)
    store.save(WorkflowData("real"))
    suffix = store.codec.suffix
    for name in ["notes.txt", f"bad\x1bid{suffix}", f"..{suffix}", f".real{suffix}.abc123.tmp", "x.lock"]:
        (tmp_path / name).write_text("stray")
    (tmp_path / "orphan.journal").write_bytes(b"FWJ1")
    (tmp_path / f"dir{suffix}").mkdir()
    (tmp_path / f"link{suffix}").symlink_to(tmp_path / "notes.txt")
    assert store.list_workflows() == ["real"]
    # Names Go accepts as ids are ids here too (listed even though their content is not a state).
    (tmp_path / f".hidden{suffix}").write_text("stray")
    (tmp_path / f"bad id!{suffix}").write_text("stray")
    assert store.list_workflows() == [".hidden", "bad id!", "real"]


# --- injected I/O failures --------------------------------------------------------------------------

FAULT_TARGETS = ["write", "pwrite", "fsync", "fdatasync", "replace"]


class Crash(BaseException):
    """Stands in for the process dying at this point (no ``except Exception`` may catch it)."""


def patched(
    monkeypatch: pytest.MonkeyPatch, name: str, fail_at: int | None, error: BaseException
) -> list[int]:
    """Count calls of ``os.<name>``; the ``fail_at``-th call raises ``error`` instead."""
    real = getattr(os, name)
    calls: list[int] = []

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == fail_at:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(os, name, wrapper)
    return calls


def prepared(
    factory: StoreFactory, folder: Path, with_journal: bool
) -> tuple[FileStore, WorkflowData, WorkflowData]:
    store = open_store(factory, folder)
    return (store, *stage_victims(store, with_journal))


@pytest.mark.timeout(300)
@pytest.mark.parametrize("operation", [op_save, op_save_node, op_commit], ids=lambda f: f.__name__)
@pytest.mark.parametrize("with_journal", [False, True], ids=["no-journal", "journal"])
@pytest.mark.parametrize("target", FAULT_TARGETS)
def test_failure_at_every_io_call_leaves_a_loadable_state(
    factory: StoreFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    operation: Operation,
    with_journal: bool,
    target: str,
) -> None:
    with monkeypatch.context() as counting:
        store, victim, other = prepared(factory, tmp_path / "dry", with_journal)
        calls = patched(counting, target, None, OSError())
        operation(store, victim, other)
    for fail_at in range(1, len(calls) + 1):
        folder = tmp_path / f"fail-{fail_at}"
        store, victim, other = prepared(factory, folder, with_journal)
        old_victim, old_other = store.load("victim"), store.load("other")
        new_victim, new_other = victim.copy(), other.copy()
        code = errno.ENOSPC if fail_at % 2 else errno.EIO
        with monkeypatch.context() as failing:
            patched(failing, target, fail_at, OSError(code, os.strerror(code)))
            with pytest.raises(StoreIOError) as caught:
                operation(store, victim, other)
        assert caught.value.errno == code
        decided = list((folder / TRANSACTIONS_DIR).glob("*.manifest"))
        if not decided:  # temp files of a decided commit wait for recovery to rename them
            assert temp_files(folder) == [], f"temp file left after failing {target} call {fail_at}"
        reopened = open_store(factory, folder)  # recovery: a decided commit is finished
        assert temp_files(folder) == [] and list((folder / TRANSACTIONS_DIR).glob("*.manifest")) == []
        for current in (store, reopened):
            assert current.list_workflows() == ["other", "victim"]
            loaded_victim, loaded_other = current.load("victim"), current.load("other")
            victim_old = not loaded_victim.differences(old_victim)
            other_old = not loaded_other.differences(old_other)
            victim_new = loaded_victim.differences(new_victim, ignore=["version", "updated_at"]) == []
            other_new = loaded_other.differences(new_other, ignore=["version", "updated_at"]) == []
            assert victim_old or victim_new
            if operation is op_commit:
                assert (victim_old and other_old) or (victim_new and other_new), "half a transaction"
            elif operation is op_save_node or target != "fsync":
                # Only the directory fsync after the rename comes too late to keep the old state.
                assert victim_old, f"{target} call {fail_at} changed the state"
            assert victim.version == old_victim.version, "a failed save must not stamp a version"
        # The store is still usable after the failure.
        fresh = reopened.load("victim")
        fresh.set_output("node_0", "after the failure")
        reopened.save_node(fresh, "node_0")
        assert open_store(factory, folder).load("victim").get_output("node_0") == "after the failure"


# --- crashes in the middle of a commit ---------------------------------------------------------------


@pytest.mark.parametrize("crash_at_replace", [1, 2, 3])
def test_interrupted_commit_is_all_or_nothing_after_recovery(
    factory: StoreFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash_at_replace: int
) -> None:
    store = open_store(factory, tmp_path)
    a, b = rich_state("a"), rich_state("b")
    store.save(a)
    store.save(b)
    a.set("txn", 1)
    b.set("txn", 1)
    with monkeypatch.context() as crashing:
        # Call 1 renames the manifest into place; calls 2 and 3 rename the two states.
        patched(crashing, "replace", crash_at_replace, Crash())
        with pytest.raises(Crash), store.transaction() as tx:
            tx.save(a)
            tx.save(b)
    manifest_written = crash_at_replace > 1
    assert bool(list((tmp_path / TRANSACTIONS_DIR).glob("*.manifest"))) == manifest_written
    # An instance that was open all along finishes the commit on its next load.
    assert store.load("a").get("txn") == (1 if manifest_written else None)
    reopened = open_store(factory, tmp_path)
    values = {reopened.load(x).get("txn") for x in ("a", "b")}
    assert values == ({1} if manifest_written else {None})
    assert temp_files(tmp_path) == []
    assert list((tmp_path / TRANSACTIONS_DIR).glob("*.manifest")) == []


def test_temp_files_are_cleaned_unless_their_workflow_is_locked(tmp_path: Path) -> None:
    store = JSONFileStore(tmp_path)
    store.save(WorkflowData("busy"))
    store.save(WorkflowData("idle"))
    for name in ("busy", "idle"):
        (tmp_path / f".{name}.json.x1y2z3.tmp").write_bytes(b"partial")
    # Another process saving "busy" holds its lock (filelock uses the same flock protocol).
    with filelock.FileLock(str(tmp_path / "busy.lock")):
        JSONFileStore(tmp_path)
        assert temp_files(tmp_path) == [".busy.json.x1y2z3.tmp"]
    JSONFileStore(tmp_path)
    assert temp_files(tmp_path) == []
    assert store.list_workflows() == ["busy", "idle"]


@pytest.mark.parametrize("kind", [JSONFileStore, FlatBuffersStore])
def test_opening_a_store_removes_artifact_temp_files_a_dead_writer_left(
    kind: type[JSONFileStore] | type[FlatBuffersStore], tmp_path: Path
) -> None:
    import numpy as np

    store = kind(tmp_path)
    for name in ("busy", "idle"):
        data = WorkflowData(name)
        data.set_node_status("frame", NodeStatus.COMPLETED)
        data.set_output("frame", np.arange(1000.0))
        store.save(data)
    artifacts = {name: tmp_path / f"{name}.artifacts" for name in ("busy", "idle")}
    kept = {name: sorted(p.name for p in folder.iterdir()) for name, folder in artifacts.items()}
    left = ".0123456789abcdef0123456789abcdef.arrow.x1y2z3.tmp"
    for folder in artifacts.values():
        (folder / left).write_bytes(b"partial frame")
    # A folder planted under an artifacts name of an invalid id is not ours: left alone.
    foreign = tmp_path / "bad\x1bid.artifacts"
    foreign.mkdir()
    (foreign / ".x.arrow.abc.tmp").write_bytes(b"")
    with filelock.FileLock(str(tmp_path / "busy.lock")):  # another process saving "busy"
        kind(tmp_path)
        assert temp_files(tmp_path) == [left, ".x.arrow.abc.tmp"]
        assert (artifacts["busy"] / left).exists()
    reopened = kind(tmp_path)
    assert temp_files(tmp_path) == [".x.arrow.abc.tmp"]
    assert {name: sorted(p.name for p in folder.iterdir()) for name, folder in artifacts.items()} == kept
    for name in ("busy", "idle"):  # the stored frames are intact
        assert np.array_equal(reopened.load(name).get_output("frame"), np.arange(1000.0))
    # Without temp files, opening takes no lock: a received folder gets no sidecar files.
    received = tmp_path / "received"
    shutil.copytree(artifacts["idle"], received / "idle.artifacts")
    state_file = next(p for p in tmp_path.iterdir() if p.name in ("idle.json", "idle.fb"))
    shutil.copy(state_file, received)
    kind(received)
    assert sorted(p.name for p in received.iterdir()) == sorted(["idle.artifacts", state_file.name])


def test_summaries_list_statuses_in_one_order_whichever_file_or_path_made_them(tmp_path: Path) -> None:
    """``ls --json`` and the tables show the same order for a JSON file, a FlatBuffers file (with and
    without a journal), a full decode and a Go file with statuses no library knows."""
    statuses = {
        "f": NodeStatus.FAILED,
        "c": NodeStatus.COMPLETED,
        "s": NodeStatus.SKIPPED,
        "p": NodeStatus.PENDING,
    }
    data = WorkflowData("wf")
    data.set_node_statuses(statuses)
    expected = ["pending", "completed", "failed", "skipped"]
    summaries = []
    for kind in (JSONFileStore, FlatBuffersStore):
        store = kind(tmp_path / kind.__name__)
        store.save(data)
        summaries += [store.summary("wf"), summary_from_data(store.load("wf"), StateFormat.JSON)]
    journaled = FlatBuffersStore(tmp_path / "journaled")
    journaled.save(data)
    journaled.save_node(journaled.load("wf"), "f")  # a record: the summary replays it
    assert (tmp_path / "journaled" / "wf.journal").exists()
    summaries.append(journaled.summary("wf"))
    for summary in summaries:
        assert list(summary.status_counts) == expected, summary
    go = tmp_path / "go"
    go.mkdir()
    (go / "wf.json").write_bytes(
        orjson.dumps({"id": "wf", "nodeStatus": {"z": "bogus", "w": "failed", "c": "completed"}, "waits": {}})
    )
    go_summary = JSONFileStore(go).summary("wf")  # a status no library knows counts as unknown
    assert list(go_summary.status_counts.items()) == [("completed", 1), ("failed", 1), ("unknown", 1)]
    custom = WorkflowSummary("wf", StateFormat.JSON, 4, {"zeta": 1, "failed": 1, "alpha": 1, "pending": 1})
    assert list(custom.status_counts) == ["pending", "failed", "alpha", "zeta"]


def test_locks_of_different_workflows_are_independent(tmp_path: Path) -> None:
    store = JSONFileStore(tmp_path, lock_timeout=0.2)
    with filelock.FileLock(str(tmp_path / "held.lock")):
        store.save(WorkflowData("free"))  # does not wait for the other workflow's lock
        with pytest.raises(StoreIOError, match="locked"):
            store.save(WorkflowData("held"))
    store.save(WorkflowData("held"))
    assert store.list_workflows() == ["free", "held"]


# --- several processes ------------------------------------------------------------------------------


def _increment(kind: str, folder: str, workflow_id: str, rounds: int, per_node: bool) -> None:
    store: FileStore = JSONFileStore(folder) if kind == "json" else FlatBuffersStore(folder)
    done = 0
    while done < rounds:
        data = store.load(workflow_id)
        data.set_output("counter", data.get_output("counter") + 1)
        try:
            if per_node:
                store.save_node(data, "counter")
            else:
                store.save(data)
        except VersionConflictError:
            continue
        done += 1
    store.close()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("per_node", [False, True], ids=["save", "save_node"])
def test_processes_incrementing_with_compare_and_set_lose_nothing(
    factory: StoreFactory, tmp_path: Path, per_node: bool
) -> None:
    kind = "json" if factory is FILE_IMPLEMENTATIONS["json"] else "flatbuffers"
    store = open_store(factory, tmp_path)
    data = WorkflowData("count")
    data.set_node_status("counter", NodeStatus.COMPLETED)
    data.set_output("counter", 0)
    store.save(data)
    context = multiprocessing.get_context("spawn")
    workers, rounds = 3, 40
    processes = [
        context.Process(target=_increment, args=(kind, str(tmp_path), "count", rounds, per_node))
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=150)
    assert [p.exitcode for p in processes] == [0] * workers
    final = open_store(factory, tmp_path).load("count")
    assert final.get_output("counter") == workers * rounds
    assert final.version == 1 + workers * rounds


# --- scanning folders --------------------------------------------------------------------------------


def test_scan_folder_summarises_every_state_file_and_reports_broken_ones(tmp_path: Path) -> None:
    shutil.copy(GOLDEN_GO / "v012_format_full.json", tmp_path / "go_json.json")
    shutil.copy(GOLDEN_GO / "v012_format_full.fb", tmp_path / "go_fb.fb")
    json_store, fb_store = JSONFileStore(tmp_path), FlatBuffersStore(tmp_path)
    ours = rich_state("ours_json")
    json_store.save(ours)
    ours.set_node_status("waiting", NodeStatus.COMPLETED)
    json_store.save_node(ours, "waiting")  # journal folded into the summary
    fb_store.save(rich_state("ours_fb"))
    (tmp_path / "broken.json").write_bytes(b'{"flow_workbench":{"checksum":"00000000"')
    (tmp_path / "broken_fb.fb").write_bytes(b"\x00" * 40)
    (tmp_path / "notes.txt").write_text("ignored")
    entries = {entry.workflow_id: entry for entry in scan_folder(tmp_path)}
    assert sorted(entries) == ["broken", "broken_fb", "go_fb", "go_json", "ours_fb", "ours_json"]
    for name in ("broken", "broken_fb"):
        assert not entries[name].ok and entries[name].error_type == "CorruptStateError"
        assert entries[name].error
    formats = {name: entry.summary.format for name, entry in entries.items() if entry.summary is not None}
    assert formats == {
        "go_fb": StateFormat.GO_FLATBUFFERS,
        "go_json": StateFormat.GO_JSON,
        "ours_fb": StateFormat.FLATBUFFERS,
        "ours_json": StateFormat.JSON,
    }
    ours_summary = entries["ours_json"].summary
    assert ours_summary is not None and ours_summary.version == 2
    assert ours_summary.status_counts == {"completed": 4, "failed": 1, "skipped": 1}
    store_rows = json_store.summaries()
    assert [row.workflow_id for row in store_rows] == ["broken", "go_json", "ours_json"]


def test_scan_of_a_missing_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        scan_folder(tmp_path / "missing")


def test_delete_removes_snapshot_and_journal_but_keeps_the_lock_file(
    factory: StoreFactory, tmp_path: Path
) -> None:
    store = open_store(factory, tmp_path)
    data = rich_state("gone")
    store.save(data)
    data.set_node_status("node_0", NodeStatus.FAILED)
    store.save_node(data, "node_0")
    store.delete("gone")
    assert sorted(os.listdir(tmp_path)) == ["gone.lock"]
    with pytest.raises(WorkflowNotFoundError):
        store.summary("gone")
    with pytest.raises(WorkflowNotFoundError):
        store.node_status("gone", "node_0")


def test_durability_none_still_round_trips_without_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    syncs = patched(monkeypatch, "fsync", None, OSError())
    datasyncs = patched(monkeypatch, "fdatasync", None, OSError())
    store = JSONFileStore(tmp_path, durability="none")
    data = rich_state("fast")
    store.save(data)
    data.set_node_status("node_0", NodeStatus.FAILED)
    store.save_node(data, "node_0")
    with store.transaction() as tx:
        tx.save(rich_state("fast2"))
    assert (syncs, datasyncs) == ([], [])
    assert JSONFileStore(tmp_path).load("fast").differences(data) == []


@pytest.fixture
def many_files(tmp_path: Path) -> Iterator[Path]:
    store = JSONFileStore(tmp_path, durability="none")
    for index in range(50):
        store.save(rich_state(f"wf{index:03d}", nodes=2))
    yield tmp_path


def test_scan_folder_of_many_files(many_files: Path) -> None:
    entries = scan_folder(many_files)
    assert len(entries) == 50 and all(entry.ok for entry in entries)
    assert entries[0].workflow_id == "wf000" and entries[-1].workflow_id == "wf049"


# --- SIGKILL at random moments --------------------------------------------------------------------


def _save_forever(kind: str, folder: str, acks: str) -> None:
    """Save versions 1, 2, 3, ... (mostly node records, every 5th a full snapshot), acking each."""
    store: FileStore = JSONFileStore(folder) if kind == "json" else FlatBuffersStore(folder)
    data = store.load("crashy")
    ack = os.open(acks, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(ack, b"ready\n")
    while True:
        data.set_output("counter", data.version + 1)
        if data.version % 5 == 0:
            store.save(data)
        else:
            store.save_node(data, "counter")
        os.write(ack, b"%d\n" % data.version)


@pytest.mark.timeout(300)
def test_sigkill_at_random_moments_leaves_the_last_acknowledged_or_the_next_version(
    factory: StoreFactory, tmp_path: Path
) -> None:
    kind = "json" if factory is FILE_IMPLEMENTATIONS["json"] else "flatbuffers"
    kills = 100 if os.environ.get("FLOW_WORKBENCH_HEAVY") else 12
    store = open_store(factory, tmp_path)
    data = rich_state("crashy")
    data.set_node_status("counter", NodeStatus.RUNNING)
    data.set_output("counter", 1)
    store.save(data)
    acks = tmp_path.parent / f"{tmp_path.name}-acks"
    rng = random.Random(7)
    context = multiprocessing.get_context("spawn")
    last_acked = 1
    for _ in range(kills):
        process = context.Process(target=_save_forever, args=(kind, str(tmp_path), str(acks)))
        process.start()
        deadline = time.monotonic() + 60
        while not (acks.exists() and "ready" in acks.read_text()) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.random() * 0.05)  # a few saves, then the kill lands anywhere
        os.kill(process.pid or 0, signal.SIGKILL)
        process.join(timeout=30)
        lines = acks.read_text().split()
        acked = [int(line) for line in lines[lines.index("ready") + 1 :]] if "ready" in lines else []
        last_acked = acked[-1] if acked else last_acked
        acks.unlink()
        loaded = open_store(factory, tmp_path).load("crashy")
        assert loaded.version in (last_acked, last_acked + 1)
        assert loaded.get_output("counter") == loaded.version
        last_acked = loaded.version
    assert last_acked > 1, "the child never saved anything"
    assert temp_files(tmp_path) == []


def test_a_corrupt_file_is_never_overwritten_but_can_be_deleted(
    factory: StoreFactory, tmp_path: Path
) -> None:
    store = open_store(factory, tmp_path)
    store.save(WorkflowData("damaged"))
    path = Path(store.path_of("damaged"))
    path.write_bytes(b"garbage")
    with pytest.raises(CorruptStateError):
        store.save(WorkflowData("damaged"))
    assert path.read_bytes() == b"garbage"
    store.delete("damaged")
    store.save(WorkflowData("damaged"))
    assert store.load("damaged").version == 1


def test_a_pending_commit_is_finished_before_anyone_writes_over_it(
    factory: StoreFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    committer, bystander = open_store(factory, tmp_path), open_store(factory, tmp_path)
    a = rich_state("a")
    committer.save(a)
    stale = bystander.load("a")
    a.set("txn", 1)
    with monkeypatch.context() as crashing:
        patched(crashing, "replace", 2, Crash())  # the manifest is in place, no state renamed yet
        with pytest.raises(Crash), committer.transaction() as tx:
            tx.save(a)
    stale.set_node_status("node_0", NodeStatus.FAILED)
    with pytest.raises(VersionConflictError):
        bystander.save_node(stale, "node_0")  # the decided commit is rolled forward first
    assert bystander.load("a").get("txn") == 1
    assert list((tmp_path / TRANSACTIONS_DIR).glob("*.manifest")) == []


def test_every_file_kind_opens_the_store_of_its_suffix(tmp_path: Path) -> None:
    """The one registry of file kinds (``stores.open``): each suffix opens its store, whose
    files carry that suffix, and ``go_layout`` reaches the kinds that have a Go layout."""
    from flow_workbench.stores.open import FILE_KINDS, STATE_SUFFIXES, open_file_store

    assert STATE_SUFFIXES == (".fb", ".json")
    for kind in FILE_KINDS:
        with open_file_store(tmp_path / kind.name, kind.suffix) as store:
            assert store.codec.suffix == kind.suffix
            assert store.path_of("w").endswith("w" + kind.suffix)
        with open_file_store(tmp_path / kind.name, kind.suffix, go_layout=True) as store:
            expected = StateFormat.GO_FLATBUFFERS if kind.go_layout else StateFormat.JSON
            assert store.format is expected
    with pytest.raises(ValueError, match=r"not a state file suffix: '\.txt'"):
        open_file_store(tmp_path, ".txt")


def test_the_stores_modules_import_each_other_without_a_cycle() -> None:
    """Every import among ``flow_workbench/stores/*.py`` (function-level ones too, not those
    under ``TYPE_CHECKING``) points one way: lower modules never reach the stores built on them."""
    import ast
    import graphlib

    import flow_workbench.stores as package

    root = Path(package.__file__).parent
    graph: dict[str, set[str]] = {}
    for path in root.glob("*.py"):
        tree = ast.parse(path.read_text())
        typing_only = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for statement in node.body
            for inner in ast.walk(statement)
        }
        deps: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and id(node) not in typing_only:
                deps.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
        own = {path.stem, "__init__"}
        graph[path.stem] = {d for d in deps if (root / f"{d}.py").is_file() and d not in own}
    graph.pop("__init__")
    assert graph["folder"].isdisjoint({"files", "json_file", "flatbuffers", "open"})
    list(graphlib.TopologicalSorter(graph).static_order())  # raises CycleError naming the cycle
