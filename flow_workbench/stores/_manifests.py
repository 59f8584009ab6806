"""The commit manifests of the file stores: a checksummed list of renames in ``.transactions/``.

A transaction's snapshots are written to temp files; the durable rename of its manifest is the
commit point; the renames it lists are then made, and recovery (any store opening the folder,
loading or writing one of its workflows) makes them again if the committer died meanwhile.
The folder is only ever used through a descriptor opened without following a symlink.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import TypeAlias

import orjson

from ..errors import CorruptStateError, StoreIOError
from ..ids import is_valid_workflow_id
from ._atomic import TEMP_PREFIX, TEMP_SUFFIX, open_folder, read_state_file
from ._crc import crc32
from ._kinds import STATE_SUFFIXES

#: Subfolder of commit manifests; created on the first transaction.
TRANSACTIONS_DIR = ".transactions"
MANIFEST_SUFFIX = ".manifest"
#: One rename of a commit: (workflow id, temp file name, state file name), names in the store folder.
Entry: TypeAlias = tuple[str, str, str]


@contextlib.contextmanager
def transactions_folder(txn_dir: str, *, create: bool) -> Iterator[int | None]:
    """The ``.transactions`` folder, open for ``dir_fd`` use (None if absent and not ``create``).

    A symlink there is never followed (``CorruptStateError``): manifests written through one
    land outside the store, and manifests read through one would rename files inside it.
    """
    if create:
        try:
            os.mkdir(txn_dir, 0o700)
        except FileExistsError:
            pass  # a folder (or something open_folder refuses)
        except OSError as error:
            raise StoreIOError("create", txn_dir, error) from error
    try:
        folder = open_folder(txn_dir)
    except FileNotFoundError as error:
        if create:  # removed between mkdir and open
            raise StoreIOError("open", txn_dir, error) from error
        yield None
        return
    try:
        yield folder
    finally:
        os.close(folder)


def read_manifests(folder: int, txn_dir: str, max_bytes: int) -> list[tuple[str, list[Entry] | None]]:
    """The manifests in ``folder`` (the open ``txn_dir``) and their entries (None if damaged)."""
    try:
        names = os.listdir(folder)
    except OSError as error:
        raise StoreIOError("list", txn_dir, error) from error
    found: list[tuple[str, list[Entry] | None]] = []
    for name in sorted(names):
        if name.endswith(MANIFEST_SUFFIX) and not name.startswith(TEMP_PREFIX):
            path = os.path.join(txn_dir, name)
            try:
                raw, _ = read_state_file(path, max_bytes=max_bytes, folder=folder)
            except FileNotFoundError:
                continue
            except CorruptStateError:
                # A directory, symlink, FIFO or oversized file is no manifest of ours:
                # ignored like a damaged one, not a reason to refuse the whole folder.
                found.append((path, None))
                continue
            found.append((path, parse_manifest(raw)))
    return found


def exists_in(folder: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def encode_manifest(entries: Sequence[Entry]) -> bytes:
    body = orjson.dumps([list(entry) for entry in entries])
    return orjson.dumps({"crc32": crc32(body), "entries": orjson.Fragment(body)})


def parse_manifest(raw: bytes) -> list[Entry] | None:
    """Entries (id, temp name, target name) of a manifest, or None if it is damaged or unsafe."""
    try:
        document = orjson.loads(raw)
        entries = document["entries"]
        if crc32(orjson.dumps(entries)) != document["crc32"]:
            return None
        parsed = []
        for workflow_id, temp_name, target_name in entries:
            # Only plain names of this folder: a forged manifest must not rename arbitrary files.
            if not (
                is_valid_workflow_id(workflow_id)
                and target_name in {workflow_id + suffix for suffix in STATE_SUFFIXES}
                and isinstance(temp_name, str)
                and temp_name.startswith(TEMP_PREFIX + target_name + ".")
                and temp_name.endswith(TEMP_SUFFIX)
                and "/" not in temp_name
                and "\x00" not in temp_name
            ):
                return None
            parsed.append((workflow_id, temp_name, target_name))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    return parsed
