"""The HTTP API: pictures, figures, cells, gene search and short links for scripts, with the address bar's parameters.

=====================================  ==============================================================================
``GET /api/render``                    the view as a PNG picture (``format=png``, the default) exactly ``width`` x
                                       ``height`` pixels, or a figure (``format=svg|pdf``, or ``figure=1`` for a PNG
                                       figure with axes, legend, scale bar); ``panels=species|gallery`` for the
                                       species side by side or the section gallery as one figure
``GET /api/cells.csv`` / ``.h5ad``     the cells of the view (``genes=A,B``, ``selection=x0,x1,y0,y1``)
``GET /api/genes?q=&dataset=``         gene search (JSON)
``GET /api/datasets``                  what the store holds (JSON): datasets, sections, levels, colourings
``POST /api/share``                    a short link of the view (JSON ``{"id", "path", "url"}``)
=====================================  ==============================================================================

The view parameters are those of the address bar (``dataset, slab_plane, section, color_by, gene, term,
term_level, x0, x1, y0, y1, vmin, vmax``), read by the same parser, strictly: a bad value gets 400 with JSON
``{"error", "parameter"}`` naming it. Renders and cell exports count against the export rate limit (429 with
``Retry-After``). Every size is bounded by ``settings.max_export_px``; nothing from a request reaches a file path.
"""
from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from core.context import ViewerContext
from core.export import cells_from_args, export_filename, figure_from_args, read_view
from core.picture import view_picture
from core.scope import view_window
from core.requests import CELL_FORMATS, FIGURE_FORMATS, read_flag, read_number
from core.errors import DatasetUnavailable, ViewError
from core.state import check_keys
from core.viewport import fit_aspect
from server.http import error_response, file_response, request_args
from server.limits import check_export_rate
from server.pictures import cached_render
from server.share import ShareError, canonical_query, check_share_rate, share_path

log = logging.getLogger(__name__)

API_PREFIX = "/api"
#: Parameters of ``/api/render`` besides the view's.
RENDER_KEYS = ("width", "height", "format", "figure", "unit", "dpi", "title", "legend", "outlines", "panels",
               "sections")
#: Width of a picture when neither ``width`` nor ``height`` is given.
DEFAULT_PICTURE_WIDTH_PX = 1200
#: Gene search results at most.
MAX_GENE_RESULTS = 200


def _json_error(parameter: str, message: str, status: int | None = None) -> Response:
    return error_response(ViewError(parameter, message), status)


def picture_size(args: dict[str, str], aspect: float, max_px: int) -> tuple[int, int]:
    """``(width_px, height_px)`` of a bare picture: both given, one given (the other from the view's aspect
    ``width / height``), or neither (:data:`DEFAULT_PICTURE_WIDTH_PX` wide).

    Raises
    ------
    ViewError
        Naming ``width`` or ``height`` (not a whole number, below 1, over ``max_px``).
    """
    sizes: dict[str, int | None] = {}
    for key in ("width", "height"):
        raw = args.get(key)
        if raw is None or str(raw).strip() == "":
            sizes[key] = None
            continue
        try:
            value = int(str(raw).strip())
        except ValueError:
            raise ViewError(key, f"{str(raw)[:40]!r} is not a whole number of pixels") from None
        if not 1 <= value <= max_px:
            raise ViewError(key, f"{value} px is outside 1..{max_px} (setting max_export_px, "
                                          "ATLAS_VIEWER_MAX_EXPORT_PX)")
        sizes[key] = value
    width, height = sizes["width"], sizes["height"]
    if width is None and height is None:
        width = min(DEFAULT_PICTURE_WIDTH_PX, max_px)
    if height is None:
        height = max(1, round(width / aspect))
        if height > max_px:
            raise ViewError("width", f"gives a height of {height} px for this view, over {max_px}")
    if width is None:
        width = max(1, round(height * aspect))
        if width > max_px:
            raise ViewError("height", f"gives a width of {width} px for this view, over {max_px}")
    return width, height


def render_from_args(context: ViewerContext, args: dict[str, str]) -> tuple[bytes, str, str]:
    """The body of ``/api/render``: ``(bytes, format, download name)``."""
    check_keys(args, RENDER_KEYS)
    fmt = str(args.get("format") or "png").lower()
    if fmt not in FIGURE_FORMATS:
        raise ViewError("format", f"{fmt[:20]!r} is not one of {', '.join(FIGURE_FORMATS)}")
    if fmt != "png" or read_flag(args, "figure"):
        data, state = figure_from_args(context, args, fmt, extra_keys=RENDER_KEYS)
        return data, fmt, export_filename(state, "figure", fmt)
    for key in ("unit", "dpi", "title", "legend", "outlines", "panels", "sections"):
        if args.get(key):
            raise ViewError(key, "applies to figures only (format=svg|pdf, or figure=1)")
    state = read_view(context, args, RENDER_KEYS)
    window = view_window(context, state)
    max_px = context.settings.max_export_px
    width, height = picture_size(args, window.width / window.height, max_px)
    shown = fit_aspect(window, width, height)  # exactly width x height: the window grows to that aspect
    picture = view_picture(state, shown, width, height,
                           numeric=context.catalog.get(state.dataset).is_numeric(state.color_by))
    png = cached_render(context, picture)
    return png, "png", export_filename(state, "picture", "png")


