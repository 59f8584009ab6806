"""RecoveryPanel and StoreBrowser driven headless: previews, confirms, errors, runs, corrupt files."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from flow_workbench import (
    DAG,
    InMemoryStore,
    NodeStatus,
    Workflow,
    WorkflowData,
    WorkflowExecutionError,
    copy_workflow,
    mark_nodes,
    reset_failed,
    reset_nodes,
)
from flow_workbench.demo import sample_dag
from flow_workbench.errors import UnknownNodeError, VersionConflictError
from flow_workbench.notebook import DAGView, graph_select
from flow_workbench.notebook.browser import StoreBrowser
from flow_workbench.notebook.graph_select import GraphSelect
from flow_workbench.notebook.widgets import Action, RecoveryPanel
from flow_workbench.stores.base import StateFormat, WorkflowStore
from flow_workbench.stores.flatbuffers import FlatBuffersStore
from flow_workbench.stores.folder import scan_folder
from tests.helpers.paths import GOLDEN_GO

WF = "etl"

#: What each action does through the recovery API, and which nodes the test selects for it.
API: dict[Action, tuple[tuple[str, ...], Callable[[WorkflowStore, tuple[str, ...]], list[str]]]] = {
    Action.RESET: (("join",), lambda store, nodes: reset_nodes(store, WF, nodes)),
    Action.RESET_DOWNSTREAM: (("join",), lambda store, nodes: reset_nodes(store, WF, nodes, downstream=True)),
    Action.RESET_FAILED: ((), lambda store, nodes: reset_failed(store, WF)),
    Action.MARK_COMPLETED: (("churn_model",), lambda store, nodes: mark_nodes(store, WF, nodes, "completed")),
    Action.MARK_SKIPPED: (
        ("churn_model", "revenue_report"),
        lambda store, nodes: mark_nodes(store, WF, nodes, "skipped"),
    ),
}


def failed_run(store: WorkflowStore, workflow_id: str = WF) -> None:
    with pytest.raises(WorkflowExecutionError):
        Workflow(sample_dag(fail={"churn_model"}), workflow_id, store).execute()


def twin_stores() -> tuple[InMemoryStore, InMemoryStore]:
    """Two stores holding the same failed run: one for the panel, one for the recovery API."""
    panel_store, api_store = InMemoryStore(), InMemoryStore()
    failed_run(panel_store)
    copy_workflow(panel_store, api_store, WF)
    return panel_store, api_store


def same_state(a: WorkflowData, b: WorkflowData) -> bool:
    """Equal except save stamps; audit entries compared without their timestamps."""
    strip = [(entry.action, entry.nodes, entry.detail) for entry in a.audit]
    other = [(entry.action, entry.nodes, entry.detail) for entry in b.audit]
    return strip == other and a.same_content(b, ignore=("version", "updated_at", "audit"))


@pytest.mark.parametrize("action", list(Action))
def test_preview_changes_nothing_and_confirm_matches_the_recovery_api(action: Action) -> None:
    panel_store, api_store = twin_stores()
    nodes, apply = API[action]
    panel = RecoveryPanel(panel_store, WF)
    before = panel_store.load(WF)

    panel.select(nodes)
    previewed = panel.preview(action)
    assert previewed == apply_dry_run(api_store, action, nodes)
    assert previewed, "every chosen action changes something in the failed run"
    assert panel.pending is not None and not panel.confirm_button.disabled
    after_preview = panel_store.load(WF)
    assert after_preview.version == before.version and after_preview.same_content(before)
    assert "Nothing has changed yet" in panel.message.value

    changed = panel.confirm()
    assert changed == apply(api_store, nodes) == previewed
    assert same_state(panel_store.load(WF), api_store.load(WF))
    assert panel_store.load(WF).version == before.version + 1
    assert panel.pending is None and panel.confirm_button.disabled
    assert panel.last_error is None and "Done" in panel.message.value


def apply_dry_run(store: WorkflowStore, action: Action, nodes: tuple[str, ...]) -> list[str]:
    """The recovery API's own dry run of ``action``."""
    if action is Action.RESET_FAILED:
        return reset_failed(store, WF, dry_run=True)
    if action is Action.MARK_COMPLETED:
        return mark_nodes(store, WF, nodes, "completed", dry_run=True)
    if action is Action.MARK_SKIPPED:
        return mark_nodes(store, WF, nodes, "skipped", dry_run=True)
    return reset_nodes(store, WF, nodes, downstream=action is Action.RESET_DOWNSTREAM, dry_run=True)


