"""Expression conversion at the real width (every gene of WMB-10X), measured against the plain floors in one run.

A synthetic source of ``n_cells`` x 32,285 genes with up to ``per_row`` non-zeros per cell (draws of the same gene merge) (log2 CPM values of
integer counts, genes drawn with a skewed frequency as in 10X data) is written by the project's own h5ad writer
(:class:`data_layer.demo.h5ad_writer.StreamingH5adWriter`, gzip chunks like the release) over ``n_files`` files.
Then, on the same files, in this order:

* **inflate floor**: read every file's ``X/indices`` and ``X/data`` (one core, h5py): the time only to decompress
  the source, which no conversion can beat on one core;
* **scipy**: read each file's CSR into memory and ``tocsc()`` (what a user with enough RAM would do);
* **before**: the previous converter (:mod:`bench.legacy_expression`: one process, float16 ``.npy`` layout);
* **after**: :func:`data_layer.expression.convert_expression` (process pool, exact float32 chunks), with its peak
  memory (the process tree's resident memory, sampled) against ``--memory-limit`` and its peak temporary disk;
* **gene look-up**: p50/p95 of a whole-dataset gene vector from both stores.

From the measured rates it prints what the full WMB-10X (4.04 M cells x 32,285 genes, ``WMB_NNZ``) and the
aligned basal ganglia 10X (2.04 M nuclei x 16,630 genes, a 17 GB log2 h5ad) would take on this machine.

Run: ``python -m bench.width_bench --cells 20000 --work-dir .bench/width`` (about 5 minutes on 2 cores).
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa

log = logging.getLogger(__name__)

N_GENES = 32_285
#: Non-zeros of the full WMB-10X expression (the issue's estimate: 11-16 G; 2,800 per cell x 4.04 M cells).
WMB_CELLS = 4_040_000
WMB_NNZ = 2_800 * WMB_CELLS
ALIGNED_CELLS = 2_040_000
ALIGNED_GENES = 16_630
ALIGNED_H5AD_BYTES = 17 * 10**9


# ---------------------------------------------------------------------------------------------------- source
def write_source(folder: Path, n_cells: int, per_row: int, n_files: int, seed: int = 0) -> list[Path]:
    """Write the synthetic h5ad files (reused when present with the same parameters)."""
    from data_layer.demo.h5ad_writer import StreamingH5adWriter
    import scipy.sparse as sp

    folder.mkdir(parents=True, exist_ok=True)
    stamp = folder / "source.json"
    params = {"n_cells": n_cells, "per_row": per_row, "n_files": n_files, "seed": seed, "n_genes": N_GENES}
    paths = [folder / f"part-{i:02d}-log2.h5ad" for i in range(n_files)]
    if stamp.is_file() and json.loads(stamp.read_text()) == params and all(p.is_file() for p in paths):
        return paths
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, N_GENES + 1) ** 0.7
    gene_rank = rng.permutation(N_GENES)
    cdf = np.cumsum(weights[gene_rank])
    cdf /= cdf[-1]
    ids = [f"ENSMUSG{i:011d}" for i in range(N_GENES)]
    symbols = [f"Gene{i}" for i in range(N_GENES)]
    bounds = np.linspace(0, n_cells, n_files + 1).astype(int)
    for i, path in enumerate(paths):
        with StreamingH5adWriter(path, ids, symbols) as writer:
            for a in range(bounds[i], bounds[i + 1], 2_000):
                b = min(bounds[i + 1], a + 2_000)
                draws = np.searchsorted(cdf, rng.random((b - a, per_row)))
                draws.sort(axis=1)
                keep = np.ones(draws.shape, dtype=bool)
                keep[:, 1:] = draws[:, 1:] != draws[:, :-1]
                counts = keep.sum(axis=1)
                cols = draws[keep].astype(np.int32)
                raw = rng.geometric(0.45, len(cols)).astype(np.float64)
                indptr = np.concatenate([[0], np.cumsum(counts)])
                rowsum = np.add.reduceat(raw, indptr[:-1])
                cpm = raw / np.repeat(rowsum, counts) * 1e6
                values = np.log2(cpm + 1.0).astype(np.float32)
                matrix = sp.csr_matrix((values, cols, indptr), shape=(b - a, N_GENES))
                writer.append(matrix, [f"CELL{j:09d}" for j in range(a, b)])
    stamp.write_text(json.dumps(params))
    return paths


def cell_labels(n_cells: int) -> pa.Array:
    return pa.array([f"CELL{j:09d}" for j in range(n_cells)])


# ---------------------------------------------------------------------------------------------------- floors
def inflate_floor(paths: list[Path], step: int = 1 << 22) -> dict:
    """Seconds to read (decompress) every file's indices and values on one core."""
    t0, c0 = time.perf_counter(), time.process_time()
    nnz = 0
    for path in paths:
        with h5py.File(path, "r") as f:
            n = f["X/indices"].shape[0]
            for a in range(0, n, step):
                f["X/indices"][a:a + step]
                f["X/data"][a:a + step]
            nnz += n
    return {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0, "nnz": nnz}


