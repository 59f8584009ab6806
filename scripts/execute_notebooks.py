"""Re-execute the notebooks in notebooks/ and write them back with their outputs.

The notebooks are committed executed, so they read well on GitHub. Each one runs top to bottom in a
fresh kernel inside a temporary working copy (its ``workbench-data/`` folders go there, not next to
the committed notebooks). The result is refused — and nothing is written — when a cell fails or an
output names an absolute path of this machine (the temporary folder, the checkout, the home
folder). Noisy metadata (execution timing, widget state) is stripped, and the outputs are made
static (``flow_workbench.notebook.static.make_outputs_static``): a fresh clone opens the notebook
untrusted, and JupyterLab then sanitises HTML and shows no widgets, so every picture is stored once
as an ``<img>`` and every widget as its static HTML.

    python scripts/execute_notebooks.py                     # every notebook
    python scripts/execute_notebooks.py quickstart.ipynb    # some of them
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import nbclient
import nbformat

from flow_workbench.notebook.static import make_outputs_static

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
GOLDEN_GO = ROOT / "tests" / "golden" / "go"
TIMEOUT = 300  # seconds per cell

#: Cell metadata keys that change on every run without saying anything about the notebook.
NOISY_CELL_METADATA = ("execution", "collapsed", "scrolled")
#: Notebook metadata keys likewise (widget state is large and goes stale at once).
NOISY_NOTEBOOK_METADATA = ("widgets", "papermill")


def machine_paths(workdir: Path) -> list[str]:
    """Absolute paths that must not appear in committed outputs."""
    paths = {str(workdir), str(workdir.resolve()), str(ROOT), tempfile.gettempdir(), str(Path.home())}
    paths |= {"/tmp/", "/work/", "/root/"}
    return sorted(p for p in paths if p not in ("", "/"))


def output_texts(notebook: Any) -> list[tuple[int, str]]:
    """(cell index, text) of every output of every code cell, each MIME type as text."""
    found = []
    for index, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                found.append((index, str(output.get("text", ""))))
            elif output.get("output_type") == "error":
                found.append((index, "\n".join(output.get("traceback", []))))
            for value in output.get("data", {}).values():
                found.append((index, value if isinstance(value, str) else str(value)))
    return found


def problems(notebook: Any, workdir: Path) -> list[str]:
    """Why an executed notebook must not be committed (empty when it is fine)."""
    found = []
    for index, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                found.append(f"cell {index}: {output.get('ename')}: {output.get('evalue')}")
    for index, text in output_texts(notebook):
        for path in machine_paths(workdir):
            if path in text:
                found.append(f"cell {index}: output names the absolute path {path!r}")
    return found


def strip_noise(notebook: Any) -> None:
    for key in NOISY_NOTEBOOK_METADATA:
        notebook.metadata.pop(key, None)
    for cell in notebook.cells:
        for key in NOISY_CELL_METADATA:
            cell.metadata.pop(key, None)


def execute(path: Path) -> Any:
    """Run ``path`` in a temporary working copy; return the executed notebook, or raise."""
    notebook = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    with tempfile.TemporaryDirectory(prefix="fw-notebook-") as tmp:
        workdir = Path(tmp)
        client = nbclient.NotebookClient(
            notebook,
            timeout=TIMEOUT,
            kernel_name="python3",
            allow_errors=True,  # collect every error, then refuse the notebook below
            store_widget_state=False,
            resources={"metadata": {"path": str(workdir)}},
        )
        client.execute()
        found = problems(notebook, workdir)
    if found:
        raise RuntimeError(f"{path.name} cannot be committed:\n  " + "\n  ".join(found))
    strip_noise(notebook)
    make_outputs_static(notebook)
    return notebook


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("notebooks", nargs="*", help="names or paths (default: every notebook)")
    args = parser.parse_args(argv)
    paths = [NOTEBOOKS / Path(name).with_suffix(".ipynb").name for name in args.notebooks]
    paths = paths or sorted(NOTEBOOKS.glob("*.ipynb"))
    unknown = [path.name for path in paths if not path.is_file()]
    if unknown:
        parser.error(f"no such notebook in {NOTEBOOKS.relative_to(ROOT)}/: {', '.join(unknown)}")
    # go_interop finds the golden files of an editable install anyway; this makes any install work.
    os.environ.setdefault("FLOW_WORKBENCH_GO_FILES", str(GOLDEN_GO))
    failed = 0
    for path in paths:
        print(f"executing {path.relative_to(ROOT)} ...", flush=True)
        try:
            notebook = execute(path)
        except Exception as error:  # report every notebook, then fail
            print(f"  FAILED: {error}", file=sys.stderr)
            failed += 1
            continue
        nbformat.validate(notebook)
        nbformat.write(notebook, path)  # type: ignore[no-untyped-call]
        cells = sum(1 for cell in notebook.cells if cell.cell_type == "code")
        print(f"  wrote {cells} executed code cells")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
