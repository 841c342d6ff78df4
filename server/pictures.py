"""``GET /render/map.png``: the datashader picture of a section, slab plane or UMAP, as PNG with cache headers.

Every query parameter is read by the view's one reader (:func:`core.picture.parse_picture_args`, strict); a bad
one gets ``400`` with JSON ``{"error", "parameter"}`` naming it, as on every route, and no request value ever reaches a file path. Pictures are cached by their
plain-value key in the app's picture cache (:mod:`server.caching`) and by the browser (the URL carries every
parameter and the store version).
"""
from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

from flask import Blueprint, Response, request

from core.context import ViewerContext
from core.picture import PICTURE_PATH, PictureRequest, parse_picture_args
from core.errors import DatasetUnavailable, ViewError
from core.render import render_png
from data_layer.store import DatasetDamaged
from server.http import error_response, request_args

log = logging.getLogger(__name__)

#: Seconds a browser or proxy may keep a picture (the URL changes with the store version).
MAX_AGE_S = 24 * 3600


def picture_blueprint(context: ViewerContext) -> Blueprint:
    """The Flask blueprint serving :data:`core.picture.PICTURE_PATH` for ``context``'s atlas."""
    blueprint = Blueprint("pictures", __name__)

    @blueprint.get(PICTURE_PATH)
    def map_png() -> Response:
        try:
            picture = parse_picture_args(
                request_args(),
                context.catalog,
                max_px=context.settings.max_image_px,
                gene_lookup=context.lookups.gene_symbol,
                term_lookup=context.lookups.term_level,
            )
        except ViewError as exc:
            return error_response(exc)
        started = time.perf_counter()
        key = picture.cache_key()
        etag = hashlib.sha1(repr((context.version, key)).encode()).hexdigest()[:20]
        if request.if_none_match and etag in request.if_none_match:
            return Response(status=304, headers={"ETag": etag})
        try:
            png = cached_render(context, picture)
        except DatasetDamaged as exc:  # found damaged while serving: 503 naming the dataset, not a 500
            return error_response(DatasetUnavailable(exc.dataset))
        except Exception:  # a broken picture must say so, not hang the map
            log.exception("rendering %s failed", request.full_path)
            return Response("The picture could not be rendered; see the server log.\n", status=500,
                            mimetype="text/plain")
        log.debug("picture %sx%s %s in %.1f ms", picture.width_px, picture.height_px, picture.dataset,
                  (time.perf_counter() - started) * 1000)
        response = Response(png, mimetype="image/png")
        response.headers["Cache-Control"] = f"public, max-age={MAX_AGE_S}"
        response.headers["ETag"] = etag
        return response

    return blueprint


def cached_render(context: ViewerContext, picture: PictureRequest) -> bytes:
    """The PNG of ``picture`` from the app's picture cache, rendered (and stored) on a miss; the key holds the store
    version, so a server that switched to a newly prepared store never serves a picture of the old one."""
    from server.caching import picture_cache

    return picture_cache().get_or_render((context.version, *picture.cache_key()),
                                         lambda: render_png(context, picture))


def register(app: Any, context: ViewerContext) -> Blueprint:
    """Serve the pictures of ``context``'s atlas on ``app``'s Flask server.

    Returns
    -------
    flask.Blueprint
        The registered blueprint.
    """
    blueprint = picture_blueprint(context)
    getattr(app, "server", app).register_blueprint(blueprint)
    return blueprint