def test_buttons_drive_the_same_steps() -> None:
    panel_store, api_store = twin_stores()
    panel = RecoveryPanel(panel_store, WF)
    panel.select(["join"])
    panel.action_buttons[Action.RESET_DOWNSTREAM].click()
    assert panel.pending is not None and panel.pending.affected == (
        "join",
        "revenue_report",
        "churn_model",
        "publish",
    )
    panel.confirm_button.click()
    reset_nodes(api_store, WF, ["join"], downstream=True)
    assert same_state(panel_store.load(WF), api_store.load(WF))
    # the list and the table were redrawn from the stored state
    labels = dict((value, label) for label, value in panel.node_select.options)
    assert labels["join"].endswith("(pending)") and labels["extract_orders"].endswith("(completed)")
    assert panel.picture.value.count('class="node status-pending"') == 4
    assert panel.table.value.count(">pending<") == 4


def test_cancel_and_confirm_without_preview_change_nothing() -> None:
    store, _ = twin_stores()
    panel = RecoveryPanel(store, WF)
    before = store.load(WF)
    assert panel.confirm() is None and "preview an action first" in panel.message.value
    panel.preview(Action.RESET_FAILED)
    panel.cancel_button.click()
    assert panel.pending is None and "Cancelled" in panel.message.value
    assert panel.confirm() is None
    assert store.load(WF).version == before.version


def test_actions_on_selected_nodes_need_a_selection() -> None:
    store, _ = twin_stores()
    panel = RecoveryPanel(store, WF)
    assert panel.preview(Action.RESET) is None
    assert "Select one or more nodes" in panel.message.value and panel.pending is None


def test_unknown_node_is_shown_in_the_panel_not_raised() -> None:
    store, _ = twin_stores()
    panel = RecoveryPanel(store, WF)
    assert panel.preview(Action.MARK_COMPLETED, ["no_such_node"]) is None
    assert isinstance(panel.last_error, UnknownNodeError)
    assert "UnknownNodeError" in panel.message.value and "no_such_node" in panel.message.value
    assert panel.pending is None


def test_a_save_between_preview_and_confirm_voids_the_preview() -> None:
    store, _ = twin_stores()
    panel = RecoveryPanel(store, WF)
    panel.preview(Action.RESET_FAILED)
    store.save(store.load(WF))  # e.g. another session saved the workflow meanwhile
    before = store.load(WF)
    assert panel.confirm() is None
    assert "changed since the preview" in panel.message.value
    after = store.load(WF)
    assert after.version == before.version and after.same_content(before)


def test_version_conflict_while_applying_is_shown_in_the_panel() -> None:
    class ConflictingStore(InMemoryStore):
        conflicts = 0

        def save(self, data: WorkflowData) -> None:
            if self.conflicts:
                self.conflicts -= 1
                raise VersionConflictError(data.id, data.version, data.version + 1)
            super().save(data)

    store = ConflictingStore()
    failed_run(store)
    panel = RecoveryPanel(store, WF)
    panel.preview(Action.RESET_FAILED)
    store.conflicts = 1
    assert panel.confirm() is None
    assert isinstance(panel.last_error, VersionConflictError)
    assert "VersionConflictError" in panel.message.value
    assert store.load(WF).get_node_status("churn_model") is NodeStatus.FAILED


def test_run_again_completes_after_reset_all_failed() -> None:
    store = InMemoryStore()
    failed_run(store)
    panel = RecoveryPanel(store, WF, workflow=Workflow(sample_dag(), WF, store))
    assert panel.run_button.layout.display is None  # shown: there is something to run
    panel.preview(Action.RESET_FAILED)
    panel.confirm()
    panel.run_button.click()
    assert panel.last_result is not None and panel.last_result.succeeded
    statuses = store.load(WF).node_statuses()
    assert set(statuses.values()) == {NodeStatus.COMPLETED} and len(statuses) == 7
    assert "Run finished" in panel.message.value
    assert "status-failed" not in panel.picture.value and "<svg" in panel.picture.value


