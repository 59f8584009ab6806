"""Folders of the repository the tests read from."""

from __future__ import annotations

from pathlib import Path

#: The repository's root folder.
REPO = Path(__file__).resolve().parents[2]

#: Files written by the Go library (and their expected contents), checked by the interop tests.
GOLDEN_GO = REPO / "tests" / "golden" / "go"

#: The notebooks the project ships.
NOTEBOOKS = REPO / "notebooks"
