"""DOT source of workflow pictures: structure, escaping, status styles, tooltips, rendering errors."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from flow_workbench import DAG, WorkflowData
from flow_workbench.dot import (
    MAX_COLUMN_NODES,
    STATUS_STYLES,
    GraphNode,
    dot_quote,
    focus_nodes,
    graph_nodes,
    render,
    to_dot,
    workflow_to_dot,
)
from flow_workbench.errors import FlowWorkbenchError, GraphvizNotFoundError, UnknownNodeError
from flow_workbench.notebook.svg_template import clear_layout_cache, layout
from flow_workbench.status import NodeStatus

HOSTILE = 'a"b\n<c>&\\'
SVG = "{http://www.w3.org/2000/svg}"
XLINK = "{http://www.w3.org/1999/xlink}"


def _node_attributes(source: str, index: int) -> str:
    match = re.search(rf"^  n{index} \[(.*)\];$", source, re.M)
    assert match is not None, source
    return match.group(1)


def _state(structure: dict[str, list[str]] | None, statuses: dict[str, NodeStatus]) -> WorkflowData:
    data = WorkflowData("wf-1")
    for node, status in statuses.items():
        data.set_node_status(node, status)
    data.set_dag_structure(structure)
    return data


def test_one_node_per_dag_node_and_edges_from_dependencies() -> None:
    dag = DAG()
    dag.add_node("extract")
    dag.add_node("clean", depends_on="extract")
    dag.add_node("join", depends_on=["clean", "extract"])
    source = workflow_to_dot(dag=dag)
    assert re.findall(r'id="(node-\d+)"', source) == ["node-0", "node-1", "node-2"]
    assert sorted(re.findall(r"^  (n\d+ -> n\d+);$", source, re.M)) == ["n0 -> n1", "n0 -> n2", "n1 -> n2"]


def test_state_without_structure_draws_unconnected_nodes() -> None:
    data = _state(None, {"a": NodeStatus.COMPLETED, "b": NodeStatus.WAITING})
    source = workflow_to_dot(data)
    assert "->" not in source
    assert len(graph_nodes(data)) == 2


def test_undeclared_dependency_and_unknown_nodes_are_still_drawn() -> None:
    data = _state({"b": ["a"]}, {"b": NodeStatus.PENDING, "orphan": NodeStatus.FAILED})
    assert [node.name for node in graph_nodes(data)] == ["b", "a", "orphan"]


@pytest.mark.parametrize("status", list(NodeStatus))
def test_every_status_has_colour_and_greyscale_cue(status: NodeStatus) -> None:
    source = workflow_to_dot(_state({"x": []}, {"x": status}))
    attributes = _node_attributes(source, 0)
    style = STATUS_STYLES[status]
    assert f'fillcolor="{style.fill}"' in attributes
    assert f"label={dot_quote(style.glyph + ' x')}" in attributes
    assert f'class="status-{status.value}"' in attributes
    assert f"penwidth={style.pen_width:g}" in attributes
    if style.border != "solid":
        assert style.border in attributes


def test_cues_tell_every_status_apart_without_colour() -> None:
    glyphs = [style.glyph for style in STATUS_STYLES.values()]
    fills = [style.fill for style in STATUS_STYLES.values()]
    assert len(set(glyphs)) == len(NodeStatus)
    assert len(set(fills)) == len(NodeStatus)


def test_go_statuses_are_drawn_as_themselves() -> None:
    go = [NodeStatus.WAITING, NodeStatus.BYPASSED, NodeStatus.COMPENSATED, NodeStatus.COMPENSATION_FAILED]
    data = _state(None, {status.value: status for status in go})
    source = workflow_to_dot(data)
    for index, status in enumerate(go):
        assert f'fillcolor="{STATUS_STYLES[status].fill}"' in _node_attributes(source, index)
        assert f"{STATUS_STYLES[status].glyph} {status.value}" in source  # legend lists it too


def test_dot_quote_escapes_quotes_backslashes_newlines_and_entities() -> None:
    assert dot_quote(HOSTILE) == '"a\\"b\\n<c>&amp;\\\\"'
    # Controls, bidi overrides and lone surrogates become visible escapes, as the CLI shows them
    # (a backslash in DOT is doubled, so graphviz draws the escape's backslash).
    assert dot_quote("tab\there\x1b\u202e\udcff") == '"tab\\\\there\\\\x1b\\\\u202e\\\\udcff"'


def test_hostile_names_render_literally() -> None:
    data = _state(
        {HOSTILE: [], "x\\Ny": [HOSTILE]}, {HOSTILE: NodeStatus.FAILED, "x\\Ny": NodeStatus.SKIPPED}
    )
    data.set_node_error(HOSTILE, 'bad "x" <y> & \\N', "ValueError")
    root = ET.fromstring(render(workflow_to_dot(data)))
    texts = ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]
    assert '\u2717 a"b' in texts and "<c>&\\" in texts
    assert "\u2298 x\\Ny" in texts


def test_tooltips_carry_status_attempts_duration_and_error() -> None:
    data = WorkflowData("wf")
    data.set_dag_structure({HOSTILE: []})
    data.record_attempt_started(HOSTILE, at=100.0)
    data.record_attempt_started(HOSTILE, at=101.0)
    data.record_attempt_finished(HOSTILE, NodeStatus.FAILED, at=103.5, error="bad <y> & \\N", error_type="E")
    clear_layout_cache()
    nodes = graph_nodes(data)
    canvas = layout(nodes).canvas()
    canvas.set_node(0, NodeStatus.FAILED, data.node_history(HOSTILE))
    root = ET.fromstring(canvas.svg())
    titles = [a.get(f"{XLINK}title") for a in root.iter(f"{SVG}a") if a.get(f"{XLINK}title") != "legend"]
    assert titles == [
        f"{HOSTILE}\nstatus: failed\nattempts: 2\nduration: 2.500 s\nlast error: E: bad <y> & \\N"
    ]


def test_legend_lists_the_statuses_present() -> None:
    source = workflow_to_dot(_state(None, {"a": NodeStatus.BYPASSED}))
    legend = source[source.index("<B>status</B>") : source.index("</TABLE>")]
    assert f"{STATUS_STYLES[NodeStatus.BYPASSED].glyph} {NodeStatus.BYPASSED.value}" in legend
    for absent in (NodeStatus.PENDING, NodeStatus.FAILED, NodeStatus.COMPENSATED):
        assert absent.value not in legend  # a static picture lists only what it draws
    assert legend.count("</TR>") == 1  # one row, in the label above the nodes (not a node among them)
    assert "legend [" not in source


def test_statuses_differ_in_greyscale_by_border_not_only_by_glyph() -> None:
    """Two statuses with fills of nearly the same grey must differ in border pattern or width, or
    in text colour (the glyph alone is too small a cue)."""

    def grey(fill: str) -> float:
        red, green, blue = (int(fill[i : i + 2], 16) / 255 for i in (1, 3, 5))
        return 0.2126 * red + 0.7152 * green + 0.0722 * blue

    styles = list(STATUS_STYLES.items())
    for index, (status, style) in enumerate(styles):
        for other, other_style in styles[index + 1 :]:
            if abs(grey(style.fill) - grey(other_style.fill)) < 0.15:
                cue = (style.border, style.pen_width, style.font_color)
                assert cue != (other_style.border, other_style.pen_width, other_style.font_color), (
                    status,
                    other,
                )


def test_render_png_and_svg() -> None:
    source = workflow_to_dot(dag=DAG.from_structure({"a": [], "b": ["a"]}))
    assert render(source, "png").startswith(b"\x89PNG")
    assert b"<svg" in render(source, "svg")
    with pytest.raises(ValueError, match="format"):
        render(source, "gif")  # type: ignore[arg-type]


def test_missing_dot_raises_with_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("FLOW_WORKBENCH_DOT", raising=False)
    with pytest.raises(GraphvizNotFoundError) as caught:
        render("digraph {}")
    assert isinstance(caught.value, FlowWorkbenchError)
    assert "apt-get install graphviz" in str(caught.value)
    assert "./dev setup" in str(caught.value)


@pytest.mark.parametrize(
    ("started", "finished"),
    [(-1e308, 1e308), (0.0, float("nan")), (float("inf"), 1.0), ("noon", 5.0)],
)
def test_damaged_timestamps_draw_without_a_duration(started: object, finished: object) -> None:
    from flow_workbench.data import StateColumns
    from flow_workbench.dot import ONE_TIMESTAMP, timing_of

    assert timing_of(started, finished) == ONE_TIMESTAMP  # type: ignore[arg-type]
    columns = StateColumns("wf", statuses={"a": NodeStatus.COMPLETED, "b": NodeStatus.COMPLETED})
    columns.started_at.update(a=started, b=1.0)  # type: ignore[call-overload]
    columns.finished_at.update(a=finished, b=2.0)  # type: ignore[call-overload]
    data = WorkflowData.from_columns(columns)
    clear_layout_cache()
    with data.read_columns() as read:
        svg = layout(graph_nodes(data)).render(read)
    assert "duration: 1.000 s" in svg  # the healthy node keeps its duration


def test_only_large_edge_less_graphs_are_packed_in_a_grid() -> None:
    def nodes(count: int, chained: bool) -> list[GraphNode]:
        return [
            GraphNode(index, f"n{index}", (f"n{index - 1}",) if chained and index else (), None)
            for index in range(count)
        ]

    grid = to_dot(nodes(MAX_COLUMN_NODES + 1, chained=False))
    assert "layout=osage" in grid and "subgraph cluster_grid" in grid
    assert "sortv=0" in grid and "sortv=24" in grid  # the drawing order, kept by the packing
    assert "layout=osage" not in to_dot(nodes(MAX_COLUMN_NODES, chained=False))
    assert "layout=osage" not in to_dot(nodes(200, chained=True))


# --- focus: the part of a picture around one node ------------------------------------------------


def _sample_nodes() -> list[GraphNode]:
    from flow_workbench.demo import sample_dag

    return graph_nodes(dag=sample_dag())


def test_focus_keeps_ancestors_and_descendants_renumbered() -> None:
    nodes = focus_nodes(_sample_nodes(), "join")
    assert [node.name for node in nodes] == [node.name for node in _sample_nodes()]  # all of them
    assert [node.position for node in nodes] == list(range(len(nodes)))
    only_up = focus_nodes(_sample_nodes(), "churn_model", downstream=False, depth=1)
    assert [(node.name, node.dependencies) for node in only_up] == [("join", ()), ("churn_model", ("join",))]
    down = focus_nodes(_sample_nodes(), "clean_orders", upstream=False)
    assert {node.name for node in down} == {
        "clean_orders",
        "join",
        "revenue_report",
        "churn_model",
        "publish",
    }
    # dependencies outside the part are dropped: the picture has no dangling edges
    assert dict((node.name, node.dependencies) for node in down)["join"] == ("clean_orders",)
    with pytest.raises(UnknownNodeError, match="unknown node\\(s\\): 'nope'"):
        focus_nodes(_sample_nodes(), "nope")
