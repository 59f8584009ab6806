"""Node statuses, which of them are terminal, and the byte codes shared with the Go library."""

from __future__ import annotations

from enum import StrEnum


class NodeStatus(StrEnum):
    """Status of one node. Values are the strings the Go library writes."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    # Statuses only the Go library produces; kept so its files are shown truthfully.
    WAITING = "waiting"
    BYPASSED = "bypassed"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"
    #: A status string this library does not know, read from a Go JSON file (``"bogus"``,
    #: ``"COMPLETED"``, ``""``). The state keeps the text (``WorkflowData.raw_status``) and JSON
    #: saves write it back unchanged; the engine refuses to run such a workflow until the node
    #: is reset or marked. No FlatBuffers byte stands for it: the Go layout writes it as
    #: pending (as Go does), our FlatBuffers layout refuses to save it.
    UNKNOWN = "unknown"

    @property
    def code(self) -> int:
        """The byte the Go FlatBuffers schema uses for this status (``KeyError`` for UNKNOWN)."""
        return STATUS_CODES[self]

    @property
    def is_terminal(self) -> bool:
        """Terminal statuses are not re-run when a workflow is executed again."""
        return self in TERMINAL_STATUSES

    @classmethod
    def parse(cls, value: str | NodeStatus) -> NodeStatus:
        """Strictly parse a status string, raising ``ValueError`` that lists the valid values."""
        member = _BY_VALUE.get(value)
        if member is None:
            valid = ", ".join(s.value for s in cls)
            raise ValueError(f"unknown node status {value!r}; expected one of: {valid}")
        return member


#: Byte codes of the Go ``workflow.NodeStatus`` FlatBuffers enum, in declaration order.
STATUSES_BY_CODE: tuple[NodeStatus, ...] = tuple(s for s in NodeStatus if s is not NodeStatus.UNKNOWN)
STATUS_CODES: dict[NodeStatus, int] = {status: code for code, status in enumerate(STATUSES_BY_CODE)}
_BY_VALUE: dict[str, NodeStatus] = {s.value: s for s in NodeStatus}
# Enum members hash and compare like their str values, so one dict answers both.
STATUS_BY_VALUE: dict[str, NodeStatus] = _BY_VALUE

#: Statuses a re-execution leaves alone.
TERMINAL_STATUSES: frozenset[NodeStatus] = frozenset(
    {
        NodeStatus.COMPLETED,
        NodeStatus.FAILED,
        NodeStatus.SKIPPED,
        NodeStatus.BYPASSED,
        NodeStatus.COMPENSATED,
        NodeStatus.COMPENSATION_FAILED,
    }
)

#: Statuses that let downstream nodes run.
SATISFIED_STATUSES: frozenset[NodeStatus] = frozenset({NodeStatus.COMPLETED, NodeStatus.BYPASSED})

#: Statuses that count as a failure for recovery and summaries.
FAILED_STATUSES: frozenset[NodeStatus] = frozenset({NodeStatus.FAILED, NodeStatus.COMPENSATION_FAILED})


def status_from_go(value: str) -> NodeStatus:
    """Lenient parse of a Go JSON status: Go's JSON reader keeps any string, so an unknown one is
    UNKNOWN here (its text is kept next to it by the reader), never silently pending."""
    return _BY_VALUE.get(value, NodeStatus.UNKNOWN)


#: ``error_type`` the engine records for a node it skipped because a dependency did not complete
#: (its ``error`` names the dependency); ``mark_nodes`` re-evaluates exactly these nodes.
UPSTREAM_SKIP = "UpstreamNotCompleted"
