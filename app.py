"""The Dash application: ``create_app(settings)`` builds it; ``server`` is the Flask app for gunicorn.

``python app.py`` serves it on the settings' host and port. The app opens the prepared store as a
:class:`data_layer.Atlas` (the only door to the data), snapshots its catalog, lays out the page
(``components``), serves the pictures, exports, short links and API (``server``) and registers one callback
module per feature (``callbacks``); all of them compute through ``core``.
"""
from __future__ import annotations

import html
import logging
import re
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dash import Dash

from callbacks import (compare, export_panel, inspector, legend, map_view, markers, navigation, selection, tree,
                       species, two_genes, umap_view)
from callbacks.guard import install_callback_guard
from components import ids
from components.layout import build_layout, empty_layout
from callbacks.map_view import first_map
from callbacks.tree import expanded_step
from callbacks.umap_view import first_umap
from core.context import LiveContext, ViewerContext
from core.state import ViewState, default_state, parse_query
from server.features import (install_live_store, install_server_features, register_routes, release_version,
                             warm_up_compiled_code)
from settings import Settings

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent


def open_atlas(settings: Settings) -> tuple[Any, str | None]:
    """The store of ``settings`` opened as an Atlas, or ``(None, reason)`` when it cannot be opened."""
    store = Path(settings.store)
    if not store.exists():
        return None, (f"The store {store} does not exist. Write and prepare the demo atlas with "
                      f"`atlas-viewer demo .demo/cache` and `atlas-viewer prepare .demo/cache {store}` "
                      "(or `make run`).")
    try:
        from data_layer import Atlas

        return Atlas.open(store), None
    except Exception as exc:  # the page says why instead of failing to start
        log.exception("cannot open the store %s", store)
        return None, f"The store {store} cannot be opened: {exc}"


#: The partial plotly.js bundle in assets/ (plotly.js-basic-dist-min: scatter and bar, the only trace types the page
#: draws), of the version Dash's own full bundle has. It defines ``window.Plotly`` before the graphs render, so
#: dcc.Graph uses it and never downloads the full bundle: 1.2 MB instead of 4.8 MB (0.40 MB instead of 1.47 MB
#: compressed).
PLOTLY_BUNDLE = "plotly-basic.min.js"


def create_app(settings: Settings | None = None, atlas: Any = None) -> Dash:
    """Build the viewer for the store named in ``settings``.

    Parameters
    ----------
    settings : Settings, optional
        Default: :meth:`Settings.from_env`.
    atlas : data_layer.Atlas, optional
        An already open atlas (tests); default: open ``settings.store``.

    Returns
    -------
    dash.Dash
    """
    settings = settings or Settings.from_env()
    app = Dash(
        __name__,
        title="ABC Atlas viewer",
        update_title=None,
        assets_folder=str(HERE / "assets"),
        # ATLAS_VIEWER_FULL_PLOTLY: leave the partial bundle out, so dcc.Graph loads Dash's full plotly.js
        assets_ignore=re.escape(PLOTLY_BUNDLE) if settings.full_plotly else "",
        # gzip/brotli for the page's JavaScript (plotly.js alone is 4.8 MB, about 1.4 MB compressed) and the
        # callbacks' JSON; pictures are PNG already and are sent as they are (flask-compress's mimetype list)
        compress=True,
    )
    app.server.config["ATLAS_SETTINGS"] = settings
    app.index_string = app.index_string.replace("{%config%}", "{%config%}\n            " + ids.js_ids_script())
    problem = None
    if atlas is None:
        atlas, problem = open_atlas(settings)
    install_server_features(app, settings, atlas=atlas)
    if atlas is None:
        app.layout = empty_layout(problem or "No store.", store_label=str(settings.store))
        return app

    from data_layer import Atlas
    from data_layer.store import catalog_stamp

    # the store's newest prepared version for each new request (a re-prepare is served without a restart)
    context = LiveContext(ViewerContext.build(atlas, settings), opener=Atlas.open,
                          check_every_s=settings.store_check_s, stamp=catalog_stamp, on_release=release_version)
    install_live_store(app, context)
    first_view = FirstView(context, enabled=settings.first_picture)

    def page_layout():
        state, pictures = first_view.of_search(page_search())
        return build_layout(context.catalog, state, store_label=str(settings.store),
                            logout_link=settings.auth_users_file is not None, **pictures)

    app.layout = page_layout
    interpolate_index = app.interpolate_index

    def index_with_preloads(**kwargs):
        # the HTML names the first pictures, so the browser fetches them while it loads the scripts
        kwargs["metas"] = first_view.preload_links(page_search()) + kwargs.get("metas", "")
        return interpolate_index(**kwargs)

    app.interpolate_index = index_with_preloads
    shares = register_routes(app, context)
    for module in (navigation, map_view, umap_view, tree, legend, inspector, selection, markers, two_genes, compare,
                   species):
        module.register(app, context)
    export_panel.register_panel(app, context)
    export_panel.register_share_callbacks(app, context, shares, app.config.requests_pathname_prefix or "/")
    install_callback_guard(app)
    return app


