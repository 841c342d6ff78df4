"""The Dash application: ``create_app(settings)`` builds it; ``server`` is the Flask app for gunicorn.

``python app.py`` serves it on the settings' host and port.
"""
from __future__ import annotations

import logging

from dash import Dash, html

from settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> Dash:
    """Build the viewer for the store named in ``settings``."""
    settings = settings or Settings.from_env()
    app = Dash(__name__, title="ABC Atlas viewer", update_title=None)
    app.server.config["ATLAS_SETTINGS"] = settings
    app.layout = html.Div(
        [html.H1("ABC Atlas viewer"), html.P(f"Store: {settings.store}", id="store-path")],
        id="app-root",
    )
    return app


def _lazy_server():
    """gunicorn entry point: the Flask server of an app built from the environment."""
    return create_app(Settings.from_env()).server


if __name__ == "__main__":  # pragma: no cover
    _settings = Settings.from_env()
    logging.basicConfig(level=_settings.log_level)
    create_app(_settings).run(host=_settings.host, port=_settings.port, debug=_settings.debug)


def __getattr__(name):
    """``app.server`` (gunicorn's ``app:server``) builds the app from the environment on first use,
    so importing ``create_app`` in tests does not open a store."""
    if name == "server":
        globals()["server"] = _lazy_server()
        return globals()["server"]
    raise AttributeError(name)
