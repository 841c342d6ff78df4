"""gunicorn configuration for a shared lab server: ``gunicorn app:server -c gunicorn.conf.py`` (see Procfile).

Workers, threads, bind address, timeouts and preload come from the ``ATLAS_VIEWER_*`` settings. With
``preload_app`` the app (and its memory-mapped store) is loaded once in the master before forking, so the workers
share the store's pages in the OS page cache instead of each reading its own copy.
"""
import os

from settings import Settings

# Tell the app it runs under gunicorn (cache_type=auto then picks a cache shared by the workers). This is the
# only write to the environment; the app reads it through Settings.from_env like every other setting.
os.environ.setdefault("ATLAS_VIEWER_SERVED_BY", "gunicorn")
_settings = Settings.from_env()

bind = _settings.bind
workers = _settings.workers
threads = _settings.threads
worker_class = "gthread"
preload_app = _settings.preload
timeout = _settings.worker_timeout_s
graceful_timeout = 30
keepalive = 5
# gunicorn itself reads X-Forwarded-Proto (and similar) only from these peers: the same proxies the app trusts
# with the login header and X-Forwarded-For (ATLAS_VIEWER_TRUSTED_PROXIES).
forwarded_allow_ips = _settings.trusted_proxies
# gunicorn 23+ opens a control socket at one fixed path per user; two servers on one machine would collide.
control_socket_disable = True
max_requests = _settings.max_requests
max_requests_jitter = max(1, _settings.max_requests // 10) if _settings.max_requests else 0
# The app writes its own JSON request log (callbacks/health.py); gunicorn's access log would repeat it.
accesslog = None
errorlog = "-"
loglevel = "debug" if _settings.log_level == "DEBUG" else "info"
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"},
        "json_line": {"format": "%(message)s"},
    },
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"},
        "access": {"class": "logging.StreamHandler", "formatter": "json_line", "stream": "ext://sys.stdout"},
    },
    "root": {"level": _settings.log_level, "handlers": ["stderr"]},
    "loggers": {
        # worker boots and exits are logged at INFO: keep them even when the app logs only warnings
        "gunicorn.error": {"level": "DEBUG" if _settings.log_level == "DEBUG" else "INFO", "handlers": ["stderr"],
                           "propagate": False},
        "atlas_viewer.access": {"level": "INFO", "handlers": ["access"], "propagate": False},
    },
}


def when_ready(server):
    """In the master, after the app is loaded (preload) and before the workers fork: compile the rendering and
    analysis code once, so every worker (and every replacement of a crashed one) inherits it."""
    if not preload_app:
        return
    try:
        from server.features import warm_up_compiled_code

        warm_up_compiled_code()
    except Exception:  # a failed warm-up only costs the first users a few seconds
        server.log.warning("warm-up of the compiled code failed", exc_info=True)
    live = _live_store()
    if live is not None:
        # the workers hold the store's folders themselves (post_fork): the master, which serves nothing, lets go,
        # so the folders of a version every worker has replaced can be removed while the server runs
        live.current.atlas.release()


def _live_store():
    """The preloaded app's store that follows re-prepares (``server.features.install_live_store``), or None."""
    import sys

    loaded = sys.modules.get("app")
    flask_server = vars(loaded).get("server") if loaded is not None else None
    return flask_server.extensions.get("atlas_viewer_live") if flask_server is not None else None


def post_fork(server, worker):
    """In a new worker of a preloaded app: hold the store's folders in this process, and look at the catalog at
    once (a prepare may have replaced the version the master loaded)."""
    live = _live_store()
    if live is None:
        return
    try:
        live.current.atlas.hold()
        live.refresh(force=True)
    except Exception:  # the worker still serves; its first requests look again
        server.log.warning("taking hold of the store failed", exc_info=True)
