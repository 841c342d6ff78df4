"""Limits and request validation: export rate per client, bounded sizes, and no path traversal in any value.

* :class:`ExportLimiter`: a token bucket per client (user when logged in, else address): ``export_burst`` exports
  at once, refilled at ``export_rate_per_min``. Kept in Redis when the cache is Redis (shared by every worker),
  else in the process (then each worker counts on its own). Over the limit: 429 with ``Retry-After``.
  Flask routes whose path starts with one of :data:`EXPORT_PATH_PREFIXES` (or endpoints passed to
  :func:`install_limits`) are limited automatically; a Dash callback that exports calls :func:`check_export_rate`.
* A bad parameter anywhere (:class:`core.errors.ViewError`, the view reader's one error type) is answered with 400
  and JSON ``{"error", "parameter"}``.
* A request guard answers 400 to any request whose path or query carries a NUL or a ``..`` path segment, before
  any route sees it. Catalog checks (is this dataset, section, gene known?) belong to the routes, which know the
  atlas; these helpers only bound what every route shares.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Iterable

from flask import Flask, g, jsonify, request

from core.errors import ViewError
from settings import Settings

log = logging.getLogger(__name__)

EXPORT_PATH_PREFIXES: tuple[str, ...] = ("/export/", "/download/")
EXTENSION_KEY = "atlas_viewer_export_limiter"


# --------------------------------------------------------------------------------------------- errors
class RateLimited(Exception):
    """Too many exports from one client; answered with 429 and ``Retry-After``."""

    def __init__(self, retry_after_s: float):
        super().__init__(f"too many exports; try again in {math.ceil(retry_after_s)} s")
        self.retry_after_s = retry_after_s


# --------------------------------------------------------------------------------------------- validation
def has_traversal(value: str) -> bool:
    """True if ``value`` holds a NUL or a ``..`` path segment (with ``/`` or ``\\`` separators).

    Term names such as ``L2/3 IT`` stay valid: a slash alone is not traversal.
    """
    if "\x00" in value:
        return True
    return any(part == ".." for part in value.replace("\\", "/").split("/"))


# --------------------------------------------------------------------------------------------- token buckets
class LocalBuckets:
    """Token buckets per client in this process (a bounded LRU of clients).

    Parameters
    ----------
    rate_per_s : float
        tokens added per second.
    burst : int
        bucket capacity (requests allowed at once).
    clock : callable
        monotonic seconds; tests pass a fake one.
    max_clients : int
        clients remembered; the least recently seen are forgotten (they start with a full bucket again).
    """

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic,
                 max_clients: int = 10_000):
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._max_clients = max_clients
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def consume(self, client: str) -> tuple[bool, float]:
        """Take one token for ``client``: ``(allowed, retry_after_s)`` (``retry_after_s`` is 0 when allowed)."""
        with self._lock:
            now = self._clock()
            tokens, last = self._buckets.pop(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate_per_s)
            if tokens >= 1.0:
                allowed, retry, tokens = True, 0.0, tokens - 1.0
            else:
                allowed, retry = False, (1.0 - tokens) / self.rate_per_s
            self._buckets[client] = (tokens, now)
            while len(self._buckets) > self._max_clients:
                self._buckets.popitem(last=False)
            return allowed, retry


# Atomic token bucket in Redis: state {tokens, ts} per client, time from the Redis server (one clock for every
# worker and host). Returns {allowed, retry_after_s as text} (Lua numbers would be truncated to integers).
_REDIS_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed = 0
local retry = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  retry = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 60)
return {allowed, tostring(retry)}
"""


class RedisBuckets:
    """Token buckets per client in Redis, shared by every worker (same interface as :class:`LocalBuckets`)."""

    def __init__(self, client: Any, rate_per_s: float, burst: int, prefix: str = "atlas-viewer:rate:"):
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._prefix = prefix
        self._script = client.register_script(_REDIS_BUCKET)

    def consume(self, client: str) -> tuple[bool, float]:
        """Take one token for ``client``; raises the Redis client's errors when Redis is unavailable."""
        allowed, retry = self._script(keys=[self._prefix + client], args=[self.rate_per_s, self.burst])
        return bool(int(allowed)), float(retry)


