"""The expression converter as it was before exact values and the parallel plan (float16/float32 ``.npy``
layout, one process, one temporary file per gene block), kept unchanged as the bench's "before": the bench
runs it beside :mod:`data_layer.convert` on the same source in the same run.

Expression in a gene-major, memory-mappable layout, converted out-of-core from cell-major h5ad files.

Store layout of one dataset's expression (folder ``expression/``)::

    indptr.npy            int64   [n_genes + 1]   gene g's entries are indices/data[indptr[g]:indptr[g+1]]
    indices.npy           int32   [nnz]           store row of the cell (sorted within a gene)
    data.npy              float16 or float32 [nnz]  the log2 value (explicit zeros are kept if the source has them)
    has_expression.npy    bool    [n_cells]       the cell has a row in some expression matrix
    genes.parquet         gene_identifier, gene_symbol
    cluster_mean.npy      float32 [n_clusters, n_genes]  mean log2 over the cluster's cells with expression
    cluster_fraction.npy  float32 [n_clusters, n_genes]  fraction of those cells with a value > 0
    cluster_n_cells.npy   int64   [n_clusters]    cells with expression per cluster (NaN stats where 0)
    gene_range.npy        float64 [n_genes, 2]    each gene's default colour range (vmin, vmax) over the dataset:
                                                  0 .. 99th percentile of its values > 0 (NaN row: not stored,
                                                  computed when asked: a gene with negative values)
    expression.json       dtype, nnz, sources, counts and ``default_range_percentile``

Why float16 for ``data`` (chosen automatically when every value is finite and <= 2048): log2(CPM + 1) values lie
in 0..~20 where float16 keeps 11 significant bits (a step of 0.004 at 8-16), far finer than the 256 levels of a
colour map, and it cuts a gene look-up's bytes from 8 to 6 per non-zero (a quarter less I/O, page cache and disk).
Cluster means and fractions are computed from the float32 source values before rounding. Raw counts above 2048
(where float16 would drop integer precision) keep float32.

The conversion never holds the matrix in memory: pass 1 counts the entries of each gene (indices only, in row
chunks), which plans gene blocks that fit the memory budget; pass 2 reads row chunks and appends each entry
(store row, gene, value) to its gene block's temporary file; pass 3 loads one block at a time, sorts it by
(gene, store row), appends it to the output files and computes the per-cluster statistics of its genes.
Peak memory is bounded by ``memory_limit_bytes`` (plus per-cell arrays of a few bytes per cell), whatever the
size of the h5ad files.

The default colour range of a gene (:func:`default_range_of_entries`, the definition of
``rendering.raster.default_gene_range`` applied to the stored entries) is computed in pass 3 from each gene's
sorted entries, so a picture of a new gene needs no pass over every cell for it; stores written before it existed
(no ``gene_range.npy``) compute it from the gene's entries when asked.
"""
from __future__ import annotations

import difflib
import io
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import h5py
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

log = logging.getLogger(__name__)

RECORD = np.dtype([("row", "<i4"), ("gene", "<i4"), ("value", "<f4")])
#: Bytes of working memory per matrix entry while chunks and blocks are processed (arrays and temporaries).
BYTES_PER_ENTRY = 64
#: Bytes per (cluster, gene) cell of the statistics accumulators of one block.
BYTES_PER_STAT = 32
FLOAT16_MAX_EXACT = 2048.0
#: Percentile of a gene's expressing cells (values > 0) at the top of its default colour range.
DEFAULT_RANGE_PERCENTILE = 99.0
#: Version of the files written in ``expression/`` (part of a dataset's prepare signature, so a store prepared
#: by an older version is converted again by the next incremental prepare). 2: ``gene_range.npy``.
LAYOUT_VERSION = 2


class ExpressionError(Exception):
    """An expression matrix cannot be read or converted; the message names the file."""


# ------------------------------------------------------------------------------------------------ h5ad reading
@dataclass
class H5adInfo:
    """What the converter needs to know about one h5ad file (read without loading X)."""

    path: Path
    encoding: str  # "csr", "csc" or "dense"
    n_rows: int
    n_cols: int
    nnz: int
    gene_ids: np.ndarray  # object array of str
    gene_symbols: np.ndarray | None


