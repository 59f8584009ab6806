"""Commands for teaching: ``demo`` writes sample workflows, ``lab`` opens JupyterLab on the notebooks."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import subprocess
import sys
import urllib.parse
from pathlib import Path

from ..data import NodeRecord, WorkflowData
from ..demo import sample_dag
from ..engine import Workflow
from ..errors import WorkflowExecutionError, WorkflowNotFoundError
from ..status import NodeStatus
from ..stores import InMemoryStore, WorkflowStore
from ..stores.open import open_file_store
from ._common import (
    SUFFIXES,
    WRITE_FORMATS,
    CommandError,
    Commands,
    format_counts,
    format_label,
    note,
    say,
    table,
)

#: Where ``lab`` opens by default: the repository's notebooks folder (present in a source checkout).
NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"

#: The notebook ``lab`` lands on when the folder has it.
START_NOTEBOOK = "quickstart.ipynb"

#: Demo workflow ids and what each shows.
DEMOS = {
    "etl-completed": "every node completed",
    "etl-failed": "churn_model failed twice (1 retry), publish skipped, the rest completed",
    "etl-crashed": "the process 'died' while join was running: upstream completed, downstream pending",
}

#: Nodes of the sample DAG that had finished when the crashed demo's process "died".
CRASHED_FINISHED = ("extract_orders", "extract_customers", "clean_orders")
CRASHED_RUNNING = "join"


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
    demo = commands.add_parser(
        "demo",
        parents=[common],
        help="write sample workflows (completed, failed, crashed) into a folder",
        description="Run the sample ETL workflow (flow_workbench.demo.sample_dag) three times into DIR: "
        + "; ".join(f"{name}: {what}" for name, what in DEMOS.items())
        + ". Refuses to write when DIR already holds a workflow of one of these ids (in either format), "
        "unless --overwrite is given.",
    )
    demo.add_argument("dir", type=Path, metavar="DIR", help="folder to write into (created if missing)")
    demo.add_argument(
        "--format",
        choices=list(WRITE_FORMATS),
        default="fb",
        help="file format to write (default: %(default)s)",
    )
    demo.add_argument(
        "--overwrite",
        action="store_true",
        help="replace workflows of DIR that have a demo id (their .fb and .json files)",
    )
    demo.set_defaults(handler=run_demo)

    lab = commands.add_parser(
        "lab",
        parents=[common],
        help="start JupyterLab on the notebooks folder",
        description="Start JupyterLab (python -m jupyterlab) on the notebooks folder. Needs the "
        "notebook extra: pip install 'flow_workbench[notebook]'. Arguments after -- go to JupyterLab.",
    )
    lab.add_argument(
        "--dir", type=Path, default=NOTEBOOKS, help="folder to open (default: the repository's notebooks/)"
    )
    lab.add_argument(
        "--open",
        metavar="NOTEBOOK",
        default=None,
        help=f"notebook of the folder to land on (default: {START_NOTEBOOK} when the folder has it, "
        "else the Launcher)",
    )
    lab.add_argument("jupyter_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    lab.set_defaults(handler=run_lab)


# --- demo --------------------------------------------------------------------------------------


def run_demo(args: argparse.Namespace) -> int:
    suffix, go_layout = WRITE_FORMATS[args.format]
    taken = existing_demo_files(args.dir)
    if taken and not args.overwrite:
        names = ", ".join(path.name for path in taken)
        raise CommandError(
            f"{args.dir} already holds workflows with demo ids ({names}); "
            "pass --overwrite to replace them, or choose another folder"
        )
    for path in taken:  # both formats: afterwards each demo id has exactly the file written here
        with open_file_store(args.dir, path.suffix) as other, contextlib.suppress(WorkflowNotFoundError):
            other.delete(path.stem)
    with open_file_store(args.dir, suffix, go_layout=go_layout) as store:
        Workflow(sample_dag(), "etl-completed", store).execute()
        with contextlib.suppress(WorkflowExecutionError):
            Workflow(sample_dag(fail={"churn_model"}), "etl-failed", store).execute()
        store.save(crashed_state("etl-crashed"))
        rows = []
        for workflow_id, what in DEMOS.items():
            summary = store.summary(workflow_id)
            rows.append(
                [workflow_id, format_label(summary.format), format_counts(summary.status_counts), what]
            )
    say(f"wrote 3 demo workflows into {args.dir}:")
    say(table(["ID", "FORMAT", "STATUSES", "STORY"], rows))
    say(f"\ntry: flow-workbench show {args.dir} etl-failed")
    say(f"     flow-workbench reset-failed {args.dir} etl-failed --dry-run")
    return 0


def existing_demo_files(directory: Path) -> list[Path]:
    """State files in ``directory`` named like a demo workflow (symlinks and other oddities too:
    whatever sits there is the user's)."""
    candidates = [directory / (workflow_id + suffix) for workflow_id in DEMOS for suffix in SUFFIXES.values()]
    return [path for path in candidates if os.path.lexists(path)]


def crashed_state(workflow_id: str) -> WorkflowData:
    """A full run of the sample DAG, rewound to how it looked when the process died mid-run.

    Built from a real run so times, outputs and the DAG structure are genuine; then the nodes
    after the crash point go back to pending and ``join`` is left running with its attempt begun.
    """
    memory: WorkflowStore = InMemoryStore()
    Workflow(sample_dag(), workflow_id, memory).execute()
    data = memory.load(workflow_id)
    for name in data.node_statuses():
        if name not in CRASHED_FINISHED:
            data.apply_node_record(NodeRecord(node=name, status=NodeStatus.PENDING))
    data.record_attempt_started(CRASHED_RUNNING)
    data.version = 0  # a new file in the target store
    return data


# --- lab ---------------------------------------------------------------------------------------


def run_lab(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("jupyterlab") is None:
        raise CommandError(
            "JupyterLab is not installed; install the notebook extra: pip install 'flow_workbench[notebook]'"
        )
    folder: Path = args.dir
    if not folder.is_dir():
        raise FileNotFoundError(f"notebook folder {folder} does not exist; pass --dir")
    extra = args.jupyter_args[1:] if args.jupyter_args[:1] == ["--"] else args.jupyter_args
    landing = start_path(folder, args.open)
    command = [sys.executable, "-m", "jupyterlab", f"--notebook-dir={folder}"]
    if landing is not None:
        # LabApp's own default_url ("/lab") wins over ServerApp.default_url: set LabApp's. The
        # server then prints (and the browser opens) this notebook's URL, token included.
        command.append(f"--LabApp.default_url=/lab/tree/{landing}")
    command += extra
    where = f", opening {landing}" if landing is not None else ""
    note(f"starting JupyterLab on {folder}{where} (Ctrl-C to stop; the URL to open follows)")
    try:
        return subprocess.call(command)
    except KeyboardInterrupt:
        return 130


def start_path(folder: Path, chosen: str | None) -> str | None:
    """The notebook path (relative to ``folder``, URL-quoted) ``lab`` lands on, if any."""
    if chosen is None:
        return START_NOTEBOOK if (folder / START_NOTEBOOK).is_file() else None
    if not (folder / chosen).is_file():
        raise CommandError(f"--open {chosen}: no such notebook in {folder}")
    return urllib.parse.quote(Path(chosen).as_posix())
