"""pandas tables: workflows of a mixed folder, nodes, key-values, audit, metrics, styling."""

from __future__ import annotations

import json
import random
import re
import shutil
import zlib
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from flow_workbench import InMemoryStore, Workflow, WorkflowData, WorkflowExecutionError, reset_failed
from flow_workbench.demo import sample_dag
from flow_workbench.dot import STATUS_STYLES
from flow_workbench.notebook.tables import (
    STATUS_ORDER,
    audit_frame,
    data_frame,
    metrics_frame,
    nodes_frame,
    preview,
    style_nodes,
    style_workflows,
    workflows_frame,
)
from flow_workbench.presentation import display_text
from flow_workbench.status import STATUSES_BY_CODE, NodeStatus
from flow_workbench.stores.base import WorkflowStore, WorkflowSummary, summary_from_data
from flow_workbench.stores.flatbuffers import FlatBuffersStore
from flow_workbench.stores.json_file import JSONFileStore
from tests.helpers.paths import GOLDEN_GO

GO_STATUSES = ["waiting", "completed", "bypassed", "compensated", "compensation_failed"]


def run_failing(store: WorkflowStore, workflow_id: str, fail: str = "churn_model") -> WorkflowData:
    """Run the sample ETL DAG into ``store`` with one failing node; returns the stored state."""
    with pytest.raises(WorkflowExecutionError):
        Workflow(sample_dag(fail={fail}), workflow_id, store).execute()
    return store.load(workflow_id)


@pytest.fixture
def mixed_folder(tmp_path: Path) -> Path:
    """Our FlatBuffers and JSON files, the Go goldens, a corrupt file and stray files."""
    folder = tmp_path / "states"
    folder.mkdir()
    for golden in GOLDEN_GO.iterdir():
        shutil.copyfile(golden, folder / golden.name)
    with FlatBuffersStore(folder) as fb_store:
        run_failing(fb_store, "etl-fb", fail="churn_model")
    with JSONFileStore(folder) as json_store:
        run_failing(json_store, "etl-json", fail="join")
    (folder / "broken.fb").write_bytes(b"this is not a FlatBuffer" * 4)
    (folder / "notes.txt").write_text("not a state file")
    (folder / "bad name!.json").write_text("{}")
    return folder


# --- workflows_frame --------------------------------------------------------------------------


def test_workflows_frame_lists_every_state_file_of_a_mixed_folder(mixed_folder: Path) -> None:
    frame = workflows_frame(mixed_folder)
    rows = {Path(path).name: row for path, row in zip(frame["path"], frame.itertuples(), strict=True)}
    assert sorted(rows) == [
        "bad name!.json",  # a valid id (Go takes it) whose file holds no state: an error row
        "broken.fb",
        "etl-fb.fb",
        "etl-json.json",
        "m1_format_int.fb",
        "v012_format_full.fb",
        "v012_format_full.json",
    ]
    formats = dict(zip(frame["path"].map(lambda p: Path(p).name), frame["format"], strict=True))
    assert formats["etl-fb.fb"] == "ours FlatBuffers"
    assert formats["etl-json.json"] == "ours JSON"
    assert formats["v012_format_full.fb"] == "Go FlatBuffers"
    assert formats["v012_format_full.json"] == "Go JSON"
    assert formats["m1_format_int.fb"] == "Go FlatBuffers"
    assert pd.isna(formats["broken.fb"])


def test_unreadable_file_is_a_row_with_its_error(mixed_folder: Path) -> None:
    frame = workflows_frame(mixed_folder).set_index("id")
    broken = frame.loc["broken"]
    assert "CorruptStateError" in broken["error"]
    assert pd.isna(broken["nodes"]) and pd.isna(broken["progress"]) and pd.isna(broken["updated"])
    assert "CorruptStateError" in frame.loc["bad name!"]["error"]
    assert frame.drop(index=["broken", "bad name!"])["error"].isna().all()


def test_status_count_columns_in_lifecycle_order_with_exact_counts(mixed_folder: Path) -> None:
    frame = workflows_frame(mixed_folder)
    statuses = [column for column in frame.columns if column in {s.value for s in NodeStatus}]
    assert statuses == [s.value for s in STATUS_ORDER if s.value in statuses]
    assert set(GO_STATUSES) | {"failed", "skipped"} <= set(statuses)
    with FlatBuffersStore(mixed_folder) as store:
        expected = Counter(s.value for s in store.load("etl-fb").node_statuses().values())
    row = frame[frame["id"] == "etl-fb"].iloc[0]
    assert {status: row[status] for status in statuses if row[status]} == dict(expected)
    assert row["nodes"] == 7 and row["failed_nodes"] == "churn_model"
    go = frame[frame["path"].str.endswith("v012_format_full.json")].iloc[0]
    assert all(go[status] == 1 for status in GO_STATUSES)
    assert go["failed"] == 0 and go["failed_nodes"] == "compfailed_node"
    assert go["progress"] == pytest.approx(4 / 5)  # waiting is not terminal
    empty = frame[frame["id"] == "m1_format_int"].iloc[0]
    assert empty["nodes"] == 0 and empty["progress"] == 1.0


