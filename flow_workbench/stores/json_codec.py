"""JSONCodec: workflow states as a checksummed superset of the Go library's JSON snapshot."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

import orjson

from ..data import AuditEntry, RunRecord, StateColumns, WorkflowData
from ..errors import CorruptStateError, SerializationError
from ..status import FAILED_STATUSES, STATUS_BY_VALUE, NodeStatus, status_from_go
from ..validation import (
    INT64_MAX,
    INT64_MIN,
    MAX_TRIGGER_CAUSE,
    checked_columns,
    is_utf8,
    require_count,
    require_time,
    savable_columns,
)
from ._crc import crc32
from ._versions import content_token
from .base import StateFormat, WorkflowSummary

Buffer = bytes | bytearray | memoryview

#: Version of this project's JSON layout, stored next to the checksum. 2 added the attempt log
#: and the run history (absent in files of version 1, which still load).
FORMAT_VERSION = 2
#: Layout versions this reader accepts.
READABLE_FORMATS = frozenset({1, 2})

#: Key of the object holding this project's fields; the Go reader ignores unknown keys.
EXTENSION_KEY = "flow_workbench"

# Our files start with this exact text: the extension object comes first and the checksum first
# in it, so the checksum slot sits at a fixed offset and can be verified before any parsing.
_HEADER = b'{"' + EXTENSION_KEY.encode() + b'":{"checksum":"'
_SLOT = slice(len(_HEADER), len(_HEADER) + 8)
_ZERO_SLOT = b"00000000"
# A single flipped bit can only touch one half of the header, so a file matching either half is
# ours and must pass the checksum; it can never be mistaken for a Go file and parsed unchecked.
_HEADER_HALVES = (_HEADER[:18], _HEADER[18:])
_HEX_DIGITS = re.compile(rb"[0-9a-f]{8}")
_VERSION_FIELD = re.compile(rb'","format":(\d+),"version":(\d+)[,}]')

# Datetimes, dataclasses and str/int/dict subclasses would otherwise be converted silently.
_DUMPS_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_GO_KEYS = ("data", "nodeStatus", "outputs", "waits")
_FAILED_VALUES = frozenset(status.value for status in FAILED_STATUSES)


class JSONCodec:
    """Encodes states as JSON the Go library can read; decodes ours (checked) and Go's (validated).

    Layout: the Go snapshot keys (``id``, ``data``, ``nodeStatus``, ``outputs``, ``__timestamp``,
    ``waits``, ``rolling_back``, ``trigger_cause``) plus one ``"flow_workbench"`` object, written
    first, that carries the checksum, format version, state version, times, the history columns
    (node -> value dicts, so decoding 100k nodes costs dict assignments, not objects), DAG, audit,
    attempt log (node -> list of attempts, each a list) and run history (format 2; format 1 files,
    without the last two, still load).
    The checksum is the crc32 of the whole file with its 8 hex digits replaced by ``0``.
    """

    format = StateFormat.JSON
    suffix = ".json"
    writes_versions = True

    # --- encoding ------------------------------------------------------------------------------

    def encode(self, data: WorkflowData, *, version: int, updated_at: float) -> bytearray:
        with data.lock:
            c = data._unsafe_columns()  # orjson writes the live dicts (it cannot read a read view)
            extension: dict[str, Any] = {
                "checksum": "00000000",
                "format": FORMAT_VERSION,
                "version": version,
                "created_at": c.created_at,
                "updated_at": updated_at,
                "attempts": c.attempts,
                "started_at": c.started_at,
                "finished_at": c.finished_at,
                "errors": c.errors,
                "error_types": c.error_types,
                "dag": c.dag,
                "audit": [entry.to_json() for entry in c.audit],
                "attempt_log": c.attempt_log,
                "runs": [run.to_json() for run in c.runs],
            }
            if c.code_versions:  # absent when empty: states without versions keep their bytes
                extension["code_versions"] = c.code_versions
            document: dict[str, Any] = {
                EXTENSION_KEY: extension,
                "id": c.workflow_id,
                "data": c.data,
                "nodeStatus": _status_texts(c),
                "outputs": c.outputs,
                "__timestamp": int(updated_at * 1000),
            }
            if c.waits:
                document["waits"] = c.waits
            if c.rolling_back:
                document["rolling_back"] = True
            if c.trigger_cause:
                document["trigger_cause"] = c.trigger_cause
            # Refuse what a load would refuse (one check for every codec), then what JSON cannot hold.
            savable_columns(c, version=version, updated_at=updated_at)
            _refuse_non_finite(c)
            try:
                encoded = orjson.dumps(document, option=_DUMPS_OPTIONS)
            except TypeError as error:
                raise _serialization_error(c, error) from error
        buffer = bytearray(encoded)
        buffer[_SLOT] = b"%08x" % crc32(encoded)
        return buffer

    # --- decoding ------------------------------------------------------------------------------

    def decode(self, raw: Buffer, source: str) -> WorkflowData:
        document, ours = self._parse(raw, source)
        try:
            columns = _columns_from_ours(document) if ours else _columns_from_go(document, raw)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise CorruptStateError(source, f"bad field: {error}") from None
        return WorkflowData.from_columns(checked_columns(columns, source))

    def has_version(self, raw: Buffer) -> bool:
        """Whether ``raw`` is our layout (which stores a version); Go files carry none."""
        return self.is_ours(raw)

    def takes_id_from_file_name(self, raw: Buffer) -> bool:
        """Never: Go's JSON store, like ours, takes the id from the file's ``"id"``."""
        return False

    def is_ours(self, raw: Buffer) -> bool:
        """Whether ``raw`` claims to be this project's layout (then its checksum must match)."""
        head = bytes(raw[: len(_HEADER)])
        return head.startswith(_HEADER_HALVES[0]) or head[18:] == _HEADER_HALVES[1]

    def stored_version(self, raw: Buffer, source: str) -> int:
        if not self.is_ours(raw):
            self._parse(raw, source)  # still reject garbage
            return content_token(raw)  # Go files carry no version
        self._verify_checksum(raw, source)
        match = _VERSION_FIELD.match(bytes(raw[_SLOT.stop : _SLOT.stop + 64]))
        if match is None:
            raise CorruptStateError(source, "version field missing after the checksum")
        return int(match.group(2))

    def summarize(self, raw: Buffer, source: str) -> WorkflowSummary:
        document, ours = self._parse(raw, source)
        try:
            workflow_id = document["id"]
            statuses = document.get("nodeStatus") or {}
            if not isinstance(workflow_id, str) or not isinstance(statuses, dict):
                raise TypeError("id or nodeStatus of the wrong type")
            updated_at: float | None
            # Count the raw strings in C, then check only the distinct values (at most a handful).
            raw_counts = Counter(statuses.values())
            if ours:
                extension = document[EXTENSION_KEY]
                version: int = require_count(extension["version"], "version")
                updated_at = require_time(extension["updated_at"], "updated_at")
            else:
                version = content_token(raw)
                updated_at = _go_timestamp(document)
            counts: Counter[str] = Counter()
            for value, count in raw_counts.items():
                counts[status_from_go(_str(value)).value] += count
            failed_values = {v for v in raw_counts if v in _FAILED_VALUES}
            failed = tuple(node for node, value in statuses.items() if value in failed_values)
        except (KeyError, TypeError, ValueError) as error:
            raise CorruptStateError(source, f"bad field: {error}") from None
        return WorkflowSummary(
            workflow_id=workflow_id,
            format=StateFormat.JSON if ours else StateFormat.GO_JSON,
            node_count=len(statuses),
            status_counts=dict(counts),
            failed_nodes=failed,
            updated_at=updated_at,
            version=version,
            source=source,
            size_bytes=len(raw),
        )

    def node_status(self, raw: Buffer, source: str, node: str) -> NodeStatus | None:
        # JSON has no index: the whole document must be parsed (FlatBuffers answers this cheaply).
        document, _ = self._parse(raw, source)
        statuses = document.get("nodeStatus") or {}
        if not isinstance(statuses, dict):
            raise CorruptStateError(source, "nodeStatus is not an object")
        value = statuses.get(node)
        if value is None:
            return None
        if not isinstance(value, str):
            raise CorruptStateError(source, f"status of node {node!r} is not a string")
        return status_from_go(value)

    # --- internals -----------------------------------------------------------------------------

    def _verify_checksum(self, raw: Buffer, source: str) -> None:
        view = memoryview(raw).cast("B")
        if bytes(view[: len(_HEADER)]) != _HEADER or len(view) < _SLOT.stop:
            raise CorruptStateError(source, "damaged flow_workbench header")
        digits = bytes(view[_SLOT])
        if _HEX_DIGITS.fullmatch(digits) is None:
            raise CorruptStateError(source, "checksum is not 8 hexadecimal digits")
        actual = crc32(view[_SLOT.stop :], crc32(_ZERO_SLOT, crc32(view[: _SLOT.start])))
        if int(digits, 16) != actual:
            raise CorruptStateError(source, "checksum mismatch (truncated or altered file)")

    def _parse(self, raw: Buffer, source: str) -> tuple[dict[str, Any], bool]:
        ours = self.is_ours(raw)
        if ours:
            self._verify_checksum(raw, source)
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            raise CorruptStateError(source, f"not valid JSON: {error}") from None
        if not isinstance(document, dict):
            raise CorruptStateError(source, "top level is not a JSON object")
        if not ours and EXTENSION_KEY in document:
            raise CorruptStateError(source, f"{EXTENSION_KEY!r} block without its checksum header")
        if ours:
            extension = document.get(EXTENSION_KEY)
            if not isinstance(extension, dict):
                raise CorruptStateError(source, f"{EXTENSION_KEY!r} is not an object")
            duplicate = _duplicate_key(raw, document)
            if duplicate is not None:
                # Our writer never repeats a key; readers that take the first or the last
                # (the header's version field, orjson, Go) would see different states.
                raise CorruptStateError(source, f"duplicate key {duplicate!r} (our files never repeat a key)")
            header = _VERSION_FIELD.match(bytes(raw[_SLOT.stop : _SLOT.stop + 64]))
            if header is None or int(header.group(2)) != extension.get("version"):
                raise CorruptStateError(source, "the version after the checksum is not the decoded version")
        return document, ours


