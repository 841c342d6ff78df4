"""Data-layer benchmarks: gene look-up vs anndata backed mode, cells of a section, Atlas.open, prepare throughput.

Each function returns a plain dict (times in ms or s, sizes in MB) for ``atlas-viewer bench`` to print; run alone
with ``python -m bench.data_bench CACHE_DIR [STORE_DIR]``. The plain way measured against the store is what a
notebook user does without it: ``ad.read_h5ad(path, backed="r")[:, gene].X`` on the source h5ad.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _stats_ms(seconds: list[float]) -> dict:
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p95_ms": round(float(np.percentile(ms, 95)), 3),
            "max_ms": round(float(ms.max()), 3), "n": int(len(ms))}


def _gene_dataset(atlas, dataset: str | None) -> str:
    if dataset:
        return dataset
    with_expr = [d for d in atlas.datasets() if atlas.info(d).n_genes]
    if not with_expr:
        raise ValueError(f"store {atlas.root} has no dataset with expression")
    single = [d for d in with_expr if len(atlas.catalog["datasets"][d].get("expression_files", [])) == 1]
    return max(single or with_expr, key=lambda d: atlas.info(d).n_cells)


def bench_gene_lookup(store: str | Path, cache: str | Path | None = None, *, dataset: str | None = None,
                      n_genes: int = 20, n_baseline: int = 5, seed: int = 0) -> dict:
    """One gene for every cell of a dataset: store look-up p50/p95 over ``n_genes`` random genes, and the same
    genes (first ``n_baseline``) read with anndata backed mode from the source h5ad (needs ``cache``)."""
    from data_layer import Atlas

    atlas = Atlas.open(store)
    dataset = _gene_dataset(atlas, dataset)
    genes = atlas.genes(dataset)
    rng = np.random.default_rng(seed)
    picks = list(genes["gene_identifier"].to_numpy()[rng.choice(len(genes), size=min(n_genes, len(genes)),
                                                                replace=False)])
    t0 = time.perf_counter()
    atlas.gene(dataset, picks[0])
    first = time.perf_counter() - t0
    times = []
    for g in picks:
        t0 = time.perf_counter()
        values = atlas.gene(dataset, g)
        times.append(time.perf_counter() - t0)
    out = {"dataset": dataset, "n_cells": int(len(values)), "first_call_ms": round(first * 1000, 3),
           "store": _stats_ms(times)}
    entry = atlas.catalog["datasets"][dataset]
    files = entry.get("expression_files", [])
    if cache is not None and files and n_baseline:
        import anndata as ad

        path = Path(cache) / files[0]
        t0 = time.perf_counter()
        adata = ad.read_h5ad(path, backed="r")
        open_s = time.perf_counter() - t0
        base = []
        var = set(adata.var_names)
        for g in [g for g in picks if g in var][:n_baseline]:
            t0 = time.perf_counter()
            _ = adata[:, g].X
            base.append(time.perf_counter() - t0)
        adata.file.close()
        if base:
            out["anndata_backed"] = {**_stats_ms(base), "open_s": round(open_s, 3), "file": str(path),
                                     "file_mb": round(path.stat().st_size / 2**20, 1)}
            out["speedup_p50"] = round(out["anndata_backed"]["p50_ms"] / max(out["store"]["p50_ms"], 1e-6), 1)
    return out


def bench_section_cells(store: str | Path, *, dataset: str | None = None, max_sections: int = 30) -> dict:
    """``cells(dataset, section)`` uncached (a fresh LRU each call) and cached, p50/p95 over the sections; also
    ``codes`` + ``xy`` (what a picture needs without a DataFrame)."""
    from data_layer import Atlas

    atlas = Atlas.open(store)
    if dataset is None:
        spatial = [d for d in atlas.datasets() if atlas.info(d).kind == "spatial"]
        if not spatial:
            return {"skipped": "no spatial dataset"}
        dataset = max(spatial, key=lambda d: atlas.info(d).n_cells)
    sections = list(atlas.sections(dataset)["brain_section_label"])[:max_sections]
    level = atlas.info(dataset).levels[-1] if atlas.info(dataset).levels else "region"
    atlas.cells(dataset, section=sections[0])  # first touch of the dataset (memory maps, small tables)
    uncached, cached, arrays, sizes = [], [], [], []
    for s in sections:
        atlas._cells.clear()
        t0 = time.perf_counter()
        df = atlas.cells(dataset, section=s)
        uncached.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        atlas.cells(dataset, section=s)
        cached.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        np.asarray(atlas.codes(dataset, level, section=s)).sum()
        x, y = atlas.xy(dataset, section=s)
        float(x[0] + y[-1])
        arrays.append(time.perf_counter() - t0)
        sizes.append(len(df))
    return {"dataset": dataset, "n_sections": len(sections), "mean_cells_per_section": int(np.mean(sizes)),
            "uncached": _stats_ms(uncached), "cached": _stats_ms(cached), "codes_xy": _stats_ms(arrays)}


_OPEN_CHILD = textwrap.dedent("""
    import json, sys, time
    import psutil
    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    t0 = time.perf_counter()
    from data_layer import Atlas
    import data_layer.atlas  # noqa: F401  (the import the app pays once)
    import_s = time.perf_counter() - t0
    rss_import = proc.memory_info().rss
    t0 = time.perf_counter()
    atlas = Atlas.open(sys.argv[1])
    infos = [atlas.info(d) for d in atlas.datasets()]
    open_s = time.perf_counter() - t0
    rss_open = proc.memory_info().rss
    t0 = time.perf_counter()
    first = atlas.datasets()[0]
    sections = atlas.sections(first)
    if len(sections):
        atlas.cells(first, section=sections["brain_section_label"].iloc[0])
    else:
        atlas.cells(first)
    first_view_s = time.perf_counter() - t0
    rss_view = proc.memory_info().rss
    store_mb = sum(p.stat().st_size for p in __import__("pathlib").Path(sys.argv[1]).rglob("*") if p.is_file()) / 2**20
    print(json.dumps({"import_s": round(import_s, 3), "open_s": round(open_s, 4), "first_view_s": round(first_view_s, 3),
                      "rss_mb_before_import": round(rss0 / 2**20, 1), "rss_mb_after_import": round(rss_import / 2**20, 1),
                      "rss_mb_after_open": round(rss_open / 2**20, 1), "rss_mb_after_first_view": round(rss_view / 2**20, 1),
                      "store_mb": round(store_mb, 1), "datasets": len(infos)}))
