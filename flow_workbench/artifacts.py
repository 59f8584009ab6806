"""Outputs stored as artifacts: DataFrames, arrays and registered types kept in files beside the state.

A node output that JSON cannot hold but that has an output type (``pandas.DataFrame``,
``pandas.Series``, ``numpy.ndarray``, ``pyarrow.Table`` built in; others through
``register_output_type``) is encoded to bytes when it is set, and the state stores a small
*reference* in its place: a JSON object whose key ``"__flow_workbench__"`` is ``"artifact"``,
with the kind, the content hash (XXH3-128 of the bytes: the artifact's name and its checksum),
the size, shape, a schema summary and a short preview. Stores write the bytes before the state
that references them and remove them once no stored state does (``stores/_artifacts.py``).

User dict outputs that hold the key ``"__flow_workbench__"`` are stored wrapped
(``{"__flow_workbench__": "escaped", "value": ...}``), so no user value reads back as a
reference. Reading an artifact happens on access (``WorkflowData.get_output``), never at load.
"""

from __future__ import annotations

import re
import reprlib
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

import orjson

from .errors import CorruptStateError, SerializationError, UnknownOutputTypeError
from .validation import InvalidValue, require_count, require_str

__all__ = [
    "ArtifactRef",
    "ArtifactSource",
    "ArtifactStash",
    "OUTPUT_MARKER",
    "OutputType",
    "artifact_preview",
    "content_hash",
    "output_type_of",
    "reference_of",
    "references",
    "register_output_type",
    "set_arrow_compression",
]

#: The reserved key of stored outputs that are not the user's value as it is (see module doc).
OUTPUT_MARKER: Final = "__flow_workbench__"
_MARKER_BYTES: Final = b'"__flow_workbench__"'
_ARTIFACT: Final = "artifact"
_ESCAPED: Final = "escaped"
#: Encodings of artifact bytes: an Arrow IPC file (Feather v2), or a registered type's own bytes.
FORMATS: Final = {"arrow": ".arrow", "bytes": ".bin"}
#: Built-in kinds (their encoders live in ``_arrow_outputs``); these names cannot be registered.
BUILTIN_KINDS: Final = ("numpy.ndarray", "pandas.DataFrame", "pandas.Series", "pyarrow.Table")

#: Artifact bytes: immutable bytes, or a read-only view of an immutable pyarrow buffer.
Buffer = bytes | memoryview

_HASH_PATTERN: Final = re.compile(r"[0-9a-f]{32}\Z")
_NAME_PATTERN: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,99}\Z")
_PLAIN_TYPES: Final = frozenset({str, int, float, bool, type(None), list, tuple})
#: Columns listed in a reference's schema summary, and characters of its preview.
MAX_SCHEMA_COLUMNS: Final = 20
MAX_PREVIEW_CHARS: Final = 120


def content_hash(raw: bytes | bytearray | memoryview) -> str:
    """XXH3-128 of ``raw`` as 32 hex digits: an artifact's name and checksum.

    Chosen for speed (about 20 GB/s here, against 0.8 GB/s for SHA-256, so hashing adds ~4 ms
    to an 80 MB frame): it detects damage and accidental collisions, not deliberate forgeries
    (whoever can write into the store folder can rewrite the states themselves).
    """
    import xxhash

    return xxhash.xxh3_128_hexdigest(raw)


