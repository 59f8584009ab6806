"""Workflow id validation: one allow-list, checked before an id ever becomes part of a path or key."""

from __future__ import annotations

import re

from .errors import InvalidWorkflowIdError

#: Longest id accepted: leaves room for suffixes and temp-file prefixes within a 255-byte file name.
MAX_WORKFLOW_ID_LENGTH = 200

_ALLOWED = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
ALLOWED_DESCRIPTION = "ASCII letters, digits, '_', '-' and '.', not starting with '.' and without '..'"


def validate_workflow_id(workflow_id: object) -> str:
    """Return the id unchanged if it is safe to use as a file name, else raise InvalidWorkflowIdError."""
    if not isinstance(workflow_id, str):
        raise InvalidWorkflowIdError(workflow_id, f"must be a str, not {type(workflow_id).__name__}")
    if not workflow_id:
        raise InvalidWorkflowIdError(workflow_id, "must not be empty")
    if len(workflow_id) > MAX_WORKFLOW_ID_LENGTH:
        raise InvalidWorkflowIdError(
            workflow_id[:40] + "...", f"longer than {MAX_WORKFLOW_ID_LENGTH} characters"
        )
    if "/" in workflow_id or "\\" in workflow_id or "\x00" in workflow_id:
        raise InvalidWorkflowIdError(workflow_id, "must not contain a path separator or NUL")
    if ".." in workflow_id:
        raise InvalidWorkflowIdError(workflow_id, "must not contain '..'")
    if not _ALLOWED.fullmatch(workflow_id):
        raise InvalidWorkflowIdError(workflow_id, f"only {ALLOWED_DESCRIPTION} are allowed")
    return workflow_id


def is_valid_workflow_id(workflow_id: object) -> bool:
    try:
        validate_workflow_id(workflow_id)
    except InvalidWorkflowIdError:
        return False
    return True
