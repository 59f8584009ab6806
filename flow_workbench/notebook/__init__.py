"""The Jupyter workbench: pictures, live views and timelines of workflows (imported lazily)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .browser import StoreBrowser
    from .graph_select import GraphSelect
    from .history import attempts_frame, runs_frame, workflows_activity_frame
    from .live_view import LiveView, Picture, RecordingDisplay, live, run_live
    from .tables import (
        audit_frame,
        data_frame,
        metrics_frame,
        nodes_frame,
        style_nodes,
        style_workflows,
        workflows_frame,
    )
    from .timeline import Timeline
    from .view import DAGView
    from .widgets import RecoveryPanel

# name -> submodule; a submodule (and its third-party imports) loads on first attribute access, so
# `import flow_workbench.notebook` stays as light as `import flow_workbench`. No submodule may be
# named like an export: importing a submodule binds it as the package's attribute, which would
# replace the export (`live` the function was once shadowed by `live` the module).
_EXPORTS: dict[str, str] = {
    "DAGView": "view",
    "GraphSelect": "graph_select",
    "LiveView": "live_view",
    "Picture": "live_view",
    "RecordingDisplay": "live_view",
    "Timeline": "timeline",
    "live": "live_view",
    "run_live": "live_view",
    "RecoveryPanel": "widgets",
    "StoreBrowser": "browser",
    "attempts_frame": "history",
    "runs_frame": "history",
    "workflows_activity_frame": "history",
    "audit_frame": "tables",
    "data_frame": "tables",
    "metrics_frame": "tables",
    "nodes_frame": "tables",
    "style_nodes": "tables",
    "style_workflows": "tables",
    "workflows_frame": "tables",
}

__all__ = [
    "DAGView",
    "GraphSelect",
    "LiveView",
    "Picture",
    "RecordingDisplay",
    "RecoveryPanel",
    "StoreBrowser",
    "Timeline",
    "attempts_frame",
    "audit_frame",
    "data_frame",
    "live",
    "metrics_frame",
    "nodes_frame",
    "run_live",
    "runs_frame",
    "style_nodes",
    "style_workflows",
    "workflows_activity_frame",
    "workflows_frame",
]


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module_name}"), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
