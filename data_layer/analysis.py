"""Analyses of a set of cells: selection geometry, composition, linked clusters, marker genes, CSV export.

Plain numpy / pandas in and out (no Dash): the viewer's callbacks, the HTTP API and a notebook call the same
functions.

* **Selections** (:class:`Selection`, and :mod:`data_layer.geometry`): a box or lasso becomes a boolean mask
  over cells. Lasso tests use shapely's vectorised ``contains_xy`` on a prepared polygon after a
  bounding-box prefilter: at 1 M cells and a 200-vertex concave lasso it takes ~70 ms against ~230 ms for
  ``matplotlib.path.Path.contains_points`` on the same prefiltered cells (610 ms without the prefilter). A
  self-intersecting lasso is made valid first (GEOS ``make_valid``: the parts a hand-drawn loop encloses an
  odd number of times, the even-odd rule Plotly itself uses to mark the selected points).
* **Composition** (:func:`composition`) counts a taxonomy level's Categorical codes with ``np.bincount``.
* **Linking views** (:func:`clusters_of`, :func:`cells_of_terms`): a selection in one view becomes the clusters
  it holds, which become a mask in another view (the UMAP's 10X cells and a section's cells share the taxonomy,
  not the cells).
* **Group statistics** (:func:`scan_groups`): one compiled pass over the gene-major store gives, per gene and
  group of cells, the sum of the values, of their squares and the number of cells expressing it (reading only
  the groups' row range of each gene; zeros are not stored, so they count in a group's cells but add nothing
  to its sums). No dense cells x genes matrix is built. :func:`welch_t_test` turns two groups' sums into
  Welch's t and p (``scipy.stats.ttest_ind(equal_var=False)``), :func:`adjust_bh` into Benjamini-Hochberg
  adjusted p (``scipy.stats.false_discovery_control``).
* **A versus B** (:func:`compare_groups`): two terms, a selection and a term, or one term in two species'
  datasets, ranked by mean difference with fractions expressing and the tests; :func:`compare_groups_csv`.
* **Marker genes**: :func:`markers_for_term` (the term against the rest of its dataset) and
  :func:`markers_for_selection` (against the rest of its scope) are the same scan with the same tests;
  ``markers_for_term(tests=False)`` reads only the store's per-cluster statistics (a few ms);
  :func:`dot_plot_table` gives the long table of a dot plot.
* **Export** (:func:`export_cells_csv`).
"""
from __future__ import annotations

import io
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import pandas as pd

from .geometry import cells_in_box, cells_in_polygon  # noqa: F401  (part of this module's API)
from .tables import ADJACENT, UNASSIGNED

log = logging.getLogger(__name__)

#: Colour given to a term when no colour table is passed to :func:`composition`.
FALLBACK_COLOR = "#9e9e9e"
#: Columns of the marker tables.
MARKER_COLUMNS = ["gene_symbol", "gene_identifier", "mean_in", "mean_out", "frac_in", "frac_out", "diff", "t", "p",
                  "p_adj"]
_NOT_TERMS = (ADJACENT, UNASSIGNED)


