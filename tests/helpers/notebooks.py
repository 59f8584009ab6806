"""What each shipped notebook must show once executed, and the text of an executed notebook."""

from __future__ import annotations

from typing import Any

#: Text each notebook's outputs must contain: the results it is there to show.
EXPECTED: dict[str, list[str]] = {
    "quickstart.ipynb": [
        "churn_model: RuntimeError",  # the intentional failure was reported
        "would reset: ['churn_model', 'publish']",
        "completed=7",  # run again finished every node
        "reset_failed",  # the audit log
        "after reset",  # the run history says why the second run ran
        "Name: amount, dtype: float64",  # a Series output read back from its artifact
        "<RecoveryPanel 'etl-demo'",
        "<StoreBrowser 'workbench-data/quickstart'",
    ],
    "scale_out.ipynb": [
        "workers: 2",
        "ran 8 node(s)",
        "completed=8",
        "shards ran in worker processes: [",  # more than one worker pid, none of them ours
        "refused: workflow 'fan-out-demo' is being executed by pid",  # the lease names its holder
        "closed",
    ],
    "go_interop.ipynb": [
        "compensation_failed",
        "Go FlatBuffers",
        "9007199254740993",
        "rolling back: True | trigger cause: canceled",
        "would reset: ['compfailed_node']",
        "'compfailed_node': 'pending'",
        "stored without its DAG structure",
        "<StoreBrowser 'workbench-data/go-files'",
    ],
    "persistence_and_recovery.ipynb": [
        "flatbuffers  ids=['orders-1'] report='1180 clean rows'",  # copy_workflow kept every value
        "orders-1.fb      flow_workbench-flatbuffers   nodes=3 {'completed': 3}",  # scan_folder
        # the run record, each start and end (the last end goes into the final save)
        "NODE : 2 full save(s), 8 node save(s)",
        "LEVEL: 3 full save(s), 0 node save(s)",
        "END  : 1 full save(s), 0 node save(s)",
        "record calls=6",  # store.metrics of a FlatBuffersStore with Persistence.NODE (start+end combined)
        "['wide-1.fb', 'wide-1.journal']",  # a short NODE run ends with a journal record
        "crashed: process died while running transform",
        "runs per node: {'extract': 1, 'transform': 2, 'load': 1, 'report': 1}",  # resumed, not redone
        "re-ran: ['load']",  # manual recovery in the Go style
        "would reset: ['score', 'publish']",
        "re-ran: ['score', 'publish']",
        "would reset: ['ingest', 'archive', 'score', 'publish']",  # downstream, dry run
        "'score': 'completed', 'publish': 'completed'}",  # ... which changed nothing
        "VersionConflictError: version conflict on workflow 'scoring'",
        "owner in the store: alice",
        "after a failed transfer: {'alice': 90, 'bob': 10}",  # all or nothing
        "reset_failed     ['score', 'publish']",  # the audit log
    ],
    "custom_store.ipynb": [
        "66 passed, 1 skipped",  # the shipped store contract (flow_workbench.testing) on SQLiteStore
        "all checks pass: True",
        '{"flow_workbench":{"checksum":',  # the row holds JSONCodec bytes, not a pickle
        "reset: ['enrich', 'crm_sync']",
        "<RunResult 'signup-1001': ran 2 node(s)",
        "signup-1002  ours JSON          2       1        1      4",  # workflows_frame via summary()
        "<StoreBrowser <SQLiteStore 'workbench-data/custom/workflows.sqlite'>: 2 workflow file(s)>",
    ],
}


def output_text(notebook: Any) -> str:
    """Every text and HTML output of the executed notebook, joined."""
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                parts.append(output["text"])
            for mime in ("text/plain", "text/html"):
                value = output.get("data", {}).get(mime)
                if value:
                    parts.append(value if isinstance(value, str) else "".join(value))
    return "\n".join(parts)
