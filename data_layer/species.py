"""One cell type across species: a taxonomy term's share of cells, its regions and its marker genes in each
species' cells.

The cells of one species are a dataset of sections of that species, or the cells of that species in a dataset
holding several (the aligned 10X set, by its ``species`` column): a :class:`SpeciesCells`. For a term at a level
the species share (one taxonomy, so one code per term in every dataset):

* :func:`term_share`: the term's cells and all cells of each species' cells;
* :func:`term_regions`: the term's cells per region (``region``, the sections' parcellation, or the 10X cells'
  dissected ``region_of_interest_label``);
* :func:`conserved_markers`: genes high in the term in every species (the term against the rest of each species'
  dataset of sections, from the store's per-cluster statistics, genes matched by symbol), ranked by their
  smallest mean difference;
* :func:`species_dot_plot`: mean and fraction expressing of genes (by symbol) in the term's cells of each
  species' cells, with Welch's t-test of the term against the rest of those cells and Benjamini-Hochberg
  adjusted p, from one scan of the gene-major store per dataset (:func:`data_layer.analysis.scan_groups`) that
  sums every term of the level in each species at once, kept per atlas: the next term of the same level costs
  no scan.
"""
from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .analysis import markers_for_term

#: Categorical cell columns that place a cell in a region, in order of preference.
REGION_COLUMNS = ("region", "region_of_interest_label")
#: The column of a dataset of several species naming each cell's species.
SPECIES_COLUMN = "species"
#: Species values that are not a species.
_NOT_SPECIES = ("unknown", "")


@dataclass(frozen=True)
class SpeciesCells:
    """The cells of one species in one dataset: the whole ``dataset`` (``species_value`` None) or its cells whose
    :data:`SPECIES_COLUMN` is ``species_value``."""

    dataset: str
    species: str
    platform: str
    species_value: str | None = None

    @property
    def label(self) -> str:
        """``Human · MERSCOPE``."""
        return f"{self.species} · {self.platform}"


def species_cells(atlas: Any, datasets: Sequence[str]) -> list[SpeciesCells]:
    """The species' cells of ``datasets``: a dataset of one species as it is, a dataset of several split by its
    :data:`SPECIES_COLUMN` (categories in their store order, ``unknown`` left out); others are skipped."""
    out = []
    for dataset in datasets:
        info = atlas.info(dataset)
        if info.species:
            out.append(SpeciesCells(dataset, info.species, info.platform))
        elif SPECIES_COLUMN in atlas.categorical_columns(dataset):
            codes = np.asarray(atlas.codes(dataset, SPECIES_COLUMN))
            present = np.bincount(codes[codes >= 0], minlength=len(atlas.categories(dataset, SPECIES_COLUMN)))
            for value, n in zip(atlas.categories(dataset, SPECIES_COLUMN), present):
                if n and value not in _NOT_SPECIES:
                    out.append(SpeciesCells(dataset, str(value), info.platform, str(value)))
    return out


def _species_mask(atlas: Any, part: SpeciesCells) -> np.ndarray | None:
    """Bool mask of the part's cells over its dataset's rows (None = every row)."""
    if part.species_value is None:
        return None
    codes = np.asarray(atlas.codes(part.dataset, SPECIES_COLUMN))
    return codes == atlas.categories(part.dataset, SPECIES_COLUMN).index(part.species_value)


def _term_mask(atlas: Any, part: SpeciesCells, level: str, term: str) -> np.ndarray:
    """Bool mask of the term's cells of the part over its dataset's rows; ``KeyError`` for an unknown term."""
    code = atlas.taxonomy(part.dataset).code(level, term)
    mask = np.asarray(atlas.codes(part.dataset, level)) == code
    species = _species_mask(atlas, part)
    return mask if species is None else mask & species


def term_share(atlas: Any, parts: Sequence[SpeciesCells], level: str, term: str) -> pd.DataFrame:
    """The term's share of each species' cells.

    Returns
    -------
    DataFrame
        One row per part: ``dataset, species, platform, label`` (str), ``n_term`` (int64, the term's cells),
        ``n_cells`` (int64, all cells of the species in the dataset, Adjacent and unassigned included), ``share``
        (float64 ``n_term / n_cells``; NaN without cells).
    """
    rows = []
    for part in parts:
        species = _species_mask(atlas, part)
        n_cells = atlas.info(part.dataset).n_cells if species is None else int(np.count_nonzero(species))
        n_term = int(np.count_nonzero(_term_mask(atlas, part, level, term)))
        rows.append({"dataset": part.dataset, "species": part.species, "platform": part.platform,
                     "label": part.label, "n_term": n_term, "n_cells": n_cells,
                     "share": n_term / n_cells if n_cells else np.nan})
    return pd.DataFrame(rows, columns=["dataset", "species", "platform", "label", "n_term", "n_cells", "share"]
                        ).astype({"n_term": np.int64, "n_cells": np.int64})