# ============================================================================================== selections
@dataclass(frozen=True)
class Selection:
    """A box or lasso in data coordinates; JSON-able with :meth:`to_dict` for a ``dcc.Store``.

    Attributes
    ----------
    kind : {"box", "lasso"}
    xs, ys : tuple of float
        box: ``(x0, x1)`` and ``(y0, y1)`` sorted ascending; lasso: the vertices.
    """

    kind: str
    xs: tuple[float, ...]
    ys: tuple[float, ...]

    def __post_init__(self):
        if self.kind not in ("box", "lasso"):
            raise ValueError(f"Selection.kind={self.kind!r} must be 'box' or 'lasso'")
        if len(self.xs) != len(self.ys):
            raise ValueError(f"Selection has {len(self.xs)} x values but {len(self.ys)} y values")
        if self.kind == "box" and len(self.xs) != 2:
            raise ValueError(f"a box selection needs two x and two y values, got {len(self.xs)}")
        if not all(math.isfinite(v) for v in (*self.xs, *self.ys)):
            raise ValueError("a selection coordinate is not a finite number")

    def mask(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``(n,)`` bool mask of the cells at ``(x, y)`` inside the selection."""
        if self.kind == "box":
            return cells_in_box(x, y, self.xs[0], self.xs[1], self.ys[0], self.ys[1])
        return cells_in_polygon(x, y, (self.xs, self.ys))

    def bounds(self) -> tuple[float, float, float, float]:
        """``(x_min, x_max, y_min, y_max)`` of the selection."""
        return min(self.xs), max(self.xs), min(self.ys), max(self.ys)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "xs": list(self.xs), "ys": list(self.ys)}

    @classmethod
    def from_dict(cls, data: Mapping) -> "Selection":
        """Inverse of :meth:`to_dict`; ``ValueError`` naming what is wrong."""
        try:
            return cls.make(str(data["kind"]), data["xs"], data["ys"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a selection dict ({exc!r}): {str(dict(data))[:200]}") from None

    @classmethod
    def make(cls, kind: str, xs: Iterable[float], ys: Iterable[float]) -> "Selection":
        xs = tuple(float(v) for v in xs)
        ys = tuple(float(v) for v in ys)
        if kind == "box":
            xs, ys = tuple(sorted(xs)), tuple(sorted(ys))
        return cls(kind, xs, ys)


# ============================================================================================== composition
def _as_mask(mask, n: int, name: str = "mask") -> np.ndarray:
    """A bool mask of length n from None (all), a bool array or integer row positions."""
    if mask is None:
        return np.ones(n, dtype=bool)
    arr = np.asarray(mask)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise ValueError(f"{name} has shape {arr.shape}; expected one bool per cell ({n},)")
        return arr
    if arr.size == 0:
        return np.zeros(n, dtype=bool)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be a bool mask or integer row positions, got dtype {arr.dtype}")
    arr = arr.ravel()
    if arr.min() < 0 or arr.max() >= n:
        raise ValueError(f"{name}: row positions must lie in 0..{n - 1}, got {int(arr.min())}..{int(arr.max())}")
    out = np.zeros(n, dtype=bool)
    out[arr] = True
    return out


def _categorical(cells_df: pd.DataFrame, level: str) -> pd.Categorical:
    if level not in cells_df.columns:
        for col in cells_df.columns:
            if str(col).lower() == str(level).lower():
                level = col
                break
        else:
            raise KeyError(f"the cell table has no column {level!r}; it has: {', '.join(map(str, cells_df.columns))}")
    col = cells_df[level]
    if not isinstance(col.dtype, pd.CategoricalDtype):
        raise ValueError(f"column {level!r} is {col.dtype}, not a Categorical taxonomy level")
    return col.array


def _counts(cat: pd.Categorical, mask: np.ndarray) -> np.ndarray:
    codes = np.asarray(cat.codes)[mask]
    return np.bincount(codes[codes >= 0], minlength=len(cat.categories)).astype(np.int64)


def column_summary(values: np.ndarray, mask=None) -> dict:
    """A numeric cell column (``atlas.values(...)``) over a selection: the mean and median of the selected cells
    with a value, how many have one and how many have none (NaN).

    Parameters
    ----------
    values : numpy.ndarray
        ``(n,)`` int or float values aligned with the cells.
    mask : numpy.ndarray, optional
        ``(n,)`` bool mask or integer row positions of the selected cells; None = all cells.

    Returns
    -------
    dict
        ``n_cells`` (selected), ``n_measured``, ``n_missing`` (int), ``mean``, ``median`` (float64 over the
        measured cells, NaN when none is), ``min``, ``max`` (likewise).
    """
    values = np.asarray(values)
    chosen = values[_as_mask(mask, len(values))].astype(np.float64)
    measured = chosen[np.isfinite(chosen)]
    some = len(measured) > 0
    return {"n_cells": int(len(chosen)), "n_measured": int(len(measured)),
            "n_missing": int(len(chosen) - len(measured)),
            "mean": float(np.mean(measured)) if some else float("nan"),
            "median": float(np.median(measured)) if some else float("nan"),
            "min": float(np.min(measured)) if some else float("nan"),
            "max": float(np.max(measured)) if some else float("nan")}


def composition(cells_df: pd.DataFrame, level: str, mask=None,
                colors: Sequence[str] | Mapping[str, str] | None = None) -> pd.DataFrame:
    """Cells of a selection per term of a taxonomy level (or any categorical column, e.g. ``region``).

    Parameters
    ----------
    cells_df : DataFrame
        ``atlas.cells(...)``: the level is a Categorical column.
    level : str
        Column name (any case).
    mask : numpy.ndarray, optional
        ``(n,)`` bool mask or integer row positions of the selected cells; None = all cells.
    colors : sequence or mapping, optional
        ``atlas.colors(dataset, level)`` (aligned with the categories) or ``{term: colour}``; missing ->
        :data:`FALLBACK_COLOR`.

    Returns
    -------
    DataFrame
        ``term`` (str), ``n_cells`` (int64), ``fraction`` (float64, of the selected cells), ``color`` (str);
        terms with cells only, by count descending (ties in taxonomy order). ``Adjacent``/``unassigned``
        cells are included as their own rows.
    """
    cat = _categorical(cells_df, level)
    counts = _counts(cat, _as_mask(mask, len(cells_df)))
    names = np.asarray(cat.categories, dtype=object)
    if colors is None:
        table = np.full(len(names), FALLBACK_COLOR, dtype=object)
    elif isinstance(colors, Mapping):
        table = np.array([colors.get(t, FALLBACK_COLOR) for t in names], dtype=object)
    else:
        colors = list(colors)
        if len(colors) != len(names):
            raise ValueError(f"{len(colors)} colours given for the {len(names)} categories of {level!r}")
        table = np.asarray(colors, dtype=object)
    present = np.flatnonzero(counts)
    order = present[np.argsort(-counts[present], kind="stable")]
    total = counts.sum()
    return pd.DataFrame({"term": names[order].astype(str), "n_cells": counts[order],
                         "fraction": counts[order] / total if total else np.zeros(len(order)),
                         "color": table[order]})


def _finest_level(cells_df: pd.DataFrame) -> str:
    for col in cells_df.columns:
        if str(col).lower() == "cluster" and isinstance(cells_df[col].dtype, pd.CategoricalDtype):
            return col
    raise KeyError("the cell table has no 'cluster' column; pass level= (the finest taxonomy level)")


def clusters_of(cells_df: pd.DataFrame, mask, *, level: str | None = None, min_fraction: float = 0.0,
                min_cells: int = 1, include_unassigned: bool = False) -> pd.DataFrame:
    """The clusters (or terms of ``level``) present in a selection, to highlight them in another view.

    Parameters
    ----------
    cells_df : DataFrame
        ``atlas.cells(...)``.
    mask : numpy.ndarray
        ``(n,)`` bool mask or integer row positions of the selected cells.
    level : str, optional
        Default: the ``cluster`` column (any case), the finest level of both taxonomies.
    min_fraction : float
        Keep terms holding at least this share of the selected cells (0.01 drops a stray cell's cluster in
        a large lasso).
    min_cells : int
        Keep terms with at least this many selected cells.
    include_unassigned : bool
        Keep ``Adjacent`` / ``unassigned`` (not taxonomy terms, so they link nothing by default).

    Returns
    -------
    DataFrame
        ``term`` (str), ``n_cells`` (int64), ``fraction`` (float64, of the selected cells), count descending.
    """
    level = _finest_level(cells_df) if level is None else level
    table = composition(cells_df, level, mask)[["term", "n_cells", "fraction"]]
    keep = (table["n_cells"] >= max(1, int(min_cells))) & (table["fraction"] >= float(min_fraction))
    if not include_unassigned:
        keep &= ~table["term"].isin(_NOT_TERMS)
    return table[keep].reset_index(drop=True)


def cells_of_terms(cells_df: pd.DataFrame, level: str, terms: Iterable[str]) -> np.ndarray:
    """``(n,)`` bool mask of the cells whose term at ``level`` is one of ``terms`` (names; unknown names match
    nothing). Use it to carry :func:`clusters_of` of one view to another."""
    cat = _categorical(cells_df, level)
    wanted = pd.Index(cat.categories).get_indexer(list(terms))
    by_code = np.zeros(len(cat.categories) + 1, dtype=bool)  # last entry: code -1
    by_code[wanted[wanted >= 0]] = True
    return by_code[np.asarray(cat.codes)]


# ============================================================================================== markers: terms
def _empty_markers() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object if c.startswith("gene") else np.float64) for c in MARKER_COLUMNS})


def _rank(symbols, identifiers, m_in, m_out, f_in, f_out, n: int | None, min_frac_in: float,
          tests: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> pd.DataFrame:
    """Rank genes by ``diff = m_in - m_out``; ``tests`` = ``(t, p, p_adj)`` per gene (else NaN columns)."""
    diff = m_in - m_out
    if tests is None:
        tests = (np.full(len(diff), np.nan),) * 3
    keep = np.flatnonzero(np.isfinite(diff) & (f_in >= min_frac_in))
    # np.lexsort: last key is primary -> diff descending, then fraction in descending, then gene order.
    order = keep[np.lexsort((keep, -f_in[keep], -diff[keep]))]
    if n is not None:
        order = order[: max(0, int(n))]
    return pd.DataFrame({
        "gene_symbol": np.asarray(symbols, dtype=object)[order],
        "gene_identifier": np.asarray(identifiers, dtype=object)[order],
        "mean_in": m_in[order], "mean_out": m_out[order], "frac_in": f_in[order], "frac_out": f_out[order],
        "diff": diff[order], "t": tests[0][order], "p": tests[1][order], "p_adj": tests[2][order]})[MARKER_COLUMNS]


def _term_weights(atlas: Any, dataset: str, level: str, terms: Sequence[str]) -> tuple[np.ndarray, object]:
    """``(n_terms, n_clusters)`` float64 weights (cells with expression of each cluster in each term)."""
    stats = atlas.cluster_stats(dataset)
    tax = atlas.taxonomy(dataset)
    n = np.asarray(stats.n_cells, dtype=np.float64)
    weights = np.zeros((len(terms), len(n)), dtype=np.float64)
    for i, term in enumerate(terms):
        codes = tax.cluster_codes(level, term)
        codes = codes[codes < len(n)]
        weights[i, codes] = n[codes]
    return weights, stats


def _weighted(weights: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Weighted means of cluster rows; NaN rows (clusters without cells) carry zero weight."""
    table = np.nan_to_num(np.asarray(table, dtype=np.float64))
    total = weights.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (weights @ table) / total, np.nan)