# --- decoding helpers ----------------------------------------------------------------------------


def _columns_from_ours(document: dict[str, Any]) -> StateColumns:
    ext = document[EXTENSION_KEY]
    if type(ext.get("format")) is not int or ext["format"] not in READABLE_FORMATS:
        raise ValueError(f"unsupported format version {ext.get('format')!r}")
    statuses_raw = _dict(document["nodeStatus"])
    try:
        statuses = {node: STATUS_BY_VALUE[value] for node, value in statuses_raw.items()}
        raw_statuses: dict[str, str] = {}
    except (KeyError, TypeError):
        # The checksum vouches for the text: an unknown status was kept from a Go JSON file.
        statuses, raw_statuses = _go_statuses(statuses_raw)
    audit_raw = ext.get("audit")
    if audit_raw is None:
        audit_raw = []
    if not isinstance(audit_raw, list):
        raise TypeError("audit is not a list")
    runs_raw = ext.get("runs")
    if runs_raw is None:
        runs_raw = []
    if not isinstance(runs_raw, list):
        raise TypeError("runs is not a list")
    # Value types and ranges are checked by the validation every decoder shares (``decode``).
    columns = StateColumns(
        workflow_id=_str(document["id"]),
        version=ext["version"],
        created_at=_float_time(ext["created_at"], "created_at"),
        updated_at=_float_time(ext["updated_at"], "updated_at"),
        data=_dict(document["data"]),
        statuses=statuses,
        outputs=_dict(document["outputs"]),
        attempts=_optional_dict(ext.get("attempts")),
        started_at=_optional_dict(ext.get("started_at")),
        finished_at=_optional_dict(ext.get("finished_at")),
        errors=_optional_dict(ext.get("errors")),
        error_types=_optional_dict(ext.get("error_types")),
        dag=ext.get("dag"),
        audit=[AuditEntry.from_json(_dict(entry)) for entry in audit_raw],
        raw_statuses=raw_statuses,
        attempt_log=_optional_dict(ext.get("attempt_log")),
        runs=[RunRecord.from_json(_dict(run)) for run in runs_raw],
        code_versions=_optional_dict(ext.get("code_versions")),
    )
    _go_fields(document, columns)
    return columns


