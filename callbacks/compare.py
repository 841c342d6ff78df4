"""Species side by side and the section gallery: two views of the map card besides the single map.

* **Species side by side**: one map per spatial species (human, macaque, marmoset; the first dataset of each),
  one section each (its first section by default, a dropdown per map), all coloured like the main map: the same
  taxonomy level, the same gene matched by symbol (a species without it says so and shows the default level), the
  same highlighted term when its level is shared across species (down to Group), and for a gene one shared colour
  range. Every map is at one physical scale (the same mm per screen pixel: the largest section fits its map,
  smaller ones are drawn smaller, centred) with the same scale bar, and one legend below counts every term in
  each species' section. With "Zoom together" (ticked by default: the maps are there to be compared at one scale,
  and a zoom that left the others behind would break that scale) zooming or panning one map brings the others to
  the same scale, each centred on the same relative point of its own section (``compare-zoom`` store); unticked,
  each map zooms on its own (its own viewport store).
* **Section gallery**: a small picture (:data:`components.analysis_panels.GALLERY_SIZE_PX`) of every section of
  the current dataset, from the picture route and coloured like the map; clicking one opens it in the map.
* **The address**: the view mode (``view=species|gallery``), the side-by-side sections (``sections=``) and
  maps zooming each on its own (``zoom_together=0``) are part of the address (``core.state``; written by
  ``callbacks.navigation``); loading an address, a short link or back/forward sets the mode, the sections and
  "Zoom together" again (:func:`address_view_step`, :func:`address_together_step`).
"""
from __future__ import annotations

import logging
from typing import Any

from dash import Input, Output, State, ctx, no_update

from core.context import ViewerContext, term_counts
from callbacks.view import place_of, view_inputs
from components import ids
from components.analysis_panels import GALLERY_SIZE_PX, gallery_html, shared_legend_html, two_gene_legend
from core.catalog import COLOR_BY_GENE, COLOR_BY_TWO_GENES
from components.figures import layout_image_of, message_figure, picture_figure, view_patch
from components.layout import notice_children
from components.panels import gene_legend
from core.compare import (bar_length, compare_datasets, first_section, fit_scale, gallery_sections,  # noqa: F401
                          hand_gene_range, panel_window, section_choices, shared_gene_range, side_by_side_range,
                          side_panels, slot_colouring, slot_title, slot_window, together_zoom)
from core.state import MAP_VIEWS, parse_query
from core.viewport import padded, window_from_relayout

log = logging.getLogger(__name__)

#: Colour map of gene pictures (the render route's default).
GENE_CMAP = "viridis"
MODE_MAP, MODE_SPECIES, MODE_GALLERY = MAP_VIEWS
#: The main view's colouring that the side-by-side maps and the gallery follow.
COLOURING = (ids.COLOR_BY, ids.GENE, ids.TERM, ids.GENE_VMIN, ids.GENE_VMAX)


def is_together(value: Any) -> bool:
    """Whether the "Zoom together" checklist is ticked (its value ``["on"]``)."""
    return isinstance(value, (list, tuple)) and "on" in value


