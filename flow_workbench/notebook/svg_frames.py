"""SvgTemplate: a parsed layout drawn for whole states at once (frames) or node by node (Canvas)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import repeat
from operator import itemgetter, mul, sub
from typing import Any, NamedTuple

from ..columns_view import ColumnsView
from ..data import NodeHistory
from ..dot import GraphNode, Timing, timing_of
from ..presentation import display_text
from ..status import NodeStatus
from .svg_parse import STATUS_FRAGMENTS, Slot, ascii_xml, fill_slots, parse_svg, xml_attribute
from .tooltips import NO_WAIT, details_by_timing, details_of_keys, details_xml, wait_of

__all__ = ["Canvas", "NodeStates", "SvgTemplate"]


class NodeStates(NamedTuple):
    """What a picture shows of every node, in the template's drawing order (``SvgTemplate.order``)."""

    statuses: list[NodeStatus | None]
    #: Escaped tooltip text after each node's name (``details_xml``).
    details: list[str]


class SvgTemplate:
    """The parsed SVG of one layout: static text with slots for every node's status-dependent parts.

    Immutable and shared between views (and threads). Two ways to draw a state on it: a ``Canvas``
    restyles one node at a time; ``render`` draws a whole state at once from its columns, with
    no per-node work in Python beyond the tooltips that changed (what a live view does per frame).
    """

    def __init__(self, svg: str, nodes: Sequence[GraphNode]) -> None:
        self.nodes = tuple(nodes)
        parts, slots, group_starts = parse_svg(svg, len(self.nodes))
        parts = [ascii_xml(part) for part in parts]
        self.slots: tuple[tuple[tuple[int, Slot], ...], ...] = tuple(tuple(s) for s in slots)
        # Fill every slot for the neutral (pending) state, with tooltips escaped by us: graphviz
        # versions disagree on backslashes in tooltips (2.43 expands "\\N" to the node id).
        # The same slots split for the hot path: (position, fragment index) pairs, and the tooltip.
        self.style_slots = tuple(
            tuple((position, int(slot)) for position, slot in node_slots if slot is not Slot.TOOLTIP)
            for node_slots in self.slots
        )
        self.tooltip_positions = tuple(
            next((position for position, slot in node_slots if slot is Slot.TOOLTIP), -1)
            for node_slots in self.slots
        )
        self.name_prefixes = tuple(
            ascii_xml(xml_attribute(display_text(node.name))) + "&#10;" for node in self.nodes
        )
        neutral = STATUS_FRAGMENTS[None]
        neutral_details = details_xml(None, None)
        for node in self.nodes:
            prefix = self.name_prefixes[node.position]
            fill_slots(parts, self.slots[node.position], neutral, prefix + neutral_details)
        self.parts: tuple[str, ...] = tuple(parts)
        self._neutral_svg: str | None = None
        self._init_columns(group_starts)

    # --- whole-state rendering -----------------------------------------------------------------
    #
    # The picture is cut into columns: a prefix, then six pieces per node in drawing order --
    # head (status-dependent: group start, class, title, tooltip opening, name), details (the
    # tooltip text after the name), middle (status-dependent), a static piece (the shape's
    # geometry, the bulk of the picture), tail (status-dependent: text colour, glyph) and a static
    # rest (label text, closing tags, the edges drawn after the node). Status-dependent pieces
    # are built once per status and layout, so a frame is a few C-level list operations and one
    # join of an all-ASCII string.

    _PIECES = 6

    def _init_columns(self, group_starts: list[tuple[int, int]]) -> None:
        parts = self.parts
        #: Node positions in drawing order, and their names (what a state's columns are read by).
        self.order: tuple[int, ...] = tuple(index for index, _ in group_starts)
        self.order_names: tuple[str, ...] = tuple(self.nodes[index].name for index in self.order)
        #: A column's values of every node in drawing order, in one C call (KeyError if one lacks it).
        self._get_all: Callable[[Mapping[str, Any]], Any] = _all_of(self.order_names)
        # Per node: (slice before the tooltip, slice middle, static geometry, slice tail, static rest)
        # as part index ranges; "dynamic" ranges are joined per status with their slots filled.
        self._ranges: list[tuple[tuple[int, int], tuple[int, int], int, tuple[int, int], int, int]] = []
        self._without_tooltip: list[int] = []  # drawing positions whose node has no tooltip slot
        frame = [parts[0] if not group_starts else "".join(parts[: group_starts[0][1]])]
        ends = [start for _, start in group_starts[1:]] + ([len(parts)] if group_starts else [])
        for drawing_position, ((index, start), end) in enumerate(zip(group_starts, ends, strict=True)):
            slot_positions = {position for position, _ in self.slots[index]}
            tooltip = self.tooltip_positions[index]
            if tooltip < 0:
                self._without_tooltip.append(drawing_position)
                tooltip = start - 1
            last_dynamic = max(slot_positions - {self.tooltip_positions[index]}, default=tooltip)
            last_dynamic = max(last_dynamic, tooltip)
            statics = [i for i in range(tooltip + 1, last_dynamic) if i not in slot_positions]
            geometry = max(statics, key=lambda i: len(parts[i]), default=-1)
            if geometry < 0:  # nothing static between the tooltip and the last slot
                middle, tail = (tooltip + 1, last_dynamic + 1), (last_dynamic + 1, last_dynamic + 1)
            else:
                middle, tail = (tooltip + 1, geometry), (geometry + 1, last_dynamic + 1)
            self._ranges.append(((start, tooltip), middle, geometry, tail, last_dynamic + 1, end))
            frame.extend(
                (
                    "",  # head
                    "",  # details
                    "",  # middle
                    parts[geometry] if geometry >= 0 else "",
                    "",  # tail
                    "".join(parts[last_dynamic + 1 : end]),
                )
            )
        #: The frame with its static pieces in place; ``render`` copies it and fills the rest.
        self._frame: tuple[str, ...] = tuple(frame)
        #: status -> (heads, middles, tails), each a list in drawing order; built on first use.
        self._pieces: dict[NodeStatus | None, tuple[list[str], list[str], list[str]]] = {}

    def _status_pieces(self, status: NodeStatus | None) -> tuple[list[str], list[str], list[str]]:
        pieces = self._pieces.get(status)
        if pieces is None:
            # Two threads may build the same entry; both results are equal, either one is kept.
            drawn = NodeStatus.PENDING if status is None else status
            pieces = self._pieces.get(drawn) or self._build_status_pieces(drawn)
            self._pieces[drawn] = self._pieces[status] = pieces
        return pieces

    def _build_status_pieces(self, status: NodeStatus) -> tuple[list[str], list[str], list[str]]:
        parts = list(self.parts)
        fragments = STATUS_FRAGMENTS[status]
        heads, middles, tails = [], [], []
        for index, ((start, tooltip), middle, _, tail, _, _) in zip(self.order, self._ranges, strict=True):
            for position, kind in self.style_slots[index]:
                parts[position] = fragments[kind]
            head = "".join(parts[start:tooltip])
            heads.append(head + self.name_prefixes[index] if self.tooltip_positions[index] >= 0 else head)
            middles.append("".join(parts[middle[0] : middle[1]]))
            tails.append("".join(parts[tail[0] : tail[1]]))
        return heads, middles, tails

    def node_states(self, columns: ColumnsView) -> NodeStates:
        """Statuses and tooltip texts of every node from a state's columns (hold its lock)."""
        names = self.order_names
        # C-level reads, and no tuple per node: a frame is drawn on the run's thread at its end,
        # and a thousand short-lived tuples there cost a garbage collection or two.
        get_all = self._get_all
        statuses, _ = _column(columns.statuses, names, get_all)
        started, every_start = _column(columns.started_at, names, get_all)
        finished, every_finish = _column(columns.finished_at, names, get_all)
        timings = _timings(started, finished, every_start and every_finish)
        attempts, _ = _column(columns.attempts, names, get_all, 0)
        count = len(names)
        unknown = NodeStatus.UNKNOWN in statuses
        if (
            count
            and not columns.errors
            and not columns.waits
            and not unknown
            and statuses.count(statuses[0]) == count
            and attempts.count(attempts[0]) == count
        ):
            # The usual end of a successful run: only the durations differ, so look the texts up
            # by duration alone (an int) rather than by a five-field key per node.
            return NodeStates(statuses, details_by_timing(statuses[0], attempts[0], timings))
        if columns.errors:
            errors: Iterable[str | None] = map(columns.errors.get, names)
            error_types: Iterable[str | None] = map(columns.error_types.get, names)
        else:
            errors = error_types = repeat(None)
        status_texts: Iterable[str | None] = repeat(None)
        if unknown:  # the stored text of each UNKNOWN status (Go JSON files keep it)
            raw = columns.raw_statuses
            status_texts = [
                raw.get(name, "unknown") if status is NodeStatus.UNKNOWN else None
                for name, status in zip(names, statuses, strict=True)
            ]
        waits: Iterable[str | None] = repeat(None)
        if columns.waits:
            waits = [wait_of(columns.waits.get(name, NO_WAIT)) for name in names]
        # Not strict: the error columns may be endless repeat(None).
        keys = list(zip(statuses, attempts, timings, error_types, errors, status_texts, waits, strict=False))
        return NodeStates(statuses, details_of_keys(keys))

    def render(self, columns: ColumnsView | None) -> str:
        """The picture of a state (None: every node pending); equal to restyling every node of a
        ``Canvas`` with its status and history. Hold the state's lock while calling it."""
        if columns is None:
            return self.neutral_svg
        return self.compose(self.node_states(columns))

    def compose(self, states: NodeStates) -> str:
        """The picture of ``states`` (from ``node_states``); needs no lock."""
        statuses, details = states
        count = len(statuses)
        if count == 0:
            return "".join(self._frame)
        frame = list(self._frame)
        first = statuses[0]
        if statuses.count(first) == count:  # one status for all, e.g. the end of a successful run
            heads, middles, tails = self._status_pieces(first)
        else:
            by_status = {status: self._status_pieces(status) for status in set(statuses)}
            rows = list(map(by_status.__getitem__, statuses))
            drawing_positions = range(count)
            pick = list.__getitem__
            heads = list(map(pick, map(_HEADS, rows), drawing_positions))
            middles = list(map(pick, map(_MIDDLES, rows), drawing_positions))
            tails = list(map(pick, map(_TAILS, rows), drawing_positions))
        pieces = self._PIECES
        frame[1::pieces] = heads
        frame[2::pieces] = details
        frame[3::pieces] = middles
        frame[5::pieces] = tails
        for drawing_position in self._without_tooltip:
            frame[2 + pieces * drawing_position] = ""
        return "".join(frame)

    def canvas(self) -> Canvas:
        return Canvas(self)

    @property
    def neutral_svg(self) -> str:
        """The picture with every node pending; computed once, as every fresh run starts with it."""
        if self._neutral_svg is None:
            self._neutral_svg = "".join(self.parts)
        return self._neutral_svg


