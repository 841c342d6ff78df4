"""A UMAP-like 2-D embedding laid out from the taxonomy, not computed.

Each cluster is an island (an elongated Gaussian blob); clusters of one group sit side by side, groups of
a subclass and subclasses of a class gather, and classes of a neighborhood are neighbours, which is how
a real UMAP of a well-separated taxonomy looks. Positions are sunflower packings at every level.
"""
from __future__ import annotations

import numpy as np

_GOLDEN = np.pi * (3.0 - np.sqrt(5.0))


def _sunflower(n: int, spacing: float, rng: np.random.Generator) -> np.ndarray:
    k = np.arange(n)
    r = spacing * np.sqrt(k + 0.5)
    a = k * _GOLDEN + rng.uniform(0, 2 * np.pi)
    return np.column_stack([r * np.cos(a), r * np.sin(a)])


def layout_centres(paths: list[tuple[str, ...]], spacings: tuple[float, ...], rng: np.random.Generator,
                   top_radius: float) -> np.ndarray:
    """Centre (x, y) of each leaf of ``paths`` (tuples from the top level to the cluster), shape (n, 2).

    ``spacings[i]`` is the distance between siblings at level ``i + 1``; top-level nodes sit on a circle
    of radius ``top_radius``.
    """
    depth = len(paths[0])
    centre: dict[tuple[str, ...], np.ndarray] = {(): np.zeros(2)}
    tops = list(dict.fromkeys(p[0] for p in paths))
    angles = np.linspace(0, 2 * np.pi, len(tops), endpoint=False) + rng.uniform(0, 0.5)
    for t, a in zip(tops, angles):
        centre[(t,)] = top_radius * np.array([np.cos(a), np.sin(a)])
    for level in range(1, depth):
        children: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
        for p in paths:
            children.setdefault(p[:level], [])
            if p[:level + 1] not in children[p[:level]]:
                children[p[:level]].append(p[:level + 1])
        for parent, kids in children.items():
            offsets = _sunflower(len(kids), spacings[level - 1], rng)
            for kid, off in zip(kids, offsets):
                centre[kid] = centre[parent] + off
    return np.array([centre[p] for p in paths])


def scatter_islands(centres: np.ndarray, cluster_of_cell: np.ndarray, rng: np.random.Generator,
                    base_sd: float, counts: np.ndarray | None = None) -> np.ndarray:
    """(x, y) float64 of each cell: an anisotropic Gaussian island around its cluster's centre, shape (n, 2)."""
    k = len(centres)
    if counts is None:
        counts = np.bincount(cluster_of_cell, minlength=k)
    sd = base_sd * (0.7 + 0.3 * np.sqrt(np.maximum(counts, 1) / max(np.median(counts[counts > 0]), 1)))
    angle = rng.uniform(0, np.pi, k)
    aspect = rng.uniform(1.0, 2.4, k)
    z = rng.standard_normal((len(cluster_of_cell), 2))
    z[:, 0] *= aspect[cluster_of_cell]
    c, s = np.cos(angle[cluster_of_cell]), np.sin(angle[cluster_of_cell])
    xy = np.column_stack([c * z[:, 0] - s * z[:, 1], s * z[:, 0] + c * z[:, 1]])
    return centres[cluster_of_cell] + xy * sd[cluster_of_cell, None]
