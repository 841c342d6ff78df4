"""Caching of rendered pictures and look-ups with flask-caching, keyed by plain values, surviving a lost backend.

One process: an in-process ``SimpleCache``. Under gunicorn with several workers: a ``FileSystemCache`` shared by
the workers. With ``ATLAS_VIEWER_REDIS_URL``: Redis, shared by every worker and server. If the backend fails
(Redis stopped, network gone), requests are served without cache; one warning is logged per outage (per process),
and the backend is tried again every ``redis_retry_s`` seconds.

The render route uses it like this::

    from server.caching import picture_cache
    png = picture_cache().get_or_render(("HMBA-...", "H22.30.001.CX.51", "subclass", None, 0, 0, 10, 10, 800, 600),
                                        lambda: render_png(...))

Keys are tuples of plain values (str, int, float, bool, None, nested tuples/lists of these); they are JSON-encoded
and hashed, never pickled. Values are pickled by the backend, so keep them plain (bytes, numbers, lists, dicts,
numpy arrays), never open files or big objects.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from flask import Flask, current_app, has_app_context
from flask_caching import Cache
from flask_caching.backends.filesystemcache import FileSystemCache

from core.context import store_token  # noqa: F401  (re-exported: the cache namespace of a store)
from settings import Settings

log = logging.getLogger(__name__)

EXTENSION_KEY = "atlas_viewer_caches"
_PLAIN_SCALARS = (str, int, float, bool, type(None))


# --------------------------------------------------------------------------------------------- keys
def _plain(value: Any, where: str) -> Any:
    """``value`` as JSON-able plain values; numpy scalars become Python numbers; anything else is a TypeError."""
    if isinstance(value, _PLAIN_SCALARS):
        if isinstance(value, float) and not math.isfinite(value):
            return repr(value)  # JSON has no NaN/inf; keep them distinct from each other and from numbers
        return value
    if isinstance(value, (tuple, list)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    item = getattr(value, "item", None)  # numpy scalar
    if callable(item) and getattr(value, "shape", None) == ():
        return _plain(item(), where)
    raise TypeError(f"cache key element {where} is a {type(value).__name__}; use plain values "
                    "(str, int, float, bool, None or tuples of these)")


def make_key(namespace: str, key: Sequence[Any], token: str = "") -> str:
    """The backend key of a plain-value ``key`` tuple: ``<token>:<namespace>:<sha1 of its JSON>``.

    Parameters
    ----------
    namespace : str
        what is cached (``"png"``, ``"lookup"``), so two kinds of value never share a key.
    key : tuple
        plain values: dataset, section, colour-by, gene, term, viewport numbers, size...
    token : str
        identifies the store (path and modification time), so a re-prepared store never serves stale pictures.

    Returns
    -------
    str
        at most ~90 ASCII characters, safe for every backend.
    """
    if not isinstance(key, (tuple, list)):
        key = (key,)
    text = json.dumps(_plain(list(key), "key"), separators=(",", ":"), ensure_ascii=True)
    digest = hashlib.sha1(text.encode()).hexdigest()
    return f"{token}:{namespace}:{digest}" if token else f"{namespace}:{digest}"


# --------------------------------------------------------------------------------------------- outage guard
class BackendGuard:
    """Tracks whether a cache backend works; skips it during an outage and tries again every ``retry_s``.

    Shared by every :class:`ResilientCache` on one backend, so one outage logs one warning per process.

    Parameters
    ----------
    name : str
        backend name used in the log messages (``"redis"``).
    retry_s : float
        seconds between attempts to use the backend again after a failure.
    clock : callable
        monotonic seconds; tests pass a fake one.
    """

    def __init__(self, name: str, retry_s: float, clock: Callable[[], float] = time.monotonic):
        self.name = name
        self.retry_s = retry_s
        self._clock = clock
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._next_try = 0.0

    @property
    def down(self) -> bool:
        """True between a failure and the next successful use."""
        return self._down_since is not None

    def should_try(self) -> bool:
        """False while the backend is known down and the retry interval has not passed."""
        if self._down_since is None:
            return True
        with self._lock:
            if self._clock() >= self._next_try:
                self._next_try = self._clock() + self.retry_s  # one probe per interval, not one per thread
                return True
            return False

    def failed(self, exc: BaseException) -> None:
        """Record a failure; log a warning only when an outage starts."""
        with self._lock:
            now = self._clock()
            self._next_try = now + self.retry_s
            if self._down_since is not None:
                log.debug("cache backend %s still unavailable: %s", self.name, exc)
                return
            self._down_since = now
        log.warning("cache backend %s unavailable (%s: %s); serving without cache, retrying every %g s",
                    self.name, type(exc).__name__, exc, self.retry_s)

    def succeeded(self) -> None:
        """Record a successful use; log when an outage ends."""
        if self._down_since is None:
            return
        with self._lock:
            if self._down_since is None:
                return
            lasted = self._clock() - self._down_since
            self._down_since = None
        log.warning("cache backend %s is back after %.1f s", self.name, lasted)


# --------------------------------------------------------------------------------------------- cache
class ResilientCache:
    """A namespace of a flask-caching backend whose failures turn into cache misses.

    Parameters
    ----------
    backend : cachelib-style cache or None
        the object with ``get(key)`` and ``set(key, value, timeout=)``; None caches nothing.
    namespace : str
        prefix of every key, e.g. ``"png"``.
    guard : BackendGuard
        outage state shared by the namespaces of one backend.
    timeout_s : int
        lifetime of an entry (0: until evicted).
    token : str
        store identity mixed into every key (:func:`store_token`).
    """

    def __init__(self, backend: Any, namespace: str, guard: BackendGuard, timeout_s: int = 3600, token: str = ""):
        self.backend = backend
        self.namespace = namespace
        self.guard = guard
        self.timeout_s = timeout_s
        self.token = token

    def key(self, key: Sequence[Any]) -> str:
        """The backend key of a plain-value key tuple (see :func:`make_key`)."""
        return make_key(self.namespace, key, self.token)

    def get(self, key: Sequence[Any]) -> Any:
        """The cached value of ``key``, or None (missing, expired, or backend down)."""
        full = self.key(key)
        if self.backend is None or not self.guard.should_try():
            return None
        try:
            value = self.backend.get(full)
        except Exception as exc:  # a cache must never break serving
            self.guard.failed(exc)
            return None
        self.guard.succeeded()
        return value

    def set(self, key: Sequence[Any], value: Any) -> bool:
        """Store ``value`` under ``key``; False if it was not stored (backend down or refused)."""
        full = self.key(key)
        if self.backend is None or value is None or not self.guard.should_try():
            return False
        try:
            stored = self.backend.set(full, value, timeout=self.timeout_s)
        except Exception as exc:
            self.guard.failed(exc)
            return False
        self.guard.succeeded()
        return bool(stored)

    def get_or_compute(self, key: Sequence[Any], compute: Callable[[], Any]) -> Any:
        """The cached value of ``key``, else ``compute()`` stored then returned (exceptions are not cached)."""
        value = self.get(key)
        if value is not None:
            return value
        value = compute()
        self.set(key, value)
        return value

    def get_or_render(self, key: Sequence[Any], render: Callable[[], bytes]) -> bytes:
        """The cached picture bytes of ``key``, else ``render()`` (bytes) stored then returned.

        Returns
        -------
        bytes
            the encoded picture (PNG, SVG...), exactly what ``render`` returned.
        """
        value = self.get_or_compute(key, render)
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(f"render function for {key!r} returned {type(value).__name__}, not bytes")
        return bytes(value)


class BatchPruningFileSystemCache(FileSystemCache):
    """flask-caching's ``FileSystemCache`` that, once over its threshold, evicts the oldest entries down to 80 %
    of it in one pass.

    cachelib evicts one entry per write once full, re-reading every cache file to find it: about 50 ms per new
    picture at 1,000 entries on this machine. One pass per fifth of the threshold costs a fraction of that.
    """

    low_water = 0.8

    def _prune(self) -> None:
        if not self._over_threshold():
            return
        entries = []
        for name in self._list_dir():
            try:
                entries.append((os.stat(name).st_mtime_ns, name))
            except FileNotFoundError:  # another worker removed it
                pass
        entries.sort()
        excess = max(0, len(entries) - int(self._threshold * self.low_water))
        for _, name in entries[:excess]:
            try:
                os.remove(name)
            except FileNotFoundError:
                pass
        self._update_count(value=len(entries) - excess)


@dataclass(frozen=True)
class Caches:
    """The caches of one app: ``pictures`` (rendered PNG bytes)."""

    kind: str
    pictures: ResilientCache
    guard: BackendGuard


def flask_cache_config(settings: Settings) -> dict[str, Any]:
    """The flask-caching configuration for ``settings.resolved_cache_type``.

    Returns
    -------
    dict
        ``CACHE_*`` keys for :class:`flask_caching.Cache`.
    """
    kind = settings.resolved_cache_type
    config: dict[str, Any] = {
        "CACHE_DEFAULT_TIMEOUT": settings.cache_timeout_s,
        "CACHE_THRESHOLD": settings.cache_max_items,
        "CACHE_KEY_PREFIX": "atlas-viewer:",
    }
    if kind == "simple":
        config["CACHE_TYPE"] = "SimpleCache"
    elif kind == "filesystem":
        config["CACHE_TYPE"] = f"{__name__}.BatchPruningFileSystemCache"
        config["CACHE_DIR"] = str(settings.resolved_cache_dir)
    elif kind == "redis":
        if not settings.redis_url:
            raise ValueError("ATLAS_VIEWER_CACHE_TYPE=redis needs ATLAS_VIEWER_REDIS_URL")
        config["CACHE_TYPE"] = "RedisCache"
        config["CACHE_REDIS_URL"] = settings.redis_url
        config["CACHE_OPTIONS"] = {
            "socket_timeout": settings.redis_timeout_s,
            "socket_connect_timeout": settings.redis_timeout_s,
        }
    elif kind == "null":
        config["CACHE_TYPE"] = "NullCache"
        config["CACHE_NO_NULL_WARNING"] = True
    else:  # pragma: no cover - Settings checks the choices
        raise ValueError(f"unknown cache type {kind!r}")
    return config


def install_caches(server: Flask, settings: Settings, clock: Callable[[], float] = time.monotonic) -> Caches:
    """Create the flask-caching backend of ``settings`` on ``server`` and the picture cache.

    The backend is created without contacting Redis, so the app starts (uncached) while Redis is down.

    Returns
    -------
    Caches
        also stored in ``server.extensions`` for :func:`picture_cache`.
    """
    kind = settings.resolved_cache_type
    config = flask_cache_config(settings)
    if kind == "filesystem":
        Path(config["CACHE_DIR"]).mkdir(parents=True, exist_ok=True, mode=0o700)
    flask_cache = Cache(config=config)
    flask_cache.init_app(server)
    backend = server.extensions["cache"][flask_cache]
    guard = BackendGuard(kind, settings.redis_retry_s, clock=clock)
    token = store_token(settings.store)
    caches = Caches(
        kind=kind,
        pictures=ResilientCache(None if kind == "null" else backend, "png", guard, settings.cache_timeout_s, token),
        guard=guard,
    )
    server.extensions[EXTENSION_KEY] = caches
    where = {"filesystem": f" in {config.get('CACHE_DIR')}", "redis": f" at {_redact(settings.redis_url)}"}
    log.info("cache: %s%s (max %d entries, %d s)", kind, where.get(kind, ""), settings.cache_max_items,
             settings.cache_timeout_s)
    return caches


def _redact(url: str | None) -> str:
    """A Redis URL without its password, for logs."""
    if not url or "@" not in url:
        return str(url)
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


_NO_CACHE = ResilientCache(None, "none", BackendGuard("none", 0.0))


def caches_of(server: Flask | None = None) -> Caches | None:
    """The :class:`Caches` installed on ``server`` (default: the current Flask app), or None."""
    if server is None:
        if not has_app_context():
            return None
        server = current_app._get_current_object()  # type: ignore[attr-defined]
    return server.extensions.get(EXTENSION_KEY)


def picture_cache(server: Flask | None = None) -> ResilientCache:
    """The picture cache of ``server`` (default: the current app); a pass-through cache if none is installed."""
    caches = caches_of(server)
    return caches.pictures if caches is not None else _NO_CACHE
