"""UMAP-like 2-D embeddings laid out from the taxonomy, not computed.

Two layouts:

* :func:`branching_embedding` (the basal ganglia nuclei): continuous, branching structure as a UMAP of closely
  related cell states shows it: each class a curved trunk, each subclass a branch, clusters following one
  another along their branch and blending into their neighbours.
* :func:`layout_centres` and :func:`scatter_islands` (the whole mouse brain cells): each cluster an island (an
  elongated Gaussian blob); clusters of one group side by side, groups of a subclass and subclasses of a class
  gathered, classes of a neighborhood neighbours; positions are sunflower packings at every level.
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


def _bezier(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points and unit normals of the quadratic Bezier curve ``p0, p1, p2`` at ``t`` (shape (n,)): two (n, 2)."""
    t = t[:, None]
    point = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2
    tangent = 2 * (1 - t) * (p1 - p0) + 2 * t * (p2 - p1)
    tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-12)
    return point, np.column_stack([-tangent[:, 1], tangent[:, 0]])


def _unit(angle: float) -> np.ndarray:
    return np.array([np.cos(angle), np.sin(angle)])


def branching_embedding(paths: list[tuple[str, ...]], cluster_of_cell: np.ndarray, rng: np.random.Generator,
                        top_radius: float = 6.5, length: float = 1.0, width: float = 0.16) -> np.ndarray:
    """(x, y) float64 of each cell on a continuous, branching embedding, shape (n_cells, 2).

    ``paths`` gives each cluster's taxonomy path (neighborhood, class, subclass, ..., cluster), top level first,
    clusters in taxonomy order. Neighborhoods sit around a circle; each class is a curved trunk reaching out from
    its neighborhood, and each subclass a curved branch growing from the trunk (the first subclass continues the
    trunk). Along a branch the subclass' clusters follow one another in taxonomy order, and a cell lies at a
    position spread around its cluster's stretch with a smoothly varying thickness, so neighbouring clusters
    merge into one another as in a UMAP of a continuum of cell states, not separate islands. Curve lengths grow
    with the square root of the number of clusters.
    """
    n_cells = len(cluster_of_cell)
    n_clusters = len(paths)
    start = np.zeros((n_clusters, 2))
    middle = np.zeros((n_clusters, 2))
    end = np.zeros((n_clusters, 2))
    t0 = np.zeros(n_clusters)
    t1 = np.zeros(n_clusters)
    swell = np.zeros((n_clusters, 2))  # thickness profile of the cluster's branch: phase, amplitude

    tops = list(dict.fromkeys(p[0] for p in paths))
    turn = rng.uniform(0, 2 * np.pi)
    for i_top, top in enumerate(tops):
        out = turn + 2 * np.pi * i_top / len(tops)
        anchor = top_radius * _unit(out)
        classes = list(dict.fromkeys(p[1] for p in paths if p[0] == top))
        for i_cls, cls in enumerate(classes):
            fan = (i_cls - (len(classes) - 1) / 2) * min(0.8, 2.6 / max(len(classes), 1))
            heading = out + fan + rng.normal(0, 0.08)
            rows_cls = [k for k, p in enumerate(paths) if p[0] == top and p[1] == cls]
            trunk_len = length * np.sqrt(len(rows_cls)) * 0.8
            base = anchor + 1.6 * _unit(heading)
            trunk = (base, base + 0.5 * trunk_len * _unit(heading + rng.normal(0, 0.35)),
                     base + trunk_len * _unit(heading + rng.normal(0, 0.25)))
            subclasses = list(dict.fromkeys(paths[k][2] for k in rows_cls))
            for i_sub, sub in enumerate(subclasses):
                rows = [k for k in rows_cls if paths[k][2] == sub]
                if i_sub == 0:
                    p0, p1, p2 = trunk
                else:
                    at = i_sub / len(subclasses)
                    point, normal = _bezier(*trunk, np.array([at]))
                    side = 1 if i_sub % 2 else -1
                    direction = trunk[2] - trunk[0]
                    angle = np.arctan2(direction[1], direction[0]) + side * rng.uniform(0.6, 1.1)
                    sub_len = length * np.sqrt(len(rows)) * 0.9
                    p0 = point[0]
                    p1 = p0 + 0.5 * sub_len * _unit(angle + rng.normal(0, 0.3))
                    p2 = p0 + sub_len * _unit(angle + rng.normal(0, 0.3))
                for j, k in enumerate(rows):
                    start[k], middle[k], end[k] = p0, p1, p2
                    t0[k], t1[k] = j / len(rows), (j + 1) / len(rows)
                    swell[k] = (rng.uniform(0, 2 * np.pi), rng.uniform(0.2, 0.6))

    c = np.asarray(cluster_of_cell)
    span = t1[c] - t0[c]
    # spread beyond the cluster's own stretch so that neighbours blend
    t = np.clip(t0[c] + span * (rng.random(n_cells) + 0.35 * rng.standard_normal(n_cells)), 0.0, 1.0)
    point = np.empty((n_cells, 2))
    normal = np.empty((n_cells, 2))
    for k in np.unique(c):
        idx = np.flatnonzero(c == k)
        point[idx], normal[idx] = _bezier(start[k], middle[k], end[k], t[idx])
    thickness = width * (1.0 + swell[c, 1] * np.sin(2 * np.pi * t * 1.5 + swell[c, 0]))
    offset = rng.standard_normal(n_cells) * thickness
    return point + normal * offset[:, None]
