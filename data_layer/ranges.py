"""The default colour range of a gene: the 99th percentile of its expressing cells (0 .. p99), computed from its
stored entries without building the gene's vector over every cell. One definition for prepare (per block), the
store's ranges file and :func:`rendering.raster.default_gene_range`.
"""
from __future__ import annotations

import numba
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

    One compiled pass picks, per gene, the two order statistics of its finite values > 0 around the percentile
    (a selection in a scratch copy); the interpolation between them is :func:`_percentile_linear`'s, in the
    same float64 operations, for all genes at once.

    Returns
    -------
    numpy.ndarray
        ``(n_genes_in_block, 2)`` float64; NaN rows for genes with negative values (their range needs the
        count of implicit zeros; :meth:`GeneMatrix.default_range` computes it when asked).
    """
    bounds = np.asarray(offsets, dtype=np.int64)
    n_genes = len(bounds) - 1
    out = np.full((n_genes, 2), np.nan, dtype=np.float64)
    if n_genes <= 0:
        return out
    values = np.ascontiguousarray(values)
    if values.dtype not in (np.float32, np.float64):
        values = values.astype(np.float64)
    fraction = DEFAULT_RANGE_PERCENTILE / 100.0
    n_pos = np.zeros(n_genes, dtype=np.int64)
    low = np.zeros(n_genes, dtype=np.float64)
    high = np.zeros(n_genes, dtype=np.float64)
    negative = np.zeros(n_genes, dtype=np.bool_)
    _order_statistics(values, bounds, fraction, n_pos, low, high, negative)
    # The interpolation of _percentile_linear (numpy's linear method), vectorised: the same float64 operations.
    virtual = (n_pos - 1).astype(np.float64) * fraction
    lo = np.floor(virtual)
    gamma = virtual - lo
    diff = high - low
    with np.errstate(invalid="ignore"):
        top = np.where(gamma >= 0.5, high - diff * (1 - gamma), low + diff * gamma)
    top = np.where(virtual >= n_pos - 1, high, top)  # the largest value (high holds it then)
    ok = ~negative
    out[ok, 0] = 0.0
    out[ok, 1] = np.where(n_pos[ok] > 0, top[ok], 1.0)
    return out


@numba.njit(cache=True, nogil=True)
def _order_statistics(values, bounds, fraction, n_pos, low, high, negative):  # pragma: no cover - compiled
    """Per gene i (``values[bounds[i]:bounds[i+1]]``): ``negative[i]`` if a finite value is < 0; else
    ``n_pos[i]`` = its finite values > 0 and, of those in ascending order, ``low[i]`` / ``high[i]`` = the values
    at ``k = floor((n - 1) * fraction)`` and ``k + 1`` (both the largest when k is the last position).

    The n - k largest values are kept in a min-heap while scanning (the percentile is near the top, so most
    values are only compared with the heap's least); its least is the k-th value, the next least the k+1-th.
    One scan when every value is finite and > 0 (stored expression usually is), else a count first."""
    heap = np.empty(16, dtype=values.dtype)
    for i in range(len(bounds) - 1):
        a, b = bounds[i], bounds[i + 1]
        if b == a:
            continue
        n = b - a
        if len(heap) < n - int(np.floor((n - 1) * fraction)):  # the most values above the percentile
            heap = np.empty(2 * (n - int(np.floor((n - 1) * fraction))), dtype=values.dtype)
        if not _top_of(values, a, b, n, fraction, heap, low, high, i):  # some value is not finite and > 0
            n = 0
            neg = False
            for j in range(a, b):
                x = values[j]
                if x > 0:
                    if x < np.inf:
                        n += 1
                elif x < 0 and x > -np.inf:
                    neg = True
                    break
            if neg:
                negative[i] = True
                continue
            if n > 0:
                _top_of(values, a, b, n, fraction, heap, low, high, i)
        n_pos[i] = n


@numba.njit(cache=True, nogil=True)
def _top_of(values, a, b, n, fraction, heap, low, high, i):  # pragma: no cover - compiled
    """:func:`_order_statistics` of ``values[a:b]`` given its n finite values > 0 (``heap``: scratch of at
    least ``n - floor((n - 1) * fraction)`` items); False, and nothing set, when ``n == b - a`` but some value
    is not finite and > 0."""
    virtual = (n - 1) * fraction
    k = n - 1 if virtual >= n - 1 else int(np.floor(virtual))
    t = n - k
    check = n == b - a
    size = 0
    for j in range(a, b):
        x = values[j]
        if not (x > 0 and x < np.inf):
            if check:
                return False
            continue
        if size < t:  # sift up
            c = size
            size += 1
            while c > 0:
                parent = (c - 1) // 2
                if heap[parent] <= x:
                    break
                heap[c] = heap[parent]
                c = parent
            heap[c] = x
        elif x > heap[0]:  # replace the least, sift down
            c = 0
            while True:
                child = 2 * c + 1
                if child >= t:
                    break
                if child + 1 < t and heap[child + 1] < heap[child]:
                    child += 1
                if heap[child] >= x:
                    break
                heap[c] = heap[child]
                c = child
            heap[c] = x
    low[i] = heap[0]
    if t == 1:
        high[i] = heap[0]
    elif t == 2:
        high[i] = heap[1]
    else:
        high[i] = min(heap[1], heap[2])
    return True


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
