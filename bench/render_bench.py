"""Benchmark: our categorical cell picture against datashader's per-category aggregation of the same picture.

Ours: one ``ds.last`` aggregation of the integer code + a colour look-up table (+ PNG encoding).
Baseline: what a datashader user writes for coloured categories, ``ds.count_cat`` (= ``ds.by(col, ds.count())``)
+ ``tf.shade(color_key=...)``. Its aggregate holds ``n_categories x H x W`` uint32 counts, and ``tf.shade``
makes several float copies of it, so for thousands of categories it does not fit in memory at 1000x800: the
baseline is then measured at smaller canvases (same cells, same categories) and the full-size time projected by a
straight-line fit of time against pixel count; the report says so (``baseline.projected``).

Run: ``python -m bench.render_bench --cells 200000 --categories 300`` (prints JSON).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import time

import numpy as np

logger = logging.getLogger(__name__)

#: Bytes per (pixel x category) at the peak of count_cat + tf.shade: uint32 aggregate, its copy, a float32 copy,
#: the NaN mask and the float32 colour mask (read from datashader 0.19's ``_colorize``).
BASELINE_BYTES_PER_ELEMENT = 18
#: Default memory the baseline may use on this (shared) machine.
DEFAULT_BASELINE_BUDGET_BYTES = 2_000_000_000


def synthetic_cells(n_cells: int, n_categories: int, seed: int = 0):
    """Cells in an elliptic 'section' with skewed category sizes.

    Returns
    -------
    tuple
        ``x, y`` (float32, mm), ``codes`` (int16/int32, ``0..n_categories-1``), ``colors`` (list of hex).
    """
    rng = np.random.default_rng(seed)
    radius = np.sqrt(rng.random(n_cells))
    angle = rng.random(n_cells) * 2 * np.pi
    x = (5.0 + 4.5 * radius * np.cos(angle)).astype(np.float32)
    y = (4.0 + 3.5 * radius * np.sin(angle)).astype(np.float32)
    weights = 1.0 / np.arange(1, n_categories + 1) ** 0.8  # a few large clusters, many small ones
    codes = rng.choice(n_categories, size=n_cells, p=weights / weights.sum())
    codes = codes.astype(np.int16 if n_categories < 32_000 else np.int32)
    colors = [f"#{rng.integers(0, 0xFFFFFF):06x}" for _ in range(n_categories)]
    return x, y, codes, colors


def _percentiles(times_s: list[float]) -> dict:
    ms = np.asarray(times_s) * 1e3
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2),
            "n": len(ms)}


def _time(fn, repeats: int) -> tuple[list[float], object]:
    times = []
    out = None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return times, out


def _baseline_once(frame, colors, width: int, height: int):
    import datashader as ds
    import datashader.transfer_functions as tf

    canvas = ds.Canvas(plot_width=width, plot_height=height, x_range=(0.0, 10.0), y_range=(0.0, 8.0))
    agg = canvas.points(frame, "x", "y", agg=ds.count_cat("cat"))
    return tf.shade(agg, color_key=colors, how="eq_hist")


def bench_baseline(x, y, codes, colors, width: int, height: int, repeats: int,
                   budget_bytes: int = DEFAULT_BASELINE_BUDGET_BYTES) -> dict:
    """Time count_cat + shade; measured at full size when it fits ``budget_bytes``, else projected."""
    import pandas as pd

    n_categories = len(colors)
    frame = pd.DataFrame({"x": x, "y": y, "cat": pd.Categorical.from_codes(codes, categories=range(n_categories))})
    full_px = width * height
    full_bytes = BASELINE_BYTES_PER_ELEMENT * n_categories * full_px
    result = {"aggregate_bytes_full_size": 4 * n_categories * full_px, "peak_bytes_full_size_est": full_bytes}
    if full_bytes <= budget_bytes:
        _baseline_once(frame, colors, width, height)  # warm-up (numba compile)
        times, _ = _time(lambda: _baseline_once(frame, colors, width, height), repeats)
        result.update({"projected": False, "measured_at": [width, height], **_percentiles(times)})
        return result
    # Two reduced canvases of the same aspect that fit the budget; project linearly in pixel count.
    max_px = budget_bytes / (BASELINE_BYTES_PER_ELEMENT * n_categories)
    scales = [math.sqrt(max_px / full_px), math.sqrt(max_px / full_px) / 2]
    points = []
    for scale in scales:
        w, h = max(8, int(width * scale)), max(8, int(height * scale))
        _baseline_once(frame, colors, w, h)
        times, _ = _time(lambda: _baseline_once(frame, colors, w, h), max(3, repeats // 4))
        points.append((w * h, float(np.median(times)), [w, h], _percentiles(times)))
    (p1, t1, size1, stats1), (p2, t2, size2, stats2) = points
    slope = (t1 - t2) / (p1 - p2) if p1 != p2 else t1 / p1
    projected_s = t1 + slope * (full_px - p1)
    result.update({
        "projected": True,
        "measured": [{"size": size1, **stats1}, {"size": size2, **stats2}],
        "p50_ms": round(projected_s * 1e3, 1),
        "p95_ms": None,
        "note": f"does not fit {budget_bytes / 1e9:.1f} GB at {width}x{height}: needs ~{full_bytes / 1e9:.1f} GB; "
                "p50 projected linearly in pixel count from the two measured sizes",
    })
    return result


def bench_render(n_cells: int, n_categories: int, width: int = 1000, height: int = 800, repeats: int = 20, *,
                 baseline: bool = True, baseline_budget_bytes: int = DEFAULT_BASELINE_BUDGET_BYTES,
                 seed: int = 0) -> dict:
    """Time one categorical picture of ``n_cells`` cells of ``n_categories`` categories at ``width x height``.

    Returns
    -------
    dict
        ``ours_agg_lut`` (aggregation + colour table), ``ours_total`` (+ PNG encoding), ``ours_highlight``
        (two layers, + PNG), ``png_zlib_level1`` (our encoder) / ``png_pillow_level1`` / ``png_pillow_level6``
        (encoding alone, with sizes), ``baseline``
        (count_cat + shade, measured or projected): each with ``p50_ms``, ``p95_ms``.
    """
    from rendering.png import encode_png
    from rendering.raster import Viewport, render_categorical

    x, y, codes, colors = synthetic_cells(n_cells, n_categories, seed)
    viewport = Viewport(0.0, 10.0, 0.0, 8.0, width, height)
    highlight = set(range(0, n_categories, 7))

    def picture():
        return render_categorical(x, y, codes, colors, viewport)

    render_categorical(x, y, codes, colors, viewport, highlight=highlight, spread_px=1)  # warm up numba
    image = picture()
    agg_times, _ = _time(picture, repeats)
    total_times, png = _time(lambda: encode_png(picture()), repeats)
    highlight_times, _ = _time(
        lambda: encode_png(render_categorical(x, y, codes, colors, viewport, highlight=highlight)), repeats)
    level1_times, png1 = _time(lambda: encode_png(image, compress_level=1), repeats)
    pillow1_times, pillow1 = _time(lambda: encode_png(image, compress_level=1, method="pillow"), repeats)
    pillow6_times, pillow6 = _time(lambda: encode_png(image, compress_level=6, method="pillow"), max(3, repeats // 2))
    report = {
        "n_cells": n_cells, "n_categories": n_categories, "width": width, "height": height,
        "ours_agg_lut": _percentiles(agg_times),
        "ours_total": _percentiles(total_times),
        "ours_highlight": _percentiles(highlight_times),
        "png_zlib_level1": {**_percentiles(level1_times), "bytes": len(png1)},
        "png_pillow_level1": {**_percentiles(pillow1_times), "bytes": len(pillow1)},
        "png_pillow_level6": {**_percentiles(pillow6_times), "bytes": len(pillow6)},
    }
    if baseline:
        report["baseline"] = bench_baseline(x, y, codes, colors, width, height, repeats, baseline_budget_bytes)
        report["speedup_p50"] = round(report["baseline"]["p50_ms"] / report["ours_total"]["p50_ms"], 1)
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=200_000)
    parser.add_argument("--categories", type=int, default=300)
    parser.add_argument("--width", type=int, default=1000)
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--budget-gb", type=float, default=DEFAULT_BASELINE_BUDGET_BYTES / 1e9)
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args(argv)
    report = bench_render(args.cells, args.categories, args.width, args.height, args.repeats,
                          baseline=not args.no_baseline, baseline_budget_bytes=int(args.budget_gb * 1e9))
    print(json.dumps(report, indent=2))  # noqa: T201 - this is the command's output


if __name__ == "__main__":  # pragma: no cover
    main()
