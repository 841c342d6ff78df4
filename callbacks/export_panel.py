"""The export panel's and the "Copy link" button's callbacks.

The panel turns the view on screen (the map, the UMAP beside it, or the map card's species side by side or section
gallery) and its options into the SAME parameters the ``/export/`` routes and the HTTP API take (:func:`panel_args`;
``panels=species|gallery`` and the side-by-side ``sections`` for the comparison views), and checks them with the
same parsers, so what the panel says is what the route does. A figure downloads through ``dcc.Download`` (the
export rate limit and any error become a message in the panel); the cells download through links to
``/export/cells.<csv|h5ad>`` (a cell table can be too big for a callback's JSON).

"Copy link" stores the canonical view (``server.share``) and a clientside callback copies ``/s/<id>`` to the
clipboard, showing the link in a text box in any case (the clipboard is refused outside secure contexts).
"""
from __future__ import annotations

import contextlib
import logging
from typing import Any
from urllib.parse import parse_qsl, urlencode

from dash import Input, Output, State, ctx, dcc, no_update
from flask import has_app_context, request

from core.context import ViewerContext
from core.cells import count_cells
from core.export import export_filename, figure_from_args, figure_request
from core.figures import plan_comparison
from server.limits import RateLimited, ServerBusy, check_export_rate, export_slot
from callbacks.navigation import address_state
from callbacks.view import view_inputs, view_of, view_states
from components import ids
from core.catalog import COLOR_BY_GENE
from components.export import COMPARISON_TARGETS, target_options
from core.requests import MAX_EXPORT_CELLS, MAX_SIZE_NUMBER, figure_options
from core.errors import ViewError
from components.layout import gene_options
from core.state import ViewState, to_query
from core.viewport import Window

log = logging.getLogger(__name__)

#: The figure options by name, with their control (component id, property).
OPTION_CONTROLS = {"target": (ids.EXPORT_TARGET, "value"), "format": (ids.EXPORT_FORMAT, "value"),
                   "width": (ids.EXPORT_WIDTH, "value"), "height": (ids.EXPORT_HEIGHT, "value"),
                   "unit": (ids.EXPORT_UNIT, "value"), "dpi": (ids.EXPORT_DPI, "value"),
                   "title": (ids.EXPORT_TITLE, "value"), "legend": (ids.EXPORT_LEGEND, "value"),
                   "outlines": (ids.POLYGONS, "value")}


