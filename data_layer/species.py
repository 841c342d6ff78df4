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
  species' cells, from one scan of the gene-major store per dataset (:func:`data_layer.analysis.group_sums`).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .analysis import CellGroup, group_sums, markers_for_term

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


def species_dot_plot(atlas: Any, parts: Sequence[SpeciesCells], level: str, term: str,
                     genes: Sequence[str]) -> pd.DataFrame:
    """A dot plot of genes (by symbol) in the term's cells of each species' cells, one row per part.

    Returns
    -------
    DataFrame
        Parts outer, genes inner: ``label, dataset, species`` (str), ``gene`` (the symbol as given),
        ``gene_identifier`` (the part's dataset's identifier; "" where it does not measure the gene), ``mean``
        (float64 mean log2 over the term's cells with an expression row), ``fraction`` (of them with a value > 0),
        ``n_cells`` (int64, the term's cells with an expression row). Mean and fraction are NaN where the dataset
        does not measure the gene or has no such cell.
    """
    rows = []
    for part in parts:
        columns: dict[str, int] = {}
        if atlas.info(part.dataset).n_genes:
            gm = atlas.expression_matrix(part.dataset)
            by_symbol = {str(s).lower(): i for i, s in reversed(list(enumerate(gm.gene_symbols)))}
            columns = {g: by_symbol[str(g).lower()] for g in genes if str(g).lower() in by_symbol}
        mean = frac = {}
        n = 0
        if columns:
            sums = group_sums(atlas, CellGroup(part.dataset, _term_mask(atlas, part, level, term)),
                              [str(gm.gene_identifiers[c]) for c in columns.values()])
            n = sums.n
            mean = dict(zip(columns, sums.mean))
            frac = dict(zip(columns, sums.fraction))
        for g in genes:
            present = g in columns
            rows.append({"label": part.label, "dataset": part.dataset, "species": part.species, "gene": str(g),
                         "gene_identifier": str(gm.gene_identifiers[columns[g]]) if present else "",
                         "mean": float(mean[g]) if present and n else np.nan,
                         "fraction": float(frac[g]) if present and n else np.nan, "n_cells": n})
    return pd.DataFrame(rows, columns=["label", "dataset", "species", "gene", "gene_identifier", "mean", "fraction",
                                       "n_cells"]).astype({"n_cells": np.int64})
