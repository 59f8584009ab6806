"""Reliability: disk faults (ENOSPC, EIO, EFBIG) during saves, node records and commits.

``test_file_stores.py::test_failure_at_every_io_call...`` fails the Nth call of one function at a
time. These tests are complementary and stricter:

- one counter over *every* I/O call that touches the store folder (``write``, ``pwrite``,
  ``fsync``, ``fdatasync``, ``replace``, ``rename``, ``ftruncate``), so N walks the operation's
  calls in the order they happen, for every durability option;
- the exact outcome is predicted: the old state, unless the fault came after the operation's
  commit point (the rename of a state file or of a commit manifest), when it is the new one;
- a *persistent* fault (every call from the Nth on fails, as on a disk that stays full, so the
  clean-up calls fail too): the state is the old or the new one, never anything else;
- after every fault the folder is checked (listing, scan, temp files after reopening) and the
  same store object keeps working;
- real full disks: ``RLIMIT_FSIZE`` in a child process (EFBIG) and a small tmpfs (ENOSPC).
"""

from __future__ import annotations

import contextlib
import errno
import json
import multiprocessing
import os
import resource
import shutil
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flow_workbench.data import WorkflowData
from flow_workbench.errors import StoreIOError, WorkflowNotFoundError
from flow_workbench.stores._manifests import TRANSACTIONS_DIR
from flow_workbench.stores.files import FileStore
from flow_workbench.stores.folder import scan_folder
from flow_workbench.stores.open import STATE_SUFFIXES
from flow_workbench.testing import rich_state
from tests.helpers.reliability import (
    FILE_KINDS,
    Operation,
    op_commit,
    op_save,
    op_save_node,
    open_file_store,
    record_figure,
    stage_victims,
    temp_files,
)

pytestmark = pytest.mark.timeout(180)

FAULT_CALLS = ("write", "pwrite", "fsync", "fdatasync", "replace", "rename", "ftruncate")


