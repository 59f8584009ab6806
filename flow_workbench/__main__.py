"""``python -m flow_workbench``: the same command line as the ``flow-workbench`` script."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
