"""Who holds a workflow's execution lease: the record every store reports, and its stored forms."""

from __future__ import annotations

import math
import os
import re
import socket
import time
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import orjson

#: Purpose of the lease ``Workflow.execute`` takes; edits name themselves (``"reset_nodes"``, ...).
EXECUTE = "execute"
#: Purposes are short names (they are one field of a Redis lease token, separated by colons).
_PURPOSE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
#: Longest holder record read from a lease file: anything longer is not one of ours.
MAX_RECORD_BYTES = 4096


@dataclass(frozen=True)
class LeaseHolder:
    """The process holding a workflow's execution lease, as far as the store knows it.

    ``host``, ``pid`` and ``since`` (unix time, the holder's clock) are None when the holder
    did not record them (it just took the lease, or runs an older version). ``purpose`` is
    ``"execute"`` for a run, else the edit's name; ``expires_in`` is the seconds left before
    the lease lapses unless renewed (Redis), None for leases that never lapse (files, memory).
    """

    host: str | None
    pid: int | None
    since: float | None
    purpose: str | None = None
    expires_in: float | None = None

    @classmethod
    def current(cls, purpose: str) -> LeaseHolder:
        """This process, taking a lease now for ``purpose``."""
        return cls(socket.gethostname(), os.getpid(), time.time(), check_purpose(purpose))

    def describe(self, now: float | None = None) -> str:
        """What the holder is doing, who it is and since when, for messages.

        E.g. "being executed by pid 4242 on host 'box' since 2026-12-01 10:00:00 (12s ago)".
        """
        doing = "being executed" if self.purpose in (None, EXECUTE) else f"being edited ({self.purpose})"
        if self.pid is None and self.host is None:
            text = f"{doing} by a holder that did not record itself"
        else:
            pid = f"pid {self.pid}" if self.pid is not None else "an unknown pid"
            host = f"host {self.host!r}" if self.host is not None else "an unknown host"
            text = f"{doing} by {pid} on {host}"
        if self.since is not None and math.isfinite(self.since):
            age = max(0.0, (time.time() if now is None else now) - self.since)
            text += f" since {_local_time(self.since)} ({_span(age)} ago)"
        if self.expires_in is not None:
            text += f"; its lease expires in {self.expires_in:.1f}s unless renewed"
        return text

    # --- lease files: a JSON record written by the holder into ``<id>.lease`` -------------------

    def to_record(self) -> bytes:
        return orjson.dumps(
            {"host": self.host, "pid": self.pid, "since": self.since, "purpose": self.purpose}
        )

    @classmethod
    def from_record(cls, raw: bytes) -> LeaseHolder | None:
        """The holder a lease file names; None if it holds no record (or a damaged one)."""
        try:
            record: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(record, dict):
            return None
        host, pid, since, purpose = (record.get(key) for key in ("host", "pid", "since", "purpose"))
        return cls(
            host=host if isinstance(host, str) else None,
            pid=pid if type(pid) is int else None,
            since=float(since) if isinstance(since, int | float) and not isinstance(since, bool) else None,
            purpose=purpose if isinstance(purpose, str) and _PURPOSE.fullmatch(purpose) else None,
        )

    # --- Redis: the lease key's value, ``host:pid:unique:since:purpose`` -------------------------

    def token(self, unique: str) -> str:
        """A lease token naming this holder; ``unique`` tells two leases of one process apart."""
        return f"{self.host}:{self.pid}:{unique}:{self.since!r}:{self.purpose}"

    @classmethod
    def from_token(cls, token: str, expires_in: float | None = None) -> LeaseHolder:
        """The holder a token names (tokens of older versions end after the unique part)."""
        parts = token.split(":")  # host names have no colons
        pid = parts[1] if len(parts) > 1 else ""
        since: float | None = None
        if len(parts) > 3:
            try:
                since = float(parts[3])
            except ValueError:
                since = None
        purpose = parts[4] if len(parts) > 4 and _PURPOSE.fullmatch(parts[4]) else None
        return cls(
            host=parts[0] or None,
            pid=int(pid) if pid.isdigit() and len(pid) < 20 else None,
            since=since,
            purpose=purpose,
            expires_in=expires_in,
        )

    def expiring_in(self, seconds: float | None) -> LeaseHolder:
        return replace(self, expires_in=seconds)


def check_purpose(purpose: str) -> str:
    """``purpose`` if it is a short name (letters, digits, underscores), else ``ValueError``."""
    if not isinstance(purpose, str) or not _PURPOSE.fullmatch(purpose):
        raise ValueError(f"a lease purpose is a short name like 'execute' or 'reset_nodes', not {purpose!r}")
    return purpose


def _local_time(timestamp: float) -> str:
    try:
        return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return f"unix time {timestamp!r}"


def _span(seconds: float) -> str:
    """A rough age for messages: seconds, then minutes, then hours."""
    if seconds < 120:
        return f"{seconds:.0f}s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
