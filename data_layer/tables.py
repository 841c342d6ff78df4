"""Read ABC CSV tables with the types the ABC layout needs, and small helpers for colours and value sets.

Every table is read by column NAME (column order differs between datasets, e.g. the marmoset
``slab_plane_coordinates.csv``), string keys stay strings (``cluster_alias`` is ``Human-143`` in one taxonomy
and ``14`` in another; ``alignment_job_id`` mixes hashes and integers) and a term literally named ``NA`` stays
``NA`` (no default NA parsing for string columns). A missing required column raises :class:`TableError`
naming the file and the column.
"""
from __future__ import annotations

import csv
import logging
import re
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

log = logging.getLogger(__name__)

#: Colour of cells mapped to a taxon that the taxonomy does not hold.
ADJACENT = "Adjacent"
ADJACENT_COLOR = "#808080"
#: Colour of cells without any cluster assignment.
UNASSIGNED = "unassigned"
UNASSIGNED_COLOR = "#c8c8c8"

#: Colours given to categories that have none in the source (a qualitative palette, stable order).
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
    "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7",
    "#dbdb8d", "#9edae5",
)

_TYPES = {"str": pa.string(), "float": pa.float64(), "bool": pa.string(), "int": pa.float64(),
          "category": pa.dictionary(pa.int32(), pa.string())}
#: Arrow's default pool (mimalloc) keeps what a hash table of millions of labels freed; the system allocator gives
#: it back (with :func:`data_layer.convert.release_free_memory`), and the memory limit counts resident pages.
_POOL = pa.system_memory_pool()
_HEX6 = re.compile(r"^[0-9a-f]{6}$")
_HEX3 = re.compile(r"^[0-9a-f]{3}$")
_TRUE = {"true", "t", "1", "yes", "y"}
_FALSE = {"false", "f", "0", "no", "n", ""}


class TableError(Exception):
    """A table cannot be read as the ABC layout says: the message names the file and the column."""


