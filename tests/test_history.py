"""Attempt log, run history and visible running nodes: engine, every store, old files, crashes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from flow_workbench import DAG, NodeContext, NodeStatus, Persistence, Workflow, WorkflowData
from flow_workbench.data import (
    ATTEMPT_LOG_CAP,
    RUN_HISTORY_CAP,
    TRACEBACK_CHARS,
    TRACEBACKS_KEPT,
    AttemptOutcome,
    RunOutcome,
    RunReason,
    RunRecord,
)
from flow_workbench.errors import CorruptStateError, SerializationError, WorkflowExecutionError
from flow_workbench.identity import current_host, current_user
from flow_workbench.recovery import reset_failed
from flow_workbench.runs import CRASHED_ERROR_TYPE, MIN_CRASHED_ATTEMPTS
from flow_workbench.stores import json_codec
from flow_workbench.stores.flatbuffers import FlatBuffersStore
from flow_workbench.stores.json_file import JSONFileStore
from flow_workbench.stores.memory import InMemoryStore
from flow_workbench.testing import StoreFactory, rich_state
from tests.helpers.stores import IMPLEMENTATIONS

GOLDEN_V1 = Path(__file__).parent / "golden" / "v1"


def flaky(failures: int) -> Any:
    """An action that fails its first ``failures`` calls, then returns its attempt number."""
    calls = {"n": 0}

    def action(data: WorkflowData, ctx: NodeContext) -> int:
        calls["n"] += 1
        if calls["n"] <= failures:
            raise ValueError(f"flaky failure {calls['n']}")
        return ctx.attempt

    return action


def history_state() -> WorkflowData:
    """``rich_state`` after two runs: an attempt log with a retry and a traceback, a run history."""
    data = rich_state("wf")
    data.open_attempt("node_0", "r1", 1, at=10.0, host="h1", pid=7)
    data.close_attempt("node_0", AttemptOutcome.FAILED, at=11.0, error_type="E", error="ö", traceback="tb\n")
    data.open_attempt("node_0", "r1", 2, at=12.0, host="h1", pid=7)
    data.close_attempt("node_0", AttemptOutcome.COMPLETED, at=13.5)
    data.open_attempt("failing", "r2", 1, at=20, host="", pid=0)  # int time, still running
    data.put_run(RunRecord("r1", 9.0, 14.0, RunOutcome.SUCCEEDED, RunReason.NEW, 1, 1, 0, 0, "h", "u", 7))
    data.put_run(RunRecord("r2", 19.0, None, RunOutcome.RUNNING, RunReason.RERUN, params={"day": [1, "x"]}))
    return data


# --- 1. the attempt log ----------------------------------------------------------------------------


def test_attempt_log_records_every_attempt_of_a_run() -> None:
    """Regression: only a count and the last attempt were kept."""
    dag = DAG()
    dag.add_node("flaky", flaky(2), retries=2, retry_delay=0.0)
    result = Workflow(dag, "wf", executor="inline").execute()
    log = result.data.attempt_log("flaky")
    assert [(a.number, a.outcome) for a in log] == [(1, "failed"), (2, "failed"), (3, "completed")]
    assert {a.run_id for a in log} == {result.run_id} and result.run_id
    assert log[0].error_type == "ValueError" and log[0].error == "flaky failure 1"
    assert log[0].traceback is not None and "flaky failure 1" in log[0].traceback
    assert "in action" in log[0].traceback  # the frame of the action that raised
    assert log[2].error is None and log[2].traceback is None
    assert all(a.host == current_host() and a.pid == os.getpid() for a in log)
    assert all(a.finished_at is not None and a.duration is not None and a.duration >= 0 for a in log)
    assert log[0].started_at <= log[0].finished_at <= log[1].started_at  # type: ignore[operator]


def test_attempt_log_is_capped_and_keeps_few_tracebacks() -> None:
    data = WorkflowData("wf")
    for number in range(1, ATTEMPT_LOG_CAP + 11):
        data.open_attempt("n", "r", number, at=float(number))
        data.close_attempt("n", "failed", at=number + 0.5, error="x" * 10_000, traceback="t" * 10_000)
    log = data.attempt_log("n")
    assert len(log) == ATTEMPT_LOG_CAP and log[0].number == 11 and log[-1].number == ATTEMPT_LOG_CAP + 10
    kept = [a for a in log if a.traceback is not None]
    assert kept == list(log[-TRACEBACKS_KEPT:])
    assert all(len(a.traceback or "") <= TRACEBACK_CHARS for a in kept)
    assert all(a.error is not None and len(a.error) <= 4096 for a in log)


def test_timeouts_have_their_own_outcome() -> None:
    dag = DAG()
    dag.add_node("slow", lambda data, ctx: ctx.wait(5), timeout=0.05, retries=1, retry_delay=0.0)
    store = InMemoryStore()
    with pytest.raises(WorkflowExecutionError):
        Workflow(dag, "wf", store).execute()
    log = store.load("wf").attempt_log("slow")
    assert [(a.number, a.outcome, a.error_type) for a in log] == [
        (1, "timeout", "NodeTimeoutError"),
        (2, "timeout", "NodeTimeoutError"),
    ]


@pytest.mark.parametrize("persistence", list(Persistence))
def test_every_store_keeps_the_attempt_log_and_the_run_history(
    store_factory: StoreFactory, persistence: Persistence, tmp_path: Path
) -> None:
    store = store_factory(tmp_path / "store")
    try:
        dag = DAG()
        dag.add_node("a", flaky(1), retries=1, retry_delay=0.0)
        dag.add_node("b", lambda data: 1 / 0, depends_on="a", continue_on_error=True)
        first = Workflow(dag, "wf", store, persistence=persistence).execute()
        second = Workflow(dag, "wf", store, persistence=persistence).execute()
        loaded = store.load("wf")
        assert loaded.attempt_logs() == second.data.attempt_logs()
        assert [a.outcome for a in loaded.attempt_log("a")] == ["failed", "completed"]
        assert [a.outcome for a in loaded.attempt_log("b")] == ["failed"]
        assert loaded.runs() == second.data.runs()
        assert [r.run_id for r in loaded.runs()] == [first.run_id, second.run_id]
    finally:
        store.close()


def test_records_carry_the_log_through_journals_and_redis(
    store_factory: StoreFactory, tmp_path: Path
) -> None:
    store = store_factory(tmp_path / "store")
    try:
        data = history_state()
        store.save(data)
        data.open_attempt("node_1", "r3", 1, at=30.0, host="h3", pid=9)
        data.put_run(RunRecord("r3", 29.0, reason=RunReason.RESUME))
        store.save_nodes(data, ["node_1", "failing"], "r3")
        loaded = store.load("wf")
        assert loaded.differences(data, ignore=("updated_at",)) == []
        assert loaded.attempt_log("node_1")[-1].outcome == "running"
        assert loaded.run("r3") == data.run("r3")
        data.close_attempt("node_1", AttemptOutcome.COMPLETED, at=31.0)
        store.save_node(data, "node_1")
        assert store.load("wf").attempt_log("node_1")[-1].outcome == "completed"
    finally:
        store.close()


def test_a_reset_keeps_the_attempt_log(tmp_path: Path) -> None:
    store = JSONFileStore(tmp_path)
    dag = DAG()
    dag.add_node("bad", lambda data: 1 / 0)
    with pytest.raises(WorkflowExecutionError):
        Workflow(dag, "wf", store, persistence=Persistence.NODE).execute()
    reset_failed(store, "wf")
    assert [a.outcome for a in store.load("wf").attempt_log("bad")] == ["failed"]


# --- 2. the run history ------------------------------------------------------------------------------


def test_runs_record_why_who_where_and_how_it_ended(tmp_path: Path) -> None:
    store = JSONFileStore(tmp_path)
    dag = DAG()
    dag.add_node("a")
    dag.add_node("bad", lambda data: 1 / 0, depends_on="a")
    dag.add_node("after", depends_on="bad")
    with pytest.raises(WorkflowExecutionError):
        Workflow(dag, "wf", store).execute(params={"day": "mon"})
    with pytest.raises(WorkflowExecutionError):
        Workflow(dag, "wf", store).execute()
    reset_failed(store, "wf")
    dag.node("bad").action = None
    fixed = DAG()
    fixed.add_node("a")
    fixed.add_node("bad", depends_on="a")
    fixed.add_node("after", depends_on="bad")
    result = Workflow(fixed, "wf", store).execute()
    runs = store.load("wf").runs()
    assert [r.reason for r in runs] == [RunReason.NEW, RunReason.RERUN, RunReason.AFTER_RESET]
    assert [r.outcome for r in runs] == [RunOutcome.FAILED, RunOutcome.FAILED, RunOutcome.SUCCEEDED]
    assert [(r.nodes_run, r.completed, r.failed, r.skipped) for r in runs] == [
        (2, 1, 1, 1),
        (0, 0, 0, 0),
        (2, 2, 0, 0),
    ]
    assert runs[0].params == {"day": "mon"} and runs[1].params is None
    assert runs[-1].run_id == result.run_id
    assert all(r.host == current_host() and r.user == current_user() and r.pid == os.getpid() for r in runs)
    assert all(r.finished_at is not None and r.finished_at >= r.started_at for r in runs)
    audit = store.load("wf").audit
    assert audit and audit[-1].user == current_user() and audit[-1].host == current_host()


def test_the_run_history_is_capped() -> None:
    data = WorkflowData("wf")
    for index in range(RUN_HISTORY_CAP + 5):
        data.put_run(RunRecord(f"r{index}", float(index)))
    data.put_run(RunRecord("r104", 104.0, 105.0, RunOutcome.SUCCEEDED))  # replaces, not appends
    runs = data.runs()
    assert len(runs) == RUN_HISTORY_CAP and runs[0].run_id == "r5"
    assert runs[-1].outcome == RunOutcome.SUCCEEDED


# --- 4. running nodes are visible, crashed attempts count ---------------------------------------------

CHILD = """
import os, sys, time
from flow_workbench import DAG, Persistence, Workflow
from flow_workbench.stores.open import open_file_store

