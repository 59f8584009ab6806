"""A bounds-checked FlatBuffers table reader: the Python flatbuffers package has no verifier."""

from __future__ import annotations

import functools
import struct
from typing import Final

#: Largest state file either layout accepts (the Go store's cap too).
MAX_FILE_BYTES: Final = 64 * 1024 * 1024
#: Largest collection (vector, map) accepted on read; more means corrupt data (Go's cap too).
MAX_ELEMENTS: Final = 1 << 20
#: A decode may produce strings and JSON text of at most this many times the file's size...
DECODE_FACTOR: Final = 4
#: ...or of this many bytes for small files, and never more than ``MAX_FILE_BYTES``.
DECODE_FLOOR: Final = 1 << 20

_U8 = struct.Struct("<B")
_I8 = struct.Struct("<b")
_U16 = struct.Struct("<H")
_U16_PAIR = struct.Struct("<HH")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")

U8: Final = _U8
I8: Final = _I8
U16: Final = _U16
U32: Final = _U32
I32: Final = _I32
I64: Final = _I64
F64: Final = _F64


@functools.lru_cache(maxsize=64)
def u16s(count: int) -> struct.Struct:
    """A struct of ``count`` little-endian u16 (a vtable's field slots), cached per count."""
    return struct.Struct(f"<{count}H")


@functools.lru_cache(maxsize=64)
def u32s(count: int) -> struct.Struct:
    """A struct of ``count`` little-endian u32 (block tables), cached per count."""
    return struct.Struct(f"<{count}I")


#: Vtable slots read when a table is opened; later ones (no schema here has that many) on demand.
_EAGER_SLOTS: Final = 64


class Malformed(Exception):
    """Internal: the bytes are not a well-formed buffer; codecs turn it into ``CorruptStateError``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def as_view(raw: bytes | bytearray | memoryview) -> memoryview:
    """A flat byte view of ``raw`` (no copy), refusing anything over ``MAX_FILE_BYTES``."""
    try:
        view = memoryview(raw)
        if view.ndim != 1 or view.itemsize != 1 or view.format != "B":
            view = view.cast("B")
    except (TypeError, ValueError) as exc:
        raise Malformed(f"not a byte buffer ({exc})") from None
    if len(view) > MAX_FILE_BYTES:
        raise Malformed(f"{len(view)} bytes exceeds the {MAX_FILE_BYTES}-byte cap")
    return view


class DecodeBudget:
    """What decoding one buffer has produced so far, and the objects already decoded, by offset.

    FlatBuffers lets many entries point at one string or table, so a small file can describe
    gigabytes (a 46 MB file of entries sharing one output took hours). Each string or table is
    therefore decoded once (cached by its offset), and every reference to a string or JSON
    document is charged its size: past ``limit`` (``DECODE_FACTOR`` x the file size, at least
    ``DECODE_FLOOR``, at most ``MAX_FILE_BYTES``) the buffer is refused. A file in which every
    reference has its own bytes, as every writer of either layout produces, stays under it.
    """

    __slots__ = ("errors", "limit", "strings", "tables", "used")

    def __init__(self, size: int, errors: str = "strict") -> None:
        #: How string bytes that are not UTF-8 decode: "strict" refuses them (``Malformed``),
        #: "surrogateescape" keeps each bad byte as a lone surrogate (lossless, re-encodable).
        self.errors = errors
        self.limit = min(max(DECODE_FACTOR * size, DECODE_FLOOR), MAX_FILE_BYTES)
        self.used = 0
        self.strings: dict[int, tuple[str, int]] = {}
        self.tables: dict[int, Table] = {}

    def charge(self, size: int) -> None:
        """Count ``size`` more decoded bytes; ``Malformed`` naming the bound when past it."""
        self.used += size
        if self.used > self.limit:
            raise Malformed(
                f"decoded data exceeds {self.limit} bytes, the bound for this file ({DECODE_FACTOR}x its "
                f"size, at least {DECODE_FLOOR}, at most {MAX_FILE_BYTES}): entries repeat shared offsets"
            )


class Table:
    """One FlatBuffers table at ``pos`` in ``buf``; every read is checked against the buffer's bounds.

    The vtable is read once, whole, when the table is opened (one ``unpack_from`` for all its
    field slots), so a field lookup is a tuple index plus the bounds check.
    """

    __slots__ = ("budget", "buf", "end", "pos", "slots", "table_size", "vt", "vt_size")

    def __init__(self, buf: memoryview, pos: int, budget: DecodeBudget) -> None:
        end = len(buf)
        if pos < 0 or pos + 4 > end:
            raise Malformed(f"table offset {pos} outside the {end}-byte buffer")
        vt = pos - _I32.unpack_from(buf, pos)[0]
        if vt < 0 or vt + 4 > end or vt % 2:
            raise Malformed(f"vtable offset {vt} of the table at {pos} is invalid")
        vt_size, table_size = _U16_PAIR.unpack_from(buf, vt)
        if vt_size < 4 or vt_size % 2 or vt + vt_size > end or table_size < 4 or pos + table_size > end:
            raise Malformed(f"vtable of the table at {pos} has impossible sizes")
        self.budget = budget
        self.buf = buf
        self.end = end
        self.pos = pos
        # The slots are offsets of the fields within the table, by field id (0: absent). Read
        # eagerly only up to a cap: a forged vtable of 32k slots, shared by a million tables, must
        # not cost a 64 KiB unpack per table.
        self.slots: tuple[int, ...] = u16s(min((vt_size - 4) // 2, _EAGER_SLOTS)).unpack_from(buf, vt + 4)
        self.table_size = table_size
        self.vt = vt
        self.vt_size = vt_size

    def field(self, field_id: int, width: int) -> int:
        """Absolute position of a ``width``-byte field, or 0 when the field is absent (default)."""
        off = self.slots[field_id] if field_id < len(self.slots) else self._late_slot(field_id)
        if off == 0:
            return 0
        if off < 4 or off + width > self.table_size:
            raise Malformed(f"field {field_id} of the table at {self.pos} lies outside it")
        return self.pos + off

    def _late_slot(self, field_id: int) -> int:
        """A slot past the ones read on open: read now, or 0 (absent) past the vtable's end."""
        if 4 + 2 * field_id >= self.vt_size:
            return 0
        off: int = _U16.unpack_from(self.buf, self.vt + 4 + 2 * field_id)[0]
        return off

    # scalar and target repeat field's lookup inline: they run a dozen times per file in a folder
    # scan, where one call less per field is measurable.

    def scalar(self, field_id: int, fmt: struct.Struct, default: int | float | bool) -> int | float | bool:
        off = self.slots[field_id] if field_id < len(self.slots) else self._late_slot(field_id)
        if off == 0:
            return default
        if off < 4 or off + fmt.size > self.table_size:
            raise Malformed(f"field {field_id} of the table at {self.pos} lies outside it")
        value: int | float | bool = fmt.unpack_from(self.buf, self.pos + off)[0]
        return value

    def target(self, field_id: int) -> int:
        """Position an offset field points to (vector, string, table), or -1 when absent."""
        off = self.slots[field_id] if field_id < len(self.slots) else self._late_slot(field_id)
        if off == 0:
            return -1
        if off < 4 or off + 4 > self.table_size:
            raise Malformed(f"field {field_id} of the table at {self.pos} lies outside it")
        at = self.pos + off
        target: int = at + _U32.unpack_from(self.buf, at)[0]
        if target + 4 > self.end:
            raise Malformed(f"field {field_id} of the table at {self.pos} points outside the buffer")
        return target

    def vector(self, field_id: int, elem_size: int) -> tuple[int, int]:
        """(start, count) of a vector field; (-1, 0) when absent. Count and extent are checked."""
        target = self.target(field_id)
        if target < 0:
            return -1, 0
        return vector_at(self.buf, target, elem_size, field_id)

    def string(self, field_id: int) -> str | None:
        """A string field (None when absent), decoded once per offset, charged at every reference."""
        target = self.target(field_id)
        if target < 0:
            return None
        budget = self.budget
        known = budget.strings.get(target)
        if known is None:
            start, count = vector_at(self.buf, target, 1, field_id)
            # Like the official verifier: a string's NUL terminator must be inside the buffer too.
            if start + count >= self.end or self.buf[start + count] != 0:
                raise Malformed(f"string field {field_id} of the table at {self.pos} is not NUL-terminated")
            budget.charge(count)
            raw = self.buf[start : start + count]
            if budget.errors == "strict":
                text = decode_utf8(raw, f"string field {field_id}")
            else:
                text = str(raw, "utf-8", budget.errors)
            budget.strings[target] = (text, count)
            return text
        budget.charge(known[1])
        return known[0]

    def tables(self, field_id: int) -> list[Table]:
        """The tables of a vector-of-tables field (empty when absent), each opened once per offset."""
        start, count = self.vector(field_id, 4)
        if count == 0:
            return []
        buf, budget = self.buf, self.budget
        opened = budget.tables
        tables = []
        for at, offset in zip(
            range(start, start + 4 * count, 4), u32s(count).unpack_from(buf, start), strict=True
        ):
            pos = at + offset
            table = opened.get(pos)
            if table is None:
                table = opened[pos] = Table(buf, pos, budget)
            tables.append(table)
        return tables


