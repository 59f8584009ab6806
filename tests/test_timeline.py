"""Timeline: Gantt-like chart of node attempts from a state's history."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest

from flow_workbench import DAG, InMemoryStore, Workflow, WorkflowData, WorkflowExecutionError
from flow_workbench.dot import STATUS_STYLES
from flow_workbench.notebook import Timeline
from flow_workbench.status import NodeStatus


def _failed_run() -> Workflow:
    def boom(data: WorkflowData) -> None:
        raise ValueError("boom")

    dag = DAG()
    dag.add_node("first")
    dag.add_node("$x$ & <y>", boom, depends_on="first")
    dag.add_node("after", depends_on="$x$ & <y>")
    workflow = Workflow(dag, "timeline-1", InMemoryStore())
    with pytest.raises(WorkflowExecutionError):
        workflow.execute()
    return workflow


def test_timeline_svg_has_a_row_per_node_in_status_colours() -> None:
    timeline = Timeline(_failed_run())
    assert [(name, status) for name, status, _ in timeline.rows] == [
        ("first", NodeStatus.COMPLETED),
        ("$x$ & <y>", NodeStatus.FAILED),
        ("after", NodeStatus.SKIPPED),
    ]
    bundle = timeline._repr_mimebundle_()
    svg = bundle["image/svg+xml"]
    ET.fromstring(svg)  # well-formed despite the hostile name
    assert "$x$ &amp; &lt;y&gt;" in svg  # a name, not mathtext
    for status in (NodeStatus.COMPLETED, NodeStatus.FAILED):
        assert STATUS_STYLES[status].fill.lower() in svg.lower()


def test_timeline_from_id_and_store_and_png() -> None:
    workflow = _failed_run()
    timeline = Timeline("timeline-1", workflow.store)
    assert len(timeline.rows) == 3
    assert timeline.png().startswith(b"\x89PNG")


def test_timeline_needs_a_state() -> None:
    with pytest.raises(ValueError, match="needs a state"):
        Timeline(DAG.from_structure({"a": []}))


def test_legend_outside_short_bars_visible_and_abandoned_attempts_not_drawn_to_now() -> None:
    from matplotlib.patches import Rectangle

    start = 1_700_000_000.0
    data = WorkflowData("finish")
    data.record_attempt_started("quick", at=start)
    data.record_attempt_finished("quick", NodeStatus.COMPLETED, at=start + 0.001)
    data.record_attempt_started("slow", at=start)
    data.record_attempt_finished("slow", NodeStatus.COMPLETED, at=start + 10)
    data.record_attempt_started("abandoned", at=start + 5)  # its retry never finished ...
    data.set_node_status("abandoned", NodeStatus.PENDING)  # ... and it went back to pending
    figure = Timeline(data).figure()
    (axes,) = figure.axes
    assert axes.get_legend() is None and len(figure.legends) == 1  # below the chart, not on the bars
    bars = {
        round(bar.get_y() + bar.get_height() / 2): bar.get_width()
        for bar in axes.patches
        if isinstance(bar, Rectangle)
    }
    rows = [name for name, _, _ in Timeline(data).rows]
    assert bars[rows.index("quick")] >= 10 * 0.004  # a 1 ms node is drawn at the minimum width
    assert rows.index("abandoned") not in bars  # a mark where it started, no bar up to "now"


def _bars_by_row(figure: Any) -> dict[int, list[tuple[float, str]]]:
    """Each row's bar segments as (left, fill colour), left to right."""
    from matplotlib.colors import to_hex
    from matplotlib.patches import Rectangle

    (axes,) = figure.axes
    rows: dict[int, list[tuple[float, str]]] = {}
    for bar in axes.patches:
        if isinstance(bar, Rectangle):
            row = round(bar.get_y() + bar.get_height() / 2)
            rows.setdefault(row, []).append((bar.get_x(), to_hex(bar.get_facecolor()).upper()))
    return {row: sorted(segments) for row, segments in rows.items()}


def test_retries_are_separate_attempt_segments_of_the_latest_run() -> None:
    """Regression: one bar per node covered its last attempt only; retries were invisible."""
    data = WorkflowData("retries")
    data.open_attempt("flaky", "run-1", 1, at=100.0)  # an earlier run: not drawn
    data.close_attempt("flaky", "failed", at=101.0, error="old")
    for number, (start, end, outcome) in enumerate(
        [(200.0, 201.0, "failed"), (202.0, 203.0, "timeout"), (204.0, 206.0, "completed")], start=1
    ):
        data.open_attempt("flaky", "run-2", number, at=start)
        data.close_attempt("flaky", outcome, at=end)
    data.record_attempt_started("flaky", at=204.0)
    data.record_attempt_finished("flaky", NodeStatus.COMPLETED, at=206.0)
    data.record_attempt_started("plain", at=200.0)  # no attempt log (e.g. an older file): one bar
    data.record_attempt_finished("plain", NodeStatus.COMPLETED, at=203.0)
    timeline = Timeline(data)
    bars = _bars_by_row(timeline.figure())
    rows = [name for name, _, _ in timeline.rows]
    failed = STATUS_STYLES[NodeStatus.FAILED].fill.upper()
    completed = STATUS_STYLES[NodeStatus.COMPLETED].fill.upper()
    assert bars[rows.index("flaky")] == [(0.0, failed), (2.0, failed), (4.0, completed)]
    assert bars[rows.index("plain")] == [(0.0, completed)]
    legend = [text.get_text() for text in timeline.figure().legends[0].get_texts()]
    assert legend == ["completed", "failed"]  # the failed attempts are in the legend too


def test_shortened_labels_carry_the_full_name_on_hover() -> None:
    long_name = "<b>" + "very long node name " * 4 + "& the end"
    data = WorkflowData("hover")
    data.record_attempt_started(long_name, at=1.0)
    data.record_attempt_finished(long_name, NodeStatus.COMPLETED, at=2.0)
    data.record_attempt_started("short", at=1.0)
    data.record_attempt_finished("short", NodeStatus.COMPLETED, at=2.0)
    svg = Timeline(data).svg()
    root = ET.fromstring(svg)
    titles = [element.text for element in root.iter("{http://www.w3.org/2000/svg}title")]
    assert long_name in titles  # whole, and parsed back from escaped text
    assert "short" not in titles  # a name shown whole needs no hover text