def test_updated_is_a_datetime_and_nat_for_go_files(mixed_folder: Path) -> None:
    frame = workflows_frame(mixed_folder).set_index("path")
    assert str(frame["updated"].dtype).startswith("datetime64")
    with JSONFileStore(mixed_folder) as store:
        data = store.load("etl-json")
    ours = frame.loc[str(mixed_folder / "etl-json.json")]
    assert ours["updated"].timestamp() == pytest.approx(data.updated_at, abs=1e-3)
    assert ours["version"] == data.version
    assert ours["size_bytes"] == (mixed_folder / "etl-json.json").stat().st_size
    assert pd.isna(frame.loc[str(mixed_folder / "v012_format_full.fb"), "updated"])


def test_workflows_frame_of_a_file_store_uses_its_suffix_only(mixed_folder: Path) -> None:
    with JSONFileStore(mixed_folder) as store:
        frame = workflows_frame(store)
    assert sorted(frame["id"]) == ["bad name!", "etl-json", "v012_format_full"]
    assert set(frame["format"].dropna()) == {"ours JSON", "Go JSON"}


def test_workflows_frame_of_many_files_agrees_with_full_loads(tmp_path: Path) -> None:
    """The light path (per-file summaries, journals folded in) gives the rows full loads give."""
    folder = tmp_path / "many"
    rng = random.Random(11)
    with FlatBuffersStore(folder) as store:
        for index in range(30):
            data = WorkflowData(f"wf-{index:02d}")
            for number in range(rng.choice([0, 1, 20, 80, 300])):
                name = "".join(rng.choice("ab\x00é节") for _ in range(rng.randrange(3))) + str(number)
                data.set_node_status(name, rng.choice(STATUSES_BY_CODE))
            store.save(data)
        journaled = store.load("wf-05")
        node = next(iter(journaled.node_statuses()))
        journaled.set_node_status(node, NodeStatus.FAILED)
        store.save_node(journaled, node)  # a record in the journal, not in the snapshot
        assert (folder / "wf-05.journal").exists()
        expected = {
            wid: summary_from_data(store.load(wid), store.format, source="", size_bytes=None)
            for wid in store.list_workflows()
        }
    frame = workflows_frame(folder).set_index("id")
    assert sorted(frame.index) == sorted(expected)
    for wid, summary in expected.items():
        row = frame.loc[wid]
        counts = {s: int(row[s]) for s in summary.status_counts}
        assert (row["nodes"], counts, row["version"]) == (
            summary.node_count,
            summary.status_counts,
            summary.version,
        )
        assert row["failed_nodes"] == display_text(", ".join(summary.failed_nodes))
    assert node in frame.loc["wf-05", "failed_nodes"].split(", ")


def test_workflows_frame_of_other_stores_uses_summary_per_id() -> None:
    class FlakyStore(InMemoryStore):
        def summary(self, workflow_id: str) -> WorkflowSummary:
            if workflow_id == "bad":
                raise OSError("disk on fire")
            return super().summary(workflow_id)

    store = FlakyStore()
    run_failing(store, "good")
    store.save(WorkflowData("bad"))
    frame = workflows_frame(store).set_index("id")
    assert frame.loc["good", "format"] == "memory"
    assert frame.loc["good", "failed"] == 1
    assert frame.loc["bad", "error"] == "OSError: disk on fire"


# --- nodes_frame ------------------------------------------------------------------------------


@pytest.fixture
def etl_state() -> tuple[InMemoryStore, WorkflowData]:
    store = InMemoryStore()
    return store, run_failing(store, "etl")


