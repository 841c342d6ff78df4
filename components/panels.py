"""Builders of the side panels: the taxonomy tree, the legend and the cell inspector (pure, plain values in).

The tree is lazy: it shows the top level and, under each expanded term, its children only, so a taxonomy of
5,322 clusters never becomes 5,322 components; the search box lists matching terms of every level instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Collection, Iterable, Mapping, Sequence

from dash import dcc, html


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


#: ``data-action`` values read by the click listener of ``assets/viewer.js``.
ACTION_PICK = "pick"
ACTION_TOGGLE = "toggle"
#: Highlight the term and open the panel of the term across species (``callbacks.species``) in one click.
ACTION_ACROSS = "across-species"


def term_key(level: str, name: str) -> str:
    """Key of a term in the expanded-terms store."""
    return f"{level}|{name}"


# The tree and the legend can hold hundreds of rows. As Dash components each row would be 4-5 components, and
# the Dash renderer runs a selector per component on every store update (every callback answer, every hover):
# hundreds of rows made the whole page sluggish. So rows are written as escaped HTML and shown by ONE
# dcc.Markdown; their clicks reach Dash through one listener (data-action/level/name, assets/viewer.js).
def _attr(value: object) -> str:
    return escape(str(value), quote=True)


def _term_data(level: str, name: str, action: str) -> str:
    return f'data-action="{action}" data-level="{_attr(level)}" data-name="{_attr(name)}"'


def _swatch_html(color: str) -> str:
    return f'<span class="swatch" style="background-color:{_attr(color)}"></span>'


def _across_html(level: str, name: str) -> str:
    """The small "across species" button of a tree row or legend entry (a term at a level the species share)."""
    return (f'<button class="across-go" title="{_attr(name)} across species: annotation, share of cells, regions '
            f'and marker genes in each species" {_term_data(level, name, ACTION_ACROSS)}>⇄ species</button>')


def html_block(markup: str, class_name: str = "") -> dcc.Markdown:
    """One component showing ``markup`` (HTML written by this module from escaped values).

    The markup is wrapped in a ``div`` and kept on one line, so Markdown passes it through as one raw HTML
    block (a line starting with an inline tag such as ``<button>`` would become a paragraph instead).
    """
    one_line = markup.replace("\n", " ")
    return dcc.Markdown(f'<div class="html-rows">{one_line}</div>', dangerously_allow_html=True,
                        className=f"html-block {class_name}".strip())


def _row_html(term: TermRow, depth: int, *, expandable: bool, expanded: bool, highlighted: bool,
              show_level: bool = False, across: bool = False) -> str:
    classes = "tree-row" + (" highlighted" if highlighted else "") + (" absent" if term.n_section == 0 else "")
    if expandable:
        verb = "Collapse" if expanded else "Expand"
        caret = (f'<button class="caret" title="{verb} {_attr(term.name)}" '
                 f'{_term_data(term.level, term.name, ACTION_TOGGLE)}>{"▾" if expanded else "▸"}</button>')
    else:
        caret = '<span class="caret-space"></span>'
    chip = f'<span class="level-chip">{_attr(term.level)}</span>' if show_level else ""
    return (
        f'<div class="{classes}" style="padding-left:{depth * 14}px">{caret}'
        f'<button class="term" title="{_attr(term.level)}: {_attr(term.name)} — click to highlight" '
        f'{_term_data(term.level, term.name, ACTION_PICK)}>{_swatch_html(term.color)}'
        f'<span class="term-name">{_attr(term.name)}</span>{chip}</button>'
        f'{_across_html(term.level, term.name) if across else ""}'
        f'<span class="counts">{term.n_section:,} · {term.n_total:,}</span></div>'
    )


def tree_html(
    levels: Sequence[str],
    terms: Mapping[str, Sequence[TermRow]],
    expanded: Iterable[str],
    highlighted: tuple[str, str] | None,
    across: Collection[str] = (),
) -> str:
    """HTML rows of the collapsible tree: top-level terms, and the children of every expanded term.

    A level whose terms have no parent in the level above (the mouse ``neurotransmitter`` beside ``class``)
    is a group of its own.

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
    across : collection of str
        Levels the species share (:func:`core.state.across_levels`): their rows get the button that opens the
        term across species (:data:`ACTION_ACROSS`).

    Returns
    -------
    str
        Escaped HTML, one ``div.tree-row`` per shown term.
    """
    if not levels:
        return '<div class="muted pad">This dataset has no taxonomy.</div>'
    expanded = set(expanded)
    names_at = [{term.name for term in terms.get(level, ())} for level in levels]
    children_of: dict[tuple[int, str], list[TermRow]] = {}
    roots_at: dict[int, list[TermRow]] = {}
    for index, level in enumerate(levels):
        for term in terms.get(level, ()):
            if index > 0 and term.parent and term.parent in names_at[index - 1]:
                children_of.setdefault((index, term.parent), []).append(term)
            else:  # a top term, or a level not nested in the one above
                roots_at.setdefault(index, []).append(term)
    rows = [f'<div class="tree-levels">{_attr(" › ".join(levels))}</div>']

    def add(term: TermRow, index: int, depth: int) -> None:
        kids = children_of.get((index + 1, term.name), [])
        is_open = bool(kids) and term_key(term.level, term.name) in expanded
        rows.append(_row_html(term, depth, expandable=bool(kids), expanded=is_open,
                              highlighted=highlighted == (term.level, term.name), across=term.level in across))
        if is_open:
            for child in kids[:MAX_ROWS]:
                add(child, index + 1, depth + 1)
            if len(kids) > MAX_ROWS:
                rows.append(f'<div class="muted pad">… {len(kids) - MAX_ROWS:,} more: use the search box</div>')

    grouped = len(roots_at) > 1
    for index in sorted(roots_at):
        if grouped:
            rows.append(f'<div class="tree-group">{_attr(levels[index])}</div>')
        for top in roots_at[index]:
            add(top, index, 0)
    return "".join(rows)


def tree_search_html(matches: Sequence[TermRow], highlighted: tuple[str, str] | None, text: str,
                     across: Collection[str] = ()) -> str:
    """HTML rows of a term search: every match with its level, flat (``across`` as in :func:`tree_html`)."""
    if not matches:
        return f'<div class="muted pad">No term matches \'{_attr(text)}\'.</div>'
    rows = [f'<div class="tree-levels">{len(matches):,} terms match \'{_attr(text)}\'</div>']
    rows += [_row_html(term, 0, expandable=False, expanded=False,
                       highlighted=highlighted == (term.level, term.name), show_level=True,
                       across=term.level in across)
             for term in matches[:MAX_ROWS]]
    return "".join(rows)


def legend_matches(items: Sequence[tuple[str, str, int]], text: str | None) -> list[tuple[str, str, int]]:
    """The legend items whose name holds every word of ``text`` (any case), in their order; all for no text."""
    words = (text or "").casefold().split()
    if not words:
        return list(items)
    return [item for item in items if all(word in item[0].casefold() for word in words)]


def legend_html(level: str, items: Sequence[tuple[str, str, int]], highlighted: str | None,
                *, clickable: bool = True, text: str | None = None, across: bool = False) -> str:
    """HTML legend of a colouring by level or region: ``(name, colour, n cells)`` items, present ones only, in the
    order given (the taxonomy's), each with its cells.

    Only the items matching ``text`` are listed (:func:`legend_matches`), at most :data:`MAX_LEGEND` of them and
    a line counting the rest. Long names wrap; the whole name and the cells are also the entry's tooltip.
    Clicking an entry highlights the term (``clickable`` for taxonomy levels, not regions); with ``across`` (a
    level the species share) each entry also has the button that opens the term across species.
    """
    if not items:
        return '<div class="muted">No cells here.</div>'
    shown = legend_matches(items, text)
    if not shown:
        return f'<div class="muted legend-none">No entry matches \'{_attr(text)}\'.</div>'
    entries = []
    for name, color, count in shown[:MAX_LEGEND]:
        body = (f'{_swatch_html(color)}<span class="legend-name">{_attr(name)}</span>'
                f'<span class="counts">{count:,}</span>')
        classes = "legend-item" + (" highlighted" if highlighted == name else "")
        tip = f"{_attr(name)}: {count:,} cells here"
        if clickable:
            entry = (f'<button class="{classes}" title="{tip}. Click to highlight" '
                     f'{_term_data(level, name, ACTION_PICK)}>{body}</button>')
            entries.append(f'<div class="legend-row">{entry}{_across_html(level, name)}</div>' if across else entry)
        else:
            entries.append(f'<div class="{classes} static" title="{tip}">{body}</div>')
    if len(shown) > MAX_LEGEND:
        entries.append(f'<div class="muted legend-more">+ {len(shown) - MAX_LEGEND:,} more: type in the filter '
                       f'to find them</div>')
    return "".join(entries)


def _swatch(color: str) -> html.Span:
    return html.Span(className="swatch", style={"backgroundColor": color})


def _tick(value: float) -> str:
    """A colour bar's end: three significant digits, whole numbers from 1,000 on (``7,925``, not ``7.92e+03``)."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def gene_legend(symbol: str, stops: Sequence[Sequence], vmin: float, vmax: float, *, default: bool,
                nan_color: str, zero_color: str | None = None, unit: str = "log2",
                hint: str = "range: 99th percentile of expressing cells") -> list:
    """Colour bar of a gene (or numeric cell column) colouring: gradient, range ends, the colour of cells that do
    not express the gene (``zero_color``, drawn under the expressing ones; None for a column) and of cells where
    it was not measured; ``hint`` says how the default range is chosen."""
    gradient = ", ".join(f"{color} {position * 100:.0f}%" for position, color in stops)
    return [
        html.Div(symbol, className="legend-gene"),
        html.Div(className="colorbar", style={"background": f"linear-gradient(to right, {gradient})"}),
        html.Div(className="colorbar-ticks",
                 children=[html.Span(f"≤ {_tick(vmin)}" if zero_color is None else _tick(vmin)),
                           html.Span(unit, className="muted"),
                           html.Span(f"≥ {_tick(vmax)}")]),
        html.Div(hint if default else "range: set by hand",
                 className="field-hint"),
        *([html.Div(className="legend-item static",
                    children=[_swatch(zero_color), html.Span("not expressed (0)", className="legend-name")])]
          if zero_color else []),
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
    if cell.get("show_dataset") and cell.get("dataset"):
        facts.append(("Dataset", cell["dataset"]))
    if cell.get("species"):
        facts.append(("Species", cell["species"]))
    if cell.get("section"):
        facts.append(("Section", cell["section"]))
    if cell.get("region"):
        facts.append(("Region", cell["region"]))
    unit = " mm" if cell.get("section") else ""
    facts.append(("Position", f"{cell.get('x', 0):.3f}, {cell.get('y', 0):.3f}{unit}"))
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
