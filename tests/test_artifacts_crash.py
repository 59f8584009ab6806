"""Artifact outputs and crashes: SIGKILL at random moments, and death before each I/O call of a save.

After every crash the state must load and every artifact it references must read back (a state
never points at a missing artifact); the next save removes what the crash left unreferenced.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from flow_workbench import ArtifactRef, NodeStatus, WorkflowData
from tests.helpers.reliability import FILE_KINDS, exit_at_io_call, heavy, open_file_store, record_figure

_CONTEXT = multiprocessing.get_context("fork")


def _array(step: int) -> np.ndarray:
    """Step ``step``'s artifact: 5,000 values (40 kB), so kills land inside its write too."""
    return np.arange(5_000, dtype="int64") + step


def _initial(workflow_id: str) -> WorkflowData:
    data = WorkflowData(workflow_id)
    for node in ("counter", "array", "fixed"):
        data.set_node_status(node, NodeStatus.COMPLETED)
    data.set_output("counter", 0)
    data.set_output("array", _array(0))
    data.set_output("fixed", np.ones(3))
    return data


def _save_loop(kind: str, folder: str, acks: str) -> None:
    """Store step n+1, n+2, ... as "counter" and a new "array" artifact, cycling through a
    snapshot save, a node record and a two-workflow transaction; acknowledge each step."""
    store = open_file_store(kind, folder)
    data, buddy = store.load("crashy"), store.load("buddy")
    step = data.get_output("counter")
    ack = os.open(acks, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(ack, b"ready\n")
    while True:
        step += 1
        data.set_output("counter", step)
        data.set_output("array", _array(step))
        if step % 3 == 0:
            buddy.set_output("array", _array(-step))
            buddy.set_node_status("array", NodeStatus.COMPLETED)
            with store.transaction() as tx:
                tx.save(data)
                tx.save(buddy)
        elif step % 3 == 1:
            store.save(data)
        else:
            store.save_node(data, "counter")  # the array's record goes in with the next full save
            store.save_node(data, "array")
        os.write(ack, b"%d\n" % step)


def _acked(acks: Path) -> list[int]:
    if not acks.exists():
        return []
    return [int(line) for line in acks.read_text().split() if line != "ready"]


def _wait_ready(acks: Path, process: multiprocessing.process.BaseProcess) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if acks.exists() and b"ready" in acks.read_bytes():
            return
        if not process.is_alive():
            raise AssertionError(f"the saving child died on its own (exit code {process.exitcode})")
        time.sleep(0.001)
    raise AssertionError("the saving child never became ready")


def _referenced(data: WorkflowData) -> set[str]:
    return {
        ref.file_name for ref in data.outputs(load_artifacts=False).values() if isinstance(ref, ArtifactRef)
    }


def _artifact_files(folder: Path, workflow_id: str) -> set[str]:
    path = folder / f"{workflow_id}.artifacts"
    return set(os.listdir(path)) if path.exists() else set()


def _kill_repeatedly(kind: str, folder: Path, kills: int, seed: int) -> None:
    store = open_file_store(kind, folder)
    store.save(_initial("crashy"))
    store.save(WorkflowData("buddy"))
    store.close()
    rng = random.Random(seed)
    last_acked, orphans_seen = 0, 0
    for kill in range(kills):
        acks = folder.parent / f"acks-{kill}"
        process = _CONTEXT.Process(target=_save_loop, args=(kind, str(folder), str(acks)))
        process.start()
        _wait_ready(acks, process)
        time.sleep(rng.choice([0.0, 0.01, 0.05, rng.random() * 0.2]))
        os.kill(process.pid or 0, signal.SIGKILL)
        process.join(timeout=30)
        assert process.exitcode == -signal.SIGKILL
        acked = _acked(acks)
        if acked:
            last_acked = acked[-1]
        reopened = open_file_store(kind, folder)
        loaded, buddy = reopened.load("crashy"), reopened.load("buddy")
        step = loaded.get_output("counter")
        assert step in (last_acked, last_acked + 1), f"kill {kill}: step {step}, acknowledged {last_acked}"
        # Every referenced artifact is there and intact: the array of the stored step (a node
        # record of "counter" may be stored without the "array" record that follows it).
        array = loaded.get_output("array")
        assert np.array_equal(array, _array(step)) or np.array_equal(array, _array(step - 1)), f"kill {kill}"
        assert np.array_equal(loaded.get_output("fixed"), np.ones(3))
        if buddy.has_output("array"):
            assert buddy.get_output("array")[0] < 0
        orphans = False
        for name, data in (("crashy", loaded), ("buddy", buddy)):
            files = {f for f in _artifact_files(folder, name) if not f.startswith(".")}
            assert _referenced(data) <= files, f"kill {kill}: {name} points at a missing artifact"
            orphans |= bool(_artifact_files(folder, name) - _referenced(data))
        orphans_seen += orphans
        last_acked = step
        reopened.close()
    # The next save removes whatever the kills left unreferenced (temp files included).
    store = open_file_store(kind, folder)
    data = store.load("crashy")
    data.set_output("counter", last_acked)
    store.save(data)
    assert _artifact_files(folder, "crashy") == _referenced(store.load("crashy"))
    assert last_acked >= kills // 4, "the children saved too little for the kills to be meaningful"
    assert orphans_seen >= 1, "no kill landed between an artifact write and its state"
    record_figure("SIGKILLs survived while saving artifacts", kills)
    record_figure("SIGKILLs after which unreferenced artifacts were left (until a full save)", orphans_seen)


@pytest.mark.timeout(150)
@pytest.mark.parametrize("kind", FILE_KINDS)
def test_sigkill_while_saving_artifacts_never_leaves_a_state_pointing_at_a_missing_one(
    kind: str, tmp_path: Path
) -> None:
    """40 SIGKILLs (200 heavy) of a child storing a new 40 kB array artifact at every step
    through snapshot saves, node records and transactions. After each: the state loads, holds
    the last acknowledged step or the one in flight, and every artifact it references reads
    back intact; the next save leaves exactly the referenced artifacts."""
    _kill_repeatedly(kind, tmp_path / "store", 40, seed=len(kind))


@heavy
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("kind", FILE_KINDS)
def test_heavy_sigkill_while_saving_artifacts(kind: str, tmp_path: Path) -> None:
    _kill_repeatedly(kind, tmp_path / "store", 200, seed=7)


# --- death before each I/O call of one save ------------------------------------------------------

_CALLS = ("write", "fsync", "replace", "rename", "mkdir", "unlink")


def _die_at_call(kind: str, folder: str, mode: str, die_at: int, count_file: str) -> None:
    """Replace the stored array with a new one (``mode``: "save" or "save_node"), dying with
    ``os._exit`` just before the ``die_at``-th I/O call inside ``folder``; writes the number of
    calls made to ``count_file`` when it gets to the end."""
    store = open_file_store(kind, folder)
    data = store.load("wf")
    data.set_output("array", _array(1))
    calls = exit_at_io_call(folder, _CALLS, die_at)
    if mode == "save":
        store.save(data)
    else:
        store.save_node(data, "array")
    Path(count_file).write_text(str(calls[0]))
    os._exit(0)


def _prepare(kind: str, folder: Path) -> None:
    store = open_file_store(kind, folder)
    data = _initial("wf")
    store.save(data)
    data.set_output("counter", 1)
    store.save_node(data, "counter")  # a journal exists: save_node appends a record
    store.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["save", "save_node"])