def test_run_with_failures_is_reported_in_the_panel() -> None:
    store = InMemoryStore()
    failed_run(store)
    panel = RecoveryPanel(store, WF, dag=sample_dag(fail={"churn_model"}))
    panel.preview(Action.RESET_FAILED)
    panel.confirm()
    assert panel.run() is None
    assert isinstance(panel.last_error, WorkflowExecutionError)
    assert "churn_model" in panel.message.value
    assert store.load(WF).get_node_status("churn_model") is NodeStatus.FAILED


def test_without_workflow_or_dag_there_is_no_run() -> None:
    store, _ = twin_stores()
    panel = RecoveryPanel(store, WF)
    assert panel.run_button.layout.display == "none"
    assert panel.run() is None and "Cannot run" in panel.message.value
    with pytest.raises(ValueError, match="runs"):
        RecoveryPanel(store, WF, workflow=Workflow(sample_dag(), "other", store))


def test_go_file_reset_downstream_needs_a_dag_and_says_so(tmp_path: Path) -> None:
    shutil.copyfile(GOLDEN_GO / "v012_format_full.fb", tmp_path / "v012_format_full.fb")
    with FlatBuffersStore(tmp_path, layout="go") as store:
        panel = RecoveryPanel(store, "v012_format_full")
        assert panel.preview(Action.RESET_DOWNSTREAM, ["done_node"]) is None
        assert "MissingDAGError" in panel.message.value
        assert panel.preview(Action.RESET, ["compfailed_node"]) == ["compfailed_node"]
        assert panel.confirm() == ["compfailed_node"]
        assert store.load("v012_format_full").get_node_status("compfailed_node") is NodeStatus.PENDING
        assert store.load("v012_format_full").get_node_status("waiting_node") is NodeStatus.WAITING


# --- choosing nodes by clicking them in the picture ----------------------------------------------
# A click in the browser toggles a name in ``panel.picture.selected`` (graph_select.js); setting the
# traitlet here has the same effect on the Python side. tests/test_browser_e2e.py clicks for real.


def click(panel: RecoveryPanel, node: str) -> None:
    """What a click on ``node`` in the rendered picture does: toggle it in the synced selection."""
    chosen = list(panel.picture.selected)
    panel.picture.selected = [name for name in chosen if name != node] if node in chosen else [*chosen, node]


def test_clicked_nodes_are_the_panels_selection_and_reset_applies_to_them() -> None:
    store, api_store = twin_stores()
    panel = RecoveryPanel(store, WF)
    assert isinstance(panel.picture, GraphSelect)
    click(panel, "churn_model")
    click(panel, "join")
    click(panel, "publish")
    click(panel, "join")  # a second click deselects
    assert panel.selected == ("churn_model", "publish")
    assert panel.node_select.value == ("churn_model", "publish")

    assert panel.preview(Action.RESET) == ["churn_model", "publish"]
    assert "churn_model" in panel.message.value and "publish" in panel.message.value
    assert panel.confirm() == ["churn_model", "publish"]
    reset_nodes(api_store, WF, ["churn_model", "publish"])
    assert same_state(store.load(WF), api_store.load(WF))
    # the redraw keeps the selection, in the list and in the picture
    assert panel.picture.value.count('class="node status-pending"') == 2
    assert panel.selected == ("churn_model", "publish")
    assert panel.picture.selected == ["churn_model", "publish"]


def test_list_selection_and_select_show_in_the_picture() -> None:
    store, _ = twin_stores()
    panel = RecoveryPanel(store, WF)
    panel.node_select.value = ("join", "extract_orders")  # what choosing in the list does
    assert panel.picture.selected == ["join", "extract_orders"]
    panel.select(["revenue_report", "no such node"])
    assert panel.picture.selected == ["revenue_report"] and panel.selected == ("revenue_report",)
    panel.picture.selected = ["no such node", "join", "join"]  # unknown and repeated names are dropped
    assert panel.picture.selected == ["join"] and panel.selected == ("join",)
    panel.picture.selected = []
    assert not panel.selected


def test_picture_names_match_the_svg_node_elements() -> None:
    store, _ = twin_stores()
    panel = RecoveryPanel(store, WF)
    names = panel.picture.node_names
    assert sorted(names.values()) == sorted(store.load(WF).node_statuses())
    svg = panel.picture.value
    for element_id, name in names.items():
        # the group with that id is the node's: its tooltip starts with the node's name
        start = svg.index(f'<g id="{element_id}" class="node')
        assert svg.index(f'<a xlink:title="{name}&#10;', start) < svg.index("</g>", start)


