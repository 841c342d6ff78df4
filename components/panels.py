"""Builders of the side panels: the taxonomy tree, the legend and the cell inspector (pure, plain values in).

The tree is lazy: it shows the top level and, under each expanded term, its children only, so a taxonomy of
5,322 clusters never becomes 5,322 components; the search box lists matching terms of every level instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from dash import html

from components import ids

#: Most rows listed under one expanded term or in a search result before a "more" line.
MAX_ROWS = 2000
#: Most legend entries (the tree lists everything).
MAX_LEGEND = 400


@dataclass(frozen=True)
class TermRow:
    """A taxonomy term with its cell counts in the current section (or plane) and in the whole dataset."""

    level: str
    name: str
    color: str
    parent: str
    n_section: int
    n_total: int


def term_key(level: str, name: str) -> str:
    """Key of a term in the expanded-terms store."""
    return f"{level}|{name}"


def _swatch(color: str) -> html.Span:
    return html.Span(className="swatch", style={"backgroundColor": color})


def _row(term: TermRow, depth: int, *, expandable: bool, expanded: bool, highlighted: bool,
         show_level: bool = False) -> html.Div:
    classes = ["tree-row"]
    if highlighted:
        classes.append("highlighted")
    if term.n_section == 0:
        classes.append("absent")
    caret = (
        html.Button("▾" if expanded else "▸", id=ids.tree_toggle(term.level, term.name), className="caret",
                    title=("Collapse" if expanded else "Expand") + f" {term.name}", n_clicks=0)
        if expandable
        else html.Span(className="caret-space")
    )
    label = [_swatch(term.color), html.Span(term.name, className="term-name")]
    if show_level:
        label.append(html.Span(term.level, className="level-chip"))
    return html.Div(
        className=" ".join(classes),
        style={"paddingLeft": f"{depth * 14}px"},
        children=[
            caret,
            html.Button(label, id=ids.tree_term(term.level, term.name), className="term", n_clicks=0,
                        title=f"{term.level}: {term.name} — click to highlight"),
            html.Span(f"{term.n_section:,} · {term.n_total:,}", className="counts"),
        ],
    )


def tree_children(
    levels: Sequence[str],
    terms: Mapping[str, Sequence[TermRow]],
    expanded: Iterable[str],
    highlighted: tuple[str, str] | None,
) -> list:
    """Rows of the collapsible tree: top-level terms, and the children of every expanded term.

    Parameters
    ----------
    levels : sequence of str
        Levels, coarse to fine.
    terms : mapping
        level -> its :class:`TermRow` in taxonomy order.
    expanded : iterable of str
        :func:`term_key` of the expanded terms.
    highlighted : (level, name) or None
        The highlighted term.

    Returns
    -------
    list of dash components
    """
    if not levels:
        return [html.Div("This dataset has no taxonomy.", className="muted pad")]
    expanded = set(expanded)
    children_of: dict[tuple[int, str], list[TermRow]] = {}
    for depth, level in enumerate(levels[1:], start=1):
        for term in terms.get(level, ()):
            children_of.setdefault((depth, term.parent), []).append(term)
    rows: list = [html.Div(" › ".join(levels), className="tree-levels")]

    def add(term: TermRow, depth: int) -> None:
        key = term_key(term.level, term.name)
        expandable = depth + 1 < len(levels) and bool(children_of.get((depth + 1, term.name)))
        is_open = expandable and key in expanded
        rows.append(_row(term, depth, expandable=expandable, expanded=is_open,
                         highlighted=highlighted == (term.level, term.name)))
        if is_open:
            kids = children_of[(depth + 1, term.name)]
            for child in kids[:MAX_ROWS]:
                add(child, depth + 1)
            if len(kids) > MAX_ROWS:
                rows.append(html.Div(f"… {len(kids) - MAX_ROWS:,} more: use the search box",
                                     className="muted pad"))

    for top in terms.get(levels[0], ()):
        add(top, 0)
    return rows


def tree_search_children(matches: Sequence[TermRow], highlighted: tuple[str, str] | None, text: str) -> list:
    """Rows of a term search: every match with its level, flat."""
    if not matches:
        return [html.Div(f"No term matches '{text}'.", className="muted pad")]
    rows = [html.Div(f"{len(matches):,} terms match '{text}'", className="tree-levels")]
    for term in matches[:MAX_ROWS]:
        rows.append(_row(term, 0, expandable=False, expanded=False,
                         highlighted=highlighted == (term.level, term.name), show_level=True))
    return rows


def categorical_legend(level: str, items: Sequence[tuple[str, str, int]], highlighted: str | None,
                       *, clickable: bool = True) -> list:
    """Legend of a colouring by level or region: ``(name, colour, n cells)`` items, present ones only.

    Clicking an entry highlights the term (``clickable`` for taxonomy levels, not regions).
    """
    if not items:
        return [html.Div("No cells here.", className="muted")]
    entries = []
    for name, color, count in items[:MAX_LEGEND]:
        body = [_swatch(color), html.Span(name, className="legend-name"),
                html.Span(f"{count:,}", className="counts")]
        classes = "legend-item" + (" highlighted" if highlighted == name else "")
        if clickable:
            entries.append(html.Button(body, id=ids.legend_term(level, name), className=classes, n_clicks=0,
                                       title=f"Highlight {name}"))
        else:
            entries.append(html.Div(body, className=classes))
    if len(items) > MAX_LEGEND:
        entries.append(html.Div(f"… {len(items) - MAX_LEGEND:,} more in the taxonomy tree", className="muted"))
    return entries


def gene_legend(symbol: str, stops: Sequence[Sequence], vmin: float, vmax: float, *, default: bool,
                nan_color: str, unit: str = "log2") -> list:
    """Colour bar of a gene colouring: gradient, range ends, and the colour of cells without a value."""
    gradient = ", ".join(f"{color} {position * 100:.0f}%" for position, color in stops)
    return [
        html.Div(symbol, className="legend-gene"),
        html.Div(className="colorbar", style={"background": f"linear-gradient(to right, {gradient})"}),
        html.Div(className="colorbar-ticks",
                 children=[html.Span(f"{vmin:.3g}"), html.Span(unit, className="muted"),
                           html.Span(f"≥ {vmax:.3g}")]),
        html.Div("range: 99th percentile of expressing cells" if default else "range: set by hand",
                 className="field-hint"),
        html.Div(className="legend-item static",
                 children=[_swatch(nan_color), html.Span("not measured", className="legend-name")]),
    ]


HOVER_HINT = "Hover over a cell to inspect it; click to highlight its term."


def inspect_children(cell: Mapping | None, *, message: str = HOVER_HINT) -> list:
    """The cell inspector: label, section, region, every level with its colour, the gene value.

    Parameters
    ----------
    cell : mapping or None
        ``{"cell_label", "dataset", "section", "region", "x", "y", "levels": [(level, name, colour)],
        "gene": (symbol, value) or None}``; None shows ``message``.
    """
    if not cell:
        return [html.Span(message, className="muted")]
    facts = [("Cell", cell.get("cell_label", ""))]
    if cell.get("section"):
        facts.append(("Section", cell["section"]))
    if cell.get("region"):
        facts.append(("Region", cell["region"]))
    facts.append(("Position", f"{cell.get('x', 0):.3f}, {cell.get('y', 0):.3f}" + (" mm" if cell.get("section")
                                                                                     else "")))
    gene = cell.get("gene")
    if gene:
        symbol, value = gene
        facts.append((symbol, "not measured" if value is None else f"{value:.3f}"))
    items = [html.Div([html.Span(k, className="fact-key"), html.Span(str(v), className="fact-value")],
                      className="fact") for k, v in facts]
    path = [
        html.Div([html.Div(level, className="path-level"),
                  html.Div([_swatch(color), html.Span(name, className="path-name")], className="path-term")],
                 className="path-step", title=f"{level}: {name}")
        for level, name, color in cell.get("levels", [])
    ]
    return [html.Div(items, className="facts"), html.Div(path, className="taxonomy-path")]
