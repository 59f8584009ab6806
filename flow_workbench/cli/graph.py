"""The ``dot`` command: a workflow's DAG coloured by node status, as DOT source, SVG or PNG."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..dot import RenderFormat, render, workflow_to_dot
from ._common import Commands, UsageError, add_workflow_arguments, find_state_file, note

#: Output file extensions rendered by Graphviz's ``dot``.
RENDERED: dict[str, RenderFormat] = {".svg": "svg", ".png": "png"}
#: Output file extensions that receive the DOT source.
SOURCE_SUFFIXES = (".dot", ".gv")


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
    dot = commands.add_parser(
        "dot",
        parents=[common],
        help="draw a workflow as a Graphviz graph (DOT, SVG, PNG)",
        description="Print the DOT source of a workflow's DAG, nodes coloured by status. With -o FILE "
        "ending in .svg or .png the graph is rendered by Graphviz's dot program (apt-get install "
        "graphviz); FILE ending in .dot or .gv receives the DOT source. Go files store no "
        "dependencies, so their nodes are drawn without edges.",
    )
    add_workflow_arguments(dot)
    dot.add_argument("-o", "--output", type=Path, metavar="FILE", help="write to FILE instead of stdout")
    dot.set_defaults(handler=run_dot)


def run_dot(args: argparse.Namespace) -> int:
    state_file = find_state_file(args.dir, args.id, args.format, writing=False)
    data, _ = state_file.load()
    source = workflow_to_dot(data)
    output: Path | None = args.output
    if output is None:
        print(source, end="" if source.endswith("\n") else "\n")
        return 0
    suffix = output.suffix.lower()
    if suffix in RENDERED:
        output.write_bytes(render(source, RENDERED[suffix]))
    elif suffix in SOURCE_SUFFIXES:
        output.write_text(source, encoding="utf-8")
    else:
        raise UsageError(f"cannot tell which format {output.name} wants: end it in .svg, .png, .dot or .gv")
    note(f"wrote {output}")
    return 0
