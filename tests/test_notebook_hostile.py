"""Hostile state files rendered by every HTML-producing object of ``flow_workbench.notebook``.

The workbench opens folders written by other people: a node name, key, output, error, error type,
audit entry, workflow id or file path may be markup. Each export of ``flow_workbench.notebook`` is
rendered from such a folder (``RENDERERS`` must cover ``__all__``), and every ``text/html`` and
``image/svg+xml`` output and every HTML-showing widget value is parsed: no script, image, frame
or event-handler attribute may appear, only escaped text.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import pandas as pd
import pytest

import flow_workbench.notebook as notebook
from flow_workbench import InMemoryStore, Workflow, WorkflowData, WorkflowExecutionError
from flow_workbench.notebook.graph_select import GraphSelect
from flow_workbench.notebook.widgets import Action
from flow_workbench.stores.json_file import JSONFileStore
from tests.helpers.markup import PAYLOADS, hostile_dag, hostile_state, write_hostile_folder

#: Markup a payload leaves when it reaches HTML unescaped (checked case-insensitively).
_RAW_MARKERS = ("<img", "<script", "<iframe", "<svg onload")
_FORBIDDEN_TAGS = {"script", "img", "iframe", "object", "embed", "foreignobject", "base", "form", "meta"}


# --- finding markup in outputs -----------------------------------------------------------------


class _Markup(HTMLParser):
    """Collects what in an HTML or SVG document could run script: tags, handlers, script URLs."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag.lower() in _FORBIDDEN_TAGS:
            self.problems.append(f"<{tag}> element")
        for name, value in attrs:
            if name.lower().startswith("on"):
                self.problems.append(f"{name}= attribute on <{tag}>")
            linked = name.lower() in ("href", "xlink:href", "src", "action")
            if linked and value and not value.strip().startswith("#"):
                self.problems.append(f"{name}={value[:60]!r} on <{tag}>")

    handle_startendtag = handle_starttag


#: The one image the workbench writes (``static.static_picture_html``): an SVG as a base64 data URI,
#: whose picture is checked like any other document. Any other ``<img>`` is a problem.
_STATIC_PICTURE = re.compile(
    r'<img src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]*)" alt="[^"<>]*" style="max-width: none">'
)


def markup_problems(document: str) -> list[str]:
    """Why ``document`` is unsafe (empty when every payload in it is escaped text)."""
    problems: list[str] = []
    for picture in _STATIC_PICTURE.finditer(document):
        svg = base64.b64decode(picture.group(1)).decode("utf-8")
        problems += [f"in a static picture: {problem}" for problem in markup_problems(svg)]
    document = _STATIC_PICTURE.sub("", document)
    lowered = document.lower()
    problems += [f"raw {marker!r}" for marker in _RAW_MARKERS if marker in lowered]
    parser = _Markup()
    parser.feed(document)
    parser.close()
    return problems + parser.problems


def _widget_tree(widget: Any) -> Iterator[Any]:
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _widget_tree(child)


def html_outputs(obj: Any) -> list[str]:
    """Every piece of markup ``obj`` hands a front end: display data, ``_repr_html_`` and the
    values of HTML-showing widgets (and descriptions allowed to hold HTML) in its widget tree."""
    documents: list[str] = []
    bundle = getattr(obj, "_repr_mimebundle_", None)
    if bundle is not None:
        data = bundle()
        data = data[0] if isinstance(data, tuple) else data
        documents += [data[kind] for kind in ("text/html", "image/svg+xml") if kind in (data or {})]
    repr_html = getattr(obj, "_repr_html_", None)
    if repr_html is not None:
        documents.append(repr_html() or "")
    root = getattr(obj, "widget", obj)
    if isinstance(root, widgets.Widget):
        for widget in _widget_tree(root):
            if isinstance(widget, widgets.HTML | widgets.HTMLMath | GraphSelect):
                documents.append(widget.value)
            if getattr(widget, "description_allow_html", False):
                documents.append(widget.description)
    return documents


# --- one renderer per export -------------------------------------------------------------------

Rendered = list[tuple[str, Any]]


def _browser(folder: Path) -> Rendered:
    browser = notebook.StoreBrowser(folder)
    assert len(browser.frame) == 7, browser.frame  # every file is a row, the unreadable ones too
    shown: Rendered = []
    for row in range(len(browser.frame)):
        browser.show(row)
        shown.append((f"StoreBrowser row {row}", browser))
        if browser.panel is not None:
            browser.panel.preview(Action.RESET_FAILED)
            browser.panel.preview(Action.RESET, [PAYLOADS[0]])
            shown.append((f"StoreBrowser row {row} after previews", browser))
    return shown


