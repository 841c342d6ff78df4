"""``/healthz`` for load balancers and process managers, and one structured (JSON) log line per request.

``/healthz`` answers 200 with ``{"ok": true, "status": "ok", "store", "datasets", "version", "cache", "cache_ok",
"worker", "store_version"}`` (the store version that worker serves) when the store opens and every dataset is sound; 200 with ``"status": "degraded"`` and the damaged
datasets when some are damaged but at least one serves (a load balancer keeps the server); 503 with ``ok: false``,
``"status": "down"`` and the reason when the store cannot be opened or no dataset serves. It stays open when login
is on, but then tells a client who is not logged in only ``ok`` and ``status``.
The request log writes, on the ``atlas_viewer.access`` logger, one line per request::

    {"ts": "2025-06-01T12:00:00.123Z", "method": "GET", "path": "/render/...png", "status": 200, "ms": 41.2,
     "user": "ada", "bytes": 53211, "client": "10.0.0.7"}
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from flask import Flask, g, jsonify, request

from settings import Settings

log = logging.getLogger(__name__)
access_log = logging.getLogger("atlas_viewer.access")

HEALTH_PATH = "/healthz"


def app_version() -> str:
    """The installed version of the ``abc-atlas-viewer`` package ("unknown" when run from a bare checkout)."""
    try:
        return metadata.version("abc-atlas-viewer")
    except metadata.PackageNotFoundError:
        return "unknown"


def current_user() -> str | None:
    """The user of the current request (set by the login layer), or None when login is off."""
    return g.get("user")


def client_address() -> str:
    """The client's address (after ``ProxyFix`` when ``proxy_count`` > 0)."""
    return request.remote_addr or "-"


# --------------------------------------------------------------------------------------------- request log
def install_request_log(server: Flask, settings: Settings) -> None:
    """Log one JSON line per request (method, path, status, ms, user, bytes, client).

    Install it before the other request hooks, so refused requests (400, 401, 429) are timed and logged too.
    """
    if not settings.access_log:
        return

    @server.before_request
    def _start_timer() -> None:
        g.request_started = time.perf_counter()

    @server.after_request
    def _log_request(response):
        started = g.get("request_started")
        length = response.content_length
        if length is None and not response.is_streamed and not response.direct_passthrough:
            length = response.calculate_content_length()
        record = {
            "ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "ms": round((time.perf_counter() - started) * 1000, 1) if started is not None else None,
            "user": current_user(),
            "bytes": length,
            "client": client_address(),
        }
        access_log.info(json.dumps(record, separators=(",", ":")))
        return response


# --------------------------------------------------------------------------------------------- health
class StoreProbe:
    """Opens the store once per process (lazily) and says whether it is usable and how many datasets it holds.

    Parameters
    ----------
    store : Path
        the prepared store folder.
    atlas : object, optional
        an already open ``data_layer.Atlas`` (the app's own), so no second copy is opened.
    opener : callable, optional
        ``opener(store) -> atlas``; default ``data_layer.Atlas.open``.
    """

    def __init__(self, store: Path, atlas: Any = None, opener: Callable[[Path], Any] | None = None):
        self.store = Path(store)
        self._atlas = atlas
        self._opener = opener
        self._lock = threading.Lock()

    def follow(self, atlas_in_use: Callable[[], Any], version_in_use: Callable[[], str] | None = None) -> None:
        """Check the atlas ``atlas_in_use()`` returns (the version the server serves now) from now on, and report
        ``version_in_use()`` (the store version this worker serves) as ``store_version``."""
        self._current = atlas_in_use
        self._version = version_in_use

    def store_version(self) -> str | None:
        """The store version this worker serves (:meth:`follow`), None when it does not follow one."""
        version = getattr(self, "_version", None)
        return version() if version is not None else None

    def _open(self) -> Any:
        current = getattr(self, "_current", None)
        if current is not None:
            return current()
        if self._atlas is None:
            with self._lock:
                if self._atlas is None:
                    opener = self._opener
                    if opener is None:
                        from data_layer import Atlas

                        opener = Atlas.open
                    self._atlas = opener(self.store)
        return self._atlas

    def check(self) -> tuple[bool, dict[str, Any]]:
        """``(ok, facts)``: ok while at least one dataset serves. Facts hold ``status`` (``"ok"``, ``"degraded"``:
        some datasets damaged, the others serving, or ``"down"``), ``datasets`` (int) when the store opens,
        ``error`` (str) when not ok, and ``damaged`` (dataset -> what is wrong) when some datasets' files are
        missing or truncated (their sizes are checked again at every call: a few ``stat`` calls per dataset)."""
        if not self.store.is_dir():
            return False, {"status": "down", "error": f"store folder {self.store} does not exist"}
        try:
            atlas = self._open()
            names = list(atlas.datasets())
            facts: dict[str, Any] = {"status": "ok", "datasets": len(names)}
            damaged = atlas.check_files() if hasattr(atlas, "check_files") else {}
        except Exception as exc:  # the probe reports every failure; it must not raise
            log.warning("healthz: store %s cannot be opened: %s", self.store, exc)
            return False, {"status": "down",
                           "error": f"store {self.store} cannot be opened: {type(exc).__name__}: {exc}"}
        if not names:
            return False, {**facts, "status": "down", "error": f"store {self.store} holds no dataset"}
        if damaged:
            facts["damaged"] = damaged
            facts["error"] = f"{len(damaged)} damaged dataset(s): {', '.join(damaged)}"
            if all(name in damaged for name in names):
                facts["status"] = "down"
                return False, facts
            facts["status"] = "degraded"
        return True, facts


def install_health(server: Flask, settings: Settings, atlas: Any = None, caches: Any = None,
                   opener: Callable[[Path], Any] | None = None) -> StoreProbe:
    """Add ``GET /healthz`` to ``server``: 200 or 503 with ``{"ok", "status"}`` for anyone; with login on, the
    store, the datasets, the version, the worker, the cache, the error and the damaged datasets (``damaged``: name ->
    which files) only for a logged-in user. Damaged datasets while another serves: 200, ``"status": "degraded"``;
    503 only when no dataset serves (or the store does not open).

    Returns
    -------
    StoreProbe
        the probe the route uses.
    """
    probe = StoreProbe(settings.store, atlas=atlas, opener=opener)
    version = app_version()

    def healthz():
        ok, facts = probe.check()
        if settings.auth_enabled and current_user() is None:
            # a load balancer needs ok / not ok; where the store lives and why it failed are for logged-in users
            response = jsonify({"ok": ok, "status": facts["status"]})
            response.status_code = 200 if ok else 503
            response.headers["Cache-Control"] = "no-store"
            return response
        body = {"ok": ok, "status": facts["status"], "store": str(settings.store), "datasets": facts.get("datasets"),
                "version": version, "worker": os.getpid()}
        store_version = probe.store_version()
        if store_version:
            body["store_version"] = store_version  # after a re-prepare: which workers serve the new one
        if caches is not None:
            body["cache"] = caches.kind
            body["cache_ok"] = not caches.guard.down
        if "error" in facts:
            body["error"] = facts["error"]
        if facts.get("damaged"):
            body["damaged"] = facts["damaged"]
        response = jsonify(body)
        response.status_code = 200 if ok else 503
        response.headers["Cache-Control"] = "no-store"
        return response

    server.add_url_rule(HEALTH_PATH, endpoint="healthz", view_func=healthz, methods=["GET"])
    return probe
