"""The view state (what the address bar holds) and its rules: URL parsing and writing, and consistent switching.

A :class:`ViewState` is the whole view: dataset, slab plane, section, colour-by, gene, highlighted term, viewport,
gene range, the box/lasso selection (:class:`ViewSelection`) and the map card's view (the one map, the species side
by side with a section per species, or the section gallery). :func:`parse_query` reads it from a query string,
checking every value against the
:class:`~core.catalog.Catalog` (an unknown value becomes a notice and a sensible default, never an error);
:func:`to_query` writes it back. :func:`switch_dataset`, :func:`switch_slab_plane` and :func:`switch_section`
return the state after a user choice, keeping what still makes sense (colour-by, gene by symbol, a term of a
shared taxonomy level) and resetting what does not.

Gene and term checks need the data, so the callers pass two small look-up functions (``GeneLookup``,
``TermLookup``); everything here stays a pure function of plain values.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping
from urllib.parse import parse_qs, urlencode

from core.errors import DatasetUnavailable, ViewError
from core.catalog import COLOR_BY_GENE, COLOR_BY_REGION, COLOR_BY_TWO_GENES, Catalog, DatasetEntry
from core.selection import compact_selection, parse_selection_param, read_selection, selection_param
from core.viewport import Window, make_window

#: ``lookup(dataset, text) -> canonical gene symbol``; raises ``KeyError`` (message names close matches).
GeneLookup = Callable[[str, str], str]
#: ``lookup(dataset, name, levels_to_try) -> level holding a term of that name, or None``.
TermLookup = Callable[[str, str, tuple[str, ...]], "str | None"]

#: Side-by-side maps at most (one per species).
COMPARE_SLOTS = 3

#: Query parameters the viewer reads, in the order it writes them.
QUERY_KEYS = ("dataset", "slab_plane", "section", "embedding", "color_by", "gene", "term", "term_level",
              "x0", "x1", "y0", "y1", "vmin", "vmax", "gene2", "blend", "ta", "tb")
#: Modes of a two-gene picture: every cell in its blend colour, or only the cells above both thresholds.
BLEND_MODES = ("blend", "both")
#: Address-bar parameters of the box/lasso selection, written after :data:`QUERY_KEYS`: the view it was drawn in
#: and its geometry (``core.selection.selection_param``). Not view parameters of the picture,
#: export and API routes, which take the selection as their own ``selection=`` parameter.
SELECTION_KEYS = ("sel_view", "sel")
#: Views a selection is drawn in: the main picture, or the UMAP panel beside a spatial dataset.
SELECTION_VIEWS = ("map", "umap")
#: Views of the map card: the one map, the species side by side, the gallery of every section of the dataset.
MAP_VIEWS = ("map", "species", "gallery")
#: Address-bar parameters of the map card's view, written last: ``view`` (``species`` or ``gallery``; absent = the
#: map) and, with ``view=species``, ``sections`` (one label per side-by-side dataset, comma-separated, empty = its
#: first section: the format of the export route's ``sections``). Like :data:`SELECTION_KEYS` they are not in
#: :data:`QUERY_KEYS`: the picture, export and API routes draw one view (a figure of panels takes its own
#: ``panels=``). ``zoom_together=0`` (with ``view=species``): the side-by-side maps zoom each on its own (absent
#: or 1: they zoom together).
MAP_VIEW_KEYS = ("view", "sections", "zoom_together")
#: Address-bar parameter of the panel of the highlighted term across species (``across=1``; absent = closed),
#: written last. Like :data:`MAP_VIEW_KEYS` it belongs to the page, not to the picture, export and API routes.
PANEL_KEYS = ("across",)


@dataclass(frozen=True)
class ViewSelection:
    """A box or lasso selection as the address bar holds it (its frame is the view's own place).

    Attributes
    ----------
    view : {"map", "umap"}
        ``map``: the main picture (the section, slab plane or single-cell dataset in the same address);
        ``umap``: the UMAP panel beside a spatial dataset.
    kind : {"box", "lasso"}
    xs, ys : tuple of float
        Compact geometry (:func:`core.selection.compact_selection`): a box's ascending bounds, or a
        lasso's vertices without a closing repeat.
    """

    view: str
    kind: str
    xs: tuple[float, ...]
    ys: tuple[float, ...]

    def geometry(self) -> dict:
        """``{"kind", "xs", "ys"}`` with lists: the geometry part of the selection store."""
        return {"kind": self.kind, "xs": list(self.xs), "ys": list(self.ys)}

    @classmethod
    def from_geometry(cls, view: str, geometry: dict) -> "ViewSelection":
        """From a compact geometry dict (the selection store, or :func:`compact_selection`'s answer)."""
        return cls(view=view, kind=geometry["kind"], xs=tuple(float(v) for v in geometry["xs"]),
                   ys=tuple(float(v) for v in geometry["ys"]))


@dataclass(frozen=True)
class ViewState:
    """Everything the address bar holds.

    Attributes
    ----------
    dataset : str or None
        Dataset name (None only for an empty store).
    slab_plane : str or None
        Slab plane of a spatial dataset.
    section : str or None
        Section label; None with a slab plane = the whole slab plane.
    color_by : str
        A taxonomy level name, ``"region"`` or ``"gene"``.
    gene : str or None
        Gene symbol; used when ``color_by == "gene"``.
    term, term_level : str or None
        Highlighted taxonomy term and its level.
    viewport : Window or None
        Data window of the main picture; None = the whole section / plane / UMAP.
    vmin, vmax : float or None
        Shown gene range; None = the default (99th percentile of expressing cells).
    gene2 : str or None
        Second gene symbol of ``color_by == "two_genes"`` (``gene`` is the first).
    blend_mode : {"blend", "both"}
        Two genes: every cell in its blend colour, or only cells above both thresholds.
    threshold_a, threshold_b : float or None
        Thresholds (log2) of the ``both`` mode; None = 0.
    selection : ViewSelection or None
        Box or lasso selection of the map (this dataset, slab plane and section) or of the UMAP beside it.
    map_view : {"map", "species", "gallery"}
        What the map card shows: the one map, the species side by side or the section gallery.
    species_sections : tuple of (str or None)
        ``map_view == "species"``: the section of each side-by-side dataset (:func:`side_by_side_datasets` order),
        None = its first section; canonical (:func:`canonical_species_sections`): no trailing None.
    zoom_together : bool
        ``map_view == "species"``: zooming one side-by-side map zooms the others (the default) or only itself.
    across : bool
        The panel of the highlighted term across species is open (only with a term at a level of
        :func:`across_levels`).
    embedding : str or None
        A single-cell dataset's neighborhood UMAP drawn instead of its whole UMAP (only that neighborhood's cells,
        in its own coordinates); None = the whole UMAP.
    """

    dataset: str | None
    slab_plane: str | None = None
    section: str | None = None
    color_by: str = ""
    gene: str | None = None
    term: str | None = None
    term_level: str | None = None
    viewport: Window | None = None
    vmin: float | None = None
    vmax: float | None = None
    gene2: str | None = None
    blend_mode: str = "blend"
    threshold_a: float | None = None
    threshold_b: float | None = None
    selection: ViewSelection | None = None
    map_view: str = "map"
    species_sections: tuple[str | None, ...] = ()
    zoom_together: bool = True
    across: bool = False
    embedding: str | None = None

    def replace(self, **changes) -> "ViewState":
        return dataclasses.replace(self, **changes)


def default_state(catalog: Catalog, dataset: str | None = None) -> ViewState:
    """The view a dataset opens with: its first slab plane whole (every section of it, the anatomy at a glance),
    coloured by the default colour-by."""
    name = dataset if catalog.get(dataset) else catalog.default_dataset()
    entry = catalog.get(name)
    if entry is None:
        return ViewState(dataset=None)
    plane = entry.slab_planes[0].label if entry.slab_planes else None
    return ViewState(dataset=name, slab_plane=plane, section=None, color_by=entry.default_color_by())


def _first_section(entry: DatasetEntry) -> tuple[str | None, str | None]:
    for plane in entry.slab_planes:
        if plane.sections:
            return plane.label, plane.sections[0]
    if entry.slab_planes:
        return entry.slab_planes[0].label, None
    return None, None


class Notice(str):
    """A message for the user (a plain ``str``) that also names the query parameter it is about.

    :func:`parse_query` is lenient (a bad value becomes a notice and a default); the HTTP API reads the same
    parameters strictly and answers 400 naming ``notice.parameter``.
    """

    parameter: str

    def __new__(cls, parameter: str, text: str) -> "Notice":
        notice = super().__new__(cls, text)
        notice.parameter = parameter
        return notice

    def __getnewargs__(self) -> tuple[str, str]:  # pickling and copying keep the parameter
        return self.parameter, str(self)


def _bad_key(params: dict[str, str], keys: tuple[str, ...]) -> str:
    """The first of ``keys`` whose value is not a finite number, else the last key (an empty or inverted range)."""
    for key in keys:
        try:
            _number(params, key)
        except ValueError:
            return key
    if len(keys) == 4:  # a window: name the axis with no extent
        x0, x1 = _number(params, keys[0]), _number(params, keys[1])
        return keys[1] if x0 is not None and x0 == x1 else keys[3]
    return keys[-1]


def _number(params: dict[str, str], key: str) -> float | None:
    raw = params.get(key)
    if raw is None or raw == "":
        return None
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError(f"{key}={raw!r} is not finite")
    return value


def parse_query(
    search: str | None, catalog: Catalog, *, gene_lookup: GeneLookup, term_lookup: TermLookup
) -> tuple[ViewState, list[str]]:
    """Read a view from a query string; every unknown value becomes a notice and a default.

    Parameters
    ----------
    search : str or None
        ``location.search``, with or without the leading ``?``.
    catalog : Catalog
        What the store holds.
    gene_lookup, term_lookup : callable
        See :data:`GeneLookup` and :data:`TermLookup`.

    Returns
    -------
    (ViewState, list of str)
        The view and the notices to show (empty when the URL was fine).
    """
    query = (search or "").lstrip("?")
    params = {key: values[-1].strip() for key, values in parse_qs(query, keep_blank_values=True).items()}
    notices: list[str] = []

    # dataset
    requested = params.get("dataset") or None
    if requested and requested in catalog.damaged:
        notices.append(Notice("dataset", f"Dataset '{requested}' is damaged in the store (files missing or "
                                         f"truncated) and cannot be shown until it is prepared again: showing "
                                         f"{catalog.default_dataset()}."))
        requested = None
    if requested and catalog.get(requested) is None:
        notices.append(Notice("dataset", f"Unknown dataset '{requested}': showing {catalog.default_dataset()}."))
        requested = None
    state = default_state(catalog, requested)
    entry = catalog.get(state.dataset)
    if entry is None:
        return state, notices

    # slab plane and section
    if entry.spatial:
        state, more = _parse_place(entry, state, params.get("slab_plane") or None, params.get("section"))
        notices += more
    else:
        for key in ("section", "slab_plane"):
            if params.get(key):
                notices.append(Notice(key, f"{entry.name} has no sections: {key} '{params[key][:60]}' is ignored."))

    # which UMAP of a single-cell dataset: the whole one, or one neighborhood's
    embedding = params.get("embedding") or None
    if embedding is not None:
        names = [e.name for e in entry.embeddings]
        match = _match_choice(embedding, names)
        if match is None:
            has = f"its neighborhood UMAPs are {', '.join(names)}" if names else "it has only its whole UMAP"
            notices.append(Notice("embedding", f"{entry.name} has no UMAP '{embedding[:60]}' ({has}): showing the "
                                               "whole UMAP."))
        else:
            state = state.replace(embedding=match)

    # colour-by
    color_by = params.get("color_by") or None
    if color_by is not None:
        match = _match_choice(color_by, entry.color_by_choices())
        if match is None:
            notices.append(Notice("color_by", f"Cannot colour {entry.name} by '{color_by}': showing {state.color_by}."))
        else:
            state = state.replace(color_by=match)

    # gene: used when colouring by gene; a gene without color_by also means "colour by this gene"
    gene = params.get("gene") or None
    if gene is not None and color_by is None and entry.has_genes:
        state = state.replace(color_by=COLOR_BY_GENE)
    if gene is not None and entry.has_genes:
        try:
            state = state.replace(gene=gene_lookup(entry.name, gene))
        except KeyError as exc:
            if state.color_by in (COLOR_BY_GENE, COLOR_BY_TWO_GENES):
                state = state.replace(color_by=entry.default_color_by())
            notices.append(Notice("gene", f"Unknown gene '{gene}' in {entry.name}{_detail(exc)}: "
                                          f"showing {state.color_by}."))
    elif gene is not None:
        notices.append(Notice("gene", f"{entry.name} has no expression data: gene '{gene}' is not shown."))
    # colour_by=gene without a gene keeps gene=None: the callback shows the dataset's first gene

    if state.color_by == COLOR_BY_TWO_GENES:
        state, more = _parse_two_genes(entry, state, params, gene_lookup)
        notices += more

    # term
    term = params.get("term") or None
    preferred = params.get("term_level") or None
    if term is None and preferred is not None:
        notices.append(Notice("term", f"term_level={preferred[:60]} without a term: nothing highlighted."))
    if term is not None:
        named = _match_choice(preferred, list(entry.levels)) if preferred else None
        if preferred and named is None:
            notices.append(Notice("term_level", f"'{preferred[:60]}' is not a level of {entry.name} "
                                                f"({', '.join(entry.levels)}): highlighting {term} at its own level."))
        levels = _levels_to_try(entry, named, state.color_by)
        level = term_lookup(entry.name, term, levels)
        if level is None:
            notices.append(Notice("term", f"Unknown taxonomy term '{term}' in {entry.name}: nothing highlighted."))
        else:
            if named is not None and level != named:
                notices.append(Notice("term", f"No {named} called '{term}' in {entry.name}: highlighting the "
                                              f"{level} {term}."))
            state = state.replace(term=term, term_level=level)

    # viewport
    try:
        bounds = [_number(params, key) for key in ("x0", "x1", "y0", "y1")]
        if all(value is not None for value in bounds):
            state = state.replace(viewport=make_window(*bounds))
        elif any(value is not None for value in bounds):
            missing = next(key for key, value in zip(("x0", "x1", "y0", "y1"), bounds) if value is None)
            notices.append(Notice(missing, "The view needs all of x0, x1, y0 and y1: showing the whole picture."))
    except ValueError as exc:
        notices.append(Notice(_bad_key(params, ("x0", "x1", "y0", "y1")),
                              f"Bad view in the address ({exc}): showing the whole picture."))

    # gene range
    try:
        vmin, vmax = _number(params, "vmin"), _number(params, "vmax")
        if (vmin is None) != (vmax is None):
            notices.append(Notice("vmin" if vmin is None else "vmax", "The gene range needs both vmin and vmax: "
                                                                       "using the default range."))
        if vmin is not None and vmax is not None:
            if vmin < vmax:
                state = state.replace(vmin=vmin, vmax=vmax)
            else:
                notices.append(Notice("vmax", f"Gene range vmin={vmin:g} must be below vmax={vmax:g}: "
                                              "using the default range."))
    except ValueError as exc:
        notices.append(Notice(_bad_key(params, ("vmin", "vmax")),
                              f"Bad gene range in the address ({exc}): using the default range."))

    # selection: drawn on the place this address names (a place that fell back to a default is another one)
    if params.get("sel"):
        place_notices = [n for n in notices
                         if getattr(n, "parameter", None) in ("dataset", "section", "slab_plane", "embedding")]
        selection, notice = _parse_selection(catalog, entry, state, params, place_notices)
        state = state.replace(selection=selection)
        if notice is not None:
            notices.append(notice)
    elif params.get("sel_view"):
        notices.append(Notice("sel_view", "sel_view without a selection (sel): nothing selected."))

    # the map card's view: the one map, the species side by side (a section each) or the gallery
    state, more = _parse_map_view(catalog, entry, state, params)
    notices += more

    # the panel of the highlighted term across species
    raw = params.get("across") or ""
    if raw and raw != "0":
        levels = across_levels(catalog, entry)
        if raw != "1":
            notices.append(Notice("across", f"across={raw[:20]} is not 1: the panel across species is not shown."))
        elif not levels:
            notices.append(Notice("across", f"{entry.name}'s taxonomy is not held by several species in this store: "
                                            "the panel across species is not shown."))
        elif state.term is None or state.term_level not in levels:
            notices.append(Notice("across", f"across=1 needs a highlighted term at a level the species share "
                                            f"({', '.join(levels)}): the panel across species is not shown."))
        else:
            state = state.replace(across=True)
    return without_unused_range(catalog, state), notices


def without_unused_range(catalog: Catalog, state: ViewState) -> ViewState:
    """``state`` without its colour range (``vmin``, ``vmax``) unless it is coloured by one gene or a numeric cell
    column, the colourings drawn over a range."""
    if state.vmin is None and state.vmax is None:
        return state
    entry = catalog.get(state.dataset) if state.dataset else None
    if state.color_by == COLOR_BY_GENE or (entry is not None and entry.is_numeric(state.color_by)):
        return state
    return state.replace(vmin=None, vmax=None)


def across_levels(catalog: Catalog, entry: DatasetEntry) -> tuple[str, ...]:
    """The levels at which a term of ``entry``'s taxonomy can be followed across species: its shared levels
    (:meth:`DatasetEntry.shared_levels`) when the store holds that taxonomy's cells in several species
    (:meth:`Catalog.species_datasets`), else none."""
    if not catalog.species_datasets(entry.taxonomy):
        return ()
    return entry.shared_levels()


# ---------------------------------------------------------------------------------------------- strict mode
#: The end of an address-bar notice naming the fallback shown (dropped from a strict error message).
_FALLBACK_TAIL = re.compile(r":\s+(showing|using|nothing highlighted|highlighting)\b[^:]*$")


#: The selection as every HTTP route takes it (``x0,x1,y0,y1`` or ``x1,y1,x2,y2,...``, :mod:`core.selection`): part
#: of the view in strict mode, drawn on the view's own place (the address bar's ``sel`` with ``sel_view=map``).
SELECTION_PARAM = "selection"


def view_query(args: Mapping[str, str]) -> str:
    """The view parameters of ``args`` as a query string (``?dataset=...``), others dropped."""
    pairs = [(key, str(args[key])) for key in QUERY_KEYS if key in args]
    return "?" + urlencode(pairs)


def check_keys(args: Iterable[str], extra: Iterable[str], *, view: bool = True) -> None:
    """Raise :class:`ViewError` for a key that is neither a view parameter (unless ``view`` is False) nor
    one of ``extra``."""
    allowed = (set(QUERY_KEYS) | {SELECTION_PARAM} if view else set()) | set(extra)
    for key in args:
        if key not in allowed:
            raise ViewError(key, f"is not a parameter here (known: {', '.join(sorted(allowed))})")


def strict_view(
    args: Mapping[str, str],
    catalog: Catalog,
    *,
    gene_lookup: GeneLookup,
    term_lookup: TermLookup,
    extra_keys: Iterable[str] = (),
    require_dataset: bool = False,
) -> ViewState:
    """The view named by the URL-state parameters of ``args``, or an error naming the first bad one.

    Parameters
    ----------
    args : mapping of str to str
        Query parameters (``flask.request.args`` as a dict).
    catalog : Catalog
        What the store holds.
    gene_lookup, term_lookup : callable
        See :data:`core.state.GeneLookup` and :data:`core.state.TermLookup`.
    extra_keys : iterable of str
        Parameters allowed besides the view's (``width``, ``format``...).
    require_dataset : bool
        Refuse a request without ``dataset`` (else the store's first dataset, as the address bar does).

    Returns
    -------
    ViewState
        Canonical (a section implies its slab plane; the gene is its symbol; the term's level is found).

    Raises
    ------
    ViewError
        :class:`core.errors.DatasetUnavailable` (503) for a dataset damaged in the store.
    """
    check_keys(args, extra_keys)
    if args.get("dataset") in catalog.damaged:
        raise DatasetUnavailable(args["dataset"])
    if not catalog.datasets:
        raise ViewError("dataset", "the store holds no dataset")
    if require_dataset and not args.get("dataset"):
        raise ViewError("dataset", f"is required (one of {', '.join(catalog.names)})")
    state, notices = parse_query(view_query(args), catalog, gene_lookup=gene_lookup, term_lookup=term_lookup)
    if notices:
        first = notices[0]
        # the address bar's notice says what it shows instead ("...: showing Subclass."); a request is refused
        message = _FALLBACK_TAIL.sub("", str(first)).rstrip(".")
        raise ViewError(getattr(first, "parameter", "query"), message)
    entry = catalog.get(state.dataset)
    if state.color_by in (COLOR_BY_GENE, COLOR_BY_TWO_GENES) and not state.gene:
        raise ViewError("gene", f"is required with color_by={state.color_by} (a gene of {entry.name})")
    if state.color_by == COLOR_BY_TWO_GENES and not state.gene2:
        raise ViewError("gene2", f"is required with color_by=two_genes (a gene of {entry.name})")
    geometry = read_selection(args.get(SELECTION_PARAM), SELECTION_PARAM)
    if geometry is not None:
        state = state.replace(selection=ViewSelection.from_geometry("map", geometry))
    if entry.spatial and not state.section and not state.slab_plane:  # pragma: no cover - parse_query fills one
        raise ViewError("section", f"a section or slab_plane of {entry.name} is required")
    return state



def side_by_side_datasets(catalog: Catalog, limit: int = COMPARE_SLOTS) -> list[str]:
    """The datasets of the species side by side: the first dataset of sections of each species, in catalog order.

    Returns
    -------
    list of str
        At most ``limit`` dataset names.
    """
    chosen: list[str] = []
    species_seen: set[str] = set()
    for name, entry in catalog.datasets.items():
        if not entry.spatial or not entry.sections:
            continue
        key = entry.species or name
        if key in species_seen:
            continue
        species_seen.add(key)
        chosen.append(name)
    return chosen[:limit]


def canonical_species_sections(catalog: Catalog, labels: "list[str | None] | tuple[str | None, ...]"
                               ) -> tuple[str | None, ...]:
    """The side-by-side sections as the address holds them: one entry per side-by-side dataset (in order), None
    for its first section (or a label that is not one of its sections), no trailing None.

    Parameters
    ----------
    labels : sequence of (str or None)
        Section labels in :func:`side_by_side_datasets` order; missing entries are the first sections.
    """
    canonical: list[str | None] = []
    for dataset, label in zip(side_by_side_datasets(catalog), labels):
        entry = catalog.get(dataset)
        first = _first_section(entry)[1]
        canonical.append(label if label and label in entry.sections and label != first else None)
    while canonical and canonical[-1] is None:
        canonical.pop()
    return tuple(canonical)


def map_view_of(catalog: Catalog, dataset: str | None, mode: str | None,
                sections: "list[str | None] | tuple[str | None, ...]" = ()) -> tuple[str, tuple[str | None, ...]]:
    """``(map_view, species_sections)`` of what the map card shows (the radio's ``mode``, the side-by-side
    dropdowns' ``sections``), by the address's rules: a gallery only of a dataset of sections, the side by side
    only when the store holds datasets of sections, sections only with it."""
    entry = catalog.get(dataset)
    if mode == "gallery" and entry is not None and entry.spatial and entry.sections:
        return "gallery", ()
    if mode == "species" and side_by_side_datasets(catalog):
        return "species", canonical_species_sections(catalog, list(sections))
    return "map", ()


def _parse_map_view(catalog: Catalog, entry: DatasetEntry, state: ViewState,
                    params: dict[str, str]) -> tuple[ViewState, list[str]]:
    """The map card's view (``view``) and the side-by-side sections (``sections``); a bad value is a notice."""
    notices: list[str] = []
    raw = params.get("view") or ""
    mode = raw.lower() or "map"
    if mode not in MAP_VIEWS:
        notices.append(Notice("view", f"Unknown view '{raw}' (map, species or gallery): showing the map."))
        mode = "map"
    elif mode == "gallery" and not (entry.spatial and entry.sections):
        notices.append(Notice("view", f"{entry.name} has no sections for a gallery: showing the map."))
        mode = "map"
    elif mode == "species" and not side_by_side_datasets(catalog):
        notices.append(Notice("view", "The store holds no dataset of sections to put side by side: showing the "
                                      "map."))
        mode = "map"
    text = params.get("sections") or ""
    together_text = params.get("zoom_together") or ""
    if mode != "species":
        if text and not notices:
            notices.append(Notice("sections", "sections (one per species) belongs to view=species: ignored."))
        if together_text and not notices:
            notices.append(Notice("zoom_together", "zoom_together belongs to view=species: ignored."))
        return state.replace(map_view=mode, species_sections=(), zoom_together=True), notices
    together = together_text != "0"
    if together_text not in ("", "0", "1"):
        notices.append(Notice("zoom_together", f"zoom_together='{together_text[:20]}' is 0 or 1: the maps zoom "
                                               f"together."))
    datasets = side_by_side_datasets(catalog)
    parts = [part.strip() for part in text.split(",")] if text else []
    if len(parts) > len(datasets):
        notices.append(Notice("sections", f"{len(parts)} sections for {len(datasets)} side-by-side datasets "
                                          f"({', '.join(datasets)}): the extra ones are ignored."))
    labels: list[str | None] = []
    for dataset, label in zip(datasets, parts):
        side = catalog.get(dataset)
        if label and label not in side.sections:
            notices.append(Notice("sections", f"Unknown section '{label}' of {dataset} ({side.species or dataset}): "
                                              f"showing its first section, {_first_section(side)[1]}."))
            label = ""
        labels.append(label or None)
    return state.replace(map_view="species", species_sections=canonical_species_sections(catalog, labels),
                         zoom_together=together), notices


def _parse_selection(catalog: Catalog, entry: DatasetEntry, state: ViewState, params: dict[str, str],
                     place_notices: list[str]) -> tuple[ViewSelection | None, Notice | None]:
    """The selection of the address (``sel_view``, ``sel``), or None and the notice saying why it is dropped."""
    view = params.get("sel_view") or "map"
    if view not in SELECTION_VIEWS:
        return None, Notice("sel_view", f"Unknown selection view '{view}' (map or umap): nothing selected.")
    try:
        parsed = parse_selection_param(params["sel"])
        geometry = compact_selection(parsed["kind"], parsed["xs"], parsed["ys"]) if parsed else None
    except ValueError as exc:
        return None, Notice("sel", f"Bad selection in the address ({exc}): nothing selected.")
    if geometry is None:
        return None, Notice("sel", "The selection in the address encloses nothing: nothing selected.")
    if view == "umap":
        umap = catalog.get(entry.umap_dataset) if entry.spatial and entry.umap_dataset else None
        if umap is None:
            return None, Notice("sel_view", f"{entry.name} has no UMAP beside it: nothing selected.")
        if any(n.parameter == "dataset" for n in place_notices):
            return None, Notice("sel", "The selection belongs to a dataset that is not shown: nothing selected.")
    elif place_notices:
        return None, Notice("sel", "The selection belongs to a place that is not shown: nothing selected.")
    return ViewSelection.from_geometry(view, geometry), None


def _parse_two_genes(entry: DatasetEntry, state: ViewState, params: dict[str, str],
                     gene_lookup: GeneLookup) -> tuple[ViewState, list[str]]:
    """The second gene, mode and thresholds of a two-gene view (``gene2``, ``blend``, ``ta``, ``tb``).

    An unknown second gene colours by the first gene alone; no ``gene2`` leaves it to the viewer's default.
    """
    notices: list[str] = []
    gene2 = params.get("gene2") or None
    if gene2 is not None:
        try:
            state = state.replace(gene2=gene_lookup(entry.name, gene2))
        except KeyError as exc:
            state = state.replace(color_by=COLOR_BY_GENE)
            notices.append(Notice("gene2", f"Unknown gene '{gene2}' in {entry.name}{_detail(exc)}: "
                                           f"showing {state.gene} alone."))
    mode = params.get("blend") or "blend"
    if mode not in BLEND_MODES:
        notices.append(Notice("blend", f"Unknown two-gene mode '{mode}' (blend or both): showing the blend."))
        mode = "blend"
    state = state.replace(blend_mode=mode)
    if mode == "both":
        for key, field in (("ta", "threshold_a"), ("tb", "threshold_b")):
            try:
                state = state.replace(**{field: _number(params, key)})
            except ValueError as exc:
                notices.append(Notice(key, f"Bad threshold in the address ({exc}): using 0."))
    return state, notices


def _detail(exc: KeyError) -> str:
    message = exc.args[0] if exc.args else ""
    return f" ({message})" if message and isinstance(message, str) else ""


def _match_choice(value: str, choices: list[str]) -> str | None:
    """``value`` among ``choices``, exactly or ignoring case."""
    if value in choices:
        return value
    lowered = {choice.lower(): choice for choice in choices}
    return lowered.get(value.lower())


def _levels_to_try(entry: DatasetEntry, preferred: str | None, color_by: str) -> tuple[str, ...]:
    """Levels to look a term up in: the named one, the colour-by level, then coarse to fine."""
    order: list[str] = []
    for level in (preferred and _match_choice(preferred, list(entry.levels)), color_by):
        if level and level in entry.levels and level not in order:
            order.append(level)
    order += [level for level in entry.levels if level not in order]
    return tuple(order)


def _place_words(state: ViewState) -> str:
    """Where a view of sections is, in words: ``section <label>`` or ``the whole slab plane <label>``."""
    return f"section {state.section}" if state.section else f"the whole slab plane {state.slab_plane}"


def _parse_place(
    entry: DatasetEntry, state: ViewState, plane_label: str | None, section_label: str | None
) -> tuple[ViewState, list[str]]:
    notices = []
    if section_label:
        section = entry.sections.get(section_label)
        if section is not None:
            if plane_label and plane_label != section.slab_plane:
                notices.append(Notice("slab_plane", f"Section {section.label} is in slab plane {section.slab_plane}, "
                                                    f"not {plane_label[:60]}: showing the section."))
            return state.replace(slab_plane=section.slab_plane, section=section.label), notices
        notices.append(Notice("section",
                              f"Unknown section '{section_label}' in {entry.name}: showing {_place_words(state)}."))
        return state, notices
    if plane_label:
        plane = entry.plane(plane_label)
        if plane is None:
            notices.append(Notice("slab_plane",
                                  f"Unknown slab plane '{plane_label}' in {entry.name}: showing "
                                  f"{_place_words(state)}."))
            return state, notices
        # a slab plane without a section: the whole plane
        return state.replace(slab_plane=plane.label, section=None), notices
    return state, notices


def _format(value: float) -> str:
    return f"{value:.6g}" if abs(value) >= 1000 else f"{value:.4f}".rstrip("0").rstrip(".")


def to_query(state: ViewState) -> str:
    """The query string of a view (``?dataset=...``), omitting defaults that need no parameter.

    ``slab_plane`` is written only for a whole-slab-plane view (a section implies its plane); ``embedding`` only
    for a neighborhood's UMAP; ``gene`` only when
    colouring by gene; the viewport, gene range and selection (``sel_view``, ``sel``) only when set; ``view`` only
    for the species side by side or the gallery, ``sections`` only for side-by-side sections that are not the
    first ones, ``zoom_together=0`` only for side-by-side maps that zoom each on its own; ``across=1`` only with a
    highlighted term.
    """
    if state.dataset is None:
        return ""
    pairs: list[tuple[str, str]] = [("dataset", state.dataset)]
    if state.section:
        pairs.append(("section", state.section))
    elif state.slab_plane:
        pairs.append(("slab_plane", state.slab_plane))
    if state.embedding:
        pairs.append(("embedding", state.embedding))
    if state.color_by:
        pairs.append(("color_by", state.color_by))
    if state.color_by in (COLOR_BY_GENE, COLOR_BY_TWO_GENES) and state.gene:
        pairs.append(("gene", state.gene))
    if state.color_by == COLOR_BY_TWO_GENES and state.gene2:
        pairs.append(("gene2", state.gene2))
        if state.blend_mode == "both":
            pairs += [("blend", "both"), ("ta", _format(state.threshold_a or 0.0)),
                      ("tb", _format(state.threshold_b or 0.0))]
    if state.term:
        pairs.append(("term", state.term))
        if state.term_level:
            pairs.append(("term_level", state.term_level))
    if state.viewport is not None:
        pairs += [(key, _format(value)) for key, value in zip(("x0", "x1", "y0", "y1"), state.viewport)]
    if state.color_by != COLOR_BY_TWO_GENES and state.vmin is not None and state.vmax is not None:
        pairs += [("vmin", _format(state.vmin)), ("vmax", _format(state.vmax))]  # (one gene's or a column's)
    if state.selection is not None:
        pairs += [("sel_view", state.selection.view), ("sel", selection_param(state.selection.geometry()))]
    if state.map_view in MAP_VIEWS[1:]:
        pairs.append(("view", state.map_view))
        sections = list(state.species_sections) if state.map_view == "species" else []
        while sections and not sections[-1]:
            sections.pop()
        if sections:
            pairs.append(("sections", ",".join(section or "" for section in sections)))
        if state.map_view == "species" and not state.zoom_together:
            pairs.append(("zoom_together", "0"))
    if state.across and state.term:
        pairs.append(("across", "1"))
    return "?" + urlencode(pairs)


# ---------------------------------------------------------------------------------------------- switching
def switch_dataset(
    catalog: Catalog,
    previous: ViewState,
    dataset: str,
    *,
    gene_lookup: GeneLookup,
    term_lookup: TermLookup,
    previous_taxonomy: str | None = None,
) -> tuple[ViewState, list[str]]:
    """The view after choosing ``dataset``: first section, same colour-by, gene and term where they still apply.

    The colour-by level is kept when the new dataset has a level of that name (case-insensitive), ``region`` when
    it is spatial, ``gene`` when it has expression and the gene symbol exists in it. The highlighted term is kept
    when both datasets use the same taxonomy and the term's level is a shared one (down to ``Group``);
    ``previous_taxonomy`` names the old taxonomy when ``previous.dataset`` is not known any more.

    Returns
    -------
    (ViewState, list of str)
        The view and notices about what could not be kept.
    """
    entry = catalog.get(dataset)
    if entry is None:
        state = default_state(catalog)
        return state, [f"Unknown dataset '{dataset}': showing {state.dataset}."]
    state = default_state(catalog, dataset)
    notices: list[str] = []
    old = catalog.get(previous.dataset)
    old_taxonomy = old.taxonomy if old is not None else previous_taxonomy

    color_by = _match_choice(previous.color_by, entry.color_by_choices()) if previous.color_by else None
    if color_by in (COLOR_BY_GENE, COLOR_BY_TWO_GENES):
        gene = None
        if previous.gene:
            try:
                gene = gene_lookup(entry.name, previous.gene)
            except KeyError:
                notices.append(f"Gene {previous.gene} is not measured in {entry.name}: showing {state.color_by}.")
        if gene is not None:
            state = state.replace(color_by=color_by, gene=gene)
        if gene is not None and color_by == COLOR_BY_TWO_GENES and previous.gene2:
            try:  # the second gene by symbol, with the same mode and thresholds
                state = state.replace(gene2=gene_lookup(entry.name, previous.gene2), blend_mode=previous.blend_mode,
                                      threshold_a=previous.threshold_a, threshold_b=previous.threshold_b)
            except KeyError:
                notices.append(f"Gene {previous.gene2} is not measured in {entry.name}: showing {gene} alone.")
                state = state.replace(color_by=COLOR_BY_GENE)
    elif color_by is not None:
        state = state.replace(color_by=color_by)
    if previous.gene and state.gene is None and entry.has_genes and color_by != COLOR_BY_GENE:
        try:  # keep the chosen gene in the box even while colouring by a level
            state = state.replace(gene=gene_lookup(entry.name, previous.gene))
        except KeyError:
            pass

    if previous.term and previous.term_level and old_taxonomy == entry.taxonomy:
        shared = entry.shared_levels()
        if previous.term_level in shared and term_lookup(entry.name, previous.term, (previous.term_level,)):
            state = state.replace(term=previous.term, term_level=previous.term_level)
    return state, notices


def switch_slab_plane(catalog: Catalog, previous: ViewState, plane_label: str) -> ViewState:
    """The view after choosing a slab plane: its first section, the whole plane in view."""
    entry = catalog.get(previous.dataset)
    plane = entry.plane(plane_label) if entry is not None else None
    if plane is None:
        return previous
    section = plane.sections[0] if plane.sections else None
    return previous.replace(slab_plane=plane.label, section=section, viewport=None)


def switch_section(catalog: Catalog, previous: ViewState, section_label: str | None) -> ViewState:
    """The view after choosing a section (None = whole slab plane).

    Sections of one slab plane share its coordinates, so the viewport is kept when it still overlaps the new
    section; otherwise the whole new section is shown.
    """
    entry = catalog.get(previous.dataset)
    if entry is None:
        return previous
    if section_label is None:
        return previous.replace(section=None)
    section = entry.sections.get(section_label)
    if section is None:
        return previous
    viewport = previous.viewport
    if viewport is not None:
        x_min, x_max, y_min, y_max = section.bounds
        if viewport.x1 < x_min or viewport.x0 > x_max or viewport.y1 < y_min or viewport.y0 > y_max:
            viewport = None
    if section.slab_plane != previous.slab_plane:
        viewport = None
    return previous.replace(slab_plane=section.slab_plane, section=section.label, viewport=viewport)


def frame_bounds(catalog: Catalog, state: ViewState) -> tuple[float, float, float, float] | None:
    """Bounds ``(x_min, x_max, y_min, y_max)`` of what the main picture draws: section, plane or dataset."""
    entry = catalog.get(state.dataset)
    if entry is None:
        return None
    if entry.spatial:
        if state.section and state.section in entry.sections:
            return entry.sections[state.section].bounds
        plane = entry.plane(state.slab_plane) if state.slab_plane else None
        if plane is not None:
            return plane.bounds
    embedding = entry.embedding(state.embedding)
    if embedding is not None:
        return embedding.bounds
    return entry.bounds


__all__ = [
    "COLOR_BY_GENE",
    "COLOR_BY_REGION",
    "MAP_VIEWS",
    "MAP_VIEW_KEYS",
    "Notice",
    "PANEL_KEYS",
    "QUERY_KEYS",
    "SELECTION_KEYS",
    "SELECTION_VIEWS",
    "ViewSelection",
    "ViewState",
    "across_levels",
    "canonical_species_sections",
    "default_state",
    "frame_bounds",
    "map_view_of",
    "parse_query",
    "side_by_side_datasets",
    "switch_dataset",
    "switch_section",
    "switch_slab_plane",
    "to_query",
]