def _term_name(atlas: Any, dataset: str, level: str, term: str) -> str:
    """The name of a term given by name or label at ``level``."""
    if term in atlas.categories(dataset, level):
        return term
    table = atlas.taxonomy(dataset).terms(level)
    match = table.loc[table["label"].astype(str) == str(term), "name"]
    if match.empty:
        raise KeyError(f"no {level} term {term!r} in {dataset}")
    return str(match.iloc[0])


def markers_for_term(atlas: Any, dataset: str, level: str, term: str, n: int | None = 10, *,
                     min_frac_in: float = 0.0, tests: bool = True) -> pd.DataFrame:
    """Marker genes of a taxonomy term against every other cell of the dataset.

    ``mean_in`` is the mean log2 expression over the term's cells with expression, ``mean_out`` the same over
    the cells of every other term of the level (not Adjacent or unassigned cells); ``frac_*`` the fraction of cells with a value > 0. Genes are ranked by
    ``diff = mean_in - mean_out`` (descending), ties by ``frac_in``. With ``tests`` the numbers come from one
    scan of the gene-major store (:func:`scan_groups`) with Welch's t, p and the Benjamini-Hochberg ``p_adj``
    over all genes; without, from the store's per-cluster statistics alone (no cell read, a few ms; the same
    means and fractions, NaN tests).

    Parameters
    ----------
    level, term : str
        A taxonomy level and a term name or label at that level.
    n : int or None
        Number of genes returned (None = all).
    min_frac_in : float
        Drop genes expressed in fewer of the term's cells.
    tests : bool
        Compute Welch's t-test (a scan of the store) or only the per-cluster means.

    Returns
    -------
    DataFrame
        :data:`MARKER_COLUMNS`: ``gene_symbol, gene_identifier`` (str), ``mean_in, mean_out, frac_in, frac_out,
        diff, t, p, p_adj`` (float64). Empty when the term has no cells with expression in the dataset.

    Raises
    ------
    KeyError
        unknown dataset, level or term (message with close matches).
    """
    weights, stats = _term_weights(atlas, dataset, level, [term])
    if not len(stats.gene_identifiers) or weights.sum() == 0:
        log.info("%s: no cells with expression in %s %s; no markers", dataset, level, term)
        return _empty_markers()
    if tests:
        name = _term_name(atlas, dataset, level, term)
        others = [t for t in atlas.categories(dataset, level) if t != name and t not in _NOT_TERMS]
        inside, rest = group_pair_sums(atlas, term_group(atlas, dataset, level, [name]),
                                       term_group(atlas, dataset, level, others))
        return _tested(atlas, dataset, inside, rest, n, min_frac_in)
    n_cells = np.asarray(stats.n_cells, dtype=np.float64)
    rest = np.where(weights[0] > 0, 0.0, n_cells)[None, :]
    both = np.vstack([weights, rest])
    mean = _weighted(both, stats.mean)
    frac = _weighted(both, stats.fraction)
    if not np.isfinite(mean[1]).any():
        mean[1] = 0.0
        frac[1] = 0.0
    return _rank(stats.gene_symbols, stats.gene_identifiers, mean[0], mean[1], frac[0], frac[1], n, min_frac_in)