def genes_from_args(context: ViewerContext, args: dict[str, str]) -> list[dict]:
    """The body of ``/api/genes``: matches of ``q`` among the genes of ``dataset`` (the first genes without ``q``)."""
    check_keys(args, ("q", "dataset", "limit"), view=False)
    catalog = context.catalog
    dataset = args.get("dataset") or catalog.default_dataset()
    entry = catalog.get(dataset)
    if dataset in catalog.damaged:
        raise DatasetUnavailable(dataset)
    if entry is None:
        raise ViewError("dataset", f"unknown dataset {str(dataset)[:60]!r} (one of "
                                            f"{', '.join(catalog.names)})")
    if not entry.has_genes:
        raise ViewError("dataset", f"{entry.name} has no expression data")
    limit = int(read_number(args, "limit", 20, 1, MAX_GENE_RESULTS))
    text = str(args.get("q") or "").strip()
    if len(text) > 100:
        raise ViewError("q", "is over 100 characters")
    if text:
        return [{"gene_symbol": str(m["gene_symbol"]), "gene_identifier": str(m["gene_identifier"])}
                for m in context.atlas.search_genes(text, entry.name, limit=limit)]
    table = context.atlas.genes(entry.name).head(limit)
    return [{"gene_symbol": str(s), "gene_identifier": str(i)}
            for s, i in zip(table["gene_symbol"], table["gene_identifier"])]


def datasets_json(context: ViewerContext) -> list[dict]:
    """The body of ``/api/datasets``."""
    out = []
    for entry in context.catalog.datasets.values():
        out.append({
            "dataset": entry.name, "kind": entry.kind, "species": entry.species, "platform": entry.platform,
            "taxonomy": entry.taxonomy, "levels": list(entry.levels), "color_by": entry.color_by_choices(),
            "n_cells": entry.n_cells, "n_genes": entry.n_genes, "umap_dataset": entry.umap_dataset,
            "bounds": list(entry.bounds),
            "slab_planes": [{"slab_plane": p.label, "sections": list(p.sections), "n_cells": p.n_cells}
                            for p in entry.slab_planes],
        })
    return out


def api_blueprint(context: ViewerContext) -> Blueprint:
    """The ``/api`` routes for ``context``'s atlas."""
    blueprint = Blueprint("api", __name__, url_prefix=API_PREFIX)

    def args() -> dict[str, str]:
        return request_args()

    @blueprint.errorhandler(ViewError)
    def _bad_request(exc: ViewError):
        return error_response(exc)

    @blueprint.route("/render", methods=["GET", "POST"])
    def api_render() -> Response:
        check_export_rate()
        data, fmt, filename = render_from_args(context, args())
        response = file_response(data, fmt, filename)
        response.headers["Content-Disposition"] = f'inline; filename="{filename}"'
        return response

    @blueprint.route("/cells.<fmt>", methods=["GET", "POST"])
    def api_cells(fmt: str) -> Response:
        if fmt not in CELL_FORMATS:
            return _json_error("format", f"{fmt[:20]!r} is not one of {', '.join(CELL_FORMATS)}")
        check_export_rate()
        data, state, _ = cells_from_args(context, args(), fmt)
        return file_response(data, fmt, export_filename(state, "cells", fmt))

    @blueprint.get("/genes")
    def api_genes() -> Response:
        return jsonify(genes_from_args(context, args()))

    @blueprint.get("/datasets")
    def api_datasets() -> Response:
        return jsonify(datasets_json(context))

    @blueprint.post("/share")
    def api_share() -> Response:
        store = current_app.extensions.get("atlas_viewer_shares")
        if store is None:
            return _json_error("share", "short links are not available on this server", 503)
        state = read_view(context, args(), ())
        query = canonical_query(state, context)
        check_share_rate()
        try:
            share = store.create(query)
        except ShareError as exc:
            return _json_error("share", str(exc), 503)
        path = share_path(share, request.script_root or "/")
        return jsonify({"id": share, "path": path, "url": request.host_url.rstrip("/") + path, "query": query})

    @blueprint.route("/<path:anything>")
    def api_unknown(anything: str) -> Response:
        return _json_error("path", "no such API route (render, cells.csv, cells.h5ad, genes, datasets, share)",
                           404)

    return blueprint


def register(app: Any, context: ViewerContext) -> Blueprint:
    """Serve the HTTP API on ``app``'s server.

    Returns
    -------
    flask.Blueprint
    """
    blueprint = api_blueprint(context)
    getattr(app, "server", app).register_blueprint(blueprint)
    return blueprint
