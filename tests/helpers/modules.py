"""Which modules a piece of code loads, seen from a fresh interpreter (imports stay light)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable


def modules_loaded_by(code: str, candidates: Iterable[str]) -> list[str]:
    """The ``candidates`` found in ``sys.modules`` after ``code`` ran in a new Python process."""
    wanted = json.dumps(sorted(set(candidates)))
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(set({wanted}) & set(sys.modules))))\n"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    loaded: list[str] = json.loads(out.stdout)
    return loaded
