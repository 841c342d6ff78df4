"""The default colour range of a gene: the 99th percentile of its expressing cells (0 .. p99), computed from its
stored entries without building the gene's vector over every cell. One definition for prepare (per block), the
store's ranges file and :func:`rendering.raster.default_gene_range`.
"""
from __future__ import annotations

import numpy as np

#: Percentile of the expressing cells' values that tops a gene's default colour range.
DEFAULT_RANGE_PERCENTILE = 99.0


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


def block_default_ranges(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Default ranges of a block's genes from their sorted entries (``values[offsets[i]:offsets[i+1]]``).

    Returns
    -------
    numpy.ndarray
        ``(n_genes_in_block, 2)`` float64; NaN rows for genes with negative values (their range needs the
        count of implicit zeros; :meth:`GeneMatrix.default_range` computes it when asked).
    """
    out = np.full((len(offsets) - 1, 2), np.nan, dtype=np.float64)
    values = np.asarray(values)
    ok = np.isfinite(values)
    all_finite = bool(ok.all())
    bounds = np.asarray(offsets, dtype=np.int64)
    nonempty = bounds[1:] > bounds[:-1]
    # Per-gene minimum in one pass: genes with a negative value keep a NaN row.
    lowest = np.zeros(len(bounds) - 1)
    if nonempty.any():
        lowest[nonempty] = np.minimum.reduceat(np.where(ok, values, np.inf), bounds[:-1][nonempty])
    for i in np.flatnonzero(lowest >= 0):
        segment = values[int(bounds[i]):int(bounds[i + 1])]
        if not all_finite:
            segment = segment[np.isfinite(segment)]
        # No negative value: the implicit zeros do not change the range, only the values > 0 do (all of them
        # when the smallest is > 0, the usual case: no copy).
        expressing = segment if lowest[i] > 0 else segment[segment > 0]
        out[i] = (0.0, _percentile_linear(expressing, DEFAULT_RANGE_PERCENTILE)) if expressing.size else (0.0, 1.0)
    return out


def _percentile_linear(x: np.ndarray, percentile: float) -> float:
    """``float(np.percentile(x.astype(np.float64), percentile))`` (the default linear method, the same float64
    operations) with one ``np.partition`` of ``x`` as it is instead of numpy's general machinery (about 10x less
    overhead per call; partitioning only moves values, so the two values picked are the same numbers). ``x``
    float32 or float64, not empty, all values > 0 (so the top of the range is always above 0)."""
    n = len(x)
    virtual = (n - 1) * (percentile / 100.0)
    if virtual >= n - 1:
        return float(np.max(x))
    lo = int(np.floor(virtual))
    part = np.partition(x, [lo, lo + 1])
    a, b = float(part[lo]), float(part[lo + 1])
    gamma = virtual - lo
    diff = b - a
    return float(b - diff * (1 - gamma)) if gamma >= 0.5 else float(a + diff * gamma)
