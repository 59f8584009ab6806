"""Persistence.NODE runs in the FlatBuffers store end with one journal record when it holds every change."""

from __future__ import annotations

import contextlib
import random
from pathlib import Path

import pytest

from flow_workbench import DAG, Persistence, Workflow
from flow_workbench.data import Changed, ChangeLog, RunRecord, WorkflowData
from flow_workbench.errors import WorkflowExecutionError
from flow_workbench.status import NodeStatus
from flow_workbench.stores import _journal
from flow_workbench.stores._journal import journal_suffix, read_journal
from flow_workbench.stores.files import RUN_END_RECORDS, FileStore
from flow_workbench.stores.flatbuffers import FlatBuffersStore
from flow_workbench.stores.folder import scan_folder
from flow_workbench.stores.json_file import JSONFileStore
from flow_workbench.testing import RUN_END_CHANGES, node_by_node_run

#: The changes a node record can carry: with only those, the run ends with one.
RECORDABLE = {"nothing else", "another node", "a new node"}


def journal_records(store: FileStore, workflow_id: str) -> int | None:
    """Records in the workflow's journal, None when there is none."""
    name = workflow_id + journal_suffix(Path(store.path_of(workflow_id)).suffix)
    contents = read_journal(str(Path(store.base_dir) / name), 1 << 26)
    return None if contents is None else contents.records


def chain(nodes: int, fail: str | None = None) -> DAG:
    def action(name: str):  # type: ignore[no-untyped-def]
        def run(data: object) -> str:
            if name == fail:
                raise RuntimeError(f"{name} fails")
            return name

        return run

    dag = DAG("chain")
    for index in range(nodes):
        dag.add_node(f"c{index}", action(f"c{index}"), depends_on=[f"c{index - 1}"] if index else [])
    return dag


