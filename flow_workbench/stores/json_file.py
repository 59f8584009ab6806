"""JSONFileStore: workflow states as JSON files the Go library's JSON store can also read."""

from __future__ import annotations

import os
from typing import Any

from .files import FileStore
from .json_codec import JSONCodec


class JSONFileStore(FileStore):
    """``<base_dir>/<id>.json`` files: the Go snapshot keys plus this project's ``flow_workbench`` block.

    Reads files written by the Go library as well (they load with version 0 and are rewritten
    in this project's layout on the next save). Options are those of ``FileStore``.
    """

    def __init__(self, base_dir: str | os.PathLike[str], **options: Any) -> None:
        # Go and people read the file alone: every run ends with a snapshot, never a journal.
        options.setdefault("run_end_records", 0)
        super().__init__(base_dir, JSONCodec(), **options)
