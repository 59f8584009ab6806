"""Every notebook in notebooks/ runs top to bottom without errors and shows what it promises."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

from conftest import GOLDEN_GO  # noqa: E402

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
ALL = sorted(NOTEBOOKS.glob("*.ipynb"))

#: Text each notebook's outputs must contain: the results it is there to show.
EXPECTED: dict[str, list[str]] = {
    "quickstart.ipynb": [
        "churn_model: RuntimeError",  # the intentional failure was reported
        "would reset: ['churn_model', 'publish']",
        "completed=7",  # run again finished every node
        "reset_failed",  # the audit log
        "<RecoveryPanel 'etl-demo'",
        "<StoreBrowser 'workbench-data/quickstart'",
    ],
    "scale_out.ipynb": [
        "workers: 2",
        "ran 8 node(s)",
        "completed=8",
        "shards ran in worker processes: [",  # more than one worker pid, none of them ours
        "refused: workflow 'fan-out-demo' is being executed by another process",
        "closed",
    ],
    "go_interop.ipynb": [
        "compensation_failed",
        "Go FlatBuffers",
        "9007199254740993",
        "rolling back: True | trigger cause: canceled",
        "would reset: ['compfailed_node']",
        "'compfailed_node': 'pending'",
        "stored without its DAG structure",
        "<StoreBrowser 'workbench-data/go-files'",
    ],
}


#: Notebooks whose stores are folders (relative to the working directory).
WRITES_FILES = {"quickstart.ipynb", "go_interop.ipynb"}


def output_text(notebook: Any) -> str:
    """Every text and HTML output of the executed notebook, joined."""
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                parts.append(output["text"])
            for mime in ("text/plain", "text/html"):
                value = output.get("data", {}).get(mime)
                if value:
                    parts.append(value if isinstance(value, str) else "".join(value))
    return "\n".join(parts)


def test_there_are_notebooks_and_each_has_expectations() -> None:
    assert {path.name for path in ALL} == set(EXPECTED)


@pytest.mark.parametrize("path", ALL, ids=[path.name for path in ALL])
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("path", ALL, ids=[path.name for path in ALL])
def test_notebook_runs_and_shows_its_results(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOW_WORKBENCH_GO_FILES", str(GOLDEN_GO))
    notebook = nbformat.read(path, as_version=4)
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
