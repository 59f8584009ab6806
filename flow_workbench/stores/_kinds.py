"""The kinds of state file a store folder holds: the one table of suffixes and their codecs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .codec import StateCodec


def _json_codec() -> StateCodec:
    from .json_codec import JSONCodec

    return JSONCodec()


def _flatbuffers_codec() -> StateCodec:
    # Imported lazily: the FlatBuffers codec pulls in flatbuffers and numpy.
    from .flatbuffers_codec import FlatBuffersCodec

    return FlatBuffersCodec()


@dataclass(frozen=True)
class FileKind:
    """One kind of state file: ``<id><suffix>``, read (ours and the Go library's layout) by ``codec()``.

    ``name`` is the command line's ``--format`` word. ``go_layout`` is the ``layout=`` value with
    which this kind's store writes the Go library's layout, or None when its files already are
    what Go reads (our JSON is a superset of Go's). ``open.open_file_store`` maps a kind to its store.
    """

    name: str
    suffix: str
    codec: Callable[[], StateCodec]
    go_layout: str | None = None


#: Every kind, in the order a folder is searched for an id (and preferred on a tie).
FILE_KINDS = (
    FileKind("fb", ".fb", _flatbuffers_codec, go_layout="go"),
    FileKind("json", ".json", _json_codec),
)
#: Suffixes of state files, in the order of ``FILE_KINDS``.
STATE_SUFFIXES = tuple(kind.suffix for kind in FILE_KINDS)
KINDS_BY_SUFFIX = {kind.suffix: kind for kind in FILE_KINDS}


def kind_of(suffix: str) -> FileKind:
    """The kind of files ending in ``suffix``; ``ValueError`` for any other suffix."""
    try:
        return KINDS_BY_SUFFIX[suffix]
    except KeyError:
        expected = " or ".join(STATE_SUFFIXES)
        raise ValueError(f"not a state file suffix: {suffix!r} (expected {expected})") from None


def codecs_by_suffix() -> dict[str, StateCodec | None]:
    """A codec per suffix; None marks a suffix whose codec cannot be imported here."""
    codecs: dict[str, StateCodec | None] = {}
    for kind in FILE_KINDS:
        try:
            codecs[kind.suffix] = kind.codec()
        except ImportError:  # pragma: no cover - only while a codec's module is missing
            codecs[kind.suffix] = None
    return codecs