def slot_step(slot: int, mode: str | None, sections: list, color_by: str | None, gene: str | None,
              term: dict | None, two_genes: dict | None, vmin: Any, vmax: Any, viewport: dict | None,
              sizes: list, drawn_frame: str | None, context: ViewerContext, *, together: bool = True,
              zoom: dict | None = None) -> tuple[Any, Any, Any]:
    """``(figure or Patch, title, frame key)`` of side-by-side map ``slot`` (no_update while the view is hidden).

    Every map is at one physical scale (:func:`core.compare.slot_window`), its picture rendered at the
    resolution of its plot (``sizes``: every slot's plot size, since the largest section decides the scale) and its
    scale bar as long as the other maps' at the same scale.
    """
    datasets = compare_datasets(context)
    if mode != MODE_SPECIES or slot >= len(datasets):
        return no_update, no_update, no_update
    dataset = datasets[slot]
    entry = context.catalog.get(dataset)
    panels = side_panels(context, list(sections), list(sizes))
    if slot >= len(panels):
        return message_figure(f"{dataset} has no sections"), entry.species or dataset, None
    panel = panels[slot]
    colouring = slot_colouring(context, dataset, color_by, gene, term, two_genes)
    window = slot_window(panels, slot, together, zoom, viewport)
    bar = bar_length(panels, window, panel)
    low = high = None
    if colouring.color_by == COLOR_BY_GENE or entry.is_numeric(colouring.color_by):  # one range over the maps
        low, high = side_by_side_range(context, datasets, colouring.color_by, gene, vmin, vmax) or (None, None)
    title = slot_title(context, dataset, panel.section, colouring)
    try:
        image = layout_image_of(context.picture_url(
            dataset=dataset, section=panel.section, slab_plane=None, color_by=colouring.color_by,
            gene=colouring.gene, term=colouring.term, window=window, frame=panel.frame, size=panel.size, vmin=low,
            vmax=high, extra=colouring.extra,
        ), y_down=True)
    except Exception as exc:  # a bad value must give a message, never a blank panel
        log.exception("side-by-side picture of %s failed", dataset)
        return message_figure(f"The map could not be drawn: {exc}"), title, None
    if panel.key != drawn_frame:
        figure = picture_figure(frame=panel.frame, window=window, image=image, y_down=True, with_scale_bar=True,
                                axis_titles=("x (mm)", "y (mm)"), uirevision=f"compare-{slot}", bar_length=bar)
        figure["layout"]["margin"] = {"l": 44, "r": 8, "t": 6, "b": 36}
        figure["layout"]["dragmode"] = "pan"
        return figure, title, panel.key
    return view_patch(window, image, y_down=True, with_scale_bar=True, bar_length=bar), title, no_update


def zoom_step(slot: int, relayout: dict | None, together: bool, zoom: dict | None, viewports: list,
              sections: list, sizes: list, context: ViewerContext) -> tuple[list, Any]:
    """``(viewport store per slot, shared zoom store)`` after a zoom or pan of side-by-side map ``slot``.

    Zoomed together, the map's new scale (as a magnification of the fitting scale) and the relative point of its
    section at its centre become the shared zoom that every map follows; otherwise only that map's own viewport
    changes. A reset (double click) returns to the fitting view.
    """
    viewport_out: list = [no_update] * ids.COMPARE_SLOTS
    panels = side_panels(context, list(sections), list(sizes))
    if slot >= len(panels):
        return viewport_out, no_update
    panel = panels[slot]
    viewport = viewports[slot] if slot < len(viewports) else None
    old = slot_window(panels, slot, together, zoom, viewport)
    new = window_from_relayout(relayout, old, panel_window(panel, fit_scale(panels)))
    if new is None or new == old:
        return viewport_out, no_update
    if together:
        shared = together_zoom(panel, new, fit_scale(panels))
        return viewport_out, (no_update if shared == zoom else shared)
    fit = panel_window(panel, fit_scale(panels))
    if max(abs(a - b) for a, b in zip(new, fit)) < 1e-9 * max(fit.width, fit.height):
        viewport_out[slot] = None if viewport is not None else no_update
    else:
        viewport_out[slot] = {"frame": panel.key, **new.to_dict()}
    return viewport_out, no_update


def together_step(together: bool, zoom: dict | None, sections: list, sizes: list,
                  context: ViewerContext) -> tuple[list, Any]:
    """``(viewport store per slot, shared zoom store)`` when "Zoom together" is ticked or unticked.

    Unticking keeps every map where it is (each keeps the shared zoom as its own viewport); ticking puts every map
    back at the one fitting scale, centred, from where they zoom together.
    """
    panels = side_panels(context, list(sections), list(sizes))
    viewport_out: list = [None] * ids.COMPARE_SLOTS
    if not together and zoom:
        for slot, panel in enumerate(panels):
            viewport_out[slot] = {"frame": panel.key, **slot_window(panels, slot, True, zoom, None).to_dict()}
    return viewport_out, None


def slots_step(mode: str | None, sections: list, context: ViewerContext) -> tuple[list, list, list, list]:
    """Per slot: ``(hidden, section options, section value)`` lists for the side-by-side view."""
    datasets = compare_datasets(context)
    hidden, options, values = [], [], []
    for slot in range(ids.COMPARE_SLOTS):
        if slot >= len(datasets):
            hidden.append(True)
            options.append([])
            values.append(None)
            continue
        dataset = datasets[slot]
        hidden.append(False)
        options.append(section_choices(context, dataset))
        current = sections[slot] if slot < len(sections) else None
        entry = context.catalog.get(dataset)
        values.append(current if current in entry.sections else first_section(context, dataset))
    return hidden, options, values