def _columns_from_go(document: dict[str, Any], raw: Buffer) -> StateColumns:
    """Columns of a Go JSON snapshot, read as Go reads it.

    - An unknown status string stays visible: status UNKNOWN, its text kept (``raw_statuses``).
    - A number beyond int64 in data or outputs is a float (Go's encoding/json writes float64
      2^63 as ``9223372036854775808`` and reads it back as float64).
    - A ``trigger_cause`` outside 0..3 (any other number, or null) reads as 0 (none), as in Go.
    - The version is the file's content token (``_versions``): Go files carry none.
    """
    for key in _GO_KEYS:
        if document.get(key) is not None and not isinstance(document[key], dict):
            raise TypeError(f"{key!r} is not an object")
    statuses, raw_statuses = _go_statuses(document.get("nodeStatus") or {})
    timestamp = _go_timestamp(document) or 0.0
    data = document.get("data") or {}
    outputs = document.get("outputs") or {}
    if _LONG_NUMBER.search(raw) is not None:  # only 19+ digit numbers can exceed int64
        data, outputs = _go_floats(data), _go_floats(outputs)
    columns = StateColumns(
        workflow_id=_str(document["id"]),
        version=content_token(raw),
        created_at=timestamp,
        updated_at=timestamp,
        data=data,
        statuses=statuses,
        outputs=outputs,
        dag=None,
        raw_statuses=raw_statuses,
    )
    _go_fields(document, columns)
    cause = columns.trigger_cause
    if cause is None or (type(cause) in (int, float) and cause not in _GO_CAUSES):
        # Any other number is no cause Go knows, and Go reads it as none; a value that is not a
        # number (a string, a bool, a list) stays an error.
        columns.trigger_cause = 0
    return columns