def dot_plot_table(atlas: Any, dataset: str, level: str, terms: Sequence[str],
                   genes: Sequence[str]) -> pd.DataFrame:
    """Long table for a dot plot of terms x genes from the per-cluster statistics.

    Parameters
    ----------
    terms : sequence of str
        Term names (or labels) at ``level``, in the rows' order.
    genes : sequence of str
        Gene symbols (any case) or identifiers, in the columns' order.

    Returns
    -------
    DataFrame
        One row per (term, gene), terms outer, genes inner: ``term`` (str, as given), ``gene`` (str, symbol),
        ``gene_identifier``, ``mean`` (float64 mean log2 over the term's cells with expression), ``fraction``
        (float64, share of them with a value > 0), ``n_cells`` (int64 cells with expression; mean and fraction
        are NaN where 0).

    Raises
    ------
    KeyError
        an unknown term or gene (message with close matches).
    """
    terms = list(terms)
    gm = atlas.expression_matrix(dataset)
    cols = np.array([gm.resolve(g, dataset) for g in genes], dtype=np.int64)
    weights, stats = _term_weights(atlas, dataset, level, terms)
    mean = np.full((len(terms), len(cols)), np.nan)
    frac = np.full((len(terms), len(cols)), np.nan)
    if len(cols) and len(terms) and np.asarray(stats.mean).shape[1]:
        mean = _weighted(weights, np.asarray(stats.mean)[:, cols])
        frac = _weighted(weights, np.asarray(stats.fraction)[:, cols])
    n_cells = weights.sum(axis=1).astype(np.int64)
    return pd.DataFrame({
        "term": np.repeat(np.asarray(terms, dtype=object), len(cols)),
        "gene": np.tile(np.asarray(gm.gene_symbols, dtype=object)[cols], len(terms)),
        "gene_identifier": np.tile(np.asarray(gm.gene_identifiers, dtype=object)[cols], len(terms)),
        "mean": mean.ravel(), "fraction": frac.ravel(), "n_cells": np.repeat(n_cells, len(cols)),
    })


# ============================================================================================== group statistics
#: Entries decoded at once by a scan of the gene-major store (about 12 bytes each).
SCAN_BATCH_ENTRIES = 4 << 20
#: Columns of an A-versus-B table (:func:`compare_groups`) and of its CSV.
DE_COLUMNS = ["gene", "mean_A", "mean_B", "frac_A", "frac_B", "mean_diff", "t", "p", "p_adj"]


@numba.njit(nogil=True, cache=True)
def _scan_f32(indptr, indices, data, genes, s0, s1, r0, codes, out):  # pragma: no cover - compiled
    """The group scan over a gene-major store of float32 values.

    For each gene ``genes[k]``, over its stored rows in ``[s0, s1)``: ``out[k, c] += (value, value², value > 0)``
    where ``c = codes[row - r0]`` for rows in the codes' window and ``c = 0`` outside it. Zeros are not stored, so
    they add nothing to a sum (the caller counts the group's cells). A module-level function without closure
    variables, so numba's on-disk cache finds it again in the next process."""
    n_window = codes.shape[0]
    acc = np.zeros((out.shape[1], 3))  # one gene's sums, contiguous and small (L1)
    for k in range(genes.shape[0]):
        g = genes[k]
        a = indptr[g]
        b = indptr[g + 1]
        seg = indices[a:b]
        lo = a + np.searchsorted(seg, s0)
        hi = a + np.searchsorted(seg, s1)
        acc[:] = 0.0
        for j in range(lo, hi):
            v = np.float64(data[j])
            if v != v:  # NaN stored value: not counted
                continue
            idx = indices[j] - r0
            c = 0
            if 0 <= idx < n_window:  # rows are sorted: this branch is predictable
                c = codes[idx]
            acc[c, 0] += v
            acc[c, 1] += v * v
            acc[c, 2] += v > 0
        out[k] += acc


def warm_up() -> None:
    """Load (or compile, the first time on a machine) the scan kernel for the arrays :meth:`GeneMatrix.csc`
    gives, so the first selection of a server worker does not pay ~1 s for it."""
    indptr = np.array([0, 1], dtype=np.int64)
    rows = np.zeros(1, dtype=np.int64)
    genes = np.zeros(1, dtype=np.int64)
    codes = np.ones(1, dtype=np.uint8)
    out = np.zeros((1, 2, 3))
    _scan_f32(indptr, rows, np.zeros(1, dtype=np.float32), genes, 0, 1, 0, codes, out)


@dataclass(frozen=True)
class GroupSums:
    """Per-gene sums over a group of cells, the sufficient statistics of the means, fractions and t-tests.

    Attributes
    ----------
    dataset : str
    genes : ndarray of int64, shape (g,)
        gene columns of the dataset's expression matrix.
    n : int
        cells of the group with an expression row (a cell without one counts nowhere).
    total, squares, expressing : ndarray of float64, shape (g,)
        sum of the values, sum of their squares, and number of cells with a value > 0.
    """

    dataset: str
    genes: np.ndarray
    n: int
    total: np.ndarray
    squares: np.ndarray
    expressing: np.ndarray

    @property
    def mean(self) -> np.ndarray:
        """Mean log2 over the group's cells (zeros included); NaN for an empty group."""
        return self.total / self.n if self.n else np.full(len(self.genes), np.nan)

    @property
    def fraction(self) -> np.ndarray:
        """Share of the group's cells with a value > 0; NaN for an empty group."""
        return self.expressing / self.n if self.n else np.full(len(self.genes), np.nan)

    def __add__(self, other: "GroupSums") -> "GroupSums":
        return GroupSums(self.dataset, self.genes, self.n + other.n, self.total + other.total,
                         self.squares + other.squares, self.expressing + other.expressing)

    def __sub__(self, other: "GroupSums") -> "GroupSums":
        return GroupSums(self.dataset, self.genes, self.n - other.n, self.total - other.total,
                         self.squares - other.squares, self.expressing - other.expressing)