def legend_step(mode: str | None, sections: list, color_by: str | None, gene: str | None, term: dict | None,
                two_genes: dict | None, vmin: Any, vmax: Any, context: ViewerContext) -> Any:
    """The one legend of the side-by-side maps: terms (or regions) with their cells in each species' section,
    or the shared gene colour bar, or the 2-D key of two genes."""
    from rendering.colors import NAN_GREY, ZERO_GREY, colorscale_stops

    datasets = compare_datasets(context)
    if mode != MODE_SPECIES or not datasets:
        return no_update
    colourings = [slot_colouring(context, d, color_by, gene, term, two_genes) for d in datasets]
    kinds = {c.color_by for c in colourings}
    if COLOR_BY_TWO_GENES in kinds:
        from rendering.blend import legend_2d_png

        main = next(c for c, d in zip(colourings, datasets) if c.color_by == COLOR_BY_TWO_GENES)
        dataset = datasets[colourings.index(main)]
        range_a = context.gene_range(dataset, main.gene)
        range_b = context.gene_range(dataset, main.extra["gene2"])
        key = legend_2d_png(96, range_a=range_a, range_b=range_b, gene_a=main.gene, gene_b=main.extra["gene2"])
        return two_gene_legend(key.to_dict()["src"], main.gene, main.extra["gene2"], range_a, range_b,
                               main.extra.get("blend_mode", "blend"),
                               (main.extra.get("threshold_a") or 0.0, main.extra.get("threshold_b") or 0.0))
    if COLOR_BY_GENE in kinds:
        shown = side_by_side_range(context, datasets, COLOR_BY_GENE, gene, vmin, vmax)
        if shown is None:
            return []
        return gene_legend(str(gene), colorscale_stops(GENE_CMAP), *shown, default=hand_gene_range(vmin, vmax) is None,
                           nan_color=NAN_GREY, zero_color=ZERO_GREY)
    level = next(iter(kinds)) if len(kinds) == 1 else None
    if level is not None and any(context.catalog.get(d).is_numeric(level) for d in datasets):
        shown = side_by_side_range(context, datasets, level, gene, vmin, vmax)
        if shown is None:
            return []
        return gene_legend(level, colorscale_stops(GENE_CMAP), *shown, default=hand_gene_range(vmin, vmax) is None,
                           nan_color=NAN_GREY,
                           zero_color=None, unit="per cell",
                           hint="range: 1st–99th percentile of cells, over the species shown")
    if level is None:
        return [f"The maps are coloured differently: {', '.join(sorted(kinds))}."]
    species = [context.catalog.get(d).species or d for d in datasets]
    totals: dict[str, list[int]] = {}
    colours: dict[str, str] = {}
    rank: dict[str, tuple[int, int]] = {}  # taxonomy order: the first map's categories, then the others' own
    for slot, dataset in enumerate(datasets):
        section = sections[slot] if slot < len(sections) and sections[slot] else first_section(context, dataset)
        cells = context.atlas.cells(dataset, section=section)
        counts = term_counts(cells, level)
        categories = [str(c) for c in cells[level].cat.categories]
        palette = list(context.atlas.colors(dataset, level))
        for position, (name, colour) in enumerate(zip(categories, palette)):
            rank.setdefault(name, (slot, position))
            if name in counts:
                totals.setdefault(name, [0] * len(datasets))[slot] = counts[name]
                colours.setdefault(name, colour)
    items = sorted(totals.items(), key=lambda item: rank[item[0]])
    highlighted = term.get("name") if term and term.get("level") == level else None
    return shared_legend_html(level, [(name, colours[name], counts) for name, counts in items], species,
                              highlighted=highlighted)


