"""Counting the lines of flow_workbench code a call runs: growth asserted without timing anything."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import flow_workbench

if TYPE_CHECKING:
    from _typeshed import TraceFunction  # what sys.settrace takes (exists for type checkers only)

PACKAGE = str(Path(flow_workbench.__file__).parent)


def lines_run(function: Callable[[], object]) -> int:
    """How many lines of flow_workbench code ``function`` executes: a step count that grows like
    the work done, so growth can be asserted without timing anything."""
    count = 0

    def trace(frame: FrameType, event: str, arg: Any) -> TraceFunction | None:
        nonlocal count
        if not frame.f_code.co_filename.startswith(PACKAGE):
            return None
        if event == "line":
            count += 1
        return trace

    sys.settrace(trace)
    try:
        function()
    finally:
        sys.settrace(None)
    return count
