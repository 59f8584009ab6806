"""Crash-safe file writes (temp file, fsync, rename, directory fsync) and capped, no-follow reads."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
import stat
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence

from ..errors import CorruptStateError, StoreIOError

Buffer = bytes | bytearray | memoryview

#: Largest state file read by default; the Go store uses the same cap and calls anything larger corrupt.
DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024

#: Prefix and suffix of temp files (``.<target>.<random>.tmp``). Listings recognise them by the
#: suffix: ids may start with a dot, but no state or sidecar file name ends in ".tmp".
TEMP_PREFIX = "."
TEMP_SUFFIX = ".tmp"

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
# O_NONBLOCK so that opening a FIFO planted where a state file should be cannot hang the reader.
_READ_FLAGS = os.O_RDONLY | _O_CLOEXEC | _O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0)
_FOLDER_FLAGS = os.O_RDONLY | _O_CLOEXEC | _O_NOFOLLOW | getattr(os, "O_DIRECTORY", 0)


def temp_name_for(target_name: str) -> str:
    """The mkstemp prefix of temp files for ``target_name`` (so cleanup can tell whose they are)."""
    return f"{TEMP_PREFIX}{target_name}."


def is_temp_name(name: str) -> bool:
    """Whether a file name is one of our temp files' (see ``TEMP_PREFIX``)."""
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)


def fsync(fd: int) -> None:
    """Flush a file to stable storage (F_FULLFSYNC on macOS, where fsync may stop at the drive cache)."""
    if sys.platform == "darwin":  # pragma: no cover - exercised on macOS only
        fcntl.fcntl(fd, getattr(fcntl, "F_FULLFSYNC", 51))
    else:
        os.fsync(fd)