def test_status_is_an_ordered_categorical_of_all_statuses(
    etl_state: tuple[InMemoryStore, WorkflowData],
) -> None:
    _, data = etl_state
    frame = nodes_frame(data)
    dtype = frame["status"].dtype
    assert isinstance(dtype, pd.CategoricalDtype) and dtype.ordered
    assert list(dtype.categories) == [s.value for s in STATUS_ORDER]
    assert set(dtype.categories) == {s.value for s in NodeStatus}
    ordered = frame.sort_values("status")["status"].tolist()
    assert ordered == sorted(ordered, key=[s.value for s in STATUS_ORDER].index)
    assert ordered[0] == "completed" and ordered[-1] == "failed"
    assert frame["status"].max() == "failed"


def test_nodes_frame_rows_follow_the_state(etl_state: tuple[InMemoryStore, WorkflowData]) -> None:
    _, data = etl_state
    frame = nodes_frame(data)
    assert list(frame.index) == list(sample_dag().structure())  # DAG order
    for node, status in data.node_statuses().items():
        history = data.node_history(node)
        row = frame.loc[node]
        assert row["status"] == status.value
        assert row["attempts"] == history.attempts
        if history.duration is None:
            assert pd.isna(row["duration"])
        else:
            assert row["duration"].total_seconds() == pytest.approx(history.duration, abs=1e-6)
            assert row["started"].timestamp() == pytest.approx(history.started_at, abs=1e-6)
            assert row["finished"].timestamp() == pytest.approx(history.finished_at, abs=1e-6)
    failed = frame.loc["churn_model"]
    assert failed["attempts"] == 2  # one retry
    assert failed["error_type"] == "RuntimeError" and "HTTP 503" in failed["error"]
    assert frame.loc["extract_orders", "output"] == '{"rows": 1200}'
    assert pd.isna(frame.loc["publish", "output"])
    assert str(frame["duration"].dtype).startswith("timedelta64")


def test_upstream_and_downstream_counts(etl_state: tuple[InMemoryStore, WorkflowData]) -> None:
    store, _ = etl_state
    frame = nodes_frame(store, "etl")
    assert frame.loc["join", "upstream"] == 2 and frame.loc["join", "downstream"] == 2
    assert frame.loc["extract_orders", "upstream"] == 0 and frame.loc["extract_orders", "downstream"] == 1
    assert frame.loc["publish", "upstream"] == 2 and frame.loc["publish", "downstream"] == 0


def test_nodes_frame_of_a_go_file_shows_go_statuses_and_unknown_structure(tmp_path: Path) -> None:
    frame = nodes_frame(GOLDEN_GO, "v012_format_full")
    assert frame["status"].astype(str).to_dict() == {
        "waiting_node": "waiting",
        "compfailed_node": "compensation_failed",
        "bypassed_node": "bypassed",
        "done_node": "completed",
        "compensated_node": "compensated",
    }
    assert frame["upstream"].isna().all() and frame["downstream"].isna().all()
    # Go's timers store unix nanoseconds (the golden's 1893456000000 is a test number, 31 min after 1970)
    assert frame.loc["waiting_node", "wait_until"] == pd.Timestamp(1_893_456_000_000, unit="ns", tz="UTC")
    assert pd.isna(frame.loc["done_node", "wait_until"])
    # the JSON golden, addressed as a file path, reads the same
    from_json = nodes_frame(GOLDEN_GO / "v012_format_full.json")["status"]
    assert from_json.sort_index().equals(frame["status"].sort_index())


def test_a_dag_adds_structure_and_unseen_nodes_as_pending() -> None:
    data = WorkflowData("partial")
    data.set_node_status("extract_orders", NodeStatus.COMPLETED)
    frame = nodes_frame(data, dag=sample_dag())
    assert len(frame) == len(sample_dag())
    assert frame.loc["extract_orders", "status"] == "completed"
    assert frame.loc["publish", "status"] == "pending" and frame.loc["publish", "upstream"] == 2


def test_nodes_frame_sources_agree(mixed_folder: Path) -> None:
    with FlatBuffersStore(mixed_folder) as store:
        by_store = nodes_frame(store, "etl-fb")
        workflow = Workflow(sample_dag(), "etl-fb", store)
        by_workflow = nodes_frame(workflow)
    by_folder = nodes_frame(mixed_folder, "etl-fb")
    by_file = nodes_frame(mixed_folder / "etl-fb.fb")
    for other in (by_workflow, by_folder, by_file):
        pd.testing.assert_frame_equal(other, by_store)
    with pytest.raises(TypeError, match="workflow id"):
        nodes_frame(mixed_folder)


# --- data, audit, metrics ---------------------------------------------------------------------


