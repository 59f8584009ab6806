"""The flow-workbench command line, driven as a real subprocess on real state files."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import pytest

from flow_workbench import NodeStatus, VersionConflictError, WorkflowData
from flow_workbench.cli import main
from flow_workbench.cli._common import format_duration, format_time
from flow_workbench.stores import FileStore, FlatBuffersStore, JSONFileStore, StateFormat, WorkflowStore
from flow_workbench.stores.json_codec import JSONCodec
from flow_workbench.testing import rich_state
from tests.helpers.hostile import with_checksum
from tests.helpers.leases import held_run, prepare
from tests.helpers.paths import GOLDEN_GO

REPO = Path(__file__).resolve().parents[1]
S = NodeStatus
#: Fields a conversion may legitimately change: the target store bumps them on save.
BUMPED = ("version", "updated_at")


def run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m flow_workbench ARGS`` in a fresh process, the package taken from this checkout."""
    environment = {**os.environ, **(env or {})}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), environment.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "flow_workbench", *map(str, args)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """An expected error: one stderr line naming the problem, no traceback."""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("flow-workbench: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0]


def load(directory: Path, workflow_id: str, suffix: str = ".fb") -> WorkflowData:
    store = open_store(directory, suffix)
    try:
        return store.load(workflow_id)
    finally:
        store.close()


def open_store(directory: Path, suffix: str) -> WorkflowStore:
    return JSONFileStore(directory) if suffix == ".json" else FlatBuffersStore(directory)


def statuses(data: WorkflowData) -> dict[str, str]:
    return {node: status.value for node, status in data.node_statuses().items()}


@pytest.fixture(scope="module")
def demo_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The three demo workflows, written once by the real command; tests work on copies."""
    folder = tmp_path_factory.mktemp("demo") / "state"
    result = run("demo", folder)
    assert result.returncode == 0, result.stderr
    assert "etl-crashed" in result.stdout
    return folder


@pytest.fixture
def demo(demo_source: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(demo_source, tmp_path / "state"))


@pytest.fixture
def golden(tmp_path: Path) -> Path:
    folder = tmp_path / "golden"
    shutil.copytree(GOLDEN_GO, folder)
    return folder


# --- conventions -------------------------------------------------------------------------------

COMMANDS = ["ls", "show", "reset", "reset-failed", "mark", "convert", "validate", "dot", "demo", "lab"]


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    top = run("--help")
    assert top.returncode == 0
    assert top.stdout.startswith("usage: flow-workbench ")  # not "__main__.py"
    for command in COMMANDS:
        assert command in top.stdout
        # In-process: the same parser, without ten more interpreter start-ups.
        with pytest.raises(SystemExit) as exited:
            main([command, "--help"])
        assert exited.value.code == 0
        assert capsys.readouterr().out.startswith(f"usage: flow-workbench {command} ")


def test_console_script_is_installed() -> None:
    """``pip install -e .`` creates the flow-workbench script from [project.scripts]."""
    script = Path(sys.executable).parent / ("flow-workbench.exe" if os.name == "nt" else "flow-workbench")
    assert script.exists(), "the console script is missing: run pip install -e ."
    result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert result.stdout.startswith("usage: flow-workbench ")


def test_usage_errors_exit_2_without_traceback(demo: Path) -> None:
    assert run().returncode == 2  # no command
    bad_choice = run("mark", demo, "etl-failed", "join", "--as", "failed")
    assert bad_choice.returncode == 2
    assert "invalid choice" in bad_choice.stderr
    bad_id = run("show", demo, "../etc/passwd")
    assert bad_id.returncode == 2
    assert_one_line_error(bad_id, "invalid workflow id")


def test_missing_workflow_and_folder_exit_1(demo: Path, tmp_path: Path) -> None:
    assert_one_line_error(missing := run("show", demo, "nope"), "'nope' not found")
    assert missing.returncode == 1
    no_folder = run("ls", tmp_path / "absent")
    assert no_folder.returncode == 1
    assert_one_line_error(no_folder, "does not exist")
    assert not (tmp_path / "absent").exists()  # reading never creates the folder


# --- demo, ls, show ----------------------------------------------------------------------------


def test_demo_writes_three_stories_in_flatbuffers(demo: Path) -> None:
    assert sorted(p.name for p in demo.glob("*.fb")) == [
        "etl-completed.fb",
        "etl-crashed.fb",
        "etl-failed.fb",
    ]
    with FlatBuffersStore(demo) as store:
        assert {store.summary(i).format for i in store.list_workflows()} == {StateFormat.FLATBUFFERS}
        completed, failed, crashed = (store.load(i) for i in ("etl-completed", "etl-failed", "etl-crashed"))
    assert set(statuses(completed).values()) == {"completed"}
    assert statuses(failed)["churn_model"] == "failed"
    assert failed.node_history("churn_model").attempts == 2
    assert statuses(failed)["publish"] == "skipped"
    crash = statuses(crashed)
    assert crash["extract_orders"] == crash["clean_orders"] == "completed"
    assert crash["join"] == "running"
    assert crash["publish"] == crash["churn_model"] == "pending"
    assert crashed.dag_structure is not None


def test_demo_refuses_to_replace_workflows_unless_overwrite(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    mine = rich_state("etl-failed")
    other_format = rich_state("etl-crashed")
    with FlatBuffersStore(folder) as store:
        store.save(mine)
    with JSONFileStore(folder) as store:
        store.save(other_format)
    before = {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}

    refused = run("demo", folder)
    assert refused.returncode == 1
    assert_one_line_error(refused, "etl-failed.fb", "etl-crashed.json", "--overwrite")
    assert "etl-completed" not in refused.stderr
    assert {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()} == before

    replaced = run("demo", folder, "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert sorted(path.name for path in folder.glob("etl-*") if path.suffix in (".fb", ".json")) == [
        "etl-completed.fb",
        "etl-crashed.fb",
        "etl-failed.fb",
    ]
    assert statuses(load(folder, "etl-failed"))["churn_model"] == "failed"


def test_ls_lists_every_format_and_reports_unreadable_files(demo: Path, golden: Path) -> None:
    for path in golden.iterdir():
        shutil.copy(path, demo)
    clean = run("ls", demo)
    assert clean.returncode == 0, clean.stderr
    rows = {tuple(line.split()[:2]) for line in clean.stdout.splitlines()[1:]}
    assert ("etl-failed", "ours") in rows
    assert "Go FlatBuffers" in clean.stdout and "Go JSON" in clean.stdout
    assert "5 completed, 1 failed, 1 skipped" in clean.stdout

    data = (demo / "etl-failed.fb").read_bytes()
    (demo / "broken.fb").write_bytes(data[: len(data) // 2])
    listed = run("ls", demo)
    assert listed.returncode == 1
    broken = [line for line in listed.stdout.splitlines() if line.startswith("broken ")]
    assert len(broken) == 1 and "unreadable" in broken[0] and "corrupt" in broken[0]
    assert "1 of 7 file(s) unreadable" in listed.stderr

    as_json = run("ls", demo, "--json")
    assert as_json.returncode == 1
    entries = {entry["file"]: entry for entry in json.loads(as_json.stdout)}
    assert len(entries) == 7
    assert entries[str(demo / "broken.fb")]["error_type"] == "CorruptStateError"
    go = entries[str(demo / "v012_format_full.fb")]
    assert (go["format"], go["node_count"], go["status_counts"]["waiting"]) == ("go-flatbuffers", 5, 1)


def test_show_prints_nodes_data_and_audit(demo: Path, golden: Path) -> None:
    text = run("show", demo, "etl-failed")
    assert text.returncode == 0, text.stderr
    churn = next(line for line in text.stdout.splitlines() if line.startswith("churn_model "))
    assert churn.split()[1:3] == ["failed", "2"]
    assert "RuntimeError: churn_model: upstream API returned HTTP 503" in churn
    assert "outputs (5)" in text.stdout and '"report.html"' in text.stdout

    as_json = run("show", golden, "v012_format_full", "--format", "json", "--json")
    assert as_json.returncode == 0
    state = json.loads(as_json.stdout)
    assert state["data"]["balance_cents"] == 2**53 + 1  # full int64 precision survives
    assert state["format"] == "go-json" and state["trigger_cause"] == 2 and state["rolling_back"] is True
    assert {n["node"]: n["status"] for n in state["nodes"]}["compfailed_node"] == "compensation_failed"

    both = run("show", golden, "v012_format_full")  # .fb and .json exist: picked, and said so
    assert both.returncode == 0
    assert "v012_format_full.fb (Go FlatBuffers" in both.stdout
    assert "both v012_format_full.fb and v012_format_full.json exist" in both.stderr


# --- recovery commands -------------------------------------------------------------------------


def test_reset_downstream_round_trip(demo: Path) -> None:
    before = load(demo, "etl-completed")
    result = run("reset", demo, "etl-completed", "join", "--downstream")
    assert result.returncode == 0, result.stderr
    assert "join, revenue_report, churn_model, publish" in result.stdout
    after = load(demo, "etl-completed")
    reset = {"join", "revenue_report", "churn_model", "publish"}
    assert {n for n, s in statuses(after).items() if s == "pending"} == reset
    assert not reset & set(after.outputs())
    assert after.node_history("join").attempts == 1  # attempts are kept
    assert after.audit[-1].action == "reset_downstream" and set(after.audit[-1].nodes) == reset
    assert after.version == before.version + 1


def test_reset_failed_and_mark_round_trip_with_json_output(demo: Path) -> None:
    result = run("reset-failed", demo, "etl-failed", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["nodes"] == ["churn_model", "publish"]
    assert statuses(load(demo, "etl-failed"))["churn_model"] == "pending"

    marked = run("mark", demo, "etl-crashed", "join", "publish", "--as", "skipped")
    assert marked.returncode == 0, marked.stderr
    assert "marked 2 node(s)" in marked.stdout
    crashed = load(demo, "etl-crashed")
    assert (statuses(crashed)["join"], statuses(crashed)["publish"]) == ("skipped", "skipped")
    assert crashed.audit[-1].action == "mark_skipped"


def test_mark_completed_sends_the_nodes_skipped_because_of_it_back_to_pending(demo: Path) -> None:
    """Before: publish stayed skipped, so the next run "succeeded" without ever running it."""
    preview = run("mark", demo, "etl-failed", "churn_model", "--as", "completed", "--dry-run")
    assert preview.returncode == 0, preview.stderr
    assert "would mark 1 node(s) of 'etl-failed' completed: churn_model" in preview.stdout
    assert "1 node(s) skipped because of them would go back to pending: publish" in preview.stdout
    marked = run("mark", demo, "etl-failed", "churn_model", "--as", "completed", "--json")
    assert marked.returncode == 0, marked.stderr
    report = json.loads(marked.stdout)
    assert (report["nodes"], report["back_to_pending"]) == (["churn_model", "publish"], ["publish"])
    state = load(demo, "etl-failed")
    assert (statuses(state)["churn_model"], statuses(state)["publish"]) == ("completed", "pending")
    assert state.audit[-1].action == "mark_completed"


@pytest.mark.parametrize("kind", ["flatbuffers", "go-flatbuffers", "json"])
def test_an_edit_while_a_run_holds_the_workflow_is_refused_naming_the_holder(
    kind: str, tmp_path: Path
) -> None:
    """Before: the edit was saved; the run then died at its next save (VersionConflictError) and
    lost the node it had finished, or (Go layout) wrote over the edit without a word."""
    suffix = ".json" if kind == "json" else ".fb"
    prepare(kind, str(tmp_path))
    state_file = tmp_path / f"wf{suffix}"
    with held_run(kind, tmp_path) as held:
        before = state_file.read_bytes()
        for command in (
            ("reset", tmp_path, "wf", "a"),
            ("reset-failed", tmp_path, "wf"),
            ("mark", tmp_path, "wf", "b", "--as", "skipped"),
        ):
            result = run(*command)
            assert result.returncode == 1, result.stdout
            assert_one_line_error(
                result,
                f"being executed by pid {held.pid} on host {socket.gethostname()!r} since",
                "--wait SECONDS",
            )
        assert state_file.read_bytes() == before  # nothing written
        assert held.finish() == 0
    assert statuses(load(tmp_path, "wf", suffix)) == {"a": "completed", "b": "completed"}


def _has_open(pid: int, path: Path) -> bool:
    """Whether process ``pid`` has ``path`` open (Linux /proc)."""
    folder = Path(f"/proc/{pid}/fd")
    try:
        target = os.path.realpath(path)
        return any(os.readlink(folder / fd) == target for fd in os.listdir(folder))
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="watches the waiting command through /proc")
def test_an_edit_with_wait_applies_once_the_run_is_over(tmp_path: Path) -> None:
    prepare("flatbuffers", str(tmp_path))
    lease_file = tmp_path / "wf.lease"
    with held_run("flatbuffers", tmp_path) as held:
        environment = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        }
        editor = subprocess.Popen(
            [sys.executable, "-m", "flow_workbench", "reset", str(tmp_path), "wf", "a", "--wait", "120"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        try:
            deadline = time.monotonic() + 120  # a guard against a hang, not a measurement
            while not _has_open(editor.pid, lease_file):  # the command waits on the held lease
                assert editor.poll() is None, editor.communicate()
                assert time.monotonic() < deadline
                time.sleep(0.01)
            assert held.finish() == 0
            out, err = editor.communicate(timeout=120)
        finally:
            if editor.poll() is None:
                editor.kill()
    assert editor.returncode == 0, err
    assert "reset 1 node(s) of 'wf' to pending: a" in out
    # Applied after the run's last save: a pending again, b as the run left it.
    assert statuses(load(tmp_path, "wf")) == {"a": "pending", "b": "completed"}


def test_dry_runs_change_no_byte(demo: Path) -> None:
    files = sorted(demo.iterdir())
    before = {path: path.read_bytes() for path in files}
    commands = [
        ("reset", demo, "etl-completed", "join", "--downstream", "--dry-run"),
        ("reset-failed", demo, "etl-failed", "--dry-run"),
        ("mark", demo, "etl-crashed", "join", "--as", "completed", "--dry-run"),
    ]
    outputs = [run(*command) for command in commands]
    assert all(r.returncode == 0 for r in outputs), [r.stderr for r in outputs]
    assert "would reset 4 node(s)" in outputs[0].stdout
    assert "churn_model, publish" in outputs[1].stdout
    assert "would mark 1 node(s)" in outputs[2].stdout
    assert sorted(demo.iterdir()) == files
    assert {path: path.read_bytes() for path in files} == before


def test_unknown_node_is_refused_and_changes_nothing(demo: Path) -> None:
    before = (demo / "etl-failed.fb").read_bytes()
    result = run("reset", demo, "etl-failed", "churn_model", "no_such_node")
    assert result.returncode == 1
    assert_one_line_error(result, "unknown node", "'no_such_node'")
    marked = run("mark", demo, "etl-failed", "ghost", "--as", "completed")
    assert marked.returncode == 1
    assert (demo / "etl-failed.fb").read_bytes() == before
    debug = run("--debug", "reset", demo, "etl-failed", "no_such_node")
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "UnknownNodeError" in debug.stderr


def test_version_conflict_is_reported_and_nothing_is_written(
    demo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another process saves between the command's load and save: the command must not overwrite it."""
    real_load = FileStore.load

    def load_then_someone_else_saves(self: FileStore, workflow_id: str) -> WorkflowData:
        data = real_load(self, workflow_id)
        with FlatBuffersStore(demo) as other:
            theirs = real_load(other, workflow_id)
            theirs.set("saved_by", "another process")
            other.save(theirs)
        return data

    monkeypatch.setattr(FileStore, "load", load_then_someone_else_saves)
    code = main(["reset-failed", str(demo), "etl-failed"])
    captured = capsys.readouterr()
    monkeypatch.undo()
    assert code == 1
    assert "version conflict" in captured.err and captured.err.count("\n") == 1
    stored = load(demo, "etl-failed")
    assert stored.get("saved_by") == "another process"
    assert statuses(stored)["churn_model"] == "failed"  # the reset was not written
    assert VersionConflictError.__name__ not in captured.out


def test_editing_a_go_file_keeps_the_go_layout(golden: Path) -> None:
    (golden / "v012_format_full.json").unlink()
    path = golden / "v012_format_full.fb"
    before = path.read_bytes()
    downstream = run("reset", golden, "v012_format_full", "done_node", "--downstream")
    assert downstream.returncode == 1
    assert_one_line_error(downstream, "without its DAG", "without --downstream")
    assert path.read_bytes() == before

    result = run("reset", golden, "v012_format_full", "done_node")
    assert result.returncode == 0, result.stderr
    assert "no audit log" in result.stderr
    with FlatBuffersStore(golden) as store:
        assert store.summary("v012_format_full").format is StateFormat.GO_FLATBUFFERS
        data = store.load("v012_format_full")
    assert statuses(data)["done_node"] == "pending"
    assert data.get("balance_cents") == 2**53 + 1 and data.waits == {"waiting_node": 1893456000000}


def test_edit_refuses_to_guess_between_fb_and_json(golden: Path) -> None:
    before = {p: p.read_bytes() for p in golden.iterdir()}
    result = run("reset", golden, "v012_format_full", "done_node")
    assert result.returncode == 2
    assert_one_line_error(result, "--format")
    assert {p: p.read_bytes() for p in golden.iterdir()} == before


# --- convert -----------------------------------------------------------------------------------


def test_convert_round_trips_exactly(demo: Path, golden: Path, tmp_path: Path) -> None:
    with JSONFileStore(demo) as store:
        store.save(rich_state("rich"))
    as_json, back = tmp_path / "json", tmp_path / "fb"
    first = run("convert", demo, as_json, "--to", "json")
    assert first.returncode == 0, first.stderr
    assert "converted 4 workflow(s) to json" in first.stdout
    second = run("convert", as_json, back, "--to", "fb")
    assert second.returncode == 0, second.stderr
    for workflow_id in ("etl-completed", "etl-failed", "etl-crashed"):
        original = load(demo, workflow_id)
        assert load(as_json, workflow_id, ".json").differences(original, ignore=BUMPED) == []
        assert load(back, workflow_id).differences(original, ignore=BUMPED) == []
    assert load(back, "rich").differences(load(demo, "rich", ".json"), ignore=BUMPED) == []

    go = tmp_path / "go"
    converted = run("convert", golden, go, "--to", "json", "--from", "fb")
    assert converted.returncode == 0, converted.stderr
    for workflow_id in ("v012_format_full", "m1_format_int"):
        assert load(go, workflow_id, ".json").differences(load(golden, workflow_id), ignore=BUMPED) == []
    assert load(go, "m1_format_int", ".json").get("edge") == 2147483647


def test_convert_to_go_layout_warns_about_what_it_drops(demo: Path, golden: Path, tmp_path: Path) -> None:
    target = tmp_path / "go"
    result = run("convert", demo, target, "--to", "go-fb", "--id", "etl-failed")
    assert result.returncode == 0, result.stderr
    assert "warning: etl-failed" in result.stderr and "node history, DAG structure" in result.stderr
    assert [p.name for p in target.glob("*.fb")] == ["etl-failed.fb"]
    with FlatBuffersStore(target) as store:
        assert store.summary("etl-failed").format is StateFormat.GO_FLATBUFFERS
        copy = store.load("etl-failed")
    original = load(demo, "etl-failed")
    assert copy.node_statuses() == original.node_statuses()
    assert copy.outputs() == original.outputs()
    assert copy.dag_structure is None

    again = run("convert", demo, target, "--to", "go-fb", "--id", "etl-failed")
    assert again.returncode == 1 and "--overwrite" in again.stderr
    replaced = run("convert", demo, target, "--to", "go-fb", "--id", "etl-failed", "--overwrite", "--json")
    assert replaced.returncode == 0, replaced.stderr
    [outcome] = json.loads(replaced.stdout)
    assert outcome["error"] is None
    assert outcome["lost"] == ["node history", "DAG structure", "attempt log", "run history", "code versions"]

    single = run("convert", golden / "v012_format_full.json", target, "--to", "go-fb")  # Go JSON -> Go FB
    assert single.returncode == 0, single.stderr
    assert "warning" not in single.stderr  # a Go state fits the Go layout without loss
    go_copy, go_source = load(target, "v012_format_full"), load(golden, "v012_format_full", ".json")
    assert go_copy.differences(go_source, ignore=(*BUMPED, "created_at")) == []  # Go has no created_at

    same = run("convert", demo, demo, "--to", "fb")
    assert same.returncode == 1 and "same file" in same.stderr


# --- validate, dot, lab ------------------------------------------------------------------------


def test_validate_flags_corrupt_and_inconsistent_files(demo: Path, golden: Path) -> None:
    for path in golden.iterdir():
        shutil.copy(path, demo)
    good = run("validate", demo)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "6 file(s) checked, 6 ok, 0 bad" in good.stdout

    flipped = bytearray((demo / "etl-completed.fb").read_bytes())
    flipped[len(flipped) // 2] ^= 0x40
    (demo / "flipped.fb").write_bytes(bytes(flipped))
    (demo / "cut.json").write_text('{"id": "cut", "nodeStatus": {"a": "pend')
    shutil.copy(demo / "etl-failed.fb", demo / "etl failed (copy).fb")  # a valid id, another state
    shutil.copy(demo / "etl-failed.fb", demo / "etl\x1bfailed.fb")  # no valid id: no store opens it
    inconsistent = WorkflowData("orphan")
    inconsistent.set_dag_structure({"a": [], "b": ["missing"]})
    inconsistent.set_node_status("a", S.COMPLETED)
    inconsistent.set_node_status("stray", S.PENDING)
    with JSONFileStore(demo) as store:
        store.save(inconsistent)

    bad = run("validate", demo)
    assert bad.returncode == 1
    reported = {}
    for line in bad.stdout.splitlines():
        if line.startswith("BAD  "):
            shown, _, reasons = line.removeprefix("BAD  ").partition(": ")
            reported[Path(shown).name] = reasons
    escaped = "etl\\x1bfailed.fb"  # as printed: the escape character made visible
    assert set(reported) == {"flipped.fb", "cut.json", "orphan.json", "etl failed (copy).fb", escaped}
    assert "checksum" in reported["flipped.fb"]
    assert "'missing'" in reported["orphan.json"] and "'stray'" in reported["orphan.json"]
    assert "holds workflow 'etl-failed'" in reported["etl failed (copy).fb"]
    assert "not a valid workflow id" in reported[escaped] and "control characters" in reported[escaped]
    assert "11 file(s) checked, 6 ok, 5 bad" in bad.stdout

    as_json = json.loads(run("validate", demo, "--json").stdout)
    assert sorted(Path(r["file"]).name for r in as_json if not r["ok"]) == [
        "cut.json",
        "etl\x1bfailed.fb",
        "etl failed (copy).fb",
        "flipped.fb",
        "orphan.json",
    ]


def test_dot_prints_source_and_renders_svg(demo: Path, tmp_path: Path) -> None:
    source = run("dot", demo, "etl-failed")
    assert source.returncode == 0, source.stderr
    assert source.stdout.startswith("digraph") and "churn_model" in source.stdout

    missing = run(
        "dot", demo, "etl-failed", "-o", tmp_path / "g.svg", env={"FLOW_WORKBENCH_DOT": "no-such-dot"}
    )
    assert missing.returncode == 1
    assert_one_line_error(missing, "apt-get install graphviz")
    assert not (tmp_path / "g.svg").exists()

    if shutil.which("dot") is None:
        pytest.skip("Graphviz dot is not installed")
    rendered = run("dot", demo, "etl-failed", "-o", tmp_path / "g.svg")
    assert rendered.returncode == 0, rendered.stderr
    assert b"<svg" in (tmp_path / "g.svg").read_bytes()


def test_lab_starts_jupyterlab_on_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """In-process: starting a real server would take seconds; the command it runs is what matters."""
    started: list[list[str]] = []

    def call(command: list[str]) -> int:
        started.append(command)
        return 0

    monkeypatch.setattr(subprocess, "call", call)
    assert main(["lab", "--dir", str(tmp_path), "--", "--port", "9999"]) == 0
    assert started == [[sys.executable, "-m", "jupyterlab", f"--notebook-dir={tmp_path}", "--port", "9999"]]

    assert main(["lab", "--dir", str(tmp_path / "absent")]) == 1
    assert "does not exist" in capsys.readouterr().err

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert main(["lab", "--dir", str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert "JupyterLab is not installed" in error and "flow_workbench[notebook]" in error
    assert len(started) == 1


def test_a_bug_gives_one_line_and_debug_gives_the_traceback(
    demo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("something nobody expected")

    monkeypatch.setattr("flow_workbench.cli.browse.scan_folder", broken)
    assert main(["ls", str(demo)]) == 1
    error = capsys.readouterr().err
    assert "internal error: RuntimeError: something nobody expected" in error and "--debug" in error
    assert "Traceback" not in error
    with pytest.raises(RuntimeError, match="nobody expected"):
        main(["ls", str(demo), "--debug"])


# --- hostile files: terminal escapes, out-of-range times ----------------------------------------

#: Text a received file can carry to take over a terminal: recolour it or clear it (CSI), set the
#: title or write the clipboard (OSC 52), the same through C1 controls, reorder what is shown
#: (bidi overrides and isolates), hide text (zero-width) and forge lines (CR, LF, backspace).
PAYLOADS = {
    "csi": "\x1b[2J\x1b[32mALL GOOD\x1b[0m",
    "osc52": "\x1b]52;c;cm0gLXJmIH4K\x07",
    "title": "\x1b]0;owned\x1b\\",
    "c1": "\x9b31m\x9d0;owned\x9c\x85",
    "bidi": "\u202edoog lla\u202c\u202a\u202b\u202d\u2066x\u2067\u2068\u2069\u200e\u200f\u061c",
    "zero_width": "a\u200bb\u200cc\u200dd\u2060e\ufefff",
    "lines": "ok\r\nALL GOOD\x08\x7f\u2028\u2029",
}
FORGED = "ALL GOOD"


def terminal_unsafe(text: str) -> list[str]:
    """Characters a terminal acts on or hides: controls (except the line feed between lines),
    format characters (bidi, zero-width), line and paragraph separators, surrogates."""
    return [ch for ch in text if ch != "\n" and unicodedata.category(ch) in {"Cc", "Cf", "Zl", "Zp", "Cs"}]


def assert_terminal_safe(result: subprocess.CompletedProcess[str]) -> None:
    for stream in (result.stdout, result.stderr):
        assert terminal_unsafe(stream) == [], stream
        assert not any(line.lstrip().startswith(FORGED) for line in stream.splitlines()), stream


def hostile_state(workflow_id: str) -> WorkflowData:
    """Payloads in every human-visible field: node names, errors, error types, keys, values,
    outputs, DAG structure and audit entries."""
    data = WorkflowData(workflow_id, created_at=1_700_000_000.0)
    structure: dict[str, list[str]] = {}
    previous: list[str] = []
    for kind, payload in PAYLOADS.items():
        node = f"{kind} {payload}"
        data.record_attempt_started(node, at=1_700_000_100.0)
        data.record_attempt_finished(node, S.FAILED, at=1_700_000_101.0, error=payload, error_type=payload)
        data.set(f"key {payload}", {payload: payload})
        structure[node] = previous
        previous = [node]
    skipped = f"skipped {PAYLOADS['csi']}"
    data.set_node_status(skipped, S.SKIPPED)
    data.set_output(skipped, PAYLOADS["osc52"])
    structure[skipped] = previous
    data.set_dag_structure(structure)
    data.add_audit(PAYLOADS["title"], list(structure), detail=PAYLOADS["lines"])
    return data


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    folder = tmp_path / "hostile"
    cyclic = WorkflowData("cyclic")
    first, second = f"a {PAYLOADS['lines']}", f"b {PAYLOADS['csi']}"
    cyclic.set_dag_structure({first: [second], second: [first]})
    cyclic.set_node_status(first, S.PENDING)
    cyclic.set_node_status(second, S.FAILED)
    with JSONFileStore(folder) as store:
        store.save(hostile_state("hostile"))
        store.save(cyclic)
    # A name no store opens, but validate reports it by name.
    (folder / f"{PAYLOADS['title']}{PAYLOADS['bidi']}.json").write_text("{}")
    return folder


def test_human_output_escapes_terminal_controls_bidi_and_zero_width(hostile: Path, tmp_path: Path) -> None:
    node = f"csi {PAYLOADS['csi']}"
    commands: list[tuple[str | Path, ...]] = [
        ("ls", hostile),
        ("show", hostile, "hostile"),
        ("show", hostile, "hostile", "--full"),
        ("show", hostile, "cyclic"),
        ("validate", hostile, "-v"),
        ("reset-failed", hostile, "hostile", "--dry-run"),
        ("reset", hostile, "hostile", node, "--downstream", "--dry-run"),
        ("reset", hostile, "cyclic", f"a {PAYLOADS['lines']}", "--downstream"),
        ("mark", hostile, "hostile", node, "--as", "completed", "--dry-run"),
        ("convert", hostile, tmp_path / "copy", "--to", "fb"),
        ("reset-failed", hostile, "hostile"),
    ]
    for command in commands:
        result = run(*command)
        assert result.returncode in (0, 1), (command, result.stderr)
        assert_terminal_safe(result)
        assert "Traceback" not in result.stderr
    shown = run("show", hostile, "cyclic").stdout
    assert "\\x1b[32mALL GOOD\\x1b[0m" in shown and "\\r\\nALL GOOD" in shown  # visible, not dropped
    bidi = run("show", hostile, "hostile", "--full").stdout
    assert "\\u202edoog lla\\u202c" in bidi and "a\\u200bb\\u200cc" in bidi
    validated = run("validate", hostile).stdout
    assert "\\x1b]0;owned\\x1b\\" in validated  # the misnamed file, by its escaped name
    cycle = next(line for line in validated.splitlines() if "cyclic.json" in line)
    assert "'a ok\\r\\nALL GOOD" in cycle  # cycle members are quoted and escaped


def test_json_output_keeps_hostile_text_exact(hostile: Path) -> None:
    state = json.loads(run("show", hostile, "hostile", "--json").stdout)
    expected = hostile_state("hostile")
    assert [node["node"] for node in state["nodes"]] == list(expected.node_statuses())
    assert {node["node"]: node["error"] for node in state["nodes"]} == {
        name: expected.node_history(name).error for name in expected.node_statuses()
    }
    assert state["data"] == dict(expected.items())
    assert (
        state["audit"][0]["action"] == PAYLOADS["title"] and state["audit"][0]["detail"] == PAYLOADS["lines"]
    )
    failed = json.loads(run("reset-failed", hostile, "hostile", "--dry-run", "--json").stdout)
    assert failed["nodes"] == list(expected.node_statuses())


def test_out_of_range_times_show_as_unknown_not_a_crash(tmp_path: Path) -> None:
    """1e300 seconds in our file, 1e300 ms in a Go JSON file and waits of ±2^63: ls, show and
    validate print their tables; the times read as unknown."""
    folder = tmp_path / "times"
    folder.mkdir()
    ours = json.loads(bytes(JSONCodec().encode(rich_state("ours"), version=1, updated_at=1_700_000_000.0)))
    ours["flow_workbench"]["updated_at"] = 1e300
    ours["flow_workbench"]["created_at"] = -1e300
    ours["flow_workbench"]["started_at"]["node_0"] = 1e300
    ours["flow_workbench"]["finished_at"]["node_0"] = 1e300
    (folder / "ours.json").write_bytes(with_checksum(ours))
    go = json.loads((GOLDEN_GO / "v012_format_full.json").read_text())
    (folder / "go-time.json").write_text(json.dumps({**go, "id": "go-time", "__timestamp": 1e300}))
    for name, wait in (("go-late", 2**63 - 1), ("go-early", -(2**63))):
        (folder / f"{name}.json").write_text(json.dumps({**go, "id": name, "waits": {"waiting_node": wait}}))

    listed = run("ls", folder)
    assert "internal error" not in listed.stderr, listed.stderr
    rows = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
    assert set(rows) == {"ours", "go-time", "go-late", "go-early"}
    assert rows["ours"].split()[5] == rows["go-time"].split()[5] == "-"  # UPDATED: unknown
    for workflow_id in ("ours", "go-late", "go-early"):
        shown = run("show", folder, workflow_id)
        assert shown.returncode == 0, shown.stderr
    node_0 = next(
        line for line in run("show", folder, "ours").stdout.splitlines() if line.startswith("node_0 ")
    )
    assert node_0.split()[3:6] == ["-", "-", "-"]  # started, finished, duration
    validated = run("validate", folder)
    assert "internal error" not in validated.stderr, validated.stderr
    assert "file(s) checked" in validated.stdout


def test_format_time_never_raises() -> None:
    for timestamp in (1e300, -1e300, 2.0**63, -(2.0**63), 1e18, math.inf, math.nan, 0.0, None):
        assert format_time(timestamp) == "-"
    assert format_time(1_700_000_000.0).startswith("2023-11-1")
    for duration in (1e300, -1e300, math.inf, math.nan, None):
        assert format_duration(duration) == "-"
    assert format_duration(90.0) == "1m30s"
