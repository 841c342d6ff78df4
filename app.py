"""The Dash application: ``create_app(settings)`` builds it; ``server`` is the Flask app for gunicorn.

``python app.py`` serves it on the settings' host and port. The app opens the prepared store as a
:class:`data_layer.Atlas` (the only door to the data), snapshots its catalog, lays out the page
(``components``), serves the pictures, exports, short links and API (``server``) and registers one callback
module per feature (``callbacks``); all of them compute through ``core``.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from dash import Dash

from callbacks import (compare, export_panel, inspector, legend, map_view, markers, navigation, selection, tree,
                       species, two_genes, umap_view)
from callbacks.guard import install_callback_guard
from components import ids
from components.layout import build_layout, empty_layout
from core.context import LiveContext, ViewerContext
from core.state import default_state
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
    app.layout = build_layout(context.catalog, default_state(context.catalog), store_label=str(settings.store),
                              logout_link=settings.auth_users_file is not None)
    shares = register_routes(app, context)
    for module in (navigation, map_view, umap_view, tree, legend, inspector, selection, markers, two_genes, compare,
                   species):
        module.register(app, context)
    export_panel.register_panel(app, context)
    export_panel.register_share_callbacks(app, context, shares, app.config.requests_pathname_prefix or "/")
    install_callback_guard(app)
    return app


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
