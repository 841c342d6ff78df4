"""One cell type across species as plain values: the highlighted term's annotation as the release gives it, its
share of cells, its regions and its conserved marker genes in each species' cells (the first dataset of sections
of each species and each species of the aligned 10X cells), for the panel across species (``callbacks.species``).

The numbers come from :mod:`data_layer.species`; the term must be at a level the species share
(:func:`core.state.across_levels`), else a :class:`core.errors.ViewError` names ``term_level``.
"""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

from core.context import ViewerContext
from core.errors import ViewError
from core.export import EXPORT_FIGURE_PATH
from core.state import across_levels

#: Conserved marker genes shown in the dot plot.
MARKER_GENES = 8
#: The maps side by side in the panel: a figure of the export route (every species at one scale), pixels and dpi.
MAPS_SIZE_PX = (1500, 560)
MAPS_DPI = 150
#: Summaries kept per app (a term's summary is asked for again when the panel is redrawn).
MEMO_SIZE = 32
_lock = threading.Lock()
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class AcrossSpecies:
    """A term across species, JSON-able values only.

    Attributes
    ----------
    term, level, taxonomy, color : str
    annotation : list of dict
        ``abbreviation, meaning, type, primary_identifier, secondary_identifier``: the abbreviations of the
        term's name spelled out, in the release's order (empty when the release has none).
    shares : list of dict
        One per species' cells: ``label, dataset, species, platform, n_term, n_cells, share``.
    regions : list of dict
        ``label, dataset, species, column, region, n_cells, fraction, color``.
    genes : list of str
        The conserved marker genes (symbols), best first.
    dot : list of dict
        One per (species' cells, gene): ``label, dataset, species, gene, gene_identifier, mean, fraction, n_cells,
        mean_rest, fraction_rest, n_rest, mean_diff, t, p, p_adj`` (:func:`data_layer.species.species_dot_plot`:
        the term against the rest of that species' cells, Welch's t, Benjamini-Hochberg over the row's genes).
    maps : dict
        Format (``png``, ``svg``, ``pdf``) -> link of the figure of the species side by side at one scale, the term
        highlighted (:func:`maps_href`).
    markers_csv : str
        Link of the CSV of ``dot`` (:func:`markers_href`).
    seconds : float
        Time taken to compute it.
    """

    term: str
    level: str
    taxonomy: str
    color: str
    annotation: list[dict] = field(default_factory=list)
    shares: list[dict] = field(default_factory=list)
    regions: list[dict] = field(default_factory=list)
    genes: list[str] = field(default_factory=list)
    dot: list[dict] = field(default_factory=list)
    maps: dict = field(default_factory=dict)
    markers_csv: str = ""
    seconds: float = 0.0


def across_species(context: ViewerContext, dataset: str, term: str, level: str,
                   n_genes: int = MARKER_GENES) -> AcrossSpecies:
    """The term of ``dataset``'s taxonomy across species (memoised per app: ``context.across_memo``).

    Raises
    ------
    ViewError
        ``dataset`` unknown, ``term_level`` not a level the species share, or ``term`` unknown at it.
    """
    entry = context.catalog.get(dataset)
    if entry is None:
        raise ViewError("dataset", f"unknown dataset {str(dataset)[:60]!r}")
    levels = across_levels(context.catalog, entry)
    if level not in levels:
        raise ViewError("term_level", f"{str(level)[:40]!r} is not a level the species share in {entry.taxonomy} "
                                      f"({', '.join(levels) or 'none in this store'})")
    if not context.lookups.term_exists(dataset, level, term):
        raise ViewError("term", f"no {level} term {str(term)[:60]!r} in {dataset}")
    key = (entry.taxonomy, level, term, n_genes)
    memo = context.across_memo
    with _lock:
        if key in memo:
            memo[key] = memo.pop(key)  # most recent last
            return memo[key]
    summary = _compute(context, dataset, entry.taxonomy, term, level, n_genes)
    with _lock:
        memo[key] = summary
        while len(memo) > MEMO_SIZE:
            memo.pop(next(iter(memo)))
    return summary


def _records(table) -> list[dict]:
    """Rows of a DataFrame as dicts of plain Python values (NaN stays a float NaN)."""
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in table.to_dict("records")]