@dataclass(frozen=True)
class ArtifactRef:
    """What a state stores in place of an artifact output (see the module docstring)."""

    kind: str
    hash: str
    size: int
    format: str = "arrow"
    shape: tuple[int, ...] | None = None
    #: (column name, type) of the first ``MAX_SCHEMA_COLUMNS`` columns; the dtype for arrays.
    schema: tuple[tuple[str, str], ...] = ()
    preview: str = ""

    @property
    def file_name(self) -> str:
        """``<hash>.arrow`` or ``<hash>.bin``: the artifact's name in a store."""
        return self.hash + FORMATS[self.format]

    def to_json(self) -> dict[str, Any]:
        return {
            OUTPUT_MARKER: _ARTIFACT,
            "kind": self.kind,
            "format": self.format,
            "hash": self.hash,
            "bytes": self.size,
            "shape": None if self.shape is None else list(self.shape),
            "schema": [list(pair) for pair in self.schema],
            "preview": self.preview,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ArtifactRef:
        """Decode a stored reference; ``InvalidValue`` for anything a writer of ours never writes.

        The hash is checked against its pattern first: it becomes a file name or a key.
        """
        if raw.get(OUTPUT_MARKER) != _ARTIFACT:
            raise InvalidValue("artifact reference", f"{OUTPUT_MARKER} is not {_ARTIFACT!r}")
        digest = require_str(raw.get("hash"), "artifact hash")
        if not _HASH_PATTERN.match(digest):
            raise InvalidValue("artifact hash", f"{digest[:40]!r} is not 32 hex digits")
        file_format = require_str(raw.get("format"), "artifact format")
        if file_format not in FORMATS:
            raise InvalidValue("artifact format", f"{file_format[:40]!r} is not one of {', '.join(FORMATS)}")
        shape = raw.get("shape")
        if shape is not None:
            if not isinstance(shape, list):
                raise InvalidValue("artifact shape", "expected a list of sizes")
            shape = tuple(require_count(size, "artifact shape") for size in shape)
        schema = raw.get("schema", [])
        if not isinstance(schema, list) or not all(
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(s, str) for s in pair)
            for pair in schema
        ):
            raise InvalidValue("artifact schema", "expected a list of [name, type] pairs")
        return cls(
            kind=require_str(raw.get("kind"), "artifact kind"),
            hash=digest,
            size=require_count(raw.get("bytes"), "artifact size"),
            format=file_format,
            shape=shape,
            schema=tuple((name, type_name) for name, type_name in schema),
            preview=require_str(raw.get("preview", ""), "artifact preview"),
        )

    def __str__(self) -> str:
        return artifact_preview(self)


def reference_of(stored: Any) -> ArtifactRef | None:
    """The reference a stored output (decoded JSON) holds, or None (not one, or a damaged one)."""
    if type(stored) is not dict or stored.get(OUTPUT_MARKER) != _ARTIFACT:
        return None
    try:
        return ArtifactRef.from_json(stored)
    except InvalidValue:
        return None


def references(outputs: Mapping[str, Any]) -> dict[str, ArtifactRef]:
    """node -> reference of every artifact output of an output column (``StateColumns.outputs``:
    stored forms, as Fragments or decoded JSON). One encode and a substring search in C when
    nothing there holds the marker."""
    try:
        # orjson reads dicts only: a read view's MappingProxyType is copied first (in C, an
        # eighth of the encode), as it would otherwise take the per-value path below.
        raw = orjson.dumps(outputs if type(outputs) is dict else dict(outputs))
    except TypeError:  # a value put into the live columns by hand: look at each one
        values = {node: _plain(value) for node, value in outputs.items()}
    else:
        if _MARKER_BYTES not in raw:
            return {}
        values = orjson.loads(raw)
    found = {}
    for node, value in values.items():
        ref = reference_of(value)
        if ref is not None:
            found[node] = ref
    return found


def _plain(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value)) if type(value) is orjson.Fragment else value


def artifact_preview(ref: ArtifactRef) -> str:
    """One line for tables: kind, shape, the first columns' types and a few values.

    ``DataFrame 1,000,000x10 (a: int64, b: float64, …) a=1, b=0.5, …``. Read from the reference
    alone: showing a table of outputs never reads an artifact.
    """
    kind = ref.kind.rpartition(".")[2] if ref.kind in BUILTIN_KINDS else ref.kind
    parts = [kind]
    if ref.shape is not None:
        parts.append("x".join(f"{size:,}" for size in ref.shape) if ref.shape else "scalar")
    if ref.schema:
        shown = ", ".join(f"{name}: {type_name}" for name, type_name in ref.schema[:4])
        more = ref.shape is not None and len(ref.shape) >= 2 and ref.shape[1] > min(4, len(ref.schema))
        parts.append(f"({shown}{', …' if more or len(ref.schema) > 4 else ''})")
    if ref.preview:
        parts.append(ref.preview)
    return " ".join(parts)


