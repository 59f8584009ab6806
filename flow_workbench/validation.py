"""One check of the values a decoded state may hold, shared by every decoder and by every encoder."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from .errors import CorruptStateError, SerializationError
from .status import STATUS_BY_VALUE, NodeStatus

if TYPE_CHECKING:  # data.py imports this module; the names below are only annotations
    from .data import AuditEntry, NodeRecord, RunRecord, StateColumns

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "MAX_TRIGGER_CAUSE",
    "TIME_MAX",
    "TIME_MIN",
    "InvalidValue",
    "check_attempt_log",
    "check_audit_entry",
    "check_columns",
    "check_record",
    "check_run",
    "checked_columns",
    "representable_time",
    "require_count",
    "require_str",
    "require_str_list",
    "require_time",
    "savable_columns",
]

INT64_MIN: Final = -(1 << 63)
INT64_MAX: Final = (1 << 63) - 1
#: The times every display can show: a pandas ``Timestamp`` (nanoseconds in an int64, so years
#: 1677-2262), which also fits a Python ``datetime``. Stored times outside are kept as they are
#: (Go accepts any int64) but ``representable_time`` reports them as unknown.
TIME_MIN: Final = INT64_MIN / 1e9 + 1.0
TIME_MAX: Final = INT64_MAX / 1e9 - 1.0

#: Go's rollback causes: 0 none, 1 failure, 2 canceled, 3 deadline (Go reads any other as 0).
MAX_TRIGGER_CAUSE: Final = 3

_NUMBER_TYPES: Final = frozenset({int, float})
_INT_TYPE: Final = frozenset({int})
_STR_TYPE: Final = frozenset({str})
_LIST_TYPE: Final = frozenset({list})
_STATUS_TYPE: Final = frozenset({NodeStatus})


class InvalidValue(ValueError):
    """A value a stored state cannot hold; ``where`` names the field (and node), ``reason`` why."""

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        self.reason = reason
        super().__init__(f"{where}: {reason}")


# --- single values (also used by NodeRecord.from_json and AuditEntry.from_json) ------------------


def require_str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidValue(where, f"expected a string, got {type(value).__name__}")
    return value


def is_utf8(text: str) -> bool:
    """Whether ``text`` has UTF-8 bytes (it holds no lone surrogate, e.g. from a Go file's bytes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def require_time(value: Any, where: str) -> float | int:
    """A finite number of seconds (int or float, never bool); kept as given, any magnitude."""
    if type(value) not in _NUMBER_TYPES:
        raise InvalidValue(where, f"expected a number of seconds, got {type(value).__name__}")
    if type(value) is float and not math.isfinite(value):
        raise InvalidValue(where, f"{value} is not a finite time")
    return value  # type: ignore[no-any-return]


def require_count(value: Any, where: str) -> int:
    """An int in ``0..INT64_MAX`` (attempt counts, versions), never bool."""
    return _require_int(value, where, 0, INT64_MAX)


def require_str_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        raise InvalidValue(where, "expected a list of strings")
    return list(value)


def representable_time(value: object) -> float | None:
    """``value`` as float seconds if a ``datetime`` and a pandas ``Timestamp`` can show it, else None.

    For summaries and tables: a stored time outside ``TIME_MIN..TIME_MAX`` (``"__timestamp":
    1e300``, a wait of 2^63 - 1 ns read as seconds), NaN, infinities and non-numbers are unknown.
    """
    if type(value) not in _NUMBER_TYPES:
        return None
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except OverflowError:  # an int beyond the float range
        return None
    return seconds if TIME_MIN <= seconds <= TIME_MAX else None


# --- whole columns -------------------------------------------------------------------------------
# Each check first looks at the value types in C (``frozenset.issuperset(map(type, ...))``, which
# builds nothing and stops at the first stranger) and only walks the values in Python to name
# the culprit, so a 100k-node state costs a few milliseconds and a small one a few microseconds.


def _column(column: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(column, dict):
        raise InvalidValue(where, f"expected an object of node -> value, got {type(column).__name__}")
    return column


def _first_bad(column: Mapping[str, Any], where: str, check: Any) -> None:
    for node, value in column.items():
        check(value, f"{where} of node {node!r}")


def _check_times(column: Any, where: str) -> None:
    values = _column(column, where).values()
    if not values:
        return
    if _NUMBER_TYPES.issuperset(map(type, values)):
        try:
            # A sum is finite only if every term is (NaN and infinities propagate); a sum that
            # overflows sends us to the exact check below, which accepts large finite values.
            if math.isfinite(sum(values)):
                return
        except OverflowError:
            pass
    _first_bad(column, where, require_time)


def _check_ints(column: Any, where: str, low: int, high: int = INT64_MAX) -> None:
    values = _column(column, where).values()
    if not values:
        return
    if _INT_TYPE.issuperset(map(type, values)) and min(values) >= low and max(values) <= high:
        return
    for node, value in column.items():
        _require_int(value, f"{where} of node {node!r}", low, high)


def _require_int(value: Any, where: str, low: int, high: int) -> int:
    # An int subclass (IntEnum) is written as its int; bool is not an integer here (JSON keeps
    # true apart from 1, and decoders never produce one where a count belongs).
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidValue(where, f"expected an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise InvalidValue(where, f"{value} is outside {low}..{high}")
    return value


def _check_strings(column: Any, where: str) -> None:
    values = _column(column, where).values()
    if values and not _STR_TYPE.issuperset(map(type, values)):
        _first_bad(column, where, require_str)


def _check_statuses(column: Any) -> None:
    values = _column(column, "node statuses").values()
    if values and not _STATUS_TYPE.issuperset(map(type, values)):
        for node, status in column.items():
            if not isinstance(status, str) or status not in STATUS_BY_VALUE:
                raise InvalidValue(f"status of node {node!r}", f"{status!r} is not a node status")


class _LastDag:
    """The DAG dicts checked last: the engine saves one state many times with the same DAG, and
    ``WorkflowData`` replaces the dict whenever the structure changes (never mutates it), so a
    save skips the check of an unchanged DAG (~5-30 ms at 100k nodes). A few are kept, so that
    saving two states in turn (two stores, a state and its copy) does not check both every time."""

    checked: tuple[Any, ...] = ()  # holding the dicts keeps their ids from being reused
    KEPT: Final = 4


def _check_dag(dag: Any) -> None:
    if dag is None or any(dag is known for known in _LastDag.checked):
        return
    column = _column(dag, "dag")
    deps = column.values()
    if _LIST_TYPE.issuperset(map(type, deps)) and _STR_TYPE.issuperset(
        map(type, itertools.chain.from_iterable(deps))
    ):
        _LastDag.checked = (dag, *_LastDag.checked[: _LastDag.KEPT - 1])
        return
    for node, value in column.items():
        if type(value) is not list or not all(isinstance(item, str) for item in value):
            raise InvalidValue(f"dag dependencies of node {node!r}", "expected a list of strings")


def _check_audit(audit: Any) -> None:
    if not isinstance(audit, list):
        raise InvalidValue("audit", "expected a list")
    if not audit:
        return
    from .data import AuditEntry  # data.py imports this module at load time

    for index, entry in enumerate(audit):
        if not isinstance(entry, AuditEntry):
            raise InvalidValue(
                f"audit entry {index + 1}", f"expected an AuditEntry, got {type(entry).__name__}"
            )
        check_audit_entry(entry, f"audit entry {index + 1}")


def check_audit_entry(entry: AuditEntry, where: str) -> None:
    require_str(entry.action, f"{where} action")
    if not isinstance(entry.nodes, tuple) or not all(isinstance(n, str) for n in entry.nodes):
        raise InvalidValue(f"{where} nodes", "expected a list of strings")
    require_time(entry.at, f"{where} time")
    require_str(entry.detail, f"{where} detail")
    require_str(entry.user, f"{where} user")
    require_str(entry.host, f"{where} host")


# --- attempt log and run history -----------------------------------------------------------------

#: Attempt outcomes and run outcomes/reasons (data.AttemptOutcome, RunOutcome, RunReason).
ATTEMPT_OUTCOMES: Final = frozenset(
    {"running", "completed", "failed", "timeout", "cancelled", "interrupted", "crashed"}
)
RUN_OUTCOMES: Final = frozenset(
    {"running", "succeeded", "failed", "cancelled", "interrupted", "incomplete", "crashed"}
)
RUN_REASONS: Final = frozenset({"new", "resume", "after reset", "re-run"})
#: Fields of a stored attempt (``AttemptRecord.to_json``) and the types each may have.
_ENTRY_FIELDS: Final = 10
_NONE = type(None)
_OPTIONAL_STR: Final = frozenset({str, _NONE})
_OPTIONAL_NUMBER: Final = frozenset({int, float, _NONE})
_ENTRY_TYPES: Final = (
    ("run id", _STR_TYPE),
    ("attempt number", _INT_TYPE),
    ("started_at", _NUMBER_TYPES),
    ("finished_at", _OPTIONAL_NUMBER),
    ("outcome", _STR_TYPE),
    ("error_type", _OPTIONAL_STR),
    ("error", _OPTIONAL_STR),
    ("traceback", _OPTIONAL_STR),
    ("host", _STR_TYPE),
    ("pid", _INT_TYPE),
)


def check_attempt_log(log: Any) -> None:
    """``InvalidValue`` naming the node and field of the first attempt log entry a save could
    not have written. Every value is laid out in one flat list (C-level), and each field is the
    slice of every tenth value from its position: one type scan per field, no Python loop over
    the entries, so 100k entries cost tens of milliseconds; only a bad log is walked entry by entry."""
    column = _column(log, "attempt log")
    if not column:
        return
    logs = column.values()
    if not _LIST_TYPE.issuperset(map(type, logs)):
        _first_bad(column, "attempt log", _require_entry_list)
    entries = list(itertools.chain.from_iterable(logs))
    try:
        ok = (
            all(logs)  # no node with an empty log (a save drops those)
            and _LIST_TYPE.issuperset(map(type, entries))
            and min(map(len, entries)) == max(map(len, entries)) == _ENTRY_FIELDS
        )
        if ok:
            values = list(itertools.chain.from_iterable(entries))
            fields = [values[k::_ENTRY_FIELDS] for k in range(_ENTRY_FIELDS)]
            ok = all(
                types.issuperset(map(type, field))
                for (_, types), field in zip(_ENTRY_TYPES, fields, strict=True)
            )
            ok = ok and ATTEMPT_OUTCOMES.issuperset(fields[4])
            ok = ok and min(fields[1]) >= 1 and max(fields[1]) <= INT64_MAX
            ok = ok and min(fields[9]) >= 0 and max(fields[9]) <= INT64_MAX
            # filter(None) drops the None of attempts still running (and 0.0, finite anyway) in C.
            ok = ok and _finite(fields[2]) and _finite(list(filter(None, fields[3])))
    except TypeError:  # unorderable values: the walk below names them
        ok = False
    if not ok:
        for node, entry_list in column.items():
            check_attempt_entries(entry_list, f"attempt log of node {node!r}")


def _finite(values: Any) -> bool:
    try:
        return math.isfinite(sum(values))
    except OverflowError:
        return all(math.isfinite(v) for v in values)


def _require_entry_list(value: Any, where: str) -> None:
    if type(value) is not list or not value:
        raise InvalidValue(where, "expected a non-empty list of attempts")


def check_attempt_entries(entries: Any, where: str) -> None:
    """``InvalidValue`` for the first attempt of one node's log (``where`` names it) that is wrong."""
    _require_entry_list(entries, where)
    for index, entry in enumerate(entries):
        at = f"{where}, attempt {index + 1}"
        if type(entry) is not list or len(entry) != _ENTRY_FIELDS:
            raise InvalidValue(at, f"expected a list of {_ENTRY_FIELDS} fields")
        for (name, types), value in zip(_ENTRY_TYPES, entry, strict=True):
            if type(value) not in types:
                raise InvalidValue(f"{at} {name}", f"unexpected {type(value).__name__}")
        require_time(entry[2], f"{at} started_at")
        if entry[3] is not None:
            require_time(entry[3], f"{at} finished_at")
        if entry[4] not in ATTEMPT_OUTCOMES:
            raise InvalidValue(f"{at} outcome", f"{entry[4]!r} is not an attempt outcome")
        _require_int(entry[1], f"{at} attempt number", 1, INT64_MAX)
        _require_int(entry[9], f"{at} pid", 0, INT64_MAX)


def check_run(run: RunRecord, where: str) -> None:
    """``InvalidValue`` for the first field of a run record a save could not have written."""
    require_str(run.run_id, f"{where} id")
    require_time(run.started_at, f"{where} started_at")
    if run.finished_at is not None:
        require_time(run.finished_at, f"{where} finished_at")
    if not isinstance(run.outcome, str) or run.outcome not in RUN_OUTCOMES:
        raise InvalidValue(f"{where} outcome", f"{run.outcome!r} is not a run outcome")
    if not isinstance(run.reason, str) or run.reason not in RUN_REASONS:
        raise InvalidValue(f"{where} reason", f"{run.reason!r} is not a run reason")
    for name in ("nodes_run", "completed", "failed", "skipped", "pid"):
        require_count(getattr(run, name), f"{where} {name}")
    require_str(run.host, f"{where} host")
    require_str(run.user, f"{where} user")
    if run.params is not None and not isinstance(run.params, dict):
        raise InvalidValue(f"{where} params", "expected an object or null")


def _check_runs(runs: Any) -> None:
    if not isinstance(runs, list):
        raise InvalidValue("runs", "expected a list")
    if not runs:
        return
    from .data import RunRecord  # data.py imports this module at load time

    for index, run in enumerate(runs):
        if not isinstance(run, RunRecord):
            raise InvalidValue(f"run {index + 1}", f"expected a RunRecord, got {type(run).__name__}")
        check_run(run, f"run {index + 1}")


def check_columns(c: StateColumns, *, skip_checked: bool = False, members: bool = False) -> None:
    """Raise ``InvalidValue`` for the first value of ``c`` a stored state cannot hold.

    The contract every decoder's result meets (and every encoder's input must meet, so that a
    save never writes what a load refuses): the id a str; version an int in 0..2^63-1; created/
    updated times finite numbers (any magnitude: see ``representable_time``); statuses
    ``NodeStatus`` members; attempts ints in 0..2^63-1; start/finish times finite numbers;
    errors and error types strings; the DAG None or node -> list of str; audit entries of str,
    str list, finite time, str (and str user, host); attempt logs as ``check_attempt_log``;
    runs as ``check_run``; code versions str; waits int64 (Go's own check); rolling_back a bool; trigger_cause
    0..3. Data and output values are any JSON (their encoders refuse anything else).
    ``skip_checked``: skip the columns ``StateColumns.checked`` vouches for when it is set.
    ``members``: the statuses are ``NodeStatus`` members by construction (a decoder that mapped
    checked byte codes to members), so their type scan (~2 ms at 100k nodes) is skipped.
    """
    require_str(c.workflow_id, "workflow id")
    require_count(c.version, "version")
    require_time(c.created_at, "created_at")
    require_time(c.updated_at, "updated_at")
    if not (skip_checked and c.checked):  # the columns StateColumns.checked vouches for
        if not members:
            _check_statuses(c.statuses)
        # A deferred history column was checked by its decoder (see ``StateColumns.defer``).
        if c.deferred_raw("attempts") is None:
            _check_ints(c.attempts, "attempts", 0)
        if c.deferred_raw("started_at") is None:
            _check_times(c.started_at, "started_at")
        if c.deferred_raw("finished_at") is None:
            _check_times(c.finished_at, "finished_at")
        _check_strings(c.errors, "error")
        _check_strings(c.error_types, "error_type")
        check_attempt_log(c.attempt_log)
    _check_dag(c.dag)
    _check_audit(c.audit)
    _check_runs(c.runs)
    _check_strings(c.code_versions, "code version")
    _check_ints(c.waits, "wait", INT64_MIN)
    _check_strings(c.raw_statuses, "status text")
    if type(c.rolling_back) is not bool:
        raise InvalidValue("rolling_back", f"expected a boolean, got {type(c.rolling_back).__name__}")
    if type(c.trigger_cause) is not int or not 0 <= c.trigger_cause <= MAX_TRIGGER_CAUSE:
        raise InvalidValue("trigger_cause", f"{c.trigger_cause!r} is not one of 0..{MAX_TRIGGER_CAUSE}")
    if not isinstance(c.data, dict):
        raise InvalidValue("data", "expected an object")
    # A deferred output column is checked when it is decoded (its decoder requires an object).
    if c.deferred_raw("outputs") is None and not isinstance(c.outputs, dict):
        raise InvalidValue("outputs", "expected an object")


def checked_columns(c: StateColumns, source: str) -> StateColumns:
    """``c`` if it passes ``check_columns``; else ``CorruptStateError`` naming ``source`` and the value."""
    try:
        check_columns(c)
    except InvalidValue as error:
        raise CorruptStateError(source, str(error)) from None
    return c


def savable_columns(c: StateColumns, *, version: int, updated_at: float) -> None:
    """``SerializationError`` naming the value when ``c``, saved as ``version`` at ``updated_at``,
    would be a state a load refuses; encoders call it so a save never writes such a file."""
    try:
        require_count(version, "version")
        require_time(updated_at, "updated_at")
        check_columns(c, skip_checked=True)
    except InvalidValue as error:
        raise SerializationError(str(c.workflow_id), error.where, error) from None


def check_record(record: NodeRecord) -> None:
    """``InvalidValue`` when a per-node record holds what ``check_columns`` would refuse."""
    where = f"node {record.node!r}"
    require_str(record.node, "node name")
    if not isinstance(record.status, NodeStatus):
        raise InvalidValue(f"status of {where}", f"{record.status!r} is not a NodeStatus")
    require_count(record.attempts, f"attempts of {where}")
    for name in ("started_at", "finished_at"):
        value = getattr(record, name)
        if value is not None:
            require_time(value, f"{name} of {where}")
    for name in ("error", "error_type"):
        value = getattr(record, name)
        if value is not None:
            require_str(value, f"{name} of {where}")
    if record.code_version is not None:
        require_str(record.code_version, f"code version of {where}")
    if record.attempt_log is not None and record.attempt_log != []:
        check_attempt_entries(record.attempt_log, f"attempt log of {where}")