def _compute(context: ViewerContext, dataset: str, taxonomy: str, term: str, level: str,
             n_genes: int) -> AcrossSpecies:
    from data_layer.species import (conserved_markers, species_cells, species_dot_plot, term_regions,
                                    term_share)

    started = time.perf_counter()
    atlas = context.atlas
    tax = atlas.taxonomy(dataset)
    terms = tax.terms(level)
    color = str(terms.loc[terms["name"] == term, "color"].iloc[0]) if (terms["name"] == term).any() else "#9e9e9e"
    parts = species_cells(atlas, context.catalog.species_datasets(taxonomy))
    markers = conserved_markers(atlas, parts, level, term, n=n_genes)
    genes = [str(g) for g in markers["gene_symbol"]]
    return AcrossSpecies(
        term=term, level=level, taxonomy=taxonomy, color=color,
        annotation=_records(tax.annotation(level, term)),
        shares=_records(term_share(atlas, parts, level, term)),
        regions=_records(term_regions(atlas, parts, level, term)),
        genes=genes,
        dot=_records(species_dot_plot(atlas, parts, level, term, genes)) if genes else [],
        maps={fmt: maps_href(dataset, term, level, fmt) for fmt in ("png", "svg", "pdf")},
        markers_csv=markers_href(dataset, term, level),
        seconds=time.perf_counter() - started,
    )


def maps_href(dataset: str, term: str, level: str, fmt: str = "png") -> str:
    """The figure of the species side by side at one scale (first section of each species), coloured by ``level``
    with ``term`` highlighted: a link to the figure export route (``panels=species``) in ``fmt``."""
    width, height = MAPS_SIZE_PX
    query = urlencode([("dataset", dataset), ("color_by", level), ("term", term), ("term_level", level),
                       ("panels", "species"), ("width", str(width)), ("height", str(height)), ("dpi", str(MAPS_DPI))])
    return EXPORT_FIGURE_PATH.replace("<fmt>", fmt) + "?" + query


# ---------------------------------------------------------------------------------------------- the markers' CSV
#: Path of the CSV of the panel's markers (under ``/export/``: the export rate limit applies).
EXPORT_ACROSS_MARKERS_PATH = "/export/across-markers.csv"
#: Its columns: one line per (species' cells, gene), in the panel's order.
MARKERS_CSV_COLUMNS = ("species_cells", "dataset", "species", "gene", "gene_identifier", "mean", "fraction",
                       "n_cells", "mean_rest", "fraction_rest", "n_rest", "mean_diff", "t", "p", "p_adj")


def markers_href(dataset: str, term: str, level: str) -> str:
    """The link of the CSV of the term's conserved markers in each species' cells (read back by
    :func:`markers_csv_from_args`)."""
    return EXPORT_ACROSS_MARKERS_PATH + "?" + urlencode([("dataset", dataset), ("term", term), ("term_level", level)])


def markers_csv_text(summary: AcrossSpecies) -> str:
    """The panel's markers as CSV text: :data:`MARKERS_CSV_COLUMNS`, species' cells outer and genes (best first)
    inner, text made spreadsheet-safe (:func:`data_layer.analysis.spreadsheet_safe`), empty fields for NaN."""
    import io

    import pandas as pd

    from data_layer.analysis import spreadsheet_safe

    table = pd.DataFrame(summary.dot).rename(columns={"label": "species_cells"}).reindex(
        columns=list(MARKERS_CSV_COLUMNS))
    buffer = io.StringIO()
    spreadsheet_safe(table).to_csv(buffer, index=False, float_format="%.6g", lineterminator="\n")
    return buffer.getvalue()


def markers_csv_from_args(context: ViewerContext, args) -> tuple[bytes, str]:
    """``(CSV bytes, download name)`` of ``GET /export/across-markers.csv?dataset=&term=&term_level=``: the view's
    parameters read strictly (:func:`core.state.strict_view`); a :class:`ViewError` names a bad one
    (``term_level`` not shared, no ``term``)."""
    from core.state import strict_view

    state = strict_view(args, context.catalog, gene_lookup=context.lookups.gene_symbol,
                        term_lookup=context.lookups.term_level, require_dataset=True)
    if not state.term:
        raise ViewError("term", "is required: the term followed across species")
    summary = across_species(context, state.dataset, state.term, state.term_level)
    safe = _UNSAFE.sub("-", f"{summary.taxonomy}_{summary.term}").strip("-")
    return markers_csv_text(summary).encode("utf-8"), f"across-species_{safe[:140]}_markers.csv"