def snapshots_written(store: FileStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the snapshot writes the store makes from now on (first snapshots included)."""
    written: list[str] = []
    for method in ("_write_snapshot", "_write_first_snapshot"):
        original = getattr(store, method)

        def spy(*args: object, _original: object = original, _method: str = method) -> object:
            written.append(_method)
            return _original(*args)  # type: ignore[operator]

        monkeypatch.setattr(store, method, spy)
    return written


@pytest.mark.parametrize("change", list(RUN_END_CHANGES))
def test_the_run_ends_with_a_record_only_when_one_holds_every_change(tmp_path: Path, change: str) -> None:
    store = FlatBuffersStore(tmp_path)
    data = node_by_node_run(store, "wf", change)
    # A snapshot removes the journal; a record is its third one (run start, node_0 + node_1, end).
    assert journal_records(store, "wf") == (3 if change in RECORDABLE else None)
    assert FlatBuffersStore(tmp_path).load("wf").differences(data) == []


def test_the_json_store_always_ends_a_run_with_a_snapshot(tmp_path: Path) -> None:
    store = JSONFileStore(tmp_path)
    data = node_by_node_run(store, "wf", "nothing else")
    assert journal_records(store, "wf") is None
    assert JSONFileStore(tmp_path).load("wf").differences(data) == []


def test_a_short_chain_writes_one_snapshot_and_one_record_per_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FlatBuffersStore(tmp_path)
    written = snapshots_written(store, monkeypatch)
    result = Workflow(chain(10), "wf", store, persistence=Persistence.NODE, executor="inline").execute()
    assert written == ["_write_first_snapshot"]  # with the run record and c0's start
    # c0's end with c1's start, ..., c8's end with c9's start, then c9's end with the run's end.
    assert journal_records(store, "wf") == 10
    loaded = FlatBuffersStore(tmp_path).load("wf")
    assert loaded.differences(result.data) == []
    assert loaded.runs()[-1].outcome == "succeeded" and loaded.runs()[-1].completed == 10


@pytest.mark.parametrize(
    ("options", "nodes"),
    [({"run_end_records": 0}, 10), ({"run_end_records": 5}, 10), ({}, RUN_END_RECORDS + 1)],
    ids=["records off", "journal longer than the limit", "a chain longer than the default"],
)
def test_longer_runs_end_with_a_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: dict[str, int], nodes: int
) -> None:
    store = FlatBuffersStore(tmp_path, run_end_records=options.get("run_end_records", RUN_END_RECORDS))
    written = snapshots_written(store, monkeypatch)
    result = Workflow(chain(nodes), "wf", store, persistence=Persistence.NODE, executor="inline").execute()
    assert written == ["_write_first_snapshot", "_write_snapshot"]
    assert journal_records(store, "wf") is None
    assert FlatBuffersStore(tmp_path).load("wf").differences(result.data) == []


def test_resumed_runs_append_until_the_journal_is_full_then_fold_it(tmp_path: Path) -> None:
    store = FlatBuffersStore(tmp_path)
    workflow = Workflow(chain(10), "wf", store, persistence=Persistence.NODE, executor="inline")
    seen = []
    for _ in range(8):
        result = workflow.execute(rerun="all")
        records = journal_records(store, "wf")
        seen.append(records)
        assert records is None or records <= RUN_END_RECORDS
        assert FlatBuffersStore(tmp_path).load("wf").differences(result.data) == []
    assert None in seen and any(records and records > 10 for records in seen), seen


def test_new_parameters_or_dag_nodes_end_the_run_with_a_snapshot(tmp_path: Path) -> None:
    store = FlatBuffersStore(tmp_path)
    Workflow(chain(3), "wf", store, persistence=Persistence.NODE, executor="inline").execute()
    assert journal_records(store, "wf") is not None
    result = Workflow(chain(3), "wf", store, persistence=Persistence.NODE, executor="inline").execute(
        params={"k": 1}, rerun="all"
    )
    assert journal_records(store, "wf") is None  # the parameter is a key-value: a snapshot
    assert FlatBuffersStore(tmp_path).load("wf").get("k") == 1
    Workflow(chain(3), "wf", store, persistence=Persistence.NODE, executor="inline").execute(rerun="all")
    assert journal_records(store, "wf") is not None
    result = Workflow(chain(4), "wf", store, persistence=Persistence.NODE, executor="inline").execute()
    assert journal_records(store, "wf") is None  # a node more in the DAG document: a snapshot
    loaded = FlatBuffersStore(tmp_path).load("wf")
    assert loaded.differences(result.data) == [] and "c3" in (loaded.dag_structure or {})


def test_artifact_outputs_end_the_run_with_a_snapshot(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    dag = DAG("arrays")
    dag.add_node("make", lambda data: np.arange(10))
    store = FlatBuffersStore(tmp_path)
    result = Workflow(dag, "wf", store, persistence=Persistence.NODE, executor="inline").execute()
    assert journal_records(store, "wf") is None
    loaded = FlatBuffersStore(tmp_path).load("wf")
    assert loaded.differences(result.data) == []
    assert list(loaded.get_output("make")) == list(range(10))


def test_random_runs_and_edits_load_as_the_engine_left_them(tmp_path: Path) -> None:
    """Runs that fail, resets, marks and re-runs, in both stores: every load is what the run left."""
    rng = random.Random(20261202)
    for round_number in range(12):
        folder = tmp_path / str(round_number)
        store = FlatBuffersStore(folder, run_end_records=rng.choice([2, 8, RUN_END_RECORDS]))
        size = rng.randint(1, 12)
        fail = f"c{rng.randrange(size)}" if rng.random() < 0.5 else None
        workflow = Workflow(chain(size, fail), "wf", store, persistence=Persistence.NODE, executor="inline")
        for step in range(rng.randint(1, 5)):
            choice = rng.random() if step else 1.0  # the first step runs: the others need a state
            if choice < 0.2:
                workflow.reset_failed()
                continue
            if choice < 0.3:
                workflow.mark_nodes([f"c{rng.randrange(size)}"], "completed")
                continue
            with contextlib.suppress(WorkflowExecutionError):
                workflow.execute(rerun=rng.choice([None, "all"]))
            assert workflow.data is not None
            assert FlatBuffersStore(folder).load("wf").differences(workflow.data) == []


def test_a_batched_store_syncs_the_record_that_ends_a_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``durability="batched"`` records wait for k of them; the run's last one does not."""
    synced: list[int] = []
    original = _journal._fdatasync

    def counted(fd: int) -> None:
        synced.append(fd)
        original(fd)

    monkeypatch.setattr(_journal, "_fdatasync", counted)
    store = FlatBuffersStore(tmp_path, durability="batched", batch_records=1000, batch_ms=1e9)
    Workflow(chain(10), "wf", store, persistence=Persistence.NODE, executor="inline").execute()
    assert journal_records(store, "wf") == 10
    assert len(synced) == 1  # nine records waited; the tenth ended the run and synced them all


def test_both_kinds_of_one_id_in_one_folder_keep_their_own_journals(tmp_path: Path) -> None:
    """A FlatBuffers run that ended with a record, then the same workflow saved as JSON beside it
    (``convert DIR DIR --to json``): the JSON writes never touch the FlatBuffers journal."""
    fb, js = FlatBuffersStore(tmp_path), JSONFileStore(tmp_path)
    result = Workflow(chain(5), "wf", fb, persistence=Persistence.NODE, executor="inline").execute()
    assert journal_records(fb, "wf") == 5
    copied = fb.load("wf")
    js.save(copied)
    js.save_node(copied, "c0")  # a JSON journal of the same id, at its own name
    assert sorted(path.name for path in tmp_path.iterdir() if "journal" in path.name) == [
        "wf.journal",
        "wf.json-journal",
    ]
    assert FlatBuffersStore(tmp_path).load("wf").differences(result.data) == []
    assert JSONFileStore(tmp_path).load("wf").differences(copied) == []
    entries = {Path(entry.path).name: entry.summary for entry in scan_folder(tmp_path)}
    assert entries["wf.fb"] is not None and entries["wf.fb"].version == result.data.version
    assert entries["wf.json"] is not None and entries["wf.json"].version == copied.version
    fb.delete("wf")
    assert [path.name for path in tmp_path.iterdir() if "journal" in path.name] == ["wf.json-journal"]


def test_a_change_no_record_carries_stops_the_store_looking_after_a_bounded_number_of_entries(
    tmp_path: Path,
) -> None:
    """A key-value set after the load (run parameters) means the run ends with a snapshot: the
    store looks at the change log after each record only until it passes a bound, not at the
    whole log after every record (quadratic over a long run)."""
    store = FlatBuffersStore(tmp_path, run_end_records=2)  # looks at no more than 32 entries
    store.save(WorkflowData("wf"))
    data = store.load("wf")
    data.set("k", 1)
    assert data.unstored_changes(store._token) == [(Changed.DATA, None)]
    for index in range(6):
        data.set_node_status(f"n{index}", NodeStatus.COMPLETED)
        store.save_nodes(data, [f"n{index}"])
        assert data.unstored_changes(store._token) is not None  # few entries: still known
    for index in range(40):
        data.set_node_status(f"m{index}", NodeStatus.COMPLETED)
        store.save_nodes(data, [f"m{index}"])
    assert data.unstored_changes(store._token) is None  # past the bound: unknown from now on
    data.put_run(RunRecord(run_id="r", started_at=1.0))
    store.save_run_end(data, [], "r")
    assert journal_records(store, "wf") is None  # a snapshot, holding the key-value
    assert FlatBuffersStore(tmp_path).load("wf").differences(data) == []


def test_change_log_limits_refuse_before_copying() -> None:
    log = ChangeLog()
    mark = log.mark()
    for index in range(5):
        log.note(Changed.STATUS, f"n{index}")
    assert log.since(mark, 5) == [(Changed.STATUS, f"n{index}") for index in range(5)]
    assert log.since(mark, 4) is None
    assert log.since(mark) is not None