def _columns_of(gm, dataset: str, genes: Sequence[str] | None) -> np.ndarray:
    if genes is None:
        return np.arange(gm.n_genes, dtype=np.int64)
    return np.array([gm.resolve(g, dataset) for g in genes], dtype=np.int64)


def scan_groups(atlas: Any, dataset: str, codes: np.ndarray, *, start: int = 0, stop: int | None = None,
                window: int | None = None, n_groups: int | None = None,
                genes: Sequence[str] | None = None) -> list[GroupSums]:
    """Sums of every gene (or ``genes``) over groups of cells, in one pass over the gene-major store.

    Parameters
    ----------
    codes : ndarray of uint8
        The group of each store row ``window + i`` (default ``window = start``): 1..G; 0 = none of them.
    start, stop : int
        The store rows scanned (default: all); group 0 is every scanned row whose code is 0 or which lies
        outside the codes' window, so "the rest" of a selection comes with it.
    n_groups : int, optional
        G (default: the largest code).
    genes : sequence of str, optional
        Symbols or identifiers (default: every gene).

    Returns
    -------
    list of GroupSums
        Groups 0..G. Each gene's entries in ``[start, stop)`` are decoded in batches of about
        :data:`SCAN_BATCH_ENTRIES` (bounded memory) and walked once by a compiled kernel: no dense cells x genes
        matrix is built.
    """
    gm = atlas.expression_matrix(dataset)
    stop = gm.n_cells if stop is None else int(stop)
    start = int(start)
    window = start if window is None else int(window)
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    if window < start or window + len(codes) > stop:
        raise ValueError(f"the codes' rows {window}..{window + len(codes)} are outside the scanned rows "
                         f"{start}..{stop}")
    largest = int(codes.max()) if len(codes) else 0
    n_codes = (largest if n_groups is None else int(n_groups)) + 1
    if largest >= n_codes:  # the compiled kernel does not check its bounds
        raise ValueError(f"a code {largest} is above n_groups={n_groups}")
    cols = _columns_of(gm, dataset, genes)
    out = np.zeros((len(cols), n_codes, 3), dtype=np.float64)
    if len(cols) and int(gm.indptr[-1]) and stop > start:
        counts = np.diff(gm.indptr)[cols] * ((stop - start) / max(1, gm.n_cells))
        first = 0
        while first < len(cols):
            last = first + 1 + int(np.searchsorted(np.cumsum(counts[first + 1:]), SCAN_BATCH_ENTRIES))
            batch = cols[first:last]
            indptr, rows, values = gm.csc(batch, start, stop)
            _scan_f32(indptr, rows, values, np.arange(len(batch), dtype=np.int64), start, stop, window,
                      codes, out[first:last])
            first = last
    # cells with an expression row per group (one byte per scanned row, not per gene)
    has = np.asarray(gm.has_expression[start:stop])
    every = np.zeros(stop - start, dtype=np.uint8)
    every[window - start:window - start + len(codes)] = codes
    n = np.bincount(every[has], minlength=n_codes)
    return [GroupSums(dataset, cols, int(n[c]), out[:, c, 0], out[:, c, 1], out[:, c, 2]) for c in range(n_codes)]


def welch_t_test(a: GroupSums, b: GroupSums) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Welch's unequal-variance t-test of each gene between two groups, from their sums.

    ``t = (mean_a - mean_b) / sqrt(var_a / n_a + var_b / n_b)`` with sample variances (``ddof=1``), the
    Welch-Satterthwaite degrees of freedom, and the two-sided ``p = 2 * t.sf(|t|, df)``: what
    ``scipy.stats.ttest_ind(x, y, equal_var=False)`` gives on the groups' values (zeros included). NaN where a
    group has fewer than two cells or both have no variance and the same mean (both constant but different:
    ``t = ±inf``, ``p = 0``, as scipy).

    Returns
    -------
    (t, df, p) : ndarrays of float64, shape (g,)
    """
    from scipy import stats

    g = len(a.genes)
    if a.n < 2 or b.n < 2:
        nan = np.full(g, np.nan)
        return nan, nan.copy(), nan.copy()
    with np.errstate(invalid="ignore", divide="ignore"):
        var_a = np.maximum(a.squares - a.total * a.total / a.n, 0.0) / (a.n - 1)
        var_b = np.maximum(b.squares - b.total * b.total / b.n, 0.0) / (b.n - 1)
        se_a, se_b = var_a / a.n, var_b / b.n
        se = se_a + se_b
        t = (a.mean - b.mean) / np.sqrt(se)
        df = se * se / (se_a * se_a / (a.n - 1) + se_b * se_b / (b.n - 1))
        df = np.where(np.isnan(df), 1.0, df)  # both groups constant: scipy's convention (t is then ±inf or NaN)
        p = 2.0 * stats.t.sf(np.abs(t), df)
    return t, df, p


def adjust_bh(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (``scipy.stats.false_discovery_control``) over the genes tested,
    i.e. the finite ``p``; NaN stays NaN."""
    from scipy import stats

    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    tested = np.isfinite(p)
    if tested.any():
        out[tested] = stats.false_discovery_control(p[tested], method="bh")
    return out


# ============================================================================================== two groups
@dataclass(frozen=True)
class CellGroup:
    """Cells of one dataset: ``mask`` over the store rows ``start .. start + len(mask)``, named ``label``."""

    dataset: str
    mask: np.ndarray
    start: int = 0
    label: str = ""

    @property
    def n(self) -> int:
        """Cells in the group (with or without an expression row)."""
        return int(np.count_nonzero(self.mask))