# --- output types --------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputType:
    """How one kind of output becomes artifact bytes and back (``encode``/``decode``: no pickle).

    ``describe`` returns (shape, schema summary, preview) for the reference; ``cls`` is None for
    the built-in kinds, which are matched by exact type without importing their libraries.
    """

    name: str
    cls: type | None
    encode: Callable[[Any], bytes | bytearray | memoryview]
    decode: Callable[[Any], Any]  # bytes for registered types, a bytes-like buffer for built-ins
    format: str = "bytes"
    describe: Callable[[Any], tuple[tuple[int, ...] | None, tuple[tuple[str, str], ...], str]] | None = None


_REGISTRY_LOCK = threading.Lock()
#: Registered types by name, and by class (exact type first; subclasses by ``isinstance``).
_BY_NAME: dict[str, OutputType] = {}
_BY_CLASS: dict[type, OutputType] = {}


def register_output_type(
    cls: type, name: str, encode: Callable[[Any], bytes], decode: Callable[[bytes], Any]
) -> None:
    """Store outputs of ``cls`` (and subclasses) as artifacts: ``encode(value) -> bytes`` when
    the output is set, ``decode(bytes) -> value`` when it is read back (in any process that
    registered ``name`` too). Nothing is ever unpickled; an output type nobody registered still
    fails its node with a ``SerializationError``.

    ``name`` is what stored references record (1-100 characters: letters, digits, ``_.:-``,
    starting with a letter or ``_``); registering a name again replaces the earlier entry (re-
    running a notebook cell), and the built-in names (``pandas.DataFrame``...) are reserved.
    """
    if not isinstance(cls, type):
        raise TypeError(f"cls must be a class, not {type(cls).__name__}")
    if not isinstance(name, str) or not _NAME_PATTERN.match(name):
        raise ValueError(f"output type name {name!r} must be 1-100 of A-Z a-z 0-9 _ . : - (a letter first)")
    if name in BUILTIN_KINDS:
        raise ValueError(f"{name!r} is a built-in output type and cannot be registered again")
    if not callable(encode) or not callable(decode):
        raise TypeError("encode and decode must be callables (bytes out, bytes in)")
    entry = OutputType(name, cls, encode, decode, "bytes", None)
    with _REGISTRY_LOCK:
        previous = _BY_NAME.pop(name, None)
        if previous is not None and previous.cls is not None:
            _BY_CLASS.pop(previous.cls, None)
        for other in [t for t in _BY_NAME.values() if t.cls is cls]:
            del _BY_NAME[other.name]
        _BY_NAME[name] = entry
        _BY_CLASS[cls] = entry


def output_type_of(value: Any) -> OutputType | None:
    """The output type ``value`` is stored as, or None when it is no artifact (plain JSON)."""
    cls = type(value)
    if cls in _PLAIN_TYPES:
        return None
    found = _BY_CLASS.get(cls)
    if found is not None:
        return found
    builtin = _builtin_kind(value)
    if builtin is not None:
        from . import _arrow_outputs

        return _arrow_outputs.BUILTIN[builtin]
    with _REGISTRY_LOCK:
        registered = list(_BY_NAME.values())
    for entry in registered:
        if entry.cls is not None and isinstance(value, entry.cls):
            return entry
    return None


def _builtin_kind(value: Any) -> str | None:
    """The built-in kind of ``value`` by exact type, importing nothing (its library is loaded)."""
    cls = type(value)
    module = cls.__module__.partition(".")[0]
    if module not in ("pandas", "numpy", "pyarrow"):
        return None
    library = sys.modules.get(module)
    if library is None:  # pragma: no cover - a value of a library that is not loaded
        return None
    if module == "pandas":
        return (
            "pandas.DataFrame"
            if cls is library.DataFrame
            else "pandas.Series"
            if cls is library.Series
            else None
        )
    if module == "numpy":
        return "numpy.ndarray" if cls is library.ndarray else None
    return "pyarrow.Table" if cls is library.Table else None


def _type_named(kind: str, node: str, workflow_id: str) -> OutputType:
    if kind in BUILTIN_KINDS:
        from . import _arrow_outputs

        return _arrow_outputs.BUILTIN[kind]
    with _REGISTRY_LOCK:
        found = _BY_NAME.get(kind)
    if found is None:
        raise UnknownOutputTypeError(workflow_id, node, kind)
    return found