def region_column(atlas: Any, dataset: str) -> str | None:
    """The first of :data:`REGION_COLUMNS` the dataset has, or None."""
    columns = atlas.categorical_columns(dataset)
    return next((c for c in REGION_COLUMNS if c in columns), None)


def term_regions(atlas: Any, parts: Sequence[SpeciesCells], level: str, term: str) -> pd.DataFrame:
    """The term's cells per region in each species' cells.

    Returns
    -------
    DataFrame
        Long, parts outer and regions inner in the column's category order (regions holding none of the term's
        cells left out): ``label, dataset, species`` (str), ``column`` (the region column), ``region`` (str),
        ``n_cells`` (int64), ``fraction`` (float64, of the term's cells of that part), ``color`` (the release's
        region colour). Parts whose dataset has no region column have no row.
    """
    rows = []
    for part in parts:
        column = region_column(atlas, part.dataset)
        if column is None:
            continue
        mask = _term_mask(atlas, part, level, term)
        codes = np.asarray(atlas.codes(part.dataset, column))[mask]
        names = atlas.categories(part.dataset, column)
        colors = atlas.colors(part.dataset, column)
        counts = np.bincount(codes[codes >= 0], minlength=len(names))
        total = int(counts.sum())
        for name, color, n in zip(names, colors, counts):
            if n:
                rows.append({"label": part.label, "dataset": part.dataset, "species": part.species, "column": column,
                             "region": str(name), "n_cells": int(n), "fraction": n / total, "color": color})
    return pd.DataFrame(rows, columns=["label", "dataset", "species", "column", "region", "n_cells", "fraction",
                                       "color"]).astype({"n_cells": np.int64})


def conserved_markers(atlas: Any, parts: Sequence[SpeciesCells], level: str, term: str, n: int = 8
                      ) -> pd.DataFrame:
    """Genes high in the term in every species.

    Each species' markers are the term against the rest of its dataset (:func:`data_layer.analysis.
    markers_for_term` without tests: the store's per-cluster statistics, a few ms), from the parts that are a
    whole dataset of one species (else, when there are none, from every dataset of the parts). Genes are matched
    by symbol (any case); a gene counts only where every one of those datasets measures it, and genes are ranked by
    their smallest ``diff`` (mean log2 in the term minus the rest) over the species, ties by symbol. A dataset
    without any cell of the term with expression is left out.

    Returns
    -------
    DataFrame
        Up to ``n`` rows: ``gene_symbol`` (str, as the first dataset spells it), ``min_diff`` (float64), then one
        ``diff:<label>`` column per dataset used (float64). Empty when no dataset has the term's cells with
        expression.
    """
    whole = [p for p in parts if p.species_value is None]
    used = whole or list({p.dataset: p for p in parts}.values())
    tables = []
    for part in used:
        if not atlas.info(part.dataset).n_genes:
            continue
        table = markers_for_term(atlas, part.dataset, level, term, n=None, tests=False)
        if table.empty:  # no cell of the term with expression in this species: it cannot vote
            continue
        keyed = table.assign(key=table["gene_symbol"].astype(str).str.lower()).drop_duplicates("key")
        tables.append((part.label if part.species_value is None else part.dataset, keyed.set_index("key")))
    if not tables:
        return pd.DataFrame({"gene_symbol": pd.Series(dtype=object), "min_diff": pd.Series(dtype=np.float64)})
    keys = tables[0][1].index
    for _, table in tables[1:]:
        keys = keys.intersection(table.index, sort=False)
    out = pd.DataFrame({"gene_symbol": tables[0][1].loc[keys, "gene_symbol"].to_numpy(dtype=object)})
    for label, table in tables:
        out[f"diff:{label}"] = table.loc[keys, "diff"].to_numpy(dtype=np.float64)
    out["min_diff"] = out[[c for c in out.columns if c.startswith("diff:")]].min(axis=1)
    out = out[np.isfinite(out["min_diff"])]
    out = out.sort_values(["min_diff", "gene_symbol"], ascending=[False, True], kind="stable").head(max(0, int(n)))
    return out[["gene_symbol", "min_diff"] + [c for c in out.columns if c.startswith("diff:")]].reset_index(drop=True)


