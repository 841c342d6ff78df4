"""Expression in a gene-major, compressed, exact layout, converted from cell-major h5ad files.

Store layout of one dataset's expression (folder ``expression/``)::

    blocks/<b>.bin        the compressed chunks of the genes of block b (see data_layer.chunks): gene g, row
                          chunk c is bytes chunk_offset[g, c]:chunk_offset[g, c + 1] of the block file holding g
    block_start.npy       int64   [n_blocks + 1]  first gene of each block file
    chunk_offset.npy      int64   [n_genes, n_chunks + 1]  byte offsets of each gene's row chunks in its block
    indptr.npy            int64   [n_genes + 1]   cumulative entries per gene (gene g has indptr[g+1]-indptr[g])
    has_expression.npy    bool    [n_cells]       the cell has a row in some expression matrix
    genes.parquet         gene_identifier, gene_symbol
    cluster_mean.npy      float32 [n_clusters, n_genes]  mean log2 over the cluster's cells with expression
    cluster_fraction.npy  float32 [n_clusters, n_genes]  fraction of those cells with a value > 0
    cluster_n_cells.npy   int64   [n_clusters]    cells with expression per cluster (NaN stats where 0)
    cell_source.npy       int16   [n_cells]       source file of each cell's row (-1: none); with
    gene_in_source.npy    bool    [n_sources, n_genes]  whether each file holds each gene: only written when some
                                                  file lacks some gene (the consensus mouse: the Macosko files
                                                  hold fewer genes); a gene is NaN in the cells of files without it
    gene_range.npy        float64 [n_genes, 2]    each gene's default colour range (vmin, vmax) over the dataset:
                                                  0 .. 99th percentile of its values > 0 (NaN row: not stored,
                                                  computed when asked: a gene with negative values)
    expression.json       layout, chunk_rows, codec, nnz, sources, counts and ``default_range_percentile``

Values are the source's float32 values, bit for bit: a gene, a cell export or the HTTP API gives the numbers
the release's h5ad holds (the official ``get_gene_data`` reads the same). Each (gene, row chunk) is compressed
on its own (:mod:`data_layer.chunks`: delta-coded rows, bit shuffle, LZ4), about 4 bytes per entry where the
uncompressed int32 + float32 pair takes 8, and a gene look-up reads and decodes only that gene's chunks (the
chunks of a section's row range, for one section). Stores written before (``indices.npy`` and float16 or
float32 ``data.npy``, memory-mapped) are still read.

The conversion (:func:`convert_expression`, planned and run by :mod:`data_layer.convert`) never holds the
matrix in memory, runs on every core, keeps a bounded number of files open and resumes after a kill.

The default colour range of a gene (:func:`default_range_of_entries`, the definition of
``rendering.raster.default_gene_range`` applied to the stored entries) is computed with each block from its
genes' sorted entries, so a picture of a new gene needs no pass over every cell for it; stores written before it
existed (no ``gene_range.npy``) compute it from the gene's entries when asked.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import logging
import math
import os
import shutil
import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import h5py
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

import data_layer.chunks as chunks

from .ranges import DEFAULT_RANGE_PERCENTILE, default_range_of_entries  # noqa: F401  (part of this module's API)

log = logging.getLogger(__name__)

#: Percentile of a gene's expressing cells (values > 0) at the top of its default colour range.
#: Version of the files written in ``expression/`` (part of a dataset's prepare signature, so a store prepared
#: by an older version is converted again by the next incremental prepare). 2: ``gene_range.npy``; 3: exact
#: float32 values in compressed chunks.
LAYOUT_VERSION = 3


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
    conversion: dict = field(default_factory=dict)


def convert_expression(
    sources: Sequence[Path],
    cell_labels: pa.Array,
    out_dir: Path,
    *,
    cluster_codes: np.ndarray | None = None,
    n_clusters: int = 0,
    memory_limit_bytes: int = 4 << 30,
    gene_symbols: Mapping[str, str] | None = None,
    dtype: str = "float32",
    progress: bool = False,
    label: str = "",
    work_dir: Path | None = None,
    workers: int | None = None,
    entries_per_task: int | None = None,
    temp_limit_bytes: int | None = None,
    scheduler: str | None = None,
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
        bound on the memory of the conversion: this process's working arrays plus every worker process.
    gene_symbols
        gene_identifier -> symbol, used when an h5ad has no ``gene_symbol`` column.
    dtype
        ``"float32"`` (``"auto"`` is accepted and means the same): values are stored exactly as the source's.
    work_dir
        folder for the plan, the run files and finished blocks; a conversion killed midway and started again
        with the same folder and sources resumes from its finished slices and blocks (default: a folder inside
        ``out_dir``, removed at the end).
    workers
        processes (default: the cores this process may use; one for small inputs).
    entries_per_task
        most entries of one slice or block (default: what a worker's share of the memory limit holds).
    temp_limit_bytes
        bound on the temporary run files (default: none; they then take about the store's size, a little less).
        When the runs could exceed it, the genes are converted in passes over the sources (each pass reads the
        sources again), each pass's runs bounded by their uncompressed size; ``ExpressionError`` when one gene
        group alone could exceed it.
    scheduler
        address of a dask.distributed scheduler (``tcp://host:port``): the same slice and block tasks run on
        its workers instead of a local process pool (they must see the sources and ``work_dir`` at the same
        paths); ``workers`` is then the cluster's thread count.

    Raises
    ------
    ExpressionError
        naming the file that cannot be read.
    """
    import data_layer.convert as cv

    if dtype not in ("auto", "float32"):
        raise ValueError(f"dtype={dtype!r}: expression values are stored as float32, exactly as in the source")
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(work_dir) if work_dir is not None else out_dir / "_work"
    work.mkdir(parents=True, exist_ok=True)
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
    total_entries = sum(i.nnz for i in infos)
    src_plans = [cv.SourcePlan(str(i.path), i.encoding, i.n_rows, i.n_cols, i.nnz, i.path.stat().st_size)
                 for i in infos]
    labels_digest = hashlib.sha256(str((cell_labels.type, cell_labels.offset)).encode())
    for buf in cell_labels.buffers():
        if buf is not None:
            labels_digest.update(memoryview(buf))
    codes_digest = hashlib.sha256(np.ascontiguousarray(cluster_codes if cluster_codes is not None else []).tobytes())
    key = hashlib.sha256(json.dumps({
        "sources": [(s.path, s.n_rows, s.nnz, s.size_bytes, os.stat(s.path).st_mtime_ns) for s in src_plans],
        "cells": [n_cells, labels_digest.hexdigest()], "clusters": [n_clusters, codes_digest.hexdigest()],
        "chunk_rows": chunks.CHUNK_ROWS, "layout": LAYOUT_VERSION, "temp_limit": temp_limit_bytes,
    }).encode()).hexdigest()

    # Memory: this process keeps the row maps and flags; the rest is shared by the workers.
    if scheduler:
        try:
            n_workers = cv.dask_pool(scheduler).close()  # its thread count; the pool itself is opened below
        except RuntimeError as exc:
            raise ExpressionError(str(exc)) from None
    else:
        n_workers = cv.default_workers() if workers is None else max(1, int(workers))
        if total_entries < cv.POOL_MIN_ENTRIES and workers is None:
            n_workers = 1
    main_bytes = (16 << 20) + n_cells * (12 + 1 + 4 + 4) + sum(i.n_rows for i in infos) * 4  # + HDF5, codec
    while True:
        # a pool worker's interpreter and the free heap it keeps between tasks are not working memory
        share = (memory_limit_bytes - main_bytes) // n_workers - (
            cv.WORKER_BASE_BYTES + cv.HEAP_KEPT_BYTES if n_workers > 1 else 0)
        if share >= 64 << 20 or n_workers == 1 or scheduler:  # a cluster keeps its workers
            break
        n_workers -= 1
    if share < 4 << 20:
        log.warning("memory limit %d MB is tight for %d cells; using 4 MB of working memory per worker",
                    memory_limit_bytes >> 20, n_cells)
        share = 4 << 20
    max_entries = max(1, share // cv.BYTES_PER_ENTRY)
    if entries_per_task:
        max_entries = min(max_entries, int(entries_per_task))

    plan = cv.Plan.load(work / "plan.json")
    resumed = plan is not None and plan.key == key and all(
        (work / f"rows-{i}.npy").is_file() for i in range(len(src_plans)))
    if not resumed:
        for p in work.iterdir():
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        has_expression, rows_used, rows_extra = _write_row_maps(infos, cell_labels, gene_pos, work, share, label)
        np.save(work / "has_expression.npy", has_expression)
        codes = np.full(n_cells, -1, dtype=np.int32)
        if cluster_codes is not None and n_clusters:
            codes = np.asarray(cluster_codes, dtype=np.int32)
            codes = np.where((codes >= 0) & (codes < n_clusters) & has_expression, codes, -1).astype(np.int32)
        np.save(work / "clusters.npy", codes)
        indptrs = []
        for info in infos:
            if info.encoding == "dense":
                indptrs.append(None)
            else:
                with h5py.File(info.path, "r") as f:
                    indptrs.append(f["X"]["indptr"][:].astype(np.int64))
        slice_entries = min(max_entries, max(1 << 16, total_entries // max(1, 3 * n_workers)),
                            cv.MAX_SLICE_ENTRIES)
        plan = cv.Plan(key=key, n_cells=n_cells, n_genes=n_genes, n_clusters=n_clusters, sources=src_plans,
                       slices=cv.plan_slices(src_plans, indptrs, slice_entries),
                       group_start=cv.plan_groups(n_genes, cv.group_count(total_entries, max_entries, n_workers)))
        (work / "rows.json").write_text(json.dumps({"used": rows_used, "extra": rows_extra}))
        plan.save(work / "plan.json")
        del indptrs
    else:
        log.info("%s: resuming the expression conversion in %s", label or out_dir, work)
    has_expression = np.load(work / "has_expression.npy")
    row_counts = json.loads((work / "rows.json").read_text())
    missing = int(n_cells - has_expression.sum())
    if missing and not resumed:
        log.info("%s: %d of %d cells have no row in any expression matrix (their gene values are NaN)",
                 label or out_dir, missing, n_cells)

    stats = cv.ConversionStats(workers=n_workers, n_slices=len(plan.slices), memory_per_worker=int(share))
    n_slices = len(plan.slices)
    gs = np.asarray(plan.group_start, dtype=np.int64)
    n_groups = len(gs) - 1
    try:
        pool = cv.dask_pool(scheduler) if scheduler else cv.make_pool(n_workers)
    except RuntimeError as exc:
        raise ExpressionError(str(exc)) from None
    if scheduler:
        stats.extra["scheduler"] = str(scheduler)
    try:
        passes = _plan_passes(work, plan, pool, n_workers, temp_limit_bytes, total_entries, label)
        stats.extra["passes"] = len(passes)
        blocks_path = work / "blocks.json"
        blocks_of_pass: dict = json.loads(blocks_path.read_text()) if blocks_path.is_file() else {}
        rows_ascending = _rows_ascending(work, len(plan.sources))
        counts = None
        t_slices = t_blocks = 0.0
        for p, (pf0, pf1) in enumerate(passes):
            first_block = sum(len(blocks_of_pass[str(q)]) for q in range(p))
            done = str(p) in blocks_of_pass and all(
                (work / f"block-{first_block + b:05d}.npz").is_file() for b in range(len(blocks_of_pass[str(p)])))
            state = work / "pass.json"
            current = json.loads(state.read_text())["pass"] if state.is_file() else None
            if current != p:  # another pass's run files (a pass that finished, or no pass yet)
                cv.remove_files(work, "slice-")
            if done:
                stats.blocks_resumed += len(blocks_of_pass[str(p)])
                if counts is None and (work / "counts.npy").is_file():
                    counts = np.load(work / "counts.npy")
                continue
            state.write_text(json.dumps({"pass": p}))
            label_pass = f" (genes {int(gs[pf0])}-{int(gs[pf1])}, pass {p + 1}/{len(passes)})" if len(passes) > 1 \
                else ""

            # Slices: source rows -> run files segmented by gene group (the pass's groups only).
            t = time.perf_counter()
            bar = _bar(progress, total_entries, (f"{label} expression 1/2 read" if label else "read") + label_pass)
            todo = []
            for i, (s, a, b, n) in enumerate(plan.slices):
                if (work / f"slice-{i:06d}.npz").is_file():
                    stats.slices_resumed += 1
                    bar.update(n)
                    continue
                todo.append(i)

            def slice_task(i: int, pf0=pf0, pf1=pf1):
                s, a, b, _ = plan.slices[i]
                return cv.run_slice, (str(work), i, s, vars(plan.sources[s]), a, b, n_genes, plan.group_start,
                                      (pf0, pf1)), {}

            def slice_done(k: int, result: dict, todo=todo, bar=bar) -> None:
                bar.update(plan.slices[todo[k]][3])
                stats.add_seconds(result)
                stats.temp_bytes_peak = max(stats.temp_bytes_peak, cv.disk_bytes(work, "slice-"))

            try:
                cv.run_tasks(pool, [lambda i=i: slice_task(i) for i in todo], slice_done, max_pending=2 * n_workers)
            except ExpressionError:
                raise
            except BrokenProcessPool:
                raise ExpressionError(_BROKEN_POOL) from None
            except (OSError, KeyError, ValueError, RuntimeError) as exc:
                bad = _failing_source(exc, plan)
                raise ExpressionError(f"{bad}: cannot read the expression matrix ({type(exc).__name__}: {exc}); "
                                      f"the file may be truncated or corrupt: download it again") from None
            finally:
                bar.close()
            t_slices += time.perf_counter() - t

            pass_counts = np.zeros(n_genes, dtype=np.int64)  # per-slice counts stay on disk (n_slices x n_genes)
            slice_offsets = np.zeros((n_slices, pf1 - pf0 + 1), dtype=np.int64)
            slice_base = np.zeros(n_slices, dtype=np.int64)
            for i in range(n_slices):
                with np.load(work / f"slice-{i:06d}.npz") as z:
                    slice_offsets[i] = z["offsets"]
                    slice_base[i] = int(z["base"][0])
                    nbytes, mx, fin = z["info"]
                pass_counts += np.load(work / f"slice-{i:06d}.counts.npy", mmap_mode="r")
                stats.bytes_read += int(nbytes)
                stats.max_abs, stats.finite = max(stats.max_abs, float(mx)), stats.finite and bool(fin)
            if counts is None:
                counts = pass_counts
                np.save(work / "counts.npy", counts)
            elif not np.array_equal(counts, pass_counts):
                raise ExpressionError(f"{label}: the expression files hold other entries than in the conversion's "
                                      f"first pass: an expression file changed during prepare")
            indptr = np.zeros(n_genes + 1, dtype=np.int64)
            np.cumsum(counts, out=indptr[1:])
            group_entries = indptr[gs[1:]] - indptr[gs[:-1]]

            # Blocks: consecutive gene groups of the pass whose entries and statistics fit one worker's share.
            if str(p) not in blocks_of_pass:
                max_genes = max(1, int(share * 0.3) // (max(1, n_clusters) * cv.BYTES_PER_STAT))
                blocks_of_pass[str(p)] = [[f0 + pf0, f1 + pf0] for f0, f1 in cv.plan_blocks(
                    group_entries[pf0:pf1], np.diff(gs)[pf0:pf1], max_entries, max_genes)]
                blocks_path.write_text(json.dumps(blocks_of_pass))
            if pf1 > pf0 and group_entries[pf0:pf1].max() > max_entries:
                log.warning("%s: a group of genes has %d entries, more than a worker's budget (%d); raise "
                            "--memory-limit", label, int(group_entries[pf0:pf1].max()), max_entries)
            blocks = blocks_of_pass[str(p)]
            t = time.perf_counter()
            bar = _bar(progress, int(indptr[gs[pf1]] - indptr[gs[pf0]]),
                       (f"{label} expression 2/2 write" if label else "write") + label_pass)
            todo = []
            for b, (f0, f1) in enumerate(blocks):
                g0, g1 = int(gs[f0]), int(gs[f1])
                if (work / f"block-{first_block + b:05d}.npz").is_file():
                    stats.blocks_resumed += 1
                    bar.update(int(indptr[g1] - indptr[g0]))
                    continue
                todo.append(b)

            def block_task(b: int, blocks=blocks, first_block=first_block, pf0=pf0, slice_offsets=slice_offsets,
                           slice_base=slice_base):
                f0, f1 = blocks[b]
                g0, g1 = int(gs[f0]), int(gs[f1])
                return cv.run_block, (str(work), first_block + b, g0, g1, f0, f1, plan.group_start, n_slices,
                                      slice_offsets[:, f0 - pf0:f1 - pf0 + 1].copy(), n_cells, n_clusters,
                                      chunks.CHUNK_ROWS, rows_ascending, slice_base), {}

            def block_done(k: int, result: dict, todo=todo, bar=bar, blocks=blocks, pf0=pf0,
                           slice_offsets=slice_offsets) -> None:
                f0, f1 = blocks[todo[k]]
                bar.update(result["entries"])
                stats.add_seconds(result)
                stats.temp_bytes_peak = max(stats.temp_bytes_peak, cv.disk_bytes(work, "slice-"))
                for s in range(n_slices):  # the block's segments are no longer needed
                    cv.punch_hole(work / f"slice-{s:06d}.bin", int(slice_offsets[s, f0 - pf0]),
                                  int(slice_offsets[s, f1 - pf0] - slice_offsets[s, f0 - pf0]))

            try:
                cv.run_tasks(pool, [lambda b=b: block_task(b) for b in todo], block_done, max_pending=n_workers + 1)
            except BrokenProcessPool:
                raise ExpressionError(_BROKEN_POOL) from None
            finally:
                bar.close()
            t_blocks += time.perf_counter() - t
        stats.seconds_slices = round(t_slices, 3)
        stats.seconds_blocks = round(t_blocks, 3)
        cv.remove_files(work, "slice-")
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if counts is None:
        counts = np.load(work / "counts.npy")
    nnz = int(counts.sum())
    indptr = np.zeros(n_genes + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    blocks = [tuple(fb) for p in range(len(passes)) for fb in blocks_of_pass[str(p)]]
    stats.n_blocks = len(blocks)

    # Assemble: block files move into the store; small arrays are joined.
    n_chunks = max(1, math.ceil(n_cells / chunks.CHUNK_ROWS))
    (out_dir / "blocks").mkdir(exist_ok=True)
    chunk_offset = np.lib.format.open_memmap(out_dir / "chunk_offset.npy", mode="w+", dtype=np.int64,
                                             shape=(n_genes, n_chunks + 1))
    mean = np.lib.format.open_memmap(out_dir / "cluster_mean.npy", mode="w+", dtype=np.float32,
                                     shape=(n_clusters, n_genes))
    frac = np.lib.format.open_memmap(out_dir / "cluster_fraction.npy", mode="w+", dtype=np.float32,
                                     shape=(n_clusters, n_genes))
    codes = np.asarray(np.load(work / "clusters.npy", mmap_mode="r"))
    n_per_cluster = np.bincount(codes[codes >= 0], minlength=n_clusters).astype(np.int64) \
        if n_clusters else np.zeros(0, dtype=np.int64)
    # A gene some source files do not hold is not measured in their cells: NaN there (see GeneMatrix.values),
    # and the cluster statistics divide by the cells that measured it.
    gene_in_source = np.zeros((len(plan.sources), n_genes), dtype=bool)
    for i in range(len(plan.sources)):
        gene_in_source[i, np.load(work / f"genes-{i}.npy")] = True
    partial = not gene_in_source.all()
    cell_source = np.load(work / "cell_source.npy")
    if partial and n_clusters:
        ok = codes >= 0
        per_cluster_source = np.zeros((n_clusters, len(plan.sources)), dtype=np.float64)
        np.add.at(per_cluster_source, (codes[ok], cell_source[ok]), 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_n = np.where(n_per_cluster > 0, 1.0 / np.maximum(n_per_cluster, 1), np.nan)
    gene_ranges = np.full((n_genes, 2), np.nan, dtype=np.float64)
    block_start = np.zeros(len(blocks) + 1, dtype=np.int64)
    store_bytes = 0
    for b, (f0, f1) in enumerate(blocks):
        g0, g1 = int(gs[f0]), int(gs[f1])
        block_start[b + 1] = g1
        with np.load(work / f"block-{b:05d}.npz") as z:
            if not np.array_equal(z["counts"], counts[g0:g1]):
                raise ExpressionError(f"{label}: block of genes {g0}-{g1} has other counts than its slices: an "
                                      f"expression file changed during prepare")
            chunk_offset[g0:g1] = z["chunk_offsets"]
            gene_ranges[g0:g1] = z["ranges"]
            if n_clusters:
                if partial:
                    measured = per_cluster_source @ gene_in_source[:, g0:g1]
                    with np.errstate(divide="ignore", invalid="ignore"):
                        inv = np.where(measured > 0, 1.0 / np.maximum(measured, 1), np.nan)
                else:
                    inv = inv_n[:, None]
                mean[:, g0:g1] = (z["sums"] * inv).astype(np.float32)
                frac[:, g0:g1] = (z["npos"] * inv).astype(np.float32)
        target = out_dir / "blocks" / f"{b:05d}.bin"
        os.replace(work / f"block-{b:05d}.bin", target)
        store_bytes += target.stat().st_size
    chunk_offset.flush()
    mean.flush()
    frac.flush()
    del chunk_offset, mean, frac
    stats.store_entry_bytes = store_bytes
    np.save(out_dir / "block_start.npy", block_start)
    np.save(out_dir / "indptr.npy", indptr)
    np.save(out_dir / "has_expression.npy", has_expression)
    np.save(out_dir / "cluster_n_cells.npy", n_per_cluster)
    if partial:
        np.save(out_dir / "cell_source.npy", cell_source)
        np.save(out_dir / "gene_in_source.npy", gene_in_source)
    np.save(out_dir / "gene_range.npy", gene_ranges)
    pd.DataFrame({"gene_identifier": np.asarray(list(gene_pos), dtype=object),
                  "gene_symbol": np.asarray(symbols, dtype=object)}).to_parquet(out_dir / "genes.parquet", index=False)
    seconds = round(time.perf_counter() - t0, 3)
    summary = ExpressionSummary(
        n_genes=n_genes, nnz=nnz, dtype="float32",
        n_cells_with_expression=int(has_expression.sum()), n_cells_without_expression=missing,
        files=[{"path": s.path, "encoding": s.encoding, "rows": s.n_rows,
                "rows_used": row_counts["used"][i], "rows_dropped": row_counts["extra"][i]}
               for i, s in enumerate(plan.sources)],
        seconds=seconds, bytes_read=stats.bytes_read, conversion=vars(stats),
    )
    (out_dir / "expression.json").write_text(json.dumps(
        {**summary.__dict__, "default_range_percentile": DEFAULT_RANGE_PERCENTILE, "layout": "chunks",
         "chunk_rows": chunks.CHUNK_ROWS, "codec": chunks.codec_config()}, indent=1))
    shutil.rmtree(work, ignore_errors=True)
    log.info("%s: expression of %d genes x %d cells, %d non-zeros (float32, %.2f bytes each) in %.1f s on %d "
             "workers", label, n_genes, n_cells, nnz, store_bytes / max(1, nnz), seconds, n_workers)
    return summary


_BROKEN_POOL = ("a worker process of the expression conversion ended abruptly (out of memory? a lower "
                "--memory-limit bounds the workers; or, when prepare is called from a Python script, the script "
                "lacks `if __name__ == \"__main__\":`, which worker processes need); the finished part is kept for "
                "the next run; --workers 1 converts without worker processes")


def _plan_passes(work: Path, plan, pool, n_workers: int, temp_limit_bytes: int | None, total_entries: int,
                 label: str) -> list[tuple[int, int]]:
    """The gene-group ranges converted one after the other (``passes.json``): one pass without a temporary
    disk limit or when every run fits it uncompressed; else passes planned from the exact entries per gene,
    counted by reading the sources' gene indices once."""
    import data_layer.convert as cv

    path = work / "passes.json"
    if path.is_file():
        return [tuple(p) for p in json.loads(path.read_text())]
    n_groups = len(plan.group_start) - 1
    n_slices = len(plan.slices)
    worst = 8 * total_entries + cv.FRAME_OVERHEAD_BYTES * n_slices * n_groups \
        + cv.slice_files_bytes(n_slices, plan.n_genes, n_groups)
    if temp_limit_bytes is None or worst <= temp_limit_bytes:
        passes = [(0, n_groups)]
    else:
        counts = np.zeros(plan.n_genes, dtype=np.int64)

        def count_task(i: int):
            s, a, b, _ = plan.slices[i]
            return cv.count_slice, (str(work), s, vars(plan.sources[s]), a, b, plan.n_genes), {}

        def add(_k: int, result: np.ndarray) -> None:
            counts.__iadd__(result)

        cv.run_tasks(pool, [lambda i=i: count_task(i) for i in range(n_slices)], add, max_pending=2 * n_workers)
        indptr = np.concatenate([[0], np.cumsum(counts)])
        gs = np.asarray(plan.group_start, dtype=np.int64)
        try:
            passes = cv.plan_passes(indptr[gs[1:]] - indptr[gs[:-1]], n_slices, int(temp_limit_bytes),
                                    plan.n_genes)
        except ValueError as exc:
            raise ExpressionError(f"{label or 'expression'}: {exc}: raise the temporary disk limit "
                                  f"(--temp-limit)") from None
        log.info("%s: temporary disk limit %.0f MB: converting the genes in %d passes over the sources",
                 label, temp_limit_bytes / 2**20, len(passes))
    path.write_text(json.dumps(passes))
    return passes


def _rows_ascending(work: Path, n_sources: int) -> bool:
    """Whether the sources' rows, file after file, map to ascending store rows (the plan's slices are in file
    and row order, so each gene's entries then arrive in row order)."""
    last = -1
    for i in range(n_sources):
        rows = np.load(work / f"rows-{i}.npy", mmap_mode="r")
        for a in range(0, len(rows), 1 << 22):
            part = np.asarray(rows[a:a + (1 << 22)])
            part = part[part >= 0]
            if not len(part):
                continue
            if part[0] <= last or (len(part) > 1 and not bool(np.all(part[1:] > part[:-1]))):
                return False
            last = int(part[-1])
    return True


def _failing_source(exc: BaseException, plan) -> str:
    """The source a worker's error names (h5py messages name the file), else every source."""
    text = str(exc)
    for s in plan.sources:
        if s.path in text:
            return s.path
    return ", ".join(s.path for s in plan.sources)


def _write_row_maps(infos: Sequence[H5adInfo], cell_labels: pa.Array, gene_pos: Mapping[str, int], work: Path,
                    budget: int, label: str) -> tuple[np.ndarray, list[int], list[int]]:
    """Write each source's row map (``rows-<i>.npy``: store row or -1 per file row, int32) and gene map
    (``genes-<i>.npy``: global gene per column, int32).

    Returns
    -------
    tuple
        ``(has_expression bool [n_cells], rows used per file, rows dropped per file)``.
    """
    n_cells = len(cell_labels)
    # Labels are hashed and looked up in chunks: a Python string costs ~100 bytes while it lives.
    label_chunk = max(1024, min(1 << 20, budget // 400))
    index = LabelIndex(cell_labels, chunk=label_chunk)
    claimed = np.zeros(n_cells, dtype=bool)
    source_of_cell = np.full(n_cells, -1, dtype=np.int16)
    used, extra = [], []
    for i, info in enumerate(infos):
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
        source_of_cell[rows_kept[rows_kept >= 0]] = i
        gene_map = np.fromiter((gene_pos[g] for g in info.gene_ids), dtype=np.int32, count=len(info.gene_ids))
        np.save(work / f"rows-{i}.npy", row_map)
        np.save(work / f"genes-{i}.npy", gene_map)
        n_used = int((row_map >= 0).sum())
        used.append(n_used)
        extra.append(int(info.n_rows - n_used))
        if extra[-1]:
            log.info("%s: %d of %d rows are cells absent from the %s cell table; dropped", info.path,
                     extra[-1], info.n_rows, label or "dataset's")
    np.save(work / "cell_source.npy", source_of_cell)
    return claimed, used, extra


def _bar(progress: bool, total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=" entries", unit_scale=True, disable=not progress, leave=False)


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
    """One dataset's gene-major expression: ``values(g)`` reads and decodes only gene g's chunks.

    Attributes
    ----------
    indptr : ndarray of int64, shape (n_genes + 1,)
        cumulative entries per gene.
    has_expression : ndarray of bool, shape (n_cells,)
        memory-mapped; the cell has an expression row.
    gene_identifiers, gene_symbols : ndarray of str (object)
        column order.
    """

    def __init__(self, folder: Path, n_cells: int):
        self.folder = folder
        self.n_cells = n_cells
        self.meta = json.loads((folder / "expression.json").read_text())
        self.indptr = np.load(folder / "indptr.npy")
        nnz = int(self.indptr[-1]) if len(self.indptr) else 0
        self.chunked = self.meta.get("layout") == "chunks"
        if self.chunked:
            self.chunk_rows = int(self.meta["chunk_rows"])
            self.codec = chunks.codec_from_config(self.meta.get("codec"))
            self.block_start = np.load(folder / "block_start.npy")
            self.chunk_offset = np.load(folder / "chunk_offset.npy", mmap_mode="r" if self.indptr.size > 1 else None)
            self._block_paths = [folder / "blocks" / f"{b:05d}.bin" for b in range(len(self.block_start) - 1)]
            for path in self._block_paths:
                if not path.is_file():
                    raise FileNotFoundError(f"{path}: a block of the expression store is missing; re-run "
                                            f"`atlas-viewer prepare`")
        else:  # stores written before the compressed layout: memory-mapped indices and float16/32 values
            mode = "r" if nnz else None
            self._indices = np.load(folder / "indices.npy", mmap_mode=mode)
            self._data = np.load(folder / "data.npy", mmap_mode=mode)
        self.has_expression = np.load(folder / "has_expression.npy", mmap_mode="r")
        self._cell_source: np.ndarray | None = None
        self._gene_in_source: np.ndarray | None = None
        if (folder / "gene_in_source.npy").is_file():
            self._cell_source = np.load(folder / "cell_source.npy", mmap_mode="r" if n_cells else None)
            self._gene_in_source = np.load(folder / "gene_in_source.npy")
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

    def entries(self, g: int, start: int = 0, stop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The stored entries of gene column ``g`` in store rows ``start:stop``.

        Returns
        -------
        tuple of numpy.ndarray
            ``(rows int64 (k,), values float32 (k,))``: store rows in ascending order and their values (the
            source's float32 values; explicit zeros are kept if the source has them).
        """
        stop = self.n_cells if stop is None else int(stop)
        start = int(start)
        if stop <= start or int(self.indptr[g + 1]) == int(self.indptr[g]):
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        if not self.chunked:
            a, b = int(self.indptr[g]), int(self.indptr[g + 1])
            idx = np.asarray(self._indices[a:b])
            lo, hi = (0, b - a) if start <= 0 and stop >= self.n_cells else np.searchsorted(idx, [start, stop])
            return idx[lo:hi].astype(np.int64), np.asarray(self._data[a + lo:a + hi], dtype=np.float32)
        c0, c1 = start // self.chunk_rows, -(-stop // self.chunk_rows)
        offsets = np.asarray(self.chunk_offset[g, c0:c1 + 1])
        if offsets[-1] == offsets[0]:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        b = int(np.searchsorted(self.block_start, g, side="right")) - 1
        fd = os.open(self._block_paths[b], os.O_RDONLY)
        try:
            raw = os.pread(fd, int(offsets[-1] - offsets[0]), int(offsets[0]))
        finally:
            os.close(fd)
        view = memoryview(raw)
        rows_parts, value_parts = [], []
        for k in range(c1 - c0):
            lo, hi = int(offsets[k] - offsets[0]), int(offsets[k + 1] - offsets[0])
            if hi > lo:
                r, v = chunks.decode(view[lo:hi], base=(c0 + k) * self.chunk_rows, codec=self.codec)
                rows_parts.append(r)
                value_parts.append(v)
        rows = rows_parts[0] if len(rows_parts) == 1 else np.concatenate(rows_parts)
        values = value_parts[0] if len(value_parts) == 1 else np.concatenate(value_parts)
        if start > c0 * self.chunk_rows or stop < min(c1 * self.chunk_rows, self.n_cells):
            lo, hi = np.searchsorted(rows, [start, stop])
            rows, values = rows[lo:hi], values[lo:hi]
        return rows, values

    def values(self, g: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        """float32 values of gene column ``g`` for store rows ``start:stop`` (0 where not detected, NaN where
        the cell has no expression row)."""
        stop = self.n_cells if stop is None else stop
        if self._all_expressed:
            out = np.zeros(stop - start, dtype=np.float32)
        else:
            out = self._baseline()[start:stop].copy()
        rows, vals = self.entries(g, start, stop)
        if len(rows):
            out[rows - start if start else rows] = vals
        if self._gene_in_source is not None and not self._gene_in_source[:, g].all():
            out[self._unmeasured(g, start, stop)] = np.nan
        return out

    def _unmeasured(self, g: int, start: int, stop: int) -> np.ndarray:
        """``(stop - start,)`` bool: cells whose source file does not hold gene ``g``."""
        lacks = np.append(~self._gene_in_source[:, g], False)  # index -1: no source, already NaN
        return lacks[np.asarray(self._cell_source[start:stop])]

    def csc(self, genes: Sequence[int], start: int = 0, stop: int | None = None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The entries of several genes in store rows ``start:stop`` as CSC arrays (for scans over many genes).

        Returns
        -------
        tuple of numpy.ndarray
            ``(indptr int64 (len(genes) + 1,), rows int64 (k,), values float32 (k,))``; column i is gene
            ``genes[i]``.
        """
        parts = [self.entries(int(g), start, stop) for g in genes]
        indptr = np.zeros(len(parts) + 1, dtype=np.int64)
        np.cumsum([len(r) for r, _ in parts], out=indptr[1:])
        rows = np.concatenate([r for r, _ in parts]) if parts else np.zeros(0, dtype=np.int64)
        vals = np.concatenate([v for _, v in parts]) if parts else np.zeros(0, dtype=np.float32)
        return indptr, rows, vals

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
        _, vals = self.entries(g)
        n_measured = self._n_expressed
        if self._gene_in_source is not None and not self._gene_in_source[:, g].all():
            n_measured -= int(np.count_nonzero(self._unmeasured(g, 0, self.n_cells)))
        return default_range_of_entries(vals, n_measured - len(vals))

    def max_value(self, g: int) -> float:
        _, vals = self.entries(g)
        return float(np.max(vals)) if len(vals) else 0.0

    def stored_bytes(self) -> int:
        """Bytes of the stored entries on disk (block files, or indices and values of an older store)."""
        if self.chunked:
            return sum(p.stat().st_size for p in self._block_paths)
        return int(self._indices.nbytes + self._data.nbytes)

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