def vector_at(buf: memoryview, target: int, elem_size: int, what: str | int) -> tuple[int, int]:
    """(start, count) of the vector whose length prefix is at ``target``, checked against the buffer.

    ``what`` names the vector in errors; an int is a field id (formatted only if there is an error).
    """
    end = len(buf)
    if target < 0 or target + 4 > end:
        raise Malformed(f"{_label(what)}: vector offset {target} outside the buffer")
    count: int = _U32.unpack_from(buf, target)[0]
    limit = MAX_FILE_BYTES if elem_size == 1 else MAX_ELEMENTS
    if count > limit:
        raise Malformed(f"{_label(what)}: {count} elements exceeds the cap of {limit}")
    start = target + 4
    if start + count * elem_size > end:
        raise Malformed(f"{_label(what)}: {count} elements run past the end of the buffer")
    return start, count


def _label(what: str | int) -> str:
    return f"field {what}" if isinstance(what, int) else what


def decode_utf8(raw: memoryview | bytes, what: str) -> str:
    try:
        return str(raw, "utf-8")
    except UnicodeDecodeError as exc:
        raise Malformed(f"{what} is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None


def root_table(buf: memoryview, *, lossless_text: bool = False) -> Table:
    """The root table, with a fresh ``DecodeBudget`` that every table read from it shares.

    ``lossless_text``: strings that are not UTF-8 decode with ``surrogateescape`` (Go strings
    may hold any bytes) instead of being refused.
    """
    if len(buf) < 8:
        raise Malformed(f"{len(buf)} bytes is too short for a FlatBuffer")
    budget = DecodeBudget(len(buf), "surrogateescape" if lossless_text else "strict")
    return Table(buf, _U32.unpack_from(buf, 0)[0], budget)
