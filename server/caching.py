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
and hashed, never pickled. Values are PNG bytes, stored as they are (:class:`PlainSerializer`: never a pickle, so
whoever can write the cache folder or the Redis cannot run code in the server) and checked when read back (a value
that is not a PNG is a miss, replaced by a fresh picture). The cache folder is private to the server's user (made
0700, its owner and mode checked, refused otherwise) and lives in the user's own cache home, not in the shared
temp folder; it is bounded in entries and in bytes.
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
from flask_caching.backends.rediscache import RedisCache
from flask_caching.backends.simplecache import SimpleCache

from core.context import store_token  # noqa: F401  (re-exported: the cache namespace of a store)
from settings import Settings

log = logging.getLogger(__name__)

EXTENSION_KEY = "atlas_viewer_caches"
#: The first bytes of every PNG file: what a cached picture must start with to be served.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
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


# --------------------------------------------------------------------------------------------- values
class CacheFolderError(RuntimeError):
    """The cache folder is not private to the server's user (another owner, or open to the group or others)."""


class PlainSerializer:
    """Cache values as plain bytes, never pickles (cachelib's serializers pickle every value).

    A value is ``b"b"`` + the bytes, or ``b"i"`` + decimal digits for the file cache's own entry count; anything
    else read back (a planted pickle, a truncated or foreign entry) is a miss, logged once per process.
    """

    _warned = False

    def dumps(self, value: Any) -> bytes:
        if type(value) is int:
            return b"i" + str(value).encode("ascii")
        if isinstance(value, (bytes, bytearray, memoryview)):
            return b"b" + bytes(value)
        raise TypeError(f"the picture cache stores bytes, not {type(value).__name__}")

    def loads(self, data: Any) -> bytes | int | None:
        if data is None:
            return None
        data = bytes(data)
        if data[:1] == b"b":
            return data[1:]
        if data[:1] == b"i" and 1 < len(data) <= 20 and data[1:].isdigit():
            return int(data[1:])
        if not PlainSerializer._warned:
            PlainSerializer._warned = True
            log.warning("a cache entry is not one the viewer wrote (%d bytes starting %r): ignored", len(data),
                        data[:8])
        return None

    def dump(self, value: Any, f: Any) -> None:
        f.write(self.dumps(value))

    def load(self, f: Any) -> bytes | int | None:
        return self.loads(f.read())


def private_folder(folder: Path) -> Path:
    """``folder`` created with mode 0700 if missing, and checked: owned by this process's user and closed to the
    group and others.

    Raises
    ------
    CacheFolderError
        Naming the folder, its owner and mode: a folder another user could write is never used.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = os.lstat(folder)
    import stat

    if not stat.S_ISDIR(info.st_mode):
        raise CacheFolderError(f"the cache folder {folder} is not a folder (a link or a file): refusing to use it")
    if info.st_uid != os.getuid():
        raise CacheFolderError(f"the cache folder {folder} belongs to user id {info.st_uid}, not to this server's "
                               f"user ({os.getuid()}): refusing to use it (set ATLAS_VIEWER_CACHE_DIR)")
    if info.st_mode & 0o077:
        raise CacheFolderError(f"the cache folder {folder} is open to other users (mode {oct(info.st_mode & 0o777)}):"
                               " refusing to use it (chmod 700 it, or set ATLAS_VIEWER_CACHE_DIR)")
    return folder


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
        value = self.get(key)
        if value is not None and not (isinstance(value, bytes) and value.startswith(PNG_SIGNATURE)):
            log.warning("cache entry %s is not a PNG: rendered again", self.key(key))
            value = None
        if value is None:
            value = render()
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise TypeError(f"render function for {key!r} returned {type(value).__name__}, not bytes")
            value = bytes(value)
            self.set(key, value)
        return value


class PlainSimpleCache(SimpleCache):
    """flask-caching's in-process cache with plain byte values (:class:`PlainSerializer`)."""

    serializer = PlainSerializer()


class PlainRedisCache(RedisCache):
    """flask-caching's Redis cache with plain byte values (:class:`PlainSerializer`): a value planted in the Redis
    is never unpickled."""

    serializer = PlainSerializer()


class BatchPruningFileSystemCache(FileSystemCache):
    """flask-caching's ``FileSystemCache`` with plain byte values (:class:`PlainSerializer`), bounded in entries and
    in bytes: once over either bound it evicts the oldest entries down to 80 % of it in one pass.

    cachelib evicts one entry per write once full, re-reading every cache file to find it: about 50 ms per new
    picture at 1,000 entries on this machine. One pass per fifth of the threshold costs a fraction of that. The
    folder's size is measured every :attr:`bytes_check_every` writes (a listing of the folder).
    """

    serializer = PlainSerializer()
    low_water = 0.8
    #: Largest total size of the entries (``CACHE_OPTIONS["max_bytes"]``); 0 = unbounded.
    max_bytes = 0
    bytes_check_every = 32

    def __init__(self, *args: Any, max_bytes: int = 0, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.max_bytes = int(max_bytes)
        self._writes = 0

    def set(self, key: str, value: Any, timeout: int | None = None, mgmt_element: bool = False) -> bool:
        stored = super().set(key, value, timeout=timeout, mgmt_element=mgmt_element)
        if not mgmt_element and self.max_bytes:
            self._writes += 1
            if self._writes % self.bytes_check_every == 0:
                self._prune_bytes()
        return stored

    def _entries(self) -> list[tuple[int, int, str]]:
        """``(mtime_ns, size, path)`` of every entry, oldest first."""
        entries = []
        for name in self._list_dir():
            try:
                info = os.stat(name)
            except FileNotFoundError:  # another worker removed it
                continue
            entries.append((info.st_mtime_ns, info.st_size, name))
        entries.sort()
        return entries

    def _remove(self, names: Sequence[str]) -> int:
        removed = 0
        for name in names:
            try:
                os.remove(name)
                removed += 1
            except FileNotFoundError:
                pass
        return removed

    def _prune(self) -> None:
        if not self._over_threshold():
            return
        entries = self._entries()
        excess = max(0, len(entries) - int(self._threshold * self.low_water))
        self._remove([name for _, _, name in entries[:excess]])
        self._update_count(value=len(entries) - excess)

    def _prune_bytes(self) -> None:
        entries = self._entries()
        total = sum(size for _, size, _ in entries)
        if total <= self.max_bytes:
            return
        goal, drop = self.max_bytes * self.low_water, []
        for _, size, name in entries:
            if total <= goal:
                break
            drop.append(name)
            total -= size
        self._update_count(value=len(entries) - self._remove(drop))


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
        config["CACHE_TYPE"] = f"{__name__}.PlainSimpleCache"
    elif kind == "filesystem":
        config["CACHE_TYPE"] = f"{__name__}.BatchPruningFileSystemCache"
        config["CACHE_DIR"] = str(settings.resolved_cache_dir)
        config["CACHE_OPTIONS"] = {"max_bytes": settings.cache_max_bytes}
    elif kind == "redis":
        if not settings.redis_url:
            raise ValueError("ATLAS_VIEWER_CACHE_TYPE=redis needs ATLAS_VIEWER_REDIS_URL")
        config["CACHE_TYPE"] = f"{__name__}.PlainRedisCache"
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
        private_folder(Path(config["CACHE_DIR"]))
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
