"""The species side by side and the section gallery as plain values: which datasets and sections, how each
panel is coloured (the main view's colouring carried to another dataset) and where each side-by-side map looks
(every map at one physical scale, zoomed alone or together). The map card's views
(``callbacks.compare``) and the figure export (:mod:`core.export`) plan their panels with these same functions.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from core.catalog import COLOR_BY_GENE, COLOR_BY_TWO_GENES
from core.context import DEFAULT_SIZE_PX, ViewerContext
from core.state import COMPARE_SLOTS, side_by_side_datasets
from core.viewport import Window, nice_length, padded, units_per_px, window_at_scale


def compare_datasets(context: ViewerContext) -> list[str]:
    """The side-by-side datasets: the first spatial dataset of each species, in catalog order (at most
    :data:`core.state.COMPARE_SLOTS`); the address's ``sections`` follow this order."""
    return side_by_side_datasets(context.catalog, COMPARE_SLOTS)


def section_choices(context: ViewerContext, dataset: str) -> list[dict]:
    """Dropdown options of every section of ``dataset`` (atlas order), labelled with their cell counts."""
    entry = context.catalog.get(dataset)
    if entry is None:
        return []
    return [{"label": f"{label} ({section.n_cells:,} cells)", "value": label}
            for label, section in entry.sections.items()]


def first_section(context: ViewerContext, dataset: str) -> str | None:
    """The first section of ``dataset`` in atlas order."""
    entry = context.catalog.get(dataset)
    for plane in entry.slab_planes if entry is not None else ():
        if plane.sections:
            return plane.sections[0]
    return None


def gallery_sections(context: ViewerContext, dataset: str) -> list[str]:
    """Every section of ``dataset`` in atlas order (slab plane by slab plane): the gallery's pictures."""
    entry = context.catalog.get(dataset)
    return [label for plane in (entry.slab_planes if entry is not None else ()) for label in plane.sections]


def hand_gene_range(vmin: Any, vmax: Any) -> tuple[float, float] | None:
    """The colour range set by hand (``vmin < vmax``, both numbers; a gene's or a numeric cell column's), else
    None (the default range applies)."""
    try:
        if vmin not in (None, "") and vmax not in (None, ""):
            low, high = float(vmin), float(vmax)
            if math.isfinite(low) and math.isfinite(high) and low < high:  # "inf" from a crafted request: default
                return low, high
    except (TypeError, ValueError):
        pass
    return None


@dataclass(frozen=True)
class SlotColouring:
    """How one side-by-side map is coloured, after matching the main map's choice to its dataset."""

    color_by: str
    gene: str | None
    term: tuple[str, str] | None
    extra: dict
    note: str


def slot_colouring(context: ViewerContext, dataset: str, color_by: str | None, gene: str | None,
                   term: dict | None, two_genes: dict | None, *, shared_only: bool = True) -> SlotColouring:
    """The main map's colouring carried to ``dataset``: level, gene (by symbol), term (with ``shared_only``, only
    at a level shared across species: down to Group)."""
    entry = context.catalog.get(dataset)
    fallback = entry.default_color_by()
    notes: list[str] = []
    colour = color_by if color_by in entry.color_by_choices() else fallback
    symbol = None
    extra: dict = {}
    if colour in (COLOR_BY_GENE, COLOR_BY_TWO_GENES):
        try:
            symbol = context.lookups.gene_symbol(dataset, gene) if gene else None
        except KeyError:
            symbol = None
        if symbol is None:
            notes.append(f"{gene} not measured: {fallback}")
            colour = fallback
        elif colour == COLOR_BY_TWO_GENES:
            gene2 = (two_genes or {}).get("gene2")
            try:
                extra = {**two_genes, "gene2": context.lookups.gene_symbol(dataset, gene2)} if gene2 else {}
            except KeyError:
                notes.append(f"{gene2} not measured: {symbol} alone")
                colour, extra = COLOR_BY_GENE, {}
            if not extra:
                colour = COLOR_BY_GENE
    highlight = None
    if term and term.get("level") and term.get("name"):
        level, name = str(term["level"]), str(term["name"])
        levels = entry.shared_levels() if shared_only else entry.levels
        if level in levels and context.lookups.term_exists(dataset, level, name):
            highlight = (level, name)
        elif level not in levels:
            notes.append(f"{level} terms are not shared across species")
        else:
            notes.append(f"no {name} here")
    return SlotColouring(colour, symbol, highlight, extra, "; ".join(notes))