_HEADS, _MIDDLES, _TAILS = itemgetter(0), itemgetter(1), itemgetter(2)


def _all_of(names: tuple[str, ...]) -> Callable[[Mapping[str, Any]], Any]:
    """A function giving ``[column[name] for name in names]`` (as a list, a tuple or a value)."""
    if len(names) == 1:  # itemgetter of one name gives the value itself, not a tuple
        only = names[0]
        return lambda column: [column[only]]
    if not names:
        return lambda column: []
    return itemgetter(*names)


def _column(
    column: Mapping[str, Any],
    names: tuple[str, ...],
    get_all: Callable[[Mapping[str, Any]], Any],
    default: Any = None,
) -> tuple[list[Any], bool]:
    """(the column's value of each name, ``default`` where it has none; whether every name has one)."""
    try:
        return list(get_all(column)), True  # the usual end of a run: every node has a value
    except KeyError:
        return list(map(column.get, names, repeat(default))), False


def _timings(started: list[float | None], finished: list[float | None], complete: bool) -> list[Timing]:
    """``timing_of`` of each node's timestamps; ``complete``: every node has both."""
    try:
        if complete:  # the end of a run, in C: the duration in whole milliseconds, as timing_of has it
            return list(map(round, map(mul, map(sub, finished, started), repeat(1000))))
        return [
            timing_of(start, finish) if start is None or finish is None else round((finish - start) * 1000)
            for start, finish in zip(started, finished, strict=True)
        ]
    except (TypeError, ValueError, OverflowError):  # a damaged file's times: timing_of copes
        return list(map(timing_of, started, finished))


