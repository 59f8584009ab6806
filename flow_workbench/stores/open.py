"""Opening the file store of a state file: the kinds of file by suffix and the store of each."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ._kinds import FILE_KINDS, KINDS_BY_SUFFIX, STATE_SUFFIXES, FileKind, codecs_by_suffix, kind_of
from .base import StateFormat
from .files import FileStore
from .flatbuffers import FlatBuffersStore
from .json_file import JSONFileStore

__all__ = [
    "FILE_KINDS",
    "KINDS_BY_SUFFIX",
    "STATE_SUFFIXES",
    "FileKind",
    "codecs_by_suffix",
    "kind_of",
    "open_file_store",
    "store_class",
    "store_for_file",
]

#: The store of each kind, by the kind's name (every kind has one: tests/test_file_stores.py).
_STORES: dict[str, Callable[..., FileStore]] = {"fb": FlatBuffersStore, "json": JSONFileStore}


def store_class(kind: FileKind) -> Callable[..., FileStore]:
    """The store class that reads and writes files of ``kind``: ``store_class(kind)(folder, **options)``."""
    return _STORES[kind.name]


def open_file_store(
    folder: str | os.PathLike[str], suffix: str, *, go_layout: bool = False, **options: Any
) -> FileStore:
    """The file store of ``<id><suffix>`` files in ``folder``; ``go_layout`` writes Go's layout.

    Both file stores read the Go library's files of their suffix. Our JSON files are a superset of
    Go's, so only the FlatBuffers store needs to be told to keep writing the Go layout.
    ``options`` are those of ``FileStore``. ``ValueError`` for a suffix no kind has.
    """
    kind = kind_of(suffix)
    if go_layout and kind.go_layout is not None:
        options["layout"] = kind.go_layout
    return store_class(kind)(folder, **options)


def store_for_file(path: str | os.PathLike[str]) -> tuple[FileStore, StateFormat]:
    """The file store that reads ``path`` and writes it back in the layout it has now, and that layout."""
    folder, name = os.path.split(os.fspath(path))
    workflow_id, suffix = os.path.splitext(name)
    store = open_file_store(folder or ".", suffix)
    layout = store.summary(workflow_id).format
    if layout is StateFormat.GO_FLATBUFFERS:
        store.close()
        store = open_file_store(folder or ".", suffix, go_layout=True)
    return store, layout