#: Scans of (dataset, level, species' cells) kept per atlas by :func:`_level_sums`: at most this many, and at most
#: :data:`LEVEL_SUMS_MAX_BYTES` together (each is species x terms x genes x 3 float64: about 1 MB for a spatial
#: panel at Subclass, about 80 MB for the aligned 10X's 16,630 genes at Group; a larger one is not kept).
LEVEL_SUMS_KEPT = 8
LEVEL_SUMS_MAX_BYTES = 256 * 2**20
_level_sums_kept: "weakref.WeakKeyDictionary[Any, OrderedDict]" = weakref.WeakKeyDictionary()
_level_sums_lock = threading.Lock()


def _level_sums(atlas: Any, dataset: str, level: str, members: tuple[SpeciesCells, ...]) -> list[dict] | None:
    """Per species' cells of ``dataset`` (``members``, in order): the sums (:class:`~data_layer.analysis.GroupSums`)
    of every gene over each term of ``level`` (by term code), from ONE scan of the gene-major store, Adjacent and
    unassigned cells left out. None when the groups do not fit the scan's 255 codes (then each term is scanned
    alone). Kept per atlas (the last :data:`LEVEL_SUMS_KEPT` asked for, within :data:`LEVEL_SUMS_MAX_BYTES`)."""
    from .analysis import _NOT_TERMS, scan_groups

    key = (dataset, level, members)
    with _level_sums_lock:
        kept = _level_sums_kept.setdefault(atlas, OrderedDict())
        if key in kept:
            kept.move_to_end(key)
            return kept[key][0]
    names = atlas.categories(dataset, level)
    terms = [i for i, t in enumerate(names) if str(t) not in _NOT_TERMS]
    if not terms or len(members) * len(terms) > 255:
        return None
    compact = np.zeros(len(names) + 1, dtype=np.int64)  # term code -> 1..T (0: not a term; index -1: no code)
    compact[terms] = np.arange(1, len(terms) + 1)
    level_codes = np.asarray(atlas.codes(dataset, level))
    term_of_row = compact[level_codes]  # level codes of -1 land on the last entry, 0
    codes = np.zeros(len(level_codes), dtype=np.uint8)
    for k, part in enumerate(members):
        species = _species_mask(atlas, part)
        inside = term_of_row > 0 if species is None else (term_of_row > 0) & species
        codes[inside] = (k * len(terms) + term_of_row[inside]).astype(np.uint8)
    sums = scan_groups(atlas, dataset, codes, n_groups=len(members) * len(terms))
    out = [{code: sums[k * len(terms) + 1 + j] for j, code in enumerate(terms)} for k in range(len(members))]
    size = sum(g.total.nbytes + g.squares.nbytes + g.expressing.nbytes for groups in out for g in groups.values())
    if size > LEVEL_SUMS_MAX_BYTES:
        return out
    with _level_sums_lock:
        kept = _level_sums_kept.setdefault(atlas, OrderedDict())
        kept[key] = (out, size)
        while len(kept) > LEVEL_SUMS_KEPT or sum(n for _, n in kept.values()) > LEVEL_SUMS_MAX_BYTES:
            kept.popitem(last=False)
    return out


def _term_and_rest(atlas: Any, part: SpeciesCells, level: str, term: str, by_code: dict) -> tuple[Any, Any]:
    """The term's sums and the sums of every other term of the level in the part (from :func:`_level_sums`)."""
    code = atlas.taxonomy(part.dataset).code(level, term)  # KeyError for an unknown term
    term_sums = by_code.get(code)
    first = next(iter(by_code.values()))
    rest = first - first  # no cell
    for c, sums in by_code.items():
        if c != code:
            rest = rest + sums
    if term_sums is None:  # Adjacent or unassigned: not a term of the rest, and its cells counted apart
        from .analysis import scan_groups

        mask = _term_mask(atlas, part, level, term)
        term_sums = scan_groups(atlas, part.dataset, mask.astype(np.uint8), n_groups=1)[1]
    return term_sums, rest


