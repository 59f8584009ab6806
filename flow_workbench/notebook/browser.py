"""StoreBrowser: every workflow of a folder or store in a table; one chosen workflow in detail."""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import pandas as pd

from ..dot import shorten
from ..presentation import display_text
from ..stores.base import StateFormat, WorkflowStore
from ._sources import open_file_store
from .history import with_activity
from .tables import (
    FORMAT_LABELS,
    audit_frame,
    data_frame,
    entry_path,
    metrics_frame,
    style_workflows,
    table_html,
    workflow_entries,
    workflows_table,
)
from .widget_display import TABLE_MAX_HEIGHT, picture_fallback, widget_bundle
from .widgets import RecoveryPanel

__all__ = ["StoreBrowser"]

_GO_FLATBUFFERS = FORMAT_LABELS[StateFormat.GO_FLATBUFFERS]
#: Rows of the workflows table drawn as HTML (a folder may hold tens of thousands of files).
MAX_TABLE_ROWS = 500
_TABS = ("nodes", "key-values", "audit log", "recovery", "store metrics")


def _error_html(text: str) -> str:
    return f'<div style="color: #B00020; white-space: pre-wrap">{html.escape(display_text(text))}</div>'


class StoreBrowser:
    """Browse a folder of state files (ours and the Go library's, JSON and FlatBuffers) or a store.

    Shows the workflows table (``workflows_frame``: unreadable files are rows with their error),
    a selector, and for the chosen workflow its DAG picture, nodes table, key-values, audit log and
    a ``RecoveryPanel``, plus the store's operation metrics. A file that cannot be read, or that
    breaks later, shows its error and leaves the rest usable. In a folder, each file is opened
    with the store of its suffix; Go FlatBuffers files keep being written in the Go layout.
    """

    def __init__(self, source: WorkflowStore | str | os.PathLike[str]) -> None:
        self.source = source
        self.folder = Path(source) if isinstance(source, str | os.PathLike) else None
        if self.folder is not None and not self.folder.is_dir():
            raise NotADirectoryError(f"{self.folder} is not a folder of state files")
        self._stores: dict[tuple[str, bool], WorkflowStore] = {}
        self.frame: Any = None
        #: (workflow id, path) of each row of ``frame``, unescaped: the frame shows them escaped.
        self.keys: list[tuple[str, str]] = []
        self.panel: RecoveryPanel | None = None
        #: Row of ``frame`` shown in detail (None: nothing readable chosen).
        self.selected: int | None = None

        self.title = widgets.HTML()
        self.table = widgets.HTML(layout=widgets.Layout(max_height=TABLE_MAX_HEIGHT, overflow="auto"))
        self.refresh_button = widgets.Button(description="rescan", icon="refresh")
        self.refresh_button.on_click(lambda _button: self.refresh())
        self.selector = widgets.Dropdown(description="workflow", layout=widgets.Layout(width="60%"))
        self.selector.observe(self._on_select, names="value")
        self._updating_options = False
        self.message = widgets.HTML()
        # The chosen workflow's RecoveryPanel owns its picture, node table and controls; these
        # boxes hold them, so they stay live when the panel redraws after a change.
        self.picture_box = widgets.Box(layout=widgets.Layout(overflow="auto"))
        self.nodes_box = widgets.Box()
        self.recovery_box = widgets.Box()
        self.data_table = widgets.HTML()
        self.audit_table = widgets.HTML()
        self.metrics_table = widgets.HTML()
        self.tabs = widgets.Tab(
            children=[
                self.nodes_box,
                self.data_table,
                self.audit_table,
                self.recovery_box,
                self.metrics_table,
            ]
        )
        self.tabs.titles = _TABS
        self.widget = widgets.VBox(
            [
                self.title,
                self.table,
                widgets.HBox([self.selector, self.refresh_button]),
                self.message,
                self.picture_box,
                self.tabs,
            ]
        )
        self.refresh()

    # --- public steps --------------------------------------------------------------------------

    @property
    def options(self) -> list[tuple[str, int]]:
        """The selector's entries: (label, row of the workflows table)."""
        return list(self.selector.options)

    def refresh(self) -> None:
        """Rescan the folder or store, keeping the chosen workflow selected when it still exists."""
        previous = self._row_key(self.selected)
        try:
            self._scan()
        except Exception as error:  # the folder vanished, the server is down...
            self.message.value = _error_html(f"cannot list the workflows: {type(error).__name__}: {error}")
            return
        frame = self.frame
        errors = int(frame["error"].notna().sum())
        where = html.escape(display_text(str(self.folder) if self.folder is not None else repr(self.source)))
        self.title.value = f"<b>{len(frame)} workflow file(s)</b> in <code>{where}</code>" + (
            f", <span style='color: #B00020'>{errors} unreadable</span>" if errors else ""
        )
        self.table.value = self._workflows_html()
        keys = self.keys
        chosen = keys.index(previous) if previous in keys else self._first_readable()
        self._set_options(chosen)
        self.show(chosen)

    def select(self, workflow_id: str, path: str | os.PathLike[str] | None = None) -> None:
        """Show a workflow by id (and file, when a folder holds it as both .fb and .json)."""
        matches = [row for row, (known, _) in enumerate(self.keys) if known == workflow_id]
        if path is not None:
            matches = [row for row in matches if Path(self.keys[row][1]) == Path(path)]
        if not matches:
            raise KeyError(f"no workflow {workflow_id!r} in this browser")
        self.selector.value = matches[0]  # the observer shows it

    def show(self, row: int | None) -> None:
        """Show row ``row`` of the workflows table in detail (its error, if it cannot be read)."""
        self.selected = row
        self._clear_detail()
        if row is None:
            return
        frame = self.frame
        error = frame.at[row, "error"]
        if isinstance(error, str) and error:
            self.message.value = _error_html(f"{frame.at[row, 'path']} cannot be read: {error}")
            return
        workflow_id = self.keys[row][0]
        try:
            panel = RecoveryPanel(self._store_for(row), workflow_id)
            if panel.data is None:  # the panel could not load it (e.g. the file broke since the scan)
                raise panel.last_error or RuntimeError("the state could not be loaded")
            self.panel = panel
            panel.on_change(self._changed)
            self._fill_detail()
        except Exception as error:  # shown, and the browser keeps working
            self.message.value = _error_html(f"cannot open {workflow_id!r}: {type(error).__name__}: {error}")
            self.panel = None
        self._show_metrics()

    # --- helpers -------------------------------------------------------------------------------

    def _scan(self) -> None:
        entries = workflow_entries(self.source)
        # Which workflows a process executes now, and which were interrupted (dead runs).
        self.frame = with_activity(workflows_table(entries), self.source, entries)
        self.keys = [(entry.workflow_id, entry_path(entry)) for entry in entries]

    def _on_select(self, change: dict[str, Any]) -> None:
        if not self._updating_options and change["new"] != self.selected:
            self.show(change["new"])

    def _set_options(self, chosen: int | None) -> None:
        """Relabel the selector from ``frame`` without showing anything (options reset the value)."""
        self._updating_options = True
        try:
            self.selector.options = [(self._label(row), row) for row in range(len(self.frame))]
            self.selector.value = chosen
        finally:
            self._updating_options = False

    def _label(self, row: int) -> str:
        frame = self.frame
        workflow_id = str(frame.at[row, "id"])
        path = str(frame.at[row, "path"])
        suffix = Path(path).suffix if path else ""
        error = frame.at[row, "error"]
        if isinstance(error, str) and error:
            return f"{workflow_id}{suffix} \u2014 unreadable: {error[:80]}"
        nodes = frame.at[row, "nodes"]
        failed = frame.at[row, "failed_nodes"]
        label = f"{workflow_id}{suffix} \u2014 {frame.at[row, 'format']}, {nodes} nodes"
        activity = frame.at[row, "activity"]
        if isinstance(activity, str) and activity:
            lease = frame.at[row, "lease"]
            label += f", {activity}" + (f" ({lease})" if isinstance(lease, str) and lease else "")
        return label + (f", failed: {shorten(failed, 80)}" if isinstance(failed, str) and failed else "")

    def _row_key(self, row: int | None) -> tuple[str, str] | None:
        if row is None or row >= len(self.keys):
            return None
        return self.keys[row]

    def _first_readable(self) -> int | None:
        frame = self.frame
        readable = frame.index[frame["error"].isna()].tolist()
        if readable:
            return int(readable[0])
        return 0 if len(frame) else None

    def _workflows_html(self) -> str:
        """The styled workflows table; past ``MAX_TABLE_ROWS`` the ones needing attention come first."""
        frame = self.frame
        if not len(frame):
            return "<i>no workflows</i>"
        if len(frame) <= MAX_TABLE_ROWS:
            return table_html(frame, style=style_workflows)
        attention = frame["error"].notna() | frame["failed_nodes"].fillna("").ne("")
        shown = frame.loc[attention.sort_values(ascending=False, kind="stable").index[:MAX_TABLE_ROWS]]
        note = (
            f"<p><i>showing {MAX_TABLE_ROWS} of {len(frame)} rows, unreadable and failed first; "
            "<code>browser.frame</code> holds them all</i></p>"
        )
        return note + table_html(shown, style=style_workflows)

    def _store_for(self, row: int) -> WorkflowStore:
        if not isinstance(self.source, str | os.PathLike):
            return self.source
        suffix = Path(self.keys[row][1]).suffix
        go_layout = self.frame.at[row, "format"] == _GO_FLATBUFFERS
        key = (suffix, bool(go_layout))
        store = self._stores.get(key)
        if store is None:
            store = self._stores[key] = open_file_store(self.source, suffix, go_layout=key[1])
        return store

    def _fill_detail(self) -> None:
        panel = self.panel
        assert panel is not None
        self.picture_box.children = (panel.picture,)
        self.nodes_box.children = (panel.table,)
        self.recovery_box.children = (panel.controls,)
        self._show_state()

    def _show_state(self) -> None:
        panel = self.panel
        if panel is None or panel.data is None:
            return
        self.data_table.value = table_html(data_frame(panel.data), empty="no key-value data")
        row_format = self.frame.at[self.selected, "format"] if self.selected is not None else None
        no_audit = (
            "the Go library's files keep no audit log (edits made here are not recorded in them)"
            if isinstance(row_format, str) and row_format.startswith("Go")
            else "no manual edits recorded"
        )
        self.audit_table.value = table_html(audit_frame(panel.data), empty=no_audit)

    def _show_metrics(self) -> None:
        if isinstance(self.source, WorkflowStore):
            frames = {type(self.source).__name__: metrics_frame(self.source)}
        else:
            frames = {
                f"{type(store).__name__} ({suffix}{', Go layout' if go else ''})": metrics_frame(store)
                for (suffix, go), store in self._stores.items()
            }
        if not frames:
            self.metrics_table.value = "<i>no store opened yet (the table comes from a folder scan)</i>"
            return
        self.metrics_table.value = table_html(pd.concat(frames, names=["store"]), empty="no metrics")

    def _clear_detail(self) -> None:
        self.message.value = ""
        self.panel = None
        for box in (self.picture_box, self.nodes_box, self.recovery_box):
            box.children = ()
        self.data_table.value = ""
        self.audit_table.value = ""

    def _changed(self) -> None:
        """After the panel changed the state: refresh its tabs and the workflows table row counts."""
        self._show_state()
        self._show_metrics()
        previous = self._row_key(self.selected)
        self._scan()
        self.table.value = self._workflows_html()
        self.selected = self.keys.index(previous) if previous in self.keys else None
        self._set_options(self.selected)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return widget_bundle(self.widget, repr(self), self.static_html(), **kwargs)

    def static_html(self) -> str:
        """The browser as it is now, in HTML that survives sanitising: the workflows table, and
        the chosen workflow's picture and nodes table."""
        parts = [self.title.value, self._scrolling(self.table.value), self.message.value]
        panel = self.panel
        if panel is not None:
            chosen = self.frame.at[self.selected, "id"] if self.selected is not None else panel.workflow_id
            parts.append(f"<p><b>workflow</b> <code>{html.escape(display_text(str(chosen)))}</code></p>")
            parts.append(picture_fallback(panel.picture.value, repr(panel)))
            parts.append(self._scrolling(panel.table.value))
        return "".join(parts)

    @staticmethod
    def _scrolling(table: str) -> str:
        return f'<div style="max-height: {TABLE_MAX_HEIGHT}; overflow: auto">{table}</div>'

    def __repr__(self) -> str:
        count = 0 if self.frame is None else len(self.frame)
        where = repr(str(self.folder)) if self.folder is not None else repr(self.source)
        return f"<StoreBrowser {where}: {count} workflow file(s)>"