def scipy_tocsc(paths: list[Path]) -> dict:
    """Seconds to load each file's CSR into memory and transpose it to CSC with scipy (one core)."""
    import scipy.sparse as sp

    t0 = time.perf_counter()
    for path in paths:
        with h5py.File(path, "r") as f:
            shape = tuple(f["X"].attrs["shape"])
            m = sp.csr_matrix((f["X/data"][:], f["X/indices"][:], f["X/indptr"][:]), shape=shape)
        m.tocsc()
        del m
    return {"seconds": time.perf_counter() - t0}


class TreeMemory:
    """Peak resident memory of this process and its children, sampled every few milliseconds."""

    def __init__(self, interval: float = 0.02):
        import psutil

        self.proc = psutil.Process()
        self.interval = interval
        self.base = self.proc.memory_info().rss
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _total(self) -> int:
        total = self.proc.memory_info().rss
        for child in self.proc.children(recursive=True):
            try:
                total += child.memory_info().rss
            except Exception:  # noqa: BLE001 - a worker that just ended
                pass
        return total

    def _run(self) -> None:
        t = time.thread_time()
        while not self._stop.is_set():
            self.peak = max(self.peak, self._total())
            time.sleep(self.interval)
        self.cpu_seconds = time.thread_time() - t

    #: CPU seconds of the sampling thread itself (in this process's CPU time, not the measured work's).
    cpu_seconds = 0.0

    def __enter__(self) -> "TreeMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def fork_server_cpu() -> float:
    """CPU seconds so far of this process's multiprocessing fork server (its imports and the conversion's compiled
    loops, loaded once for every worker it forks), 0 when there is none."""
    import psutil

    total = 0.0
    for child in psutil.Process().children():
        try:
            if any("forkserver" in part for part in child.cmdline()):
                times = child.cpu_times()
                total += times.user + times.system
        except Exception:  # noqa: BLE001 - a process that just ended
            pass
    return total


def convert_before(paths: list[Path], n_cells: int, out: Path, memory_limit_bytes: int) -> dict:
    from bench import legacy_expression

    shutil.rmtree(out, ignore_errors=True)
    t0, c0 = time.perf_counter(), time.process_time()
    legacy_expression.convert_expression(paths, cell_labels(n_cells), out, memory_limit_bytes=memory_limit_bytes)
    return {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
            "store_bytes": (out / "indices.npy").stat().st_size + (out / "data.npy").stat().st_size}


def convert_after(paths: list[Path], n_cells: int, out: Path, memory_limit_bytes: int, workers: int | None,
                  temp_limit_bytes: int | None = None) -> dict:
    """The conversion, timed: wall seconds, and CPU seconds of this process (less its memory sampler's) plus its
    workers' task sections (on a machine shared with other work the CPU seconds are the steadier measure of the
    conversion's own cost)."""
    from data_layer.expression import convert_expression

    shutil.rmtree(out, ignore_errors=True)
    labels = cell_labels(n_cells)
    server0 = fork_server_cpu()
    with TreeMemory() as mem:
        t0, c0 = time.perf_counter(), time.process_time()
        summary = convert_expression(paths, labels, out, memory_limit_bytes=memory_limit_bytes, workers=workers,
                                     temp_limit_bytes=temp_limit_bytes)
        seconds, main_cpu = time.perf_counter() - t0, time.process_time() - c0
    main_cpu -= mem.cpu_seconds  # the memory sampler runs in this process: not the conversion's CPU
    conv = summary.conversion
    return {"seconds": seconds, "nnz": summary.nnz, "workers": conv["workers"], "slices_s": conv["seconds_slices"],
            "blocks_s": conv["seconds_blocks"], "store_bytes": conv["store_entry_bytes"],
            "temp_peak_bytes": conv["temp_bytes_peak"], "peak_growth_bytes": mem.peak - mem.base,
            "n_slices": conv["n_slices"], "n_blocks": conv["n_blocks"], "passes": conv["extra"].get("passes", 1),
            "sections": conv["sections"], "main_cpu_seconds": main_cpu, "sampler_cpu_seconds": mem.cpu_seconds,
            "fork_server_cpu_seconds": fork_server_cpu() - server0,
            "cpu_seconds": main_cpu + (sum(conv["sections"].values()) if conv["workers"] > 1 else 0.0)}


