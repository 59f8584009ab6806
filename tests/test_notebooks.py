"""Every notebook in notebooks/ runs top to bottom without errors and shows what it promises."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

from tests.helpers.notebooks import EXPECTED, output_text  # noqa: E402
from tests.helpers.paths import GOLDEN_GO  # noqa: E402

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
ALL = sorted(NOTEBOOKS.glob("*.ipynb"))

#: Notebooks whose stores are folders (relative to the working directory).
WRITES_FILES = {
    "quickstart.ipynb",
    "go_interop.ipynb",
    "persistence_and_recovery.ipynb",
    "custom_store.ipynb",
}

#: Absolute paths of a machine that must not leak into committed outputs (notebooks print relative ones).
MACHINE_PATHS = ("/tmp/", "/work/", "/root/", "/home/", str(NOTEBOOKS.parent))


def test_there_are_notebooks_and_each_has_expectations() -> None:
    assert {path.name for path in ALL} == set(EXPECTED)


@pytest.mark.parametrize("path", ALL, ids=[path.name for path in ALL])
def test_notebook_is_committed_executed(path: Path) -> None:
    """Committed with outputs (so it reads well on GitHub): run top to bottom, no errors, no local paths.

    Refresh them with ``python scripts/execute_notebooks.py``.
    """
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1)), (
        f"{path.name} is not executed top to bottom: run scripts/execute_notebooks.py"
    )
    assert sum(1 for cell in code if cell.outputs) >= len(code) // 2, f"{path.name} lacks outputs"
    errors = [o for c in code for o in c.outputs if o.get("output_type") == "error"]
    assert errors == [], f"{path.name} was committed with an error: {errors[0].get('evalue')}"
    text = output_text(notebook)
    everything = text + "".join(  # every MIME type (SVG, widget views, ...) and traceback
        str(value)
        for c in code
        for o in c.outputs
        for value in (*o.get("data", {}).values(), o.get("traceback"))
    )
    leaked = [p for p in MACHINE_PATHS if p in everything]
    assert leaked == [], f"outputs of {path.name} name absolute paths {leaked}: print relative ones"
    missing = [snippet for snippet in EXPECTED[path.name] if snippet not in text]
    assert missing == [], f"committed outputs of {path.name} lack {missing}: re-execute it"
    # what JupyterLab shows an untrusted notebook (a fresh clone): sanitised HTML and no widgets
    data = [o.get("data", {}) for c in code for o in c.outputs]
    assert not any("image/svg+xml" in d for d in data), "a picture stored twice: make the outputs static"
    assert not any("application/vnd.jupyter.widget-view+json" in d for d in data), "a stateless widget view"
    html = ["".join(d["text/html"]) for d in data if "text/html" in d]
    styled = [h.partition("</style>")[0] for h in html if "</style>" in h]
    dropped = [h[:80] for h in html if "<svg" in h] + [h[:80] for h in styled if "background-color" in h]
    assert dropped == [], "markup the sanitiser drops: an inline picture, colours in a <style> block"
    noisy = [c.source[:40] for c in code if "execution" in c.metadata]
    assert noisy == [], "execution timing metadata left in: run scripts/execute_notebooks.py"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("path", ALL, ids=[path.name for path in ALL])
def test_notebook_runs_fresh_and_shows_its_results(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOW_WORKBENCH_GO_FILES", str(GOLDEN_GO))
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:  # drop the committed outputs: only what this run shows counts
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    client = nbclient.NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors == []
    text = output_text(notebook)
    missing = [snippet for snippet in EXPECTED[path.name] if snippet not in text]
    assert missing == [], f"outputs of {path.name} lack {missing}"
    # the pictures came out as SVG (live view, timeline, DAG view), not as an error text
    svgs = [o for c in notebook.cells for o in c.get("outputs", []) if "image/svg+xml" in o.get("data", {})]
    assert svgs and all(re.search(r"<svg\b", "".join(o["data"]["image/svg+xml"])) for o in svgs)
    # file-store notebooks wrote into the temporary working directory, never next to the committed
    # notebooks (scale_out keeps its state in Redis)
    if path.name in WRITES_FILES:
        assert any(tmp_path.iterdir())
