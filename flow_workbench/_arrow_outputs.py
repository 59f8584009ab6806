"""The built-in artifact kinds (DataFrame, Series, ndarray, pyarrow Table) as Arrow IPC files.

Why Arrow IPC (the Feather v2 file format) rather than Parquet: writing it is a copy of the
Arrow buffers (no encoding pass, so a save costs about what the disk write costs), reading it is
as cheap and can map the file, and its types are Arrow's own, so pandas' metadata (index,
categoricals, time zones) and exact numpy dtypes survive. Parquet would make files smaller at
several times the CPU cost per save; ``set_compression("zstd")`` gets most of that size back.

pandas goes through ``pyarrow.Table.from_pandas``/``to_pandas`` (index, categorical and
tz-aware dtypes are kept by pandas' own metadata); what that metadata loses is kept under the
schema metadata key ``flow_workbench`` as JSON: non-string column names, a Series' name, an
array's dtype and shape. Nothing is pickled: pyarrow never unpickles extension types since 14.0.1.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Final

import orjson

from .artifacts import MAX_SCHEMA_COLUMNS, Buffer, OutputType

if TYPE_CHECKING:
    import pyarrow

__all__ = ["BUILTIN", "set_compression"]

_META_KEY: Final = b"flow_workbench"
_SERIES_COLUMN: Final = "__flow_workbench_series__"
_ARRAY_COLUMN: Final = "values"
_COMPRESSIONS: Final = (None, "lz4", "zstd")
_compression: str | None = None

Description = tuple[tuple[int, ...] | None, tuple[tuple[str, str], ...], str]


def set_compression(codec: str | None) -> None:
    global _compression
    if codec not in _COMPRESSIONS:
        raise ValueError(f"compression must be one of {_COMPRESSIONS}, not {codec!r}")
    _compression = codec


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.ipc
    except ImportError as error:
        raise TypeError(
            "DataFrame, Series, ndarray and Table outputs need pyarrow: pip install 'flow_workbench[data]'"
        ) from error
    return pyarrow


def _write(table: pyarrow.Table, extra: dict[str, Any] | None = None) -> memoryview:
    pa = _pyarrow()
    if extra is not None:
        metadata = dict(table.schema.metadata or {})
        metadata[_META_KEY] = orjson.dumps(extra)
        table = table.replace_schema_metadata(metadata)
    options = pa.ipc.IpcWriteOptions(compression=_compression)
    if _compression is None:
        # Measure first (writing to a mock stream copies nothing), then write once into a buffer
        # of the exact size: a third of the time of a growing buffer's reallocations and copies.
        mock = pa.MockOutputStream()
        with pa.ipc.new_file(mock, table.schema, options=options) as writer:
            writer.write_table(table)
        buffer = pa.allocate_buffer(mock.size())
        sink = pa.FixedSizeBufferWriter(buffer)
    else:
        sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    if _compression is not None:
        buffer = sink.getvalue()
    return memoryview(buffer)  # no copy; nothing writes to the buffer from here on


def _read(raw: Buffer) -> tuple[pyarrow.Table, dict[str, Any]]:
    pa = _pyarrow()
    table = pa.ipc.open_file(pa.BufferReader(raw)).read_all()
    metadata = dict(table.schema.metadata or {})
    extra = metadata.pop(_META_KEY, None)
    table = table.replace_schema_metadata(metadata or None)
    return table, ({} if extra is None else orjson.loads(extra))


# --- pandas --------------------------------------------------------------------------------------


def _json_name(name: Any) -> Any:
    """A column or Series name as JSON (numpy scalars as their Python values), or TypeError."""
    if hasattr(name, "item") and not isinstance(name, str):
        name = name.item()
    if isinstance(name, tuple):
        return {"tuple": [_json_name(part) for part in name]}
    if name is None or isinstance(name, str | int | float | bool):
        return name
    raise TypeError(f"column name {name!r} ({type(name).__name__}) cannot be stored; use str, int or float")


def _python_name(raw: Any) -> Any:
    if isinstance(raw, dict):
        return tuple(_python_name(part) for part in raw["tuple"])
    return raw


def _encode_frame(frame: Any) -> memoryview:
    import pandas as pd

    pa = _pyarrow()
    extra: dict[str, Any] | None = None
    columns = frame.columns
    if not isinstance(columns, pd.MultiIndex) and not all(type(name) is str for name in columns):
        extra = {"columns": [_json_name(name) for name in columns], "columns_dtype": str(columns.dtype)}
    with warnings.catch_warnings():  # "column names of mixed type" is what ``extra`` repairs
        warnings.simplefilter("ignore", UserWarning)
        table = pa.Table.from_pandas(frame)
    return _write(table, extra)


def _decode_frame(raw: Buffer) -> Any:
    import pandas as pd

    table, extra = _read(raw)
    frame = table.to_pandas()
    if "columns" in extra:
        names = [_python_name(name) for name in extra["columns"]]
        try:
            frame.columns = pd.Index(names, dtype=extra.get("columns_dtype"), name=frame.columns.name)
        except (TypeError, ValueError):
            frame.columns = pd.Index(names, name=frame.columns.name)
    return frame


def _describe_frame(frame: Any) -> Description:
    schema = tuple((str(name), str(dtype)) for name, dtype in list(frame.dtypes.items())[:MAX_SCHEMA_COLUMNS])
    preview = ""
    if len(frame) and len(frame.columns):
        first = frame.iloc[0, : min(6, len(frame.columns))]
        preview = ", ".join(f"{name}={_short(value)}" for name, value in first.items())
        preview += ", …" if len(frame.columns) > 6 or len(frame) > 1 else ""
    return tuple(frame.shape), schema, preview


def _encode_series(series: Any) -> memoryview:
    pa = _pyarrow()
    frame = series.to_frame(name=_SERIES_COLUMN)
    table = pa.Table.from_pandas(frame)
    return _write(table, {"series_name": _json_name(series.name)})


def _decode_series(raw: Buffer) -> Any:
    table, extra = _read(raw)
    series = table.to_pandas()[_SERIES_COLUMN]
    return series.rename(_python_name(extra.get("series_name")))


def _describe_series(series: Any) -> Description:
    values = ", ".join(_short(value) for value in series.iloc[:5])
    preview = f"[{values}{', …' if len(series) > 5 else ''}]"
    return tuple(series.shape), ((str(series.name), str(series.dtype)),), preview


def _short(value: Any) -> str:
    """A value of a preview: numbers and strings as Python writes them, others (timestamps) as text."""
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    text = repr(value) if value is None or isinstance(value, str | int | float) else str(value)
    return text if len(text) <= 24 else text[:23] + "…"


# --- numpy ---------------------------------------------------------------------------------------


def _encode_array(array: Any) -> memoryview:
    import numpy as np

    pa = _pyarrow()
    dtype = array.dtype
    if dtype.hasobject:
        raise TypeError("numpy arrays of Python objects cannot be stored; convert them to a typed array")
    flat = np.ascontiguousarray(array).reshape(-1)
    if dtype.kind in "biuf" and dtype.isnative:
        column = pa.array(flat)  # a typed Arrow column: other Arrow readers see the numbers
    else:
        # Everything else (complex, datetime64 of any unit, strings, structured, other byte
        # orders) as fixed-size binary of the raw items: exact, restored with the dtype below.
        column = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(dtype.itemsize), len(flat), [None, pa.py_buffer(flat.view(np.uint8))]
        )
    table = pa.table({_ARRAY_COLUMN: column})
    return _write(table, {"dtype": _dtype_json(dtype), "shape": list(array.shape)})


def _dtype_json(dtype: Any) -> Any:
    return dtype.descr if dtype.names is not None else dtype.str


def _decode_array(raw: Buffer) -> Any:
    import numpy as np

    table, extra = _read(raw)
    descr = extra["dtype"]
    dtype = np.dtype([tuple(field) for field in descr] if isinstance(descr, list) else descr)
    column = table.column(_ARRAY_COLUMN).combine_chunks()
    shape = tuple(extra["shape"])
    if isinstance(column.type, _pyarrow().FixedSizeBinaryType):
        data = column.buffers()[1]
        flat = np.frombuffer(data, dtype=dtype, count=len(column), offset=column.offset * dtype.itemsize)
    else:
        flat = column.to_numpy(zero_copy_only=False).astype(dtype, copy=False)
    return np.array(flat.reshape(shape), copy=True)  # writable and owning, like any fresh array


def _describe_array(array: Any) -> Description:
    import numpy as np

    flat = array.reshape(-1)[:6]
    with np.printoptions(threshold=6, edgeitems=3, linewidth=1000):
        preview = np.array2string(flat, separator=", ")
    if array.size > 6:
        preview = preview[:-1] + ", …]"
    return tuple(array.shape), (("dtype", str(array.dtype)),), preview


# --- pyarrow -------------------------------------------------------------------------------------


def _encode_table(table: Any) -> memoryview:
    return _write(table)


def _decode_table(raw: Buffer) -> Any:
    pa = _pyarrow()
    return pa.ipc.open_file(pa.BufferReader(raw)).read_all()


def _describe_table(table: Any) -> Description:
    schema = tuple((field.name, str(field.type)) for field in list(table.schema)[:MAX_SCHEMA_COLUMNS])
    preview = ""
    if table.num_rows and table.num_columns:
        first = table.slice(0, 1).select(list(range(min(6, table.num_columns)))).to_pylist()[0]
        preview = ", ".join(f"{name}={_short(value)}" for name, value in first.items())
        preview += ", …" if table.num_columns > 6 or table.num_rows > 1 else ""
    return (table.num_rows, table.num_columns), schema, preview


BUILTIN: Final = {
    "pandas.DataFrame": OutputType(
        "pandas.DataFrame", None, _encode_frame, _decode_frame, "arrow", _describe_frame
    ),
    "pandas.Series": OutputType(
        "pandas.Series", None, _encode_series, _decode_series, "arrow", _describe_series
    ),
    "numpy.ndarray": OutputType(
        "numpy.ndarray", None, _encode_array, _decode_array, "arrow", _describe_array
    ),
    "pyarrow.Table": OutputType(
        "pyarrow.Table", None, _encode_table, _decode_table, "arrow", _describe_table
    ),
}
