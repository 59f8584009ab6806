"""NodeStatus values, Go codes and parsing."""

from __future__ import annotations

import pytest

from flow_workbench import NodeStatus
from flow_workbench.status import STATUSES_BY_CODE, TERMINAL_STATUSES, status_from_go


def test_values_match_the_go_library() -> None:
    assert [s.value for s in STATUSES_BY_CODE] == [
        "pending",
        "running",
        "completed",
        "failed",
        "skipped",
        "waiting",
        "bypassed",
        "compensated",
        "compensation_failed",
    ]
    assert NodeStatus.COMPENSATION_FAILED.code == 8
    assert NodeStatus("completed") is NodeStatus.COMPLETED
    failed: str = NodeStatus.FAILED  # a StrEnum: equal to its text, wherever a str is expected
    assert failed == "failed"


def test_terminal_statuses() -> None:
    assert NodeStatus.COMPLETED.is_terminal and NodeStatus.SKIPPED.is_terminal
    assert not NodeStatus.RUNNING.is_terminal and not NodeStatus.WAITING.is_terminal
    assert NodeStatus.PENDING not in TERMINAL_STATUSES


def test_strict_parse_lists_valid_values() -> None:
    with pytest.raises(ValueError, match="compensation_failed"):
        NodeStatus.parse("done")


def test_lenient_go_parse_keeps_unknown_statuses_unknown() -> None:
    assert status_from_go("bypassed") is NodeStatus.BYPASSED
    for text in ("mystery", "COMPLETED", "", "unknown"):
        assert status_from_go(text) is NodeStatus.UNKNOWN


def test_unknown_is_neither_terminal_nor_a_go_byte() -> None:
    assert NodeStatus.UNKNOWN not in STATUSES_BY_CODE and not NodeStatus.UNKNOWN.is_terminal
    with pytest.raises(KeyError):
        _ = NodeStatus.UNKNOWN.code
