"""Who is running: host name, user name and process id, as recorded in runs, attempts and audit entries."""

from __future__ import annotations

import functools
import getpass
import os
import socket

__all__ = ["current_host", "current_pid", "current_user"]


@functools.cache
def current_host() -> str:
    """This machine's host name ("" if the system will not say)."""
    try:
        return socket.gethostname()
    except OSError:
        return ""


@functools.cache
def current_user() -> str:
    """The login name of this process's user; the numeric uid where no name is known (containers)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no entry in the password database and no $USER
        return str(os.getuid()) if hasattr(os, "getuid") else ""


def current_pid() -> int:
    """This process's id (not cached: a forked child has its own)."""
    return os.getpid()