class Canvas:
    """One view's copy of a template: ``set_node`` restyles a node, ``svg`` joins the parts."""

    def __init__(self, template: SvgTemplate) -> None:
        self.template = template
        self._parts = list(template.parts)
        self._pristine = True  # nothing restyled yet: the template's neutral SVG is this picture
        #: What each node is drawn as now (None: not in the state, drawn pending).
        self.statuses: list[NodeStatus | None] = [None] * len(template.nodes)

    def set_node(
        self,
        index: int,
        status: NodeStatus | None,
        history: NodeHistory | None,
        status_text: str | None = None,
        wait: str | None = None,
    ) -> None:
        """Restyle node ``index`` for ``status`` and refresh its tooltip from ``history`` (plus an
        UNKNOWN status's stored text and a Go timer's ``wait_text``, as ``GraphNode`` has them)."""
        self.restyle(index, status, details_xml(status, history, status_text, wait))

    def restyle(self, index: int, status: NodeStatus | None, details: str) -> None:
        """Restyle node ``index``; ``details`` is the escaped tooltip text after the name."""
        self._pristine = False
        self.statuses[index] = status
        parts, template, fragments = self._parts, self.template, STATUS_FRAGMENTS[status]
        for position, kind in template.style_slots[index]:
            parts[position] = fragments[kind]
        tooltip = template.tooltip_positions[index]
        if tooltip >= 0:
            parts[tooltip] = template.name_prefixes[index] + details

    def svg(self) -> str:
        return self.template.neutral_svg if self._pristine else "".join(self._parts)