def term_group(atlas: Any, dataset: str, level: str, terms: str | Sequence[str], label: str | None = None
               ) -> CellGroup:
    """The cells of a dataset whose term at ``level`` is ``terms`` (a name or several); ``KeyError`` naming an
    unknown level or term."""
    terms = [terms] if isinstance(terms, str) else list(terms)
    names = atlas.categories(dataset, level)
    index = pd.Index(names)
    wanted = index.get_indexer(terms)
    if (wanted < 0).any():
        unknown = [t for t, w in zip(terms, wanted) if w < 0]
        raise KeyError(f"no {level} term {unknown[0]!r} in {dataset}")
    codes = np.asarray(atlas.codes(dataset, level))
    return CellGroup(dataset, np.isin(codes, wanted), 0, label or ", ".join(terms))


def rows_group(atlas: Any, dataset: str, rows, *, section: str | None = None, slab_plane: str | None = None,
               embedding: str | None = None, label: str = "Selection") -> CellGroup:
    """A selection: ``rows`` (bool mask or positions) of ``atlas.cells(dataset, section, slab_plane, embedding)``
    (``embedding``: the cells of a neighborhood's UMAP, one row range of the store)."""
    a, b = atlas.row_range(dataset, section, slab_plane, embedding)
    return CellGroup(dataset, _as_mask(rows, b - a, "rows"), a, label)


def _bounds(group: CellGroup) -> tuple[int, int]:
    picked = np.flatnonzero(group.mask)
    if not picked.size:
        return group.start, group.start
    return group.start + int(picked[0]), group.start + int(picked[-1]) + 1


def _group_codes(groups: Sequence[CellGroup]) -> tuple[np.ndarray, int]:
    """``(codes, window)``: bit ``1 << i`` set for the cells of ``groups[i]`` over the rows they span."""
    bounds = [_bounds(g) for g in groups if g.n]
    lo = min((b[0] for b in bounds), default=0)
    hi = max((b[1] for b in bounds), default=0)
    codes = np.zeros(hi - lo, dtype=np.uint8)
    for bit, group in enumerate(groups):
        b0, b1 = _bounds(group)
        if b1 > b0:
            part = group.mask[b0 - group.start:b1 - group.start]
            codes[b0 - lo:b1 - lo] |= part.astype(np.uint8) << bit
    return codes, lo


def group_sums(atlas: Any, group: CellGroup, genes: Sequence[str] | None = None) -> GroupSums:
    """Sums of every gene (or ``genes``: symbols or identifiers of the group's dataset) over one group's cells,
    scanning only the rows the group spans."""
    codes, window = _group_codes([group])
    return scan_groups(atlas, group.dataset, codes, start=window, stop=window + len(codes), n_groups=1,
                       genes=genes)[1]


def group_pair_sums(atlas: Any, a: CellGroup, b: CellGroup, genes: Sequence[str] | None = None
                    ) -> tuple[GroupSums, GroupSums]:
    """Sums of two groups over the same genes: one scan when they share a dataset (a cell in both counts in
    both), else one per dataset over the genes both measure (matched by symbol, in ``a``'s order)."""
    if a.dataset == b.dataset:
        codes, window = _group_codes([a, b])
        sums = scan_groups(atlas, a.dataset, codes, start=window, stop=window + len(codes), n_groups=3, genes=genes)
        return sums[1] + sums[3], sums[2] + sums[3]
    gm_a, gm_b = atlas.expression_matrix(a.dataset), atlas.expression_matrix(b.dataset)
    cols_a = _columns_of(gm_a, a.dataset, genes)
    in_b = {str(s).lower(): i for i, s in reversed(list(enumerate(gm_b.gene_symbols)))}
    pairs = [(int(c), in_b[str(gm_a.gene_symbols[c]).lower()]) for c in cols_a
             if str(gm_a.gene_symbols[c]).lower() in in_b]
    genes_a = [str(gm_a.gene_identifiers[c]) for c, _ in pairs]
    genes_b = [str(gm_b.gene_identifiers[c]) for _, c in pairs]
    return group_sums(atlas, a, genes_a), group_sums(atlas, b, genes_b)


def compare_groups(atlas: Any, a: CellGroup, b: CellGroup, *, genes: Sequence[str] | None = None) -> pd.DataFrame:
    """Differential expression of group A against group B (two terms, a selection and a term, or one term in
    two species' datasets), computed on the gene-major store without a dense cells x genes matrix.

    Per gene: mean log2 and fraction expressing (> 0) in each group over its cells with an expression row,
    ``mean_diff = mean_A - mean_B``, Welch's t and its two-sided p (:func:`welch_t_test`), and ``p_adj``,
    the Benjamini-Hochberg adjustment over the genes tested (:func:`adjust_bh`).

    Parameters
    ----------
    a, b : CellGroup
        :func:`term_group`, :func:`rows_group`. In one dataset a cell in both groups counts in both; across
        datasets the genes both measure are compared, matched by symbol.
    genes : sequence of str, optional
        Only these genes (symbols or identifiers of A's dataset).

    Returns
    -------
    DataFrame
        :data:`DE_COLUMNS` ranked by ``mean_diff`` descending (ties by ``frac_A``), so the genes highest in A come
        first and the genes highest in B last; ``gene`` is the symbol (A's). ``attrs``: ``n_A``, ``n_B`` (cells
        with expression), ``label_A``, ``label_B``, ``dataset_A``, ``dataset_B``. Empty when a group has no cell
        with expression.
    """
    sa, sb = group_pair_sums(atlas, a, b, genes)
    gm = atlas.expression_matrix(a.dataset)
    attrs = {"n_A": sa.n, "n_B": sb.n, "label_A": a.label, "label_B": b.label, "dataset_A": a.dataset,
             "dataset_B": b.dataset}
    if sa.n == 0 or sb.n == 0:
        table = pd.DataFrame({c: pd.Series(dtype=object if c == "gene" else np.float64) for c in DE_COLUMNS})
        table.attrs.update(attrs)
        return table
    t, _, p = welch_t_test(sa, sb)
    mean_a, mean_b, frac_a = sa.mean, sb.mean, sa.fraction
    diff = mean_a - mean_b
    order = np.lexsort((np.arange(len(diff)), -frac_a, -diff))
    table = pd.DataFrame({
        "gene": np.asarray(gm.gene_symbols, dtype=object)[sa.genes], "mean_A": mean_a, "mean_B": mean_b,
        "frac_A": frac_a, "frac_B": sb.fraction, "mean_diff": diff, "t": t, "p": p, "p_adj": adjust_bh(p),
    }).iloc[order].reset_index(drop=True)
    table.attrs.update(attrs)
    return table