def csv_header(path: str | Path) -> list[str]:
    """Column names of a CSV file (first line), without reading the rest.

    Raises
    ------
    TableError
        if the file is missing, empty or not text.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            row = next(csv.reader(f), None)
    except FileNotFoundError:
        raise TableError(f"{path}: file not found") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise TableError(f"{path}: not a readable CSV file ({exc})") from None
    if not row:
        raise TableError(f"{path}: empty file (no header line)")
    return [c.strip() for c in row]


def read_arrow(
    path: str | Path,
    columns: Mapping[str, str],
    required: Iterable[str] = (),
) -> pa.Table:
    """Read the named columns of an ABC CSV table into Arrow buffers, without a Python object per value (what a
    table of millions of cells needs: a 28-character cell label is 32 bytes here, about 85 as a Python string).

    Parameters
    ----------
    path
        the CSV file.
    columns
        column name -> ``"str"`` (``string``), ``"category"`` (``dictionary<int32, string>``: each distinct value
        stored once, 4 bytes a row), ``"float"`` or ``"int"`` (float64, null when empty) or ``"bool"`` (read as
        ``string``). Columns absent from the file are absent from the result unless required.
    required
        columns that must be present.

    Returns
    -------
    pyarrow.Table
        the present columns in ``columns`` order, one chunk each (:func:`column_array`); text is never null (an
        empty cell is ``""``, a term named ``NA`` stays ``NA``).

    Raises
    ------
    TableError
        naming the file and the missing column, or the file and the parse problem.
    """
    path = Path(path)
    header = csv_header(path)
    missing = [c for c in required if c not in header]
    if missing:
        raise TableError(
            f"{path}: missing required column {missing[0]!r}"
            + (f" (and {', '.join(map(repr, missing[1:]))})" if len(missing) > 1 else "")
            + f"; the file has: {', '.join(header)}"
        )
    wanted = [c for c in columns if c in header]
    types = {c: _TYPES[columns[c]] for c in wanted}
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(use_threads=True),
            parse_options=pacsv.ParseOptions(newlines_in_values=False),
            convert_options=pacsv.ConvertOptions(
                column_types=types,
                include_columns=wanted,
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
            # The system allocator gives freed memory back; the default pool keeps tens of MB per read.
            memory_pool=_POOL,
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise TableError(f"{path}: cannot parse ({exc})") from None
    out = {}
    for name in wanted:
        col = table.column(name)
        if pa.types.is_dictionary(col.type):
            col = col.unify_dictionaries(memory_pool=_POOL)
        out[name] = col.combine_chunks(memory_pool=_POOL)
        table = table.drop_columns([name])  # free each column's chunks once combined
    return pa.table(out) if out else table  # no column: the rows are still counted


def read_csv(
    path: str | Path,
    columns: Mapping[str, str],
    required: Iterable[str] = (),
) -> pd.DataFrame:
    """Read the named columns of an ABC CSV table.

    Parameters
    ----------
    path
        the CSV file.
    columns
        column name -> ``"str"``, ``"float"``, ``"int"`` (read as float64, NaN when empty) or ``"bool"``
        (``True``/``False``/``1``/``0``, case-insensitive; empty -> False). Columns absent from the file are
        absent from the result unless required.
    required
        columns that must be present.

    Returns
    -------
    pandas.DataFrame
        string columns as ``object`` (never NaN: empty cells are ``""``), float columns as float64, bool
        columns as bool.

    Raises
    ------
    TableError
        naming the file and the missing column, or the file and the parse problem.
    """
    path = Path(path)
    table = read_arrow(path, columns, required)
    n_rows = table.num_rows
    out = {}
    for name in table.column_names:
        col = table.column(name)
        kind = columns[name]
        if kind in ("float", "int"):
            out[name] = col.to_numpy().astype(np.float64, copy=False)
        elif kind == "bool":
            out[name] = bool_values(path, name, col)
        else:
            out[name] = _strings(col)
        table = table.drop_columns([name])  # free each column's Arrow buffers once converted
    return pd.DataFrame(out, index=pd.RangeIndex(n_rows))


def column_array(table: pa.Table, name: str) -> pa.Array:
    """Column ``name`` of a :func:`read_arrow` table as one Arrow array (no copy)."""
    col = table.column(name)
    return col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()


def first_rows(labels: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """``(n,)`` bool: True at the first row of each distinct value of ``labels`` (one Arrow hash pass, no Python
    string per value)."""
    first = pc.index_in(labels, value_set=labels, memory_pool=_POOL).to_numpy(zero_copy_only=False)
    return first == np.arange(len(first))


def positions_in(labels: pa.Array | pa.ChunkedArray, keys: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """``(len(labels),)`` int64: the row of each of ``labels`` in ``keys`` (its first row when ``keys`` repeats
    it), -1 where ``keys`` lacks it. The join of two cell tables by ``cell_label`` without a Python string per
    label (Arrow hashes ``keys`` once)."""
    if len(labels) == 0:
        return np.zeros(0, dtype=np.int64)
    found = pc.index_in(labels, value_set=keys, memory_pool=_POOL)
    rows = found.to_numpy(zero_copy_only=False)  # float64 with NaN where absent, int32 when every label is found
    if found.null_count:
        rows = np.where(np.isnan(rows), -1, rows)
    return rows.astype(np.int64, copy=False)


#: Numeric columns of cell tables that are coordinates, identifiers or keys, not measurements of the cell.
NOT_MEASUREMENTS = frozenset({
    "x", "y", "z", "x_experiment", "y_experiment", "x_section", "y_section", "z_section", "x_reconstructed",
    "y_reconstructed", "z_reconstructed", "x_slab_mm", "y_slab_mm", "x_rotated_um", "y_rotated_um",
    "cluster_alias", "alignment_job_id", "segmentation_job_id",
})
_NOT_MEASUREMENT_SUFFIXES = ("_label", "_id", "_barcode", "_ordinal", "_order")


def is_measurement(name: str) -> bool:
    """Whether a numeric cell column may be a measurement of the cell (``umi_count``, ``doublet_score``,
    ``total_counts``, ``cell_area``...), not a coordinate, an identifier or a key (:data:`NOT_MEASUREMENTS`,
    names ending in ``_label``, ``_id``, ``_barcode``, ``_ordinal``, ``_order``)."""
    return name not in NOT_MEASUREMENTS and not name.endswith(_NOT_MEASUREMENT_SUFFIXES)


def read_numeric_columns(path: str | Path, key: str = "cell_label",
                         skip: Iterable[str] = ()) -> dict[str, np.ndarray | pa.Array]:
    """The numeric measurement columns of a cell table (:func:`is_measurement`), with the source's values.

    Every other column (``skip`` too) is read as text, then a column is numeric when every non-empty value
    parses as an integer (stored ``int64``; ``float64`` with NaN when some are empty) or every one parses as a
    number (``float64``, each value the double nearest its decimal text, as Python's ``float`` reads it; empty,
    ``NaN`` -> NaN). Booleans (``True``/``False``), text and mixed columns (hashes among integers) are not
    numeric. A column with no value at all is left out.

    Returns
    -------
    dict
        ``{key: Arrow string array}`` first (no Python string per cell label), then column name -> values in file
        order.

    Raises
    ------
    TableError
        naming the file when it has no ``key`` column or cannot be parsed.
    """
    path = Path(path)
    header = csv_header(path)
    if key not in header:
        raise TableError(f"{path}: missing required column {key!r}; the file has: {', '.join(header)}")
    skipped = set(skip) | {key}
    wanted = [c for c in header if c not in skipped and is_measurement(c)]
    try:  # text stays in Arrow buffers (no Python string per value: a million-cell table has tens of millions)
        table = pacsv.read_csv(
            path, read_options=pacsv.ReadOptions(use_threads=True),
            convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in [key, *wanted]},
                                                 include_columns=[key, *wanted], strings_can_be_null=False,
                                                 quoted_strings_can_be_null=False),
            memory_pool=pa.system_memory_pool())
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise TableError(f"{path}: cannot parse ({exc})") from None
    out: dict[str, np.ndarray | pa.Array] = {key: column_array(table, key)}
    for name in wanted:
        text = pc.utf8_trim_whitespace(table.column(name).combine_chunks())
        empty = pc.or_(pc.equal(text, ""), pc.is_in(pc.utf8_lower(text), pa.array(["nan", "na"])))
        values = pc.if_else(empty, pa.scalar(None, pa.string()), text)
        if values.null_count == len(values):
            continue
        try:
            numbers = pc.cast(values, pa.int64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            try:
                numbers = pc.cast(values, pa.float64())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
        if numbers.null_count and pa.types.is_integer(numbers.type):
            numbers = pc.cast(numbers, pa.float64())
        out[name] = numbers.to_numpy(zero_copy_only=False)
    return out


def _strings(col: pa.ChunkedArray) -> np.ndarray:
    """An Arrow string column as an object array of ``str``; a value repeated in many rows (a region, a file
    tag, a cluster alias) is ONE Python object referenced by all of them, instead of one object per row (about
    60 bytes each: 240 MB per such column at 4 M cells)."""
    if len(col) == 0:
        return np.zeros(0, dtype=object)
    encoded = pc.dictionary_encode(col).combine_chunks()
    values = encoded.dictionary
    if len(values) > len(col) // 2:  # mostly unique (cell labels): nothing to share
        return np.asarray(col.to_numpy(zero_copy_only=False), dtype=object)
    uniques = np.asarray(values.to_numpy(zero_copy_only=False), dtype=object)
    return uniques[encoded.indices.to_numpy(zero_copy_only=False)]


def bool_values(path: str | Path, name: str, column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A text or :func:`read_arrow` ``category`` column of booleans as a bool array: ``True``/``False``,
    ``t``/``f``, ``1``/``0``, ``yes``/``no`` (case-insensitive, blanks around ignored; empty -> False). Each distinct
    text is parsed once, so millions of rows cost no Python string each.

    Raises
    ------
    TableError
        naming ``path`` and column ``name`` when some value is not one of those.
    """
    if len(column) == 0:
        return np.zeros(0, dtype=bool)
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks(memory_pool=_POOL)
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column, memory_pool=_POOL)
    words = [str(v).strip().lower() for v in column.dictionary.to_pylist()]
    bad = set(words) - _TRUE - _FALSE
    if bad:
        raise TableError(f"{path}: column {name!r} is not boolean (values such as {sorted(bad)[:3]})")
    truth = np.asarray([w in _TRUE for w in words], dtype=bool)
    return truth[column.indices.to_numpy(zero_copy_only=False)]


