"""DAGView and LiveView: the SVG they show, in-place recolouring, one layout per DAG, throttling."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest

from flow_workbench import DAG, InMemoryStore, Workflow, WorkflowData, WorkflowExecutionError
from flow_workbench.dot import STATUS_STYLES, graph_nodes
from flow_workbench.notebook import DAGView, LiveView, RecordingDisplay, run_live
from flow_workbench.notebook.svg_template import clear_layout_cache
from flow_workbench.status import NodeStatus

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def dot_runs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts `dot` subprocesses, from an empty layout cache."""
    clear_layout_cache()
    counter = [0]
    original = subprocess.run

    def counting(args: Any, *rest: Any, **kwargs: Any) -> Any:
        if str(args[0]).rsplit("/", 1)[-1] == "dot":
            counter[0] += 1
        return original(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "run", counting)
    yield counter


def _node_styles(svg: str) -> dict[int, tuple[str, str, str]]:
    """node index -> (class, shape fill, first text) read with an XML parser."""
    root = ET.fromstring(svg)
    styles = {}
    for group in root.iter(f"{SVG}g"):
        match = re.fullmatch(r"node-(\d+)", group.get("id", ""))
        if match is None:
            continue
        shape = next(e for e in group.iter() if e.tag in (f"{SVG}path", f"{SVG}polygon"))
        text = next(group.iter(f"{SVG}text"))
        styles[int(match.group(1))] = (group.get("class", ""), shape.get("fill", ""), text.text or "")
    return styles


def _fill(status: NodeStatus) -> str:
    return STATUS_STYLES[status].fill.lower()


def _failing_dag(width: int = 30) -> DAG:
    def boom(data: WorkflowData) -> None:
        raise RuntimeError("HTTP 503")

    dag = DAG("etl")
    dag.add_node("root")
    for index in range(width):
        dag.add_node(f"leaf-{index}", depends_on="root")
    dag.add_node("bad", boom, depends_on="root")
    dag.add_node("after-bad", depends_on="bad")
    dag.add_node("end", depends_on=["after-bad", "leaf-0"])
    return dag


def test_dag_view_mimebundle_has_one_shape_per_node() -> None:
    dag = DAG.from_structure({"a": [], 'b"<&>': ["a"], "c": ["a", 'b"<&>']})
    bundle = DAGView(Workflow(dag, "view-1", InMemoryStore()))._repr_mimebundle_()
    assert set(bundle) == {"image/svg+xml", "text/html", "text/plain"}
    # the HTML form keeps the SVG inline, so tooltips work in JupyterLab, at its natural size
    # (JupyterLab's stylesheet would shrink it to the cell width) in a box that scrolls
    assert (
        '<div class="fw-picture fw-dag"><div class="fw-scroll" style="overflow: auto; max-height: 720px">'
        in (bundle["text/html"])
    )
    assert '<svg style="max-width: none; height: auto"' in bundle["text/html"]
    styles = _node_styles(bundle["image/svg+xml"])
    assert sorted(styles) == [0, 1, 2]
    assert {fill for _, fill, _ in styles.values()} == {_fill(NodeStatus.PENDING)}


def test_dag_view_of_a_stored_state_by_id(dot_runs: list[int]) -> None:
    store = InMemoryStore()
    workflow = Workflow(_failing_dag(3), "view-2", store)
    with pytest.raises(WorkflowExecutionError):
        workflow.execute()
    view = DAGView("view-2", store)
    styles = _node_styles(view.svg())
    assert styles[0][1] == _fill(NodeStatus.COMPLETED)
    assert styles[4][0] == "node status-failed"
    assert dot_runs[0] == 1
    assert view.png().startswith(b"\x89PNG")


def test_dag_view_without_dot_shows_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    clear_layout_cache()
    monkeypatch.setenv("PATH", str(tmp_path))
    bundle = DAGView(DAG.from_structure({"a": []}))._repr_mimebundle_()
    assert "image/svg+xml" not in bundle
    assert "apt-get install graphviz" in bundle["text/plain"]