""")


def bench_open(store: str | Path) -> dict:
    """``Atlas.open`` in a fresh process: import time, open time, resident memory after open and after the first
    section (the store is mapped, not copied: compare with its size on disk)."""
    out = subprocess.run([sys.executable, "-c", _OPEN_CHILD, str(store)], capture_output=True, text=True,
                         cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=600)
    if out.returncode:
        raise RuntimeError(f"bench_open failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


_PREPARE_CHILD = textwrap.dedent("""
    import json, sys, time
    import psutil
    import numpy, pandas, pyarrow, pyarrow.csv, pyarrow.parquet, pyarrow.compute, pyarrow.ipc, h5py, scipy
    import anndata, anndata.io, tqdm, tqdm.contrib.logging
    from data_layer.prepare import prepare_store
    baseline = psutil.Process().memory_info().rss
    t0 = time.perf_counter()
    only = sys.argv[4].split(",") if len(sys.argv) > 4 and sys.argv[4] else None
    report = prepare_store(sys.argv[1], sys.argv[2], memory_limit_bytes=int(sys.argv[3]), datasets=only)
    seconds = time.perf_counter() - t0
    status = open("/proc/self/status").read()
    peak = int(next(l for l in status.splitlines() if l.startswith("VmHWM:")).split()[1]) * 1024
    print(json.dumps({"seconds": seconds, "baseline": baseline, "peak": peak, "datasets": report.datasets}))