def normalize_color(value: object) -> str | None:
    """``'#FF3358'``, ``'ff3358'``, ``'#abc'`` -> ``'#ff3358'`` / ``'#aabbcc'``; anything else -> None."""
    if not isinstance(value, str):
        return None
    text = value.strip().lower().removeprefix("#")
    if _HEX6.match(text):
        return "#" + text
    if _HEX3.match(text):
        return "#" + "".join(ch * 2 for ch in text)
    return None


def fill_colors(colors: Iterable[str | None]) -> list[str]:
    """Replace missing colours by palette colours (stable: the i-th missing one gets ``PALETTE[i % 20]``)."""
    out, k = [], 0
    for c in colors:
        if c is None:
            c = PALETTE[k % len(PALETTE)]
            k += 1
        out.append(c)
    return out


def read_value_sets(path: str | Path | None) -> dict[str, pd.DataFrame]:
    """``value_sets.csv`` -> {field: DataFrame(label, order, color)} sorted by order, then file order.

    A missing file gives ``{}``: colours then come from the palette.
    """
    if path is None or not Path(path).is_file():
        return {}
    df = read_csv(path, {"label": "str", "field": "str", "order": "float", "color_hex_triplet": "str"},
                  required=["label", "field"])
    if "order" not in df:
        df["order"] = np.nan
    if "color_hex_triplet" not in df:
        df["color_hex_triplet"] = ""
    df["color"] = [normalize_color(c) for c in df["color_hex_triplet"]]
    df["_pos"] = np.arange(len(df))
    out = {}
    for field, rows in df.groupby("field", sort=False):
        rows = rows.sort_values(["order", "_pos"], na_position="last").drop_duplicates("label")
        out[field] = rows[["label", "order", "color"]].reset_index(drop=True)
    return out


