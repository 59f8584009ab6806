"""Summaries of state files, one at a time or for a whole folder (ours and the Go library's)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

from .._gc_pause import cyclic_gc_paused
from ..ids import workflow_id_problem
from ._atomic import DEFAULT_MAX_FILE_BYTES, TEMP_SUFFIX, read_state_file
from ._journal import JournalContents, journal_suffix, read_journal, replay
from ._kinds import codecs_by_suffix
from .base import WorkflowSummary, summary_from_data
from .codec import StateCodec, SummarizesJournals


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

    A journal whose base matches the snapshot is folded in. A codec with
    ``summarize_with_journal`` (our FlatBuffers layout, for a short journal) does that from the
    records and a few blocks of the snapshot; otherwise it takes a full decode and ``replay``.
    Either way the summary is the same.
    """
    raw, info = read_state_file(path, max_bytes=max_bytes)
    contents = read_journal(journal_path, max_bytes) if journal_path else None
    if contents is not None and contents.records:
        folded = None
        if isinstance(codec, SummarizesJournals):
            folded = codec.summarize_with_journal(raw, path, contents, journal_path or "")
        if folded is None:
            folded = _fold_journal(raw, path, codec, contents, journal_path or "")
        if folded is not None:
            return folded
    summary = codec.summarize(raw, path)
    return summary if summary.size_bytes is not None else replace(summary, size_bytes=info.st_size)


def _fold_journal(
    raw: bytes, path: str, codec: StateCodec, contents: JournalContents, journal_path: str
) -> WorkflowSummary | None:
    with cyclic_gc_paused():  # a large acyclic graph: see _gc_pause
        data = codec.decode(raw, path)
    if not contents.applies_to(data.version):
        return None
    replay(data, contents, journal_path)
    return summary_from_data(data, codec.format, source=path, size_bytes=len(raw))


def scan_folder(
    path: str | os.PathLike[str],
    *,
    codecs: Mapping[str, StateCodec | None] | None = None,
    max_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> list[FolderEntry]:
    """Summaries of every state file (``_kinds.STATE_SUFFIXES``) in ``path``, sorted by file name.

    Each file is decoded with the codec of its suffix (both read ours and the Go library's
    layout). A file that cannot be read becomes an entry with ``error`` set instead of failing
    the scan; so does a state file whose name is no valid workflow id (``InvalidWorkflowIdError``,
    with the reason: no store opens it), instead of being left out silently. Temp, lock and
    journal files, directories and symlinks are skipped. Cost per file: one open, fstat, read
    and summary; journals are found from the same directory listing, so no extra lookups are
    made for files without one.
    """
    folder = os.fspath(path)
    by_suffix = dict(codecs) if codecs is not None else codecs_by_suffix()
    candidates: list[tuple[str, str, str, str, str | None]] = []
    journals: set[str] = set()
    journal_suffixes = tuple({journal_suffix(suffix) for suffix in by_suffix})
    with os.scandir(folder) as entries:
        for entry in entries:
            name = entry.name
            if name.endswith(TEMP_SUFFIX):
                continue
            if name.endswith(journal_suffixes):
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
        journal_name = stem + journal_suffix(suffix)
        journal_path = os.path.join(folder, journal_name) if journal_name in journals else None
        try:
            summary = summarize_state_file(file_path, codec, journal_path=journal_path, max_bytes=max_bytes)
        except Exception as error:
            # One unreadable file must not hide the others; its row carries the error instead.
            append(FolderEntry(file_path, stem, None, str(error), type(error).__name__))
        else:
            append(FolderEntry(file_path, stem, summary))
    return results