def test_live_view_recolours_in_place_after_a_failing_run(dot_runs: list[int]) -> None:
    workflow = Workflow(_failing_dag(), "live-1", InMemoryStore())
    display = RecordingDisplay()
    view = LiveView(workflow, display=display, interval=0.0)
    assert view.wait_for_layout(60)
    with pytest.raises(WorkflowExecutionError), view:
        workflow.execute()
    svg = display.last_svg
    assert svg is not None
    styles = _node_styles(svg)
    index = {name: i for i, name in enumerate(workflow.dag.structure())}
    assert styles[index["root"]][1] == _fill(NodeStatus.COMPLETED)
    assert styles[index["root"]][2].startswith(STATUS_STYLES[NodeStatus.COMPLETED].glyph)
    assert styles[index["bad"]][1] == _fill(NodeStatus.FAILED)
    for skipped in ("after-bad", "end"):
        css_class, fill, text = styles[index[skipped]]
        assert css_class == "node status-skipped"
        assert fill == _fill(NodeStatus.SKIPPED)
        assert text.startswith(STATUS_STYLES[NodeStatus.SKIPPED].glyph)
        assert 'stroke-dasharray="1,5"' in svg  # the dotted border of skipped nodes
    # Many events, yet one layout: every frame is a rewrite of the same geometry.
    frames = [frame.svg for frame in display.frames if frame.svg is not None]
    assert len(frames) >= 2
    geometry = re.compile(r' (?:d|points)="[^"]*"')
    assert geometry.findall(frames[0]) == geometry.findall(frames[-1])
    assert _node_styles(frames[0])[index["root"]][1] == _fill(NodeStatus.PENDING)
    assert dot_runs[0] == 1


def _legend_entries(svg: str) -> set[str]:
    entries = {f"{STATUS_STYLES[status].glyph} {status.value}": status.value for status in NodeStatus}
    texts = {element.text for element in ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}text")}
    return {value for entry, value in entries.items() if entry in texts}


def test_static_legend_lists_the_statuses_present_and_the_live_one_stays_stable() -> None:
    """Regression: every picture listed the five engine statuses, present or not."""
    workflow = Workflow(_failing_dag(), "legend-1", InMemoryStore())
    display = RecordingDisplay()
    view = LiveView(workflow, display=display, interval=0.0)
    with pytest.raises(WorkflowExecutionError), view:
        workflow.execute()
    assert display.last_svg is not None
    engine = {"pending", "running", "completed", "failed", "skipped"}
    assert _legend_entries(display.last_svg) == engine  # one layout for the whole run
    assert _legend_entries(DAGView(workflow).svg()) == {"completed", "failed", "skipped"}
    assert _legend_entries(DAGView(_failing_dag()).svg()) == {"pending"}  # a DAG without a state


def test_one_layout_per_dag_across_runs(dot_runs: list[int]) -> None:
    dag = _failing_dag(5)
    for run in range(3):
        with pytest.raises(WorkflowExecutionError):
            run_live(Workflow(dag, f"again-{run}", InMemoryStore()), display=RecordingDisplay())
    assert dot_runs[0] == 1


def test_throttling_bounds_display_updates() -> None:
    dag = DAG.from_structure({f"n{i}": [f"n{i - 1}"] if i else [] for i in range(200)})
    workflow = Workflow(dag, "throttled", InMemoryStore())
    display = RecordingDisplay()
    events: list[object] = []
    workflow.subscribe(events.append)
    run_live(workflow, display=display, interval=3600.0)
    assert len(events) > 400
    # first frame, the RUN_STARTED frame, the final one; no frame per event.
    assert len(display.frames) <= 3
    assert {fill for _, fill, _ in _node_styles(display.last_svg or "").values()} == {
        _fill(NodeStatus.COMPLETED)
    }


def test_progress_bar_reaches_total() -> None:
    dag = DAG.from_structure({f"n{i}": [] for i in range(25)})
    workflow = Workflow(dag, "progress", InMemoryStore())
    with LiveView(workflow, display=RecordingDisplay()) as view:
        workflow.execute()
    assert view.progress_bar is not None
    assert (view.progress_bar.n, view.progress_bar.total) == (25, 25)
    assert (view.done, view.total) == (25, 25)