def lookups(folder: Path, n_cells: int, genes: np.ndarray) -> dict:
    from data_layer.expression import GeneMatrix

    gm = GeneMatrix(folder, n_cells)
    gm.values(int(genes[0]))
    times = []
    for g in genes:
        t0 = time.perf_counter()
        gm.values(int(g))
        times.append(time.perf_counter() - t0)
    ms = np.asarray(times) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "mean_entries": float(np.mean(np.diff(gm.indptr)[genes]))}


# ---------------------------------------------------------------------------------------------------- look-ups
def lookup_source(folder: Path, n_cells: int, n_genes: int, seed: int = 2) -> Path:
    """One CSR h5ad of ``n_cells`` cells and ``n_genes`` genes whose densities spread from 0.5 % to 60 % of the
    cells (log-uniform), log2 CPM-like float32 values; reused when present."""
    from data_layer.demo.h5ad_writer import StreamingH5adWriter
    import scipy.sparse as sp

    path = folder / "lookup-log2.h5ad"
    stamp = folder / "lookup.json"
    params = {"n_cells": n_cells, "n_genes": n_genes, "seed": seed}
    if path.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == params:
        return path
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    density = np.exp(rng.uniform(np.log(0.005), np.log(0.6), n_genes))
    with StreamingH5adWriter(path, [f"ENSMUSG{i:011d}" for i in range(n_genes)],
                             [f"Gene{i}" for i in range(n_genes)]) as writer:
        for a in range(0, n_cells, 250_000):
            b = min(n_cells, a + 250_000)
            mask = rng.random((b - a, n_genes)) < density
            values = np.where(mask, np.log2(rng.gamma(1.5, 40.0, mask.shape) + 1.0), 0.0).astype(np.float32)
            writer.append(sp.csr_matrix(values), [f"CELL{j:09d}" for j in range(a, b)])
    stamp.write_text(json.dumps(params))
    return path


def lookup_bench(work: Path, n_cells: int = 4_000_000, n_genes: int = 48, memory_limit_bytes: int = 2 << 30,
                 repeats: int = 3) -> dict:
    """A whole-dataset gene look-up (``GeneMatrix.values``, what ``Atlas.gene`` does) at ``n_cells`` cells, on
    the previous layout (float16 ``.npy`` memory maps) and on the exact compressed one, from the page cache;
    p50/p95 over every gene (the best of ``repeats`` passes per gene), and the stored bytes per entry."""
    from bench import legacy_expression
    from data_layer.expression import GeneMatrix, convert_expression

    source = lookup_source(work / "lookup-source", n_cells, n_genes)
    labels = cell_labels(n_cells)
    out = {"n_cells": n_cells, "n_genes": n_genes}
    for name, convert in (("before", legacy_expression.convert_expression), ("after", convert_expression)):
        folder = work / f"lookup-{name}"
        if not (folder / "expression.json").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            convert([source], labels, folder, memory_limit_bytes=memory_limit_bytes)
        gm = GeneMatrix(folder, n_cells) if name == "after" else legacy_expression.GeneMatrix(folder, n_cells)
        times = []
        for g in range(n_genes):
            best = np.inf
            for _ in range(repeats):
                t0 = time.perf_counter()
                gm.values(g)
                best = min(best, time.perf_counter() - t0)
            times.append(best)
        ms = np.asarray(times) * 1e3
        nnz = int(gm.indptr[-1])
        stored = gm.stored_bytes() if name == "after" else int(gm.indices.nbytes + gm.data.nbytes)
        out[name] = {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
                     "max_ms": float(ms.max()), "bytes_per_nnz": stored / nnz, "nnz": nnz}
    return out