def compare_groups_csv(table: pd.DataFrame, float_format: str = "%.6g") -> str:
    """An A-versus-B table (:func:`compare_groups`) as CSV text with the :data:`DE_COLUMNS` header; gene
    symbols made :func:`spreadsheet_safe_text`, empty fields for NaN."""
    buffer = io.StringIO()
    spreadsheet_safe(table[DE_COLUMNS]).to_csv(buffer, index=False, float_format=float_format, lineterminator="\n")
    return buffer.getvalue()


# ============================================================================================== markers: selections
@dataclass(frozen=True)
class SelectionStats:
    """Per-gene statistics of a selection and of the rest of its scope (the numbers behind
    :func:`markers_for_selection`).

    Attributes
    ----------
    genes : ndarray of int64, shape (g,)
        gene columns of the expression matrix.
    mean_in, mean_out, frac_in, frac_out : ndarray of float64, shape (g,)
        over the selected cells with expression and over the scope's other cells with expression.
    n_in, n_out : int
        cells with expression in the selection and in the rest of the scope.
    inside, rest : GroupSums
        the sums behind them (for :func:`welch_t_test`).
    """

    genes: np.ndarray
    mean_in: np.ndarray
    mean_out: np.ndarray
    frac_in: np.ndarray
    frac_out: np.ndarray
    n_in: int
    n_out: int
    inside: GroupSums
    rest: GroupSums


def selection_stats(atlas: Any, dataset: str, rows, *, section: str | None = None,
                    slab_plane: str | None = None, embedding: str | None = None, against: str = "scope",
                    genes: Sequence[str] | None = None) -> SelectionStats:
    """Mean and fraction expressing of every gene (or ``genes``) in a selection and in the rest.

    ``rows`` select cells of ``atlas.cells(dataset, section, slab_plane, embedding)`` (the *scope*; ``embedding``:
    a neighborhood's UMAP, whose rest is that neighborhood's other cells): an ``(n,)`` bool mask
    or integer positions. The rest is the scope's other cells (``against="scope"``) or the whole dataset's
    (``against="dataset"``). Cells without an expression row count in neither. One compiled pass over each
    gene's entries of the compared row range (:func:`scan_groups`); see :func:`markers_for_selection`.
    """
    if against not in ("scope", "dataset"):
        raise ValueError(f"against={against!r} must be 'scope' or 'dataset'")
    gm = atlas.expression_matrix(dataset)
    group = rows_group(atlas, dataset, rows, section=section, slab_plane=slab_plane, embedding=embedding)
    a, b = atlas.row_range(dataset, section, slab_plane, embedding)
    s0, s1 = (a, b) if against == "scope" else (0, gm.n_cells)
    codes, window = _group_codes([group])
    rest, inside = scan_groups(atlas, dataset, codes, start=s0, stop=s1, window=window if len(codes) else s0,
                               n_groups=1, genes=genes)
    return SelectionStats(inside.genes, inside.mean, rest.mean, inside.fraction, rest.fraction, inside.n, rest.n,
                          inside, rest)


def _tested(atlas: Any, dataset: str, inside: GroupSums, rest: GroupSums, n: int | None,
            min_frac_in: float) -> pd.DataFrame:
    """Ranked markers of ``inside`` against ``rest`` with Welch's t-test and BH-adjusted p over the genes."""
    if inside.n == 0:
        return _empty_markers()
    gm = atlas.expression_matrix(dataset)
    t, _, p = welch_t_test(inside, rest)
    mean_out = np.nan_to_num(rest.mean)
    frac_out = np.nan_to_num(rest.fraction)
    return _rank(gm.gene_symbols[inside.genes], gm.gene_identifiers[inside.genes], inside.mean, mean_out,
                 inside.fraction, frac_out, n, min_frac_in, (t, p, adjust_bh(p)))


def markers_for_selection(atlas: Any, dataset: str, rows, n: int | None = 10, *, section: str | None = None,
                          slab_plane: str | None = None, embedding: str | None = None, against: str = "scope",
                          genes: Sequence[str] | None = None, min_frac_in: float = 0.0) -> pd.DataFrame:
    """Marker genes of a selection, computed directly on the gene-major store.

    For every gene the compiled kernel walks the gene's entries inside the compared row range (binary search on
    its sorted cell indices, so a section's selection reads only that section's bytes of each gene) and sums
    values, their squares and counts values > 0 over the selected cells (a look-up of each row's group) and
    over the rest. Zeros are implicit, so means divide by the cells with expression. Welch's t, p and the
    Benjamini-Hochberg ``p_adj`` (over the genes scanned) come from the same sums.

    Parameters
    ----------
    rows : numpy.ndarray
        ``(n,)`` bool mask or integer positions in ``atlas.cells(dataset, section, slab_plane, embedding)``.
    n : int or None
        Number of genes returned (None = all, ranked).
    section, slab_plane, embedding : str, optional
        The scope ``rows`` refer to (default: the whole dataset; ``embedding``: a neighborhood UMAP's cells).
    against : {"scope", "dataset"}
        Compare with the scope's other cells or with every other cell of the dataset.
    genes : sequence of str, optional
        Only these genes (symbols or identifiers), e.g. a user's dot-plot columns.
    min_frac_in : float
        Drop genes expressed in fewer of the selected cells.

    Returns
    -------
    DataFrame
        :data:`MARKER_COLUMNS`, ranked by ``diff = mean_in - mean_out`` descending, ties by ``frac_in``. Empty
        when the selection has no cell with expression.
    """
    st = selection_stats(atlas, dataset, rows, section=section, slab_plane=slab_plane, embedding=embedding,
                         against=against, genes=genes)
    return _tested(atlas, dataset, st.inside, st.rest, n, min_frac_in)


