"""Cell-major h5ad files -> the gene-major compressed store, on every core, resumable, with bounded memory,
open files and temporary disk.

The plan (:class:`Plan`, saved as ``plan.json`` in the work folder) splits the work two ways:

* **slices** (source file, row range): a worker reads the slice's rows (one h5py file open), maps them to
  store rows and global genes, orders the entries by gene with a counting sort (one pass), and writes ONE run
  file: per *gene group* (a few consecutive genes) a compressed segment of row deltas and float32 values
  (:mod:`data_layer.chunks`), plus the slice's per-gene counts;
* **blocks** (consecutive gene groups whose entries fit a worker's memory share, planned from the exact counts
  once every slice is done): a worker reads the block's segment range from each run file in turn (one file open
  at a time, whatever the number of blocks or slices), puts the entries in (gene, store row) order, computes the
  block's cluster statistics and default colour ranges, and writes the store's chunks of its genes into one
  block file.

Slices, then blocks, run in a local process pool (processes, not threads: HDF5 holds one lock per process), or
on a dask.distributed cluster (:class:`DaskPool`) when a scheduler address is given: the same task functions and
arguments, so the plan, the files and the result are the same.
Each finished slice or block is renamed into place with a small ``.npz`` beside it, so a prepare killed midway
resumes from the finished work when it runs again with the same work folder. Once a block is written, the
run files' bytes it consumed are released (``fallocate`` punches holes where the file system supports it), so
the temporary disk shrinks while the store grows: at most the compressed runs (about the size of the store's
entries, a little less). With a temporary disk limit the gene groups are split into *passes* (:func:`plan_passes`,
from exact counts per gene, :func:`count_slice`): each pass runs every slice again for its groups only, then its
blocks, then removes its runs, so the runs of a pass never exceed the limit even uncompressed.

Memory: the main process holds the per-row maps (4 bytes per source row), the label index during planning
(12 bytes per cell) and the cluster codes; each worker gets ``(memory_limit - main) / workers``, which bounds
the slice and block sizes (``BYTES_PER_ENTRY``).
"""
from __future__ import annotations

import ctypes
import json
import logging
import math
import multiprocessing
import os
import shutil
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import h5py
import numba
import numpy as np
from numcodecs import blosc

import data_layer.chunks as chunks

try:
    from isal import isal_zlib as _inflate
except ImportError:  # pragma: no cover - isal is a declared dependency; h5py's own reading is the fallback
    _inflate = None

from .ranges import block_default_ranges

log = logging.getLogger(__name__)

#: Bytes of a worker's memory per entry of a slice or a block (read arrays, mapped arrays, sorted copies,
#: decoded parts; measured peaks with the allocator's slack).
BYTES_PER_ENTRY = 96
#: Bytes per (cluster, gene) of a block's statistics accumulators.
BYTES_PER_STAT = 24
#: Memory a worker process uses before any work (interpreter, numpy, h5py, numba and the compiled loops: about
#: 195 MB resident, much of it shared with the fork server it is forked from, but counted in each).
WORKER_BASE_BYTES = 224 << 20
#: A slice holds at most this many entries: enough slices to keep every worker busy, and a transpose whose
#: writes stay closer to the cache.
MAX_SLICE_ENTRIES = 8 << 20
#: Fewer entries than this in all sources: no process pool (starting workers costs more than it saves).
POOL_MIN_ENTRIES = 4 << 20
#: Source columns per sweep of a slice's transpose (:func:`_scatter_csr`): the frames of this many genes are
#: written at a time (about 1,024 genes fit a core's cache; 1.7x faster than one sweep over 32 k genes).
SCATTER_BAND = 1024
#: Compression level of the run files (Blosc LZ4 with bit shuffle, as the store): level 1 takes about 20 % less
#: CPU than the store's level for the same size (the bit shuffle makes the long runs; LZ4 barely searches).
RUN_CLEVEL = 1
#: Number of gene groups the runs are segmented into (a block is one or more consecutive groups).
MAX_GROUPS = 4096
PLAN_VERSION = 4
#: Seconds to wait for a dask scheduler to answer.
SCHEDULER_TIMEOUT_S = 30.0
_FALLOC_FL_KEEP_SIZE = 1
_FALLOC_FL_PUNCH_HOLE = 2
_libc = None


# ------------------------------------------------------------------------------------------------------ plan
@dataclass
class SourcePlan:
    """One h5ad file: its path, encoding, size and the files holding its row and gene maps."""

    path: str
    encoding: str
    n_rows: int
    n_cols: int
    nnz: int
    size_bytes: int


@dataclass
class Plan:
    """The conversion's work, saved in the work folder so a rerun resumes it."""

    key: str
    n_cells: int
    n_genes: int
    n_clusters: int
    sources: list[SourcePlan]
    slices: list[tuple[int, int, int, int]]  # (source, start, stop, entries) on the file's major axis
    group_start: list[int]  # first gene of each group, + n_genes
    version: int = PLAN_VERSION

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({**asdict(self), "sources": [asdict(s) for s in self.sources]}))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> "Plan | None":
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if raw.get("version") != PLAN_VERSION:
            return None
        raw["sources"] = [SourcePlan(**s) for s in raw["sources"]]
        raw["slices"] = [tuple(s) for s in raw["slices"]]
        return cls(**raw)


@dataclass
class ConversionStats:
    """What the conversion measured (seconds per phase, bytes, peak temporary disk, workers)."""

    workers: int = 1
    n_slices: int = 0
    n_blocks: int = 0
    slices_resumed: int = 0
    blocks_resumed: int = 0
    seconds_slices: float = 0.0
    seconds_blocks: float = 0.0
    bytes_read: int = 0
    temp_bytes_peak: int = 0  # run files (the finished blocks beside them are the store's own files)
    store_entry_bytes: int = 0
    memory_per_worker: int = 0
    max_abs: float = 0.0
    finite: bool = True
    extra: dict = field(default_factory=dict)
    #: Worker CPU seconds per section of the slice and block tasks (summed over tasks; :meth:`add_seconds`).
    sections: dict = field(default_factory=dict)

    def add_seconds(self, result: Mapping) -> None:
        for name, seconds in result.get("seconds", {}).items():
            self.sections[name] = round(self.sections.get(name, 0.0) + float(seconds), 3)