def inspect_h5ad(path: Path) -> H5adInfo:
    """Shape, encoding and genes of an h5ad's X; ``ExpressionError`` naming the file if it is not readable."""
    try:
        with h5py.File(path, "r") as f:
            if "X" not in f:
                raise ExpressionError(f"{path}: no X matrix in this h5ad")
            x = f["X"]
            if isinstance(x, h5py.Dataset):
                if x.ndim != 2:
                    raise ExpressionError(f"{path}: X is not a matrix (shape {x.shape})")
                encoding, (n_rows, n_cols), nnz = "dense", x.shape, int(x.shape[0]) * int(x.shape[1])
            else:
                kind = _attr_str(x.attrs.get("encoding-type", ""))
                if kind not in ("csr_matrix", "csc_matrix"):
                    raise ExpressionError(f"{path}: X has encoding {kind!r}; expected csr_matrix, csc_matrix or dense")
                for part in ("data", "indices", "indptr"):
                    if part not in x:
                        raise ExpressionError(f"{path}: sparse X lacks X/{part}")
                n_rows, n_cols = (int(v) for v in x.attrs["shape"])
                encoding, nnz = kind[:3], int(x["indices"].shape[0])
            gene_ids, gene_symbols = _read_var(f, path)
            if len(gene_ids) != n_cols:
                raise ExpressionError(f"{path}: var has {len(gene_ids)} genes but X has {n_cols} columns")
    except ExpressionError:
        raise
    except Exception as exc:  # h5py raises OSError/KeyError/ValueError for truncated or corrupt files
        raise ExpressionError(f"{path}: cannot read this h5ad ({type(exc).__name__}: {exc}); the file may be "
                              f"truncated or corrupt: download it again") from None
    return H5adInfo(Path(path), encoding, int(n_rows), int(n_cols), nnz, gene_ids, gene_symbols)