def test_node_names_with_markup_stay_data() -> None:
    hostile = ['<img src=x onerror="alert(1)">', "a'b\"c&d", "line\nbreak"]
    dag = DAG("hostile")
    for name in hostile:
        dag.add_node(name, lambda data: None)
    store = InMemoryStore()
    Workflow(dag, "h", store).execute()
    panel = RecoveryPanel(store, "h", dag=dag)
    assert sorted(panel.picture.node_names.values()) == sorted(hostile)  # sent as JSON values
    assert "<img" not in panel.picture.value  # drawn escaped
    panel.picture.selected = [hostile[0], hostile[2]]
    assert panel.selected == (hostile[0], hostile[2])
    assert panel.preview(Action.RESET) == [hostile[0], hostile[2]]
    assert "<img" not in panel.message.value


def test_graph_select_without_a_front_end() -> None:
    widget = GraphSelect(value="<svg></svg>", node_names={"node-0": "a", "node-1": "b"})
    widget.selected = ["b", "x", "a", "b"]
    assert widget.selected == ["b", "a"]
    widget.node_names = {"node-0": "a"}  # a redraw without "b" drops it from the selection
    assert widget.selected == ["a"]
    # a plain graphviz SVG comes without a map: the front end reads names from <title>
    plain = GraphSelect(value="<svg></svg>")
    plain.selected = ["x", "x"]
    assert plain.selected == ["x"]


def test_front_end_inserts_names_only_as_data() -> None:
    """graph_select.js sets innerHTML only to the picture Python escaped, never to a node name."""
    source = Path(graph_select.__file__).with_name("graph_select.js").read_text(encoding="utf-8")
    assignments = re.findall(r"\.(innerHTML|outerHTML)\s*=\s*([^;]+);", source)
    assert assignments == [("innerHTML", 'model.get("value")')]
    assert "insertAdjacentHTML" not in source and "eval(" not in source
    assert "export default" in source


def test_panel_display_keeps_the_picture_for_static_exports() -> None:
    store, _ = twin_stores()
    panel = RecoveryPanel(store, WF)
    bundle = panel._repr_mimebundle_()
    bundle = bundle[0] if isinstance(bundle, tuple) else bundle
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "image/svg+xml" not in bundle  # the picture once: in the static fallback
    assert bundle["text/plain"].startswith("<RecoveryPanel")
    # what an untrusted JupyterLab, nbconvert and GitHub show: the picture as an image, the table
    fallback = bundle["text/html"]
    assert '<img src="data:image/svg+xml;base64,' in fallback and "<svg" not in fallback
    assert "<table" in fallback and "<style" not in fallback and "background-color: #" in fallback


# --- StoreBrowser -----------------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    folder = tmp_path / "states"
    folder.mkdir()
    for golden in GOLDEN_GO.iterdir():
        shutil.copyfile(golden, folder / golden.name)
    with FlatBuffersStore(folder) as store:
        failed_run(store)
    (folder / "aaa_corrupt.fb").write_bytes(b"\x00" * 64)
    (folder / "truncated.json").write_text('{"id": "truncated", "nodeStatus": {')
    (folder / "README.txt").write_text("stray file")
    return folder


def test_browser_shows_corrupt_files_and_keeps_working(folder: Path) -> None:
    browser = StoreBrowser(folder)
    labels = [label for label, _ in browser.options]
    assert len(labels) == 6
    assert any(label.startswith("aaa_corrupt.fb") and "unreadable" in label for label in labels)
    assert any(label.startswith("truncated.json") and "CorruptStateError" in label for label in labels)
    assert "CorruptStateError" in browser.table.value and "2 unreadable" in browser.title.value
    # the first readable workflow is shown, not the corrupt first row
    assert browser.panel is not None and browser.panel.workflow_id == "etl"
    assert "<svg" in browser.panel.picture.value

    browser.selector.value = 0  # the corrupt file
    assert browser.panel is None and "cannot be read" in browser.message.value
    assert browser.picture_box.children == ()

    browser.select("v012_format_full", folder / "v012_format_full.json")
    assert browser.panel is not None and "cannot" not in browser.message.value
    assert "9007199254740993" in browser.data_table.value
    assert "compensation_failed" in browser.panel.table.value