""")


def bench_prepare(cache: str | Path, store: str | Path | None = None, *,
                  memory_limit_bytes: int = 1 << 30, datasets: list[str] | None = None) -> dict:
    """Prepare ``cache`` (only ``datasets`` and their taxonomies, when given) into a new store in a fresh process:
    throughput (source MB/s, expression MB/s), peak memory growth over the interpreter vs the limit (VmHWM of the
    child) and the store's size."""
    from data_layer.store import read_catalog

    tmp = None
    if store is None:
        tmp = tempfile.TemporaryDirectory(prefix="data-bench-")
        store = Path(tmp.name) / "store"
    try:
        out = subprocess.run([sys.executable, "-c", _PREPARE_CHILD, str(cache), str(store), str(memory_limit_bytes),
                              ",".join(datasets or [])],
                             capture_output=True, text=True, cwd=ROOT,
                             env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=7200)
        if out.returncode:
            raise RuntimeError(f"bench_prepare failed: {out.stderr[-2000:]}")
        child = json.loads(out.stdout.strip().splitlines()[-1])
        catalog = read_catalog(store)
        sources = {s["path"]: s["size"] for e in catalog["datasets"].values() for s in e["sources"]}
        sources.update({s["path"]: s["size"] for e in catalog["taxonomies"].values() for s in e["sources"]})
        expr = [e["expression"] for e in catalog["datasets"].values() if e.get("expression")]
        expr_bytes = sum(sources.get(p, 0) for e in catalog["datasets"].values() for p in e["expression_files"])
        expr_s = sum(x["seconds"] for x in expr)
        total_mb = sum(sources.values()) / 2**20
        growth = child["peak"] - child["baseline"]
        return {
            "seconds": round(child["seconds"], 2), "source_mb": round(total_mb, 1),
            "throughput_mb_s": round(total_mb / child["seconds"], 1),
            "expression_mb": round(expr_bytes / 2**20, 1), "expression_s": round(expr_s, 2),
            "expression_mb_s": round(expr_bytes / 2**20 / expr_s, 1) if expr_s else None,
            "nnz": int(sum(x["nnz"] for x in expr)),
            "memory_limit_mb": round(memory_limit_bytes / 2**20, 1), "peak_growth_mb": round(growth / 2**20, 1),
            "peak_under_limit": bool(growth < memory_limit_bytes), "datasets": child["datasets"],
            "peak_rss_mb": round(child["peak"] / 2**20, 1),
            "store_mb": round(sum(f.stat().st_size for f in Path(store).rglob("*") if f.is_file()) / 2**20, 1),
        }
    finally:
        if tmp is not None:
            tmp.cleanup()


def run_all(cache: str | Path, store: str | Path | None = None, *, memory_limit_bytes: int = 1 << 30) -> dict:
    """Every data-layer benchmark; prepares ``cache`` into ``store`` (or a temporary folder) first."""
    tmp = None
    if store is None:
        tmp = tempfile.TemporaryDirectory(prefix="data-bench-")
        store = Path(tmp.name) / "store"
    try:
        results = {"prepare": bench_prepare(cache, store, memory_limit_bytes=memory_limit_bytes)}
        results["open"] = bench_open(store)
        results["section_cells"] = bench_section_cells(store)
        results["gene_lookup"] = bench_gene_lookup(store, cache)
        return results
    finally:
        if tmp is not None:
            tmp.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cache", type=Path)
    parser.add_argument("store", type=Path, nargs="?", help="existing store (skips prepare) or where to write one")
    parser.add_argument("--memory-limit-mb", type=int, default=1024)
    args = parser.parse_args(argv)
    if args.store is not None and (args.store / "catalog.json").is_file():
        results = {"open": bench_open(args.store), "section_cells": bench_section_cells(args.store),
                   "gene_lookup": bench_gene_lookup(args.store, args.cache)}
    else:
        results = run_all(args.cache, args.store, memory_limit_bytes=args.memory_limit_mb << 20)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