folder, mode, retries = sys.argv[1], sys.argv[2], int(sys.argv[3])

def action(data, ctx):
    with open(os.path.join(folder, "attempts.txt"), "a") as log:
        log.write(f"{ctx.attempt}\\n")
    if mode == "die":
        os._exit(3)  # the node kills its own process, as an out-of-memory kill would
    if mode == "wait":
        open(os.path.join(folder, "started"), "w").close()
        time.sleep(60)
    return "ok"

dag = DAG()
dag.add_node("first")
dag.add_node("killer", action, depends_on="first", retries=retries, retry_delay=0.0)
store = open_file_store(folder, ".fb")
Workflow(dag, "wf", store, persistence=Persistence.NODE).execute()
"""


def child(folder: Path, mode: str, retries: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", CHILD, str(folder), mode, str(retries)])


def test_a_running_node_is_visible_to_another_process(tmp_path: Path) -> None:
    """Regression: a running node was stored as pending with 0 attempts until its attempt ended."""
    process = child(tmp_path, "wait", 0)
    try:
        for _ in range(600):
            if (tmp_path / "started").exists() or process.poll() is not None:
                break
            subprocess.run(["sleep", "0.05"], check=True)
        assert (tmp_path / "started").exists()
        store = FlatBuffersStore(tmp_path)
        assert store.node_status("wf", "killer") is NodeStatus.RUNNING
        assert store.summary("wf").status_counts.get("running") == 1
        seen = store.load("wf")
        assert seen.node_history("killer").attempts == 1
        (attempt,) = seen.attempt_log("killer")
        assert attempt.outcome == "running" and attempt.pid == process.pid
        assert seen.runs()[-1].outcome == RunOutcome.RUNNING
    finally:
        process.kill()
        process.wait()


@pytest.mark.parametrize("retries", [0, 3])
def test_a_node_that_kills_its_process_is_failed_once_its_attempts_are_used(
    retries: int, tmp_path: Path
) -> None:
    """Regression: such a node ran again on every resume, its attempt count staying at 0. Now
    each resume continues the count; at max(max_attempts, MIN_CRASHED_ATTEMPTS) it stops."""
    allowed = max(retries + 1, MIN_CRASHED_ATTEMPTS)
    for _ in range(allowed):
        assert child(tmp_path, "die", retries).wait() == 3
    store = FlatBuffersStore(tmp_path)
    log = store.load("wf").attempt_log("killer")
    expected = [(n, "crashed") for n in range(1, allowed)] + [(allowed, "running")]
    assert [(a.number, a.outcome) for a in log] == expected
    assert child(tmp_path, "die", retries).wait() == 1  # not run again: failed as crashed
    assert (tmp_path / "attempts.txt").read_text().split() == [str(n) for n in range(1, allowed + 1)]
    data = store.load("wf")
    assert data.get_node_status("killer") is NodeStatus.FAILED
    assert data.node_history("killer").error_type == CRASHED_ERROR_TYPE
    assert data.node_history("killer").attempts == allowed
    assert [r.outcome for r in data.runs()] == ["crashed"] * allowed + ["failed"]
    assert [r.reason for r in data.runs()] == ["new"] + ["resume"] * allowed
    # A reset gives the node a fresh budget; this time it succeeds.
    reset_failed(store, "wf")
    assert child(tmp_path, "ok", retries).wait() == 0
    assert (tmp_path / "attempts.txt").read_text().split()[-1] == "1"


def test_one_crash_does_not_fail_a_node_without_retries(tmp_path: Path) -> None:
    """A process killed from outside (a restart, a lapsed lease) once: the node runs again, as
    attempt 2, and completes."""
    assert child(tmp_path, "die", 0).wait() == 3
    assert child(tmp_path, "ok", 0).wait() == 0
    assert (tmp_path / "attempts.txt").read_text().split() == ["1", "2"]
    log = FlatBuffersStore(tmp_path).load("wf").attempt_log("killer")
    assert [(a.number, a.outcome) for a in log] == [(1, "crashed"), (2, "completed")]


# --- 1. format versions: old files still load ------------------------------------------------------


@pytest.mark.parametrize("suffix", [".fb", ".json"])
def test_files_of_the_previous_format_load_and_are_rewritten_in_the_new_one(
    suffix: str, tmp_path: Path
) -> None:
    shutil.copy(GOLDEN_V1 / f"golden-v1{suffix}", tmp_path)
    store = FlatBuffersStore(tmp_path) if suffix == ".fb" else JSONFileStore(tmp_path)
    loaded = store.load("golden-v1")
    expected = rich_state("golden-v1")
    # Written before code versions existed: none (their nodes read as unknown, never stale).
    assert loaded.differences(expected, ignore=("version", "updated_at", "audit", "code_versions")) == []
    assert loaded.attempt_logs() == {} and loaded.runs() == () and loaded.code_versions() == {}
    (entry,) = loaded.audit  # written without a user and a host: they read as ""
    assert (entry.action, entry.nodes, entry.detail, entry.user, entry.host) == (
        "reset",
        ("failing",),
        "manual retry",
        "",
        "",
    )
    store.save(loaded)
    raw = (tmp_path / f"golden-v1{suffix}").read_bytes()
    if suffix == ".fb":
        from flow_workbench.stores._fb_reader import U16, root_table

        assert root_table(memoryview(raw)).scalar(0, U16, 0) == 2
    else:
        assert orjson.loads(raw)["flow_workbench"]["format"] == json_codec.FORMAT_VERSION == 2
    assert store.load("golden-v1").differences(loaded, ignore=("updated_at",)) == []


# --- validation: one check for every decoder and encoder ------------------------------------------

BAD_LOGS = [
    ({"n": []}, "attempt log of node 'n'"),
    ({"n": [["r", 1, 1.0, None, "running", None, None, None, "h"]]}, "attempt log of node 'n'"),
    ({"n": [["r", 0, 1.0, None, "running", None, None, None, "h", 1]]}, "attempt number"),
    ({"n": [["r", 1, "noon", None, "running", None, None, None, "h", 1]]}, "started_at"),
    ({"n": [["r", 1, 1.0, None, "exploded", None, None, None, "h", 1]]}, "outcome"),
    ({"n": [["r", 1, 1.0, None, "running", 7, None, None, "h", 1]]}, "error_type"),
    ({"n": [[1, 1, 1.0, None, "running", None, None, None, "h", 1]]}, "run id"),
]


@pytest.mark.parametrize(("log", "named"), BAD_LOGS)
def test_every_decoder_refuses_a_bad_attempt_log(log: dict[str, Any], named: str, tmp_path: Path) -> None:
    data = rich_state("wf")
    columns = data._unsafe_columns()
    columns.attempt_log = log
    columns.checked = False  # changed by hand, bypassing the writers (as hostile_columns does)
    for store in (JSONFileStore(tmp_path / "j"), FlatBuffersStore(tmp_path / "f")):
        with pytest.raises(SerializationError, match="attempt"):
            store.save(data)
    good = rich_state("wf")
    # Written by a forger: our JSON layout, checksum recomputed.
    JSONFileStore(tmp_path / "j").save(good)
    path = tmp_path / "j" / "wf.json"
    document = orjson.loads(path.read_bytes())
    document["flow_workbench"]["attempt_log"] = log
    from tests.helpers.hostile import ours_json

    path.write_bytes(ours_json(document))
    with pytest.raises(CorruptStateError, match=named):
        JSONFileStore(tmp_path / "j").load("wf")
    if not log["n"]:
        return  # in a record, an empty log means the node has none: valid
    # A journal record carrying it.
    store = JSONFileStore(tmp_path / "k")
    store.save(good)
    store.save_node(good, "node_0")
    record = good.node_record("node_0").to_json()
    record["attempt_log"] = next(iter(log.values()))
    from tests.helpers.hostile import append_journal_record

    append_journal_record(tmp_path / "k", record)
    with pytest.raises(CorruptStateError, match="attempt log"):
        JSONFileStore(tmp_path / "k").load("wf")


def test_redis_refuses_a_bad_run_record(tmp_path: Path) -> None:
    store = IMPLEMENTATIONS["redis"](tmp_path)
    try:
        store.save(rich_state("wf"))
        store.client.hset(store._key("meta", "wf"), "run", b'{"run_id": 5}')  # type: ignore[attr-defined]
        with pytest.raises(CorruptStateError, match="run record"):
            store.load("wf")
    finally:
        store.close()


def test_history_survives_every_store(store_factory: StoreFactory, tmp_path: Path) -> None:
    store = store_factory(tmp_path / "store")
    try:
        data = history_state()
        store.save(data)
        assert store.load("wf").differences(data, ignore=("version", "updated_at")) == []
    finally:
        store.close()


# --- 3. tables and the history command ---------------------------------------------------------------


def failing_twice(tmp_path: Path) -> JSONFileStore:
    store = JSONFileStore(tmp_path)
    dag = DAG()
    dag.add_node("flaky", flaky(1), retries=1, retry_delay=0.0)
    dag.add_node("bad\x1b[31m", lambda data: 1 / 0, depends_on="flaky")
    for _ in range(2):
        with pytest.raises(WorkflowExecutionError):
            Workflow(dag, "wf", store).execute(params={"day": "mon\nday"})
    return store


def test_runs_frame_and_attempts_frame(tmp_path: Path) -> None:
    from flow_workbench.notebook import attempts_frame, runs_frame

    store = failing_twice(tmp_path)
    runs = runs_frame(store, "wf")
    assert list(runs["outcome"]) == ["failed", "failed"] and list(runs["reason"]) == ["new", "re-run"]
    assert list(runs["nodes_run"]) == [2, 0] and runs.index.name == "run_id"
    assert str(runs["started"].dtype).startswith("datetime64") and runs["duration"].notna().all()
    assert runs["params"].iloc[0] == '{"day": "mon\\nday"}'
    attempts = attempts_frame(tmp_path, "wf")
    assert list(attempts["node"]) == ["flaky", "flaky", "bad\\x1b[31m"]  # shown escaped, as in every table
    assert list(attempts["outcome"]) == ["failed", "completed", "failed"]
    assert list(attempts["attempt"]) == [1, 2, 1]
    assert "ZeroDivisionError" in attempts["traceback"].iloc[2]
    only = attempts_frame(store, "wf", node="flaky")
    assert list(only["attempt"]) == [1, 2]


def run_cli(*args: str) -> tuple[int, str]:
    import contextlib
    import io

    from flow_workbench.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*args, "--debug"])
    return code, out.getvalue()


def test_history_command_prints_runs_and_attempts_escaped(tmp_path: Path) -> None:
    failing_twice(tmp_path)
    code, out = run_cli("history", str(tmp_path), "wf", "--tracebacks")
    assert code == 0
    assert "runs (2)" in out and "attempts (3)" in out
    assert "\x1b" not in out and "bad\\x1b[31m" in out  # a node name cannot colour the terminal
    assert "re-run" in out and "ZeroDivisionError: division by zero" in out
    assert "traceback of bad\\x1b[31m attempt 1" in out
    code, out = run_cli("history", str(tmp_path), "wf", "--json", "--node", "flaky")
    document = orjson.loads(out)
    assert [a["outcome"] for a in document["attempts"]] == ["failed", "completed"]
    assert [r["reason"] for r in document["runs"]] == ["new", "re-run"]
    assert document["activity"] == "" and document["lease"] is None


# --- 4. whether a stored workflow runs now -------------------------------------------------------------


class LeaseKnowingStore(InMemoryStore):
    """A store that answers ``lease_holder`` for every process."""

    holder: Any = None

    def lease_holder(self, workflow_id: str) -> Any:
        return self.holder


def test_running_nodes_without_a_lease_are_interrupted() -> None:
    from types import SimpleNamespace

    from flow_workbench.activity import activity

    store = LeaseKnowingStore()
    data = WorkflowData("wf")
    data.set_node_status("idle", NodeStatus.COMPLETED)
    store.save(data)
    assert activity(store, "wf").state == ""
    data.record_attempt_started("busy")
    store.save(data)
    assert activity(store, "wf").state == "interrupted"
    store.holder = SimpleNamespace(host="box", pid=42, since=None)
    now = activity(store, "wf")
    assert now.state == "running" and now.holder == "pid 42 on box" and now.running_nodes == 1
    assert activity(InMemoryStore(), "wf", store.summary("wf")).state == "interrupted"  # holds all

    class CustomStore(InMemoryStore):  # keeps the base in-process lease: cannot see other processes
        lease_holder_sees_every_process = False

    assert activity(CustomStore(), "wf", store.summary("wf")).state == "running"  # cannot tell


def test_ls_and_the_activity_frame_show_interrupted_workflows(tmp_path: Path) -> None:
    from flow_workbench.notebook import workflows_activity_frame

    data = WorkflowData("wf")
    data.record_attempt_started("busy")
    JSONFileStore(tmp_path).save(data)
    expected = "interrupted"  # no process holds the lease: the run that left it running died
    frame = workflows_activity_frame(tmp_path)
    assert list(frame["activity"]) == [expected]
    code, out = run_cli("ls", str(tmp_path), "--json")
    assert code == 0 and orjson.loads(out)[0]["activity"] == expected
    code, out = run_cli("ls", str(tmp_path))
    assert code == 0 and f"1 running ({expected})" in out


def test_the_store_browser_tells_running_from_interrupted_workflows(tmp_path: Path) -> None:
    from flow_workbench.notebook import StoreBrowser

    data = WorkflowData("wf")
    data.record_attempt_started("busy")
    store = JSONFileStore(tmp_path)
    store.save(data)
    browser = StoreBrowser(tmp_path)
    assert list(browser.frame["activity"]) == ["interrupted"]
    assert "interrupted" in browser._label(0)
    with store.execution_lease("wf"):
        browser = StoreBrowser(tmp_path)
        assert list(browser.frame["activity"]) == ["running"]
        label = browser._label(0)
        assert "running" in label and f"pid {os.getpid()}" in label


def test_entries_no_load_could_read_are_refused_on_save(tmp_path: Path) -> None:
    """``open_attempt``/``close_attempt`` with values the log cannot hold: the save names them."""
    data = WorkflowData("wf")
    data.set_node_status("n", NodeStatus.RUNNING)
    data.open_attempt("n", "r", 1, at=float("nan"))
    with pytest.raises(SerializationError, match="started_at"):
        JSONFileStore(tmp_path).save(data)
    data = WorkflowData("wf")
    data.set_node_status("n", NodeStatus.RUNNING)
    data.open_attempt("n", "r", 1, at=1.0)
    data.close_attempt("n", "exploded", at=2.0)
    with pytest.raises(SerializationError, match="outcome"):
        FlatBuffersStore(tmp_path).save(data)
