"""The species side by side and the section gallery as plain values: which datasets and sections, and how each
panel is coloured (the main view's colouring carried to another dataset). The map card's views
(``callbacks.compare``) and the figure export (:mod:`core.export`) plan their panels with these same functions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.catalog import COLOR_BY_GENE, COLOR_BY_TWO_GENES
from core.context import ViewerContext
from core.state import COMPARE_SLOTS, side_by_side_datasets


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
    """The gene range set by hand (``vmin < vmax``, both numbers), else None (the default range applies)."""
    try:
        if vmin not in (None, "") and vmax not in (None, "") and float(vmin) < float(vmax):
            return float(vmin), float(vmax)
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


