"""``atlas-viewer bench``: every speed and memory claim measured in one run, side by side with the plain way.

:func:`run_bench` writes (or reuses) a synthetic cache of the requested scale under ``work_dir`` (``"atlas"``: a
4 M-cell WMB-10X with the 5,322-cluster mouse taxonomy and a 1 M-cell human MERSCOPE dataset; ``"demo"``: the
demo), prepares it (the prepare-throughput row), then measures on the prepared store:

* one gene for every cell of a dataset vs anndata backed reads of the source h5ad files (for the regional WMB
  files, the plain way reads the gene from every file and concatenates);
* the map's pictures through the viewer's own renderer (``core.render.render_png``: cells, aggregation,
  colours, PNG) for a section and for the UMAP by cluster vs datashader's per-category aggregation
  (``count_cat`` + ``tf.shade``; projected from smaller canvases when it does not fit in memory), by a gene vs
  plain datashader ``max`` + ``shade``, and with a highlighted term vs plain datashader's two layers;
* marker genes of a selection (:mod:`bench.analysis_bench`) vs one dense gene vector per gene;
* the consensus mouse taxonomy alone (:func:`bench_consensus`; 7.65 M cells at the atlas scale): its prepare time,
  peak memory and store size, its whole and a neighborhood UMAP's pictures, a gene look-up and a gene picture;
* ``Atlas.open`` in a fresh process and its resident memory; the cells of one section vs pandas reading the
  release CSVs; the first page load to the first picture in headless Chromium (:mod:`bench.browser_bench`).

It prints the machine and ONE table (what, p50, p95, baseline p50, ratio = baseline / ours, note) and, with
``json_path``, writes every number as JSON. Times are wall-clock on a shared machine: read the ratios, which are
measured in the same run, rather than the absolute values.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]

#: Picture size of every picture row (the viewer's map at a common screen size).
WIDTH_PX, HEIGHT_PX = 1000, 800
#: ``--memory-limit`` given to prepare (the CLI's default).
MEMORY_LIMIT_BYTES = 4 << 30
#: Memory the datashader per-category baseline may use before it is measured on smaller canvases and projected.
BASELINE_BUDGET_BYTES = 2_000_000_000
#: The consensus mouse taxonomy's dataset (measured apart: :func:`bench_consensus`).
CONSENSUS = "Consensus-WMB-integrated-taxonomy"
#: Packages whose versions are printed with the machine.
PACKAGES = ("numpy", "pandas", "pyarrow", "numba", "datashader", "scipy", "h5py", "anndata", "dash", "plotly",
            "flask", "selenium")


@dataclass(frozen=True)
class Repeats:
    """How many timed runs each measurement gets (after one warm-up where it matters)."""

    genes: int = 20
    gene_baseline: int = 5
    pictures: int = 20
    gene_pictures: int = 10
    baseline_pictures: int = 8
    markers: int = 5
    marker_baseline: int = 2
    opens: int = 3
    sections: int = 30
    section_baseline: int = 3
    page_loads: int = 4


REPEATS = {"demo": Repeats(), "atlas": Repeats(gene_baseline=3, pictures=15, gene_pictures=8, baseline_pictures=4,
                                               markers=3, marker_baseline=1, section_baseline=2, page_loads=3)}


@dataclass
class Row:
    """One line of the table: plain strings, already formatted."""

    what: str
    p50: str = "-"
    p95: str = "-"
    baseline: str = "-"
    ratio: str = "-"
    note: str = ""


# --------------------------------------------------------------------------------------------------- formatting

def fmt_ms(ms: float | None) -> str:
    """``12.3 ms`` / ``4.21 s`` / ``-``."""
    if ms is None or not np.isfinite(ms):
        return "-"
    if ms < 1:
        return f"{ms:.2f} ms"
    if ms < 1000:
        return f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms"
    return f"{ms / 1000:.2f} s" if ms < 100_000 else f"{ms / 1000:.0f} s"


def fmt_ratio(baseline_ms: float | None, ours_ms: float | None) -> str:
    """``baseline / ours`` as ``123x`` (``-`` when either is missing)."""
    if not baseline_ms or not ours_ms:
        return "-"
    r = baseline_ms / ours_ms
    return f"{r:,.0f}x" if r >= 10 else f"{r:.1f}x"


def stats_ms(seconds: list[float]) -> dict:
    """``{"p50_ms", "p95_ms", "n"}`` of a list of durations in seconds."""
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p95_ms": round(float(np.percentile(ms, 95)), 3),
            "n": int(len(ms))}


def _timed(fn: Callable[[], Any], repeats: int, warm_up: bool = True) -> tuple[dict, Any]:
    out = fn() if warm_up else None
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return stats_ms(times), out


def format_table(rows: list[Row]) -> str:
    """The rows as one aligned text table (the header names the ratio column)."""
    header = Row("what", "p50", "p95", "baseline p50", "ratio", "note")
    cells = [[r.what, r.p50, r.p95, r.baseline, r.ratio, r.note] for r in [header, *rows]]
    widths = [max(len(c[i]) for c in cells) for i in range(5)]
    lines = []
    for k, c in enumerate(cells):
        left = c[0].ljust(widths[0])
        nums = "  ".join(c[i].rjust(widths[i]) for i in range(1, 5))
        lines.append(f"{left}  {nums}  {c[5]}".rstrip())
        if k == 0:
            lines.append("-" * len(lines[0]))
    return "\n".join(lines)


def markdown_table(rows: list[Row]) -> str:
    """The rows as a Markdown table (for the README)."""
    out = ["| what | p50 | p95 | baseline p50 | ratio | note |", "|---|---:|---:|---:|---:|---|"]
    out += [f"| {r.what} | {r.p50} | {r.p95} | {r.baseline} | {r.ratio} | {r.note} |" for r in rows]
    return "\n".join(out)


# --------------------------------------------------------------------------------------------------- machine

def machine_info() -> dict:
    """Cores, RAM, CPU model, load, Python and key package versions."""
    from importlib import metadata

    import psutil

    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cores": os.cpu_count(), "ram_gib": round(psutil.virtual_memory().total / 2**30, 1), "cpu": model,
        "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()], "python": platform.python_version(),
        "platform": platform.platform(), "packages": versions,
    }


def describe_machine(info: dict) -> str:
    packages = ", ".join(f"{k} {v}" for k, v in info["packages"].items() if v)
    return (f"machine: {info['cores']} cores, {info['ram_gib']} GiB RAM, {info['cpu']}; load average "
            f"{'/'.join(str(v) for v in info['load_average_1_5_15'])} at start\n"
            f"python {info['python']} on {info['platform']}\n{packages}")


# --------------------------------------------------------------------------------------------------- cache, store

_GENERATE_CHILD = textwrap.dedent("""
    import json, sys, time
    from bench.run import scale_from_json
    from data_layer.demo import write_demo_cache
    t0 = time.perf_counter()
    summary = write_demo_cache(sys.argv[1], seed=int(sys.argv[3]), scale=scale_from_json(sys.argv[2]),
                               progress=True)
    seconds = time.perf_counter() - t0
    status = open("/proc/self/status").read()
    peak = int(next(l for l in status.splitlines() if l.startswith("VmHWM:")).split()[1]) * 1024
    print(json.dumps({"seconds": seconds, "peak_rss_bytes": peak, "total_bytes": summary.total_bytes,
                      "cells": summary.cells}))