def set_arrow_compression(codec: str | None) -> None:
    """Compress the Arrow IPC files of built-in kinds written from now on: ``"lz4"``, ``"zstd"``
    or None (the default: fastest to write and read, memory-mappable). Reading handles all."""
    from . import _arrow_outputs

    _arrow_outputs.set_compression(codec)


def _describe_any(value: Any) -> tuple[tuple[int, ...] | None, tuple[tuple[str, str], ...], str]:
    """Shape (when ``value.shape`` is a tuple of ints) and a short repr, for registered types."""
    shape = getattr(value, "shape", None)
    if not (isinstance(shape, tuple) and all(type(size) is int and size >= 0 for size in shape)):
        shape = None
    try:
        shortener = reprlib.Repr()
        shortener.maxstring = shortener.maxother = 60
        text = shortener.repr(value)
    except Exception:  # a user repr that fails: the kind and shape still say what it is
        text = ""
    return shape, (), _one_line(text)


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_PREVIEW_CHARS else text[: MAX_PREVIEW_CHARS - 1] + "…"


def encode_artifact(output_type: OutputType, value: Any) -> tuple[ArtifactRef, Buffer]:
    """Encode ``value`` as ``output_type``: its reference and bytes (exceptions propagate)."""
    encoded = output_type.encode(value)
    if not isinstance(encoded, bytes | bytearray | memoryview):
        raise TypeError(f"the encoder of {output_type.name!r} returned {type(encoded).__name__}, not bytes")
    # The built-in kinds hand over a view of pyarrow's buffer (no copy of a large frame); a
    # registered type's decoder gets bytes, so its bytes are kept as bytes.
    raw: Buffer = (
        encoded if output_type.format == "arrow" and isinstance(encoded, memoryview) else bytes(encoded)
    )
    describe = output_type.describe or _describe_any
    shape, schema, preview = describe(value)
    ref = ArtifactRef(
        kind=output_type.name,
        hash=content_hash(raw),
        size=len(raw),
        format=output_type.format,
        shape=shape,
        schema=schema[:MAX_SCHEMA_COLUMNS],
        preview=_one_line(preview),
    )
    return ref, raw


# --- a state's artifacts ---------------------------------------------------------------------------


class ArtifactSource(Protocol):
    """A store's artifacts of one workflow, as a loaded state reads them (``stores/_artifacts``)."""

    def read(self, ref: ArtifactRef) -> Buffer | None:
        """The stored bytes of ``ref``, or None when it is missing (``CorruptStateError`` when
        what is there cannot be it, e.g. a file of another size)."""
        ...

    def location(self, ref: ArtifactRef) -> str:
        """Where ``ref`` is (a path or a key), for messages."""
        ...

    def any(self) -> bool:
        """Whether any artifact of the workflow is stored (cheap: a stat, an EXISTS)."""
        ...