def _panel(folder: Path) -> Rendered:
    store = JSONFileStore(folder)
    panel = notebook.RecoveryPanel(store, "hostile-json")
    shown: Rendered = [("RecoveryPanel", panel)]
    panel.select([PAYLOADS[0]])
    panel.preview(Action.MARK_COMPLETED)
    shown.append(("RecoveryPanel preview", panel))
    panel.confirm()
    shown.append(("RecoveryPanel confirmed", panel))
    running = notebook.RecoveryPanel(InMemoryStore(), "hostile-run", dag=hostile_dag())
    running.run()  # fails: its message names the failed node and quotes the error
    assert running.last_error is not None
    shown.append(("RecoveryPanel after a failed run", running))
    return shown


def _frames_of_run(start: Callable[[Workflow, notebook.RecordingDisplay], Any]) -> Rendered:
    display = notebook.RecordingDisplay()
    workflow = Workflow(hostile_dag(), "hostile-live", InMemoryStore())
    view = start(workflow, display)
    frames = display.frames
    assert any(frame.svg for frame in frames), "no picture was drawn"
    return [("live frame", frame) for frame in frames] + [("live view", view)]


def _live_function(workflow: Workflow, display: notebook.RecordingDisplay) -> Any:
    with notebook.live(workflow, display=display, progress=False) as view:
        assert view.wait_for_layout(60)
        with pytest.raises(WorkflowExecutionError):
            workflow.execute()
    return view


def _run_live(workflow: Workflow, display: notebook.RecordingDisplay) -> Any:
    with pytest.raises(WorkflowExecutionError):
        notebook.run_live(workflow, display=display, progress=False)
    return display


def _live_view(workflow: Workflow, display: notebook.RecordingDisplay) -> Any:
    view = notebook.LiveView(workflow, display=display, progress=False)
    assert view.wait_for_layout(60)
    with view, pytest.raises(WorkflowExecutionError):
        workflow.execute()
    return view


def _state(folder: Path) -> WorkflowData:
    with JSONFileStore(folder) as store:
        return store.load("hostile-json")


def _store_with_errors(folder: Path) -> JSONFileStore:
    store = JSONFileStore(folder)
    with pytest.raises(Exception):  # noqa: B017 - any error: its message is what is rendered
        store.load("unreadable")
    return store


def _history_state(folder: Path) -> WorkflowData:
    """The hostile state with payloads in its attempt log and run history too."""
    from flow_workbench.data import RunRecord

    data = _state(folder)
    for index, payload in enumerate(PAYLOADS):
        data.open_attempt(payload, payload, 1, at=1_700_000_000.0 + index, host=payload, pid=index)
        data.close_attempt(
            payload,
            "failed",
            at=1_700_000_001.0 + index,
            error_type=payload,
            error=payload,
            traceback=payload,
        )
        data.put_run(
            RunRecord(
                payload,
                1_700_000_000.0 + index,
                None,
                "running",
                "new",
                host=payload,
                user=payload,
                params={payload: payload},
            )
        )
    return data


def _running_folder(folder: Path) -> Path:
    """A folder whose workflow (named by a payload) has a node stored as running and no lease."""
    running = folder.parent / (folder.name + "-running")
    if not running.exists():
        running.mkdir()
        data = hostile_state("running-" + "x")
        data.record_attempt_started(PAYLOADS[0])
        with JSONFileStore(running) as store:
            store.save(data)
    return running