def address_view_step(search: str | None, mode: str | None, sections: list,
                      context: ViewerContext) -> tuple[Any, list, list]:
    """``(view mode, per-slot section options, per-slot section values)`` of an address (loaded, back/forward or a
    short link): the address's ``view`` and, for the side by side, its ``sections`` (empty = the first section).

    ``no_update`` where the controls already show it, so an address equal to the view changes nothing; the
    side-by-side dropdowns are left alone when the address is not the side by side (they keep the sections chosen
    before, as switching the mode by hand does).
    """
    state, _ = parse_query(search, context.catalog, gene_lookup=context.lookups.gene_symbol,
                           term_lookup=context.lookups.term_level)
    new_mode = no_update if state.map_view == (mode or MODE_MAP) else state.map_view
    options: list = [no_update] * ids.COMPARE_SLOTS
    values: list = [no_update] * ids.COMPARE_SLOTS
    if state.map_view == MODE_SPECIES:
        for slot, dataset in enumerate(compare_datasets(context)):
            wanted = state.species_sections[slot] if slot < len(state.species_sections) else None
            wanted = wanted or first_section(context, dataset)
            if slot >= len(sections) or sections[slot] != wanted:
                options[slot] = section_choices(context, dataset)  # a value needs its option in the dropdown
                values[slot] = wanted
    return new_mode, options, values


def address_together_step(search: str | None, together: Any, context: ViewerContext) -> Any:
    """The "Zoom together" checklist of an address (``zoom_together=0``: unticked; absent: ticked), no_update
    when it already shows it or the address is not the side by side."""
    state, _ = parse_query(search, context.catalog, gene_lookup=context.lookups.gene_symbol,
                           term_lookup=context.lookups.term_level)
    if state.map_view != MODE_SPECIES or state.zoom_together == is_together(together):
        return no_update
    return ["on"] if state.zoom_together else []


def species_notice_step(mode: str | None, dataset: str | None, context: ViewerContext) -> list[str]:
    """Why the side by side does not show the dataset chosen in the main view (empty when it does, or for another
    view): a single-cell dataset has no sections to put beside the others, a second dataset of a species gives way
    to that species' first one, and a store of one species has nothing to compare."""
    entry = context.catalog.get(dataset)
    if mode != MODE_SPECIES or entry is None:
        return []
    datasets = compare_datasets(context)
    if dataset in datasets and len(datasets) > 1:
        return []
    shown = ", ".join(f"{context.catalog.get(d).species or d} ({d})" for d in datasets)
    if len(datasets) < 2:
        return [f"The species side by side does not apply to this store: it holds sections of one species only "
                f"({shown or 'none'}), nothing to compare with."]
    if not entry.spatial or not entry.sections:
        species = entry.species or "several species"
        same = entry.species and any(context.catalog.get(d).species == entry.species for d in datasets)
        missing = f", and the store holds no {entry.species} sections" if entry.species and not same else ""
        return [f"The species side by side does not apply to {entry.name}: it is a single-cell dataset "
                f"({species}) without sections{missing}. These maps are other datasets' sections, one per "
                f"species: {shown}."]
    first = next((d for d in datasets if (context.catalog.get(d).species or d) == (entry.species or dataset)), None)
    return [f"{entry.name} is not side by side: each species shows its first dataset of sections"
            + (f" ({first} for {entry.species})" if first else "") + f": {shown}."]


def mode_step(mode: str | None) -> tuple[str, bool, bool]:
    """``(map card class, side-by-side hidden, gallery hidden)`` for a view mode."""
    mode = mode if mode in (MODE_SPECIES, MODE_GALLERY) else MODE_MAP
    return f"panel map-panel mode-{mode}", mode != MODE_SPECIES, mode != MODE_GALLERY


# ---------------------------------------------------------------------------------------------- gallery
def gallery_step(mode: str | None, dataset: str | None, section: str | None, color_by: str | None,
                 gene: str | None, term: dict | None, two_genes: dict | None, vmin: Any, vmax: Any,
                 context: ViewerContext) -> Any:
    """The gallery: every section of ``dataset`` as a small picture coloured like the map."""
    if mode != MODE_GALLERY:
        return no_update
    entry = context.catalog.get(dataset)
    if entry is None:
        return gallery_html([])
    if not entry.spatial:
        return gallery_html([], empty=f"The gallery does not apply to {entry.name}: it has no sections (its cells "
                                      f"are drawn as a UMAP). Choose a spatial dataset to see its sections.")
    colouring = slot_colouring(context, entry.name, color_by, gene, term, two_genes, shared_only=False)
    low = high = None
    if colouring.color_by == COLOR_BY_GENE:
        low, high = hand_gene_range(vmin, vmax) or (None, None)
    width, height = GALLERY_SIZE_PX
    items = []
    for label in gallery_sections(context, entry.name):
        info = entry.sections[label]
        frame = padded(info.bounds)
        image = layout_image_of(context.picture_url(
            dataset=entry.name, section=label, slab_plane=None, color_by=colouring.color_by,
            gene=colouring.gene, term=colouring.term, window=frame, frame=frame,
            size={"width_px": width, "height_px": height}, vmin=low, vmax=high, extra=colouring.extra), y_down=True)
        items.append({"section": label, "src": image["source"] if image else None, "n_cells": info.n_cells,
                      "current": label == section})
    return gallery_html(items)


