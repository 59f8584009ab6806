"""Workflow id validation: one rule, checked before an id ever becomes part of a path or key.

The rule accepts every id the Go library accepts that is also safe as one file name on a POSIX
file system and as part of a Redis key: Go takes any non-empty, single-segment local name
(``a b``, ``a+b``, ``é``, ``.x``, ``a..b``, ``-rf``). Refused, each with its reason:

- not a str, or empty;
- ``/`` (the separator), ``\\`` (the separator on Windows, where a Go service would read such
  an id as a path) and NUL;
- exactly ``.`` or ``..``;
- control characters (C0, DEL, C1: U+0000-U+001F, U+007F-U+009F): a line break or an escape
  sequence in a file name forges lines in listings and terminals;
- lone surrogates (a file name of bytes that are not UTF-8): no UTF-8 file, JSON or Redis key
  can hold them;
- more than ``MAX_WORKFLOW_ID_BYTES`` bytes of UTF-8, so the longest sidecar name
  (``.<id>.journal.<random>.tmp``) stays within the 255-byte file-name limit.

Ids starting with ``.`` are fine: temp files are recognised by their ``.tmp`` suffix, which no
state or sidecar file has, and lock, lease and journal sidecars by theirs. Redis keys are
``<prefix><kind>:<id>``; ids never enter a SCAN pattern, and the prefix is escaped there.
"""

from __future__ import annotations

import re

from .errors import InvalidWorkflowIdError

#: Longest id accepted, in bytes of UTF-8 (leaves room for suffixes and temp-file names within 255).
MAX_WORKFLOW_ID_BYTES = 200
_FORBIDDEN = re.compile(r"[/\\\x00-\x1f\x7f-\x9f]")


def workflow_id_problem(workflow_id: object) -> str | None:
    """Why ``workflow_id`` is refused, or None when it is a valid id (see the module docstring)."""
    if not isinstance(workflow_id, str):
        return f"must be a str, not {type(workflow_id).__name__}"
    if not workflow_id:
        return "must not be empty"
    if workflow_id in (".", ".."):
        return "must not be '.' or '..'"
    bad = _FORBIDDEN.search(workflow_id)
    if bad is not None:
        char = bad.group()
        if char in "/\\\x00":
            return f"must not contain a path separator or NUL ({char!r})"
        return f"must not contain control characters ({char!r})"
    try:
        size = len(workflow_id.encode("utf-8"))
    except UnicodeEncodeError:
        return "is not valid Unicode (a file name whose bytes are not UTF-8)"
    if size > MAX_WORKFLOW_ID_BYTES:
        return f"longer than {MAX_WORKFLOW_ID_BYTES} bytes of UTF-8 ({size})"
    return None


def validate_workflow_id(workflow_id: object) -> str:
    """Return the id unchanged if it is safe to use as a file name, else raise InvalidWorkflowIdError."""
    problem = workflow_id_problem(workflow_id)
    if problem is not None:
        long = isinstance(workflow_id, str) and len(workflow_id) > 43
        shown = workflow_id[:40] + "..." if long else workflow_id  # type: ignore[index]
        raise InvalidWorkflowIdError(shown, problem)
    return workflow_id  # type: ignore[return-value]


def is_valid_workflow_id(workflow_id: object) -> bool:
    return workflow_id_problem(workflow_id) is None