def shared_gene_range(context: ViewerContext, datasets: list[str], gene: str | None, vmin: Any,
                      vmax: Any) -> tuple[float, float] | None:
    """One colour range for a gene over every side-by-side dataset measuring it: the range set by hand, else
    from the lowest default low end to the highest default high end."""
    chosen = hand_gene_range(vmin, vmax)
    if chosen is not None:
        return chosen
    ranges = []
    for dataset in datasets:
        try:
            symbol = context.lookups.gene_symbol(dataset, gene) if gene else None
        except KeyError:
            continue
        if symbol:
            ranges.append(context.gene_range(dataset, symbol))
    if not ranges:
        return None
    return min(r[0] for r in ranges), max(r[1] for r in ranges)


def shared_column_range(context: ViewerContext, datasets: list[str], column: str | None
                        ) -> tuple[float, float] | None:
    """One colour range for a numeric cell column over every side-by-side dataset having it: from the lowest
    default low end to the highest default high end (:attr:`core.catalog.DatasetEntry.numeric_columns`)."""
    ranges = [found for found in (context.catalog.get(d).numeric_columns.get(column) for d in datasets) if found]
    if not ranges:
        return None
    return min(r[0] for r in ranges), max(r[1] for r in ranges)


def side_by_side_range(context: ViewerContext, datasets: list[str], color_by: str | None, gene: str | None,
                       vmin: Any, vmax: Any) -> tuple[float, float] | None:
    """The one colour range the side-by-side maps of ``datasets`` are drawn over, and their legends show.

    The range set by hand, else the widest default: a gene's (:func:`shared_gene_range`), a numeric cell
    column's (:func:`shared_column_range`); None for a colouring without a range (a level, a region, two genes:
    each gene keeps its own range).
    """
    if color_by == COLOR_BY_GENE:
        return shared_gene_range(context, datasets, gene, vmin, vmax)
    if color_by and any(context.catalog.get(d).is_numeric(color_by) for d in datasets):
        return hand_gene_range(vmin, vmax) or shared_column_range(context, datasets, color_by)
    return None


def slot_title(context: ViewerContext, dataset: str, section: str | None, colouring: SlotColouring) -> str:
    """Title of one side-by-side map: species, platform, cells, colouring and what could not be matched."""
    entry = context.catalog.get(dataset)
    n_cells = entry.sections[section].n_cells if section in entry.sections else 0
    if colouring.color_by == COLOR_BY_TWO_GENES:
        colour = f"{colouring.gene} + {colouring.extra.get('gene2')}"
    elif colouring.color_by == COLOR_BY_GENE:
        colour = str(colouring.gene)
    else:
        colour = colouring.color_by
    text = f"{entry.species or entry.name} · {entry.platform} · {n_cells:,} cells · {colour}"
    if colouring.term:
        text += f" · {colouring.term[1]}"
    if colouring.note:
        text += f" ({colouring.note})"
    return text




# ---------------------------------------------------------------------------------------------- one scale
@dataclass(frozen=True)
class SidePanel:
    """One side-by-side map: its dataset and section, the padded extent of the section's cells (mm) and the size of
    its plot area (device pixels; :data:`core.context.DEFAULT_SIZE_PX` until the browser reports it)."""

    dataset: str
    section: str
    frame: Window
    width_px: int
    height_px: int

    @property
    def key(self) -> str:
        """``dataset|section``: what a stored zoom of this map belongs to."""
        return f"{self.dataset}|{self.section}"

    @property
    def size(self) -> dict[str, int]:
        return {"width_px": self.width_px, "height_px": self.height_px}


