"""The shared-server features in one call: proxy headers, security headers, request log, traversal guard, login,
cache, limits, health.

``create_app`` calls :func:`install_server_features` once; the order of the hooks matters and lives here:
the forwarded headers applied only from trusted proxies and the bound on request bodies (WSGI middleware), the
request log first (so refused requests are logged with their status), then the traversal guard (400 before any
route reads a value), then login (401 or a redirect to ``/login``; ``/healthz`` stays open), then the rate limits
and export slots (429, 503).
Security headers are added to every response.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from dash.exceptions import DependencyException
from flask import Flask, g, jsonify

from core.context import LiveContext
from core.errors import DatasetUnavailable
from data_layer.store import DatasetDamaged, remove_unused
from server.auth import (Revocations, TrustedProxies, TrustedProxyFix, UsersFile, install_auth,
                         install_security_headers, make_revocations)
from server.caching import Caches, install_caches
from server.health import StoreProbe, install_health, install_request_log
from server.http import error_response
from server.limits import BodyLimit, RateLimiter, install_limits, install_request_guard, make_rate_limiter
from settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerFeatures:
    """What :func:`install_server_features` installed (kept in ``server.extensions["atlas_viewer_features"]``)."""

    caches: Caches
    limiter: RateLimiter
    users: UsersFile | None
    probe: StoreProbe
    revocations: Revocations | None = None


def install_server_features(app: Any, settings: Settings, atlas: Any = None,
                            export_endpoints: Iterable[str] = (),
                            store_opener: Callable[[Path], Any] | None = None) -> ServerFeatures:
    """Install every shared-server feature on a Dash app (or a bare Flask server).

    Parameters
    ----------
    app : dash.Dash or flask.Flask
        the app; its Flask server gets the hooks and routes.
    settings : Settings
        the app's settings.
    atlas : data_layer.Atlas, optional
        the app's open atlas, reused by ``/healthz`` (otherwise it opens the store once per process).
    export_endpoints : iterable of str
        Flask endpoint names rate-limited as exports (paths under ``/export/`` and ``/download/`` always are).
    store_opener : callable, optional
        how ``/healthz`` opens the store when ``atlas`` is not given (tests).

    Returns
    -------
    ServerFeatures
        the caches, the export limiter, the users file and the health probe.
    """
    server: Flask = getattr(app, "server", app)
    server.wsgi_app = TrustedProxyFix(BodyLimit(server.wsgi_app, settings.max_body_bytes),
                                      TrustedProxies(settings.trusted_proxy_networks),
                                      settings.proxy_count)  # type: ignore[method-assign]
    install_security_headers(server, settings, script_hashes=getattr(app, "csp_hashes", None))
    caches = install_caches(server, settings)  # no hooks; made first for its Redis outage state
    install_request_log(server, settings)
    install_request_guard(server)
    revocations = None
    if settings.auth_enabled:
        per_address = make_rate_limiter(settings, "login", settings.login_attempts_per_min,
                                        max(1, round(settings.login_attempts_per_min)), guard=caches.guard,
                                        what="login attempts")
        per_user = make_rate_limiter(settings, "login-user", settings.login_attempts_per_user_per_min,
                                     max(1, round(2 * settings.login_attempts_per_user_per_min)),
                                     guard=caches.guard, what="login attempts")
        revocations = make_revocations(settings, guard=caches.guard)
        users = install_auth(server, settings, login_limiter=per_address.consume,
                             account_limiter=per_user.consume, revocations=revocations)
    else:
        users = None
    limiter = install_limits(server, settings, guard=caches.guard, export_endpoints=export_endpoints)
    # Dash raises (500) for an unknown library in /_dash-component-suites/...: an unknown file is a 404
    server.register_error_handler(DependencyException, lambda exc: (jsonify({"error": "not found"}), 404))
    # a dataset found damaged while serving (a file truncated or removed under the running server): 503 naming it
    server.register_error_handler(DatasetDamaged, lambda exc: error_response(DatasetUnavailable(exc.dataset)))
    probe = install_health(server, settings, atlas=atlas, caches=caches, opener=store_opener)
    features = ServerFeatures(caches=caches, limiter=limiter, users=users, probe=probe, revocations=revocations)
    server.extensions["atlas_viewer_features"] = features
    return features


def install_live_store(app: Any, live: LiveContext) -> None:
    """Make ``app`` follow its store: each request first lets ``live`` look for a newly prepared catalog (at most
    every ``store_check_s``), then is pinned to the newest version until it ends, so it never mixes two versions;
    ``/healthz`` checks the version served."""
    server: Flask = getattr(app, "server", app)

    @server.before_request
    def _pin_store_version():
        live.refresh()
        g.atlas_viewer_version = live.pin()

    @server.teardown_request
    def _unpin_store_version(exc: BaseException | None = None):
        token = g.pop("atlas_viewer_version", None)
        if token is not None:
            live.unpin(token)

    features = server.extensions.get("atlas_viewer_features")
    if features is not None:
        features.probe.follow(lambda: live.in_use().atlas, lambda: live.in_use().version)
    server.extensions["atlas_viewer_live"] = live


def release_version(version: Any) -> None:
    """What a server does with a store version no request uses any more: unlock its folders (and drop its
    memory maps), then remove the folders no catalog references and no process holds, on a thread of its own."""
    version.atlas.release()
    threading.Thread(target=remove_unused, args=(Path(version.settings.store),), daemon=True,
                     name="atlas-viewer-remove-unused").start()


def register_routes(app: Any, context: Any) -> Any:
    """Serve the pictures, the exports, the short links and the HTTP API of ``context``'s atlas on ``app``'s server.

    Returns
    -------
    server.share.ShareStore
        The short-link store (the page's "Copy link" creates links through it).
    """
    from server import api, export, pictures, share

    pictures.register(app, context)
    export.register(app, context)
    store = share.register(app, context)
    api.register(app, context)
    return store


def warm_up_compiled_code() -> float:
    """Render tiny pictures (categorical, numeric and two genes, with and without a highlight or a spread), encode
    them as PNG (indexed and RGBA), count cells in a viewport, and load the marker kernels
    (``data_layer.analysis.warm_up``) in this process.

    gunicorn's master calls it after loading the app and before forking (``when_ready`` in gunicorn.conf.py), so
    the code compiled on first use (datashader's and numba's, about 2-3 s) is inherited by every worker, including
    the ones booted after a crash, instead of each worker's first users waiting for it.

    Returns
    -------
    float
        seconds spent.
    """
    import numpy as np

    from rendering.blend import render_two_genes
    from rendering.png import encode_png
    from rendering.raster import Viewport, render_categorical, render_numeric

    started = time.perf_counter()
    rng = np.random.default_rng(0)
    # the dtypes the picture route passes: float32 coordinates and values, int32 codes, a boolean highlight
    x, y = rng.random(256, dtype=np.float32), rng.random(256, dtype=np.float32)
    codes = rng.integers(0, 4, 256).astype(np.int32)
    values = rng.random(256, dtype=np.float32)
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"]
    viewport = Viewport(0.0, 1.0, 0.0, 1.0, 32, 32)
    viewport.count_inside(x, y)
    viewport.contains(x, y)
    pictures = [
        render_categorical(x, y, codes, colors, viewport, spread_px=0, y_down=True),
        render_categorical(x, y, codes, colors, viewport, spread_px=1, y_down=True),
        render_categorical(x, y, codes, colors, viewport, highlight=codes == 1, spread_px=1, y_down=True),
        render_numeric(x, y, values, viewport, vmin=0.0, vmax=1.0, spread_px=0, y_down=True),
        render_numeric(x, y, values, viewport, vmin=0.0, vmax=1.0, spread_px=1, y_down=True),
        render_numeric(x, y, values, viewport, vmin=0.0, vmax=1.0, highlight=codes == 1, spread_px=1,
                       y_down=True),
        render_numeric(x, y, np.where(codes == 2, np.float32(np.nan), values), viewport, vmin=0.0, vmax=1.0,
                       spread_px=1, y_down=True),  # a gene not measured in some cells
        render_two_genes(x, y, values, values[::-1].copy(), viewport, range_a=(0.0, 1.0), range_b=(0.0, 1.0),
                         spread_px=1, y_down=True),
    ]
    # PNG: the indexed writer (<= 256 colours) and the RGBA one (a numeric picture has more colours)
    for rgba in pictures:
        encode_png(rgba)
    encode_png(rng.integers(0, 256, (32, 32, 4), dtype=np.uint8))
    from data_layer import analysis

    analysis.warm_up()
    seconds = time.perf_counter() - started
    log.info("compiled code warmed up in %.1f s", seconds)
    return seconds
