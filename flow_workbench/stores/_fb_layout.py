"""Constants of our FlatBuffers layout (schemas/workflow_state.fbs): identifier, revisions, field ids."""

from __future__ import annotations

from typing import Final

import numpy as np

from ..status import STATUSES_BY_CODE
from . import _fb_go
from ._fb_fields import OUR_STATE

#: file_identifier of schemas/workflow_state.fbs; files without it are read as the Go layout.
IDENTIFIER: Final = b"FWB1"
#: Layout revision written in ``format_version``; a reader refuses revisions it does not know.
#: 2 added the attempt log and the run history (fields 30, 31); files of revision 1 still load.
FORMAT_VERSION: Final = 2
READABLE_FORMATS: Final = frozenset({1, 2})
#: Checksum granularity of the node vectors: node_status verifies ~40 blocks, not the whole file.
BLOCK_SIZE: Final = 4096

# Field ids of fwb.WorkflowState, from the flatc-generated code (``_fb_fields``).
_F_FORMAT: Final = OUR_STATE["format_version"]
_F_ID: Final = OUR_STATE["workflow_id"]
_F_VERSION: Final = OUR_STATE["version"]
_F_CREATED: Final = OUR_STATE["created_at"]
_F_UPDATED: Final = OUR_STATE["updated_at"]
_F_NAMES: Final = OUR_STATE["node_names"]
_F_ENDS: Final = OUR_STATE["node_name_ends"]
_F_STATUSES: Final = OUR_STATE["node_statuses"]
_F_SORTED: Final = OUR_STATE["node_sorted"]
_F_DATA: Final = OUR_STATE["data_json"]
_F_OUTPUTS: Final = OUR_STATE["outputs_json"]
_F_ATTEMPTS: Final = OUR_STATE["attempts_json"]
_F_STARTED: Final = OUR_STATE["started_at_json"]
_F_FINISHED: Final = OUR_STATE["finished_at_json"]
_F_ERRORS: Final = OUR_STATE["errors_json"]
_F_ERROR_TYPES: Final = OUR_STATE["error_types_json"]
_F_DAG: Final = OUR_STATE["dag_json"]
_F_AUDIT: Final = OUR_STATE["audit_json"]
_F_WAITS: Final = OUR_STATE["waits_json"]
_F_ROLLING: Final = OUR_STATE["rolling_back"]
_F_CAUSE: Final = OUR_STATE["trigger_cause"]
_F_BODY: Final = OUR_STATE["body_size"]
_F_BLOCK_ENDS: Final = OUR_STATE["block_ends"]
_F_CRCS: Final = OUR_STATE["block_crcs"]
_F_ATT_KEYS: Final = OUR_STATE["attempts_keys"]
_F_ATT_VALUES: Final = OUR_STATE["attempts_values"]
_F_STARTED_KEYS: Final = OUR_STATE["started_at_keys"]
_F_STARTED_VALUES: Final = OUR_STATE["started_at_values"]
_F_FINISHED_KEYS: Final = OUR_STATE["finished_at_keys"]
_F_FINISHED_VALUES: Final = OUR_STATE["finished_at_values"]
_F_ATTEMPT_LOG: Final = OUR_STATE["attempt_log_json"]
_F_RUNS: Final = OUR_STATE["runs_json"]
_F_CODE_VERSIONS: Final = OUR_STATE["code_versions_json"]
#: (JSON field, keys field, values field, exact Python type, vector dtype) of the typed history columns.
_TYPED: Final = (
    (_F_ATTEMPTS, _F_ATT_KEYS, _F_ATT_VALUES, int, np.dtype("<i8")),
    (_F_STARTED, _F_STARTED_KEYS, _F_STARTED_VALUES, float, np.dtype("<f8")),
    (_F_FINISHED, _F_FINISHED_KEYS, _F_FINISHED_VALUES, float, np.dtype("<f8")),
)

_SEP: Final = "\x00"  # joins node names; names containing it take a slower, offset-based path
_MAX_CODE: Final = len(STATUSES_BY_CODE) - 1
#: Every status code a file may hold (``bytes.translate`` deletes them: what is left is unknown).
_KNOWN_CODES: Final = bytes(range(len(STATUSES_BY_CODE)))
_JSON_OPTIONS: Final = _fb_go.JSON_OPTIONS
