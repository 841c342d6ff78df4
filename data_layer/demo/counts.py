"""Expression model of the demo: mean profiles per cluster and negative-binomial counts per cell.

A group's mean count of a gene comes from the gene's marker rules (see :mod:`.genes`); genes without
rules follow "programs": each is switched on in one node of the taxonomy (a neighborhood, class,
subclass or group) so related cell types share expression, as real ones do. Clusters vary around
their group, species around each other. Counts are Poisson-gamma (negative binomial) draws; genes with
small means are drawn sparsely (a Poisson total per cell scattered over them), so a cell costs time in
proportion to what it expresses, not to the panel size.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .genes import Gene


def group_profiles(genes: list[Gene], groups: list, rng: np.random.Generator, marker_background: float = 0.01,
                   program_background: float = 0.04, program_level: float = 1.6) -> np.ndarray:
    """Mean counts per cell, float64, shape (n_groups, n_genes).

    ``groups`` are objects with ``name, neighborhood, cls, subclass, tags``.
    """
    n_g = len(genes)
    out = np.empty((len(groups), n_g))
    nodes = {
        "neighborhood": sorted({g.neighborhood for g in groups}),
        "cls": sorted({g.cls for g in groups}),
        "subclass": sorted({g.subclass for g in groups}),
        "name": [g.name for g in groups],
    }
    levels = list(nodes)
    level_p = np.array([0.1, 0.3, 0.35, 0.25])
    for j, gene in enumerate(genes):
        if gene.rules:
            for i, grp in enumerate(groups):
                vals = [gene.rules[t] for t in grp.tags if t in gene.rules]
                out[i, j] = max(vals) if vals else marker_background
        else:
            level = levels[rng.choice(len(levels), p=level_p)]
            chosen = nodes[level][rng.integers(len(nodes[level]))]
            value = program_level * rng.lognormal(0.0, 0.5)
            for i, grp in enumerate(groups):
                out[i, j] = value if getattr(grp, level) == chosen else program_background
    return out


def cluster_profiles(group_profile: np.ndarray, cluster_group_index: np.ndarray, rng: np.random.Generator,
                     spread: float = 0.25, n_specific: int = 3, specific_gain: float = 4.0,
                     specific_genes: np.ndarray | None = None) -> np.ndarray:
    """Mean counts per cluster, float64, shape (n_clusters, n_genes): the group's profile, varied.

    Each cluster also raises ``n_specific`` genes drawn from ``specific_genes`` (column indices; default
    all) by ``specific_gain`` so clusters of one group can be told apart. Pass the non-marker genes so
    markers keep their cell-type specificity.
    """
    prof = group_profile[cluster_group_index] * rng.lognormal(0.0, spread, size=(len(cluster_group_index),
                                                                                  group_profile.shape[1]))
    pool = np.arange(prof.shape[1]) if specific_genes is None else np.asarray(specific_genes)
    for k in range(len(prof)):
        idx = rng.choice(pool, size=min(n_specific, len(pool)), replace=False)
        prof[k, idx] = np.maximum(prof[k, idx], 0.5) * specific_gain
    return prof


def sample_counts(mean: np.ndarray, cluster_of_cell: np.ndarray, size_factor: np.ndarray,
                  rng: np.random.Generator, theta: float = 2.5, dense_threshold: float = 0.3) -> sp.csr_matrix:
    """Negative-binomial counts, CSR float32, shape (n_cells, n_genes).

    Parameters
    ----------
    mean : ndarray, shape (n_clusters, n_genes)
        Expected counts of a cell of size factor 1.
    cluster_of_cell : ndarray of int, shape (n_cells,)
        Row of ``mean`` for each cell.
    size_factor : ndarray, shape (n_cells,)
        Per-cell multiplier (cell size, capture efficiency).
    theta : float
        Negative-binomial shape (smaller = more overdispersed).
    dense_threshold : float
        Genes with a mean below this are drawn sparsely (Poisson, scattered).
    """
    n_cells, n_genes = len(cluster_of_cell), mean.shape[1]
    order = np.argsort(cluster_of_cell, kind="stable")
    sorted_k = cluster_of_cell[order]
    bounds = np.flatnonzero(np.diff(sorted_k)) + 1
    rows, cols, vals = [], [], []
    for block in np.split(order, bounds):
        if not len(block):
            continue
        mu = mean[cluster_of_cell[block[0]]]
        s = size_factor[block]
        hi = np.flatnonzero(mu >= dense_threshold)
        lo = np.flatnonzero((mu > 0) & (mu < dense_threshold))
        if len(hi):
            lam = (s[:, None] * mu[hi][None, :]) * rng.gamma(theta, 1.0 / theta, size=(len(block), len(hi)))
            cnt = rng.poisson(lam)
            r, c = np.nonzero(cnt)
            rows.append(block[r])
            cols.append(hi[c])
            vals.append(cnt[r, c].astype(np.float32))
        if len(lo):
            w = mu[lo]
            totals = rng.poisson(s * w.sum())
            m = int(totals.sum())
            if m:
                cdf = np.cumsum(w) / w.sum()
                pick = np.minimum(np.searchsorted(cdf, rng.random(m), side="right"), len(lo) - 1)
                rows.append(np.repeat(block, totals))
                cols.append(lo[pick])
                vals.append(np.ones(m, dtype=np.float32))
    if rows:
        r, c, v = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
    else:
        r = c = np.empty(0, dtype=np.int64)
        v = np.empty(0, dtype=np.float32)
    mat = sp.csr_matrix((v, (r, c)), shape=(n_cells, n_genes), dtype=np.float32)
    mat.sum_duplicates()
    mat.sort_indices()
    return mat


def log2_cpm(counts: sp.csr_matrix, totals: np.ndarray | None = None) -> sp.csr_matrix:
    """``log2(counts / total * 1e6 + 1)`` as float32 CSR (rows without counts stay empty).

    ``totals`` (shape (n_cells,)) are the cells' total counts when the matrix holds only some of their genes;
    default the row sums.
    """
    out = sp.csr_matrix(counts, dtype=np.float32, copy=True)
    if totals is None:
        totals = np.asarray(out.sum(axis=1, dtype=np.float64)).ravel()
    totals = np.asarray(totals, dtype=np.float64)
    scale = np.divide(1e6, totals, out=np.zeros_like(totals), where=totals > 0).astype(np.float32)
    out.data *= np.repeat(scale, np.diff(out.indptr))
    out.data += 1.0
    np.log2(out.data, out=out.data)
    return out