def species_dot_plot(atlas: Any, parts: Sequence[SpeciesCells], level: str, term: str,
                     genes: Sequence[str], *, keep: bool = True) -> pd.DataFrame:
    """A dot plot of genes (by symbol) in the term's cells of each species' cells, one row per part, with each
    gene's test of the term against the rest of that species' cells.

    Per part the term's cells are compared with the cells of every other term of ``level`` of the same species
    in the same dataset (Adjacent and unassigned cells left out, as :func:`data_layer.analysis.markers_for_term`):
    Welch's t-test (:func:`data_layer.analysis.welch_t_test`) and the Benjamini-Hochberg ``p_adj``
    (:func:`data_layer.analysis.adjust_bh`) over every gene the part's dataset measures (the genes the markers
    were picked from), not only ``genes``. One scan of the gene-major store per dataset gives every term of the
    level in every part of it (:func:`data_layer.analysis.scan_groups`, no dense matrix), kept for the next term
    (:func:`_level_sums`); with ``keep=False`` a scan of the term alone (nothing kept).

    Returns
    -------
    DataFrame
        Parts outer, genes inner: ``label, dataset, species`` (str), ``gene`` (the symbol as given),
        ``gene_identifier`` (the part's dataset's identifier; "" where it does not measure the gene), ``mean``
        (float64 mean log2 over the term's cells with an expression row), ``fraction`` (of them with a value > 0),
        ``n_cells`` (int64, the term's cells with an expression row), ``mean_rest``, ``fraction_rest`` (float64,
        over the rest), ``n_rest`` (int64), ``mean_diff`` (``mean - mean_rest``), ``t``, ``p``, ``p_adj``
        (float64). Numbers are NaN where the dataset does not measure the gene or has no such cell (the tests
        also where a group has fewer than two cells).
    """
    from .analysis import _NOT_TERMS, adjust_bh, scan_groups, welch_t_test

    by_dataset: dict[str, list[int]] = {}
    for i, part in enumerate(parts):
        if atlas.info(part.dataset).n_genes:
            by_dataset.setdefault(part.dataset, []).append(i)
    found: dict[int, tuple[dict[str, int], Any, Any, np.ndarray, np.ndarray]] = {}
    for dataset, members in by_dataset.items():
        gm = atlas.expression_matrix(dataset)
        by_symbol = {str(s).lower(): i for i, s in reversed(list(enumerate(gm.gene_symbols)))}
        level_sums = _level_sums(atlas, dataset, level, tuple(parts[i] for i in members)) if keep else None
        if level_sums is not None:
            pairs = [_term_and_rest(atlas, parts[i], level, term, level_sums[k]) for k, i in enumerate(members)]
        else:
            names = atlas.categories(dataset, level)
            level_codes = np.asarray(atlas.codes(dataset, level))
            other = (np.isin(level_codes, [i for i, t in enumerate(names) if str(t) not in _NOT_TERMS])
                     & (level_codes >= 0))
            codes = np.zeros(len(level_codes), dtype=np.uint8)
            for k, i in enumerate(members):
                inside = _term_mask(atlas, parts[i], level, term)
                species = _species_mask(atlas, parts[i])
                rest = other & ~inside if species is None else other & ~inside & species
                codes[inside] = 2 * k + 1
                codes[rest] = 2 * k + 2
            sums = scan_groups(atlas, dataset, codes, n_groups=2 * len(members))
            pairs = [(sums[2 * k + 1], sums[2 * k + 2]) for k in range(len(members))]
        for k, i in enumerate(members):
            term_sums, rest_sums = pairs[k]
            t, _, p = welch_t_test(term_sums, rest_sums)
            columns = {g: by_symbol[str(g).lower()] for g in genes if str(g).lower() in by_symbol}
            found[i] = (columns, term_sums, rest_sums, np.column_stack([t, p, adjust_bh(p)]),
                        np.asarray(gm.gene_identifiers))
    rows = []
    nan = np.nan
    for i, part in enumerate(parts):
        columns, term_sums, rest_sums, tests, identifiers = found.get(i, ({}, None, None, None, None))
        n = term_sums.n if term_sums is not None else 0
        n_rest = rest_sums.n if rest_sums is not None else 0
        for g in genes:
            c = columns.get(g)
            present = c is not None
            mean = float(term_sums.mean[c]) if present and n else nan
            mean_rest = float(rest_sums.mean[c]) if present and n_rest else nan
            rows.append({"label": part.label, "dataset": part.dataset, "species": part.species, "gene": str(g),
                         "gene_identifier": str(identifiers[c]) if present else "",
                         "mean": mean, "fraction": float(term_sums.fraction[c]) if present and n else nan,
                         "n_cells": n, "mean_rest": mean_rest,
                         "fraction_rest": float(rest_sums.fraction[c]) if present and n_rest else nan,
                         "n_rest": n_rest, "mean_diff": mean - mean_rest,
                         "t": float(tests[c, 0]) if present else nan, "p": float(tests[c, 1]) if present else nan,
                         "p_adj": float(tests[c, 2]) if present else nan})
    return pd.DataFrame(rows, columns=list(DOT_COLUMNS)).astype({"n_cells": np.int64, "n_rest": np.int64})


#: Columns of :func:`species_dot_plot`.
DOT_COLUMNS = ("label", "dataset", "species", "gene", "gene_identifier", "mean", "fraction", "n_cells", "mean_rest",
               "fraction_rest", "n_rest", "mean_diff", "t", "p", "p_adj")