def page_search() -> str | None:
    """The query string of the page being served: the request's own for the HTML, the page's (its same-origin
    ``Referer``) for Dash's layout request; None when it cannot be known (no request, no same-origin referrer)."""
    from flask import has_request_context, request

    if not has_request_context():
        return None
    if request.path.endswith("_dash-layout"):
        referrer = urlsplit(request.referrer or "")
        return referrer.query if referrer.netloc and referrer.netloc == request.host else None
    return request.query_string.decode("utf-8", "replace")


class FirstView:
    """The view a page address opens with and the first figures of its map and UMAP (the layout carries them, the
    HTML preloads their pictures), remembered per query string."""

    def __init__(self, context: ViewerContext, *, enabled: bool = True, remembered: int = 256):
        self.context = context
        self.enabled = enabled
        self._remembered = lru_cache(maxsize=remembered)(self._of_search)

    def of_search(self, search: str | None) -> tuple[ViewState, dict]:
        """What :meth:`_of_search` gives, remembered per store version and query string."""
        return self._remembered(self.context.version, search)

    def _of_search(self, version: str, search: str | None) -> tuple[ViewState, dict]:
        """``(state, {"tree_expanded", "first_map", "first_umap"})``: the address's view (the default view when it
        cannot be read) and what :func:`components.layout.build_layout` takes besides: the tree's terms opened to
        show the address's term, and the first figures (none when disabled or unknown)."""
        catalog, lookups = self.context.catalog, self.context.lookups
        if search is None:
            return default_state(catalog), {}
        state, _ = parse_query(search, catalog, gene_lookup=lookups.gene_symbol, term_lookup=lookups.term_level)
        term = {"level": state.term_level, "name": state.term} if state.term else None
        # the layout holds the address's term, so the tree opens on it from the start
        expanded = expanded_step(ids.TERM, None, state.dataset, term, [], self.context) if term else []
        parts: dict = {"tree_expanded": expanded if isinstance(expanded, list) else []}
        if not self.enabled:
            return state, parts
        try:
            return state, {**parts, "first_map": first_map(state, self.context),
                           "first_umap": first_umap(state.dataset, state.color_by, state.gene, term, self.context)}
        except Exception:  # the callbacks draw it then, and say what went wrong
            log.exception("first figures of %r", search)
            return state, parts

    def preload_links(self, search: str | None) -> str:
        """``<link rel=preload as=image>`` of the first pictures of the page at ``search``."""
        _, parts = self.of_search(search)
        links = []
        for figure, _, _ in filter(None, (parts.get("first_map"), parts.get("first_umap"))):
            source = figure["layout"]["images"][0]["source"]
            links.append(f'<link rel="preload" as="image" fetchpriority="high" href="{html.escape(source)}">')
        return "\n".join(links) + ("\n" if links else "")


def _lazy_server():
    """gunicorn entry point: the Flask server of an app built from the environment."""
    return create_app(Settings.from_env()).server


if __name__ == "__main__":  # pragma: no cover
    _settings = Settings.from_env()
    logging.basicConfig(level=_settings.log_level)
    _app = create_app(_settings)
    warm_up_compiled_code()  # compile the rendering code now, not during the first user's first picture
    _app.run(host=_settings.host, port=_settings.port, debug=_settings.debug)


def __getattr__(name):
    """``app.server`` (gunicorn's ``app:server``) builds the app from the environment on first use,
    so importing ``create_app`` in tests does not open a store."""
    if name == "server":
        globals()["server"] = _lazy_server()
        return globals()["server"]
    raise AttributeError(name)
