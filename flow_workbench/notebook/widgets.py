"""RecoveryPanel: preview, confirm and apply recovery actions on a stored workflow, then run it again."""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ..dag import DAG
from ..data import WorkflowData
from ..dot import shorten, status_label, status_style
from ..errors import GraphvizError, WorkflowExecutionError, WorkflowNotFoundError
from ..presentation import display_text
from ..recovery import mark_nodes, reset_failed, reset_nodes
from ..status import NodeStatus
from ..stores.base import WorkflowStore
from .details import node_details_html
from .graph_select import GraphSelect, node_names
from .live_view import LiveView
from .run_follower import RunFollower
from .tables import node_row_names, nodes_frame, style_nodes, table_html
from .view import DAGView
from .widget_display import TABLE_MAX_HEIGHT, WidgetDisplay, picture_fallback, widget_bundle

if TYPE_CHECKING:
    from ..engine import Rerun, RunResult, Workflow

__all__ = [
    "TABLE_MAX_HEIGHT",
    "Action",
    "PendingChange",
    "RecoveryPanel",
    "picture_fallback",
    "widget_bundle",
]

#: Rows of the node table drawn as HTML (the node list and the picture still show every node).
MAX_TABLE_ROWS = 500
#: Longest node name in the node list (long names pushed every button off-screen).
MAX_LISTED_CHARS = 40


class Action(StrEnum):
    """The recovery actions of the panel, named after the ``flow_workbench.recovery`` calls."""

    RESET = "reset"
    RESET_DOWNSTREAM = "reset_downstream"
    RESET_FAILED = "reset_failed"
    MARK_COMPLETED = "mark_completed"
    MARK_SKIPPED = "mark_skipped"

    @property
    def label(self) -> str:
        return _LABELS[self]

    @property
    def needs_selection(self) -> bool:
        """Whether the action works on the selected nodes (reset all failed finds its own)."""
        return self is not Action.RESET_FAILED


_LABELS = {
    Action.RESET: "reset",
    Action.RESET_DOWNSTREAM: "reset with downstream",
    Action.RESET_FAILED: "reset all failed",
    Action.MARK_COMPLETED: "mark completed",
    Action.MARK_SKIPPED: "mark skipped",
}
_TOOLTIPS = {
    Action.RESET_FAILED: "preview: reset every failed node and the nodes skipped because of it "
    "(ignores the selection)",
}
_VERBS = {
    Action.RESET: "reset to pending",
    Action.RESET_DOWNSTREAM: "reset to pending",
    Action.RESET_FAILED: "reset to pending",
    Action.MARK_COMPLETED: "marked completed",
    Action.MARK_SKIPPED: "marked skipped",
}


@dataclass(frozen=True)
class PendingChange:
    """A previewed action waiting for its confirm click: what was asked and what it would change."""

    action: Action
    nodes: tuple[str, ...]
    affected: tuple[str, ...]
    #: The stored version the preview saw; confirm refuses if the state has been saved since.
    version: int


#: Per message kind: a mark and the theme colour of the bar beside it. The text itself is in the
#: theme's main font colour (JupyterLab's variables, light and dark), which reads at >= 4.5:1;
#: the kind shows in the bar and the mark, not in text colour.
_KINDS = {
    "error": ("\u2717 ", "var(--jp-error-color1, #B00020)"),
    "preview": ("\u2026 ", "var(--jp-warn-color1, #8A5A00)"),
    "done": ("\u2713 ", "var(--jp-success-color1, #006B4F)"),
    "info": ("", "var(--jp-border-color1, #999999)"),
}


def _message(kind: str, text: str) -> str:
    mark, colour = _KINDS[kind]
    return (
        f'<div class="fw-message-{kind}" style="color: var(--jp-ui-font-color1, #1f1f1f); '
        f'white-space: pre-wrap; border-left: 4px solid {colour}; padding-left: 6px">{mark}{text}</div>'
    )


def _error_text(error: BaseException) -> str:
    """An error as the panel shows it: its type and message, shown by ``display_text``, escaped."""
    return html.escape(display_text(f"{type(error).__name__}: {error}"))


def _names(nodes: Sequence[str]) -> str:
    return ", ".join(f"<code>{html.escape(display_text(node))}</code>" for node in nodes)