# ---------------------------------------------------------------------------------------------------- run
def run(work: Path, n_cells: int, per_row: int, n_files: int, memory_limit_bytes: int, workers: int | None,
        with_before: bool = True, n_lookups: int = 40, with_temp_limit: bool = True) -> dict:
    """Every measurement of the module docstring; returns a JSON-able dict (rows for the README)."""
    paths = write_source(work / "source", n_cells, per_row, n_files)
    source_bytes = sum(p.stat().st_size for p in paths)
    for p in paths:  # read once so every measurement starts from the page cache
        with open(p, "rb") as f:
            while f.read(1 << 24):
                pass
    res: dict = {"n_cells": n_cells, "n_genes": N_GENES, "n_files": n_files, "source_bytes": source_bytes,
                 "memory_limit_bytes": memory_limit_bytes}
    res["inflate"] = inflate_floor(paths)
    nnz = res["inflate"]["nnz"]
    res["nnz"] = nnz
    res["scipy"] = scipy_tocsc(paths)
    if with_before:
        res["before"] = convert_before(paths, n_cells, work / "before", memory_limit_bytes)
    res["after"] = convert_after(paths, n_cells, work / "after", memory_limit_bytes, workers)
    if with_temp_limit:  # the temporary disk bounded at half the store's entries: passes over the sources
        res["temp_limit_bytes"] = res["after"]["store_bytes"] // 2
        res["after_temp_limit"] = convert_after(paths, n_cells, work / "after-temp", memory_limit_bytes, workers,
                                                temp_limit_bytes=res["temp_limit_bytes"])
        shutil.rmtree(work / "after-temp", ignore_errors=True)
    rng = np.random.default_rng(1)
    from data_layer.expression import GeneMatrix

    gm = GeneMatrix(work / "after", n_cells)
    counts = np.diff(gm.indptr)
    common = np.argsort(counts)[-200:]  # look-ups of genes that are expressed, as users ask for
    genes = rng.choice(common, min(n_lookups, len(common)), replace=False)
    res["lookup_after"] = lookups(work / "after", n_cells, genes)
    if with_before:
        res["lookup_before"] = lookups(work / "before", n_cells, genes)
    res["rows"] = rows(res)
    return res


def _rate(nnz: int, seconds: float) -> float:
    return nnz / seconds if seconds else float("nan")


def rows(res: dict) -> list[dict]:
    """Bench rows (what, value, baseline, ratio, note) and the extrapolation, from the measurements."""
    nnz, mb = res["nnz"], res["source_bytes"] / 2**20
    inflate_s, after = res["inflate"]["seconds"], res["after"]
    out = [
        {"what": "inflate the source (floor, 1 core)", "seconds": inflate_s,
         "rate_nnz_s": _rate(nnz, inflate_s), "mb_s": mb / inflate_s},
        {"what": "scipy CSR -> tocsc (in memory, 1 core)", "seconds": res["scipy"]["seconds"],
         "rate_nnz_s": _rate(nnz, res["scipy"]["seconds"]), "mb_s": mb / res["scipy"]["seconds"]},
    ]
    if "before" in res:
        b = res["before"]["seconds"]
        out.append({"what": "prepare expression, before (1 process, float16)", "seconds": b,
                    "cpu_seconds": res["before"].get("cpu_seconds"),
                    "rate_nnz_s": _rate(nnz, b), "mb_s": mb / b, "store_bytes_per_nnz": res["before"]["store_bytes"] / nnz})
    out.append({"what": f"prepare expression, after ({after['workers']} processes, exact float32)",
                "seconds": after["seconds"], "rate_nnz_s": _rate(nnz, after["seconds"]), "mb_s": mb / after["seconds"],
                "x_inflate": after["seconds"] / inflate_s, "x_scipy": res["scipy"]["seconds"] / after["seconds"],
                "x_before": (res["before"]["seconds"] / after["seconds"]) if "before" in res else None,
                "store_bytes_per_nnz": after["store_bytes"] / nnz, "temp_peak_bytes_per_nnz": after["temp_peak_bytes"] / nnz,
                "peak_growth_mb": after["peak_growth_bytes"] / 2**20,
                "memory_limit_mb": res["memory_limit_bytes"] / 2**20})
    out.append({"what": "  CPU seconds, after (this process + worker tasks) vs inflate (1 core)",
                "cpu_seconds": after["cpu_seconds"], "inflate_cpu_seconds": res["inflate"]["cpu_seconds"],
                "x_inflate_cpu": after["cpu_seconds"] / res["inflate"]["cpu_seconds"],
                "x_before_cpu": (res["before"]["cpu_seconds"] / after["cpu_seconds"]) if "before" in res else None,
                "sections": f"this process {after['main_cpu_seconds']:.1f}; worker tasks: "
                            + ", ".join(f"{k} {v:.1f}" for k, v in after["sections"].items())
                            + (f"; not counted: the fork server's imports and compiled loops, once for all workers, "
                               f"{after['fork_server_cpu_seconds']:.1f}" if after.get("fork_server_cpu_seconds")
                               else "")})
    if "after_temp_limit" in res:
        lim = res["after_temp_limit"]
        out.append({"what": f"prepare expression, --temp-limit {res['temp_limit_bytes'] / 2**20:.0f} MB (half the "
                            f"store), {lim['passes']} passes", "seconds": lim["seconds"],
                    "rate_nnz_s": _rate(nnz, lim["seconds"]), "x_inflate": lim["seconds"] / inflate_s,
                    "temp_peak_bytes_per_nnz": lim["temp_peak_bytes"] / nnz,
                    "store_bytes_per_nnz": lim["store_bytes"] / nnz})
    out.append({"what": "gene look-up, after", **res["lookup_after"]})
    if "lookup_before" in res:
        out.append({"what": "gene look-up, before", **res["lookup_before"]})
    rate = _rate(nnz, after["seconds"])
    src_per_nnz = res["source_bytes"] / nnz
    aligned_nnz = ALIGNED_H5AD_BYTES / src_per_nnz
    for name, total in (("full WMB-10X (4.04 M cells, 32,285 genes)", WMB_NNZ),
                        ("aligned BG 10X (2.04 M nuclei, 16,630 genes, 17 GB h5ad)", aligned_nnz)):
        out.append({"what": f"extrapolated: {name}", "nnz": total, "hours": total / rate / 3600,
                    "inflate_hours": total / _rate(nnz, inflate_s) / 3600,
                    "store_gb": total * after["store_bytes"] / nnz / 1e9,
                    "temp_peak_gb": total * after["temp_peak_bytes"] / nnz / 1e9})
    return out