def test_browser_survives_a_file_breaking_after_the_scan(folder: Path) -> None:
    browser = StoreBrowser(folder)
    (folder / "v012_format_full.fb").write_bytes(b"garbage")
    browser.select("v012_format_full", folder / "v012_format_full.fb")
    assert browser.panel is None and "CorruptStateError" in browser.message.value
    browser.refresh()
    labels = [label for label, _ in browser.options]
    assert any(label.startswith("v012_format_full.fb") and "unreadable" in label for label in labels)
    browser.select("etl")
    assert browser.panel is not None and browser.panel.data is not None


def test_browser_recovery_updates_table_and_audit(folder: Path) -> None:
    browser = StoreBrowser(folder)
    browser.select("etl")
    assert browser.panel is not None
    assert browser.panel.preview(Action.RESET_FAILED) == ["churn_model", "publish"]
    browser.panel.confirm_button.click()
    assert "reset_failed" in browser.audit_table.value
    row = browser.frame[browser.frame["id"] == "etl"].iloc[0]
    assert row.get("failed", 0) == 0 and row["pending"] == 2 and row["failed_nodes"] == ""
    assert browser.selected is not None and browser.options[browser.selected][0].startswith("etl.fb")
    assert "calls" in browser.metrics_table.value


def test_browser_writes_go_files_back_in_the_go_layout(folder: Path) -> None:
    browser = StoreBrowser(folder)
    browser.select("v012_format_full", folder / "v012_format_full.fb")
    assert browser.panel is not None
    assert browser.panel.preview(Action.MARK_COMPLETED, ["waiting_node"]) == ["waiting_node"]
    browser.panel.confirm()
    entries = {Path(e.path).name: e for e in scan_folder(folder)}
    summary = entries["v012_format_full.fb"].summary
    assert summary is not None and summary.format is StateFormat.GO_FLATBUFFERS
    assert summary.status_counts.get("waiting", 0) == 0 and summary.status_counts["completed"] == 2


def test_browser_over_a_store() -> None:
    store = InMemoryStore()
    failed_run(store, "one")
    store.save(WorkflowData("two"))
    browser = StoreBrowser(store)
    assert [label.split(" ")[0] for label, _ in browser.options] == ["one", "two"]
    assert browser.panel is not None and browser.panel.workflow_id == "one"
    assert "load" in browser.metrics_table.value
    browser.select("two")
    assert browser.panel is not None and browser.panel.data is not None


def test_browser_picture_selects_nodes_of_its_panel(folder: Path) -> None:
    browser = StoreBrowser(folder)
    browser.select("etl")
    panel = browser.panel
    assert panel is not None and browser.picture_box.children == (panel.picture,)
    assert isinstance(panel.picture, GraphSelect) and panel.node_select in panel.controls.children[0].children
    panel.picture.selected = ["churn_model", "publish"]  # two clicks in the browser's picture
    assert panel.selected == ("churn_model", "publish")
    assert panel.preview(Action.RESET) == ["churn_model", "publish"]
    panel.confirm_button.click()
    assert "reset" in browser.audit_table.value
    row = browser.frame[browser.frame["id"] == "etl"].iloc[0]
    assert row["pending"] == 2
    bundle = browser._repr_mimebundle_()
    fallback = (bundle[0] if isinstance(bundle, tuple) else bundle)["text/html"]
    assert fallback.count('<img src="data:image/svg+xml;base64,') == 1
    assert "max-height: 360px; overflow: auto" in fallback  # the tables scroll, not the page


# --- node details ---------------------------------------------------------------------------------


def test_clicking_a_node_shows_its_details_with_the_full_error() -> None:
    store = InMemoryStore()
    long_error = "upstream API returned HTTP 503; " * 30  # longer than any tooltip shows
    dag = DAG("details")
    dag.add_node("load", lambda data: {"rows": 3})

    def fail(_data: object) -> None:
        raise RuntimeError(long_error)

    dag.add_node("score", fail, depends_on="load")
    dag.add_node("publish", lambda data: None, depends_on="score")
    with pytest.raises(WorkflowExecutionError):
        Workflow(dag, "details", store).execute()
    mark_nodes(store, "details", ["publish"], "completed")
    panel = RecoveryPanel(store, "details", dag=dag)
    assert panel.details.value == ""
    panel.picture.active = "score"  # what a click in the picture sends
    shown = panel.details.value
    assert "RuntimeError: " + long_error in html_unescape(shown)  # whole, ready to copy
    assert "<pre class='fw-error'" in shown and "failed" in shown
    assert 'attempts</th><td style="text-align: left">1<' in shown
    assert "<code>load</code>" in shown and "<code>publish</code>" in shown  # up- and downstream
    panel.select(["load"])  # choosing in the list shows it too
    assert panel.picture.active == "load"
    assert '"rows": 3' in html_unescape(panel.details.value) and " s</td>" in panel.details.value
    panel.show_details("publish")
    assert "mark_completed" in panel.details.value or "completed" in panel.details.value
    assert "audit entries that touched it" in panel.details.value
    assert panel.details.value in panel.static_html()  # the static fallback keeps the pane