class RecoveryPanel:
    """A widget to fix a stored workflow: pick nodes, preview an action, confirm it, run again.

    Every action first shows a dry run (the nodes it would change, from the recovery API itself)
    and changes nothing until ``confirm``; a state saved in between voids the preview. Errors
    (unknown nodes, version conflicts, a Go file without DAG structure) are shown in the panel,
    never raised. ``run`` needs a ``Workflow`` or the ``DAG`` to build one and shows the run live.

    Nodes are chosen in the list (``node_select``) or by clicking them in the picture
    (``picture``, a ``GraphSelect``: a click toggles a node); both show one selection, which
    ``selected`` reads and ``select(nodes)`` sets. Without a widget front end the picture is still
    the panel's SVG and the list still selects.

    Clicking a node (or choosing it in the list) also shows its details below the buttons
    (``details``: status, attempts, times, the full error to copy, output, neighbours, audit
    entries); ``show_details(node)`` does it from code. ``focus`` (with ``upstream``,
    ``downstream`` and ``depth``, as for ``DAGView``) draws only the part of a large DAG around
    one node; ``set_focus(...)`` changes it (a run draws the whole DAG while it goes).

    The buttons call the plain methods ``preview(action)``, ``confirm()``, ``cancel()``,
    ``run()`` and ``refresh()``, which scripts and tests may call directly. Display the panel
    itself (or ``panel.widget``) in a notebook.
    """

    def __init__(
        self,
        store: WorkflowStore,
        workflow_id: str,
        dag: DAG | None = None,
        workflow: Workflow | None = None,
        *,
        focus: str | None = None,
        upstream: bool = True,
        downstream: bool = True,
        depth: int | None = None,
    ) -> None:
        if workflow is not None and workflow.workflow_id != workflow_id:
            raise ValueError(
                f"the workflow runs {workflow.workflow_id!r} but the panel shows {workflow_id!r}"
            )
        self.store = store
        self.workflow_id = workflow_id
        self.dag = dag if dag is not None else (workflow.dag if workflow is not None else None)
        self._workflow = workflow
        self.data: WorkflowData | None = None
        self.pending: PendingChange | None = None
        #: The last error shown in the panel (None after a successful step).
        self.last_error: BaseException | None = None
        self.last_result: RunResult | None = None
        self._listeners: list[Callable[[], None]] = []
        self.focus: dict[str, Any] = {}
        if focus is not None:
            self.focus = {"focus": focus, "upstream": upstream, "downstream": downstream, "depth": depth}
        self._redrawing = False  # _draw replaces the list's options: no selection echo meanwhile
        #: A run started by ``run`` is in progress (the buttons are disabled meanwhile).
        self.running = False

        # The picture and the list are two views of one selection: clicking a node in the picture
        # toggles it in the list, and choosing in the list highlights the nodes in the picture.
        self.picture = GraphSelect(layout=widgets.Layout(overflow="auto"))
        self.picture.add_class("fw-picture")
        self.picture.observe(self._picture_selection_changed, names="selected")
        self.picture.observe(lambda change: self.show_details(change["new"]), names="active")
        self.details = widgets.HTML()
        self.details.add_class("fw-details")
        # Long names are shortened in the list (they pushed every button off-screen); the
        # picture's tooltip and the detail pane keep them whole.
        self.node_select = widgets.SelectMultiple(
            options=[], description="nodes", rows=8, layout=widgets.Layout(width="auto", max_width="45%")
        )
        self.node_select.observe(self._list_selection_changed, names="value")
        self.action_buttons: dict[Action, Any] = {}
        for action in Action:
            button = widgets.Button(
                description=action.label,
                tooltip=_TOOLTIPS.get(action, f"preview: {action.label} (the selected nodes)"),
                layout=widgets.Layout(width="auto"),  # the default width cut "reset with downstream"
            )
            button.on_click(lambda _button, chosen=action: self.preview(chosen))
            button.add_class(f"fw-action-{action.value}")
            self.action_buttons[action] = button
        self.confirm_button = widgets.Button(
            description="confirm", button_style="danger", icon="check", disabled=True
        )
        self.confirm_button.on_click(lambda _button: self.confirm())
        self.confirm_button.add_class("fw-confirm")
        self.cancel_button = widgets.Button(description="cancel", disabled=True)
        self.cancel_button.on_click(lambda _button: self.cancel())
        self.cancel_button.add_class("fw-cancel")
        self.run_button = widgets.Button(
            description="run again",
            button_style="primary",
            icon="play",
            tooltip="execute the workflow: every node not completed, failed or skipped runs",
            layout=widgets.Layout(display=None if self.workflow is not None else "none"),
        )
        self.run_button.on_click(lambda _button: self.run())
        self.run_button.add_class("fw-run")
        self.rerun_stale_button = widgets.Button(
            description="re-run stale",
            icon="refresh",
            tooltip="execute; nodes whose code changed (\u21bb) and their downstream run again",
            layout=self.run_button.layout,
        )
        self.rerun_stale_button.on_click(lambda _button: self.run(rerun="stale"))
        self.rerun_stale_button.add_class("fw-rerun-stale")
        self.message = widgets.HTML()
        self.message.add_class("fw-message")
        self.table = widgets.HTML(layout=widgets.Layout(max_height=TABLE_MAX_HEIGHT, overflow="auto"))
        self.table.add_class("fw-nodes-table")
        self.controls = widgets.VBox(
            [
                widgets.HBox(
                    [
                        self.node_select,
                        widgets.VBox(
                            [
                                widgets.HBox(list(self.action_buttons.values())[:2]),
                                widgets.HBox(list(self.action_buttons.values())[2:]),
                                widgets.HBox(
                                    [
                                        self.confirm_button,
                                        self.cancel_button,
                                        self.run_button,
                                        self.rerun_stale_button,
                                    ]
                                ),
                            ]
                        ),
                    ]
                ),
                self.message,
            ]
        )
        self.widget = widgets.VBox([self.picture, self.controls, self.details, self.table])
        self.widget.add_class("fw-recovery-panel")  # stable hooks for styling and browser tests
        self.refresh()

    # --- the panel's steps ---------------------------------------------------------------------

    @property
    def workflow(self) -> Workflow | None:
        """The workflow ``run`` executes: the one given, else one built from the DAG (or None)."""
        if self._workflow is None and self.dag is not None:
            from ..engine import Workflow

            self._workflow = Workflow(self.dag, self.workflow_id, self.store)
        return self._workflow

    @property
    def selected(self) -> tuple[str, ...]:
        """The selected nodes, as chosen in the list or by clicking them in the picture."""
        return tuple(self.node_select.value)

    def show_details(self, node: str | None) -> None:
        """Show one node's details below the buttons (None or "": none)."""
        if not node:
            self.details.value = ""
            return
        if self.picture.active != node:
            self.picture.active = node  # the picture marks it; this handler runs again
            return
        try:
            self.details.value = node_details_html(self.data, node, self.dag)
        except Exception as error:  # a damaged state: say so in the pane
            self.details.value = _message("error", _error_text(error))

    def set_focus(
        self,
        focus: str | None,
        *,
        upstream: bool = True,
        downstream: bool = True,
        depth: int | None = None,
    ) -> None:
        """Draw only the part around ``focus`` (None: the whole DAG) and redraw."""
        self.focus = (
            {}
            if focus is None
            else {"focus": focus, "upstream": upstream, "downstream": downstream, "depth": depth}
        )
        self.refresh(keep_message=True)

    def select(self, nodes: Sequence[str]) -> None:
        """Select nodes in the list and the picture (names the list does not offer are ignored)."""
        offered = {value for _, value in self.node_select.options}
        self.node_select.value = tuple(node for node in nodes if node in offered)

    def preview(self, action: Action | str, nodes: Sequence[str] | None = None) -> list[str] | None:
        """Dry-run ``action`` on ``nodes`` (default: the selection) and wait for ``confirm``.

        Returns the nodes the action would change, or None when it cannot run (shown why).
        """
        self._clear_pending()
        try:
            chosen = Action(action)
            targets = tuple(self.selected if nodes is None else nodes)
            if chosen.needs_selection and not targets:
                self._show("info", f"Select one or more nodes first, then click “{chosen.label}”.")
                return None
            version = self.store.load(self.workflow_id).version
            affected = self._apply(chosen, targets, dry_run=True)
        except Exception as error:
            self._show_error(error)
            return None
        if not affected:
            self._show("info", f"“{chosen.label}” would change nothing: no node needs it.")
            return affected
        self.pending = PendingChange(chosen, targets, tuple(affected), version)
        self.picture.highlighted = list(affected)  # the picture shows what would change
        self.confirm_button.disabled = False
        self.cancel_button.disabled = False
        ignored = " (every failed node; the selection is ignored)" if not chosen.needs_selection else ""
        self._show(
            "preview",
            f"Preview of “{chosen.label}”{ignored}: {len(affected)} node(s) would be {_VERBS[chosen]}: "
            f"{_names(affected)}.\nNothing has changed yet: click confirm to apply, cancel to drop it.",
        )
        return affected

    def confirm(self) -> list[str] | None:
        """Apply the previewed action; returns the nodes changed, or None if nothing was applied."""
        pending = self.pending
        if pending is None:
            self._show("info", "Nothing to confirm: preview an action first.")
            return None
        self._clear_pending()
        try:
            # The recovery call checks versions between its own load and save; this check covers
            # the time the preview sat on screen (Go files have no version: compare the dry run).
            current = self.store.load(self.workflow_id).version
            again = self._apply(pending.action, pending.nodes, dry_run=True)
            if current != pending.version or tuple(again) != pending.affected:
                self._show(
                    "error",
                    "The stored state changed since the preview (saved by a run or another user), so "
                    f"nothing was applied. It now would change: {_names(again) or 'nothing'}. "
                    "Preview again to continue.",
                )
                return None
            changed = self._apply(pending.action, pending.nodes, dry_run=False)
        except Exception as error:
            self._show_error(error)
            self.refresh(keep_message=True)
            return None
        self.refresh()
        self._show("done", f"Done: {len(changed)} node(s) {_VERBS[pending.action]}: {_names(changed)}.")
        self._notify()
        return changed

    def cancel(self) -> None:
        """Drop the previewed action without changing anything."""
        if self.pending is not None:
            self._show("info", f"Cancelled “{self.pending.action.label}”: nothing changed.")
        self._clear_pending()

    def run(self, rerun: Rerun | None = None) -> RunResult | None:
        """Execute the workflow with the live picture; failures are reported in the panel.
        ``rerun`` is ``Workflow.execute``'s ("stale": the "re-run stale" button)."""
        workflow = self.workflow
        if workflow is None:
            self._show("error", "Cannot run: the panel was given neither a Workflow nor a DAG.")
            return None
        self._clear_pending()
        self._show("info", f"Running {html.escape(display_text(self.workflow_id))}…")
        result: RunResult | None = None
        self._set_running(True)
        try:
            # the picture keeps its title while it runs: no jump when the run starts and ends
            view = LiveView(
                workflow, display=WidgetDisplay(self.picture), progress=False, title_in_picture=True
            )
            follower = self._follow_run(workflow)
            try:
                with view:
                    result = workflow.execute(rerun=rerun, on_event=follower)
            finally:
                follower.stop()  # the final refresh below draws the end state
        except WorkflowExecutionError as error:
            self.last_error = error
            self.refresh(keep_message=True)
            self._show(
                "error",
                f"The run ended with failed node(s): {_names(error.failed_nodes)}.\n"
                f"{html.escape(display_text(str(error)))}",
            )
            self._notify()
            return None
        except Exception as error:
            self._show_error(error)
            self.refresh(keep_message=True)
            return None
        finally:
            self._set_running(False)
        self.last_result = result
        self.refresh()
        counts = ", ".join(f"{status} {count}" for status, count in sorted(result.status_counts.items()))
        self._show("done", f"Run finished in {result.duration:.2f} s: {counts}.")
        self._notify()
        return result

    def refresh(self, *, keep_message: bool = False) -> None:
        """Reload the stored state and redraw the picture, node list and node table."""
        try:
            self.data = self.store.load(self.workflow_id)
        except WorkflowNotFoundError as error:
            self.data = None
            if self.dag is None:
                self._show_error(error)
                with self.picture.hold_sync():
                    self.picture.node_names = {}
                    self.picture.value = ""
                self.table.value = ""
                self.node_select.options = []
                return
        except Exception as error:
            self._show_error(error)
            return
        try:
            self._draw()
        except Exception as error:  # e.g. a state whose values cannot be tabulated: say so, keep going
            self._show_error(error)
            return
        self.show_details(self.picture.active)  # the shown node's details follow the stored state
        if not keep_message:
            self.message.value = ""
            self.last_error = None

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after every change the panel makes to the stored state."""
        self._listeners.append(callback)

    # --- helpers -------------------------------------------------------------------------------

    def _apply(self, action: Action, nodes: Sequence[str], *, dry_run: bool) -> list[str]:
        store, workflow_id, dag = self.store, self.workflow_id, self.dag
        if action is Action.RESET_FAILED:
            return reset_failed(store, workflow_id, dry_run=dry_run, dag=dag)
        if action in (Action.RESET, Action.RESET_DOWNSTREAM):
            downstream = action is Action.RESET_DOWNSTREAM
            return reset_nodes(store, workflow_id, nodes, downstream=downstream, dry_run=dry_run, dag=dag)
        status = NodeStatus.COMPLETED if action is Action.MARK_COMPLETED else NodeStatus.SKIPPED
        return mark_nodes(store, workflow_id, nodes, status, dry_run=dry_run, dag=dag)

    def _draw(self) -> None:
        state = self.data if self.data is not None else WorkflowData(self.workflow_id)
        try:
            # The legend of the live frames, so the picture keeps its size when a run starts or ends.
            view = DAGView(self._view_source(self.data), stable_legend=True, **self.focus)
            picture, element_names = view.svg(), node_names(view.nodes)
        except GraphvizError as error:
            picture = _message("error", f"Cannot draw the DAG: {html.escape(display_text(str(error)))}")
            element_names = {}
        self._redrawing = True
        try:
            with self.picture.hold_sync():  # one message: the names always match the picture
                self.picture.node_names = element_names
                self.picture.value = picture
        finally:
            self._redrawing = False
        self._draw_list_and_table(state)

    def _draw_list_and_table(self, state: WorkflowData) -> None:
        """The node list and the node table of ``state`` (also redrawn while a run goes)."""
        frame = nodes_frame(state, dag=self.dag)
        # The table shows names escaped (display_text); the list offers the real ones, which the
        # actions need (a Go name holding a byte that is not UTF-8 is a lone surrogate).
        names = node_row_names(state, self.dag)
        statuses = frame["status"].astype(str).tolist()
        previous = self.selected
        self._redrawing = True
        try:
            self.node_select.options = [
                (
                    f"{status_style(NodeStatus(status)).glyph} "
                    f"{shorten(display_text(name), MAX_LISTED_CHARS)} "
                    f"({status_label(NodeStatus(status), state.status_text(name))})",
                    name,
                )
                for name, status in zip(names, statuses, strict=True)
            ]
            offered = set(names)
            self.node_select.value = tuple(name for name in previous if name in offered)
        finally:
            self._redrawing = False
        self.picture.selected = list(self.node_select.value)
        self.node_select.rows = max(2, min(12, len(frame)))
        if len(frame) > MAX_TABLE_ROWS:  # a huge DAG: the nodes needing attention first
            order = frame["status"].cat.codes.sort_values(ascending=False, kind="stable").index
            note = f"<p><i>showing {MAX_TABLE_ROWS} of {len(frame)} nodes, by status</i></p>"
            self.table.value = note + table_html(frame.loc[order[:MAX_TABLE_ROWS]], style=style_nodes)
        else:
            self.table.value = table_html(frame, empty="no nodes", style=style_nodes)

    def _follow_run(self, workflow: Workflow) -> RunFollower:
        """An observer that redraws the node list and table from the running state, at most every
        ``LIST_REFRESH_SECONDS`` and once more after the last change (the live view recolours
        the picture itself)."""
        return RunFollower(workflow, self._draw_list_and_table)

    def _view_source(self, data: WorkflowData | None) -> Workflow | WorkflowData | DAG:
        # A DAG carries the structure a Go file lacks: draw it through a fresh Workflow, which
        # reads the stored state (a live Workflow object would show its last run instead).
        if self.dag is not None:
            from ..engine import Workflow

            return Workflow(self.dag, self.workflow_id, self.store)
        assert data is not None  # refresh() returns early without a state and without a DAG
        return data

    def _picture_selection_changed(self, change: dict[str, Any]) -> None:
        if not self._redrawing:
            self.select(change["new"])

    def _list_selection_changed(self, change: dict[str, Any]) -> None:
        if not self._redrawing:
            self.picture.selected = list(change["new"])
            added = [node for node in change["new"] if node not in change["old"]]
            if added:
                self.show_details(added[-1])

    def _set_running(self, running: bool) -> None:
        """While a run goes every action, the list and run again are disabled: a change to the
        state the engine is writing would be lost or conflict, and a click would queue behind it."""
        self.running = running
        for button in (*self.action_buttons.values(), self.run_button, self.rerun_stale_button):
            button.disabled = running
        self.node_select.disabled = running

    def _clear_pending(self) -> None:
        self.pending = None
        self.picture.highlighted = []
        self.confirm_button.disabled = True
        self.cancel_button.disabled = True

    def _show(self, kind: str, text: str) -> None:
        self.message.value = _message(kind, text)

    def _show_error(self, error: BaseException) -> None:
        self.last_error = error
        self._show("error", _error_text(error))

    def _notify(self) -> None:
        for callback in self._listeners:
            try:
                callback()
            except Exception as error:  # a listener must not break the panel
                self._show_error(error)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return widget_bundle(self.widget, repr(self), self.static_html(), **kwargs)

    def static_html(self) -> str:
        """The panel as it is now, in HTML that survives sanitising: message, picture, node table."""
        title = f"<p><b>RecoveryPanel</b> <code>{html.escape(display_text(self.workflow_id))}</code></p>"
        parts = [
            title,
            self.message.value,
            picture_fallback(self.picture.value, repr(self)),
            self.details.value,
        ]
        return "".join(parts) + str(self.table.value)

    def __repr__(self) -> str:
        return f"<RecoveryPanel {self.workflow_id!r}: {self.data!r}>"