def test_data_frame_keeps_exact_values_and_types() -> None:
    frame = data_frame(GOLDEN_GO / "v012_format_full.fb")
    assert frame.loc["balance_cents", "value"] == "9007199254740993"  # 2**53 + 1, not rounded
    assert frame.loc["balance_cents", "type"] == "int"
    assert frame.loc["region", "value"] == '"eu-west"'
    assert frame["type"].to_dict() == {
        "balance_cents": "int",
        "vip": "bool",
        "rate": "float",
        "region": "str",
    }
    data = WorkflowData("values")
    data.set("long", "x" * 500)
    data.set("nothing", None)
    data.set("nested", {"a": [1, 2]})
    frame = data_frame(data)
    assert len(frame.loc["long", "value"]) == 80 and frame.loc["long", "value"].endswith("\u2026")
    assert frame.loc["nothing", "type"] == "null"
    assert frame.loc["nested", "value"] == '{"a": [1, 2]}'


def test_preview_cuts_long_values_to_one_line() -> None:
    assert preview({"a": "b"}) == '{"a": "b"}'
    text = preview(["line\nbreak"] * 40, limit=30)
    assert len(text) == 30 and "\n" not in text


def test_audit_frame_lists_manual_edits(etl_state: tuple[InMemoryStore, WorkflowData]) -> None:
    store, _ = etl_state
    assert audit_frame(store, "etl").empty
    reset_failed(store, "etl")
    frame = audit_frame(store, "etl")
    assert frame["action"].tolist() == ["reset_failed"]
    assert frame.loc[0, "nodes"] == "churn_model, publish"
    assert str(frame["at"].dtype).startswith("datetime64")


def test_metrics_frame_counts_store_operations(etl_state: tuple[InMemoryStore, WorkflowData]) -> None:
    store, _ = etl_state
    before = metrics_frame(store).loc["load", "calls"]
    for _ in range(3):
        store.load("etl")
    frame = metrics_frame(store)
    assert frame.loc["load", "calls"] == before + 3
    assert {"calls", "failures", "mean_seconds", "max_seconds", "last_error"} <= set(frame.columns)


# --- styling ----------------------------------------------------------------------------------


def test_style_nodes_colours_status_cells_with_the_dag_palette(
    etl_state: tuple[InMemoryStore, WorkflowData],
) -> None:
    _, data = etl_state
    frame = nodes_frame(data)
    html = style_nodes(frame).to_html()
    assert STATUS_STYLES[NodeStatus.FAILED].fill in html
    assert STATUS_STYLES[NodeStatus.COMPLETED].fill in html
    assert STATUS_STYLES[NodeStatus.COMPENSATED].fill not in html  # no such node
    assert type(frame) is pd.DataFrame  # styling never changes the plain table


def test_style_workflows_marks_errors(mixed_folder: Path) -> None:
    html = style_workflows(workflows_frame(mixed_folder)).to_html()
    assert "#B00020" in html and "CorruptStateError" in html
    assert STATUS_STYLES[NodeStatus.WAITING].fill in html


# --- times a table cannot hold -----------------------------------------------------------------

HUGE = 1e300  # seconds: far beyond what a datetime can hold


def _restamp(path: Path, **fields: float) -> None:
    """Set fields of our JSON file's extension block and write a matching checksum (crc32 of the
    file with its checksum digits zeroed), as a damaged or hostile writer could."""
    text = path.read_text(encoding="utf-8")
    for name, value in fields.items():
        text = re.sub(rf'"{name}":[-0-9.e+]+', f'"{name}":{value!r}', text, count=1)
    text = re.sub(r'"checksum":"[0-9a-f]{8}"', '"checksum":"00000000"', text, count=1)
    checksum = f"{zlib.crc32(text.encode('utf-8')):08x}"
    path.write_text(text.replace('"checksum":"00000000"', f'"checksum":"{checksum}"', 1), encoding="utf-8")


@pytest.fixture
def far_times_folder(tmp_path: Path) -> Path:
    """Files whose times no datetime can hold: ours (updated_at and a node's times at 1e300), a Go
    JSON file stamped 1e300 ms, one with waits of -2^63 and 2^63-1 ns, and an ordinary file."""
    folder = tmp_path / "far"
    folder.mkdir()
    with JSONFileStore(folder) as store:
        state = WorkflowData("ours-far")
        state.record_attempt_started("a", at=1_700_000_000.0)
        state.record_attempt_finished("a", NodeStatus.COMPLETED, at=1_700_000_001.0)
        store.save(state)
        store.save(WorkflowData("ordinary"))
    path = folder / "ours-far.json"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("1700000000.0", repr(-HUGE)).replace("1700000001.0", repr(HUGE)))
    _restamp(path, updated_at=HUGE)
    go = {"id": "go-stamp", "data": {}, "nodeStatus": {"a": "completed"}, "outputs": {}}
    (folder / "go-stamp.json").write_text(json.dumps(go | {"__timestamp": HUGE}))
    waits = {"early": -(2**63), "late": 2**63 - 1, "normal": 1_700_000_000_000_000_000}
    statuses = dict.fromkeys(waits, "waiting")
    (folder / "go-waits.json").write_text(
        json.dumps(go | {"id": "go-waits", "nodeStatus": statuses, "waits": waits})
    )
    return folder