def test_details_list_every_attempt_and_the_newest_failed_traceback() -> None:
    """Regression: the pane showed the last attempt only (a count, one error)."""
    from flow_workbench.notebook.details import node_details_html

    data = WorkflowData("attempts")
    data.set_node_status("<n>", NodeStatus.COMPLETED)
    data.open_attempt("<n>", "run-<1>", 1, at=1_700_000_000.0)
    data.close_attempt(
        "<n>", "failed", at=1_700_000_000.25, error_type="<E>", error="<b>old</b>", traceback="<tb-old>"
    )
    data.open_attempt("<n>", "run-<2>", 1, at=1_700_000_100.0)
    data.close_attempt(
        "<n>", "timeout", at=1_700_000_102.0, error_type="NodeTimeoutError", error="x", traceback="<tb-new>"
    )
    data.open_attempt("<n>", "run-<2>", 2, at=1_700_000_103.0)
    data.close_attempt("<n>", "completed", at=1_700_000_103.5)
    shown = node_details_html(data, "<n>")
    assert "<b>old</b>" not in shown and "<tb-" not in shown and "run-<" not in shown  # all escaped
    text = html_unescape(shown)
    table = text[text.index("attempts of this node") :]
    for expected in (
        "run-<1>", "<E>: <b>old</b>", "0.250 s", "2023-11-14 22:13:20.000",
        "run-<2>", "timeout", "NodeTimeoutError: x", "2.000 s", "completed", "0.500 s",
    ):  # fmt: skip
        assert expected in table, expected
    assert table.index("run-<1>") < table.index("timeout") < table.index("0.500 s")  # oldest first
    assert "<pre class='fw-traceback'" in shown and "<tb-new>" in text and "<tb-old>" not in text


def test_panel_focus_draws_only_the_part_around_a_node() -> None:
    store, _ = twin_stores()
    panel = RecoveryPanel(store, WF, dag=sample_dag(), focus="churn_model", downstream=False, depth=1)
    assert sorted(panel.picture.node_names.values()) == ["churn_model", "join"]
    panel.set_focus(None)
    assert len(panel.picture.node_names) == 7
    panel.set_focus("nope")
    assert "UnknownNodeError: unknown node(s): &#x27;nope&#x27;" in panel.message.value


def html_unescape(text: str) -> str:
    import html

    return html.unescape(text)


def test_buttons_are_disabled_while_a_run_goes_and_long_names_are_shortened() -> None:
    store = InMemoryStore()
    long_name = "extract_" + "very_long_customer_segment_" * 4
    seen: list[tuple[bool, ...]] = []
    panel: RecoveryPanel | None = None

    def look(data: object) -> int:
        assert panel is not None
        buttons = (*panel.action_buttons.values(), panel.run_button, panel.node_select)
        seen.append(tuple(button.disabled for button in buttons))
        return 1

    dag = DAG("running")
    dag.add_node(long_name, look)
    panel = RecoveryPanel(store, "running", dag=dag)
    (label,) = [label for label, _ in panel.node_select.options]
    assert len(label) < 60 and label.endswith("\u2026 (pending)"), label
    panel.run()
    assert seen == [(True,) * 7]  # during the run: every action, run again and the list
    assert not any(button.disabled for button in panel.action_buttons.values())
    assert not panel.run_button.disabled and not panel.running
    assert "the selection is ignored" not in panel.message.value
    panel.preview(Action.RESET_FAILED)
    assert "ignores the selection" in panel.action_buttons[Action.RESET_FAILED].tooltip