RENDERERS: dict[str, Callable[[Path], Rendered]] = {
    "DAGView": lambda folder: [
        ("DAGView", notebook.DAGView(_state(folder))),
        ("DAGView of a DAG", notebook.DAGView(hostile_dag())),
        ("DAGView of a Go file", notebook.DAGView("hostile-go", store=JSONFileStore(folder))),
    ],
    "GraphSelect": lambda folder: [
        ("GraphSelect", notebook.RecoveryPanel(JSONFileStore(folder), "hostile-json").picture)
    ],
    "LiveView": lambda folder: _frames_of_run(_live_view),
    "Picture": lambda folder: _frames_of_run(_live_view)[:-1],
    "RecordingDisplay": lambda folder: _frames_of_run(_run_live),
    "RecoveryPanel": _panel,
    "StoreBrowser": _browser,
    "Timeline": lambda folder: [
        ("Timeline", notebook.Timeline(_state(folder))),
        ("Timeline of a Go file", notebook.Timeline("hostile-go", store=JSONFileStore(folder))),
    ],
    "attempts_frame": lambda folder: [("attempts_frame", notebook.attempts_frame(_history_state(folder)))],
    "audit_frame": lambda folder: [("audit_frame", notebook.audit_frame(_state(folder)))],
    "data_frame": lambda folder: [("data_frame", notebook.data_frame(_state(folder)))],
    "live": lambda folder: _frames_of_run(_live_function),
    "metrics_frame": lambda folder: [("metrics_frame", notebook.metrics_frame(_store_with_errors(folder)))],
    "nodes_frame": lambda folder: [
        ("nodes_frame", notebook.nodes_frame(_state(folder))),
        ("nodes_frame of a Go file", notebook.nodes_frame(folder / "hostile-go.json")),
    ],
    "run_live": lambda folder: _frames_of_run(_run_live),
    "style_nodes": lambda folder: [
        ("style_nodes", notebook.style_nodes(notebook.nodes_frame(_state(folder)))),
        ("style_nodes of a Go file", notebook.style_nodes(notebook.nodes_frame(folder / "hostile-go.json"))),
    ],
    "style_workflows": lambda folder: [
        ("style_workflows", notebook.style_workflows(notebook.workflows_frame(folder)))
    ],
    "runs_frame": lambda folder: [("runs_frame", notebook.runs_frame(_history_state(folder)))],
    "workflows_activity_frame": lambda folder: [
        ("workflows_activity_frame", notebook.workflows_activity_frame(folder)),
        ("workflows_activity_frame, running", notebook.workflows_activity_frame(_running_folder(folder))),
    ],
    "workflows_frame": lambda folder: [
        ("workflows_frame", notebook.workflows_frame(folder)),
        ("workflows_frame of a store", notebook.workflows_frame(JSONFileStore(folder))),
    ],
}


def test_every_export_has_a_hostile_renderer() -> None:
    assert sorted(RENDERERS) == notebook.__all__


@pytest.fixture(scope="module")
def hostile_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_hostile_folder(tmp_path_factory.mktemp("hostile"))


def _documents(rendered: Any) -> list[str]:
    if isinstance(rendered, pd.DataFrame):
        return [rendered._repr_html_() or "", rendered.to_html()]
    if hasattr(rendered, "to_html") and not isinstance(rendered, widgets.Widget):  # a Styler
        return [rendered.to_html(), *html_outputs(rendered)]
    if isinstance(rendered, notebook.RecordingDisplay):
        return [document for frame in rendered.frames for document in html_outputs(frame)]
    return html_outputs(rendered)


@pytest.mark.parametrize("name", sorted(RENDERERS))
def test_payloads_reach_html_only_escaped(name: str, hostile_folder: Path) -> None:
    failures = []
    shown_escaped = False
    for label, rendered in RENDERERS[name](hostile_folder):
        for document in _documents(rendered):
            problems = markup_problems(document)
            if problems:
                failures.append(f"{label}: {problems[:4]}")
            shown_escaped = shown_escaped or "&lt;img" in document or "&lt;script" in document
    assert failures == []
    assert shown_escaped, f"{name} rendered no payload at all: the test would prove nothing"


def test_the_checker_finds_raw_markup() -> None:
    """The parser behind the test above: each payload unescaped is caught, escaped is not."""
    import html

    for payload in PAYLOADS:
        if "<" not in payload:  # already escaped, or a script URL outside any attribute: text
            continue
        assert markup_problems(f"<td>{payload}</td>"), payload
        assert markup_problems(f'<a title="{payload}">x</a>') or "'" in payload, payload
        assert markup_problems(f"<td>{html.escape(payload)}</td>") == [], payload
    assert markup_problems('<a href="javascript:alert(1)">x</a>')
    # a static picture is allowed, but what it holds is checked like inline markup
    from flow_workbench.notebook.static import static_picture_html

    clean = '<svg xmlns="http://www.w3.org/2000/svg"><text>&lt;img src=x&gt;</text></svg>'
    assert markup_problems(static_picture_html(clean, PAYLOADS[0])) == []
    dirty = f'<svg xmlns="http://www.w3.org/2000/svg"><text>{PAYLOADS[0]}</text></svg>'
    assert markup_problems(static_picture_html(dirty, "a picture"))
    assert markup_problems('<img src="data:image/png;base64,AAAA" alt="x" style="max-width: none">')
