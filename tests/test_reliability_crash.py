"""Reliability: SIGKILL at random moments, of a saving process and of a running workflow.

Complements ``test_file_stores.py::test_sigkill_at_random_moments...`` (12 kills, saves and node
records only): here the child also commits transactions over two workflows, every durability
option is covered, the folder is checked after every kill (listing, scan, temp files, pending
manifests), and a workflow executed with ``Persistence.NODE`` is killed and resumed.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from flow_workbench import DAG, Persistence, Workflow, WorkflowData
from flow_workbench.errors import WorkflowNotFoundError
from flow_workbench.status import NodeStatus
from flow_workbench.stores._manifests import TRANSACTIONS_DIR
from flow_workbench.stores.folder import scan_folder
from flow_workbench.stores.redis import RedisStore
from tests.helpers.reliability import (
    FILE_KINDS,
    exit_at_io_call,
    heavy,
    open_file_store,
    record_figure,
    scaled,
)

# fork: a child starts in milliseconds (nothing to import again), so hundreds of kills stay cheap.
_CONTEXT = multiprocessing.get_context("fork")


def _is_commit_step(step: int) -> bool:
    return step % 3 == 2


def _save_loop(kind: str, folder: str, durability: str, acks: str) -> None:
    """Save steps n+1, n+2, ... of "crashy" forever, appending each acknowledged step to ``acks``.

    Step n is stored as node "counter"'s output. Steps cycle through a full snapshot save, a
    per-node journal record and a transaction committing "crashy" and "buddy" (whose "step"
    value is then n too), so a kill lands inside each kind of write.
    """
    store = open_file_store(kind, folder, durability=durability)
    data, buddy = store.load("crashy"), store.load("buddy")
    step = data.get_output("counter")
    ack = os.open(acks, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(ack, b"ready\n")
    while True:
        step += 1
        data.set_output("counter", step)
        if _is_commit_step(step):
            buddy.set("step", step)
            with store.transaction() as tx:
                tx.save(data)
                tx.save(buddy)
        elif step % 3 == 0:
            store.save(data)
        else:
            store.save_node(data, "counter")
        os.write(ack, b"%d\n" % step)


def _acked(acks: Path) -> list[int]:
    if not acks.exists():
        return []
    lines = acks.read_text().split()
    return [int(line) for line in lines if line != "ready"]


def _wait_ready(acks: Path, process: multiprocessing.process.BaseProcess) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if acks.exists() and b"ready" in acks.read_bytes():
            return
        if not process.is_alive():
            raise AssertionError(f"the saving child died on its own (exit code {process.exitcode})")
        time.sleep(0.001)
    raise AssertionError("the saving child never became ready")


def _kill_saver_repeatedly(kind: str, durability: str, folder: Path, kills: int, seed: int) -> None:
    store = open_file_store(kind, folder, durability=durability)
    crashy, buddy = rich_state_with_counter("crashy"), WorkflowData("buddy")
    buddy.set("step", 0)
    store.save(crashy)
    store.save(buddy)
    store.close()
    rng = random.Random(seed)
    last_acked, last_version, last_step, in_flight_seen, mid_write = 0, crashy.version, 0, 0, 0
    kill = 0
    # On a loaded machine a child may get no CPU before its kill: extra kills, given more time to
    # save, are made until the children have saved enough (every kill is checked the same way).
    while kill < kills or (last_acked < kills // 5 and kill < 4 * kills):
        acks = folder.parent / f"acks-{kill}"
        process = _CONTEXT.Process(target=_save_loop, args=(kind, str(folder), durability, str(acks)))
        process.start()
        _wait_ready(acks, process)
        if kill < kills:
            time.sleep(rng.choice([0.0, 0.0005, 0.002, rng.random() * 0.03]))
        else:
            time.sleep(0.02 + rng.random() * 0.08)
        os.kill(process.pid or 0, signal.SIGKILL)
        process.join(timeout=30)
        assert process.exitcode == -signal.SIGKILL
        acked = _acked(acks)
        if acked:
            assert acked[0] == last_acked + 1, "a child did not resume after the stored step"
            last_acked = acked[-1]

        # Evidence that the kill landed inside a write: a temp file or a pending manifest.
        mid_write += bool(
            [n for n in os.listdir(folder) if n.endswith(".tmp")]
            or list((folder / TRANSACTIONS_DIR).glob("*.manifest"))
        )
        # Opening the store recovers: pending commits are rolled forward, temp files removed.
        reopened = open_file_store(kind, folder, durability=durability)
        # State temp files are removed by recovery; a manifest's temp file is not (its name does
        # not say whose locks guard it; see docs/guarantees.md), but it is never read as one.
        assert [name for name in os.listdir(folder) if name.endswith(".tmp")] == [], f"kill {kill}"
        assert list((folder / TRANSACTIONS_DIR).glob("*.manifest")) == []
        assert reopened.list_workflows() == ["buddy", "crashy"]
        assert [entry.error for entry in scan_folder(folder)] == [None, None]
        loaded, loaded_buddy = reopened.load("crashy"), reopened.load("buddy")
        step = loaded.get_output("counter")
        assert step in (last_acked, last_acked + 1), (
            f"kill {kill}: stored step {step}, last acknowledged {last_acked}"
        )
        in_flight_seen += step == last_acked + 1
        # A transaction is all or nothing: "buddy" holds the newest committed step <= ``step``.
        expected_buddy = max((s for s in range(1, step + 1) if _is_commit_step(s)), default=0)
        assert loaded_buddy.get("step") == expected_buddy, f"half a transaction after kill {kill}"
        # Versions only grow, and exactly when a new step was stored.
        assert (loaded.version > last_version) == (step > last_step) and loaded.version >= last_version
        last_version, last_step = loaded.version, step
        # The summary and the node status agree with the full load.
        assert reopened.summary("crashy").version == loaded.version
        assert reopened.node_status("crashy", "counter") is NodeStatus.COMPLETED
        last_acked = step
        reopened.close()
        kill += 1
    # Most kills land within 2 ms of the child being ready, often inside its first write.
    assert last_acked >= kills // 5, "the children saved too little for the kills to be meaningful"
    record_figure("SIGKILLs survived (saves, records, commits)", kill)
    record_figure("SIGKILLs that landed inside a write", mid_write)
    # The kills must land where it matters (here about a third do: temp files or a pending
    # manifest were found before recovery, and the in-flight step was often stored).
    assert mid_write >= kills // 10, f"only {mid_write} of {kills} kills landed inside a write"
    assert in_flight_seen >= 1, "no kill landed between a save and its acknowledgement"


def rich_state_with_counter(workflow_id: str) -> WorkflowData:
    data = WorkflowData(workflow_id)
    data.set("payload", {"text": "x" * 2000, "numbers": list(range(200))})
    for index in range(20):
        data.set_node_status(f"node_{index}", NodeStatus.COMPLETED)
        data.set_output(f"node_{index}", {"rows": index})
    data.set_node_status("counter", NodeStatus.COMPLETED)
    data.set_output("counter", 0)
    return data


@pytest.mark.timeout(150)
@pytest.mark.parametrize("durability", ["full", "batched", "none"])
@pytest.mark.parametrize("kind", FILE_KINDS)
def test_sigkill_during_saves_records_and_commits_keeps_the_acknowledged_state(
    kind: str, durability: str, tmp_path: Path
) -> None:
    """100 SIGKILLs per store and durability option (200 heavy) of a child cycling through
    snapshot saves, journal records and two-workflow transaction commits. After every kill:
    the store opens and loads without error, holds the last acknowledged step or the one in
    flight, the transaction partner matches (all or nothing), no temp file or manifest is left
    after recovery, and ``list_workflows``/``scan_folder`` see exactly the two workflows. At
    least a tenth of the kills must be seen to land inside a write (a temp file or a pending
    manifest before recovery; in practice about a third do).

    A process crash leaves the page cache intact, so ``durability="none"`` must pass too."""
    _kill_saver_repeatedly(kind, durability, tmp_path / "store", 100, seed=len(kind) * 10 + len(durability))


@heavy
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("durability", ["full", "none"])
@pytest.mark.parametrize("kind", FILE_KINDS)
def test_heavy_sigkill_during_saves_records_and_commits(kind: str, durability: str, tmp_path: Path) -> None:
    """The same with 200 kills per store and durability option."""
    _kill_saver_repeatedly(kind, durability, tmp_path / "store", 200, seed=99)


# --- a crash at every step of the first node record -------------------------------------------------

_STEP_CALLS = ("write", "pwrite", "fsync", "fdatasync", "replace", "rename")


def _die_at_call(kind: str, folder: str, new_workflow: bool, die_at: int, count_file: str) -> None:
    """Make the first node record of "first" (no stored state, or a snapshot without journal),
    dying (``os._exit``, no clean-up runs) just before its ``die_at``-th I/O call in ``folder``.
    Writes the number of calls made to ``count_file`` if it gets to the end."""
    store = open_file_store(kind, folder)
    data = rich_state_with_counter("first")
    if not new_workflow:
        store.save(data)
    data.set_output("counter", 1)
    calls = exit_at_io_call(folder, _STEP_CALLS, die_at)
    store.save_node(data, "counter")
    Path(count_file).write_text(str(calls[0]))
    os._exit(0)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("new_workflow", [True, False], ids=["no-stored-state", "snapshot-only"])
@pytest.mark.parametrize("kind", FILE_KINDS)
def test_a_crash_before_each_call_of_a_first_node_record_leaves_a_consistent_state(
    kind: str, new_workflow: bool, tmp_path: Path
) -> None:
    """A first node record writes a new journal (and, with no stored state, the first snapshot
    with it: snapshot temp + fsync, empty journal written at its name, rename snapshot,
    directory fsync). The process dies before each of its I/O calls in turn, and once after
    the last. Each time, the reopened store finds no temp file, the workflow has its old state
    (none, or the snapshot) or the new one, never an error, and further records and saves work
    and load back. The record counts as done only once every call before its return is made."""
    counted = tmp_path / "count"
    process = _CONTEXT.Process(
        target=_die_at_call, args=(kind, str(tmp_path / "dry"), new_workflow, 0, str(counted))
    )
    process.start()
    process.join(timeout=60)
    assert process.exitcode == 0
    total = int(counted.read_text())
    assert total >= (5 if new_workflow else 2)
    outcomes: Counter[str] = Counter()
    for die_at in range(1, total + 2):
        folder = tmp_path / f"die-{die_at}"
        process = _CONTEXT.Process(
            target=_die_at_call, args=(kind, str(folder), new_workflow, die_at, str(counted))
        )
        process.start()
        process.join(timeout=60)
        assert process.exitcode == (3 if die_at <= total else 0)
        store = open_file_store(kind, folder)
        assert [name for name in os.listdir(folder) if name.endswith(".tmp")] == [], f"die at {die_at}"
        assert all(entry.error is None for entry in scan_folder(folder))
        try:
            loaded = store.load("first")
        except WorkflowNotFoundError:
            assert new_workflow and die_at <= total, f"the snapshot was lost when dying at call {die_at}"
            assert store.list_workflows() == []
            outcomes["none"] += 1
            data = rich_state_with_counter("first")
        else:
            step = loaded.get_output("counter")
            assert step in (0, 1) and not (new_workflow and step == 0)
            assert (loaded.version, step) in ((1, 0), (2, 1), (1, 1))
            outcomes["new" if step == 1 else "old"] += 1
            data = loaded
        if die_at > total:
            assert loaded.get_output("counter") == 1, "the acknowledged record was lost"
        for step in (2, 3):
            data.set_output("counter", step)
            store.save_node(data, "counter")
        assert open_file_store(kind, folder).load("first").get_output("counter") == 3
        data.set_output("counter", 4)
        store.save(data)
        assert open_file_store(kind, folder).load("first").get_output("counter") == 4
        store.close()
    assert outcomes["new"] >= 1 and outcomes["none" if new_workflow else "old"] >= 1
    record_figure("crashes at each step of a first node record", total + 1)


# --- a workflow executed with per-node persistence, killed and resumed -----------------------------


class _LoggedAction:
    """Sleeps a little, appends "<run> <node>" to the execution log, returns "<run>:<node>"."""

    def __init__(self, name: str, run: str, log: str, seed: int) -> None:
        self.name, self.run, self.log = name, run, log
        self.pause = random.Random(seed).random() * 0.004

    def __call__(self, data: WorkflowData) -> str:
        time.sleep(self.pause)
        fd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{self.run} {self.name}\n".encode())  # one O_APPEND write: never torn
        finally:
            os.close(fd)
        return f"{self.run}:{self.name}"


def _dag(nodes: int, run: str, log: str) -> DAG:
    """Levels of three nodes, each depending on every node of the level before."""
    dag = DAG("killed")
    width = 3
    for index in range(nodes):
        level = index // width
        deps = [f"n{d:03d}" for d in range((level - 1) * width, level * width)] if level else []
        # A killed attempt counts toward the node's attempts (flow_workbench.runs): enough retries
        # that no node runs out of them however often the kills interrupt it.
        action = _LoggedAction(f"n{index:03d}", run, log, index)
        dag.add_node(f"n{index:03d}", action, depends_on=deps, retries=KILL_RETRIES)
    return dag


#: More than the kills of the heavy variant: every interrupted node may run again.
KILL_RETRIES = 100


MAX_CONCURRENCY = 2


def _execute(kind: str, folder: str, nodes: int, run: str, log: str) -> None:
    store = open_file_store(kind, folder)
    Workflow(
        _dag(nodes, run, log), "killed", store, persistence=Persistence.NODE, max_concurrency=MAX_CONCURRENCY
    ).execute()
    store.close()


def _log_lines(log: Path) -> list[tuple[str, str]]:
    if not log.exists():
        return []
    return [tuple(line.split(" ", 1)) for line in log.read_text().splitlines()]  # type: ignore[misc]


def _completed(kind: str, folder: Path) -> dict[str, str]:
    """Completed nodes of the stored state and their outputs (empty before the first save)."""
    store = open_file_store(kind, folder)
    try:
        if not store.exists("killed"):
            return {}
        data = store.load("killed")
        return {
            name: data.get_output(name)
            for name, status in data.node_statuses().items()
            if status is NodeStatus.COMPLETED
        }
    finally:
        store.close()


def _kill_workflow_repeatedly(kind: str, tmp_path: Path, kills: int, nodes: int, seed: int) -> None:
    folder, log = tmp_path / "store", tmp_path / "executions.log"
    rng = random.Random(seed)
    completed: dict[str, str] = {}
    in_flight: Counter[str] = Counter()
    killed_runs = 0
    for kill in range(kills):
        run = f"child-{kill}"
        process = _CONTEXT.Process(target=_execute, args=(kind, str(folder), nodes, run, str(log)))
        process.start()
        time.sleep(0.005 + rng.random() * 0.06)
        os.kill(process.pid or 0, signal.SIGKILL)
        process.join(timeout=30)
        killed_runs += process.exitcode == -signal.SIGKILL
        _check_run(run, log, completed, in_flight, _completed(kind, folder))
        completed = _completed(kind, folder)
        if len(completed) == nodes:
            break
    assert killed_runs >= min(kills, 5), "the kills never landed while the workflow ran"
    record_figure("SIGKILLs survived (running workflows)", killed_runs)

    # The parent resumes the workflow and finishes it ...
    _execute(kind, str(folder), nodes, "parent", str(log))
    _check_run("parent", log, completed, in_flight, _completed(kind, folder))
    completed = _completed(kind, folder)
    assert len(completed) == nodes
    # ... and a further child finds nothing left to run.
    process = _CONTEXT.Process(target=_execute, args=(kind, str(folder), nodes, "last", str(log)))
    process.start()
    process.join(timeout=60)
    assert process.exitcode == 0
    assert [line for line in _log_lines(log) if line[0] == "last"] == []

    executions = Counter(node for _, node in _log_lines(log))
    for node in completed:
        assert executions[node] == 1 + in_flight[node], (
            f"{node} ran {executions[node]} times; only {in_flight[node]} kill(s) interrupted it"
        )
    assert sum(in_flight.values()) <= MAX_CONCURRENCY * killed_runs


def _check_run(
    run: str,
    log: Path,
    before: dict[str, str],
    in_flight: Counter[str],
    after: dict[str, str],
) -> None:
    logged = [node for who, node in _log_lines(log) if who == run]
    assert len(logged) == len(set(logged)), f"{run} executed a node twice"
    rerun = set(logged) & set(before)
    assert not rerun, f"{run} executed acknowledged node(s) again: {sorted(rerun)}"
    assert set(before) <= set(after), f"{run} lost acknowledged node(s)"
    assert all(after[name] == output for name, output in before.items()), "an acknowledged output changed"
    new = set(after) - set(before)
    assert new <= set(logged), f"{run}: node(s) completed without running: {sorted(new - set(logged))}"
    assert all(after[name] == f"{run}:{name}" for name in new), "a stored output is not its execution's"
    unacknowledged = set(logged) - new
    assert len(unacknowledged) <= MAX_CONCURRENCY, f"{run}: too many nodes in flight: {unacknowledged}"
    in_flight.update(unacknowledged)


@pytest.mark.timeout(150)
@pytest.mark.parametrize("kind", FILE_KINDS)
def test_node_persistence_survives_sigkill_and_completed_nodes_run_exactly_once(
    kind: str, tmp_path: Path
) -> None:
    """A workflow run with ``Persistence.NODE`` in a child is SIGKILLed at random moments (40
    times, 60 heavy), then resumed by the parent and by a further child.

    What "exactly once" means here. A node's action appends one line to the execution log just
    before it returns; the engine then records the completion in memory and ``save_node``
    appends a journal record (fsynced). A node is *acknowledged* once that record is durable,
    i.e. once the stored state (what the parent loads after the kill) says COMPLETED. A kill
    between the log line and the durable record loses that completion: the node is not
    acknowledged and runs again. That cannot be avoided without making actions idempotent
    (the engine cannot know whether an action's side effects happened), so the guarantee is:

    1. an acknowledged node never runs again (no run logs a node the state held as completed
       before the run started), and its stored output is never changed by a later run;
    2. every node the state holds as completed was executed by the run that acknowledged it
       (its stored output names that run), so nothing is marked completed without running;
    3. the extra executions are exactly the unacknowledged in-flight ones: per killed run at
       most ``max_concurrency`` nodes were logged but not acknowledged, and at the end each
       node ran exactly ``1 + (number of kills that interrupted it)`` times;
    4. a run that is not killed finishes the workflow, and a later run executes nothing.
    """
    kills = scaled(40, 60)
    _kill_workflow_repeatedly(kind, tmp_path, kills, nodes=kills * 9 + 30, seed=len(kind))


@heavy
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("kind", FILE_KINDS)
def test_heavy_node_persistence_many_kills(kind: str, tmp_path: Path) -> None:
    """The per-node persistence kill test with 200 kills over a larger workflow."""
    _kill_workflow_repeatedly(kind, tmp_path, 200, nodes=200 * 9, seed=3)


# --- Redis: what survives a redis-server SIGKILL depends on the server's persistence ---------------


def _start_redis(folder: Path, port: int, persistence: list[str]) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), *persistence],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                reply = sock.recv(64)
                if reply.startswith(b"+PONG"):
                    return process
        except OSError:
            pass
        time.sleep(0.02)
    process.kill()
    raise AssertionError("redis-server did not start")


def _redis_saver(url: str, acks: str) -> None:
    """Save versions of "durable" forever, appending each acknowledged version to ``acks``."""
    store = RedisStore(url, retries=0, socket_timeout=2)
    data = store.load("durable")
    ack = os.open(acks, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    while True:
        data.set_output("counter", data.version + 1)
        if data.version % 2:
            store.save_node(data, "counter")
        else:
            store.save(data)
        os.write(ack, b"%d\n" % data.version)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "persistence",
    [
        ["--appendonly", "yes", "--appendfsync", "always", "--save", ""],
        ["--appendonly", "no", "--save", ""],
    ],
    ids=["aof-always", "no-persistence"],
)
def test_redis_server_sigkill_keeps_acknowledged_saves_only_with_aof_always(
    persistence: list[str], tmp_path: Path
) -> None:
    """A child saves versions of a workflow into Redis; the *server* is SIGKILLed at a random
    moment and restarted on the same data folder (5 times). With ``appendonly yes`` and
    ``appendfsync always`` the restarted server holds the last acknowledged version or the one
    in flight. Without persistence (the test suite's default server) everything is gone: Redis
    durability is the server's configuration, not something the store can add."""
    from tests.helpers.servers import free_port

    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    server = _start_redis(tmp_path, port, persistence)
    rng = random.Random(5)
    try:
        seed = RedisStore(url)
        start = WorkflowData("durable")
        start.set_node_status("counter", NodeStatus.COMPLETED)
        start.set_output("counter", 1)
        seed.save(start)
        seed.close()
        for kill in range(5):
            acks = tmp_path / f"acks-{kill}"
            saver = _CONTEXT.Process(target=_redis_saver, args=(url, str(acks)))
            saver.start()
            time.sleep(0.05 + rng.random() * 0.2)
            server.kill()
            server.wait(timeout=10)
            saver.join(timeout=30)
            if saver.is_alive():
                saver.kill()
                saver.join()
            acked = _acked(acks)
            server = _start_redis(tmp_path, port, persistence)
            store = RedisStore(url)
            if "always" not in persistence:
                assert store.list_workflows() == [], "a server without persistence kept data"
                return
            assert acked, "the saver acknowledged nothing before the kill"
            loaded = store.load("durable")
            assert loaded.version in (acked[-1], acked[-1] + 1), (loaded.version, acked[-1])
            assert loaded.get_output("counter") == loaded.version
            store.close()
    finally:
        server.kill()
        server.wait(timeout=10)