def side_panels(context: ViewerContext, sections: list, sizes: list) -> list[SidePanel]:
    """The side-by-side maps in slot order (a dataset without sections ends the list): each slot's section (the
    first one when ``sections`` names none of its own) and its plot size from ``sizes`` (one dict or None per
    slot)."""
    panels = []
    for slot, dataset in enumerate(compare_datasets(context)):
        entry = context.catalog.get(dataset)
        wanted = sections[slot] if slot < len(sections) else None
        section = wanted if wanted in entry.sections else first_section(context, dataset)
        if section is None:
            break
        size = (sizes[slot] if slot < len(sizes) else None) or {}
        width_px = int(size.get("width_px") or DEFAULT_SIZE_PX[0])
        height_px = int(size.get("height_px") or DEFAULT_SIZE_PX[1])
        panels.append(SidePanel(dataset, section, padded(entry.sections[section].bounds), max(width_px, 1),
                                max(height_px, 1)))
    return panels


def fit_scale(panels: list[SidePanel]) -> float:
    """The one scale (mm per device pixel) of the side-by-side maps: the smallest at which every section fits its
    map, so the largest section decides and smaller ones are drawn smaller, centred."""
    return max((units_per_px(p.frame, p.width_px, p.height_px) for p in panels), default=1.0)


def relative_point(panel: SidePanel, x_mm: float, y_mm: float) -> tuple[float, float]:
    """Where ``(x_mm, y_mm)`` lies in the panel's frame, as fractions of its width and height (0.5 = centre)."""
    return (x_mm - panel.frame.x0) / panel.frame.width, (y_mm - panel.frame.y0) / panel.frame.height


def panel_window(panel: SidePanel, mm_per_px: float, point: tuple[float, float] = (0.5, 0.5)) -> Window:
    """The window the panel shows at ``mm_per_px``, centred on the relative ``point`` of its frame."""
    x_mm = panel.frame.x0 + point[0] * panel.frame.width
    y_mm = panel.frame.y0 + point[1] * panel.frame.height
    return window_at_scale(x_mm, y_mm, mm_per_px, panel.width_px, panel.height_px)


def together_zoom(panel: SidePanel, window: Window, scale: float) -> dict | None:
    """The shared zoom of the maps zoomed together, from ``window`` shown in ``panel``: ``{"zoom", "u", "v"}``
    (magnification over the fitting ``scale``, and the relative point of the panel's frame at the centre), None
    when that is the fitting view (zoom 1, centred)."""
    zoom = scale / units_per_px(window, panel.width_px, panel.height_px)
    u, v = relative_point(panel, (window.x0 + window.x1) / 2, (window.y0 + window.y1) / 2)
    if abs(zoom - 1) < 1e-6 and abs(u - 0.5) < 1e-6 and abs(v - 0.5) < 1e-6:
        return None
    return {"zoom": zoom, "u": u, "v": v}


def slot_window(panels: list[SidePanel], slot: int, together: bool, zoom: dict | None,
                viewport: dict | None) -> Window:
    """The window side-by-side map ``slot`` shows.

    Zoomed together (``together`` with a shared ``zoom``): every map at the same scale (the fitting scale times
    ``zoom["zoom"]``), each centred on the same relative point of its own section. Otherwise the map's own
    ``viewport`` (``{"frame": key, "x0", ...}``, a zoom of this very section), else the fitting view: the one
    scale of :func:`fit_scale`, centred on the section.
    """
    panel = panels[slot]
    scale = fit_scale(panels)
    if together:
        try:
            factor, point = float(zoom["zoom"]), (float(zoom["u"]), float(zoom["v"]))
        except (KeyError, TypeError, ValueError):
            factor, point = 1.0, (0.5, 0.5)
        if not (math.isfinite(factor) and factor > 0 and all(abs(p) < 1e6 for p in point)):
            factor, point = 1.0, (0.5, 0.5)
        return panel_window(panel, scale / factor, point)
    own = Window.from_dict(viewport) if viewport and viewport.get("frame") == panel.key else None
    return own or panel_window(panel, scale)


def bar_length(panels: list[SidePanel], window: Window, panel: SidePanel) -> float:
    """The scale bar's length (mm) of a map showing ``window``: about a fifth of the narrowest map at that map's
    scale, so maps at one scale show the very same bar."""
    narrowest = min(p.width_px for p in panels)
    return nice_length(0.2 * units_per_px(window, panel.width_px, panel.height_px) * narrowest)
