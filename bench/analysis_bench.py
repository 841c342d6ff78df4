"""Benchmark: marker genes of a selection and of a taxonomy term (data_layer.analysis).

* ``markers_for_selection`` on the largest dataset with expression of a store: a box over a quarter of the
  cells (a typical lasso) and a scattered 1% sample (a UMAP selection spread over many clusters), each
  against the rest of the dataset; on a spatial dataset also a box inside its largest section against the
  rest of that section (the map's case).
* ``markers_for_term``: with Welch's t-test (one scan of the store, the term against the other terms) and the
  per-cluster statistics path without tests (should be a few ms).
* A versus B (``compare_groups``): the two most populous terms of the finest level, with its time and the peak
  of the memory Python allocates meanwhile (``tracemalloc``; numpy reports its buffers to it, the memory-mapped
  store is not counted); and two large groups as the ``/export/markers.csv`` route computes them (the table and
  its CSV): a quarter of the cells (the most populous terms of the second level) against the rest (1 M vs 3 M
  cells of a 4 M-cell dataset), with tracemalloc's peak and the peak resident memory (sampled).
* Baseline, measured in the same run: what a notebook user of the Atlas would write, one dense
  ``atlas.gene(...)`` vector per gene and numpy means over the selected cells and the rest.

Without a store, a synthetic one is built with the test builders: 1 M cells x 300 genes with 60 non-zeros per
cell (a MERSCOPE-like 20% density, 60 M entries, exact float32), 200 clusters (about 70 s on two cores), under
``--work-dir`` (default: ``<tmp>/atlas-viewer-analysis-bench``, reused by later runs).

Run: ``python -m bench.analysis_bench [--store STORE] [--work-dir DIR] [--repeats 7]`` (prints JSON).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

SYNTHETIC_CELLS = 1_000_000
SYNTHETIC_GENES = 300
SYNTHETIC_PER_CELL = 60
SYNTHETIC_CLUSTERS = 200


def _percentiles(times_s: list[float]) -> dict:
    ms = np.asarray(times_s) * 1e3
    return {"p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1),
            "n": len(ms)}


def _time(fn, repeats: int) -> tuple[dict, object]:
    out = fn()  # warm-up: numba cache load, page cache, lazily opened memory maps
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return _percentiles(times), out


def build_synthetic_store(work_dir: Path, *, n_cells: int = SYNTHETIC_CELLS, n_genes: int = SYNTHETIC_GENES,
                          per_cell: int = SYNTHETIC_PER_CELL, n_clusters: int = SYNTHETIC_CLUSTERS) -> Path:
    """A prepared store of one UMAP dataset (``WMB-10X``) with ``n_cells * per_cell`` non-zeros (reused if
    ``work_dir/store`` exists)."""
    store = Path(work_dir) / "store"
    if (store / "catalog.json").is_file():
        return store
    tests = Path(__file__).resolve().parent.parent / "tests"
    sys.path.insert(0, str(tests))
    from abc_builders import build_umap_cache

    from data_layer.prepare import prepare_store

    cache = Path(work_dir) / "cache"
    logger.info("building a synthetic cache of %d cells x %d genes in %s", n_cells, n_genes, cache)
    build_umap_cache(cache, n_cells=n_cells, n_genes=n_genes, per_row=per_cell, n_clusters=n_clusters)
    prepare_store(cache, store, memory_limit_bytes=2 << 30, progress=True)
    return store


def _largest_expression_dataset(atlas) -> str:
    best, best_n = None, -1
    for name in atlas.datasets():
        info = atlas.info(name)
        if info.n_genes and info.n_cells > best_n:
            best, best_n = name, info.n_cells
    if best is None:
        raise SystemExit(f"{atlas.root}: no dataset with expression to benchmark")
    return best


def _baseline_markers(atlas, dataset: str, mask: np.ndarray, genes: list[str], section=None) -> np.ndarray:
    """Per gene, a dense vector and numpy means (what a notebook user writes). Returns diff per gene."""
    out = np.empty(len(genes))
    for k, g in enumerate(genes):
        v = atlas.gene(dataset, g, section=section)
        ok = np.isfinite(v)
        out[k] = v[mask & ok].mean() - v[~mask & ok].mean()
    return out


def bench_markers(store: str | Path | None = None, *, dataset: str | None = None, work_dir: str | Path | None = None,
                  repeats: int = 7, baseline_repeats: int = 3, seed: int = 0) -> dict:
    """Time marker genes of selections and of a term on the largest store available.

    Parameters
    ----------
    store : path, optional
        A prepared store; default: a synthetic 1 M-cell store built (once) under ``work_dir``.
    dataset : str, optional
        Default: the largest dataset with expression.
    repeats, baseline_repeats : int
        Timed runs (after one warm-up) of our functions and of the per-gene baseline.

    Returns
    -------
    dict
        ``store, dataset, n_cells, n_genes, nnz, data_dtype`` and per case ``{"p50_ms", "p95_ms", "n"}``
        (plus ``n_selected``), the baseline's timings and ``speedup_vs_baseline`` (baseline p50 / ours p50).
    """
    from data_layer import Atlas
    from data_layer import analysis as an

    if store is None:
        work = Path(work_dir) if work_dir else Path(tempfile.gettempdir()) / "atlas-viewer-analysis-bench"
        store = build_synthetic_store(work)
    atlas = Atlas.open(store)
    dataset = dataset or _largest_expression_dataset(atlas)
    info = atlas.info(dataset)
    gm = atlas.expression_matrix(dataset)
    report: dict = {"store": str(store), "dataset": dataset, "n_cells": info.n_cells, "n_genes": gm.n_genes,
                    "nnz": int(gm.indptr[-1]), "data_dtype": "float32",
                    "stored_bytes_per_nnz": gm.stored_bytes() / max(1, int(gm.indptr[-1])), "cases": {}}
    rng = np.random.default_rng(seed)

    x, y = (np.asarray(v) for v in atlas.xy(dataset))
    qx = np.quantile(x, [0.25, 0.75])
    qy = np.quantile(y, [0.25, 0.75])
    cases = {
        "box_quarter_vs_dataset": (an.cells_in_box(x, y, qx[0], qx[1], qy[0], qy[1]), None),
        "scattered_1pct_vs_dataset": (rng.random(info.n_cells) < 0.01, None),
    }
    sections = atlas.sections(dataset)
    if len(sections):
        section = sections.sort_values("n_cells").iloc[-1]["brain_section_label"]
        sx, sy = (np.asarray(v) for v in atlas.xy(dataset, section=section))
        bx, by = np.quantile(sx, [0.3, 0.6]), np.quantile(sy, [0.3, 0.6])
        cases["box_in_largest_section_vs_section"] = (an.cells_in_box(sx, sy, bx[0], bx[1], by[0], by[1]), section)

    for name, (mask, section) in cases.items():
        timing, table = _time(lambda: an.markers_for_selection(atlas, dataset, mask, n=10, section=section), repeats)
        report["cases"][name] = {**timing, "n_selected": int(mask.sum()),
                                 "top": list(table["gene_symbol"][:3])}
        logger.info("%s: %s", name, timing)

    # Baseline on the first case (same numbers, one dense vector per gene).
    mask, section = cases["box_quarter_vs_dataset"]
    genes = list(gm.gene_identifiers)
    base_timing, base = _time(lambda: _baseline_markers(atlas, dataset, mask, genes, section), baseline_repeats)
    ours = an.markers_for_selection(atlas, dataset, mask, n=None)
    check = dict(zip(ours["gene_identifier"], ours["diff"]))
    worst = float(np.max(np.abs(np.array([check[g] for g in genes]) - base))) if genes else 0.0
    report["baseline_dense_vector_per_gene"] = {**base_timing, "max_abs_diff_vs_ours": round(worst, 6)}
    ours_ms = report["cases"]["box_quarter_vs_dataset"]["p50_ms"]
    report["speedup_vs_baseline"] = round(base_timing["p50_ms"] / max(ours_ms, 1e-3), 1)

    # Term markers from cluster statistics: the most populous term of the finest level.
    if info.levels:
        level = info.levels[-1]
        counts = atlas.taxonomy(dataset).counts(level)
        names = atlas.categories(dataset, level)
        term = names[int(np.argmax(counts[: len(names) - 2]))] if counts is not None else names[0]
        timing, table = _time(lambda: an.markers_for_term(atlas, dataset, level, term, n=10), repeats)
        report["cases"]["term_markers"] = {**timing, "level": level, "term": term,
                                           "top": list(table["gene_symbol"][:3])}
        timing, table = _time(lambda: an.markers_for_term(atlas, dataset, level, term, n=10, tests=False), repeats)
        report["cases"]["term_markers_cluster_statistics"] = {**timing, "level": level, "term": term,
                                                              "top": list(table["gene_symbol"][:3])}
        report["cases"]["a_vs_b"] = bench_a_vs_b(atlas, dataset, level, repeats)
        report["cases"]["a_vs_b_quarter"] = bench_a_vs_b_quarter(atlas, dataset, info.levels[1 if len(info.levels) > 1
                                                                                             else 0], repeats)
    across = bench_across_species(atlas, repeats)
    if across:
        report["cases"]["across_species"] = across
    return report


def bench_across_species(atlas, repeats: int) -> dict | None:
    """The dot plot of the panel across species (every species' cells, Welch's t over every gene) for the two
    largest terms of the second level of the first taxonomy several species share: the first term of the level
    (one scan of each dataset that sums every term, kept) and the next term (from the kept sums), against a scan
    of each term alone (what every term cost before the sums were kept). None without such a taxonomy."""
    from core.catalog import catalog_from_atlas
    from data_layer import species as sp

    catalog = catalog_from_atlas(atlas)
    for dataset in atlas.datasets():
        info = atlas.info(dataset)
        parts = sp.species_cells(atlas, catalog.species_datasets(info.taxonomy)) if info.taxonomy else []
        if info.kind == "spatial" and len({p.species for p in parts}) > 1 and len(info.levels) > 1:
            break
    else:
        return None
    level = info.levels[1]
    counts = np.bincount(np.asarray(atlas.codes(dataset, level)) + 1)[1:]
    names = atlas.categories(dataset, level)
    first, second = (str(names[i]) for i in np.argsort(counts)[::-1][:2])
    genes = ["__none__"]  # every gene is scanned for the tests; the dot plot's genes do not change the cost

    def fresh():
        sp._level_sums_kept.pop(atlas, None)
        return sp.species_dot_plot(atlas, parts, level, first, genes)

    fresh()  # warm-up
    first_timing, _ = _time(fresh, repeats)
    next_timing, _ = _time(lambda: sp.species_dot_plot(atlas, parts, level, second, genes), repeats)
    alone_timing, _ = _time(lambda: sp.species_dot_plot(atlas, parts, level, second, genes, keep=False), repeats)
    return {"dataset": dataset, "level": level, "terms": [first, second],
            "n_cells": int(sum(atlas.info(d).n_cells for d in {p.dataset for p in parts})),
            "first_term": first_timing, "next_term": next_timing, "term_alone": alone_timing}


class _PeakRss:
    """Peak resident memory of this process while it is entered, sampled every ``interval_s`` from
    ``/proc/self/statm`` (the memory-mapped store pages the work touches count too)."""

    def __init__(self, interval_s: float = 0.005):
        import os
        import threading

        self.interval_s = interval_s
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.before = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, self._rss())

    def __enter__(self) -> "_PeakRss":
        self.before = self.peak = self._rss()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


def bench_a_vs_b_quarter(atlas, dataset: str, level: str, repeats: int) -> dict:
    """A versus B as the ``/export/markers.csv`` route computes it (``compare_groups``, then the CSV) on two large
    groups: A = the most populous terms of ``level`` until they hold a quarter of the cells (1 M of a 4 M-cell
    dataset), B = the cells of every other term (3 M). Time (p50, p95), the peak of the memory Python allocates
    (``tracemalloc``) and the peak resident memory over the resident memory before (sampled; it includes the
    store's memory-mapped pages the scan reads, which the OS can drop)."""
    import tracemalloc

    from data_layer import analysis as an

    names = atlas.categories(dataset, level)
    codes = np.asarray(atlas.codes(dataset, level)).astype(np.int64)
    counts = np.bincount(codes[codes >= 0], minlength=len(names))[: len(names)]
    order = np.argsort(-counts, kind="stable")
    target = len(codes) / 4
    chosen, total = [], 0
    for i in order:
        if total >= target or not counts[i]:
            break
        chosen.append(int(i))
        total += int(counts[i])
    rest = [int(i) for i in order if int(i) not in chosen and counts[i]]
    a = an.term_group(atlas, dataset, level, [names[i] for i in chosen], label="A")
    b = an.term_group(atlas, dataset, level, [names[i] for i in rest], label="B")

    def run() -> object:
        table = an.compare_groups(atlas, a, b)
        return table, an.compare_groups_csv(table)

    timing, (table, text) = _time(run, repeats)
    with _PeakRss() as rss:
        tracemalloc.start()
        run()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return {**timing, "level": level, "n_terms_a": len(chosen), "n_terms_b": len(rest),
            "n_a": table.attrs["n_A"], "n_b": table.attrs["n_B"], "n_genes": len(table), "csv_bytes": len(text),
            "peak_traced_mb": round(peak / 2 ** 20, 1), "rss_before_mb": round(rss.before / 2 ** 20, 1),
            "rss_peak_mb": round(rss.peak / 2 ** 20, 1),
            "rss_growth_mb": round((rss.peak - rss.before) / 2 ** 20, 1)}


def bench_a_vs_b(atlas, dataset: str, level: str, repeats: int) -> dict:
    """A versus B of the two most populous terms of ``level``: time and peak traced memory of one comparison."""
    import tracemalloc

    from data_layer import analysis as an

    names = atlas.categories(dataset, level)
    counts = np.bincount(np.asarray(atlas.codes(dataset, level)).astype(np.int64) % (len(names) + 1),
                         minlength=len(names))[: len(names)]
    counts[[i for i, n in enumerate(names) if n in ("Adjacent", "unassigned")]] = 0
    first, second = (names[i] for i in np.argsort(-counts, kind="stable")[:2])
    a = an.term_group(atlas, dataset, level, first)
    b = an.term_group(atlas, dataset, level, second)
    timing, table = _time(lambda: an.compare_groups(atlas, a, b), repeats)
    tracemalloc.start()
    an.compare_groups(atlas, a, b)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {**timing, "a": first, "b": second, "n_a": table.attrs["n_A"], "n_b": table.attrs["n_B"],
            "n_genes": len(table), "peak_traced_mb": round(peak / 2 ** 20, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=None, help="prepared store (default: build a synthetic one)")
    parser.add_argument("--dataset", default=None)
    parser.add_argument("--work-dir", type=Path, default=None, help="where the synthetic store is built/reused")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    report = bench_markers(args.store, dataset=args.dataset, work_dir=args.work_dir, repeats=args.repeats)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