def selection_dot_plot_table(atlas: Any, dataset: str, rows, genes: Sequence[str], *,
                             section: str | None = None, slab_plane: str | None = None,
                             embedding: str | None = None, against: str = "scope",
                             labels: tuple[str, str] = ("Selection", "Rest")) -> pd.DataFrame:
    """Dot-plot rows (same columns as :func:`dot_plot_table`) for a selection and the rest of its scope, to
    stack under a term dot plot."""
    st = selection_stats(atlas, dataset, rows, section=section, slab_plane=slab_plane, embedding=embedding,
                         against=against, genes=genes)
    gm = atlas.expression_matrix(dataset)
    k = len(st.genes)
    return pd.DataFrame({
        "term": np.repeat(np.asarray(labels, dtype=object), k),
        "gene": np.tile(gm.gene_symbols[st.genes], 2), "gene_identifier": np.tile(gm.gene_identifiers[st.genes], 2),
        "mean": np.concatenate([st.mean_in, st.mean_out]), "fraction": np.concatenate([st.frac_in, st.frac_out]),
        "n_cells": np.repeat(np.array([st.n_in, st.n_out], dtype=np.int64), k),
    })


# ============================================================================================== export
def export_cells_csv(cells_df: pd.DataFrame, gene_columns: Mapping[str, np.ndarray] | None = None, mask=None, *,
                     columns: Sequence[str] | None = None, float_format: str = "%.6g",
                     max_rows: int | None = None) -> str:
    """The selected cells as CSV text: labels, section, coordinates, taxonomy levels and the chosen genes.

    Parameters
    ----------
    cells_df : DataFrame
        ``atlas.cells(...)`` (all its columns are written unless ``columns`` is given).
    gene_columns : mapping, optional
        ``{gene symbol: (n,) float array aligned with cells_df}`` (``atlas.gene(...)``); written after the
        cell columns in the mapping's order, NaN as an empty field, each value as the shortest text that reads
        back as the same float32 (the release's value, e.g. ``9.4221``), whatever ``float_format``.
    mask : numpy.ndarray, optional
        ``(n,)`` bool mask or integer positions; None = every cell.
    columns : sequence of str, optional
        Cell columns to write, in this order.
    float_format : str
        printf format of the cell table's floats (coordinates in mm keep micrometres with 6 significant digits).
    max_rows : int, optional
        Refuse (``ValueError``) to write more rows, e.g. a server limit.

    Returns
    -------
    str
        CSV with a header line and one line per selected cell, in cell-table order.
    """
    n = len(cells_df)
    keep = _as_mask(mask, n)
    n_rows = int(np.count_nonzero(keep))
    if max_rows is not None and n_rows > max_rows:
        raise ValueError(f"the selection has {n_rows} cells; an export is limited to {max_rows}")
    cols = list(cells_df.columns) if columns is None else list(columns)
    missing = [c for c in cols if c not in cells_df.columns]
    if missing:
        raise KeyError(f"the cell table has no column(s) {', '.join(map(repr, missing))}")
    out = spreadsheet_safe(cells_df.loc[keep, cols].reset_index(drop=True))  # text cells; numbers stay numbers
    for name in cols:  # measurements of the release (umi_count, cell_area...): their exact values, not 6 digits
        if name not in ("x", "y") and cells_df[name].dtype == np.float64:
            out[spreadsheet_safe_text(str(name))] = _exact_text(out[spreadsheet_safe_text(str(name))].to_numpy())
    for name, values in (gene_columns or {}).items():
        values = np.asarray(values)
        if values.shape != (n,):
            raise ValueError(f"gene column {name!r} has shape {values.shape}; expected one value per cell ({n},)")
        column = spreadsheet_safe_text(str(name))
        if column in out.columns:
            raise ValueError(f"gene column {name!r} would overwrite the cell column of the same name")
        out[column] = _exact_text(values[keep])
    buffer = io.StringIO()
    out.to_csv(buffer, index=False, float_format=float_format, lineterminator="\n")
    return buffer.getvalue()


#: First characters that make a spreadsheet read a cell as a formula (OWASP, CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe_text(text: str) -> str:
    """``text`` with a leading ``'`` when it starts like a formula (``=``, ``+``, ``-``, ``@``, tab or CR), so a
    spreadsheet opening the CSV shows it as text and runs nothing (the OWASP recommendation)."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def spreadsheet_safe(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with every text cell and column name made :func:`spreadsheet_safe_text`; numbers (a negative
    coordinate) are left as they are."""
    out = table.rename(columns=lambda name: spreadsheet_safe_text(str(name)))
    for name in out.columns:
        column = out[name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            categories = [spreadsheet_safe_text(str(c)) for c in column.cat.categories]
            if len(set(categories)) < len(categories):  # "=x" and "'=x" both there: write them as text
                out[name] = column.astype(object).map(lambda v: spreadsheet_safe_text(str(v)) if isinstance(v, str)
                                                      else v)
            elif categories != [str(c) for c in column.cat.categories]:
                out[name] = column.cat.rename_categories(categories)
        elif column.dtype == object or pd.api.types.is_string_dtype(column.dtype):
            out[name] = column.map(lambda v: spreadsheet_safe_text(v) if isinstance(v, str) else v)
    return out


def _exact_text(values: np.ndarray) -> np.ndarray:
    """Gene values as text: float32 values in their shortest round-trip form, NaN as ''. object array."""
    values = np.asarray(values)
    if values.dtype.kind != "f":
        return values
    text = values.astype(np.float32 if values.dtype.itemsize <= 4 else values.dtype).astype(str).astype(object)
    text[np.isnan(values)] = ""
    return text
