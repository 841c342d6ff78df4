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
from core.requests import EXPORT_FIGURE_PATH
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
    figure : dict
        Format -> link of the whole panel as one figure (:func:`figure_href`).
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
    figure: dict = field(default_factory=dict)
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
        figure={fmt: figure_href(dataset, term, level, fmt) for fmt in ("png", "svg", "pdf")},
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


# ---------------------------------------------------------------------------------------------- the figure
#: The panel's figure: pixels at its dpi (a link of the panel; the export route takes any size up to the limit).
FIGURE_SIZE_PX = (2400, 1800)
FIGURE_DPI = 200
#: A marker's test "holds" in a species row below this adjusted p (with a positive mean difference).
HELD_P = 0.05


def figure_href(dataset: str, term: str, level: str, fmt: str = "png") -> str:
    """The link of the panel as one figure (``panels=across`` of the figure export route) in ``fmt``."""
    width, height = FIGURE_SIZE_PX
    query = urlencode([("dataset", dataset), ("color_by", level), ("term", term), ("term_level", level),
                       ("panels", "across"), ("width", str(width)), ("height", str(height)),
                       ("dpi", str(FIGURE_DPI))])
    return EXPORT_FIGURE_PATH.replace("<fmt>", fmt) + "?" + query


def annotation_text(annotation) -> str:
    """``STR = striatum (DHBA:10333); MSN = medium spiny neuron (CL:1001474)``."""
    parts = []
    for item in annotation:
        ident = item.get("primary_identifier") or ""
        parts.append(f"{item['abbreviation']} = {item.get('meaning') or ''}" + (f" ({ident})" if ident else ""))
    return "; ".join(parts)


def render_across_figure(context: ViewerContext, state, options, request) -> bytes:
    """The panel of ``state``'s highlighted term across species as one figure of ``options`` (``panels=across``
    of the figure export route): annotation, share bars, regions and the markers' dot plot (a ring where the row's
    test holds: adjusted p < :data:`HELD_P`, higher in the term), then the species' maps side by side at one scale
    (the views of ``panels=species``: ``request.sections``, coloured as ``state``), rendered through the one
    picture path (:func:`core.figures.figure_panel`) at their boxes' size.

    Raises
    ------
    ViewError
        ``term`` missing, ``term_level`` not shared (:func:`across_species`), or ``panels`` when the maps find no
        room at this figure size.
    """
    import numpy as np

    from core.figures import comparison_dot_radius_px, comparison_views, figure_panel, plain_text
    from core.requests import PanelRequest
    from rendering.across import AcrossContent, build_across, plan_across
    from rendering.figures import save_figure

    if not state.term or not state.term_level:
        raise ViewError("term", "panels=across needs a highlighted term (term and term_level)")
    summary = across_species(context, state.dataset, state.term, state.term_level)
    rows = [s["label"] for s in summary.shares]
    views = comparison_views(context, state, PanelRequest("species", tuple(request.sections)))
    titles = [plain_text(v.title) for v in views]
    note = annotation_text(summary.annotation) or "The release spells out no abbreviation of this term's name."
    layout = plan_across(options.width_in, options.height_in, len(rows), note,
                         [(v.window.width, v.window.height) for v in views], titles)
    if views and layout.maps is None:
        raise ViewError("panels", f"the maps find no room in a {options.width_px} x {options.height_px} px figure: "
                                  f"make it larger")
    sizes = layout.map_raster_px(options.dpi)
    radius = comparison_dot_radius_px(context, views, sizes) if views else 0.0
    pictures = [figure_panel(context, v.state, options, window=v.window, size_px=size, title=v.title,
                             with_legend=False, dot_radius_px=radius) for v, size in zip(views, sizes)]
    cell = {(d["label"], d["gene"]): d for d in summary.dot}
    genes = list(summary.genes)
    nan = float("nan")

    def grid(key):
        return np.array([[cell.get((r, g), {}).get(key, nan) for g in genes] for r in rows], dtype=float)

    p_adj, diff = grid("p_adj"), grid("mean_diff")
    with np.errstate(invalid="ignore"):
        held = (p_adj < HELD_P) & (diff > 0)
    content = AcrossContent(
        term=plain_text(summary.term), subtitle=plain_text(f"{summary.level} · {summary.taxonomy}"),
        color=summary.color, annotation=plain_text(note), rows=tuple(plain_text(r) for r in rows),
        shares=tuple(float(s["share"]) for s in summary.shares),
        regions=tuple((plain_text(r["label"]), plain_text(r["region"]), float(r["fraction"]), r["color"])
                      for r in summary.regions),
        genes=tuple(plain_text(g) for g in genes), mean=grid("mean").reshape(len(rows), len(genes)),
        fraction=grid("fraction").reshape(len(rows), len(genes)), held=held.reshape(len(rows), len(genes)),
        dots_note=f"ring: higher in the term than in the rest of that species' cells, Welch's t, "
                  f"Benjamini-Hochberg p_adj < {HELD_P:g}")
    figure = build_across(layout, content, [(p.rgba, tuple(p.window), t) for p, t in zip(pictures, titles)],
                          fmt=options.fmt, dpi=options.dpi, y_down=all(p.y_down for p in pictures))
    return save_figure(figure, options.fmt, options.dpi, plain_text(f"{summary.term} across species"))
