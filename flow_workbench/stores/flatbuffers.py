"""FlatBuffersStore: workflow states as FlatBuffers files, in this project's layout or the Go one."""

from __future__ import annotations

import os
from typing import Any

from .files import FileStore

LAYOUTS = ("native", "go")


class FlatBuffersStore(FileStore):
    """``<base_dir>/<id>.fb`` files; reads both this project's columnar layout and the Go library's.

    ``layout="native"`` (default) writes the columnar layout: every field exact, checksummed,
    fast to encode and to summarise. ``layout="go"`` writes the Go Flow Orchestrator layout, the
    explicit choice for handing a state back to a Go service. That layout has no room for the
    version, created_at, per-node history, DAG structure or audit trail, so those are dropped
    (see ``GoFlatBuffersCodec``), and:

    - a file's version is a token of its bytes (``_versions``): saves are still compare-and-set
      (a copy loaded before someone else, or Go, rewrote the file gets ``VersionConflictError``;
      the same copy saved again never does);
    - ``save_node`` writes a full snapshot each time (journals need a stored version);
    - strings that are not UTF-8 (read from a Go file) are written back as the same bytes, and
      an output read from a Go file as the very text it was read from.

    Options are those of ``FileStore``.
    """

    def __init__(self, base_dir: str | os.PathLike[str], layout: str = "native", **options: Any) -> None:
        # Imported here so that importing the stores package does not load flatbuffers and numpy.
        from .flatbuffers_codec import FlatBuffersCodec, GoFlatBuffersCodec

        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
        self.layout = layout
        codec = FlatBuffersCodec() if layout == "native" else GoFlatBuffersCodec()
        super().__init__(base_dir, codec, **options)
