"""Outputs made static for untrusted notebooks: pictures once as <img>, widgets as their fallback."""

from __future__ import annotations

import base64
import re
from typing import Any

from flow_workbench import DAG, InMemoryStore, Workflow
from flow_workbench.notebook import DAGView, RecoveryPanel
from flow_workbench.notebook.static import make_outputs_static, static_bundle

_DATA_URI = re.compile(r'src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"')


def _dag() -> DAG:
    dag = DAG("static")
    dag.add_node("a", lambda data: 1)
    dag.add_node("b", lambda data: 2, depends_on="a")
    return dag


def _notebook(*bundles: dict[str, Any]) -> dict[str, Any]:
    outputs = [{"output_type": "display_data", "data": dict(bundle), "metadata": {}} for bundle in bundles]
    return {"cells": [{"cell_type": "code", "outputs": outputs}], "metadata": {}}


def test_an_inline_picture_becomes_one_image_of_the_same_svg() -> None:
    view = DAGView(_dag())
    notebook = _notebook(view._repr_mimebundle_())
    assert make_outputs_static(notebook) == 1
    data = notebook["cells"][0]["outputs"][0]["data"]
    assert set(data) == {"text/html", "text/plain"}  # the SVG copy is gone: the picture once
    html = data["text/html"]
    assert "<svg" not in html and html.startswith('<div class="fw-picture fw-dag">')
    (encoded,) = _DATA_URI.findall(html)
    assert base64.b64decode(encoded).decode() == view.svg()[view.svg().find("<svg") :]


def test_a_live_frame_keeps_its_progress_line_above_the_image() -> None:
    from flow_workbench.notebook.live_view import Picture, progress_html

    svg = DAGView(_dag()).svg()
    header = progress_html("wf <1>", 2, [None, None], final=False)
    notebook = _notebook(Picture(svg, "wf: 0/2 nodes done", header)._repr_mimebundle_())
    make_outputs_static(notebook)
    html = notebook["cells"][0]["outputs"][0]["data"]["text/html"]
    assert html.count("<img") == 1 and "<svg" not in html
    assert header in html and html.index(header) < html.index("<img")
    assert make_outputs_static(notebook) == 0  # idempotent


def test_a_widget_without_saved_state_keeps_its_static_fallback() -> None:
    store = InMemoryStore()
    Workflow(_dag(), "wf", store).execute()
    panel = RecoveryPanel(store, "wf")
    bundle = panel._repr_mimebundle_()
    notebook = _notebook(bundle[0] if isinstance(bundle, tuple) else bundle)
    assert make_outputs_static(notebook) == 1
    data = notebook["cells"][0]["outputs"][0]["data"]
    assert set(data) == {"text/html", "text/plain"}
    assert len(_DATA_URI.findall(data["text/html"])) == 1 and "<table" in data["text/html"]


def test_widget_views_stay_when_the_notebook_saved_their_state() -> None:
    notebook = _notebook({"application/vnd.jupyter.widget-view+json": {"model_id": "x"}, "text/plain": "w"})
    notebook["metadata"]["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {"x": {}}}}
    assert make_outputs_static(notebook) == 0


def test_a_foreign_svg_output_becomes_an_image_too() -> None:
    svg = '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="5" height="5"/></svg>'
    notebook = _notebook({"image/svg+xml": svg, "text/plain": "<Figure>"})
    make_outputs_static(notebook)
    html = notebook["cells"][0]["outputs"][0]["data"]["text/html"]
    assert html == static_bundle(svg, "<Figure>")["text/html"]
    assert "&lt;Figure&gt;" in html