_GO_CAUSES = range(MAX_TRIGGER_CAUSE + 1)
_LONG_NUMBER = re.compile(rb"\d{19}")


def _go_statuses(statuses_raw: dict[str, Any]) -> tuple[dict[str, NodeStatus], dict[str, str]]:
    """Statuses of Go's ``nodeStatus`` map, and the texts of those that are UNKNOWN."""
    statuses: dict[str, NodeStatus] = {}
    unknown: dict[str, str] = {}
    for node, value in statuses_raw.items():
        status = statuses[node] = status_from_go(_str(value))
        if status is NodeStatus.UNKNOWN:
            unknown[node] = value
    return statuses, unknown


def _go_floats(value: Any) -> Any:
    """``value`` with every int outside int64 replaced by the float Go reads it as (containers are
    rebuilt only where they hold one)."""
    if type(value) is int:
        return value if INT64_MIN <= value <= INT64_MAX else float(value)
    if type(value) is list:
        items = [_go_floats(item) for item in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    if type(value) is dict:
        pairs = {key: _go_floats(item) for key, item in value.items()}
        return value if all(pairs[key] is item for key, item in value.items()) else pairs
    return value


def _go_fields(document: dict[str, Any], columns: StateColumns) -> None:
    columns.waits = _optional_dict(document.get("waits"))
    columns.rolling_back = document.get("rolling_back", False)
    columns.trigger_cause = document.get("trigger_cause", 0)
    _go_timestamp(document)  # present means a number, in our files too


def _go_timestamp(document: Mapping[str, Any]) -> float | None:
    """``__timestamp`` (unix ms) in seconds; any magnitude (``1e300`` too): summaries show a time
    no display can hold as unknown (``representable_time``), the state keeps it."""
    timestamp = document.get("__timestamp")
    return None if timestamp is None else require_time(timestamp, "__timestamp") / 1000.0


def _float_time(raw: Any, where: str) -> float:
    return float(require_time(raw, where))


def _optional_dict(raw: Any) -> dict[str, Any]:
    return {} if raw is None else _dict(raw)


def _dict(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise TypeError(f"expected an object, got {type(raw).__name__}")
    return raw


def _str(raw: Any) -> str:
    if not isinstance(raw, str):
        raise TypeError(f"expected a string, got {type(raw).__name__}")
    return raw


def _duplicate_key(raw: Buffer, document: dict[str, Any]) -> str | None:
    """A key repeated in one object anywhere in ``raw`` (whose parse is ``document``), or None.

    orjson keeps the last of repeated keys silently. Every key-value pair writes one ``:`` and
    strings write theirs literally, so the text has more colons than the parsed document written
    back only when pairs were dropped: two C-level counts and one encode. A colon escaped as
    ``\\u003a`` would break the count, so such files take the exact (~3x slower) parse instead.
    """
    text = raw if isinstance(raw, bytes | bytearray) else bytes(raw)
    escaped = b"\\u003" in text and (b"\\u003a" in text or b"\\u003A" in text)
    if not escaped and text.count(b":") == orjson.dumps(document).count(b":"):
        return None
    repeated: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        result = dict(items)
        if len(result) != len(items) and not repeated:
            seen: set[str] = set()
            for key, _ in items:
                if key in seen:
                    repeated.append(key)
                    break
                seen.add(key)
        return result

    json.loads(text, object_pairs_hook=pairs)
    return repeated[0] if repeated else None


# --- encoding helpers ----------------------------------------------------------------------------


def _status_texts(c: StateColumns) -> dict[str, Any]:
    """The ``nodeStatus`` map to write: statuses, with the kept text of each UNKNOWN one."""
    raw = c.raw_statuses
    if not raw:  # O(1) for every save: an UNKNOWN status without a kept text is written as "unknown"
        return c.statuses
    return {
        node: raw.get(node, status.value) if status is NodeStatus.UNKNOWN else status
        for node, status in c.statuses.items()
    }


def _refuse_non_finite(c: StateColumns) -> None:
    """JSON has no NaN/Infinity and orjson would write ``null``; refuse instead of changing the value.

    Only top-level values are checked (a full walk would cost O(size) per save); a NaN nested
    inside a list or object is stored as ``null``.
    """
    for label, values in (("data key", c.data), ("output of node", c.outputs)):
        if float not in map(type, values.values()):  # a C-level scan; outputs are Fragments
            continue
        for key, value in values.items():
            if type(value) is float and not math.isfinite(value):
                cause = ValueError(f"{value} has no JSON form")
                raise SerializationError(c.workflow_id, f"{label} {key!r}", cause)


def _serialization_error(c: StateColumns, error: TypeError) -> SerializationError:
    """Name the key or node whose value orjson refused (re-encoding each value is only done on error)."""
    for label, values in (
        ("data key", c.data),
        ("output of node", c.outputs),
        ("status of node", c.statuses),
        ("wait of node", c.waits),
        ("error of node", c.errors),
    ):
        for key, value in values.items():
            if not isinstance(key, str):
                return SerializationError(c.workflow_id, f"{label} {key!r}", TypeError("key is not a str"))
            try:
                # A key or value holding surrogates (bytes of a Go string that are not UTF-8) has
                # no UTF-8, so no JSON form: orjson refuses it, and so do we, naming it.
                orjson.dumps({key: value}, option=_DUMPS_OPTIONS)
            except TypeError as inner:
                return SerializationError(c.workflow_id, f"{label} {key!r}", inner)
    if not is_utf8(c.workflow_id):
        return SerializationError(c.workflow_id, "workflow id", error)
    return SerializationError(c.workflow_id, "state", error)