class ArtifactStash:
    """The artifact bytes of one ``WorkflowData``: held in memory from ``set_output`` until a
    store has them (``held``, by hash), else read from ``source`` (the store the state was loaded
    from or saved to) when an output is asked for. Held bytes are immutable and shared by copies.
    """

    __slots__ = ("held", "source")

    def __init__(self, held: dict[str, Buffer] | None = None, source: ArtifactSource | None = None) -> None:
        self.held: dict[str, Buffer] = {} if held is None else held
        self.source = source

    def references(self, outputs: Mapping[str, Any]) -> dict[str, ArtifactRef]:
        """node -> reference of every artifact output in the output column ``outputs``; {} at
        once when ``may_reference`` says there can be none."""
        return references(outputs) if self.may_reference() else {}

    def portable(self, outputs: Mapping[str, Any]) -> dict[str, bytes]:
        """hash -> bytes of every artifact ``outputs`` references (read now): for pickling."""
        return {ref.hash: bytes(self.bytes_of(ref, node)) for node, ref in self.references(outputs).items()}

    def copy(self) -> ArtifactStash:
        return ArtifactStash(dict(self.held), self.source)

    def may_reference(self) -> bool:
        """False only when the state surely references no artifact (nothing held, none stored)."""
        return bool(self.held) or (self.source is not None and self.source.any())

    # --- writing -------------------------------------------------------------------------------

    @staticmethod
    def stored_form(workflow_id: str, node: str, value: Any) -> tuple[Any, tuple[str, Buffer] | None]:
        """What ``set_output`` stores for ``value``: the value itself (to be encoded as JSON) or
        an escaped dict, and None; or an ``orjson.Fragment`` of a reference and the (hash,
        bytes) to put into ``held``, which the caller does under the state's lock (a save
        running meanwhile must see the bytes and the reference together)."""
        if isinstance(value, dict):
            return ({OUTPUT_MARKER: _ESCAPED, "value": value} if OUTPUT_MARKER in value else value), None
        output_type = output_type_of(value)
        if output_type is None:
            return value, None
        try:
            ref, raw = encode_artifact(output_type, value)
        except Exception as error:  # the encoder's own error, named: the node fails with it
            raise SerializationError(
                workflow_id, f"output of node {node!r} (a {output_type.name})", error
            ) from error
        return orjson.Fragment(orjson.dumps(ref.to_json())), (ref.hash, raw)

    # --- reading -------------------------------------------------------------------------------

    def resolve(self, workflow_id: str, node: str, stored: dict[str, Any]) -> Any:
        """The user's value of a stored output holding ``OUTPUT_MARKER``: unescaped or decoded."""
        tag = stored.get(OUTPUT_MARKER)
        if tag == _ESCAPED and len(stored) == 2 and "value" in stored:
            return stored["value"]
        where = f"output of node {node!r} of workflow {workflow_id!r}"
        if tag != _ARTIFACT:
            raise CorruptStateError(where, f"unknown {OUTPUT_MARKER} object (marker {str(tag)[:40]!r})")
        try:
            ref = ArtifactRef.from_json(stored)
        except InvalidValue as error:
            raise CorruptStateError(where, f"bad artifact reference: {error}") from None
        output_type = _type_named(ref.kind, node, workflow_id)
        raw = self.bytes_of(ref, node)
        try:
            return output_type.decode(raw)
        except Exception as error:  # bytes with the right hash that no longer decode
            raise CorruptStateError(
                self.location(ref), f"artifact of node {node!r} ({ref.kind}) does not decode: {error}"
            ) from error

    def resolve_all(self, workflow_id: str, outputs: dict[str, Any], *, load: bool) -> dict[str, Any]:
        """``outputs`` (fresh decoded values, changed in place) with escaped dicts unwrapped and
        artifacts decoded (``load``) or given as their ``ArtifactRef``."""
        if dict not in set(map(type, outputs.values())):  # in C: most states have no dict output
            return outputs
        for node, value in outputs.items():
            if type(value) is dict and OUTPUT_MARKER in value:
                ref = None if load else reference_of(value)
                outputs[node] = ref if ref is not None else self.resolve(workflow_id, node, value)
        return outputs

    def bytes_of(self, ref: ArtifactRef, node: str) -> Buffer:
        """The bytes of ``ref``: held, else read from the source and verified. A missing
        artifact, one of another size or whose content hash differs is a ``CorruptStateError``
        naming it."""
        raw = self.held.get(ref.hash)
        if raw is not None:
            return raw  # hashed by ``stored_form`` (or shipped by a pickled state) and immutable
        if self.source is None:
            raise CorruptStateError(
                ref.file_name, f"artifact of node {node!r} is not available: the state has no store"
            )
        raw = self.source.read(ref)
        if raw is None:
            raise CorruptStateError(
                self.source.location(ref), f"artifact of node {node!r} ({ref.kind}) is missing"
            )
        if len(raw) != ref.size:
            raise CorruptStateError(
                self.location(ref), f"artifact of node {node!r} holds {len(raw)} bytes, not {ref.size}"
            )
        if content_hash(raw) != ref.hash:
            raise CorruptStateError(
                self.location(ref), f"artifact of node {node!r} is damaged (content hash)"
            )
        return raw

    def location(self, ref: ArtifactRef) -> str:
        if ref.hash in self.held or self.source is None:
            return f"artifact {ref.file_name} (in memory)"
        return self.source.location(ref)