def _group(kind: type, controls: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """``{name: kind(id, property)}``: one grouped dependency of Dash."""
    return {name: kind(component, prop) for name, (component, prop) in controls.items()}


def _exported_view(kind: type) -> dict[str, Any]:
    """The view controls an export reads (the UMAP's zoom too, for a figure of the UMAP), keyed by id."""
    return {**(view_inputs() if kind is Input else view_states()), ids.UMAP_VIEWPORT: kind(ids.UMAP_VIEWPORT, "data")}


def _compare_sections(kind: type) -> dict[str, Any]:
    """The side-by-side maps' sections keyed by id, in slot order (a ``panels=species`` figure's ``sections``)."""
    return {ids.compare_section(slot): kind(ids.compare_section(slot), "value") for slot in range(ids.COMPARE_SLOTS)}


def target_step(dataset: str | None, mode: str | None, target: str | None, trigger: str | None,
                context: ViewerContext) -> tuple[list[dict], str]:
    """``(options, value)`` of the figure target: the map, the UMAP beside it, and the comparison view the map card
    shows; switching the map card to side by side or the gallery makes it the target, leaving it goes back to
    the map."""
    entry = context.catalog.get(dataset)
    has_umap = bool(entry and entry.spatial and context.umap_dataset(dataset))
    comparison = mode if mode == "species" or (mode == "gallery" and entry is not None and entry.spatial) else None
    valid = {"map"} | ({"umap"} if has_umap else set()) | ({comparison} if comparison else set())
    if comparison and (trigger == ids.MAP_VIEW_MODE or target not in valid):
        value = comparison
    else:
        value = target if target in valid else "map"
    return target_options(has_umap, comparison), value


def panel_view(values: dict[str, Any], target: str, context: ViewerContext) -> ViewState | None:
    """The view to export: the map's, or the UMAP panel's (its dataset, colouring, highlighted term and zoom); for
    a comparison target the map's colouring without its zoom (the panels draw whole sections).

    Returns None when ``target`` is ``"umap"`` and no UMAP is shown beside the map.
    """
    state = view_of(values)
    if target in COMPARISON_TARGETS:
        return state.replace(viewport=None)
    if target != "umap":
        return state
    entry = context.catalog.get(state.dataset)
    umap = context.umap_dataset(state.dataset)
    if entry is None or not entry.spatial or umap is None:
        return None
    color_by, gene, _ = context.umap_color_by(umap, state.color_by, state.gene)
    term, level = state.term, state.term_level
    if not (term and level and context.lookups.term_exists(umap, level, term)):
        term = level = None
    stored = values.get(ids.UMAP_VIEWPORT) or {}
    viewport = Window.from_dict(stored) if stored.get("dataset") == umap else None
    return ViewState(dataset=umap, color_by=color_by, gene=gene, term=term, term_level=level, viewport=viewport)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def compare_sections(values: dict[str, Any], context: ViewerContext) -> list[str | None]:
    """The section of each side-by-side map (``values`` keyed by the side-by-side section dropdowns' ids), one per
    side-by-side dataset."""
    from callbacks.compare import compare_datasets

    return [values.get(ids.compare_section(slot)) or None for slot in range(len(compare_datasets(context)))]


def panel_args(state: ViewState, options: dict[str, Any], sections: list[str | None] | None = None) -> dict[str, str]:
    """The query parameters of the export route for a view and the panel's options.

    Empty options are left out (the route's defaults apply); an empty title means automatic. A comparison target
    adds ``panels`` (and for the species side by side ``sections``: the slots' sections, empty = the first). The
    map's "Region outlines" box unticked (``options["outlines"]`` an empty list) gives ``outlines=0``: the figure
    shows the outlines as the map does.
    """
    args = dict(parse_qsl(to_query(state).lstrip("?"), keep_blank_values=True))
    target = options.get("target")
    if target in COMPARISON_TARGETS:
        args["panels"] = target
        if target == "species" and any(sections or ()):
            args["sections"] = ",".join(section or "" for section in sections)
    for key in ("width", "height", "unit", "dpi", "legend"):
        text = _text(options.get(key))
        if text != "":
            args[key] = text
    title = options.get("title")
    if title not in (None, ""):
        args["title"] = str(title)
    if "outlines" in options and not options["outlines"]:
        args["outlines"] = "0"
    return args


def figure_info(args: dict[str, str], fmt: str, context: ViewerContext) -> str:
    """What the figure will be: its size and, for a comparison, its panels and their common scale.

    Raises
    ------
    ViewError
        As the route would answer.
    """
    if not args.get("panels"):
        figure = figure_options(args, fmt=fmt, max_export_px=context.settings.max_export_px)
        panels = ""
    else:
        state, figure, request = figure_request(context, args, fmt)
        plan = plan_comparison(context, state, figure, request)
        names = [view.title.split("\n")[0] for view in plan.views]
        shown = ", ".join(names) if len(names) <= 3 else f"{len(names)} sections"
        paper_mm = plan.grid.in_per_unit * 25.4
        panels = (f"{COMPARISON_TARGETS[request.kind].strip()}: {shown} · one scale, 1 mm of tissue = "
                  f"{paper_mm:.2g} mm on paper · ")
    return (f"{panels}{figure.width_px:,} × {figure.height_px:,} px · {figure.width_in:.3g} × "
            f"{figure.height_in:.3g} in at {figure.dpi:g} dpi · {fmt.upper()}")


def preview_step(values: dict[str, Any], options: dict[str, Any], genes: list[str] | None,
                 context: ViewerContext) -> tuple:
    """What the panel shows for the current view and options (``values`` may hold the side-by-side sections).

    Returns
    -------
    tuple
        ``(figure info, download disabled, API URL, CSV href, h5ad href, cells info)``.
    """
    fmt = options.get("format") or "png"
    target = options.get("target") or "map"
    state = panel_view(values, target, context)
    if state is None or context.catalog.get(state.dataset) is None:
        message = "No UMAP beside this view." if target == "umap" else "Choose a dataset."
        return message, True, "", None, None, ""
    args = panel_args(state, options, compare_sections(values, context))
    try:
        info = figure_info(args, fmt, context)
        disabled = False
    except ViewError as exc:
        info, disabled = f"Cannot export: {exc}", True
    except Exception as exc:  # a broken view must give a message, not an error in the console
        log.exception("planning the figure of %s failed", state)
        info, disabled = f"Cannot export: {exc}", True
    if target in COMPARISON_TARGETS:
        state = view_of(values)  # the cell links stay those of the map's view
    api = dict(args)
    api["format"] = fmt
    if fmt == "png":
        api["figure"] = "1"
    base = _host()
    api_url = f"{base}/api/render?{urlencode(api)}"
    cell_args = dict(parse_qsl(to_query(state).lstrip("?"), keep_blank_values=True))
    cell_args["genes"] = ",".join(genes or [])
    query = urlencode(cell_args)
    try:
        n_cells = count_cells(context, state)
    except Exception as exc:  # a broken view must give a message, not an error in the console
        log.exception("counting the cells of %s failed", state)
        return info, disabled, api_url, None, None, f"Cannot count the cells: {exc}"
    if n_cells > MAX_EXPORT_CELLS:
        return (info, disabled, api_url, None, None,
                f"{n_cells:,} cells in this view: over the {MAX_EXPORT_CELLS:,} an export may hold; zoom in.")
    cells_info = f"{n_cells:,} cells in this view" + (f" · {len(genes)} gene(s)" if genes else "")
    return (info, disabled, api_url, f"/export/cells.csv?{query}", f"/export/cells.h5ad?{query}", cells_info)


def _host() -> str:
    try:
        return request.host_url.rstrip("/")
    except RuntimeError:  # outside a request (tests calling the step directly)
        return ""


def download_step(values: dict[str, Any], options: dict[str, Any], context: ViewerContext,
                  *, check_rate: bool = True) -> tuple[Any, str]:
    """Render the figure for the Download button: ``(dcc.Download data or no_update, message)``."""
    fmt = options.get("format") or "png"
    target = options.get("target") or "map"
    state = panel_view(values, target, context)
    if state is None:
        return no_update, "No UMAP beside this view."
    try:
        if check_rate:
            check_export_rate()
        # the figure takes one of this worker's export slots, as the export routes do: pictures never wait for it
        with export_slot() if has_app_context() else contextlib.nullcontext():
            data, state = figure_from_args(context, panel_args(state, options, compare_sections(values, context)),
                                           fmt)
    except RateLimited as exc:
        return no_update, f"Too many exports: {exc}."
    except ServerBusy as exc:
        return no_update, f"Not now: {exc}."
    except ViewError as exc:
        return no_update, f"Cannot export: {exc}"
    except Exception as exc:  # the panel says so instead of failing silently
        log.exception("figure export of %s failed", state)
        return no_update, f"The figure could not be made: {exc}"
    name = export_filename(state, "figure", fmt, panels=target if target in COMPARISON_TARGETS else None)
    return dcc.send_bytes(data, name), f"Downloaded {name} ({len(data) / 1e6:.2f} MB)."


def convert_size(unit: str | None, width: Any, height: Any, dpi: Any) -> tuple[Any, Any]:
    """Width and height in the newly chosen unit (pixels <-> inches at ``dpi``)."""
    try:
        dpi = float(dpi)
    except (TypeError, ValueError):
        return no_update, no_update
    if not 0 < dpi <= MAX_SIZE_NUMBER:
        return no_update, no_update

    def convert(value: Any) -> Any:
        try:
            number = float(value)
        except (TypeError, ValueError):
            return no_update
        if not -MAX_SIZE_NUMBER <= number <= MAX_SIZE_NUMBER:  # the route refuses it, naming the field
            return no_update
        if unit == "in":
            return round(number / dpi, 3)
        return int(round(number * dpi))

    return convert(width), convert(height)


def gene_choices(text: str | None, dataset: str | None, chosen: list[str] | None,
                 context: ViewerContext) -> list[dict]:
    """Options of the genes box: the chosen genes, then the matches of ``text`` (the first genes without text)."""
    entry = context.catalog.get(dataset)
    if entry is None or not entry.has_genes:
        return []
    atlas = context.atlas
    text = (text or "").strip()
    if text:
        pairs = [(m["gene_symbol"], m["gene_identifier"]) for m in atlas.search_genes(text, dataset, limit=30)]
    else:
        table = atlas.genes(dataset).head(30)
        pairs = list(zip(table["gene_symbol"].astype(str), table["gene_identifier"].astype(str)))
    chosen_pairs = [(gene, gene) for gene in (chosen or [])]
    return gene_options(chosen_pairs + pairs)


def genes_for_view(dataset: str | None, color_by: str | None, gene: str | None, chosen: list[str] | None,
                   trigger: str | None, context: ViewerContext) -> tuple[list[str], list[dict]]:
    """The genes box after the view changed: a new dataset starts from the map's gene; a new gene is added."""
    entry = context.catalog.get(dataset)
    if entry is None or not entry.has_genes:
        return [], []
    if trigger == ids.DATASET or chosen is None:
        chosen = []
    chosen = [g for g in chosen if g]
    if gene and color_by == COLOR_BY_GENE and gene not in chosen:
        chosen = chosen + [gene]
    return chosen, gene_choices(None, dataset, chosen, context)


def register_panel(app: Any, context: ViewerContext) -> dict:
    """Register the export panel's callbacks on ``app``; returns name -> callback function."""
    @app.callback(
        Output(ids.EXPORT_PANEL, "hidden"),
        Input(ids.EXPORT_OPEN, "n_clicks"),
        Input(ids.EXPORT_CLOSE, "n_clicks"),
        State(ids.EXPORT_PANEL, "hidden"),
        prevent_initial_call=True,
    )
    def toggle_panel(_open, _close, hidden):
        if ctx.triggered_id == ids.EXPORT_CLOSE:
            return True
        return not hidden

    @app.callback(
        Output(ids.EXPORT_TARGET, "options"),
        Output(ids.EXPORT_TARGET, "value"),
        Input(ids.DATASET, "value"),
        Input(ids.MAP_VIEW_MODE, "value"),
        State(ids.EXPORT_TARGET, "value"),
    )
    def targets(dataset, mode, target):
        return target_step(dataset, mode, target, ctx.triggered_id, context)

    @app.callback(
        Output(ids.EXPORT_WIDTH, "value"),
        Output(ids.EXPORT_HEIGHT, "value"),
        Input(ids.EXPORT_UNIT, "value"),
        State(ids.EXPORT_WIDTH, "value"),
        State(ids.EXPORT_HEIGHT, "value"),
        State(ids.EXPORT_DPI, "value"),
        prevent_initial_call=True,
    )
    def change_unit(unit, width, height, dpi):
        return convert_size(unit, width, height, dpi)

    @app.callback(
        Output(ids.EXPORT_FIGURE_INFO, "children"),
        Output(ids.EXPORT_FIGURE, "disabled"),
        Output(ids.EXPORT_API_URL, "children"),
        Output(ids.EXPORT_CELLS_CSV, "href"),
        Output(ids.EXPORT_CELLS_H5AD, "href"),
        Output(ids.EXPORT_CELLS_INFO, "children"),
        inputs=dict(hidden=Input(ids.EXPORT_PANEL, "hidden"), view=_exported_view(Input),
                    options=_group(Input, OPTION_CONTROLS), sections=_compare_sections(Input),
                    genes=Input(ids.EXPORT_GENES, "value")),
        prevent_initial_call=True,  # the panel opens closed
    )
    def preview(hidden, view, options, sections, genes):
        if hidden:
            return (no_update,) * 6
        return preview_step({**view, **sections}, options, genes, context)

    @app.callback(
        Output(ids.EXPORT_DOWNLOAD, "data"),
        Output(ids.EXPORT_FIGURE_INFO, "children", allow_duplicate=True),
        inputs=dict(n_clicks=Input(ids.EXPORT_FIGURE, "n_clicks")),
        state=dict(view=_exported_view(State), options=_group(State, OPTION_CONTROLS),
                   sections=_compare_sections(State)),
        prevent_initial_call=True,
    )
    def download_figure(n_clicks, view, options, sections):
        if not n_clicks:
            return no_update, no_update
        return download_step({**view, **sections}, options, context)

    @app.callback(
        Output(ids.EXPORT_GENES, "value"),
        Output(ids.EXPORT_GENES, "options", allow_duplicate=True),
        Input(ids.DATASET, "value"),
        Input(ids.GENE, "value"),
        State(ids.COLOR_BY, "value"),
        State(ids.EXPORT_GENES, "value"),
        prevent_initial_call="initial_duplicate",
    )
    def genes_follow_view(dataset, gene, color_by, chosen):
        return genes_for_view(dataset, color_by, gene, chosen, ctx.triggered_id, context)

    @app.callback(
        Output(ids.EXPORT_GENES, "options", allow_duplicate=True),
        Input(ids.EXPORT_GENES, "search_value"),
        State(ids.DATASET, "value"),
        State(ids.EXPORT_GENES, "value"),
        prevent_initial_call=True,
    )
    def search_genes(text, dataset, chosen):
        return gene_choices(text, dataset, chosen, context)

    return {"toggle_panel": toggle_panel, "targets": targets, "change_unit": change_unit, "preview": preview,
            "download_figure": download_figure, "genes_follow_view": genes_follow_view,
            "search_genes": search_genes}


# ---------------------------------------------------------------------------------------------- share
def share_step(values: dict[str, Any], n_clicks: int | None, context: ViewerContext, store: Any,
               home: str = "/") -> dict:
    """Store the view on screen and return ``{"path": "/s/<id>", "long": "/?...", "n"}`` (or ``{"error"}``).

    ``values[ids.SELECTION]`` (the selection store) is part of the view when it belongs to it, and so are the map
    card's view (``values[ids.MAP_VIEW_MODE]``), the side-by-side sections (keyed by their dropdowns' ids) and the
    panel across species (``values[ids.ACROSS]``).
    """
    from server.share import ShareError, canonical_query, check_share_rate, share_path

    state = address_state(values, context)
    if context.catalog.get(state.dataset) is None:
        return {"error": "Nothing to link to yet.", "n": n_clicks}
    query = canonical_query(state, context)
    long = home + query
    try:
        if has_app_context():
            check_share_rate()
        share = store.create(query)
    except RateLimited as exc:
        return {"error": f"No short link now ({exc}); the full address works too.", "long": long, "n": n_clicks}
    except ShareError as exc:
        log.warning("short link not made: %s", exc)
        return {"error": f"No short link ({exc}); the full address works too.", "long": long, "n": n_clicks}
    return {"path": share_path(share, home), "long": long, "n": n_clicks}


def register_share_callbacks(app: Any, context: ViewerContext, store: Any, home: str = "/") -> dict:
    """Register "Copy link": the server stores the view, the browser copies the link."""

    @app.callback(
        Output(ids.SHARE_LINK, "data"),
        inputs=dict(n_clicks=Input(ids.SHARE_BUTTON, "n_clicks")),
        state=dict(selection=State(ids.SELECTION, "data"), mode=State(ids.MAP_VIEW_MODE, "value"),
                   across=State(ids.ACROSS, "data"), sections=_compare_sections(State),
                   together=State(ids.COMPARE_TOGETHER, "value"), view=view_states()),
        prevent_initial_call=True,
    )
    def make_link(n_clicks, selection, mode, across, sections, together, view):
        if not n_clicks:
            return no_update
        values = {**view, ids.SELECTION: selection, ids.MAP_VIEW_MODE: mode, ids.COMPARE_TOGETHER: together,
                  ids.ACROSS: across, **sections}
        return share_step(values, n_clicks, context, store, home)

    app.clientside_callback(
        "function (data) { return window.atlasExport.showLink(data); }",
        Output(ids.SHARE_URL, "value"),
        Output(ids.SHARE_BOX, "hidden"),
        Output(ids.SHARE_STATUS, "children"),
        Input(ids.SHARE_LINK, "data"),
        prevent_initial_call=True,
    )

    @app.callback(
        Output(ids.SHARE_BOX, "hidden", allow_duplicate=True),
        Input(ids.URL_QUERY, "data"),
        prevent_initial_call=True,
    )
    def hide_stale_link(_query):
        return True  # the view moved on: the link shown is another view's

    return {"make_link": make_link, "hide_stale_link": hide_stale_link}
