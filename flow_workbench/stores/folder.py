"""Summaries of state files, one at a time or for a whole folder (ours and the Go library's)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

from ..ids import workflow_id_problem
from ._atomic import DEFAULT_MAX_FILE_BYTES, TEMP_SUFFIX, read_state_file
from ._journal import JOURNAL_SUFFIX, JournalContents, read_journal, replay
from .base import StateFormat, WorkflowStore, WorkflowSummary, summary_from_data
from .codec import StateCodec


@dataclass(frozen=True)
class FolderEntry:
    """One state file of a folder: its summary, or why it could not be read."""

    path: str
    workflow_id: str
    summary: WorkflowSummary | None
    error: str | None = None
    error_type: str | None = None

    @property
    def ok(self) -> bool:
        return self.summary is not None


def summarize_state_file(
    path: str,
    codec: StateCodec,
    *,
    journal_path: str | None = None,
    max_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> WorkflowSummary:
    """Summary of one state file through the codec's light API.

    A journal whose base matches the snapshot is folded in; that needs a full decode (records
    change individual nodes, which a summary no longer has), so it is only done when a journal
    with records exists, i.e. for workflows saved node by node and not yet compacted.
    """
    raw, info = read_state_file(path, max_bytes=max_bytes)
    contents = read_journal(journal_path, max_bytes) if journal_path else None
    if contents is not None and contents.records:
        folded = _fold_journal(raw, path, codec, contents, journal_path or "")
        if folded is not None:
            return folded
    summary = codec.summarize(raw, path)
    return summary if summary.size_bytes is not None else replace(summary, size_bytes=info.st_size)


def _fold_journal(
    raw: bytes, path: str, codec: StateCodec, contents: JournalContents, journal_path: str
) -> WorkflowSummary | None:
    data = codec.decode(raw, path)
    if not contents.applies_to(data.version):
        return None
    replay(data, contents, journal_path)
    return summary_from_data(data, codec.format, source=path, size_bytes=len(raw))


def default_codecs() -> dict[str, StateCodec | None]:
    """Codecs by file suffix; None marks a suffix whose codec cannot be imported here."""
    from .json_codec import JSONCodec

    codecs: dict[str, StateCodec | None] = {".json": JSONCodec(), ".fb": None}
    try:
        # Imported lazily: the FlatBuffers codec pulls in flatbuffers and numpy.
        from .flatbuffers_codec import FlatBuffersCodec
    except ImportError:  # pragma: no cover - only while the codec module is missing
        pass
    else:
        codecs[".fb"] = FlatBuffersCodec()
    return codecs


def scan_folder(
    path: str | os.PathLike[str],
    *,
    codecs: Mapping[str, StateCodec | None] | None = None,
    max_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> list[FolderEntry]:
    """Summaries of every ``.json`` and ``.fb`` state file in ``path``, sorted by file name.

    Each file is decoded with the codec of its suffix (both read ours and the Go library's
    layout). A file that cannot be read becomes an entry with ``error`` set instead of failing
    the scan; so does a state file whose name is no valid workflow id (``InvalidWorkflowIdError``,
    with the reason: no store opens it), instead of being left out silently. Temp, lock and
    journal files, directories and symlinks are skipped. Cost per file: one open, fstat, read
    and summary; journals are found from the same directory listing, so no extra lookups are
    made for files without one.
    """
    folder = os.fspath(path)
    by_suffix = dict(codecs) if codecs is not None else default_codecs()
    candidates: list[tuple[str, str, str, str, str | None]] = []
    journals: set[str] = set()
    with os.scandir(folder) as entries:
        for entry in entries:
            name = entry.name
            if name.endswith(TEMP_SUFFIX):
                continue
            if name.endswith(JOURNAL_SUFFIX):
                journals.add(name)
                continue
            stem, dot, extension = name.rpartition(".")
            suffix = dot + extension
            if dot and suffix in by_suffix and entry.is_file(follow_symlinks=False):
                candidates.append((name, stem, suffix, entry.path, workflow_id_problem(stem)))
    candidates.sort()
    results: list[FolderEntry] = []
    append = results.append
    for _, stem, suffix, file_path, problem in candidates:
        if problem is not None:
            reason = f"the file name is not a valid workflow id: {problem}"
            append(FolderEntry(file_path, stem, None, reason, "InvalidWorkflowIdError"))
            continue
        codec = by_suffix.get(suffix)
        if codec is None:
            append(FolderEntry(file_path, stem, None, "no codec for this suffix is installed", "ImportError"))
            continue
        journal_name = stem + JOURNAL_SUFFIX
        journal_path = os.path.join(folder, journal_name) if journal_name in journals else None
        try:
            summary = summarize_state_file(file_path, codec, journal_path=journal_path, max_bytes=max_bytes)
        except Exception as error:
            # One unreadable file must not hide the others; its row carries the error instead.
            append(FolderEntry(file_path, stem, None, str(error), type(error).__name__))
        else:
            append(FolderEntry(file_path, stem, summary))
    return results


#: Suffixes of state files, in the order a folder is searched for an id.
STATE_SUFFIXES = (".fb", ".json")


def open_file_store(folder: str | os.PathLike[str], suffix: str, *, go_layout: bool = False) -> WorkflowStore:
    """The file store of ``<id><suffix>`` files in ``folder``; ``go_layout`` writes Go's FlatBuffers.

    Both file stores read the Go library's files of their suffix. Our JSON files are a superset of
    Go's, so only the FlatBuffers store needs to be told to keep writing the Go layout.
    """
    # Imported here: the concrete stores import this module (scan_folder).
    if suffix == ".json":
        from .json_file import JSONFileStore

        return JSONFileStore(folder)
    if suffix != ".fb":
        raise ValueError(f"not a state file suffix: {suffix!r} (expected .fb or .json)")
    from .flatbuffers import FlatBuffersStore

    return FlatBuffersStore(folder, layout="go" if go_layout else "native")


def store_for_file(path: str | os.PathLike[str]) -> tuple[WorkflowStore, StateFormat]:
    """The file store that reads ``path`` and writes it back in the layout it has now, and that layout."""
    folder, name = os.path.split(os.fspath(path))
    workflow_id, suffix = os.path.splitext(name)
    store = open_file_store(folder or ".", suffix)
    layout = store.summary(workflow_id).format
    if layout is StateFormat.GO_FLATBUFFERS:
        store.close()
        store = open_file_store(folder or ".", suffix, go_layout=True)
    return store, layout