class Injector:
    """Counts the I/O calls that touch ``root`` and makes the ``fail_at``-th one raise.

    ``persistent``: every counted call from ``fail_at`` on raises (a disk that stays full).
    ``committed`` tells whether a state file or a commit manifest had been renamed into place
    before the first injected failure: that is the operation's commit point.
    """

    def __init__(self, root: Path, fail_at: int | None, code: int, persistent: bool = False) -> None:
        self.root = os.path.realpath(root)
        self.fail_at = fail_at
        self.code = code
        self.persistent = persistent
        self.calls: list[str] = []
        self.failed = False
        self.committed = False
        self.active = True
        self._manifest_at: int | None = None

    def _ours(self, name: str, args: tuple[Any, ...]) -> bool:
        if name in ("replace", "rename"):
            return bool(os.path.realpath(os.fspath(args[1])).startswith(self.root))
        try:
            return bool(os.readlink(f"/proc/self/fd/{args[0]}").startswith(self.root))
        except OSError:
            return False

    def wrap(self, name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not self.active or not self._ours(name, args):
                return real(*args, **kwargs)
            self.calls.append(name)
            index = len(self.calls)
            if self.fail_at is not None and (
                index == self.fail_at or (self.persistent and index > self.fail_at)
            ):
                if not self.failed and self._manifest_at is not None:
                    # A commit is decided once its manifest is durable: a failure of the fsync
                    # right after the manifest's rename still rolls the transaction back.
                    self.committed |= not (index == self._manifest_at + 1 and name == "fsync")
                self.failed = True
                raise OSError(self.code, os.strerror(self.code))
            result = real(*args, **kwargs)
            if name in ("replace", "rename") and not self.failed:
                target = os.fspath(args[1])
                if target.endswith(".manifest"):
                    self._manifest_at = index
                else:
                    self.committed |= target.endswith(STATE_SUFFIXES)
            return result

        return wrapper

    @contextlib.contextmanager
    def installed(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[Injector]:
        with monkeypatch.context() as patch:
            for name in FAULT_CALLS:
                patch.setattr(os, name, self.wrap(name, getattr(os, name)))
            yield self
        self.active = False


#: "victim" has: a snapshot ("snapshot"), a snapshot and a journal with records ("journal"), or
#: nothing stored yet ("nothing": a node record then writes its first snapshot and journal).
OPERATIONS: dict[str, tuple[Operation, str]] = {
    "save": (op_save, "snapshot"),
    "save-over-journal": (op_save, "journal"),
    "first-save-of-a-workflow": (op_save, "nothing"),
    "first-node-record": (op_save_node, "snapshot"),
    "node-record": (op_save_node, "journal"),
    "node-record-of-a-new-workflow": (op_save_node, "nothing"),
    "commit": (op_commit, "journal"),
}


def prepare(
    kind: str, folder: Path, durability: str, stored: str
) -> tuple[FileStore, WorkflowData, WorkflowData]:
    store = open_file_store(kind, folder, durability=durability)
    victim, other = stage_victims(store, stored == "journal", new_victim=stored == "nothing")
    return store, victim, other


def check_folder(kind: str, folder: Path, durability: str) -> FileStore:
    """Reopen (recovery) and check nothing left behind trips up a load, listing or scan."""
    reopened = open_file_store(kind, folder, durability=durability)
    assert [name for name in os.listdir(folder) if name.endswith(".tmp")] == []
    assert list((folder / TRANSACTIONS_DIR).glob("*.manifest")) == []
    ids = reopened.list_workflows()
    assert ids in (["other", "victim"], ["other"])  # "victim" may have no state yet
    assert [(Path(e.path).stem, e.error) for e in scan_folder(folder)] == [(i, None) for i in ids]
    return reopened


def load_or_none(store: FileStore, workflow_id: str) -> WorkflowData | None:
    try:
        return store.load(workflow_id)
    except WorkflowNotFoundError:
        return None


def same(loaded: WorkflowData | None, expected: WorkflowData | None) -> bool:
    if loaded is None or expected is None:
        return loaded is expected
    return loaded.differences(expected, ignore=["version", "updated_at"]) == []


def run_every_fault(
    kind: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    durability: str,
    op_name: str,
    persistent: bool,
) -> int:
    operation, stored = OPERATIONS[op_name]
    store, victim, other = prepare(kind, tmp_path / "dry", durability, stored)
    with Injector(tmp_path / "dry", None, 0).installed(monkeypatch) as dry:
        operation(store, victim, other)
    assert dry.calls, "the dry run made no I/O call"
    for fail_at in range(1, len(dry.calls) + 1):
        folder = tmp_path / f"fail-{fail_at}"
        store, victim, other = prepare(kind, folder, durability, stored)
        old_victim, old_other = load_or_none(store, "victim"), store.load("other")
        new_victim, new_other = victim.copy(), other.copy()
        if operation is op_save_node and old_victim is not None:  # a record carries that node only
            new_victim = old_victim.copy()
            new_victim.apply_node_record(victim.node_record("node_0"))
        version_before = victim.version
        code = (errno.ENOSPC, errno.EIO)[fail_at % 2]
        where = f"{dry.calls[fail_at - 1]} (call {fail_at} of {dry.calls})"
        with Injector(folder, fail_at, code, persistent).installed(monkeypatch) as faults:
            try:
                operation(store, victim, other)
            except StoreIOError as error:
                assert error.errno == code, where
                assert victim.version == version_before, f"a failed operation stamped a version: {where}"
            else:
                # Only a best-effort step after the commit point may swallow a fault (syncing
                # the unsynced records of a journal the new snapshot has just superseded).
                assert faults.failed and faults.committed, f"no error raised for {where}"
                assert durability != "full" and dry.calls[fail_at - 1] == "fdatasync", where
        reopened = check_folder(kind, folder, durability)
        for current in (store, reopened):
            got_victim, got_other = load_or_none(current, "victim"), current.load("other")
            victim_old, victim_new = same(got_victim, old_victim), same(got_victim, new_victim)
            other_old, other_new = same(got_other, old_other), same(got_other, new_other)
            assert victim_old or victim_new, f"victim is neither old nor new after {where}"
            if op_name == "commit":
                assert (victim_old and other_old) or (victim_new and other_new), f"half a commit: {where}"
            else:
                assert other_old
            if not persistent:
                # One fault: exactly the old state before the commit point, the new one after it.
                assert victim_new if faults.committed else victim_old, (
                    f"committed={faults.committed} but the state is the other one: {where}"
                )
        # Both store objects keep working after the failure.
        for current in (store, reopened):
            loaded = load_or_none(current, "victim")
            fresh = victim.copy() if loaded is None else loaded
            fresh.set_output("node_2", f"after fault {fail_at}")
            current.save_node(fresh, "node_2")
            fresh.set("after", fail_at)
            current.save(fresh)
        final = open_file_store(kind, folder).load("victim")
        assert final.get("after") == fail_at and final.get_output("node_2") == f"after fault {fail_at}"
        store.close()
        reopened.close()
    return len(dry.calls)


@pytest.mark.parametrize("persistent", [False, True], ids=["one-fault", "disk-stays-broken"])
@pytest.mark.parametrize("op_name", list(OPERATIONS))
@pytest.mark.parametrize("durability", ["full", "batched", "none"])
@pytest.mark.parametrize("kind", FILE_KINDS)
def test_a_fault_at_every_io_call_keeps_the_previous_state(
    kind: str,
    durability: str,
    op_name: str,
    persistent: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """For every N reached by the operation, the Nth I/O call raises ENOSPC or EIO: the operation
    raises ``StoreIOError`` with that errno and stamps no version; the state is exactly the old
    one (or, after the commit point, the new one); a reopened store finds no temp file, no
    pending manifest, lists and scans both workflows without error; both store objects keep
    working. With ``disk-stays-broken`` every later call fails too (clean-ups included)."""
    calls = run_every_fault(kind, tmp_path, monkeypatch, durability, op_name, persistent)
    assert calls >= 1
    record_figure("I/O faults injected", calls)


# --- real full disks ---------------------------------------------------------------------------------


def _fill_in_child(kind: str, folder: str, limit: int, report: str) -> None:
    """With RLIMIT_FSIZE = ``limit`` (SIGXFSZ ignored: writes past it fail with EFBIG or are short)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    store = open_file_store(kind, folder)
    results: dict[str, Any] = {}
    big = "y" * (limit * 2)

    def attempt(name: str, action: Callable[[], None]) -> None:
        try:
            action()
        except StoreIOError as error:
            results[name] = ["StoreIOError", error.errno]
        except Exception as error:
            results[name] = [type(error).__name__, str(error)]
        else:
            results[name] = ["ok", None]

    victim, other, fresh = store.load("victim"), store.load("other"), store.load("fresh")
    victim.set("big", big)
    attempt("save", lambda: store.save(victim))
    victim = store.load("victim")
    victim.set_output("node_0", big)
    attempt("save_node", lambda: store.save_node(victim, "node_0"))
    fresh.set_output("node_0", big)
    attempt("first_save_node", lambda: store.save_node(fresh, "node_0"))
    victim, other = store.load("victim"), store.load("other")
    other.set("big", big)

    def commit() -> None:
        with store.transaction() as tx:
            tx.save(victim)
            tx.save(other)

    attempt("commit", commit)
    small = store.load("victim")
    small.set("small", True)
    attempt("small_save_after", lambda: store.save(small))
    Path(report).write_text(json.dumps(results))


@pytest.mark.parametrize("kind", FILE_KINDS)
def test_a_file_size_limit_fails_saves_cleanly(kind: str, tmp_path: Path) -> None:
    """A real limit, not an injected error: the child runs with ``RLIMIT_FSIZE`` = 64 KiB, so the
    kernel fails (EFBIG) or shortens (then the store reports ENOSPC) the writes of a large save,
    node record and commit. Each raises ``StoreIOError``; the old states load unchanged, nothing
    left behind trips up the folder, and a small save still works."""
    folder = tmp_path / "store"
    store = open_file_store(kind, folder)
    for name in ("victim", "other", "fresh"):
        store.save(rich_state(name))
    fresh = store.load("fresh")
    fresh.set_output("node_1", "journal me")
    store.save_node(fresh, "node_1")  # "fresh" has a journal; "victim" does not
    before = {name: store.load(name) for name in ("victim", "other", "fresh")}
    report = tmp_path / "report.json"
    process = multiprocessing.get_context("fork").Process(
        target=_fill_in_child, args=(kind, str(folder), 64 * 1024, str(report))
    )
    process.start()
    process.join(timeout=120)
    assert process.exitcode == 0
    results = json.loads(report.read_text())
    for name in ("save", "save_node", "first_save_node", "commit"):
        assert results[name][0] == "StoreIOError" and results[name][1] in (errno.EFBIG, errno.ENOSPC), results
    assert results["small_save_after"] == ["ok", None], results
    reopened = open_file_store(kind, folder)
    assert temp_files(folder) == [] or all(".manifest." in name for name in temp_files(folder))
    assert reopened.list_workflows() == ["fresh", "other", "victim"]
    assert all(entry.error is None for entry in scan_folder(folder))
    for name in ("other", "fresh"):
        assert reopened.load(name).differences(before[name]) == []
    victim = reopened.load("victim")
    assert victim.get("small") is True and victim.get("big") is None
    assert victim.differences(before["victim"], ignore=["version", "updated_at", "data"]) == []


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("a real full disk needs root to mount a small tmpfs (not root here)")
    mount = shutil.which("mount")
    if mount is None:
        pytest.skip("no mount command to create a small tmpfs")
    where.mkdir()
    done = subprocess.run(
        [mount, "-t", "tmpfs", "-o", f"size={size},mode=0700", f"fw-{uuid.uuid4().hex[:8]}", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


def fill(folder: Path) -> Path:
    """Write a filler file until the filesystem is full."""
    filler = folder / "filler.bin"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        chunk = b"\xff" * 4096
        while True:
            try:
                os.write(fd, chunk)
            except OSError as error:
                assert error.errno == errno.ENOSPC
                break
    finally:
        os.close(fd)
    return filler


@pytest.mark.parametrize("kind", FILE_KINDS)
def test_a_really_full_disk_fails_saves_cleanly_and_recovers_when_space_returns(
    kind: str, tmp_path: Path
) -> None:
    """A 1 MiB tmpfs filled to the last byte (real ENOSPC from the kernel): a save, a first node
    record and a commit raise ``StoreIOError(ENOSPC)``; every state loads unchanged; the folder
    lists and scans cleanly; once space is freed, the same store object saves again."""
    with small_tmpfs(tmp_path / "disk", "1m") as disk:
        folder = disk / "store"
        store = open_file_store(kind, folder)
        for name in ("victim", "other"):
            store.save(rich_state(name))
        before = {name: store.load(name) for name in ("victim", "other")}
        filler = fill(disk)
        victim, other = store.load("victim"), store.load("other")
        victim.set("new", "x" * 8192)
        other.set("new", "x" * 8192)
        with pytest.raises(StoreIOError) as caught:
            store.save(victim)
        assert caught.value.errno == errno.ENOSPC
        victim.set_output("node_0", "y" * 8192)
        with pytest.raises(StoreIOError) as caught:
            store.save_node(victim, "node_0")
        assert caught.value.errno == errno.ENOSPC
        with pytest.raises(StoreIOError) as caught, store.transaction() as tx:
            tx.save(victim)
            tx.save(other)
        assert caught.value.errno == errno.ENOSPC
        for current in (store, open_file_store(kind, folder)):
            assert current.list_workflows() == ["other", "victim"]
            assert all(entry.error is None for entry in scan_folder(folder))
            for name, expected in before.items():
                assert current.load(name).differences(expected) == []
        assert [name for name in os.listdir(folder) if name.endswith(".tmp")] == []
        filler.unlink()
        store.save(victim)
        store.save_node(victim, "node_0")
        assert open_file_store(kind, folder).load("victim").get("new") == "x" * 8192
        store.close()


# --- the order of calls that makes an acknowledged write durable -------------------------------------


def _calls_of(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, durability: str, op_name: str
) -> str:
    operation, stored = OPERATIONS[op_name]
    folder = tmp_path / f"{durability}-{op_name}"
    store, victim, other = prepare(kind, folder, durability, stored)
    with Injector(folder, None, 0).installed(monkeypatch) as dry:
        operation(store, victim, other)
    return " ".join(dry.calls)


@pytest.mark.parametrize("kind", FILE_KINDS)
def test_io_call_order_makes_each_acknowledged_write_durable(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Power loss cannot be simulated here, so the durability claims rest on the order of the
    calls each operation makes before it returns (the guide's temp-fsync-rename-dirfsync rule):

    - ``full``: a snapshot is written, fsynced, renamed, then the directory is fsynced; a node
      record is written in place and fdatasynced; a commit fsyncs every temp file and the
      manifest before the manifest's rename, and the directory after the renames.
      The first record onto a snapshot goes into the new journal's temp file (header, record,
      zeros), fsynced, renamed, directory fsynced. The first record of a workflow with no
      state writes a snapshot temp file, fsynced, then an empty journal straight at its name
      (not synced: nothing reads it before the snapshot is in place), renames the snapshot,
      then fsyncs the directory once.
    - ``batched``: snapshots as ``full``; a record is not synced until the batch is due (the
      first record of a journal is in its fsynced temp file).
    - ``none``: no fsync of snapshots, manifests or records (only a journal that a commit
      supersedes has its unsynced records fdatasynced when its descriptor is closed; a save
      closes it without a sync).
    """
    ops = ("save", "node-record", "commit", "first-node-record", "node-record-of-a-new-workflow")
    calls = {
        (durability, op): _calls_of(kind, tmp_path, monkeypatch, durability, op)
        for durability in ("full", "batched", "none")
        for op in ops
    }
    assert calls["full", "save"] == "write fsync replace fsync"
    assert calls["full", "node-record"] == "pwrite fdatasync"
    for durability in ("full", "batched"):
        assert calls[durability, "first-node-record"] == "write fsync replace fsync"
        # The new journal holds no record yet: its bytes become durable with its first record's
        # sync; until then a reader takes it for no journal, so it is not fsynced on its own.
        new_workflow = calls[durability, "node-record-of-a-new-workflow"]
        assert new_workflow == "write fsync write replace fsync"
    assert calls["none", "first-node-record"] == "write replace"
    assert calls["none", "node-record-of-a-new-workflow"] == "write write replace"
    assert calls["full", "commit"].startswith(
        "write fsync write fsync write fsync replace fsync replace replace"
    )
    assert calls["full", "commit"].endswith("fsync fsync")
    assert calls["batched", "save"] == "write fsync replace fsync"
    assert calls["batched", "node-record"] == "pwrite"
    assert calls["none", "save"] == "write replace"
    assert calls["none", "node-record"] == "pwrite"
    # The one sync left in "none": records of a journal that a commit supersedes are
    # fdatasynced when it is closed (harmless, see docs/guarantees.md); a save skips it.
    for durability in ("batched", "none"):
        over_journal = _calls_of(kind, tmp_path, monkeypatch, durability, "save-over-journal")
        assert "fdatasync" not in over_journal.split(), over_journal
    assert calls["none", "commit"].split().count("fsync") == 0
    assert calls["none", "commit"].split().count("fdatasync") <= 1