def gallery_pick_step(picked: dict | None, dataset: str | None, context: ViewerContext) -> tuple[Any, Any]:
    """``(section value, view mode)`` after a click on a gallery picture: the section opens in the map."""
    entry = context.catalog.get(dataset)
    section = (picked or {}).get("section")
    if entry is None or section not in entry.sections:
        return no_update, no_update
    return section, MODE_MAP


# ---------------------------------------------------------------------------------------------- register
def register(app: Any, context: ViewerContext) -> dict:
    """Register the side-by-side and gallery callbacks on ``app``; returns name -> callback function."""
    slots = range(ids.COMPARE_SLOTS)
    callbacks: dict = {}

    @app.callback(
        Output(ids.MAP_PANEL, "className"),
        Output(ids.COMPARE_VIEW, "hidden"),
        Output(ids.GALLERY_VIEW, "hidden"),
        Input(ids.MAP_VIEW_MODE, "value"),
    )
    def switch_view(mode):
        return mode_step(mode)

    @app.callback(
        Output(ids.COMPARE_NOTICE, "children"),
        Input(ids.MAP_VIEW_MODE, "value"),
        Input(ids.DATASET, "value"),
        prevent_initial_call=True,  # the page opens on the one map
    )
    def species_notice(mode, dataset):
        return notice_children(species_notice_step(mode, dataset, context))

    @app.callback(
        Output(ids.MAP_VIEW_MODE, "value", allow_duplicate=True),
        *[Output(ids.compare_section(s), "options", allow_duplicate=True) for s in slots],
        *[Output(ids.compare_section(s), "value", allow_duplicate=True) for s in slots],
        Input(ids.URL, "search"),
        State(ids.MAP_VIEW_MODE, "value"),
        *[State(ids.compare_section(s), "value") for s in slots],
        prevent_initial_call="initial_duplicate",
    )
    def view_from_address(search, mode, *sections):
        new_mode, options, values = address_view_step(search, mode, list(sections), context)
        return (new_mode, *options, *values)

    @app.callback(
        Output(ids.COMPARE_TOGETHER, "value"),
        Input(ids.URL, "search"),
        State(ids.COMPARE_TOGETHER, "value"),
    )
    def together_from_address(search, together):
        return address_together_step(search, together, context)

    @app.callback(
        *[Output(ids.compare_slot(s), "hidden") for s in slots],
        *[Output(ids.compare_section(s), "options") for s in slots],
        *[Output(ids.compare_section(s), "value") for s in slots],
        Input(ids.MAP_VIEW_MODE, "value"),
        *[State(ids.compare_section(s), "value") for s in slots],
        prevent_initial_call=True,  # the page opens on the one map; the address's view mode arrives as a change
    )
    def setup_slots(mode, *sections):
        if mode != MODE_SPECIES:
            return (no_update,) * (3 * len(slots))
        hidden, options, values = slots_step(mode, list(sections), context)
        return (*hidden, *options, *values)

    for slot in slots:
        def draw(mode, sections, view, two_genes, viewport, sizes, together, zoom, drawn, slot=slot):
            return slot_step(slot, mode, list(sections), view[ids.COLOR_BY], view[ids.GENE], view[ids.TERM],
                             two_genes, view[ids.GENE_VMIN], view[ids.GENE_VMAX], viewport, list(sizes), drawn,
                             context, together=is_together(together), zoom=zoom)

        app.callback(
            Output(ids.compare_graph(slot), "figure"),
            Output(ids.compare_title(slot), "children"),
            Output(ids.compare_frame(slot), "data"),
            inputs=dict(mode=Input(ids.MAP_VIEW_MODE, "value"),
                        sections=[Input(ids.compare_section(s), "value") for s in slots],
                        view=view_inputs(*COLOURING), two_genes=Input(ids.TWO_GENES, "data"),
                        viewport=Input(ids.compare_viewport(slot), "data"),
                        sizes=[Input(ids.compare_size(s), "data") for s in slots],
                        together=Input(ids.COMPARE_TOGETHER, "value"), zoom=Input(ids.COMPARE_ZOOM, "data")),
            state=dict(drawn=State(ids.compare_frame(slot), "data")),
            prevent_initial_call=True,
        )(draw)

        app.clientside_callback(
            f"function (figure) {{ return window.atlasViewer.watchSize('{ids.compare_graph(slot)}', "
            f"'{ids.compare_size(slot)}'); }}",
            Output(ids.compare_size(slot), "data"),
            Input(ids.compare_graph(slot), "figure"),
        )
        callbacks[f"draw_slot_{slot}"] = draw

    @app.callback(
        *[Output(ids.compare_viewport(s), "data") for s in slots],
        Output(ids.COMPARE_ZOOM, "data"),
        inputs=dict(relayouts=[Input(ids.compare_graph(s), "relayoutData") for s in slots],
                    together=Input(ids.COMPARE_TOGETHER, "value")),
        state=dict(viewports=[State(ids.compare_viewport(s), "data") for s in slots],
                   zoom=State(ids.COMPARE_ZOOM, "data"),
                   sections=[State(ids.compare_section(s), "value") for s in slots],
                   sizes=[State(ids.compare_size(s), "data") for s in slots]),
        prevent_initial_call=True,
    )
    def follow_zoom(relayouts, together, viewports, zoom, sections, sizes):
        trigger = ctx.triggered_id
        if trigger == ids.COMPARE_TOGETHER:
            viewport_out, zoom_out = together_step(is_together(together), zoom, sections, sizes, context)
        else:
            slot = next((s for s in slots if ids.compare_graph(s) == trigger), None)
            if slot is None:
                return (no_update,) * (len(slots) + 1)
            viewport_out, zoom_out = zoom_step(slot, relayouts[slot], is_together(together), zoom, viewports,
                                               sections, sizes, context)
        return (*viewport_out, zoom_out)

    callbacks["follow_zoom"] = follow_zoom

    @app.callback(
        Output(ids.COMPARE_LEGEND, "children"),
        inputs=dict(mode=Input(ids.MAP_VIEW_MODE, "value"),
                    sections=[Input(ids.compare_section(s), "value") for s in slots],
                    view=view_inputs(*COLOURING), two_genes=Input(ids.TWO_GENES, "data")),
        prevent_initial_call=True,
    )
    def shared_legend(mode, sections, view, two_genes):
        return legend_step(mode, list(sections), view[ids.COLOR_BY], view[ids.GENE], view[ids.TERM], two_genes,
                           view[ids.GENE_VMIN], view[ids.GENE_VMAX], context)

    @app.callback(
        Output(ids.GALLERY, "children"),
        inputs=dict(mode=Input(ids.MAP_VIEW_MODE, "value"), view=view_inputs(ids.DATASET, ids.SECTION, *COLOURING),
                    two_genes=Input(ids.TWO_GENES, "data")),
        prevent_initial_call=True,
    )
    def draw_gallery(mode, view, two_genes):
        dataset, _, section = place_of(view)
        return gallery_step(mode, dataset, section, view[ids.COLOR_BY], view[ids.GENE], view[ids.TERM], two_genes,
                            view[ids.GENE_VMIN], view[ids.GENE_VMAX], context)

    @app.callback(
        Output(ids.SECTION, "value", allow_duplicate=True),
        Output(ids.MAP_VIEW_MODE, "value"),
        Input(ids.GALLERY_PICKED, "data"),
        State(ids.DATASET, "value"),
        prevent_initial_call=True,
    )
    def open_section(picked, dataset):
        return gallery_pick_step(picked, dataset, context)

    callbacks.update({"species_notice": species_notice, "switch_view": switch_view, "view_from_address": view_from_address,
                      "together_from_address": together_from_address,
                      "setup_slots": setup_slots, "shared_legend": shared_legend,
                      "draw_gallery": draw_gallery, "open_section": open_section})
    return callbacks
