"""flow_workbench.testing: the shipped store contract passes a correct custom store and fails a wrong one."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

#: A user's store in a script: rows of JSONCodec bytes in a dict; ``COMPARE_AND_SET`` toggles the check.
CUSTOM_STORE = textwrap.dedent(
    """
    import sys
    import threading
    import time

    from flow_workbench import VersionConflictError, WorkflowNotFoundError, validate_workflow_id
    from flow_workbench.stores import JSONCodec, WorkflowStore
    from flow_workbench.testing import run_store_contract

    COMPARE_AND_SET = sys.argv[1] == "cas"


    class DictStore(WorkflowStore):
        def __init__(self):
            self._rows, self._codec, self._lock = {}, JSONCodec(), threading.Lock()

        def save(self, data):
            validate_workflow_id(data.id)
            with self.metrics.measure("save"), self._lock:
                stored = self._rows.get(data.id)
                if COMPARE_AND_SET and stored is not None and stored[0] > data.version:
                    raise VersionConflictError(data.id, data.version, stored[0])
                version, now = data.version + 1, time.time()
                raw = bytes(self._codec.encode(data, version=version, updated_at=now))
                self._rows[data.id] = (version, raw)
                data.version, data.updated_at = version, now

        def load(self, workflow_id):
            validate_workflow_id(workflow_id)
            with self.metrics.measure("load"):
                row = self._rows.get(workflow_id)
                if row is None:
                    raise WorkflowNotFoundError(workflow_id)
                return self._codec.decode(row[1], workflow_id)

        def list_workflows(self):
            with self.metrics.measure("list"):
                return sorted(self._rows)

        def delete(self, workflow_id):
            validate_workflow_id(workflow_id)
            with self.metrics.measure("delete"), self._lock:
                if self._rows.pop(workflow_id, None) is None:
                    raise WorkflowNotFoundError(workflow_id)


    sys.exit(run_store_contract(lambda folder: DictStore(), "-q"))
    """
)


def _run(tmp_path: Path, mode: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "my_store.py"
    script.write_text(CUSTOM_STORE)
    return subprocess.run(
        [sys.executable, str(script), mode],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


@pytest.mark.timeout(600)
def test_a_correct_custom_store_passes_the_shipped_contract(tmp_path: Path) -> None:
    result = _run(tmp_path, "cas")
    assert result.returncode == 0, result.stdout + result.stderr
    # not a TransactionalStore, and a dict keys every write by the state's own id
    assert "passed, 5 skipped" in result.stdout
    assert "is not a TransactionalStore" in result.stdout


@pytest.mark.timeout(600)
def test_a_store_without_compare_and_set_fails_the_contract(tmp_path: Path) -> None:
    result = _run(tmp_path, "no-cas")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED" in result.stdout and "test_stale_save_raises_and_changes_nothing" in result.stdout