def plan_slices(sources: Sequence[SourcePlan], indptrs: Sequence[np.ndarray | None], max_entries: int
                ) -> list[tuple[int, int, int, int]]:
    """Split each source's major axis into ranges of at most ``max_entries`` entries (at least one row).

    ``indptrs[i]`` is the CSR/CSC ``indptr`` of source i (int64), or None for dense X (rows of ``n_cols``).
    """
    out = []
    for i, (src, indptr) in enumerate(zip(sources, indptrs)):
        if indptr is None:
            per_row = max(1, src.n_cols)
            step = max(1, max_entries // per_row)
            for a in range(0, src.n_rows, step):
                b = min(src.n_rows, a + step)
                out.append((i, a, b, (b - a) * per_row))
            continue
        n = len(indptr) - 1
        a = 0
        while a < n:
            b = int(np.searchsorted(indptr, indptr[a] + max_entries, side="right")) - 1
            b = min(max(b, a + 1), n)
            out.append((i, a, b, int(indptr[b] - indptr[a])))
            a = b
    return out


def group_count(total_entries: int, max_entries: int, workers: int) -> int:
    """Gene groups to segment the runs into: enough that blocks (whole groups) fit a worker's share of
    ``max_entries`` with about 16 groups per full block, and at least 16 per worker so that blocks can be
    balanced; no more (each group is a compressed frame per slice, read and decoded on its own)."""
    wanted = max(16 * max(1, workers), math.ceil(16 * total_entries / max(1, max_entries)))
    return int(min(MAX_GROUPS, wanted))


def plan_groups(n_genes: int, max_groups: int = MAX_GROUPS) -> list[int]:
    """First gene of each gene group (equal numbers of genes), followed by ``n_genes``."""
    n_groups = max(1, min(n_genes, max_groups))
    return [int(round(k * n_genes / n_groups)) for k in range(n_groups)] + [n_genes]


def plan_blocks(group_entries: np.ndarray, group_genes: np.ndarray, max_entries: int, max_genes: int
                ) -> list[tuple[int, int]]:
    """Consecutive group ranges ``[f0, f1)`` whose entries and genes fit one worker's share."""
    blocks = []
    f0, acc, genes = 0, 0, 0
    for f in range(len(group_entries)):
        e, g = int(group_entries[f]), int(group_genes[f])
        if f > f0 and (acc + e > max_entries or genes + g > max_genes):
            blocks.append((f0, f))
            f0, acc, genes = f, 0, 0
        acc += e
        genes += g
    if len(group_entries):
        blocks.append((f0, len(group_entries)))
    return blocks


# ------------------------------------------------------------------------------------------------- sorting
def _stable_order(keys: np.ndarray, n_keys: int) -> np.ndarray:
    """Stable order of small integer keys: numpy's radix sort when they fit 16 bits (one pass, O(n))."""
    if n_keys <= 1 << 16:
        return np.argsort(keys.astype(np.uint16, copy=False), kind="stable")
    return np.argsort(keys, kind="stable")


def _by_gene(genes: np.ndarray, rows: np.ndarray, values: np.ndarray, n_genes: int
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Entries ordered by gene, keeping their order within a gene.

    Returns
    -------
    tuple of numpy.ndarray
        ``(rows uint32, values float32, entries per gene int64 (n_genes,))``.
    """
    order = _stable_order(genes, n_genes)
    counts = np.bincount(genes, minlength=n_genes).astype(np.int64)
    return rows[order].astype(np.uint32, copy=False), values[order], counts


def _rows_in_order(rows: np.ndarray, values: np.ndarray, genes_local: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Entries of gene-major arrays put in store-row order within each gene (only if some are not)."""
    if len(rows) < 2:
        return rows, values
    same_gene = genes_local[1:] == genes_local[:-1]
    if not np.any(same_gene & (rows[1:] <= rows[:-1])):
        return rows, values
    key = (genes_local.astype(np.int64) << 32) | rows.astype(np.int64)
    order = np.argsort(key, kind="stable")
    return rows[order], values[order]


# --------------------------------------------------------------------------------------------- slice worker
def _read_slice(path: str, encoding: str, start: int, stop: int, row_map: np.ndarray, gene_map: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Mapped entries of rows (or columns, for CSC) ``start:stop`` of one h5ad: (store rows int32, global genes
    int32, values float32, bytes read). Entries of rows absent from the store and of unknown genes are dropped;
    for dense X only non-zeros count."""
    with h5py.File(path, "r") as f:
        x = f["X"]
        if encoding == "dense":
            block = np.asarray(x[start:stop], dtype=np.float32)
            rr, cc = np.nonzero(block)
            rows, genes, vals, nbytes = row_map[start:stop][rr], gene_map[cc], block[rr, cc], block.nbytes
        else:
            indptr = x["indptr"][start:stop + 1].astype(np.int64)
            a, b = int(indptr[0]), int(indptr[-1])
            minor = x["indices"][a:b]
            vals = x["data"][a:b].astype(np.float32, copy=False)
            nbytes = (b - a) * (minor.itemsize + x["data"].dtype.itemsize)
            major = np.repeat(np.arange(start, stop, dtype=np.int64), np.diff(indptr))
            if encoding == "csr":
                rows, genes = row_map[major], gene_map[minor]
            else:
                rows, genes = row_map[minor], gene_map[major]
    ok = (rows >= 0) & (genes >= 0)
    if not ok.all():
        rows, genes, vals = rows[ok], genes[ok], vals[ok]
    return rows.astype(np.int32, copy=False), genes.astype(np.int32, copy=False), vals, int(nbytes)


def read_range(dataset: h5py.Dataset, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
    """``dataset[start:stop]`` of a 1-D h5py dataset, in ``out`` when given (``stop - start`` items of the
    dataset's dtype). Chunks compressed by deflate alone (what h5ad writers use) are read raw and inflated by
    ISA-L: the same bytes as HDF5's zlib gives, in about 2/3 of its CPU time. Other layouts or filters, and any
    chunk that cannot be read so, go through h5py (and its errors)."""
    start, stop = int(start), int(stop)
    if out is None:
        out = np.empty(max(0, stop - start), dtype=dataset.dtype)
    if stop <= start:
        return out
    if _inflate is None or dataset.ndim != 1 or dataset.chunks is None or not _deflate_only(dataset):
        dataset.read_direct(out, np.s_[start:stop])
        return out
    size = int(dataset.chunks[0])
    item = dataset.dtype.itemsize
    raw_out = out.view(np.uint8)
    for c0 in range(start // size * size, stop, size):
        a, b = max(start, c0), min(stop, c0 + size)
        try:
            mask, raw = dataset.id.read_direct_chunk((c0,))
            data = raw if mask & 1 else _inflate.decompress(raw)  # bit 0 set: deflate skipped for this chunk
            piece = np.frombuffer(data, dtype=np.uint8, count=(b - a) * item, offset=(a - c0) * item)
        except Exception:  # noqa: BLE001 - h5py reads the chunk (and names the file if it is damaged)
            out[a - start:b - start] = dataset[a:b]
            continue
        raw_out[(a - start) * item:(b - start) * item] = piece
    return out


def _deflate_only(dataset: h5py.Dataset) -> bool:
    plist = dataset.id.get_create_plist()
    return plist.get_nfilters() == 1 and plist.get_filter(0)[0] == h5py.h5z.FILTER_DEFLATE


@numba.njit(cache=True, nogil=True)
def _count_csr(cols, indptr, local_rows, gene_map, identity, values, counts):  # pragma: no cover - compiled
    """Entries per global gene of a CSR slice (rows absent from the store and unknown genes dropped), and of
    the kept entries: the least store row, the least and largest non-NaN value and how many are NaN; whether
    every row's columns ascend."""
    min_row = np.int64(-1)
    lo = np.float64(np.inf)
    hi = np.float64(-np.inf)
    n_nan = 0
    kept = 0
    ascending = True
    for r in range(len(indptr) - 1):
        a, b = indptr[r], indptr[r + 1]
        for j in range(a + 1, b):
            if cols[j] < cols[j - 1]:
                ascending = False
        row = np.int64(local_rows[r])
        if row < 0:
            continue
        for j in range(a, b):
            c = cols[j]
            g = np.int64(c) if identity else np.int64(gene_map[c])
            if g < 0:
                continue
            counts[g] += 1
            kept += 1
            if min_row < 0 or row < min_row:
                min_row = row
            x = np.float64(values[j])
            if np.isnan(x):
                n_nan += 1
            else:
                lo = min(lo, x)
                hi = max(hi, x)
    return kept, min_row, lo, hi, n_nan, ascending


@numba.njit(cache=True, nogil=True)
def _scatter_csr(cols, indptr, local_rows, gene_map, identity, value_bits, cursor, n8_of_gene, base, words,
                 n_cols, band):  # pragma: no cover - compiled
    """The transpose of a CSR slice straight into laid-out run frames: each kept entry of gene g goes to
    ``words[cursor[g]]`` (its row's delta from the gene's previous row, the first from ``base``) and its value
    bits ``n8_of_gene[g]`` words further; genes with ``cursor < 0`` are not in this run.

    Rows are swept once per band of ``band`` source columns (each row's columns ascending: a row's entries of a
    band are consecutive), so the frames being written at a time are few enough to stay in cache; with
    ``band >= n_cols`` (columns in any order) it is one sweep. Entries reach a gene in row order either way."""
    last = np.full(len(cursor), base, dtype=np.int64)
    ptr = indptr[:-1].copy()
    for c0 in range(0, n_cols, band):
        c1 = c0 + band
        for r in range(len(indptr) - 1):
            row = np.int64(local_rows[r])
            if row < 0:
                continue
            j = ptr[r]
            end = indptr[r + 1]
            while j < end:
                c = cols[j]
                if c >= c1:
                    break
                j += 1
                g = np.int64(c) if identity else np.int64(gene_map[c])
                if g < 0:
                    continue
                p = cursor[g]
                if p < 0:
                    continue
                words[p] = np.uint32((row - last[g]) & 0xFFFFFFFF)  # wraps as uint32 arithmetic does in encode
                words[p + n8_of_gene[g]] = value_bits[j - 1]
                last[g] = row
                cursor[g] = p + 1
            ptr[r] = j


@numba.njit(cache=True, nogil=True)
def _lay_out_runs(rows, value_bits, gene_start, cursor, n8_of_gene, base, words):  # pragma: no cover - compiled
    """:func:`_scatter_csr`'s frames from entries already in gene order (``gene_start``: first entry of each
    gene)."""
    for g in range(len(cursor)):
        p = cursor[g]
        if p < 0:
            continue
        prev = base
        for j in range(gene_start[g], gene_start[g + 1]):
            r = np.int64(rows[j])
            words[p] = np.uint32((r - prev) & 0xFFFFFFFF)
            words[p + n8_of_gene[g]] = value_bits[j]
            prev = r
            p += 1


def _run_layout(counts: np.ndarray, group_start: Sequence[int], f0: int, f1: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Where a slice's entries go in its laid-out run frames (one frame per non-empty gene group of
    ``f0:f1``; see :mod:`data_layer.chunks`: header, row deltas restarting at each gene, values).

    Returns
    -------
    tuple of numpy.ndarray
        ``(frame_start int64 (n_groups + 1,) word offsets of each group's frame (empty outside f0:f1), words
        uint32 with each frame's header and padding written, cursor int64 (n_genes,) word of each gene's first
        delta (-1: not in the run), n8_of_gene int64 (n_genes,) words from a delta to its value)``.
    """
    n_genes = len(counts)
    gs = np.asarray(group_start, dtype=np.int64)
    gene_start = np.zeros(n_genes + 1, dtype=np.int64)
    np.cumsum(counts, out=gene_start[1:])
    group_n = gene_start[gs[1:]] - gene_start[gs[:-1]]
    frame_n = np.zeros_like(group_n)
    frame_n[f0:f1] = group_n[f0:f1]
    frame_start = chunks.frame_starts(frame_n)
    words = scratch("slice_words", int(frame_start[-1]), np.uint32)
    chunks.frame_headers(words, frame_start, frame_n)
    group_of_gene = np.repeat(np.arange(len(group_n)), np.diff(gs))
    k = group_of_gene
    cursor = np.where(frame_n[k] > 0, frame_start[k] + 8 + gene_start[:-1] - gene_start[gs[k]], -1)
    n8_of_gene = -(-frame_n[k] // 8) * 8
    return frame_start, words, cursor.astype(np.int64), n8_of_gene.astype(np.int64)


def _slice_runs(src: SourcePlan, start: int, stop: int, row_map: np.ndarray, gene_map: np.ndarray, n_genes: int,
                group_start: Sequence[int], f0: int, f1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int,
                                                                      dict]:
    """A slice's entries, in gene order (file order within a gene), laid out as the run frames of gene groups
    ``f0:f1`` (:func:`_run_layout`). CSR slices are read (:func:`read_range`) and transposed by one compiled
    counting sort straight into the frames; other encodings go through :func:`_read_slice` and a stable sort.

    Returns
    -------
    tuple
        ``(counts int64 (n_genes,), frame_start, words, base (the row the deltas start from), info)`` with
        ``info``: ``bytes_read``, ``max_abs``, ``finite`` of the kept values.
    """
    if src.encoding != "csr":
        rows, genes, vals, nbytes = _read_slice(src.path, src.encoding, start, stop, row_map, gene_map)
        rows_s, vals_s, counts = _by_gene(genes, rows, vals, n_genes)
        del rows, genes, vals
        lo, hi = (float(vals_s.min()), float(vals_s.max())) if vals_s.size else (0.0, 0.0)
        finite = bool(np.isfinite(lo) and np.isfinite(hi))  # NaN or inf anywhere makes min or max non-finite
        if finite:
            max_abs = max(abs(lo), abs(hi))
        else:
            max_abs = float(np.nanmax(np.abs(vals_s))) if not np.isnan(vals_s).all() else 0.0
        base = int(rows_s.min()) if len(rows_s) else 0  # a slice's rows span a narrow range: small first deltas
        frame_start, words, cursor, n8_of_gene = _run_layout(counts, group_start, f0, f1)
        gene_start = np.zeros(n_genes + 1, dtype=np.int64)
        np.cumsum(counts, out=gene_start[1:])
        _lay_out_runs(rows_s, vals_s.view(np.uint32), gene_start, cursor, n8_of_gene, base, words)
        return counts, frame_start, words, base, {"bytes_read": nbytes, "max_abs": max_abs, "finite": finite}

    with h5py.File(src.path, "r") as f:
        x = f["X"]
        indptr = x["indptr"][start:stop + 1].astype(np.int64)
        a, b = int(indptr[0]), int(indptr[-1])
        if len(indptr) != stop - start + 1 or b < a or bool(np.any(indptr[1:] < indptr[:-1])):
            raise ValueError(f"{src.path}: X/indptr of rows {start}-{stop} is not ascending")
        cols = read_range(x["indices"], a, b, scratch("slice_cols", b - a, x["indices"].dtype))
        vals = read_range(x["data"], a, b, scratch("slice_vals", b - a, x["data"].dtype)).astype(np.float32,
                                                                                                   copy=False)
        nbytes = (b - a) * (cols.itemsize + x["data"].dtype.itemsize)
    if len(cols) != b - a or len(vals) != b - a:
        raise ValueError(f"{src.path}: X/indices or X/data is shorter than X/indptr says")
    indptr -= a
    local_rows = np.array(row_map[start:stop], dtype=np.int32)  # writable: the compiled loops take one type
    if len(cols) and (int(cols.min()) < 0 or int(cols.max()) >= len(gene_map)):
        raise ValueError(f"{src.path}: X/indices of rows {start}-{stop} hold columns outside 0-{len(gene_map) - 1}")
    identity = bool(np.array_equal(gene_map, np.arange(len(gene_map))))
    counts = np.zeros(n_genes, dtype=np.int64)
    kept, base, lo, hi, n_nan, ascending = _count_csr(cols, indptr, local_rows, gene_map, identity, vals, counts)
    if kept == 0:
        lo = hi = 0.0
    finite = bool(n_nan == 0 and np.isfinite(lo) and np.isfinite(hi))
    max_abs = max(abs(lo), abs(hi)) if n_nan < kept else 0.0
    base = max(0, int(base))
    frame_start, words, cursor, n8_of_gene = _run_layout(counts, group_start, f0, f1)
    n_cols = len(gene_map)
    _scatter_csr(cols, indptr, local_rows, gene_map, identity, vals.view(np.uint32), cursor, n8_of_gene, base,
                 words, n_cols, SCATTER_BAND if ascending else max(1, n_cols))
    return counts, frame_start, words, base, {"bytes_read": int(nbytes), "max_abs": float(max_abs),
                                              "finite": finite}


def run_slice(work: str, index: int, source_index: int, source: dict, start: int, stop: int, n_genes: int,
              group_start: Sequence[int], groups: tuple[int, int] | None = None) -> dict:
    """Convert one slice into its run file (``slice-<index>.bin``) and summary (``slice-<index>.npz``).

    ``groups``: the gene groups ``[f0, f1)`` the run file holds (a pass of a conversion whose temporary disk is
    bounded; default every group); the counts cover every gene.

    Returns
    -------
    dict
        ``entries`` (kept), ``bytes_read``, ``max_abs`` and ``finite`` of the values, ``run_bytes``.
    """
    t = [time.process_time()]
    _begin_task("slice")
    folder = Path(work)
    src = SourcePlan(**source)
    row_map = np.load(folder / f"rows-{source_index}.npy", mmap_mode="r")
    gene_map = np.load(folder / f"genes-{source_index}.npy")
    f0, f1 = (0, len(group_start) - 1) if groups is None else (int(groups[0]), int(groups[1]))
    counts, frame_start, words, base, info = _slice_runs(src, start, stop, row_map, gene_map, n_genes,
                                                         group_start, f0, f1)
    t.append(time.process_time())
    frames = chunks.compress_frames(words, frame_start[f0:f1 + 1], clevel=RUN_CLEVEL)
    del words
    offsets = np.zeros(f1 - f0 + 1, dtype=np.int64)
    np.cumsum([len(frame) for frame in frames], out=offsets[1:])
    part = folder / f"slice-{index:06d}.bin.part"
    with open(part, "wb") as f:
        f.writelines(frame for frame in frames if frame)
    del frames
    os.replace(part, folder / f"slice-{index:06d}.bin")
    np.save(folder / f"slice-{index:06d}.counts.npy", counts.astype(np.int32))  # before the .npz: "done" marker
    summary = {"offsets": offsets, "base": np.array([base], dtype=np.int64),
               "info": np.array([info["bytes_read"], info["max_abs"], float(info["finite"])], dtype=np.float64)}
    _save_npz(folder / f"slice-{index:06d}.npz", summary)
    _end_task()
    t.append(time.process_time())
    return {"entries": int(counts.sum()), "bytes_read": info["bytes_read"], "max_abs": info["max_abs"],
            "finite": info["finite"], "run_bytes": int(offsets[-1]), "scanned": int(stop - start),
            "seconds": {"slice_read_sort": t[1] - t[0], "slice_encode_write": t[2] - t[1], **_worker_start_seconds()}}


def count_slice(work: str, source_index: int, source: dict, start: int, stop: int, n_genes: int) -> np.ndarray:
    """Entries per global gene (int64 ``(n_genes,)``) of one slice: CSR reads only the column indices."""
    folder = Path(work)
    src = SourcePlan(**source)
    row_map = np.load(folder / f"rows-{source_index}.npy", mmap_mode="r")
    gene_map = np.load(folder / f"genes-{source_index}.npy")
    if src.encoding != "csr":
        _, genes, _, _ = _read_slice(src.path, src.encoding, start, stop, row_map, gene_map)
        return np.bincount(genes, minlength=n_genes).astype(np.int64)
    with h5py.File(src.path, "r") as f:
        indptr = f["X/indptr"][start:stop + 1].astype(np.int64)
        cols = f["X/indices"][int(indptr[0]):int(indptr[-1])]
    genes = gene_map[cols]
    local_rows = np.asarray(row_map[start:stop])
    keep = genes >= 0
    if (local_rows < 0).any():
        keep &= np.repeat(local_rows >= 0, np.diff(indptr))
    if not keep.all():
        genes = genes[keep]
    return np.bincount(genes, minlength=n_genes).astype(np.int64)


#: Most bytes of a compressed frame of ``n`` entries: ``8 n`` of words, 32 + 56 of header and padding, 16 of
#: Blosc's header (Blosc stores incompressible data as it is, behind its header).
FRAME_OVERHEAD_BYTES = 104


def slice_files_bytes(n_slices: int, n_genes: int, n_groups: int) -> int:
    """Most disk bytes of the slices' files besides their runs: per slice its counts (4 bytes per gene), its
    summary and the file system's last partial block of each file."""
    return n_slices * (4 * n_genes + 8 * (n_groups + 1) + 4 * 4096 + 1024)


def plan_passes(group_entries: np.ndarray, n_slices: int, temp_limit_bytes: int, n_genes: int = 0
                ) -> list[tuple[int, int]]:
    """Consecutive group ranges ``[f0, f1)`` whose slice files (runs, counts, summaries) can never exceed
    ``temp_limit_bytes`` together, whatever the values (each entry counted at its uncompressed 8 bytes, each
    frame at its largest overhead).

    Raises
    ------
    ValueError
        when the runs of one gene group alone may exceed the limit (the message gives the bytes needed).
    """
    fixed = slice_files_bytes(n_slices, n_genes, len(group_entries))
    if fixed >= temp_limit_bytes:
        raise ValueError(f"the counts and summaries of the {n_slices} slices take {fixed / 2**20:,.1f} MB, more "
                         f"than the temporary disk limit of {temp_limit_bytes / 2**20:,.1f} MB")
    temp_limit_bytes -= fixed
    passes = []
    f0, acc = 0, 0
    for f, e in enumerate(np.asarray(group_entries, dtype=np.int64).tolist()):
        need = 8 * e + FRAME_OVERHEAD_BYTES * n_slices
        if need > temp_limit_bytes:
            raise ValueError(f"the run files of gene group {f} ({e:,} entries) may take {need / 2**20:,.1f} MB, "
                             f"more than the {temp_limit_bytes / 2**20:,.1f} MB the temporary disk limit leaves "
                             f"for runs")
        if f > f0 and acc + need > temp_limit_bytes:
            passes.append((f0, f))
            f0, acc = f, 0
        acc += need
    passes.append((f0, len(group_entries)))
    return passes


def _save_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)


@numba.njit(cache=True, nogil=True)
def _place_runs(words, frame_start, counts, base, cursor, rows, value_bits):  # pragma: no cover - compiled
    """Decode one gene group's frames (frame of slice s: ``words[frame_start[s]:frame_start[s + 1]]``, its
    genes' entries ``counts[s]``, deltas from ``base[s]`` restarting at each gene) into ``rows`` and
    ``value_bits`` at each gene's ``cursor`` (advanced); False when a frame's count is not the counts' sum."""
    for s in range(counts.shape[0]):
        p = frame_start[s]
        if frame_start[s + 1] == p:
            continue
        n = np.int64(words[p])
        total = 0
        for g in range(counts.shape[1]):
            total += counts[s, g]
        if n != total:
            return False
        d = p + 8
        v = d + (n + 7) // 8 * 8
        for g in range(counts.shape[1]):
            prev = base[s]
            dst = cursor[g]
            for _ in range(counts[s, g]):
                prev = (prev + np.int64(words[d])) & 0xFFFFFFFF
                rows[dst] = np.uint32(prev)
                value_bits[dst] = words[v]
                d += 1
                v += 1
                dst += 1
            cursor[g] = dst
    return True


@numba.njit(cache=True, nogil=True)
def _count_chunks(rows, offsets, n_chunks, chunk_rows, out):  # pragma: no cover - compiled
    """``out[g * n_chunks + c]`` += entries of gene g (``rows[offsets[g]:offsets[g + 1]]``) in row chunk c."""
    for g in range(len(offsets) - 1):
        for j in range(offsets[g], offsets[g + 1]):
            out[g * n_chunks + np.int64(rows[j]) // chunk_rows] += 1


# --------------------------------------------------------------------------------------------- block worker
def run_block(work: str, index: int, g0: int, g1: int, f0: int, f1: int, group_start: Sequence[int],
              n_slices: int, slice_offsets: np.ndarray, n_cells: int, n_clusters: int,
              chunk_rows: int, rows_ascending: bool = False, slice_base: np.ndarray | None = None) -> dict:
    """Write block ``index`` (genes ``g0:g1``, groups ``f0:f1``): ``block-<index>.bin`` with every (gene, row
    chunk) of its genes, and ``block-<index>.npz`` with the chunk offsets, cluster statistics and ranges.

    The entries of genes ``g0:g1`` in each slice are read from ``slice-<s>.counts.npy`` (memory-mapped);
    ``slice_offsets[s]``: byte offsets of groups ``f0 .. f1`` in slice s's run file (int64 ``(n_slices, f1 - f0 + 1)``).
    ``rows_ascending``: the sources' rows map to ascending store rows in plan order (then a gene's entries,
    gathered slice after slice, are already in row order and are not checked). ``slice_base[s]``: the row
    slice s's deltas start from at each gene (int64 ``(n_slices,)``).
    """

    t = [time.process_time()]
    _begin_task("block")
    folder = Path(work)
    bg = g1 - g0
    slice_base = np.zeros(n_slices, dtype=np.int64) if slice_base is None else np.asarray(slice_base)
    counts = np.zeros((n_slices, bg), dtype=np.int64)
    for s in range(n_slices):
        counts[s] = np.load(folder / f"slice-{s:06d}.counts.npy", mmap_mode="r")[g0:g1]
    per_gene = counts.sum(axis=0)
    offsets = np.zeros(bg + 1, dtype=np.int64)
    np.cumsum(per_gene, out=offsets[1:])
    raws: list[bytes | None] = []
    for s in range(n_slices):  # the block's compressed segments, one file open at a time
        a, b = int(slice_offsets[s, 0]), int(slice_offsets[s, -1])
        if b <= a:
            raws.append(None)
            continue
        fd = os.open(folder / f"slice-{s:06d}.bin", os.O_RDONLY)
        try:
            raws.append(os.pread(fd, b - a, a))
        finally:
            os.close(fd)
    t.append(time.process_time())
    # Group after group (a few MB: stays in cache): each slice's frame is decompressed into one reused buffer,
    # one compiled pass decodes the row deltas and moves every entry to its gene-major place (slices in order
    # within a gene), then the group's genes get their statistics, ranges and store chunks.
    n_chunks = max(1, math.ceil(n_cells / chunk_rows))
    out: dict[str, np.ndarray] = {"counts": per_gene, "ranges": np.zeros((bg, 2))}
    if n_clusters:
        # Cells outside any cluster count in an extra row, dropped: no masking pass over the entries.
        codes = np.load(folder / "clusters.npy", mmap_mode="r")
        codes = np.where(codes < 0, n_clusters, codes).astype(np.int64)
        out["sums"] = np.zeros((n_clusters, bg))
        out["npos"] = np.zeros((n_clusters, bg), dtype=np.int64)
    frame_start = np.zeros(n_slices + 1, dtype=np.int64)
    base_u32 = np.asarray(slice_base, dtype=np.int64) & 0xFFFFFFFF
    lengths = np.zeros(bg * n_chunks + 1, dtype=np.int64)
    chunk_base = (np.arange(bg * n_chunks) % n_chunks) * chunk_rows
    seconds = np.zeros(3)
    part = folder / f"block-{index:05d}.bin.part"
    with open(part, "wb") as f:
        for k in range(f1 - f0):
            c0 = time.process_time()
            ga, gb = group_start[f0 + k] - g0, group_start[f0 + k + 1] - g0
            n = int(offsets[gb] - offsets[ga])
            lo_hi = offsets[ga:gb + 1] - offsets[ga]
            rows = scratch("block_rows", n, np.uint32)
            values = scratch("block_values", n, np.float32)
            if n:
                c = np.ascontiguousarray(counts[:, ga:gb])
                frame_start[:] = chunks.frame_starts(c.sum(axis=1))
                words = scratch("block_words_in", int(frame_start[-1]), np.uint32)
                for s in range(n_slices):
                    w0, w1 = int(frame_start[s]), int(frame_start[s + 1])
                    lo = int(slice_offsets[s, k] - slice_offsets[s, 0])
                    hi = int(slice_offsets[s, k + 1] - slice_offsets[s, 0])
                    if w1 == w0 and hi == lo:
                        continue
                    frame = memoryview(raws[s])[lo:hi] if hi > lo else b""
                    if hi - lo < 16 or int.from_bytes(frame[4:8], "little") != 4 * (w1 - w0):  # Blosc header: size
                        raise RuntimeError(f"block of genes {g0}-{g1}: slice {s} holds {hi - lo} bytes for group "
                                           f"{f0 + k}, not a frame of its {int(c[s].sum())} counted entries")
                    blosc.decompress(frame, words[w0:w1])
                cursor = lo_hi[:-1].copy()
                if not _place_runs(words, frame_start, c, base_u32, cursor, rows, values.view(np.uint32)) \
                        or not np.array_equal(cursor, lo_hi[1:]):
                    raise RuntimeError(f"block of genes {g0}-{g1}: a frame of group {f0 + k} holds other entries "
                                       f"than counted")
                genes_local = np.repeat(np.arange(gb - ga), np.diff(lo_hi)) if (n_clusters or not rows_ascending) \
                    else None
                if not rows_ascending:
                    rows, values = _rows_in_order(rows, values, genes_local)
            c1 = time.process_time()
            if n and n_clusters:
                idx = codes[rows]
                idx *= gb - ga
                idx += genes_local
                size = (n_clusters + 1) * (gb - ga)
                out["sums"][:, ga:gb] = np.bincount(idx, weights=values, minlength=size)[:n_clusters * (gb - ga)
                                                                                        ].reshape(n_clusters, -1)
                out["npos"][:, ga:gb] = np.bincount(idx[values > 0], minlength=size)[:n_clusters * (gb - ga)
                                                                                     ].reshape(n_clusters, -1)
                del idx
            out["ranges"][ga:gb] = block_default_ranges(values, lo_hi)
            c2 = time.process_time()
            # Every (gene, row chunk) boundary in one pass: the entries are in (gene, store row) order.
            if n_chunks == 1:
                bounds = lo_hi
            else:
                bounds = np.zeros((gb - ga) * n_chunks + 1, dtype=np.int64)
                _count_chunks(rows, lo_hi, n_chunks, chunk_rows, bounds[1:])
                np.cumsum(bounds, out=bounds)
            n_words = int(chunks.frame_starts(np.diff(bounds))[-1])
            frames = chunks.encode_many(rows, values, bounds, chunk_base[ga * n_chunks:gb * n_chunks],
                                        words=scratch("block_words_out", n_words, np.uint32))
            lengths[1 + ga * n_chunks:1 + gb * n_chunks] = [len(frame) for frame in frames]
            f.writelines(frame for frame in frames if frame)
            del frames
            seconds += (c1 - c0, c2 - c1, time.process_time() - c2)
    del raws
    flat = np.cumsum(lengths)
    out["chunk_offsets"] = flat[np.arange(bg, dtype=np.int64)[:, None] * n_chunks + np.arange(n_chunks + 1)[None, :]]
    pos = int(flat[-1])
    os.replace(part, folder / f"block-{index:05d}.bin")
    if n_clusters:
        del codes
    _save_npz(folder / f"block-{index:05d}.npz", out)
    del out
    _end_task()
    t.append(time.process_time())
    return {"entries": int(offsets[-1]), "bytes": pos,
            "seconds": {"block_read": t[1] - t[0], "block_decode_order": float(seconds[0]),
                        "block_stats_ranges": float(seconds[1]),
                        "block_encode_write": t[2] - t[1] - float(seconds[0] + seconds[1]),
                        **_worker_start_seconds()}}


def _load_libc() -> None:
    """Load the C library once (``OSError`` or ``AttributeError`` where there is none to load): the symbols of
    the running program, which hold the C library's. Not ``ctypes.util.find_library``: it runs ``ldconfig`` in a
    child process, a fork of this one that holds all its memory until it execs (millions of cells' worth, for the
    memory limit that sums the prepare's processes)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]


def release_free_memory() -> None:
    """Give freed heap pages back to the system (glibc keeps them otherwise, and the memory limit counts
    resident pages)."""
    try:
        _load_libc()
        _libc.malloc_trim(0)
    except (OSError, AttributeError, TypeError):
        pass


#: glibc ``mallopt`` parameters: allocations below the first are served from the heap (not ``mmap``), and up to
#: the second of free memory at the heap's top stays there until :func:`release_free_memory`.
_M_MMAP_THRESHOLD, _M_TRIM_THRESHOLD = -3, -1
#: A worker's allocations below this size come from its heap.
HEAP_MAX_ALLOCATION = 64 << 20
#: Free heap a pool worker may keep between tasks (glibc's trim threshold): counted in each worker's memory.
HEAP_KEPT_BYTES = 2 * HEAP_MAX_ALLOCATION


def _reuse_heap() -> None:
    """In a worker: serve allocations up to :data:`HEAP_MAX_ALLOCATION` from the heap, where a freed one is reused
    by the next. By default glibc maps each allocation above 128 kB to fresh pages and unmaps it when freed: every
    chunk inflated from a source (a new ``bytes`` of 1 MB or more) then faults in all its pages again, which on a
    virtual machine costs about as much as inflating it. The freed heap is given back when the worker turns from
    one kind of task to the other (:func:`_begin_task`)."""
    global _heap_reused
    try:
        _load_libc()
        _heap_reused = bool(_libc.mallopt(_M_MMAP_THRESHOLD, HEAP_MAX_ALLOCATION)) and bool(
            _libc.mallopt(_M_TRIM_THRESHOLD, HEAP_KEPT_BYTES))
    except (OSError, AttributeError, TypeError):
        pass


#: Whether this process serves its allocations from a reused heap (:func:`_reuse_heap`, pool workers).
_heap_reused = False


# ------------------------------------------------------------------------------------------------ scratch
_scratch = threading.local()
#: Whether this process keeps its large working arrays between tasks (set in the pool's worker processes and by
#: the inline runner): a fresh array's pages are faulted in by the kernel on first write, which on a virtual
#: machine costs more than the work done on them; a kept array is already resident. Tasks run one at a time
#: per process (per thread: the arrays are the thread's), and a task of the other kind drops them first.
_keep_scratch = False


def scratch(name: str, n: int, dtype) -> np.ndarray:
    """An array of ``n`` items of ``dtype`` (uninitialised), kept for the next task of this process when
    working arrays are kept (else a new one)."""
    dtype = np.dtype(dtype)
    if not _keep_scratch:
        return np.empty(n, dtype=dtype)
    arrays = _scratch.__dict__.setdefault("arrays", {})
    nbytes = int(n) * dtype.itemsize
    buf = arrays.get(name)
    if buf is None or buf.nbytes < nbytes:
        arrays.pop(name, None)
        buf = arrays[name] = np.empty(nbytes + nbytes // 8, dtype=np.uint8)
    return buf[:nbytes].view(dtype)


def drop_scratch(prefix: str = "") -> None:
    """Free the kept arrays whose names start with ``prefix`` (all by default)."""
    arrays = _scratch.__dict__.get("arrays", {})
    for name in [k for k in arrays if k.startswith(prefix)]:
        del arrays[name]


def keep_scratch(keep: bool) -> None:
    global _keep_scratch, _phase
    _keep_scratch = bool(keep)
    if not keep:
        drop_scratch()
        _phase = ""
        release_free_memory()


#: The kind of this process's last task ("slice" or "block"; "" before the first).
_phase = ""


def _begin_task(kind: str) -> None:
    """Start a task of ``kind`` ("slice" or "block") in this process. After a task of the other kind, its kept
    working arrays are dropped and the freed heap given back to the system; in a pool worker it is kept between
    tasks of one kind (:func:`_end_task`), so the next task reuses those pages instead of faulting in new ones."""
    global _phase
    if _phase and _phase != kind:
        drop_scratch(f"{_phase}_")
        release_free_memory()
    _phase = kind


def _end_task() -> None:
    """End a task: the freed heap is given back, except in a pool worker that reuses its heap (its next task of
    the same kind needs about as much again)."""
    if not (_heap_reused and _keep_scratch):
        release_free_memory()


# ------------------------------------------------------------------------------------------------ hole punch


def punch_hole(path: Path, offset: int, length: int) -> bool:
    """Release the disk blocks of ``path[offset:offset + length]`` (Linux ``fallocate``); False when the file
    system or platform cannot (the bytes then stay until the work folder is removed)."""
    if length <= 0:
        return True
    try:
        _load_libc()
        fd = os.open(path, os.O_WRONLY)
    except (OSError, AttributeError, TypeError):
        return False
    try:
        return _libc.fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, int(offset), int(length)) == 0
    finally:
        os.close(fd)


def disk_bytes(folder: Path, prefix: str = "") -> int:
    """Bytes allocated on disk by the files of a folder whose names start with ``prefix`` (holes not counted)."""
    total = 0
    for p in folder.glob(f"{prefix}*"):
        try:
            total += p.stat().st_blocks * 512
        except FileNotFoundError:
            pass
    return total


# ------------------------------------------------------------------------------------------------ the pool
class _Inline:
    """A stand-in for a process pool that runs each task when it is submitted (one worker, no processes)."""

    def submit(self, fn: Callable, *args, **kwargs) -> Future:
        fut: Future = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future
            fut.set_exception(exc)
        return fut

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        keep_scratch(False)


def make_pool(workers: int):
    """A process pool of ``workers`` processes (forkserver: workers do not inherit the parent's open files or
    memory), or an inline runner for one worker."""
    if workers <= 1:
        keep_scratch(True)
        return _Inline()
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if "forkserver" in methods:
        ctx.set_forkserver_preload(["data_layer.convert_preload"])  # imports and compiled loops, loaded once
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_start_worker,
                               initargs=(os.getpid(),))


class DaskPool:
    """The executor of a dask.distributed cluster (``Client.get_executor``: standard futures), for the same
    slice and block tasks as the local pool. The cluster's workers must see the sources and the work folder at
    the same paths (a shared file system) and import this project."""

    def __init__(self, address: str, timeout_s: float | None = None):
        try:
            from distributed import Client
        except ImportError:
            raise RuntimeError("a scheduler address needs dask.distributed: pip install "
                               "'abc-atlas-viewer[dask]'") from None
        self.address = address
        try:
            self.client = Client(address, timeout=SCHEDULER_TIMEOUT_S if timeout_s is None else timeout_s,
                                 set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise RuntimeError(f"cannot reach the dask scheduler at {address} ({exc})") from None
        self.executor = self.client.get_executor(pure=False)
        self.workers = max(1, sum(self.client.nthreads().values()))

    def submit(self, fn: Callable, *args, **kwargs) -> Future:
        return self.executor.submit(fn, *args, **kwargs)

    def close(self) -> int:
        """Disconnect; returns the cluster's worker threads."""
        self.client.close()
        return self.workers

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        try:
            self.executor.shutdown(wait=wait and not cancel_futures)
        finally:
            self.client.close()


def dask_pool(address: str) -> DaskPool:
    """A :class:`DaskPool` on the scheduler at ``address`` (e.g. ``tcp://10.0.0.5:8786``); ``RuntimeError`` when
    dask.distributed is not installed or the scheduler cannot be reached."""
    return DaskPool(address)


def _start_worker(pid: int) -> None:
    """A pool worker loads the compiled loops, keeps its working arrays between tasks and ends with the prepare
    that started it."""
    global _start_seconds
    t = time.process_time()
    _reuse_heap()
    load_kernels()
    _start_seconds = time.process_time() - t
    keep_scratch(True)
    _watch_parent(pid)


#: CPU seconds this worker took to load the compiled loops, reported (once) with its first task's seconds.
_start_seconds = 0.0


def _worker_start_seconds() -> dict:
    global _start_seconds
    seconds, _start_seconds = _start_seconds, 0.0
    return {"worker_start": seconds} if seconds > 0.01 else {}  # loaded in the fork server: nothing to report


def load_kernels() -> None:
    """Load (or compile, the first time) every compiled loop of the conversion: about 0.3 CPU s and 50 MB of
    JIT machinery once per process, like an import; a worker does it when it starts."""
    z32, z64, zf = np.zeros(1, np.int32), np.zeros(2, np.int64), np.zeros(1, np.float32)
    for cols in (z32, z64[:1]):
        _count_csr(cols, z64, z32, z32, True, zf, z64.copy())
        _scatter_csr(cols, z64, z32, z32, True, zf.view(np.uint32), z64[:1].copy(), z64[:1].copy(), 0,
                     np.zeros(24, np.uint32), 1, 1)
    block_default_ranges(zf, z64)
    chunks.frame_headers(np.zeros(24, np.uint32), z64.copy(), z64[:1].copy())
    chunks.encode_many(np.zeros(1, np.uint32), zf, np.array([0, 1]), z64[:1])
    _count_chunks(np.zeros(1, np.uint32), z64, 1, 1, np.zeros(1, np.int64))
    _place_runs(np.zeros(24, np.uint32), np.zeros(2, np.int64), np.zeros((1, 1), np.int64), z64[:1],
                z64[:1].copy(), np.zeros(1, np.uint32), np.zeros(1, np.uint32))


def _watch_parent(pid: int, interval_s: float = 0.5) -> None:
    """In a worker: end this process when the prepare that started it is gone (killed: the pool's queues then
    never close, and the worker would wait forever)."""

    def watch() -> None:
        while True:
            time.sleep(interval_s)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(3)
            except PermissionError:  # alive, another user's process after a PID reuse: keep going
                pass

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


def run_tasks(pool, tasks: list[Callable[[], tuple[Callable, tuple, dict]]], on_done: Callable[[int, dict], None],
              max_pending: int) -> None:
    """Run tasks with at most ``max_pending`` submitted at once; call ``on_done(task index, result)`` in
    completion order. A task is a function giving ``(fn, args, kwargs)`` when it is submitted, so the arguments
    of waiting tasks do not take memory. The first failure cancels the rest and is raised."""
    pending: dict[Future, int] = {}
    it = iter(enumerate(tasks))
    exhausted = False
    try:
        while True:
            while not exhausted and len(pending) < max_pending:
                nxt = next(it, None)
                if nxt is None:
                    exhausted = True
                    break
                i, make = nxt
                fn, args, kwargs = make()
                pending[pool.submit(fn, *args, **kwargs)] = i
            if not pending:
                return
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for fut in done:
                i = pending.pop(fut)
                on_done(i, fut.result())
    except BaseException:
        for fut in pending:
            fut.cancel()
        raise


def default_workers() -> int:
    """Cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def remove_files(folder: Path, prefix: str) -> None:
    """Remove the files of a folder whose names start with ``prefix``."""
    for p in folder.glob(f"{prefix}*"):
        p.unlink(missing_ok=True)


def remove_work(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
