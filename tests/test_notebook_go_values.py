"""Values the Go library's files hold, shown by the notebook: strings that are not UTF-8 (read as
lone surrogates), controls and bidi characters, unknown statuses, timers, and artifact outputs."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from flow_workbench import InMemoryStore, WorkflowData
from flow_workbench.artifacts import OUTPUT_MARKER
from flow_workbench.dot import graph_nodes, to_dot, tooltip_text
from flow_workbench.notebook import (
    DAGView,
    RecoveryPanel,
    StoreBrowser,
    Timeline,
    audit_frame,
    data_frame,
    nodes_frame,
    style_nodes,
    workflows_frame,
)
from flow_workbench.notebook.details import node_details_html
from flow_workbench.notebook.widgets import Action
from flow_workbench.presentation import display_text, printable
from flow_workbench.status import NodeStatus
from flow_workbench.stores.flatbuffers import FlatBuffersStore
from flow_workbench.stores.json_file import JSONFileStore
from tests.helpers.go import WAIT_2030_NS, go_fb, write_unknown_status_file

#: Node names as a Go FlatBuffers file with the bytes 0xff / 0xfe in them reads back.
BAD, TIMER = "bad\udcff", "timer\udcfe"
#: Two names that look the same once escaped: the rows must stay two.
TWIN = "a\\udcff"


@pytest.fixture
def go_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "go"
    folder.mkdir()
    (folder / "odd.fb").write_bytes(
        go_fb(
            tmp_path,
            b"odd\xff",
            strings={b"key\xff": b"caf\xe9"},
            statuses={
                b"bad\xff": "Failed",
                b"timer\xfe": "Waiting",
                "done": "Completed",
                b"a\xff": "Completed",
                TWIN.encode(): "Completed",
            },
            waits={b"timer\xfe": WAIT_2030_NS},
            outputs={"done": b"42\xff"},
        )
    )
    write_unknown_status_file(folder)
    return folder


def _go_state(folder: Path) -> WorkflowData:
    return FlatBuffersStore(folder).load("odd")


def test_printable_moved_and_display_text_keeps_line_breaks() -> None:
    hostile = "ok\n\tALL GOOD\x1b[2J\u202e\u200b\x85\udcff"
    assert printable(hostile) == "ok\\n\\tALL GOOD\\x1b[2J\\u202e\\u200b\\x85\\udcff"
    assert display_text(hostile) == "ok\n\tALL GOOD\\x1b[2J\\u202e\\u200b\\x85\\udcff"
    assert display_text(display_text(hostile)) == display_text(hostile)  # escaping twice: no change
    from flow_workbench.cli import _common

    assert _common.printable is printable  # the CLI shows text exactly as before


def test_tables_show_go_strings_that_are_not_utf8(go_folder: Path) -> None:
    data = _go_state(go_folder)
    frame = nodes_frame(data)
    assert {"bad\\udcff", "timer\\udcfe", "a\\udcff", "a\\udcff (2)"} <= set(frame.index)
    assert len(frame) == 5 and frame.index.is_unique  # names alike once escaped stay two rows
    assert frame.loc["done", "output"] == '"42\\udcff"'
    html = style_nodes(frame).to_html()
    assert "bad\\udcff" in html
    keys = data_frame(data)
    assert list(keys.index) == ["key\\udcff"] and keys.iloc[0]["value"] == '"caf\\udce9"'


def test_pictures_and_timeline_draw_go_strings_that_are_not_utf8(go_folder: Path) -> None:
    data = _go_state(go_folder)
    data.set_node_error(BAD, "first line\nsecond \udcfe", "Err\udcfd")
    data.record_attempt_started(BAD, at=1_700_000_000.0)
    data.record_attempt_finished(BAD, NodeStatus.FAILED, at=1_700_000_001.0, error="x\udcfe")
    bundle = DAGView(data)._repr_mimebundle_()
    svg = bundle["image/svg+xml"]
    assert "bad\\udcff" in svg and "x\\udcfe" in svg
    assert svg.count('class="node') == 5  # the two look-alike names are two nodes
    timeline = Timeline(data)._repr_mimebundle_()["image/svg+xml"]
    assert "bad\\udcff" in timeline


def test_notebook_escapes_controls_bidi_and_zero_width_but_keeps_line_breaks() -> None:
    data = WorkflowData("wf\u202e")
    node = "ok\u202e\u200b"
    data.set_node_status(node, NodeStatus.FAILED)
    data.set_node_error(node, "Traceback\n  line 2\x1b[32mALL GOOD\x1b[0m", "E")
    details = node_details_html(data, node)
    assert "ok\\u202e\\u200b" in details and "\u202e" not in details and "\x1b" not in details
    pre = re.search(r"<pre class='fw-error'[^>]*>(.*?)</pre>", details, re.DOTALL)
    assert pre is not None and pre.group(1) == "E: Traceback\n  line 2\\x1b[32mALL GOOD\\x1b[0m"
    frame = nodes_frame(data)
    assert list(frame.index) == ["ok\\u202e\\u200b"]
    assert frame.iloc[0]["error"] == "Traceback\n  line 2\\x1b[32mALL GOOD\\x1b[0m"
    dot = to_dot(graph_nodes(data), title=data.id)
    assert "\u202e" not in dot and "\x1b" not in dot and "wf\\u202e" in dot


def test_panel_shows_escaped_names_and_acts_on_the_real_ones(go_folder: Path) -> None:
    store = InMemoryStore()
    store.save(_go_state(go_folder))
    panel = RecoveryPanel(store, "odd")
    assert panel.last_error is None, panel.message.value
    labels = dict((value, label) for label, value in panel.node_select.options)
    assert BAD in labels and "bad\\udcff" in labels[BAD] and "\udcff" not in labels[BAD]
    panel.select([BAD])
    assert panel.preview(Action.RESET) == [BAD]
    assert "bad\\udcff" in panel.message.value
    assert panel.confirm() == [BAD]
    assert store.load("odd").get_node_status(BAD) is NodeStatus.PENDING
    panel.show_details(BAD)
    assert "bad\\udcff" in panel.details.value


def test_browser_opens_go_files_with_strings_that_are_not_utf8(go_folder: Path) -> None:
    browser = StoreBrowser(go_folder)
    browser.select("odd")
    assert "cannot open" not in browser.message.value, browser.message.value
    assert browser.panel is not None and BAD in browser.panel.data.node_statuses()  # type: ignore[union-attr]
    assert "bad\\udcff" in browser.static_html()
    assert set(workflows_frame(go_folder)["id"]) == {"odd", "unknown"}


def test_unknown_statuses_show_their_stored_text(go_folder: Path) -> None:
    data = JSONFileStore(go_folder).load("unknown")
    frame = nodes_frame(data)
    assert frame["status"].cat.ordered and frame.loc["mystery", "status"] == "unknown"
    assert frame.loc["mystery", "status_text"] == "bogus" and pd.isna(frame.loc["ok", "status_text"])
    assert "status_text" not in nodes_frame(_go_state(go_folder)).columns  # only when present
    by_name = {node.name: node for node in graph_nodes(data)}
    assert 'status: unknown ("bogus")' in tooltip_text(by_name["mystery"])
    svg = DAGView(data).svg()
    assert "status: unknown (&quot;bogus&quot;)" in svg  # the picture's tooltip, XML-escaped
    assert "? unknown" in to_dot(graph_nodes(data))
    assert "? unknown" not in to_dot(graph_nodes(_go_state(go_folder)))  # legend: only when present
    assert "unknown (&quot;bogus&quot;)" in node_details_html(data, "mystery")


def test_waits_show_their_time_and_out_of_range_ones_are_unknown(go_folder: Path) -> None:
    data = _go_state(go_folder)
    by_name = {node.name: node for node in graph_nodes(data)}
    assert "waits until 2030-01-01 00:00:00.000 UTC" in tooltip_text(by_name[TIMER])
    assert "waits until 2030-01-01 00:00:00.000 UTC" in DAGView(data).svg()
    assert "2030-01-01 00:00:00.000 UTC" in node_details_html(data, TIMER)
    # A decoder may hand over anything; what no datetime can hold shows as unknown.
    data._unsafe_columns().waits["done"] = 10**30
    data._unsafe_columns().waits[TIMER] = 1e300  # type: ignore[assignment]
    by_name = {node.name: node for node in graph_nodes(data)}
    assert "waits until unknown (out of range)" in tooltip_text(by_name["done"])
    assert "unknown (out of range)" in node_details_html(data, TIMER)
    assert "waits until unknown" in DAGView(data).svg()
    assert nodes_frame(data)["wait_until"].isna().all()  # never raises


def test_artifact_outputs_are_described_not_read_and_damage_does_not_break_the_table(tmp_path: Path) -> None:
    store = JSONFileStore(tmp_path)
    data = WorkflowData("wf")
    data.set_node_status("table", NodeStatus.COMPLETED)
    data.set_output("table", pd.DataFrame({"city": ["<b>Oslo</b>", "Bergen"], "n": [1, 2]}))
    data.set_node_status("lost", NodeStatus.COMPLETED)
    data.set_output("lost", pd.DataFrame({"x": [1.5]}))
    store.save(data)
    loaded = store.load("wf")
    lost = loaded.outputs(load_artifacts=False)["lost"]
    (tmp_path / "wf.artifacts" / lost.file_name).unlink()

    frame = nodes_frame(loaded)
    assert frame.loc["table", "output"].startswith("DataFrame 2x2 (city:")
    assert frame.loc["lost", "output"].startswith("DataFrame 1x1")
    details = node_details_html(loaded, "table")
    assert "&lt;b&gt;Oslo&lt;/b&gt;" in details and "<b>Oslo" not in details and "Bergen" in details
    missing = node_details_html(loaded, "lost")
    assert "missing or damaged" in missing and "DataFrame 1x1" in missing

    # A reference damaged in the state itself: that row says so, the others still show.
    loaded._unsafe_columns().outputs["broken"] = {OUTPUT_MARKER: "artifact", "hash": "not hex"}
    loaded.set_node_status("broken", NodeStatus.COMPLETED)
    frame = nodes_frame(loaded)
    assert "cannot be read" in frame.loc["broken", "output"]
    assert frame.loc["table", "output"].startswith("DataFrame 2x2")
    assert "cannot be read" in node_details_html(loaded, "broken")
    assert len(audit_frame(loaded)) == 0


def test_crafted_files_cannot_make_labels_or_panes_unbounded(tmp_path: Path) -> None:
    """What writers bound (attempts kept, error and traceback sizes), a crafted file need not: the
    notebook bounds what it shows. Names that look alike once escaped get numbered in linear time."""
    import itertools

    from flow_workbench.data import ATTEMPT_LOG_CAP
    from flow_workbench.notebook.details import MAX_OUTPUT_CHARS
    from flow_workbench.notebook.tables import MAX_CELL_CHARS, table_html
    from flow_workbench.presentation import unique_labels

    # 2**12 names that all show as one label: the numbering must not re-probe from 2 each time.
    alike = ["".join(parts) for parts in itertools.product(["\x01", "\\x01"], repeat=12)]
    labels = unique_labels(alike)
    assert len(set(labels)) == len(alike) and labels[-1].endswith(f"({len(alike)})")

    data = WorkflowData("wf")
    data.set_node_status("n", NodeStatus.FAILED)
    huge = "E" * (50 * MAX_OUTPUT_CHARS)
    entry = ["r1", 1, 1.0, 2.0, "failed", "ValueError", huge, "T" * (50 * MAX_OUTPUT_CHARS), "", 0]
    data._unsafe_columns().attempt_log["n"] = [[f"run-{i}", *entry[1:]] for i in range(10 * ATTEMPT_LOG_CAP)]
    data.set_node_error("n", huge, "ValueError")
    pane = node_details_html(data, "n")
    assert pane.count("<tr>") <= ATTEMPT_LOG_CAP + 20  # the newest attempts, not 500
    assert f"run-{10 * ATTEMPT_LOG_CAP - 1}" in pane and "run-0<" not in pane
    assert len(pane) < 100 * MAX_OUTPUT_CHARS  # not 50 x 4 KB per attempt
    table = table_html(nodes_frame(data))
    assert "E" * MAX_CELL_CHARS not in table and "E" * 100 in table
