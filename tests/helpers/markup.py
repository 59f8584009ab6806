"""Markup payloads, and a folder of ours and Go's state files full of them (the notebook and browser
tests check that none of it ever runs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flow_workbench import DAG, WorkflowData
from flow_workbench.status import NodeStatus
from flow_workbench.stores.flatbuffers import FlatBuffersStore
from flow_workbench.stores.json_file import JSONFileStore

#: A folder name is a payload too (it shows in every path and in the error of an unreadable file).
FOLDER_PAYLOAD = "<img src=x onerror=alert(1)>"
#: What a received file may hold; the browser test checks window.__pwned and the contents API.
_FETCH = (
    "fetch('/api/contents/pwned.txt',{method:'PUT',headers:{'Content-Type':'application/json',"
    "'X-XSRFToken':(document.cookie.match(/_xsrf=([^;]+)/)||[,''])[1]},"
    "body:JSON.stringify({type:'file',format:'text',content:'pwned'})})"
)
PAYLOADS = (
    "<img src=x onerror=alert(1)>",
    "<script>window.__pwned=1</script>",
    '"><svg onload=window.__pwned=1>',
    "'><img src=x onerror=alert(2)>",
    "javascript:window.__pwned=1",
    f'<img src=x onerror="window.__pwned=1;{_FETCH}">',
    "&lt;img src=x onerror=alert(3)&gt;",
    '<iframe srcdoc="<script>parent.__pwned=1</script>"></iframe>',
)


def hostile_state(workflow_id: str) -> WorkflowData:
    """A state whose every stored string is a payload: nodes, keys, outputs, errors, audit."""
    data = WorkflowData(workflow_id, created_at=1_700_000_000.0)
    structure: dict[str, list[str]] = {}
    previous: list[str] = []
    for index, payload in enumerate(PAYLOADS):
        data.set(payload, {payload: [payload]})
        status = (NodeStatus.FAILED, NodeStatus.COMPLETED, NodeStatus.SKIPPED)[index % 3]
        data.record_attempt_started(payload, at=1_700_000_000.0 + index)
        failed = status is NodeStatus.FAILED
        data.record_attempt_finished(
            payload,
            status,
            at=1_700_000_001.0 + index,
            error=payload if failed else None,
            error_type=payload if failed else None,
        )
        if status is NodeStatus.COMPLETED:
            data.set_output(payload, payload)
        structure[payload] = previous[-1:]  # a chain: the picture has edges between payloads
        previous.append(payload)
        data.add_audit(payload, [payload], payload)
    data.set_dag_structure(structure)
    return data


def hostile_dag() -> DAG:
    """The payload names as a DAG whose failing node raises an error type named by a payload."""
    hostile_error = type(PAYLOADS[1], (RuntimeError,), {})

    def fail(_data: Any) -> None:
        raise hostile_error(PAYLOADS[0])

    dag = DAG(PAYLOADS[2])
    dag.add_node(PAYLOADS[0], lambda data: PAYLOADS[3])
    dag.add_node(PAYLOADS[1], fail, depends_on=PAYLOADS[0])
    dag.add_node(PAYLOADS[4], lambda data: None, depends_on=PAYLOADS[1])
    return dag


def write_hostile_folder(parent: Path) -> Path:
    """A folder (itself named by a payload) of ours and Go's files full of payloads, plus
    unreadable files whose errors quote the payload path."""
    folder = parent / FOLDER_PAYLOAD
    folder.mkdir(parents=True)
    with JSONFileStore(folder) as store:
        store.save(hostile_state("hostile-json"))
    with FlatBuffersStore(folder) as store:
        store.save(hostile_state("hostile-fb"))
    with FlatBuffersStore(folder, layout="go") as store:
        store.save(hostile_state("hostile-go-fb"))
    go_document = {
        "id": "hostile-go",
        "data": {payload: payload for payload in PAYLOADS},
        "nodeStatus": {payload: "failed" for payload in PAYLOADS},
        "outputs": {payload: {"text": payload} for payload in PAYLOADS},
        "waits": {PAYLOADS[0]: 1_700_000_000_000_000_000},
        "__timestamp": 1_700_000_000_000,
    }
    (folder / "hostile-go.json").write_text(json.dumps(go_document), encoding="utf-8")
    # Go's JSON store takes the id from the file: listed from its summary, refused on load.
    wrong_id = go_document | {"id": PAYLOADS[5]}
    (folder / "hostile-go-id.json").write_text(json.dumps(wrong_id), encoding="utf-8")
    (folder / "unreadable.json").write_text('{"id": "' + PAYLOADS[0], encoding="utf-8")
    (folder / "unreadable.fb").write_bytes(PAYLOADS[1].encode() * 3)
    return folder