class ExportLimiter:
    """The export rate limit: Redis buckets while Redis works, this process's buckets otherwise.

    Parameters
    ----------
    local : LocalBuckets
        always present; used alone without Redis, and as the fallback during a Redis outage.
    shared : RedisBuckets, optional
        used when the cache is Redis.
    guard : server.caching.BackendGuard, optional
        the cache's outage state, so an outage is logged once and Redis is probed at one pace.
    """

    def __init__(self, local: LocalBuckets, shared: RedisBuckets | None = None, guard: Any = None):
        self.local = local
        self.shared = shared
        self.guard = guard

    def consume(self, client: str) -> tuple[bool, float]:
        """``(allowed, retry_after_s)`` for one export by ``client``."""
        if self.shared is not None and (self.guard is None or self.guard.should_try()):
            try:
                result = self.shared.consume(client)
            except Exception as exc:  # Redis down: limit in this process instead
                if self.guard is not None:
                    self.guard.failed(exc)
            else:
                if self.guard is not None:
                    self.guard.succeeded()
                return result
        return self.local.consume(client)


def client_id() -> str:
    """Who an export counts against: the logged-in user, else the client address."""
    user = g.get("user")
    return f"user:{user}" if user else f"addr:{request.remote_addr or '-'}"


def check_export_rate(server: Flask | None = None, client: str | None = None) -> None:
    """Count one export for the current client; raise :class:`RateLimited` when over the limit.

    Call it from a Dash callback that exports (a Flask route under an export prefix is limited automatically).
    Does nothing when no limiter is installed.
    """
    from flask import current_app

    server = server or current_app
    limiter: ExportLimiter | None = server.extensions.get(EXTENSION_KEY)
    if limiter is None:
        return
    allowed, retry_after = limiter.consume(client or client_id())
    if not allowed:
        raise RateLimited(retry_after)


def make_limiter(settings: Settings, guard: Any = None, clock: Callable[[], float] = time.monotonic,
                 burst: int | None = None, rate_per_min: float | None = None) -> ExportLimiter:
    """An :class:`ExportLimiter` from ``settings`` (Redis-backed when ``settings.redis_url`` is the cache)."""
    rate = (rate_per_min or settings.export_rate_per_min) / 60.0
    burst = burst or settings.export_burst
    local = LocalBuckets(rate, burst, clock=clock)
    shared = None
    if settings.resolved_cache_type == "redis" and settings.redis_url:
        import redis

        client = redis.Redis.from_url(settings.redis_url, socket_timeout=settings.redis_timeout_s,
                                      socket_connect_timeout=settings.redis_timeout_s)
        shared = RedisBuckets(client, rate, burst)
    return ExportLimiter(local, shared, guard)


# --------------------------------------------------------------------------------------------- Flask wiring
def install_request_guard(server: Flask) -> None:
    """Answer 400 to a request whose path, view arguments or query values carry a NUL or a ``..`` segment."""

    @server.before_request
    def _reject_traversal():
        named = [("path", request.path), *(request.view_args or {}).items()]
        named += [(key, value) for key, value in request.args.items(multi=True)]
        named += [(key, key) for key in request.args.keys()]
        for parameter, value in named:
            if isinstance(value, str) and has_traversal(value):
                response = jsonify(ViewError(parameter, "invalid characters or '..'").to_json())
                response.status_code = 400
                return response
        return None


def install_limits(server: Flask, settings: Settings, guard: Any = None,
                   export_endpoints: Iterable[str] = (), clock: Callable[[], float] = time.monotonic
                   ) -> ExportLimiter:
    """Add the export rate limit and the 400/429 error handlers to ``server``.

    Parameters
    ----------
    export_endpoints : iterable of str
        Flask endpoint names that count as exports, in addition to paths under :data:`EXPORT_PATH_PREFIXES`.

    Returns
    -------
    ExportLimiter
        also stored in ``server.extensions`` for :func:`check_export_rate`.
    """
    limiter = make_limiter(settings, guard=guard, clock=clock)
    server.extensions[EXTENSION_KEY] = limiter
    endpoints = frozenset(export_endpoints)

    @server.before_request
    def _limit_exports():
        if request.endpoint in endpoints or request.path.startswith(EXPORT_PATH_PREFIXES):
            check_export_rate(server)
        return None

    @server.errorhandler(RateLimited)
    def _too_many(exc: RateLimited):
        response = jsonify({"error": str(exc)})
        response.status_code = 429
        response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
        return response

    @server.errorhandler(ViewError)
    def _bad_param(exc: ViewError):
        response = jsonify(exc.to_json())
        response.status_code = 400
        return response

    return limiter
