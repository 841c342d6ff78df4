"""Serve an app with gunicorn from the command line (``atlas-viewer serve``), the production server a laptop gets too.

The app is built and its rendering code compiled in this process, then handed to gunicorn (no second import, no
development-server warning). The options are those of ``gunicorn.conf.py`` for one worker; a lab server with
several workers uses the Procfile instead.
"""
from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication


class _Gunicorn(BaseApplication):
    def __init__(self, wsgi_app: Any, options: dict[str, Any]):
        self.wsgi_app = wsgi_app
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return self.wsgi_app


def serve_with_gunicorn(wsgi_app: Any, settings: Any) -> None:
    """Run ``wsgi_app`` under gunicorn on ``settings.host:settings.port`` until stopped (Ctrl+C)."""
    options = {
        "bind": f"{settings.host}:{settings.port}",
        "workers": 1,
        "threads": settings.threads,
        "worker_class": "gthread",
        "timeout": settings.worker_timeout_s,
        "graceful_timeout": 10,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "control_socket_disable": True,
    }
    _Gunicorn(wsgi_app, options).run()