def categories_with_colors(
    values: Iterable[str],
    value_set: pd.DataFrame | None = None,
    first: Iterable[tuple[str, str]] = (),
) -> tuple[list[str], list[str]]:
    """Ordered categories and colours for a categorical column.

    Categories are ``first`` (fixed name/colour pairs), then the value-set labels in value-set order, then any
    other value seen in ``values`` (sorted), each once. Values without a colour get palette colours.

    Returns
    -------
    (categories, colors)
        two lists of equal length; colours are ``#rrggbb``.
    """
    cats: list[str] = []
    cols: list[str | None] = []
    seen: set[str] = set()
    for name, color in first:
        if name not in seen:
            seen.add(name)
            cats.append(name)
            cols.append(normalize_color(color))
    if value_set is not None:
        for label, color in zip(value_set["label"], value_set["color"]):
            if label not in seen:
                seen.add(label)
                cats.append(label)
                cols.append(color)
    for v in sorted(set(values) - seen):
        seen.add(v)
        cats.append(v)
        cols.append(None)
    return cats, fill_colors(cols)


def smallest_int_dtype(n_values: int) -> np.dtype:
    """Smallest signed integer dtype holding codes ``0 .. n_values - 1`` (and -1)."""
    for dt in (np.int8, np.int16, np.int32):
        if n_values <= np.iinfo(dt).max:
            return np.dtype(dt)
    return np.dtype(np.int64)