def format_rows(res: dict) -> str:
    lines = [f"{res['n_cells']:,} cells x {res['n_genes']:,} genes, {res['nnz']:,} non-zeros in {res['n_files']} "
             f"gzip h5ad files ({res['source_bytes'] / 2**20:,.0f} MB)"]
    for r in res["rows"]:
        parts = [r["what"]]
        for key, fmt in (("seconds", "{:.1f} s"), ("rate_nnz_s", "{:,.0f} nnz/s"), ("mb_s", "{:.1f} MB/s"),
                         ("x_inflate", "{:.2f}x the inflate time"), ("x_scipy", "{:.2f}x scipy's speed"),
                         ("x_before", "{:.2f}x faster than before"),
                         ("store_bytes_per_nnz", "store {:.2f} B/nnz"),
                         ("temp_peak_bytes_per_nnz", "temp peak {:.2f} B/nnz"),
                         ("peak_growth_mb", "peak memory +{:.0f} MB"), ("memory_limit_mb", "limit {:.0f} MB"),
                         ("cpu_seconds", "{:.1f} CPU s"), ("inflate_cpu_seconds", "inflate {:.1f} CPU s"),
                         ("x_inflate_cpu", "{:.2f}x the inflate CPU"),
                         ("x_before_cpu", "before used {:.2f}x as much CPU"), ("sections", "{}"),
                         ("p50_ms", "p50 {:.2f} ms"), ("p95_ms", "p95 {:.2f} ms"),
                         ("mean_entries", "{:,.0f} entries/gene"), ("hours", "{:.1f} h"),
                         ("inflate_hours", "(inflate {:.1f} h)"), ("store_gb", "store {:.0f} GB"),
                         ("temp_peak_gb", "temp peak {:.0f} GB")):
            if r.get(key) is not None:
                parts.append(fmt.format(r[key]))
        lines.append(" | ".join(parts))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=20_000)
    parser.add_argument("--per-row", type=int, default=2_800)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--memory-limit-mb", type=int, default=2048)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--no-before", action="store_true", help="skip the previous converter (slow)")
    parser.add_argument("--work-dir", type=Path, default=Path(".bench/width"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--lookup-cells", type=int, default=0,
                        help="also compare whole-dataset gene look-ups at this many cells (e.g. 4000000)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.cells:
        res = run(args.work_dir, args.cells, args.per_row, args.files, args.memory_limit_mb << 20, args.workers,
                  with_before=not args.no_before)
        print(format_rows(res))
    else:
        res = {}
    if args.lookup_cells:
        res["lookup_at_scale"] = lookup_bench(args.work_dir, args.lookup_cells)
        lk = res["lookup_at_scale"]
        for name in ("before", "after"):
            print(f"gene look-up at {lk['n_cells']:,} cells, {name}: p50 {lk[name]['p50_ms']:.2f} ms, "
                  f"p95 {lk[name]['p95_ms']:.2f} ms, {lk[name]['bytes_per_nnz']:.2f} bytes/entry")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