def _attr_str(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _read_var(f: h5py.File, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    from anndata.io import read_elem

    if "var" not in f:
        raise ExpressionError(f"{path}: no var table (genes)")
    var = read_elem(f["var"])
    ids = np.asarray(var.index.astype(str), dtype=object)
    symbols = None
    for col in ("gene_symbol", "gene_symbols", "feature_name"):
        if col in var.columns:
            symbols = np.asarray(var[col].astype(str), dtype=object)
            break
    return ids, symbols


def _obs_label_chunks(f: h5py.File, path: Path, chunk: int) -> Iterator[tuple[int, pa.Array]]:
    """(start row, labels) for consecutive chunks of the obs index, without holding all labels as objects."""
    obs = f["obs"]
    name = _attr_str(obs.attrs.get("_index", "_index"))
    if name not in obs:
        raise ExpressionError(f"{path}: obs has no index column {name!r}")
    elem = obs[name]
    if isinstance(elem, h5py.Dataset):
        n = elem.shape[0]
        reader = elem.asstr() if h5py.check_string_dtype(elem.dtype) else elem
        for start in range(0, n, chunk):
            values = reader[start:start + chunk]
            yield start, pa.array(np.asarray(values).astype(str), type=pa.string())
    else:  # categorical or other encoding: read whole (rare for an index)
        from anndata.io import read_elem

        values = np.asarray(read_elem(elem)).astype(str)
        for start in range(0, len(values), chunk):
            yield start, pa.array(values[start:start + chunk], type=pa.string())


class LabelIndex:
    """Find store rows of cell labels: sorted 64-bit hashes (12 bytes per cell) verified by string equality."""

    def __init__(self, labels: pa.Array, chunk: int = 1 << 19):
        self.labels = labels
        hashes = np.empty(len(labels), dtype=np.uint64)
        for start in range(0, len(labels), chunk):
            part = labels.slice(start, chunk)
            hashes[start:start + len(part)] = _hash(part)
        self.order = np.argsort(hashes, kind="stable").astype(np.int64)
        self.sorted = hashes[self.order]

    def lookup(self, query: pa.Array) -> np.ndarray:
        """Store row of each query label, -1 if absent. int64 array."""
        if len(self.sorted) == 0 or len(query) == 0:
            return np.full(len(query), -1, dtype=np.int64)
        h = _hash(query)
        pos = np.searchsorted(self.sorted, h).clip(0, len(self.sorted) - 1)
        rows = self.order[pos]
        ok = self.sorted[pos] == h
        if ok.any():
            idx = np.flatnonzero(ok)
            same = pc.equal(self.labels.take(pa.array(rows[idx])), query.take(pa.array(idx)))
            ok[idx] = np.asarray(same.to_numpy(zero_copy_only=False), dtype=bool)
        return np.where(ok, rows, -1)


def _hash(labels: pa.Array) -> np.ndarray:
    values = np.asarray(labels.to_numpy(zero_copy_only=False), dtype=object)
    return pd.util.hash_array(values, categorize=False)


# ------------------------------------------------------------------------------------------------ conversion
@dataclass
class _Source:
    info: H5adInfo
    row_map: np.ndarray  # int32 [n_rows] store row or -1
    gene_map: np.ndarray  # int32 [n_cols] global gene or -1
    rows_used: int = 0
    rows_extra: int = 0

    @property
    def genes_identity(self) -> bool:
        """The file's columns are the global genes in the same order (no gather needed)."""
        if not hasattr(self, "_identity"):
            self._identity = bool(np.array_equal(self.gene_map, np.arange(len(self.gene_map))))
        return self._identity


@dataclass
class ExpressionSummary:
    """What a conversion produced (also saved as ``expression.json``)."""

    n_genes: int
    nnz: int
    dtype: str
    n_cells_with_expression: int
    n_cells_without_expression: int
    files: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    bytes_read: int = 0


def convert_expression(
    sources: Sequence[Path],
    cell_labels: pa.Array,
    out_dir: Path,
    *,
    cluster_codes: np.ndarray | None = None,
    n_clusters: int = 0,
    memory_limit_bytes: int = 4 << 30,
    gene_symbols: Mapping[str, str] | None = None,
    dtype: str = "auto",
    progress: bool = False,
    label: str = "",
) -> ExpressionSummary:
    """Convert cell-major h5ad files into the gene-major store layout (see the module docstring).

    Parameters
    ----------
    sources
        h5ad files (CSR, CSC or dense X; obs index = cell_label; var index = gene_identifier). Rows whose label
        is not in ``cell_labels`` are dropped; a cell found in several files keeps its first row.
    cell_labels
        the store's cells in store order (Arrow string array, length n_cells).
    out_dir
        folder to write (created).
    cluster_codes
        int array [n_cells]: cluster code of each cell (0 .. n_clusters-1), -1 for cells outside any cluster.
    memory_limit_bytes
        bound on the working memory of the conversion.
    gene_symbols
        gene_identifier -> symbol, used when an h5ad has no ``gene_symbol`` column.
    dtype
        ``"auto"`` (float16 when exact enough, see module docstring), ``"float16"`` or ``"float32"``.

    Raises
    ------
    ExpressionError
        naming the file that cannot be read.
    """
    t0 = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    n_cells = len(cell_labels)
    infos = [inspect_h5ad(Path(p)) for p in sources]

    # Genes: union by identifier, in order of first appearance.
    gene_pos: dict[str, int] = {}
    symbols: list[str] = []
    for info in infos:
        for i, gid in enumerate(info.gene_ids):
            if gid not in gene_pos:
                gene_pos[gid] = len(gene_pos)
                sym = info.gene_symbols[i] if info.gene_symbols is not None else None
                if not sym or sym == "nan":
                    sym = (gene_symbols or {}).get(gid, gid)
                symbols.append(sym)
    n_genes = len(gene_pos)

    fixed = n_cells * (12 + 1 + 4 + 4) + sum(i.n_rows for i in infos[:1]) * 12
    work = int(memory_limit_bytes * 0.4) - fixed  # the rest: allocator, HDF5 buffers, interpreter
    if work < 4 << 20:
        log.warning("memory limit %d MB is tight for %d cells; using 4 MB of working memory",
                    memory_limit_bytes >> 20, n_cells)
        work = 4 << 20
    chunk_entries = max(1, work // BYTES_PER_ENTRY)

    # Labels are hashed and looked up in chunks: a Python string costs ~100 bytes while it lives.
    label_chunk = max(1024, work // 400)
    index = LabelIndex(cell_labels, chunk=label_chunk)
    claimed = np.zeros(n_cells, dtype=bool)
    srcs: list[_Source] = []
    for info in infos:
        row_map = np.full(info.n_rows, -1, dtype=np.int32)
        try:
            with h5py.File(info.path, "r") as f:
                for start, labels in _obs_label_chunks(f, info.path, chunk=label_chunk):
                    row_map[start:start + len(labels)] = index.lookup(labels)
        except ExpressionError:
            raise
        except Exception as exc:
            raise ExpressionError(f"{info.path}: cannot read the cell labels ({exc}); the file may be corrupt") from None
        mapped = row_map >= 0
        rows = row_map[mapped]
        # A cell already taken by an earlier row/file keeps that first row.
        _, first = np.unique(rows, return_index=True)
        keep = np.zeros(len(rows), dtype=bool)
        keep[first] = True
        keep &= ~claimed[rows]
        dup = int((~keep).sum())
        if dup:
            log.warning("%s: %d rows are cells already read from an earlier row or file; ignored", info.path, dup)
        rows_kept = np.where(keep, rows, -1)
        row_map[mapped] = rows_kept
        claimed[rows_kept[rows_kept >= 0]] = True
        gene_map = np.fromiter((gene_pos[g] for g in info.gene_ids), dtype=np.int32, count=len(info.gene_ids))
        src = _Source(info, row_map, gene_map, rows_used=int((row_map >= 0).sum()),
                      rows_extra=int(info.n_rows - (row_map >= 0).sum()))
        if src.rows_extra:
            log.info("%s: %d of %d rows are cells absent from the %s cell table; dropped", info.path,
                     src.rows_extra, info.n_rows, label or "dataset's")
        srcs.append(src)
    has_expression = claimed
    missing = int(n_cells - has_expression.sum())
    if missing:
        log.info("%s: %d of %d cells have no row in any expression matrix (their gene values are NaN)",
                 label or out_dir, missing, n_cells)

    # Pass 1: entries per gene.
    total_entries = sum(s.info.nnz for s in srcs)
    counts = np.zeros(n_genes, dtype=np.int64)
    bytes_read = 0
    bar = _bar(progress, total_entries, f"{label} expression 1/3 count" if label else "count")
    for src in srcs:
        for rows, genes, _vals, n_scanned, n_read in _entries(src, chunk_entries, with_values=False):
            counts += np.bincount(genes, minlength=n_genes)
            bytes_read += n_read
            bar.update(n_scanned)
    bar.close()
    nnz = int(counts.sum())
    indptr = np.zeros(n_genes + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])

    # Plan gene blocks: entries and statistics accumulators of one block fit the budget.
    block_entries = max(1, int(work * 0.6) // BYTES_PER_ENTRY)
    n_stats_clusters = max(1, n_clusters)
    block_genes_max = max(1, int(work * 0.4) // (n_stats_clusters * BYTES_PER_STAT))
    blocks = _plan_blocks(counts, block_entries, block_genes_max)
    if counts.size and counts.max() > block_entries:
        log.warning("%s: gene with %d entries exceeds the memory budget of a block (%d); raise --memory-limit",
                    label, int(counts.max()), block_entries)
    block_of_gene = np.zeros(n_genes, dtype=np.int32)
    for b, (g0, g1) in enumerate(blocks):
        block_of_gene[g0:g1] = b

    # Pass 2: bucket entries by gene block into temporary files.
    tmp = out_dir / "_blocks"
    tmp.mkdir(exist_ok=True)
    # One block fits the budget whole: keep it in memory instead of a temporary file.
    in_memory: list[np.ndarray] | None = (
        [] if len(blocks) == 1 and nnz * RECORD.itemsize * 2 <= work // 2 else None)
    fds = [] if in_memory is not None else [
        os.open(tmp / f"{b:05d}.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644) for b in range(len(blocks))]
    max_abs = 0.0
    finite = True
    bar = _bar(progress, total_entries, f"{label} expression 2/3 bucket" if label else "bucket")
    try:
        for src in srcs:
            for rows, genes, vals, n_scanned, n_read in _entries(src, chunk_entries, with_values=True):
                bytes_read += n_read
                bar.update(n_scanned)
                if len(rows) == 0:
                    continue
                if vals.size:
                    finite = finite and bool(np.isfinite(vals).all())
                    max_abs = max(max_abs, float(np.nanmax(np.abs(vals))))
                rec = np.empty(len(rows), dtype=RECORD)
                if in_memory is not None:
                    rec["row"], rec["gene"], rec["value"] = rows, genes, vals
                    in_memory.append(rec)
                    continue
                else:
                    blk = block_of_gene[genes]
                    # Stable radix sort on small integer keys (O(n)), keeping row order within a block.
                    order = np.argsort(blk.astype(np.uint16) if len(blocks) < 65536 else blk, kind="stable")
                    rec["row"] = rows[order]
                    rec["gene"] = genes[order]
                    rec["value"] = vals[order]
                    bounds = np.searchsorted(blk[order], np.arange(len(blocks) + 1, dtype=blk.dtype))
                    del order, blk
                buf = memoryview(rec).cast("B")
                size = RECORD.itemsize
                for b in range(len(blocks)):
                    lo, hi = int(bounds[b]), int(bounds[b + 1])
                    if hi > lo:
                        _write_all(fds[b], buf[lo * size:hi * size])
                del rec, buf
    finally:
        for fd in fds:
            os.close(fd)
        bar.close()

    if dtype == "auto":
        out_dtype = np.dtype(np.float16 if (finite and max_abs <= FLOAT16_MAX_EXACT) else np.float32)
    else:
        out_dtype = np.dtype(dtype)

    # Pass 3: sort each block, append it to the outputs, compute cluster statistics.
    codes = None
    n_per_cluster = np.zeros(n_clusters, dtype=np.int64)
    if cluster_codes is not None and n_clusters:
        codes = np.asarray(cluster_codes, dtype=np.int32)
        codes = np.where((codes >= 0) & (codes < n_clusters) & has_expression, codes, -1).astype(np.int32)
        n_per_cluster = np.bincount(codes[codes >= 0], minlength=n_clusters).astype(np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_n = np.where(n_per_cluster > 0, 1.0 / n_per_cluster, np.nan)
    f_indices = _open_npy_for_append(out_dir / "indices.npy", np.int32, (nnz,))
    f_data = _open_npy_for_append(out_dir / "data.npy", out_dtype, (nnz,))
    mean_fd, mean_off = _open_npy_for_pwrite(out_dir / "cluster_mean.npy", np.float32, (n_clusters, n_genes))
    frac_fd, frac_off = _open_npy_for_pwrite(out_dir / "cluster_fraction.npy", np.float32, (n_clusters, n_genes))
    gene_ranges = np.full((n_genes, 2), np.nan, dtype=np.float64)
    bar = _bar(progress, len(blocks), f"{label} expression 3/3 sort" if label else "sort")
    try:
        for b, (g0, g1) in enumerate(blocks):
            if in_memory is not None:
                rec = np.concatenate(in_memory) if in_memory else np.zeros(0, dtype=RECORD)
                in_memory.clear()
            else:
                path = tmp / f"{b:05d}.bin"
                rec = np.fromfile(path, dtype=RECORD)
                path.unlink()
            expected = int(indptr[g1] - indptr[g0])
            if len(rec) != expected:
                raise ExpressionError(f"{label}: block of genes {g0}-{g1} has {len(rec)} entries, expected "
                                      f"{expected}: an expression file changed during prepare")
            bg = g1 - g0
            if codes is not None:
                # Statistics need no order: computed from the block as read, with float32 values.
                cl = codes[rec["row"]]
                ok = cl >= 0
                idx = cl[ok].astype(np.int64) * bg + (rec["gene"][ok] - g0)
                v = rec["value"][ok]
                sums = np.bincount(idx, weights=v, minlength=n_clusters * bg).reshape(n_clusters, bg)
                npos = np.bincount(idx[v > 0], minlength=n_clusters * bg).reshape(n_clusters, bg)
                del idx, v, cl, ok
                mean = (sums * inv_n[:, None]).astype(np.float32)
                frac = (npos * inv_n[:, None]).astype(np.float32)
                del sums, npos
                for c in range(n_clusters):
                    _pwrite_all(mean_fd, mean[c].tobytes(), mean_off + (c * n_genes + g0) * 4)
                    _pwrite_all(frac_fd, frac[c].tobytes(), frac_off + (c * n_genes + g0) * 4)
                del mean, frac
            rows_sorted, vals_sorted = _sort_block(rec, g0, bg, n_cells, out_dtype)
            del rec
            gene_ranges[g0:g1] = _block_default_ranges(vals_sorted, indptr[g0:g1 + 1] - indptr[g0])
            f_indices.write(memoryview(rows_sorted))
            f_data.write(memoryview(vals_sorted).cast("B"))
            del rows_sorted, vals_sorted
            bar.update(1)
    finally:
        bar.close()
        f_indices.close()
        f_data.close()
        os.close(mean_fd)
        os.close(frac_fd)
    tmp.rmdir()
    np.save(out_dir / "indptr.npy", indptr)
    np.save(out_dir / "has_expression.npy", has_expression)
    np.save(out_dir / "cluster_n_cells.npy", n_per_cluster)
    np.save(out_dir / "gene_range.npy", gene_ranges)
    pd.DataFrame({"gene_identifier": np.asarray(list(gene_pos), dtype=object),
                  "gene_symbol": np.asarray(symbols, dtype=object)}).to_parquet(out_dir / "genes.parquet", index=False)
    summary = ExpressionSummary(
        n_genes=n_genes, nnz=nnz, dtype=out_dtype.name,
        n_cells_with_expression=int(has_expression.sum()), n_cells_without_expression=missing,
        files=[{"path": str(s.info.path), "encoding": s.info.encoding, "rows": s.info.n_rows,
                "rows_used": s.rows_used, "rows_dropped": s.rows_extra} for s in srcs],
        seconds=round(time.perf_counter() - t0, 3), bytes_read=bytes_read,
    )
    (out_dir / "expression.json").write_text(json.dumps(
        {**summary.__dict__, "default_range_percentile": DEFAULT_RANGE_PERCENTILE}, indent=1))
    log.info("%s: expression of %d genes x %d cells, %d non-zeros (%s) in %.1f s", label, n_genes, n_cells, nnz,
             out_dtype.name, summary.seconds)
    return summary


def default_range_of_entries(entries: np.ndarray, n_implicit_zeros: int,
                             percentile: float = DEFAULT_RANGE_PERCENTILE) -> tuple[float, float]:
    """A gene's default colour range from its stored entries: the definition of
    ``rendering.raster.default_gene_range`` (``0 .. percentile`` of the values > 0; ``100 - percentile ..
    percentile`` of all finite values when some are negative; ``(0, 1)`` when nothing is expressed) applied to
    the gene's vector over the dataset WITHOUT building it.

    The vector's finite values are the finite entries plus ``n_implicit_zeros`` zeros (cells with an expression
    row but no entry); NaN cells (no expression row) are ignored by the definition. Percentiles depend only on
    the multiset of values, so the result equals ``default_gene_range(atlas.gene(dataset, gene))`` exactly.

    Parameters
    ----------
    entries : numpy.ndarray
        ``(nnz,)`` float16/float32 stored values of the gene (explicit zeros allowed).
    n_implicit_zeros : int
        Cells with an expression row and no entry for the gene.
    percentile : float
        0-100.

    Returns
    -------
    tuple of float
        ``(vmin, vmax)`` with ``vmin < vmax``.
    """
    values = np.asarray(entries, dtype=np.float64).ravel()
    finite = values if np.isfinite(values).all() else values[np.isfinite(values)]
    n_zeros = max(0, int(n_implicit_zeros))
    if finite.size + n_zeros == 0:
        return 0.0, 1.0
    lowest = min(float(finite.min()) if finite.size else np.inf, 0.0 if n_zeros else np.inf)
    if lowest < 0:
        everything = np.concatenate([finite, np.zeros(n_zeros)])
        vmin = float(np.percentile(everything, 100.0 - percentile))
        vmax = float(np.percentile(everything, percentile))
    else:
        expressing = finite[finite > 0]
        if expressing.size == 0:
            return 0.0, 1.0
        vmin = 0.0
        vmax = float(np.percentile(expressing, percentile))
    if vmax <= vmin:
        top = max(float(finite.max()) if finite.size else -np.inf, 0.0 if n_zeros else -np.inf)
        vmax = top if top > vmin else vmin + 1.0
    return vmin, vmax


def _block_default_ranges(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Default ranges of a block's genes from their sorted entries (``values[offsets[i]:offsets[i+1]]``).

    Returns
    -------
    numpy.ndarray
        ``(n_genes_in_block, 2)`` float64; NaN rows for genes with negative values (their range needs the
        count of implicit zeros; :meth:`GeneMatrix.default_range` computes it when asked).
    """
    out = np.full((len(offsets) - 1, 2), np.nan, dtype=np.float64)
    for i in range(len(offsets) - 1):
        segment = values[int(offsets[i]):int(offsets[i + 1])]
        finite = segment[np.isfinite(segment)]
        if finite.size and finite.min() < 0:
            continue
        # No negative value: the implicit zeros do not change the range, only the values > 0 do.
        out[i] = default_range_of_entries(finite, 0)
    return out


def _sort_block(rec: np.ndarray, g0: int, bg: int, n_cells: int, out_dtype: np.dtype
                ) -> tuple[np.ndarray, np.ndarray]:
    """Order a block's entries by (gene, store row): (rows int32, values out_dtype).

    With float16 values, (gene, row, value bits) are packed into one uint64 and sorted in place, about five
    times faster than an argsort (rows are unique within a gene, so the value bits never decide the order).
    """
    row_bits = max(1, int(n_cells).bit_length())
    gene_bits = max(1, int(bg).bit_length())
    if out_dtype == np.float16 and row_bits + gene_bits + 16 <= 64:
        key = (rec["gene"] - g0).astype(np.uint64)
        key <<= np.uint64(row_bits + 16)
        key |= rec["row"].astype(np.uint64) << np.uint64(16)
        key |= rec["value"].astype(np.float16).view(np.uint16).astype(np.uint64)
        key.sort()
        rows = ((key >> np.uint64(16)) & np.uint64((1 << row_bits) - 1)).astype(np.int32)
        vals = (key & np.uint64(0xFFFF)).astype(np.uint16).view(np.float16)
        return rows, vals
    key = (rec["gene"] - g0).astype(np.int64) * max(n_cells, 1) + rec["row"]
    order = np.argsort(key)
    del key
    return rec["row"][order].astype(np.int32, copy=False), rec["value"][order].astype(out_dtype)


def _bar(progress: bool, total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=" entries", unit_scale=True, disable=not progress, leave=False)


def _plan_blocks(counts: np.ndarray, max_entries: int, max_genes: int) -> list[tuple[int, int]]:
    blocks = []
    g0, acc = 0, 0
    for g, c in enumerate(counts):
        if g > g0 and (acc + c > max_entries or g - g0 >= max_genes):
            blocks.append((g0, g))
            g0, acc = g, 0
        acc += int(c)
    if len(counts):
        blocks.append((g0, len(counts)))
    return blocks


def _entries(src: _Source, chunk_entries: int, with_values: bool
             ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None, int, int]]:
    """Chunks of mapped entries of one file.

    Yields (store rows int32, genes int32, values float32 | None, entries scanned, bytes read).

    Entries of rows absent from the store and of unknown genes are dropped. For dense X only non-zeros count.
    """
    info = src.info
    try:
        with h5py.File(info.path, "r") as f:
            x = f["X"]
            if info.encoding == "csr":
                yield from _entries_csr(x, src, chunk_entries, with_values)
            elif info.encoding == "csc":
                yield from _entries_csc(x, src, chunk_entries, with_values)
            else:
                yield from _entries_dense(x, src, chunk_entries)
    except ExpressionError:
        raise
    except Exception as exc:
        raise ExpressionError(f"{info.path}: cannot read the expression matrix ({type(exc).__name__}: {exc}); "
                              f"the file may be truncated or corrupt: download it again") from None


def _entries_csr(x, src: _Source, chunk_entries: int, with_values: bool):
    indptr = x["indptr"][:].astype(np.int64)
    n_rows = len(indptr) - 1
    r0 = 0
    while r0 < n_rows:
        r1 = int(np.searchsorted(indptr, indptr[r0] + chunk_entries, side="right")) - 1
        r1 = min(max(r1, r0 + 1), n_rows)
        rmap = src.row_map[r0:r1]
        a, b = int(indptr[r0]), int(indptr[r1])
        if b > a and (rmap >= 0).any():
            cols = x["indices"][a:b]
            vals = x["data"][a:b].astype(np.float32, copy=False) if with_values else None
            n_read = (b - a) * (cols.itemsize + (vals.itemsize if vals is not None else 0))
            genes = cols.astype(np.int32, copy=False) if src.genes_identity else src.gene_map[cols]
            all_rows = bool((rmap >= 0).all())
            if not with_values and all_rows:  # counting needs no rows
                yield _EMPTY_I, (genes if src.genes_identity else genes[genes >= 0]), None, b - a, n_read
            else:
                rows = np.repeat(rmap, np.diff(indptr[r0:r1 + 1]))
                if all_rows and src.genes_identity:
                    yield rows, genes, vals, b - a, n_read
                else:
                    ok = (rows >= 0) & (genes >= 0)
                    yield rows[ok], genes[ok], (vals[ok] if vals is not None else None), b - a, n_read
        else:
            yield _EMPTY_I, _EMPTY_I, _EMPTY_F, b - a, 0
        r0 = r1


def _entries_csc(x, src: _Source, chunk_entries: int, with_values: bool):
    indptr = x["indptr"][:].astype(np.int64)
    n_cols = len(indptr) - 1
    c0 = 0
    while c0 < n_cols:
        c1 = int(np.searchsorted(indptr, indptr[c0] + chunk_entries, side="right")) - 1
        c1 = min(max(c1, c0 + 1), n_cols)
        a, b = int(indptr[c0]), int(indptr[c1])
        gmap = src.gene_map[c0:c1]
        if b > a and (gmap >= 0).any():
            row_idx = x["indices"][a:b]
            vals = x["data"][a:b].astype(np.float32, copy=False) if with_values else None
            rows = src.row_map[row_idx]
            genes = np.repeat(gmap, np.diff(indptr[c0:c1 + 1]))
            ok = (rows >= 0) & (genes >= 0)
            n_read = (b - a) * (row_idx.itemsize + (vals.itemsize if vals is not None else 0))
            yield rows[ok], genes[ok], (vals[ok] if vals is not None else None), b - a, n_read
        else:
            yield _EMPTY_I, _EMPTY_I, _EMPTY_F, b - a, 0
        c0 = c1


def _entries_dense(x, src: _Source, chunk_entries: int):
    n_rows, n_cols = x.shape
    step = max(1, chunk_entries // max(1, n_cols) // 2)
    for r0 in range(0, n_rows, step):
        r1 = min(n_rows, r0 + step)
        rmap = src.row_map[r0:r1]
        if not (rmap >= 0).any():
            yield _EMPTY_I, _EMPTY_I, _EMPTY_F, (r1 - r0) * n_cols, 0
            continue
        block = np.asarray(x[r0:r1], dtype=np.float32)
        rr, cc = np.nonzero(block)
        vals = block[rr, cc]
        rows = rmap[rr]
        genes = src.gene_map[cc]
        ok = (rows >= 0) & (genes >= 0)
        yield rows[ok], genes[ok], vals[ok], block.size, block.nbytes


_EMPTY_I = np.zeros(0, dtype=np.int32)
_EMPTY_F = np.zeros(0, dtype=np.float32)


def _write_all(fd: int, buf) -> None:
    view = memoryview(buf)
    while len(view):
        n = os.write(fd, view)
        view = view[n:]


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while len(view):
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


def _npy_header(dtype, shape) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": tuple(shape)})
    return buf.getvalue()


def _open_npy_for_append(path: Path, dtype, shape):
    f = open(path, "wb", buffering=1 << 20)
    f.write(_npy_header(dtype, shape))
    return f


def _open_npy_for_pwrite(path: Path, dtype, shape) -> tuple[int, int]:
    header = _npy_header(dtype, shape)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    _write_all(fd, header)
    size = len(header) + int(np.prod(shape)) * np.dtype(dtype).itemsize
    os.ftruncate(fd, size)  # sparse file; every cell is written by pass 3
    return fd, len(header)


# ------------------------------------------------------------------------------------------------ reading
@dataclass(frozen=True)
class ClusterStats:
    """Per cluster and gene: mean log2 expression and fraction of cells with a value > 0.

    Attributes
    ----------
    clusters : list[str]
        cluster (finest level) term names, in taxonomy order (row i = cluster code i).
    gene_identifiers, gene_symbols : list[str]
        column order.
    mean, fraction : ndarray of float32, shape (n_clusters, n_genes)
        memory-mapped; NaN for clusters without cells with expression in this dataset.
    n_cells : ndarray of int64, shape (n_clusters,)
        cells with expression per cluster.
    """

    clusters: list[str]
    gene_identifiers: list[str]
    gene_symbols: list[str]
    mean: np.ndarray
    fraction: np.ndarray
    n_cells: np.ndarray


class GeneMatrix:
    """One dataset's gene-major expression, memory-mapped: ``values(g)`` reads only gene g's bytes."""

    def __init__(self, folder: Path, n_cells: int):
        self.folder = folder
        self.n_cells = n_cells
        self.meta = json.loads((folder / "expression.json").read_text())
        self.indptr = np.load(folder / "indptr.npy")
        nnz = int(self.indptr[-1]) if len(self.indptr) else 0
        mode = "r" if nnz else None
        self.indices = np.load(folder / "indices.npy", mmap_mode=mode)
        self.data = np.load(folder / "data.npy", mmap_mode=mode)
        self.has_expression = np.load(folder / "has_expression.npy", mmap_mode="r")
        genes = pd.read_parquet(folder / "genes.parquet")
        self.gene_identifiers = genes["gene_identifier"].astype(str).to_numpy(dtype=object)
        self.gene_symbols = genes["gene_symbol"].astype(str).to_numpy(dtype=object)
        self.n_genes = len(self.gene_identifiers)
        self._lookup: dict[str, int] = {}
        for i, sym in enumerate(self.gene_symbols):
            self._lookup.setdefault(sym.lower(), i)
        for i, gid in enumerate(self.gene_identifiers):
            self._lookup.setdefault(gid, i)
            self._lookup.setdefault(gid.lower(), i)
        self._base: np.ndarray | None = None
        self._all_expressed = bool(np.all(self.has_expression)) if n_cells else True
        self._n_expressed: int | None = None
        # Default colour ranges written by prepare (absent in older stores, or for another percentile).
        self.default_ranges: np.ndarray | None = None
        path_ranges = folder / "gene_range.npy"
        if path_ranges.is_file() and self.meta.get("default_range_percentile") == DEFAULT_RANGE_PERCENTILE:
            ranges = np.load(path_ranges)
            if ranges.shape == (self.n_genes, 2):
                self.default_ranges = ranges
            else:
                log.warning("%s: gene_range.npy has shape %s for %d genes; computing ranges when asked",
                            folder, ranges.shape, self.n_genes)

    def genes(self) -> pd.DataFrame:
        return pd.DataFrame({"gene_identifier": self.gene_identifiers, "gene_symbol": self.gene_symbols})

    def resolve(self, gene: str, dataset: str = "") -> int:
        """Column of a gene given by symbol (any case) or identifier; ``KeyError`` naming close matches."""
        key = str(gene).strip()
        i = self._lookup.get(key, self._lookup.get(key.lower()))
        if i is not None:
            return i
        pool = list(dict.fromkeys(list(self.gene_symbols)))
        close = difflib.get_close_matches(key, pool, n=5, cutoff=0.6)
        if not close:
            upper = {s.upper(): s for s in pool}
            close = [upper[c] for c in difflib.get_close_matches(key.upper(), list(upper), n=5, cutoff=0.6)]
        raise KeyError(f"unknown gene {gene!r}" + (f" in {dataset}" if dataset else "")
                       + (f"; close matches: {', '.join(close)}" if close else "; no similar gene symbol"))

    def _baseline(self) -> np.ndarray:
        if self._base is None:
            base = np.zeros(self.n_cells, dtype=np.float32)
            base[~np.asarray(self.has_expression)] = np.nan
            self._base = base
        return self._base

    def values(self, g: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        """float32 values of gene column ``g`` for store rows ``start:stop`` (0 where not detected, NaN where
        the cell has no expression row)."""
        stop = self.n_cells if stop is None else stop
        if self._all_expressed:
            out = np.zeros(stop - start, dtype=np.float32)
        else:
            out = self._baseline()[start:stop].copy()
        a, b = int(self.indptr[g]), int(self.indptr[g + 1])
        if b == a:
            return out
        idx = self.indices[a:b]
        if start > 0 or stop < self.n_cells:
            lo, hi = np.searchsorted(idx, [start, stop])
            idx = idx[lo:hi]
            a, b = a + int(lo), a + int(hi)
            out[np.asarray(idx) - start] = self.data[a:b]
        else:
            out[np.asarray(idx)] = self.data[a:b]
        return out

    def default_range(self, g: int) -> tuple[float, float]:
        """Default colour range of gene column ``g`` over the whole dataset (:func:`default_range_of_entries`):
        the value stored by prepare, else computed from the gene's entries (no dense vector is built).

        Returns
        -------
        tuple of float
            ``(vmin, vmax)``, ``vmin < vmax``.
        """
        if self.default_ranges is not None:
            vmin, vmax = self.default_ranges[g]
            if np.isfinite(vmin) and np.isfinite(vmax):
                return float(vmin), float(vmax)
        if self._n_expressed is None:
            self._n_expressed = int(np.count_nonzero(self.has_expression)) if not self._all_expressed \
                else self.n_cells
        a, b = int(self.indptr[g]), int(self.indptr[g + 1])
        return default_range_of_entries(self.data[a:b], self._n_expressed - (b - a))

    def max_value(self, g: int) -> float:
        a, b = int(self.indptr[g]), int(self.indptr[g + 1])
        return float(np.max(self.data[a:b])) if b > a else 0.0

    def cluster_stats(self, clusters: list[str]) -> ClusterStats:
        n_genes = self.n_genes
        path_mean = self.folder / "cluster_mean.npy"
        mode = "r" if len(clusters) * n_genes else None
        return ClusterStats(
            clusters=list(clusters), gene_identifiers=list(self.gene_identifiers),
            gene_symbols=list(self.gene_symbols),
            mean=np.load(path_mean, mmap_mode=mode), fraction=np.load(self.folder / "cluster_fraction.npy", mmap_mode=mode),
            n_cells=np.load(self.folder / "cluster_n_cells.npy"),
        )
