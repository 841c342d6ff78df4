"""``GET /export/figure.<png|svg|pdf>`` and ``GET /export/cells.<csv|h5ad>``: figure and cell export of a view.

They take the address bar's parameters (read strictly by the view's one reader, :func:`core.requests.strict_view`)
plus the export options, and answer with what :mod:`core.export` builds; being under ``/export/`` they go through
the export rate limit (:mod:`server.limits`). The HTTP API (:mod:`server.api`) answers with the same functions.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from core.context import ViewerContext
from core.export import EXPORT_CELLS_PATH, EXPORT_FIGURE_PATH, MIMETYPES, cells_from_args, export_filename, figure_from_args
from core.requests import FIGURE_FORMATS, ExportRequestError


def file_response(data: bytes, fmt: str, filename: str) -> Response:
    """A download response: the file, its type, and ``Content-Disposition: attachment``."""
    response = Response(data, mimetype=MIMETYPES[fmt])
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "private, no-store"
    return response


def error_response(exc: ExportRequestError, status: int = 400) -> Response:
    """``{"error", "parameter"}`` JSON with ``status``."""
    response = jsonify(exc.to_json())
    response.status_code = status
    return response


def request_args() -> dict[str, str]:
    """The current request's query parameters (first value of each)."""
    return {key: request.args.get(key, "") for key in request.args}


def export_blueprint(context: ViewerContext) -> Blueprint:
    """``/export/figure.<fmt>`` and ``/export/cells.<fmt>`` for ``context``'s atlas."""
    blueprint = Blueprint("exports", __name__)

    @blueprint.get(EXPORT_FIGURE_PATH)
    def export_figure_route(fmt: str) -> Response:
        if fmt not in FIGURE_FORMATS:
            return error_response(ExportRequestError("format", f"{fmt[:20]!r} is not one of "
                                                               f"{', '.join(FIGURE_FORMATS)}"))
        try:
            args = request_args()
            data, state = figure_from_args(context, args, fmt)
        except ExportRequestError as exc:
            return error_response(exc)
        return file_response(data, fmt, export_filename(state, "figure", fmt, panels=args.get("panels")))

    @blueprint.get(EXPORT_CELLS_PATH)
    def export_cells_route(fmt: str) -> Response:
        try:
            data, state, _ = cells_from_args(context, request_args(), fmt)
        except ExportRequestError as exc:
            return error_response(exc)
        return file_response(data, fmt, export_filename(state, "cells", fmt))

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