""")


def scale_to_json(scale) -> str:
    """A :class:`data_layer.demo.DemoScale` (or a scale name) as JSON."""
    if isinstance(scale, str):
        return json.dumps(scale)
    return json.dumps(dataclasses.asdict(scale))


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def scale_from_json(text: str):
    """Inverse of :func:`scale_to_json` (lists back to the dataclass's tuples)."""
    from data_layer.demo import DemoScale

    value = json.loads(text)
    if isinstance(value, str):
        return value
    return DemoScale(**{k: _tuples(v) for k, v in value.items()})


def _child_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "NUMBA_CACHE_DIR")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def ensure_cache(work_dir: Path, scale, seed: int = 0) -> dict:
    """Write the synthetic cache into ``work_dir/cache`` in a child process, unless a complete one of the same
    scale and seed is there (``work_dir/cache.json`` is written only after the cache is complete).

    Returns
    -------
    dict
        ``seconds``, ``peak_rss_bytes`` (the generator's VmHWM), ``total_bytes``, ``cells`` per dataset,
        ``reused`` (bool).
    """
    from data_layer.demo import get_scale

    cache, marker = work_dir / "cache", work_dir / "cache.json"
    wanted = {"scale": json.loads(scale_to_json(get_scale(scale))), "seed": seed}
    if marker.is_file() and (cache / "_manifest_last_used.txt").is_file():
        done = json.loads(marker.read_text())
        if {k: done.get(k) for k in wanted} == wanted:
            log.info("reusing the complete cache %s (written in %.0f s)", cache, done["seconds"])
            return {**done, "reused": True}
    marker.unlink(missing_ok=True)
    for stale in (cache, work_dir / "store", work_dir / "store-consensus"):
        if stale.exists():
            shutil.rmtree(stale)
    (work_dir / "prepare.json").unlink(missing_ok=True)
    (work_dir / "prepare-consensus.json").unlink(missing_ok=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    log.info("writing the synthetic cache into %s", cache)
    out = subprocess.run([sys.executable, "-c", _GENERATE_CHILD, str(cache), scale_to_json(get_scale(scale)),
                          str(seed)], stdout=subprocess.PIPE, text=True, cwd=ROOT, env=_child_env())
    if out.returncode:
        raise RuntimeError(f"writing the cache {cache} failed (exit {out.returncode}); see the messages above")
    done = {**wanted, **json.loads(out.stdout.strip().splitlines()[-1])}
    marker.write_text(json.dumps(done, indent=1))
    return {**done, "reused": False}


def ensure_store(work_dir: Path, memory_limit_bytes: int) -> dict:
    """Prepare ``work_dir/cache`` into ``work_dir/store`` (a fresh process: throughput and peak memory), unless
    ``work_dir/prepare.json`` records that this was done for the current cache."""
    from bench.data_bench import bench_prepare

    store, marker = work_dir / "store", work_dir / "prepare.json"
    if marker.is_file() and (store / "catalog.json").is_file():
        done = json.loads(marker.read_text())
        log.info("reusing the prepared store %s (prepared in %.0f s)", store, done["seconds"])
        return {**done, "reused": True}
    if store.exists():
        shutil.rmtree(store)
    log.info("preparing %s into %s (memory limit %d MB)", work_dir / "cache", store, memory_limit_bytes >> 20)
    result = bench_prepare(work_dir / "cache", store, memory_limit_bytes=memory_limit_bytes)
    marker.write_text(json.dumps(result, indent=1))
    return {**result, "reused": False}


# --------------------------------------------------------------------------------------------------- datasets

def _largest(atlas, kind: str, need_genes: bool = False) -> str | None:
    """The largest dataset of ``kind`` but the consensus mouse (measured apart, :func:`bench_consensus`)."""
    names = [d for d in atlas.datasets() if atlas.info(d).kind == kind and (atlas.info(d).n_genes or not need_genes)
             and d != CONSENSUS]
    return max(names, key=lambda d: atlas.info(d).n_cells) if names else None


def _most_files(atlas) -> str | None:
    """The largest dataset whose expression is split over several files (WMB-10X; the consensus mouse names more
    files, but holds only part of their cells, which would make the per-file baseline unfair)."""
    names = [d for d in atlas.datasets() if atlas.catalog["datasets"][d].get("expression_files") and d != CONSENSUS]
    several = [d for d in names if len(atlas.catalog["datasets"][d]["expression_files"]) > 1]
    return max(several or names, key=lambda d: (atlas.info(d).n_cells,
                                                len(atlas.catalog["datasets"][d]["expression_files"])), default=None)


def _random_genes(atlas, dataset: str, n: int, seed: int) -> list[str]:
    ids = atlas.genes(dataset)["gene_identifier"].to_numpy()
    rng = np.random.default_rng(seed)
    return [str(g) for g in ids[rng.choice(len(ids), size=min(n, len(ids)), replace=False)]]


# --------------------------------------------------------------------------------------------------- gene look-up

def bench_gene_files(atlas, cache: Path, dataset: str, n_genes: int, n_baseline: int, seed: int = 0) -> dict:
    """One gene for every cell of ``dataset``: the store vs anndata backed reads of each of its source h5ad files
    (the files opened once; per gene, ``adata[:, gene].X`` of every file, concatenated)."""
    import anndata as ad
    import scipy.sparse as sp

    genes = _random_genes(atlas, dataset, n_genes, seed)
    atlas.gene(dataset, genes[0])  # first touch: the memory maps
    times = []
    for g in genes:
        t0 = time.perf_counter()
        values = atlas.gene(dataset, g)
        times.append(time.perf_counter() - t0)
    out = {"dataset": dataset, "n_cells": int(len(values)), "store": stats_ms(times)}
    files = [Path(cache) / f for f in atlas.catalog["datasets"][dataset]["expression_files"]]
    if not n_baseline or not files:
        return out
    t0 = time.perf_counter()
    handles = [ad.read_h5ad(f, backed="r") for f in files]
    open_s = time.perf_counter() - t0
    try:
        base = []
        for g in genes[:n_baseline]:
            t0 = time.perf_counter()
            parts = [h[:, g].X for h in handles if g in h.var_names]
            column = sp.vstack(parts).toarray().ravel() if sp.issparse(parts[0]) else np.concatenate(parts).ravel()
            base.append(time.perf_counter() - t0)
        out["anndata_backed"] = {**stats_ms(base), "open_s": round(open_s, 3), "files": len(files),
                                 "n_cells": int(column.shape[0]),
                                 "file_mb": round(sum(f.stat().st_size for f in files) / 2**20, 1)}
    finally:
        for h in handles:
            h.file.close()
    return out


# --------------------------------------------------------------------------------------------------- consensus

def bench_consensus(cache: Path, work_dir: Path, memory_limit_bytes: int, repeats: Repeats) -> dict:
    """The consensus mouse taxonomy alone: prepared into its own store in a fresh process (time, peak memory,
    store size; reused when ``work_dir/prepare-consensus.json`` records it), then its whole UMAP by cluster, its
    largest neighborhood UMAP by cluster, one gene for every cell and a picture of a new gene each time."""
    from bench.data_bench import bench_prepare
    from data_layer import Atlas

    store, marker = work_dir / "store-consensus", work_dir / "prepare-consensus.json"
    if marker.is_file() and (store / "catalog.json").is_file():
        prep = {**json.loads(marker.read_text()), "reused": True}
    else:
        if store.exists():
            shutil.rmtree(store)
        log.info("preparing %s alone into %s", CONSENSUS, store)
        prep = bench_prepare(cache, store, memory_limit_bytes=memory_limit_bytes, datasets=[CONSENSUS])
        marker.write_text(json.dumps(prep, indent=1))
    atlas = Atlas.open(store)
    info = atlas.info(CONSENSUS)
    pictures = Pictures(atlas, store)
    finest = info.levels[-1]
    out: dict = {"prepare": prep, "n_cells": info.n_cells, "n_genes": info.n_genes,
                 "n_clusters": len(atlas.categories(CONSENSUS, finest)) - 2}

    def picture(request) -> dict:
        t0 = time.perf_counter()
        pictures.render(request)  # the first: memory maps, the cells frame
        first_ms = (time.perf_counter() - t0) * 1000
        timing, png = _timed(lambda: pictures.render(request), repeats.pictures, warm_up=False)
        return {**timing, "first_ms": round(first_ms, 1), "png_bytes": len(png)}

    out["umap_cluster"] = picture(pictures.request(CONSENSUS, None, finest))
    if info.embeddings:
        largest = max(info.embeddings, key=lambda e: e["n_cells"])
        out["neighborhood_cluster"] = {**picture(pictures.request(CONSENSUS, None, finest,
                                                                  embedding=largest["name"])),
                                       "embedding": largest["name"], "n_cells": int(largest["n_cells"])}
    if info.n_genes:
        out["gene_lookup"] = bench_gene_files(atlas, cache, CONSENSUS, repeats.genes, 0)
        genes = _random_genes(atlas, CONSENSUS, repeats.gene_pictures + 1, seed=1)
        pictures.render(pictures.request(CONSENSUS, None, "gene", gene=genes[0]))
        times = []
        for g in genes[1:]:
            t0 = time.perf_counter()
            pictures.render(pictures.request(CONSENSUS, None, "gene", gene=g))
            times.append(time.perf_counter() - t0)
        out["umap_gene"] = stats_ms(times)
    return out


def consensus_rows(c: dict) -> list[Row]:
    """Table rows of :func:`bench_consensus`."""
    prep, n = c["prepare"], _million(c["n_cells"])
    rows = [Row(f"consensus mouse: prepare alone ({n} cells, {prep['source_mb']:,.0f} MB source)",
                fmt_ms(prep["seconds"] * 1000), note=(
                    f"peak RSS {prep['peak_rss_mb']:,.0f} MB (growth {prep['peak_growth_mb']:,.0f} MB vs "
                    f"--memory-limit {prep['memory_limit_mb']:,.0f} MB); store {prep['store_mb']:,.0f} MB; "
                    f"{prep['nnz']:,} non-zeros, {c['n_genes']} genes" + (" (reused)" if prep.get("reused") else "")))]
    p = c["umap_cluster"]
    rows.append(Row(f"consensus mouse: UMAP picture by cluster ({n} cells, {c['n_clusters']:,} colours)",
                    fmt_ms(p["p50_ms"]), fmt_ms(p["p95_ms"]),
                    note=f"{WIDTH_PX}x{HEIGHT_PX} PNG; first picture {fmt_ms(p['first_ms'])}"))
    h = c.get("neighborhood_cluster")
    if h:
        rows.append(Row(f"consensus mouse: {h['embedding']} UMAP picture by cluster ({_million(h['n_cells'])} cells)",
                        fmt_ms(h["p50_ms"]), fmt_ms(h["p95_ms"]), note=f"first picture {fmt_ms(h['first_ms'])}"))
    g = c.get("gene_lookup")
    if g:
        rows.append(Row(f"consensus mouse: gene, all cells ({n} cells)", fmt_ms(g["store"]["p50_ms"]),
                        fmt_ms(g["store"]["p95_ms"]), note=f"{g['store']['n']} random genes"))
    u = c.get("umap_gene")
    if u:
        rows.append(Row(f"consensus mouse: UMAP picture, new gene ({n} cells)", fmt_ms(u["p50_ms"]),
                        fmt_ms(u["p95_ms"]), note="look-up + range + picture + PNG"))
    return rows


# --------------------------------------------------------------------------------------------------- pictures

class Pictures:
    """Server-side pictures through the viewer's renderer, and the plain datashader way of the same pictures."""

    def __init__(self, atlas, store: Path):
        from core.context import ViewerContext
        from settings import Settings

        self.atlas = atlas
        self.context = ViewerContext.build(atlas, Settings(store=Path(store)))

    def request(self, dataset: str, section: str | None, color_by: str, *, gene: str | None = None,
                term: str | None = None, term_level: str | None = None, embedding: str | None = None):
        from core.picture import PictureRequest
        from core.viewport import fit_aspect, padded

        entry = self.context.catalog.get(dataset)
        bounds = entry.sections[section].bounds if section else (
            entry.embedding(embedding).bounds if embedding else entry.bounds)
        window = fit_aspect(padded(bounds), WIDTH_PX, HEIGHT_PX)
        return PictureRequest(dataset=dataset, section=section, slab_plane=None, color_by=color_by, gene=gene,
                              term=term, term_level=term_level, window=window, width_px=WIDTH_PX,
                              height_px=HEIGHT_PX, embedding=embedding)

    def render(self, request) -> bytes:
        from core.render import render_png

        return render_png(self.context, request)

    def arrays(self, request):
        """``x, y`` (float32) of the picture's cells, mapped so its window is ``(0, 10) x (0, 8)`` (the canvas of
        :func:`bench.render_bench.bench_baseline`; a linear map changes nothing in datashader's cost)."""
        where = {"section": request.section} if request.section else {}
        x, y = (np.asarray(v, dtype=np.float64) for v in self.atlas.xy(request.dataset, **where))
        w = request.window
        return ((x - w.x0) * (10.0 / w.width)).astype(np.float32), ((y - w.y0) * (8.0 / w.height)).astype(np.float32)


def _ds_frame(x, y, **columns):
    import pandas as pd

    return pd.DataFrame({"x": x, "y": y, **columns})


def baseline_numeric(x, y, values, vmin: float, vmax: float, repeats: int) -> dict:
    """Plain datashader for a gene picture: ``points(agg=max)`` + ``shade(viridis, span)`` of vectors in memory."""
    import datashader as ds
    import datashader.transfer_functions as tf
    from matplotlib import colormaps

    cmap = [tuple(int(255 * c) for c in colormaps["viridis"](i / 255)[:3]) for i in range(256)]
    frame = _ds_frame(x, y, v=np.nan_to_num(values, nan=0.0).astype(np.float32))

    def picture():
        canvas = ds.Canvas(plot_width=WIDTH_PX, plot_height=HEIGHT_PX, x_range=(0.0, 10.0), y_range=(0.0, 8.0))
        agg = canvas.points(frame, "x", "y", agg=ds.max("v"))
        return tf.shade(agg, cmap=cmap, how="linear", span=(vmin, vmax))

    timing, _ = _timed(picture, repeats)
    return {**timing, "projected": False}


def baseline_highlight(x, y, codes, colors, mask, repeats: int, budget_bytes: int = BASELINE_BUDGET_BYTES) -> dict:
    """Plain datashader for a highlighted term: the rest as grey counts under the term's cells by category
    (``count_cat`` + ``shade``), stacked; the frame split is part of the time."""
    import datashader as ds
    import datashader.transfer_functions as tf
    import pandas as pd

    from bench.render_bench import BASELINE_BYTES_PER_ELEMENT

    n_categories = len(colors)
    need = BASELINE_BYTES_PER_ELEMENT * n_categories * WIDTH_PX * HEIGHT_PX
    if need > budget_bytes:
        return {"skipped": f"needs ~{need / 1e9:.1f} GB", "p50_ms": None, "p95_ms": None}
    frame = _ds_frame(x, y, cat=pd.Categorical.from_codes(codes, categories=range(n_categories)))

    def picture():
        canvas = ds.Canvas(plot_width=WIDTH_PX, plot_height=HEIGHT_PX, x_range=(0.0, 10.0), y_range=(0.0, 8.0))
        rest = canvas.points(frame[~mask], "x", "y", agg=ds.count())
        term = canvas.points(frame[mask], "x", "y", agg=ds.count_cat("cat"))
        return tf.stack(tf.shade(rest, cmap=["#e6e6e6", "#c8c8c8"]), tf.shade(term, color_key=colors, how="eq_hist"))

    timing, _ = _timed(picture, repeats)
    return {**timing, "projected": False}


def bench_picture_by_cluster(pictures: Pictures, request, repeats: int, baseline_repeats: int,
                             budget_bytes: int = BASELINE_BUDGET_BYTES) -> dict:
    """Our picture by the finest level vs ``count_cat`` + ``shade`` (measured, or projected when too big)."""
    from bench.render_bench import bench_baseline

    t0 = time.perf_counter()
    png = pictures.render(request)  # first picture: builds the cells frame (cached afterwards)
    first_ms = (time.perf_counter() - t0) * 1000
    ours, png = _timed(lambda: pictures.render(request), repeats, warm_up=False)
    x, y = pictures.arrays(request)
    where = {"section": request.section} if request.section else {}
    codes = np.asarray(pictures.atlas.codes(request.dataset, request.color_by, **where)).astype(np.int32)
    colors = pictures.atlas.taxonomy(request.dataset).colors(request.color_by)
    base = bench_baseline(x, y, codes, list(colors), WIDTH_PX, HEIGHT_PX, baseline_repeats, budget_bytes)
    return {"dataset": request.dataset, "section": request.section, "color_by": request.color_by,
            "n_cells": int(len(x)), "n_categories": len(colors), "first_ms": round(first_ms, 1),
            "png_bytes": len(png), "ours": ours, "baseline": base}


def bench_picture_gene(pictures: Pictures, dataset: str, section: str | None, repeats: int, baseline_repeats: int,
                       seed: int = 1) -> dict:
    """A new gene each time (default range, look-up, picture, PNG) vs plain datashader on the vector in memory."""
    genes = _random_genes(pictures.atlas, dataset, repeats + 1, seed)
    pictures.render(pictures.request(dataset, section, "gene", gene=genes[0]))  # warm-up (numba, cells)
    times = []
    for g in genes[1:]:
        t0 = time.perf_counter()
        pictures.render(pictures.request(dataset, section, "gene", gene=g))
        times.append(time.perf_counter() - t0)
    request = pictures.request(dataset, section, "gene", gene=genes[-1])
    where = {"section": section} if section else {}
    values = pictures.atlas.gene(dataset, genes[-1], **where)
    vmin, vmax = pictures.context.gene_range(dataset, genes[-1])
    x, y = pictures.arrays(request)
    return {"dataset": dataset, "section": section, "n_cells": int(len(x)), "genes": genes[1:],
            "ours": stats_ms(times), "baseline": baseline_numeric(x, y, values, vmin, vmax, baseline_repeats)}


def bench_picture_highlight(pictures: Pictures, dataset: str, section: str | None, repeats: int,
                            baseline_repeats: int, seed: int = 2, budget_bytes: int = BASELINE_BUDGET_BYTES) -> dict:
    """Colour by the second level, one term of the third level highlighted (a new term each time)."""
    atlas = pictures.atlas
    levels = atlas.info(dataset).levels
    color_by, term_level = levels[min(1, len(levels) - 1)], levels[min(2, len(levels) - 1)]
    where = {"section": section} if section else {}
    cells = atlas.cells(dataset, **where)
    present = cells[term_level].value_counts()
    present = [str(t) for t, n in present.items() if n > 0 and t not in ("unassigned", "Adjacent")]
    rng = np.random.default_rng(seed)
    terms = [present[i] for i in rng.choice(len(present), size=min(repeats + 1, len(present)), replace=False)]
    pictures.render(pictures.request(dataset, section, color_by, term=terms[0], term_level=term_level))
    times = []
    for term in terms[1:] or terms:
        t0 = time.perf_counter()
        pictures.render(pictures.request(dataset, section, color_by, term=term, term_level=term_level))
        times.append(time.perf_counter() - t0)
    request = pictures.request(dataset, section, color_by, term=terms[-1], term_level=term_level)
    x, y = pictures.arrays(request)
    codes = np.asarray(atlas.codes(dataset, color_by, **where)).astype(np.int32)
    mask = np.asarray(cells[term_level] == terms[-1])
    colors = list(atlas.taxonomy(dataset).colors(color_by))
    return {"dataset": dataset, "section": section, "color_by": color_by, "term_level": term_level,
            "n_cells": int(len(x)), "n_categories": len(colors), "ours": stats_ms(times),
            "baseline": baseline_highlight(x, y, codes, colors, mask, baseline_repeats, budget_bytes)}


# --------------------------------------------------------------------------------------------------- section cells

def bench_section_cells_vs_csv(atlas, cache: Path, dataset: str, repeats: int, baseline_repeats: int) -> dict:
    """``atlas.cells(dataset, section)`` (uncached) vs pandas reading the release CSVs a notebook user joins for
    the same section (``cell_metadata`` + ``slab_plane_coordinates`` + ``cell_to_cluster_membership``)."""
    import pandas as pd

    from bench.data_bench import bench_section_cells

    ours = bench_section_cells(atlas.root, dataset=dataset, max_sections=repeats)
    sections = atlas.sections(dataset)
    section = str(sections.sort_values("n_cells").iloc[-1]["brain_section_label"])
    sources = atlas.catalog["datasets"][dataset]["sources"]
    meta = Path(cache) / next(Path(s["path"]).parent for s in sources if s["path"].endswith("/cell_metadata.csv"))

    def plain():
        cells = pd.read_csv(meta / "cell_metadata.csv", dtype={"cell_label": str}, keep_default_na=False)
        cells = cells[cells["brain_section_label"] == section]
        coords = pd.read_csv(meta / "slab_plane_coordinates.csv", dtype={"cell_label": str})
        clusters = pd.read_csv(meta / "cell_to_cluster_membership.csv", dtype=str)
        return cells.merge(coords, on="cell_label").merge(clusters, on="cell_label", how="left")

    base, frame = _timed(plain, baseline_repeats, warm_up=False)
    return {**ours, "largest_section": section, "pandas_csv": {**base, "n_cells": int(len(frame))}}


# --------------------------------------------------------------------------------------------------- the run

def _safe(name: str, fn: Callable[[], dict], results: dict, errors: dict) -> dict | None:
    log.info("bench: %s", name)
    t0 = time.perf_counter()
    try:
        results[name] = fn()
        results[name]["bench_seconds"] = round(time.perf_counter() - t0, 1)
        return results[name]
    except Exception as exc:  # one broken measurement must not hide the others
        log.exception("bench %s failed", name)
        errors[name] = f"{type(exc).__name__}: {exc}"
        return None


def _million(n: int) -> str:
    return f"{n / 1e6:.1f} M" if n >= 1e6 else f"{n / 1e3:.0f} k"


def build_rows(results: dict, errors: dict) -> list[Row]:
    """Table rows from the results (a failed measurement becomes a row saying so)."""
    rows: list[Row] = []
    prep = results.get("prepare")
    if prep:
        rows.append(Row(
            f"prepare whole cache ({prep['source_mb']:,.0f} MB source, {prep['seconds']:.0f} s)",
            f"{prep['throughput_mb_s']:.1f} MB/s", "-", "-", "-",
            f"expression {prep.get('expression_mb_s') or '-'} MB/s; peak RSS growth {prep['peak_growth_mb']:,.0f} MB "
            f"vs --memory-limit {prep['memory_limit_mb']:,.0f} MB" + (" (reused)" if prep.get("reused") else "")))
    for key, label in (("gene_lookup_files", "gene, all cells"), ("gene_lookup_spatial", "gene, all cells")):
        g = results.get(key)
        if not g:
            continue
        base = g.get("anndata_backed") or {}
        files = base.get("files", 1)
        rows.append(Row(
            f"{label} of {g['dataset']} ({_million(g['n_cells'])} cells)",
            fmt_ms(g["store"]["p50_ms"]), fmt_ms(g["store"]["p95_ms"]), fmt_ms(base.get("p50_ms")),
            fmt_ratio(base.get("p50_ms"), g["store"]["p50_ms"]),
            f"{g['store']['n']} random genes; anndata backed, {files} h5ad file{'s' if files > 1 else ''}"
            + (" concatenated" if files > 1 else "")))
    for key, label in (("picture_section_cluster", "section picture by"), ("picture_umap_cluster", "UMAP picture by")):
        p = results.get(key)
        if not p:
            continue
        base = p["baseline"]
        proj = " projected" if base.get("projected") else ""
        rows.append(Row(
            f"{label} {p['color_by']} ({_million(p['n_cells'])} cells, {p['n_categories']:,} colours)",
            fmt_ms(p["ours"]["p50_ms"]), fmt_ms(p["ours"]["p95_ms"]), fmt_ms(base.get("p50_ms")) + proj,
            fmt_ratio(base.get("p50_ms"), p["ours"]["p50_ms"]),
            f"{WIDTH_PX}x{HEIGHT_PX} PNG; vs datashader count_cat+shade"
            + (f" (measured at {', '.join('x'.join(map(str, m['size'])) for m in base['measured'])})"
               if base.get("projected") else "")))
    for key, label in (("picture_section_gene", "section picture, new gene"),
                       ("picture_umap_gene", "UMAP picture, new gene")):
        p = results.get(key)
        if p:
            rows.append(Row(f"{label} ({_million(p['n_cells'])} cells)", fmt_ms(p["ours"]["p50_ms"]),
                            fmt_ms(p["ours"]["p95_ms"]), fmt_ms(p["baseline"].get("p50_ms")),
                            fmt_ratio(p["baseline"].get("p50_ms"), p["ours"]["p50_ms"]),
                            "look-up + range + picture + PNG vs datashader max+shade of a vector in memory"))
    for key, label in (("picture_section_highlight", "section picture, term highlighted"),
                       ("picture_umap_highlight", "UMAP picture, term highlighted")):
        p = results.get(key)
        if p:
            base = p["baseline"]
            rows.append(Row(f"{label} ({_million(p['n_cells'])} cells)", fmt_ms(p["ours"]["p50_ms"]),
                            fmt_ms(p["ours"]["p95_ms"]), fmt_ms(base.get("p50_ms")),
                            fmt_ratio(base.get("p50_ms"), p["ours"]["p50_ms"]),
                            f"{p['color_by']} colours, a {p['term_level']} highlighted; vs datashader count + "
                            "count_cat, stacked" + (f" ({base['skipped']})" if base.get("skipped") else "")))
    m = results.get("markers")
    if m:
        box = m["cases"]["box_quarter_vs_dataset"]
        base = m.get("baseline_dense_vector_per_gene", {})
        rows.append(Row(f"marker genes of a selection ({_million(box['n_selected'])} of {_million(m['n_cells'])} "
                        f"cells, {m['n_genes']} genes)", fmt_ms(box["p50_ms"]), fmt_ms(box["p95_ms"]),
                        fmt_ms(base.get("p50_ms")), fmt_ratio(base.get("p50_ms"), box["p50_ms"]),
                        f"{m['dataset']}; vs one dense atlas.gene vector per gene"))
        quarter = m["cases"].get("a_vs_b_quarter")
        if quarter:
            rows.append(Row(f"markers A vs B, {_million(quarter['n_a'])} vs {_million(quarter['n_b'])} cells "
                            f"({quarter['n_genes']} genes)", fmt_ms(quarter["p50_ms"]), fmt_ms(quarter["p95_ms"]),
                            note=f"{m['dataset']}; Welch's t + BH and the markers.csv text; peak traced "
                                 f"{quarter['peak_traced_mb']:,.0f} MB, RSS +{quarter['rss_growth_mb']:,.0f} MB "
                                 f"(incl. mapped store pages)"))
        across = m["cases"].get("across_species")
        if across:
            nxt, alone = across["next_term"], across["term_alone"]
            rows.append(Row(f"across species, next {across['level']} ({_million(across['n_cells'])} cells of every "
                            "species, every gene tested)", fmt_ms(nxt["p50_ms"]), fmt_ms(nxt["p95_ms"]),
                            fmt_ms(alone["p50_ms"]), fmt_ratio(alone["p50_ms"], nxt["p50_ms"]),
                            f"vs a scan of the term alone; the level's first term (one scan summing every term, "
                            f"kept): {fmt_ms(across['first_term']['p50_ms'])}"))
        term = m["cases"].get("term_markers")
        if term:
            rows.append(Row(f"marker genes of a {term['level']} (cluster statistics)", fmt_ms(term["p50_ms"]),
                            fmt_ms(term["p95_ms"]), note=m["dataset"]))
    o = results.get("open")
    if o:
        rows.append(Row("Atlas.open (fresh process)", fmt_ms(o["open"]["p50_ms"]), fmt_ms(o["open"]["p95_ms"]),
                        note=f"+ {o['import_s']:.2f} s of imports; RSS {o['rss_mb_after_open']:,.0f} MB after open "
                             f"(interpreter + imports "
                             f"{o['rss_mb_after_import']:,.0f} MB), {o['rss_mb_after_first_view']:,.0f} MB after the "
                             f"first section; store {o['store_mb']:,.0f} MB on disk"))
    s = results.get("section_cells")
    if s:
        base = s.get("pandas_csv", {})
        rows.append(Row(f"cells of one section ({s['dataset']}, {s['mean_cells_per_section']:,} mean)",
                        fmt_ms(s["uncached"]["p50_ms"]), fmt_ms(s["uncached"]["p95_ms"]), fmt_ms(base.get("p50_ms")),
                        fmt_ratio(base.get("p50_ms"), s["uncached"]["p50_ms"]),
                        f"DataFrame, uncached; codes+xy views {fmt_ms(s['codes_xy']['p50_ms'])}; vs pandas "
                        "read_csv + join of the release CSVs"))
    b = results.get("browser")
    if b:
        if b.get("skipped"):
            rows.append(Row("first page load to first picture (Chromium)", note=f"skipped: {b['skipped']}"))
        else:
            first = b["loads"][0]
            rows.append(Row("first page load to first picture, cold server", fmt_ms(b["cold_ms"]),
                            note=f"headless Chromium, from navigation start; picture requested at "
                                 f"{fmt_ms(first['request_start_ms'])}, answered in "
                                 f"{fmt_ms(first['response_start_ms'] - first['request_start_ms'])}; server "
                                 f"started in {b['server_start_s']:.1f} s"))
            if b["warm"]["n"]:
                warm = b["loads"][1:]
                asked = float(np.median([r["request_start_ms"] for r in warm]))
                rows.append(Row("first page load to first picture, warm server", fmt_ms(b["warm"]["p50_ms"]),
                                fmt_ms(b["warm"]["p95_ms"]),
                                note=f"{b['warm']['n']} fresh browsers; picture requested at {fmt_ms(asked)} (median)"))
            full = b.get("full_plotly")
            if full and full["warm"]["n"] and b["warm"]["n"]:
                rows.append(Row("first page load, partial plotly.js vs Dash's full bundle (warm server)",
                                fmt_ms(b["warm"]["p50_ms"]), fmt_ms(b["warm"]["p95_ms"]), fmt_ms(full["warm"]["p50_ms"]),
                                fmt_ratio(full["warm"]["p50_ms"], b["warm"]["p50_ms"]),
                                f"bytes before the picture {b['bytes_before_picture'] / 2**20:.2f} MB vs "
                                f"{full['bytes_before_picture'] / 2**20:.2f} MB (plotly.js "
                                f"{b['plotly_bytes'] / 2**20:.2f} vs {full['plotly_bytes'] / 2**20:.2f} MB, "
                                f"compressed); {b['callbacks_before_picture']} vs "
                                f"{full['callbacks_before_picture']} callback requests before it"))
            before = b.get("no_first_picture")
            if before and before["warm"]["n"] and b["warm"]["n"]:
                rows.append(Row("first page load, first pictures in the page vs asked by the callbacks (warm server)",
                                fmt_ms(b["warm"]["p50_ms"]), fmt_ms(b["warm"]["p95_ms"]), fmt_ms(before["warm"]["p50_ms"]),
                                fmt_ratio(before["warm"]["p50_ms"], b["warm"]["p50_ms"]),
                                f"picture arrived; shown at {fmt_ms(b['seen_warm_p50_ms'])} vs "
                                f"{fmt_ms(before['seen_warm_p50_ms'])}; {b['callbacks_before_picture']} vs "
                                f"{before['callbacks_before_picture']} callback requests before it; bytes before it "
                                f"{b['bytes_before_picture'] / 2**20:.2f} MB vs {before['bytes_before_picture'] / 2**20:.2f} MB"))
    if results.get("consensus"):
        rows += consensus_rows(results["consensus"])
    for name, message in errors.items():
        rows.append(Row(name, note=f"FAILED: {message}"))
    return rows


def run_bench(scale="demo", work_dir: str | Path | None = None, json_path: str | Path | None = None,
              echo: Callable[[str], None] = print, *, seed: int = 0, memory_limit_bytes: int = MEMORY_LIMIT_BYTES,
              repeats: Repeats | None = None, browser: bool = True,
              baseline_budget_bytes: int = BASELINE_BUDGET_BYTES, consensus_cells: int | None = None) -> dict:
    """Generate (or reuse) a cache, prepare it, measure everything against its baseline and print one table.

    Parameters
    ----------
    scale : {"demo", "atlas"} or data_layer.demo.DemoScale
        Size of the synthetic cache.
    work_dir : path, optional
        Where the cache (``cache/``), the store (``store/``) and their records live; default ``.bench/<scale>``.
        A complete cache and store of the same scale and seed are reused.
    json_path : path, optional
        Also write every result as JSON.
    echo : callable
        Prints the machine, the set-up and the table.
    seed : int
        Seed of the synthetic cache.
    memory_limit_bytes : int
        ``--memory-limit`` of prepare.
    repeats : Repeats, optional
        Timed runs per measurement (default by scale).
    browser : bool
        Measure the first page load in headless Chromium.
    baseline_budget_bytes : int
        Memory datashader's per-category baseline may use; above it, it is measured on smaller canvases and
        projected to the full size.
    consensus_cells : int, optional
        Cells of the consensus mouse taxonomy (default: the scale's; the atlas scale's is the release's 7.65 M).

    Returns
    -------
    dict
        ``machine``, ``scale``, ``cache``, ``results`` (per measurement), ``errors``, ``rows`` (the table) and
        ``total_seconds``.
    """
    from data_layer import Atlas

    from data_layer.demo import get_scale
    from data_layer.demo.scale import with_consensus_cells

    start = time.perf_counter()
    name = scale if isinstance(scale, str) else "custom"
    if consensus_cells is not None:
        scale = with_consensus_cells(get_scale(scale), consensus_cells)
    repeats = repeats or REPEATS.get(name, Repeats())
    work = Path(work_dir) if work_dir else ROOT / ".bench" / name
    work.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    results: dict[str, dict] = {}
    errors: dict[str, str] = {}

    cache_info = ensure_cache(work, scale, seed)
    _safe("prepare", lambda: ensure_store(work, memory_limit_bytes), results, errors)
    store, cache = work / "store", work / "cache"
    if "prepare" not in results:
        raise RuntimeError(f"prepare failed: {errors.get('prepare')}")
    atlas = Atlas.open(store)
    files_ds, spatial, umap = _most_files(atlas), _largest(atlas, "spatial"), _largest(atlas, "umap")
    section = None
    if spatial:
        section = str(atlas.sections(spatial).sort_values("n_cells").iloc[-1]["brain_section_label"])

    if files_ds:
        _safe("gene_lookup_files", lambda: bench_gene_files(atlas, cache, files_ds, repeats.genes,
                                                            repeats.gene_baseline), results, errors)
    if spatial and atlas.info(spatial).n_genes:
        _safe("gene_lookup_spatial", lambda: bench_gene_files(atlas, cache, spatial, repeats.genes,
                                                              repeats.gene_baseline), results, errors)
    pictures = Pictures(atlas, store)
    if spatial:
        finest = atlas.info(spatial).levels[-1]
        _safe("picture_section_cluster", lambda: bench_picture_by_cluster(
            pictures, pictures.request(spatial, section, finest), repeats.pictures, repeats.baseline_pictures,
            baseline_budget_bytes),
            results, errors)
    if umap:
        finest = atlas.info(umap).levels[-1]
        _safe("picture_umap_cluster", lambda: bench_picture_by_cluster(
            pictures, pictures.request(umap, None, finest), repeats.pictures, repeats.baseline_pictures,
            baseline_budget_bytes),
            results, errors)
    if spatial and atlas.info(spatial).n_genes:
        _safe("picture_section_gene", lambda: bench_picture_gene(
            pictures, spatial, section, repeats.gene_pictures, repeats.baseline_pictures), results, errors)
    if umap and atlas.info(umap).n_genes:
        _safe("picture_umap_gene", lambda: bench_picture_gene(
            pictures, umap, None, repeats.gene_pictures, repeats.baseline_pictures), results, errors)
    if spatial:
        _safe("picture_section_highlight", lambda: bench_picture_highlight(
            pictures, spatial, section, repeats.gene_pictures, repeats.baseline_pictures,
            budget_bytes=baseline_budget_bytes), results, errors)
    if umap:
        _safe("picture_umap_highlight", lambda: bench_picture_highlight(
            pictures, umap, None, repeats.gene_pictures, repeats.baseline_pictures,
            budget_bytes=baseline_budget_bytes), results, errors)

    def markers() -> dict:
        from bench.analysis_bench import bench_markers

        return bench_markers(store, repeats=repeats.markers, baseline_repeats=repeats.marker_baseline)

    _safe("markers", markers, results, errors)

    def open_atlas() -> dict:
        from bench.data_bench import bench_open

        runs = [bench_open(store) for _ in range(repeats.opens)]
        last = runs[-1]
        return {**last, "runs": runs, "open": stats_ms([r["open_s"] for r in runs])}

    if CONSENSUS in atlas.datasets():
        _safe("consensus", lambda: bench_consensus(cache, work, memory_limit_bytes, repeats), results, errors)
    _safe("open", open_atlas, results, errors)
    if spatial:
        _safe("section_cells", lambda: bench_section_cells_vs_csv(atlas, cache, spatial, repeats.sections,
                                                                  repeats.section_baseline), results, errors)
    if browser:
        def page_load() -> dict:
            from bench.browser_bench import bench_first_picture

            after = bench_first_picture(store, loads=repeats.page_loads)
            # the same page with Dash's full plotly.js instead of the partial bundle, in the same run
            return {**after, "full_plotly": bench_first_picture(store, loads=repeats.page_loads, full_plotly=True),
                    "no_first_picture": bench_first_picture(store, loads=repeats.page_loads, first_picture=False)}

        _safe("browser", page_load, results, errors)

    rows = build_rows(results, errors)
    total = time.perf_counter() - start
    cells = cache_info.get("cells", {})
    setup = (f"cache: {work / 'cache'} ({cache_info['total_bytes'] / 2**20:,.0f} MB; "
             + ", ".join(f"{k} {v:,}" for k, v in cells.items()) + ")\n"
             + f"generated in {cache_info['seconds']:.0f} s, peak RSS {cache_info['peak_rss_bytes'] / 2**20:,.0f} MB"
             + (" (reused from an earlier run)" if cache_info.get("reused") else ""))
    echo(describe_machine(machine))
    echo(setup)
    echo("")
    echo(format_table(rows))
    echo("")
    echo(f"ratio = baseline p50 / our p50, measured in this run; total bench wall time {total:.0f} s"
         + ("" if cache_info.get("reused") else " (generation included)"))
    report = {"machine": machine, "scale": json.loads(scale_to_json(scale)), "work_dir": str(work),
              "cache": cache_info, "results": results, "errors": errors,
              "rows": [dataclasses.asdict(r) for r in rows], "markdown": markdown_table(rows),
              "total_seconds": round(total, 1)}
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=1, default=str))
    return report