def test_observer_on_execute_and_a_bare_dag() -> None:
    dag = DAG.from_structure({"a": [], "b": ["a"]})
    view = LiveView(dag, display=False, progress=False)
    Workflow(dag, "bare", InMemoryStore()).execute(on_event=view.observer)
    assert view.statuses() == {"a": NodeStatus.COMPLETED, "b": NodeStatus.COMPLETED}
    assert view.svg() is not None and "status-completed" in (view.svg() or "")
    with pytest.raises(TypeError):
        view.__enter__()


def test_live_view_without_dot_still_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    clear_layout_cache()
    monkeypatch.setenv("PATH", str(tmp_path))
    workflow = Workflow(DAG.from_structure({"a": []}), "no-dot", InMemoryStore())
    display = RecordingDisplay()
    result = run_live(workflow, display=display, progress=False)
    assert result.completed == ["a"]
    assert display.last_svg is None
    assert "apt-get install graphviz" in repr(display.frames[-1])


def test_notebook_exports_match_the_lazy_table() -> None:
    import flow_workbench.notebook as notebook

    assert notebook.__all__ == sorted(notebook._EXPORTS)
    for name in notebook.__all__:
        assert getattr(notebook, name) is not None


def test_notebook_import_is_lazy() -> None:
    code = (
        "import sys, flow_workbench.notebook\n"
        "heavy = {'pandas', 'graphviz', 'ipywidgets', 'tqdm', 'IPython', 'matplotlib'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


_IMPORT_ORDER_CHECK = """
import importlib, json, pkgutil, random, sys
import flow_workbench.notebook as notebook
submodules = sorted(m.name for m in pkgutil.iter_modules(notebook.__path__))
order, touch_first = json.loads(sys.argv[1])
random.Random(order).shuffle(submodules)
for name in touch_first:  # an exported name looked up before its submodule is imported
    getattr(notebook, name)
for module in submodules:
    importlib.import_module("flow_workbench.notebook." + module)
wrong = []
for name in notebook.__all__:
    namespace = {}
    exec(f"from flow_workbench.notebook import {name} as value", namespace)
    for value in (namespace["value"], getattr(notebook, name)):
        if not callable(value) or getattr(value, "__name__", None) != name:
            wrong.append(f"{name} is {value!r}")
print(json.dumps(wrong))
"""


@pytest.mark.parametrize(
    ("order", "touch_first"), [(0, []), (1, ["live", "run_live"]), (2, ["live"]), (3, ["LiveView"])]
)
def test_notebook_exports_do_not_depend_on_import_order(order: int, touch_first: list[str]) -> None:
    """``from flow_workbench.notebook import live`` is the function whatever was imported before
    (a submodule named like an export used to replace it once imported)."""
    import json

    out = subprocess.run(
        [sys.executable, "-c", _IMPORT_ORDER_CHECK, json.dumps([order, touch_first])],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout) == []


def test_no_notebook_submodule_is_named_like_an_export() -> None:
    import pkgutil

    import flow_workbench.notebook as notebook

    submodules = {module.name for module in pkgutil.iter_modules(notebook.__path__)}
    assert submodules & set(notebook.__all__) == set()


def test_a_node_that_starts_inside_the_throttle_window_is_shown_running() -> None:
    """A start event arriving less than ``interval`` after the last frame must still reach the
    page before the node finishes (a frame is scheduled for the end of the window)."""
    dag = DAG()
    dag.add_node("quick")
    dag.add_node("slow", lambda data: time.sleep(1.5), depends_on="quick")
    workflow = Workflow(dag, "window", InMemoryStore())
    display = RecordingDisplay()
    view = LiveView(workflow, display=display, interval=0.5)
    assert view.wait_for_layout(60)
    with view:
        workflow.execute()
    index = {name: i for i, name in enumerate(dag.structure())}
    running = [
        frame.svg
        for frame in display.frames
        if frame.svg is not None and _node_styles(frame.svg)[index["slow"]][0] == "node status-running"
    ]
    assert running, "no frame showed the slow node running"


def _fresh_render(view: LiveView, data: WorkflowData) -> str:
    """The picture of ``data`` drawn node by node on a new canvas of the view's layout."""
    template = view._template.result(60)
    canvas = template.canvas()
    for node in graph_nodes(data, view.workflow.dag if view.workflow else None):
        canvas.set_node(node.position, node.status, node.history)
    return canvas.svg()


@pytest.mark.parametrize("fails", [True, False], ids=["failed-run", "successful-run"])
def test_final_frame_equals_a_fresh_render_of_the_final_state(fails: bool) -> None:
    dag = _failing_dag() if fails else DAG.from_structure({f"n{i}": [] for i in range(40)})
    workflow = Workflow(dag, "fresh", InMemoryStore())
    display = RecordingDisplay()
    view = LiveView(workflow, display=display, interval=3600.0)
    assert view.wait_for_layout(60)
    with contextlib.suppress(WorkflowExecutionError), view:
        workflow.execute()
    assert workflow.data is not None
    assert display.last_svg == _fresh_render(view, workflow.data)
    statuses = set(view.statuses().values())
    outcomes = {NodeStatus.FAILED, NodeStatus.SKIPPED} if fails else set()
    assert {NodeStatus.COMPLETED, *outcomes} <= statuses


def test_whole_state_rendering_matches_node_by_node_restyling() -> None:
    """Tooltip edge cases: no timestamps, one timestamp, attempts without timestamps, long and
    non-ASCII errors, durations over a minute, statuses only Go files have."""
    dag = DAG.from_structure({f"n{i}": [f"n{i - 1}"] if i else [] for i in range(9)})
    data = WorkflowData("edge-cases")
    data.set_dag_structure(dag.structure())
    data.set_node_status("n0", NodeStatus.PENDING)  # no history at all
    data.record_attempt_started("n1", at=10.0)  # running: one timestamp
    data.record_attempt_started("n2", at=10.0)
    data.record_attempt_finished("n2", NodeStatus.COMPLETED, at=10.0004)  # rounds to 0 ms
    data.record_attempt_started("n3", at=0.0)  # epoch zero is a timestamp too
    data.record_attempt_finished("n3", NodeStatus.FAILED, at=75.5, error='b\u00e4d <x> & "y"\n' * 80)
    data.record_attempt_finished("n4", NodeStatus.SKIPPED, at=12.0, error="dependency 'n3' failed")
    data.set_node_status("n5", NodeStatus.COMPENSATED)
    data.record_attempt_started("n6", at=1.0)
    data.record_attempt_started("n6", at=2.0)
    data.set_node_error("n6", "HTTP 503", "RuntimeError")  # retrying: running, with an error
    data.set_node_status("n7", NodeStatus.WAITING)  # n8 is not in the state at all
    view = LiveView(dag, display=False, progress=False)
    assert view.wait_for_layout(60)
    template = view._template.result()
    canvas = template.canvas()
    for node in graph_nodes(data, dag):
        canvas.set_node(node.position, node.status, node.history)
    with data.read_columns() as columns:
        rendered = template.render(columns)
    assert rendered == canvas.svg()
    assert rendered.isascii()  # glyphs and names as character references: frames join by copying
    root = ET.fromstring(rendered)
    groups = [g for g in root.iter(f"{SVG}g") if g.get("id", "").startswith("node-")]
    assert all((g.get("class") or "").split()[0] == "node" for g in groups)  # as graphviz has it
    assert len(groups) == 9 and all(g.find(f"{SVG}title") is not None for g in groups)
    assert _node_styles(rendered)[1][2].startswith(STATUS_STYLES[NodeStatus.RUNNING].glyph)


class _ThreadRecordingDisplay(RecordingDisplay):
    """Records which thread pushed each frame."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[str] = []

    def update(self, obj: Any) -> None:
        self.threads.append(threading.current_thread().name)
        super().update(obj)


def test_events_from_other_threads_and_frames_from_the_ticker() -> None:
    """The observer may be called from any engine thread; intermediate frames come from the
    ticker thread, the final one from the thread that delivers the run's end."""
    dag = DAG()
    dag.add_node("first", lambda data: time.sleep(0.3))
    dag.add_node("second", lambda data: time.sleep(0.3), depends_on="first")
    display = _ThreadRecordingDisplay()
    view = LiveView(dag, display=display, interval=0.05, progress=False)
    assert view.wait_for_layout(60)
    runner = threading.Thread(
        target=lambda: Workflow(dag, "threaded", InMemoryStore()).execute(on_event=view.observer),
        name="not-the-main-thread",
    )
    runner.start()
    runner.join(60)
    assert view.statuses() == {"first": NodeStatus.COMPLETED, "second": NodeStatus.COMPLETED}
    assert "flow-workbench-live" in display.threads  # throttled frames: the ticker
    assert display.threads[-1] != "flow-workbench-live"  # the final frame: the run's end
    assert display.last_svg is not None
    assert _node_styles(display.last_svg)[1][0] == "node status-completed"
    running = [f.svg for f in display.frames if f.svg and _node_styles(f.svg)[1][0] == "node status-running"]
    assert running, "no frame showed the second node running"


def test_observer_frames_are_throttled() -> None:
    dag = DAG.from_structure({f"n{i}": [f"n{i - 1}"] if i else [] for i in range(200)})
    display = RecordingDisplay()
    view = LiveView(dag, display=display, interval=3600.0, progress=False)
    assert view.wait_for_layout(60)
    Workflow(dag, "throttled-observer", InMemoryStore()).execute(on_event=view.observer)
    assert len(display.frames) <= 3  # first frame (maybe text), one when laid out, the final one
    assert {fill for _, fill, _ in _node_styles(display.last_svg or "").values()} == {
        _fill(NodeStatus.COMPLETED)
    }


def test_a_view_in_a_with_block_asks_the_engine_for_no_events() -> None:
    """Inside ``with`` the view reads the state instead: the engine builds no event objects."""
    seen: list[bool] = []
    dag = DAG()
    workflow = Workflow(dag, "no-events", InMemoryStore())
    dag.add_node("a")
    dag.add_node("b", lambda data: seen.append(workflow.events.active), depends_on="a")
    with LiveView(workflow, display=RecordingDisplay()) as view:
        workflow.execute()
    assert seen == [False]
    assert view.statuses() == {"a": NodeStatus.COMPLETED, "b": NodeStatus.COMPLETED}


def test_a_dag_changed_between_views_is_laid_out_again(dot_runs: list[int]) -> None:
    dag = DAG.from_structure({"a": [], "b": []})
    LiveView(dag, display=False, progress=False).wait_for_layout(60)
    LiveView(dag, display=False, progress=False).wait_for_layout(60)
    assert dot_runs[0] == 1
    dag.add_dependency("a", "b")
    view = LiveView(dag, display=False, progress=False)
    assert view.wait_for_layout(60)
    assert dot_runs[0] == 2
    assert "n0&#45;&gt;n1" in (view.svg() or "")  # the new edge is drawn


@pytest.mark.parametrize("source", [WorkflowData("empty"), DAG("empty")], ids=["state", "dag"])
def test_a_workflow_without_nodes_is_drawn_as_an_empty_picture(source: WorkflowData | DAG) -> None:
    view = DAGView(source)
    svg = view.svg()
    root = ET.fromstring(svg)
    texts = [element.text for element in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "no nodes" in texts
    assert not re.search(r'<g id="node-\d+"', svg)
    assert view._repr_mimebundle_()["image/svg+xml"] == svg


def test_an_edge_less_state_is_a_grid_whose_every_node_is_restyled() -> None:
    """A Go file has no structure: its nodes are packed in a grid (osage) in the picture's order,
    and the template finds each node there (status class, fill, glyph, tooltip) as in a dot layout."""
    cycle = [NodeStatus.COMPLETED, NodeStatus.FAILED, NodeStatus.WAITING, NodeStatus.SKIPPED]
    data = WorkflowData("grid")
    for index in range(60):
        data.set_node_status(f"node {index:02d}", cycle[index % len(cycle)])
    view = DAGView(data)
    assert "layout=osage" in view.dot_source
    svg = view.svg()
    styles = _node_styles(svg)
    assert sorted(styles) == list(range(60))
    for index, (css_class, fill, text) in styles.items():
        status = cycle[index % len(cycle)]
        assert css_class == f"node status-{status.value}"
        assert fill == _fill(status)
        assert text == f"{STATUS_STYLES[status].glyph} node {index:02d}"
    root = ET.fromstring(svg)
    tooltips = [
        anchor.get("{http://www.w3.org/1999/xlink}title", "")
        for group in root.iter(f"{SVG}g")
        if re.fullmatch(r"node-\d+", group.get("id", ""))
        for anchor in group.iter(f"{SVG}a")
    ]
    assert [tooltip.split("\n")[:2] for tooltip in tooltips] == [
        [f"node {index:02d}", f"status: {cycle[index % len(cycle)].value}"] for index in range(60)
    ]
    # drawn in order: column by column, top to bottom (the first column holds node 00 first)
    positions = {}
    for group in root.iter(f"{SVG}g"):
        match = re.fullmatch(r"node-(\d+)", group.get("id", ""))
        if match:
            label = next(group.iter(f"{SVG}text"))
            positions[int(match.group(1))] = (float(label.get("x", 0)), float(label.get("y", 0)))
    assert positions[0][1] < positions[1][1] and positions[0][0] < positions[59][0]


def test_dag_view_focus_draws_the_part_around_a_node_and_offers_a_widget() -> None:
    from flow_workbench.demo import sample_dag
    from flow_workbench.notebook.graph_select import GraphSelect

    view = DAGView(sample_dag(), focus="churn_model", downstream=False, depth=1)
    assert [node.name for node in view.nodes] == ["join", "churn_model"]
    svg = view.svg()
    assert svg.count('class="node status-') == 2 and "revenue_report" not in svg
    widget = view.widget()
    assert isinstance(widget, GraphSelect) and widget.value == svg
    assert sorted(widget.node_names.values()) == ["churn_model", "join"]
    assert list(widget.status_styles)[:3] == ["pending", "waiting", "running"]  # lifecycle order


def test_a_huge_dag_is_drawn_as_a_level_summary() -> None:
    from flow_workbench.notebook.view import SUMMARY_THRESHOLD

    dag = DAG("huge")
    width = 50
    count = SUMMARY_THRESHOLD + 500
    for index in range(count):
        level = index // width
        deps = [f"t{(level - 1) * width + (index % width)}"] if level else []
        dag.add_node(f"t{index}", lambda data: 1, depends_on=deps)
    view = DAGView(dag)
    assert view.summarised
    assert [node.name for node in view.nodes][:2] == ["level 0: 50 pending", "level 1: 50 pending"]
    assert view.nodes[1].dependencies == ("level 0: 50 pending",)
    assert len(view.nodes) == count // width
    assert view.svg().count('class="node status-') == count // width
    store = InMemoryStore()
    Workflow(dag, "huge", store).execute()
    done = DAGView("huge", store=store)
    assert {node.status for node in done.nodes} == {NodeStatus.COMPLETED}
    assert not DAGView(dag, summarise=False).summarised
    assert not DAGView(dag, focus="t0", downstream=False).summarised  # a focused part stays whole


@pytest.mark.parametrize("fails", [False, True])
def test_the_final_frame_has_a_progress_line_red_with_a_summary_on_failure(fails: bool) -> None:
    from flow_workbench.notebook.live_view import progress_html

    dag = DAG("line")
    dag.add_node("a", lambda data: 1)
    dag.add_node("b", _boom if fails else (lambda data: 2), depends_on="a")
    dag.add_node("c", lambda data: 3, depends_on="b")
    workflow = Workflow(dag, "progress-line", InMemoryStore())
    view = LiveView(workflow, display=False)
    view._progress_line = True  # what display=True (IPython) chooses
    with contextlib.suppress(WorkflowExecutionError), view:
        workflow.execute()
    html = view._repr_mimebundle_()["text/html"]
    line = html[: html.index('<div class="fw-scroll"')]
    if fails:
        assert (
            STATUS_STYLES[NodeStatus.FAILED].fill in line
            and "run failed: 1 completed, 1 failed, 1 skipped" in line
        )
    else:
        assert STATUS_STYLES[NodeStatus.COMPLETED].fill in line and "finished: 3 completed" in line
    assert 'style="width: 100.0%' in line
    running = progress_html("wf", 4, [NodeStatus.COMPLETED, NodeStatus.RUNNING, None, None], final=False)
    assert "1/4 nodes done" in running and STATUS_STYLES[NodeStatus.RUNNING].fill in running


def _boom(data: object) -> None:
    raise RuntimeError("boom")