@pytest.mark.parametrize("kind", FILE_KINDS)
def test_death_before_each_call_of_an_artifact_save_leaves_a_readable_state(
    kind: str, mode: str, tmp_path: Path
) -> None:
    """The artifact's temp file, its fsync, its rename, the folder fsync, then the state (or
    the journal record), then the removal of the old artifact: the process dies before each
    call in turn. Each time the state loads with the old array or the new one, both readable,
    and the next save leaves exactly the referenced artifacts."""
    counted = tmp_path / "count"
    dry = tmp_path / "dry"
    _prepare(kind, dry)
    process = _CONTEXT.Process(target=_die_at_call, args=(kind, str(dry), mode, 0, str(counted)))
    process.start()
    process.join(timeout=60)
    assert process.exitcode == 0
    total = int(counted.read_text())
    assert total >= 4
    outcomes: Counter[str] = Counter()
    for die_at in range(1, total + 2):
        folder = tmp_path / f"die-{die_at}"
        _prepare(kind, folder)
        process = _CONTEXT.Process(target=_die_at_call, args=(kind, str(folder), mode, die_at, str(counted)))
        process.start()
        process.join(timeout=60)
        assert process.exitcode == (3 if die_at <= total else 0)
        store = open_file_store(kind, folder)
        loaded = store.load("wf")
        array = loaded.get_output("array")
        if np.array_equal(array, _array(1)):
            outcomes["new"] += 1
        else:
            assert np.array_equal(array, _array(0)), f"die at {die_at}"
            assert die_at <= total, "the acknowledged save was lost"
            outcomes["old"] += 1
        assert np.array_equal(loaded.get_output("fixed"), np.ones(3))
        loaded.set_output("counter", 2)
        store.save(loaded)
        assert _artifact_files(folder, "wf") == _referenced(store.load("wf")), f"die at {die_at}"
        store.close()
    assert outcomes["new"] >= 1 and outcomes["old"] >= 1
    record_figure("crashes at each call of an artifact save", total + 1)