def test_messages_use_the_theme_font_colour_and_mark_their_kind() -> None:
    store, _ = twin_stores()
    panel = RecoveryPanel(store, WF)
    panel.preview(Action.RESET_FAILED)
    assert "color: var(--jp-ui-font-color1" in panel.message.value
    assert "var(--jp-warn-color1" in panel.message.value  # the bar beside it
    assert "the selection is ignored" in panel.message.value


def test_a_preview_highlights_the_nodes_it_would_change_and_runs_keep_the_title() -> None:
    store, _ = twin_stores()
    panel = RecoveryPanel(store, WF, workflow=Workflow(sample_dag(), WF, store))
    panel.preview(Action.RESET_FAILED)
    assert panel.picture.highlighted == ["churn_model", "publish"]
    panel.cancel()
    assert panel.picture.highlighted == []
    before = panel.picture.value
    assert f">{WF}</text>" in before  # the stored picture has the title ...
    frames: list[str] = []
    panel.picture.observe(lambda change: frames.append(change["new"]), names="value")
    panel.preview(Action.RESET_FAILED)
    panel.confirm()
    panel.run()
    assert len(frames) >= 2 and all(f">{WF}</text>" in frame for frame in frames)  # ... live ones too


def test_an_edit_from_the_panel_while_a_run_holds_the_workflow_is_refused_naming_it(
    tmp_path: Path,
) -> None:
    """The panel goes through the recovery API: it takes the lease, so a run elsewhere refuses it."""
    import os
    import threading

    from flow_workbench import WorkflowLockedError

    store = FlatBuffersStore(tmp_path)
    dag = sample_dag(fail={"churn_model"})
    with pytest.raises(WorkflowExecutionError):
        Workflow(dag, "etl", store).execute()
    panel = RecoveryPanel(store, "etl", dag=dag)
    held, release = threading.Event(), threading.Event()

    def run_elsewhere() -> None:
        with FlatBuffersStore(tmp_path).execution_lease("etl"):
            held.set()
            release.wait(10)

    holder = threading.Thread(target=run_elsewhere)
    holder.start()
    try:
        assert held.wait(10)
        assert panel.preview("reset_failed") == ["churn_model", "publish"]  # a preview only reads
        assert panel.confirm() is None
        assert isinstance(panel.last_error, WorkflowLockedError)
        assert f"pid {os.getpid()}" in panel.message.value and "WorkflowLockedError" in panel.message.value
    finally:
        release.set()
        holder.join()
    assert store.load("etl").get_node_status("churn_model") is NodeStatus.FAILED  # nothing applied


def test_the_panel_picture_keeps_the_live_legend_so_a_run_does_not_resize_it(tmp_path: Path) -> None:
    """Static pictures list only the statuses present; the panel's lists the engine's too, as the
    live frames drawn during its runs do, so its picture does not jump when a run starts or ends."""
    store = FlatBuffersStore(tmp_path)
    Workflow(sample_dag(), "etl", store).execute()  # every node completed
    static = DAGView(store.load("etl")).svg()
    assert "pending" not in static and "failed" not in static  # only the statuses present
    panel = RecoveryPanel(store, "etl", dag=sample_dag())
    for status in ("pending", "running", "completed", "failed", "skipped"):
        assert status in panel.picture.value, status


def test_the_node_list_and_table_follow_a_run_of_the_panel(tmp_path: Path) -> None:
    """While the panel runs its workflow, its node list and table show nodes finishing, not only
    the state from before the run."""
    import threading

    seen: list[str] = []
    gate = threading.Event()
    dag = DAG("follow")
    dag.add_node("first", lambda data: 1)
    panel_box: list[RecoveryPanel] = []

    def second(data: WorkflowData) -> int:
        time.sleep(0.7)  # past LIST_REFRESH_SECONDS after first's completion event
        seen.append(panel_box[0].table.value)
        seen.append(" ".join(label for label, _ in panel_box[0].node_select.options))
        gate.set()
        return 2

    dag.add_node("second", second, depends_on="first")
    dag.add_node("third", lambda data: 3, depends_on="second")
    store = FlatBuffersStore(tmp_path)
    panel = RecoveryPanel(store, "wf", dag=dag)
    panel_box.append(panel)
    assert "completed" not in " ".join(label for label, _ in panel.node_select.options)
    panel.run()
    assert gate.is_set()
    table_during, list_during = seen
    assert "first (completed)" in list_during and "second (running)" in list_during
    assert "completed" in table_during and "running" in table_during