def test_out_of_range_times_show_as_unknown_and_never_raise(far_times_folder: Path) -> None:
    frame = workflows_frame(far_times_folder).set_index("id")
    assert sorted(frame.index) == ["go-stamp", "go-waits", "ordinary", "ours-far"]
    assert str(frame["updated"].dtype) == "datetime64[ns, UTC]"
    assert pd.isna(frame.loc["go-stamp", "updated"]) and pd.isna(frame.loc["ours-far", "updated"])
    assert frame.loc["ordinary", "updated"].year >= 2024
    assert frame["error"].isna().all() and frame.loc["ours-far", "nodes"] == 1

    ours = nodes_frame(far_times_folder / "ours-far.json")
    assert pd.isna(ours.loc["a", "started"]) and pd.isna(ours.loc["a", "finished"])
    assert pd.isna(ours.loc["a", "duration"])
    waits = nodes_frame(far_times_folder / "go-waits.json")
    assert waits["wait_until"].isna().tolist() == [True, True, False]
    assert waits.loc["normal", "wait_until"] == pd.Timestamp(1_700_000_000, unit="s", tz="UTC")
    assert "NaT" not in style_nodes(waits).to_html()  # unknown shows as an empty cell


def test_store_browser_shows_every_row_despite_out_of_range_times(far_times_folder: Path) -> None:
    from flow_workbench.notebook.browser import StoreBrowser

    browser = StoreBrowser(far_times_folder)
    assert sorted(browser.frame["id"]) == ["go-stamp", "go-waits", "ordinary", "ours-far"]
    for workflow_id in ("go-stamp", "go-waits", "ordinary", "ours-far"):
        assert f">{workflow_id}<" in browser.table.value
    browser.select("go-waits")
    assert browser.panel is not None and browser.panel.last_error is None


def test_table_html_draws_at_most_max_rows_and_says_so() -> None:
    from flow_workbench.notebook.tables import table_html

    frame = pd.DataFrame({"value": range(2_000)}, index=pd.Index([f"<k{i}>" for i in range(2_000)]))
    text = table_html(frame, max_rows=500)
    assert "showing the first 500 of 2000 rows" in text
    assert text.count("<tr") == 501  # the header and 500 rows
    assert "&lt;k499&gt;" in text and "k500" not in text
    assert table_html(frame.iloc[:0], empty="<none>") == "<i>&lt;none&gt;</i>"


def test_styled_tables_read_well_and_keep_their_colours_untrusted() -> None:
    """Durations in seconds, times to the millisecond, one mark for every empty value, no wrapped
    ids or times, and colours in style attributes (JupyterLab's sanitiser drops <style> blocks)."""
    from flow_workbench.notebook.tables import EMPTY, STATUS_DTYPE, escaped_style, style_nodes

    frame = pd.DataFrame(
        {
            "status": pd.Categorical(["completed", "failed"], dtype=STATUS_DTYPE),
            "started": pd.to_datetime([1_700_000_000.3021, None], unit="s", utc=True),
            "duration": pd.to_timedelta([0.302, None], unit="s"),
            "error": [None, "boom " * 40],
            "output": [float("nan"), pd.NA],
        },
        index=pd.Index(["a_very_long_node_id", "b"], name="node"),
    )
    html = style_nodes(frame)._repr_html_()
    assert "2023-11-14 22:13:20.302 UTC" in html and ">0.302 s<" in html
    assert "0 days" not in html and "NaT" not in html and "NaN" not in html and "None" not in html
    assert html.count(f">{EMPTY}<") == 5  # the empty started, duration, error and output cells
    assert "<style" not in html
    assert f'style="background-color: {STATUS_STYLES[NodeStatus.FAILED].fill}; color: #000000;"' in html
    assert 'style="white-space: nowrap;" class="row_heading' in html  # ids do not wrap
    assert "overflow-wrap: anywhere" in html  # long errors wrap inside a width
    assert escaped_style(frame).to_html().count("<style") == 1  # to_html itself stays pandas'