def fsync_directory(directory: str) -> None:
    """Make renames, creations and unlinks in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | _O_CLOEXEC)
    try:
        fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, payload: Buffer) -> None:
    """``os.write`` until every byte is written (a write may be short, e.g. near a full disk)."""
    view = memoryview(payload).cast("B")
    while view:
        written = os.write(fd, view)
        view = view[written:]


def write_temp(directory: str, target_name: str, payload: Buffer | Sequence[Buffer], *, durable: bool) -> str:
    """Write ``payload`` into a new mode-0600 temp file in ``directory``; returns its path.

    The temp file is removed again if anything fails; nothing is retried (a failed fsync may
    have dropped the dirty pages, so a second fsync could report success for lost data).
    """
    fd, temp_path = open_temp(directory, target_name, payload, durable=durable)
    try:
        os.close(fd)
    except BaseException:
        unlink_quietly(temp_path)
        raise
    return temp_path


def open_temp(
    directory: str, target_name: str, payload: Buffer | Sequence[Buffer], *, durable: bool
) -> tuple[int, str]:
    """``write_temp``, but the temp file's descriptor (read-write) is returned open with its path.

    The caller owns the descriptor; it stays valid for the file after a rename, so a journal
    created this way is appended to without opening it again. On failure nothing is left.
    """
    parts = [payload] if isinstance(payload, bytes | bytearray | memoryview) else list(payload)
    fd, temp_path = tempfile.mkstemp(prefix=temp_name_for(target_name), suffix=TEMP_SUFFIX, dir=directory)
    try:
        for part in parts:
            write_all(fd, part)
        if durable:
            fsync(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        unlink_quietly(temp_path)
        raise
    return fd, temp_path


def replace_temp(temp_path: str, path: str) -> None:
    """``os.replace(temp_path, path)``; the temp file is removed if the rename fails."""
    try:
        os.replace(temp_path, path)
    except BaseException:
        unlink_quietly(temp_path)
        raise


def atomic_write(
    path: str, payload: Buffer | Sequence[Buffer], *, durable: bool = True, operation: str = "save"
) -> None:
    """Replace ``path`` with ``payload`` so that readers see the old or the new bytes, never a mix.

    ``durable=True`` (the default) fsyncs the data before the rename and the directory after it,
    so the new content survives power loss once this returns. ``durable=False`` skips both
    fsyncs: still atomic against a crash of the process, but after a power loss or kernel crash
    the file may hold the old content (or, on some filesystems, be empty): "ACI without D".

    Raises ``StoreIOError`` for any OS failure; then no temp file is left behind. If only the
    final directory fsync fails the rename has happened but may not survive power loss: the
    error is still raised, because success is only reported once the state is durable.
    """
    directory, name = os.path.split(path)
    try:
        temp_path = write_temp(directory, name, payload, durable=durable)
        replace_temp(temp_path, path)
        if durable:
            fsync_directory(directory)
    except OSError as error:
        raise StoreIOError(operation, path, error) from error


def open_folder(path: str) -> int:
    """Open the folder ``path`` for ``dir_fd`` use, refusing a symlink (even to a folder) or a file.

    Everything done through the descriptor stays inside that folder, even if the path is swapped
    for a symlink afterwards. Raises ``FileNotFoundError`` when nothing is there,
    ``CorruptStateError`` for a symlink or non-folder, ``StoreIOError`` for other OS failures.
    """
    try:
        fd = os.open(path, _FOLDER_FLAGS)
    except FileNotFoundError:
        raise
    except OSError as error:
        if error.errno not in (errno.ELOOP, errno.ENOTDIR):  # Linux says ENOTDIR for a symlink
            raise StoreIOError("open", path, error) from error
        if os.path.islink(path):
            raise CorruptStateError(path, "is a symbolic link; it is never followed") from None
        raise CorruptStateError(path, "is not a directory") from None
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):  # where O_DIRECTORY is missing
            raise CorruptStateError(path, "is not a directory")
    except BaseException as error:
        os.close(fd)
        if isinstance(error, OSError) and not isinstance(error, StoreIOError):
            raise StoreIOError("open", path, error) from error
        raise
    return fd


def read_state_file(
    path: str, *, max_bytes: int = DEFAULT_MAX_FILE_BYTES, folder: int | None = None
) -> tuple[bytes, os.stat_result]:
    """Read a whole state file, refusing symlinks, non-regular files and files over ``max_bytes``.

    With ``folder`` (an ``open_folder`` descriptor) the file's name is looked up in that folder;
    ``path`` still names it in errors.

    Returns the bytes and the ``fstat`` of the file they came from (its inode tells a caller
    whether the path still names the same file afterwards).

    Raises ``FileNotFoundError`` when there is no file (callers turn it into
    ``WorkflowNotFoundError``), ``CorruptStateError`` for something that is not a plain state
    file, and ``StoreIOError`` for other OS failures.
    """
    fd, info = _open_state_file(path, max_bytes, folder)
    try:
        return _read_to_end(fd, info.st_size, path, max_bytes), info
    except OSError as error:
        raise StoreIOError("read", path, error) from error
    finally:
        os.close(fd)


#: Below this size reading is cheaper than mapping.
MAP_THRESHOLD = 1 << 20


@contextlib.contextmanager
def mapped_state_file(path: str, *, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> Iterator[Buffer]:
    """The state file's bytes for a quick look (one node's status): memory-mapped when large,
    so only the pages actually read are touched. Same checks and errors as ``read_state_file``.

    Safe against the writers of this store and the Go library, which replace files by rename and
    never change a published file in place.
    """
    fd, info = _open_state_file(path, max_bytes)
    try:
        if info.st_size < MAP_THRESHOLD:
            yield _read_to_end(fd, info.st_size, path, max_bytes)
            return
        try:
            mapped = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as error:
            raise StoreIOError("map", path, error) from error
        view = memoryview(mapped)
        try:
            yield view
        finally:
            view.release()
            with contextlib.suppress(BufferError):  # a view still held elsewhere: GC closes it
                mapped.close()
    finally:
        os.close(fd)


def _open_state_file(path: str, max_bytes: int, folder: int | None = None) -> tuple[int, os.stat_result]:
    """Open without following symlinks and check it is a regular file within the size cap."""
    try:
        if folder is None:
            fd = os.open(path, _READ_FLAGS)
        else:
            fd = os.open(os.path.basename(path), _READ_FLAGS, dir_fd=folder)
    except FileNotFoundError:
        raise
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise CorruptStateError(path, "is a symbolic link; state files are never followed") from None
        raise StoreIOError("read", path, error) from error
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise CorruptStateError(path, f"is {kind}, not a state file")
        if info.st_size > max_bytes:
            raise CorruptStateError(path, f"{info.st_size} bytes is over the {max_bytes}-byte cap")
    except OSError as error:
        os.close(fd)
        raise StoreIOError("read", path, error) from error
    except BaseException:
        os.close(fd)
        raise
    return fd, info


def _read_to_end(fd: int, expected: int, path: str, max_bytes: int) -> bytes:
    """Read to end of file; the file may have grown since fstat, so the cap is checked again."""
    chunks = []
    total = 0
    while True:
        chunk = os.read(fd, max(expected - total, 1 << 16))
        if not chunk:
            break
        total += len(chunk)
        if total > max_bytes:
            raise CorruptStateError(path, f"grew over the {max_bytes}-byte cap while being read")
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def check_not_special(path: str) -> None:
    """Refuse to replace a symlink or directory planted where a state file should be."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        raise CorruptStateError(path, "is a symbolic link; refusing to replace it")
    if not stat.S_ISREG(info.st_mode):
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise CorruptStateError(path, f"is {kind}, not a state file; refusing to replace it")


def lock_sidecar(path: str, timeout: float) -> int:
    """Open (creating, mode 0600) and ``flock`` a lock file; returns the descriptor holding it.

    Close the descriptor to release. ``timeout``: seconds to wait, 0 to try once, negative to
    wait forever. Raises ``StoreIOError`` (wrapping ``TimeoutError`` when it expires).
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | _O_CLOEXEC | _O_NOFOLLOW, 0o600)
    except OSError as error:
        raise StoreIOError("lock", path, error) from error
    try:
        if timeout < 0:
            fcntl.flock(fd, fcntl.LOCK_EX)
            return fd
        deadline = time.monotonic() + timeout
        pause = 0.0005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise StoreIOError(
                        "lock", path, TimeoutError(f"still locked by another process after {timeout} s")
                    ) from None
                time.sleep(min(pause, remaining))
                pause = min(pause * 2, 0.02)
    except BaseException as error:
        os.close(fd)
        if isinstance(error, OSError) and not isinstance(error, StoreIOError):
            raise StoreIOError("lock", path, error) from error
        raise


def unlink_if_exists(path: str) -> bool:
    """Remove a file; returns whether it existed."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def unlink_quietly(path: str) -> None:
    # Best effort: the caller is already raising the error that matters.
    with contextlib.suppress(OSError):
        os.unlink(path)
