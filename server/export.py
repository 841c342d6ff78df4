"""``GET /export/figure.<png|svg|pdf>``, ``GET /export/cells.<csv|h5ad>``, ``GET /export/markers.csv`` and
``GET /export/across-markers.csv``: figure and cell export of a view, the table of an A-versus-B comparison
(:mod:`core.markers`) and the markers of a term across species (:mod:`core.species`).

They take the address bar's parameters (read strictly by the view's one reader, :func:`core.requests.strict_view`)
plus the export options, and answer with what :mod:`core.export` builds; being under ``/export/`` they go through
the export rate limit (:mod:`server.limits`). The HTTP API (:mod:`server.api`) answers with the same functions.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

from core.context import ViewerContext
from core.export import EXPORT_CELLS_PATH, EXPORT_FIGURE_PATH, cells_from_args, export_filename, figure_from_args
from core.markers import EXPORT_MARKERS_PATH, markers_csv_from_args
from core.species import EXPORT_ACROSS_MARKERS_PATH, markers_csv_from_args as across_markers_csv_from_args
from core.requests import FIGURE_FORMATS
from core.errors import ViewError
from server.http import error_response, file_response, request_args


def export_blueprint(context: ViewerContext) -> Blueprint:
    """``/export/figure.<fmt>``, ``/export/cells.<fmt>`` and ``/export/markers.csv`` for ``context``'s atlas."""
    blueprint = Blueprint("exports", __name__)

    @blueprint.route(EXPORT_FIGURE_PATH, methods=["GET", "POST"])
    def export_figure_route(fmt: str) -> Response:
        if fmt not in FIGURE_FORMATS:
            return error_response(ViewError("format", f"{fmt[:20]!r} is not one of "
                                                               f"{', '.join(FIGURE_FORMATS)}"))
        try:
            args = request_args()
            data, state = figure_from_args(context, args, fmt)
        except ViewError as exc:
            return error_response(exc)
        return file_response(data, fmt, export_filename(state, "figure", fmt, panels=args.get("panels")))

    @blueprint.route(EXPORT_CELLS_PATH, methods=["GET", "POST"])
    def export_cells_route(fmt: str) -> Response:
        try:
            data, state, _ = cells_from_args(context, request_args(), fmt)
        except ViewError as exc:
            return error_response(exc)
        return file_response(data, fmt, export_filename(state, "cells", fmt))

    @blueprint.route(EXPORT_MARKERS_PATH, methods=["GET", "POST"])
    def export_markers_route() -> Response:
        try:
            data, filename = markers_csv_from_args(context, request_args())
        except ViewError as exc:
            return error_response(exc)
        return file_response(data, "csv", filename)

    @blueprint.route(EXPORT_ACROSS_MARKERS_PATH, methods=["GET", "POST"])
    def export_across_markers_route() -> Response:
        try:
            data, filename = across_markers_csv_from_args(context, request_args())
        except ViewError as exc:
            return error_response(exc)
        return file_response(data, "csv", filename)

    return blueprint


def register(app: Any, context: ViewerContext) -> Blueprint:
    """Serve the export routes on ``app``'s server.

    Returns
    -------
    flask.Blueprint
    """
    blueprint = export_blueprint(context)
    getattr(app, "server", app).register_blueprint(blueprint)
    return blueprint
