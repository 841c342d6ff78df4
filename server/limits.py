"""Limits and request validation: rates per client, bounded concurrent exports, bounded sizes, no path traversal.

* :class:`RateLimiter`: a token bucket per client (user when logged in, else address). Exports (paths under
  :data:`EXPORT_PATH_PREFIXES`, endpoints passed to :func:`install_limits`, and the API's renders and cell exports,
  which call :func:`check_export_rate`) may make ``export_burst`` at once, refilled at ``export_rate_per_min``;
  pictures (paths under :data:`PICTURE_PATH_PREFIXES`) ``picture_burst`` at once, refilled at
  ``picture_rate_per_min``, for anonymous and logged-in clients alike, a picture larger than one megapixel
  counting as its area in megapixels (:func:`picture_cost`). Over a limit: 429 with ``Retry-After``.
* :class:`PictureBudget`: one budget of megapixels per second for the whole server (every client and worker
  together, ``picture_budget_mpx_per_s`` with ``picture_budget_burst_mpx`` at once) that only pictures larger than
  one megapixel draw on, so many clients each under their own limit cannot together stall the interactive
  pictures; spent: 503 with ``Retry-After`` (:class:`PictureBudgetSpent`).
  The buckets live where every worker sees them: in Redis when the cache is Redis; else, when several gunicorn
  workers serve, in a SQLite file in the server's private state folder (:class:`SqliteBuckets`); else in the
  process. The login throttle (:mod:`server.auth`) uses the same buckets.
* :class:`ExportSlots`: figure and cell exports (:data:`EXPORT_WORK_PREFIXES`) run at most ``export_slots`` at once
  per worker; another waits up to ``export_wait_s`` for a slot, then gets 503 with ``Retry-After``, so exports
  never hold every thread and interactive pictures never queue behind them. A Dash callback that exports takes
  a slot with :func:`export_slot`.
* A bad parameter anywhere (:class:`core.errors.ViewError`, the view reader's one error type) is answered with 400
  and JSON ``{"error", "parameter"}``.
* :class:`BodyLimit`: a WSGI middleware bounding every request body to ``max_body_bytes``: a larger declared
  ``Content-Length`` gets 413 before anything is read; a body without one (``Transfer-Encoding: chunked``) is read
  through a counting reader that stops with 413 as soon as the bound is passed, so no body is ever read whole.
* A request guard answers 400 to any request whose path or query carries a NUL or a ``..`` path segment, before
  any route sees it. Catalog checks (is this dataset, section, gene known?) belong to the routes, which know the
  atlas; these helpers only bound what every route shares.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import sqlite3
import stat
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from flask import Flask, g, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from core.errors import ViewError
from settings import Settings

log = logging.getLogger(__name__)

EXPORT_PATH_PREFIXES: tuple[str, ...] = ("/export/", "/download/")
#: Paths of the pictures the page asks for while a user pans and zooms (rate-limited per client).
PICTURE_PATH_PREFIXES: tuple[str, ...] = ("/render/",)
#: Paths of costly exports that run in the bounded export slots (the API's renders and cells count as exports).
EXPORT_WORK_PREFIXES: tuple[str, ...] = ("/export/", "/download/", "/api/render", "/api/cells.")
EXTENSION_KEY = "atlas_viewer_export_limiter"
PICTURE_EXTENSION_KEY = "atlas_viewer_picture_limiter"
SLOTS_EXTENSION_KEY = "atlas_viewer_export_slots"


# --------------------------------------------------------------------------------------------- errors
class RateLimited(Exception):
    """Too many requests of one kind from one client; answered with 429, ``Retry-After`` and JSON
    ``{"error", "reason": "rate_limit"}``.

    Parameters
    ----------
    retry_after_s : float
        seconds until the client's next request of this kind is allowed.
    what : str
        what the client asked for too often, in the message (``"exports"``, ``"pictures"``).
    """

    reason = "rate_limit"

    def __init__(self, retry_after_s: float, what: str = "exports"):
        super().__init__(f"too many {what}; try again in {max(1, math.ceil(retry_after_s))} s")
        self.retry_after_s = retry_after_s


class ServerBusy(Exception):
    """Every export slot of this worker is taken; answered with 503, ``Retry-After`` and JSON
    ``{"error", "reason": "export_slots"}``."""

    reason = "export_slots"

    def __init__(self, retry_after_s: float,
                 message: str = "the server is busy with other exports; try again in {s} s"):
        super().__init__(message.format(s=max(1, math.ceil(retry_after_s))))
        self.retry_after_s = retry_after_s


class PictureBudgetSpent(ServerBusy):
    """The whole server's budget of megapixels per second for large pictures is spent for now; answered with 503,
    ``Retry-After`` and JSON ``{"error", "reason": "picture_budget"}`` (small pictures are not counted, so they
    still pass)."""

    reason = "picture_budget"

    def __init__(self, retry_after_s: float):
        super().__init__(retry_after_s, "the server is busy drawing large pictures; ask for a smaller one or try "
                                        "again in {s} s")


class StateDirError(RuntimeError):
    """The private state folder cannot be made or is not private (the message names the folder and the setting)."""


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

    def consume(self, client: str, cost: float = 1.0) -> tuple[bool, float]:
        """Take ``cost`` tokens for ``client``: ``(allowed, retry_after_s)`` (``retry_after_s`` is 0 when allowed)."""
        with self._lock:
            now = self._clock()
            tokens, last = self._buckets.pop(client, (float(self.burst), now))
            tokens, allowed, retry = _take(tokens, now - last, self.rate_per_s, self.burst, cost)
            self._buckets[client] = (tokens, now)
            while len(self._buckets) > self._max_clients:
                self._buckets.popitem(last=False)
            return allowed, retry


def _take(tokens: float, elapsed_s: float, rate_per_s: float, burst: int, cost: float) -> tuple[float, bool, float]:
    """One bucket step: refill for ``elapsed_s``, then take ``cost`` if there is enough.

    Returns
    -------
    tuple of (float, bool, float)
        tokens left, allowed, seconds until ``cost`` tokens are there (0 when allowed).
    """
    cost = min(float(cost), float(burst))
    tokens = min(float(burst), tokens + max(0.0, elapsed_s) * rate_per_s)
    if tokens >= cost:
        return tokens - cost, True, 0.0
    return tokens, False, (cost - tokens) / rate_per_s


# Atomic token bucket in Redis: state {tokens, ts} per client, time from the Redis server (one clock for every
# worker and host). Returns {allowed, retry_after_s as text} (Lua numbers would be truncated to integers).
_REDIS_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = math.min(tonumber(ARGV[3]) or 1, burst)
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed = 0
local retry = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  retry = (cost - tokens) / rate
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

    def consume(self, client: str, cost: float = 1.0) -> tuple[bool, float]:
        """Take ``cost`` tokens for ``client``; raises the Redis client's errors when Redis is unavailable."""
        allowed, retry = self._script(keys=[self._prefix + client], args=[self.rate_per_s, self.burst, cost])
        return bool(int(allowed)), float(retry)


# --------------------------------------------------------------------------------------------- private state
def private_folder(path: Path, setting: str = "ATLAS_VIEWER_STATE_DIR") -> Path:
    """``path`` as a folder only the server's user can enter: made 0700 if missing, refused when another user owns
    it, it is a symbolic link, or others may write it.

    Raises
    ------
    StateDirError
        naming the folder and ``setting``.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = os.lstat(path)
    except OSError as exc:
        raise StateDirError(f"{setting}: cannot make the private folder {path}: {exc}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise StateDirError(f"{setting}: {path} is not a folder (a symbolic link or a file)")
    if info.st_uid != os.getuid():
        raise StateDirError(f"{setting}: {path} belongs to another user (uid {info.st_uid}); the server's state "
                            "must be private")
    if info.st_mode & 0o077:
        os.chmod(path, 0o700)  # ours but open to others: close it before anything is written
    return path


class SqliteState:
    """One SQLite file in the private state folder, shared by the worker processes of one host.

    A connection is opened per process and thread (never carried across a fork); every write is one short
    ``BEGIN IMMEDIATE`` transaction, so the workers see one state.

    Parameters
    ----------
    path : Path
        the database file; its folder is checked with :func:`private_folder`.
    schema : str
        SQL run once per connection (``CREATE TABLE IF NOT EXISTS ...``).
    """

    def __init__(self, path: Path, schema: str):
        self.path = Path(path)
        self._schema = schema
        self._local = threading.local()
        private_folder(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            if os.fstat(fd).st_uid != os.getuid():
                raise StateDirError(f"{self.path} belongs to another user; the server's state must be private")
        finally:
            os.close(fd)

    def connect(self) -> sqlite3.Connection:
        """This process's and thread's connection (autocommit; transactions are explicit)."""
        pid, conn = getattr(self._local, "conn", (None, None))
        if conn is None or pid != os.getpid():
            conn = sqlite3.connect(self.path, timeout=5.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(self._schema)
            self._local.conn = (os.getpid(), conn)
        return conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction taken at once (``BEGIN IMMEDIATE``), committed on success, rolled back otherwise."""
        conn = self.connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


_BUCKETS_SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (name TEXT NOT NULL, client TEXT NOT NULL, tokens REAL NOT NULL,
                                    ts REAL NOT NULL, PRIMARY KEY (name, client));
CREATE INDEX IF NOT EXISTS buckets_ts ON buckets (ts);
"""


class SqliteBuckets:
    """Token buckets per client in a SQLite file, shared by the workers of one host (interface of
    :class:`LocalBuckets`); used when several workers serve without Redis.

    Parameters
    ----------
    state : SqliteState
        the state file.
    name : str
        which limit (several limits share one file).
    rate_per_s, burst
        as :class:`LocalBuckets`.
    clock : callable
        wall-clock seconds (every worker reads the same clock).
    max_clients : int
        rows kept per limit; a bucket full again is forgotten first, then the least recently seen.
    """

    def __init__(self, state: SqliteState, name: str, rate_per_s: float, burst: int,
                 clock: Callable[[], float] = time.time, max_clients: int = 100_000):
        self.state = state
        self.name = name
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._max_clients = max_clients

    def consume(self, client: str, cost: float = 1.0) -> tuple[bool, float]:
        """Take ``cost`` tokens for ``client``: ``(allowed, retry_after_s)``; raises ``sqlite3.Error`` on failure."""
        with self.state.transaction() as conn:
            now = self._clock()
            row = conn.execute("SELECT tokens, ts FROM buckets WHERE name = ? AND client = ?",
                               (self.name, client)).fetchone()
            tokens, last = row if row else (float(self.burst), now)
            tokens, allowed, retry = _take(tokens, now - last, self.rate_per_s, self.burst, cost)
            conn.execute("INSERT OR REPLACE INTO buckets (name, client, tokens, ts) VALUES (?, ?, ?, ?)",
                         (self.name, client, tokens, now))
            if random.random() < 0.01:
                self._prune(conn, now)
        return allowed, retry

    def _prune(self, conn: sqlite3.Connection, now: float) -> None:
        """Forget buckets that have refilled (they would start full anyway), then the oldest beyond the bound."""
        refill_s = self.burst / self.rate_per_s
        conn.execute("DELETE FROM buckets WHERE name = ? AND ts < ?", (self.name, now - refill_s))
        conn.execute("DELETE FROM buckets WHERE name = ? AND client IN (SELECT client FROM buckets WHERE name = ? "
                     "ORDER BY ts DESC LIMIT -1 OFFSET ?)", (self.name, self.name, self._max_clients))


class RateLimiter:
    """A rate limit: shared buckets (Redis or SQLite) while they work, this process's buckets otherwise.

    Parameters
    ----------
    local : LocalBuckets
        always present; used alone without shared buckets, and as the fallback while they fail.
    shared : RedisBuckets or SqliteBuckets, optional
        the buckets every worker sees.
    guard : server.caching.BackendGuard, optional
        the outage state of Redis, so an outage is logged once and Redis is probed at one pace.
    what : str
        what is limited, in the 429 message (``"exports"``, ``"pictures"``, ``"login attempts"``).
    """

    #: Seconds between two log lines about failing shared buckets without a guard (a broken disk is not logged at
    #: the pace of requests).
    LOG_EVERY_S = 60.0

    def __init__(self, local: LocalBuckets, shared: Any = None, guard: Any = None, what: str = "exports"):
        self.local = local
        self.shared = shared
        self.guard = guard
        self.what = what
        self._logged_at = -math.inf

    def consume(self, client: str, cost: float = 1.0) -> tuple[bool, float]:
        """``(allowed, retry_after_s)`` for one request of ``cost`` tokens by ``client``."""
        if self.shared is not None and (self.guard is None or self.guard.should_try()):
            try:
                result = self.shared.consume(client, cost)
            except Exception as exc:  # shared buckets unavailable: limit in this process instead
                if self.guard is not None:
                    self.guard.failed(exc)
                elif time.monotonic() - self._logged_at >= self.LOG_EVERY_S:
                    self._logged_at = time.monotonic()
                    log.error("shared rate limit of %s failed (%s); counting in this process", self.what, exc)
            else:
                if self.guard is not None:
                    self.guard.succeeded()
                return result
        return self.local.consume(client, cost)

    def check(self, client: str, cost: float = 1.0) -> None:
        """Count one request; raise :class:`RateLimited` when over the limit."""
        allowed, retry_after = self.consume(client, cost)
        if not allowed:
            raise RateLimited(retry_after, self.what)


#: The export limit is a :class:`RateLimiter` like every other.
ExportLimiter = RateLimiter


def client_id() -> str:
    """Who a request counts against: the logged-in user, else the client address."""
    user = g.get("user")
    return f"user:{user}" if user else f"addr:{request.remote_addr or '-'}"


def check_export_rate(server: Flask | None = None, client: str | None = None) -> None:
    """Count one export for the current client; raise :class:`RateLimited` when over the limit.

    Call it from a Dash callback that exports (a Flask route under an export prefix is limited automatically).
    Does nothing when no limiter is installed.
    """
    from flask import current_app

    server = server or current_app
    limiter: RateLimiter | None = server.extensions.get(EXTENSION_KEY)
    if limiter is None:
        return
    limiter.check(client or client_id())


#: Pixels a picture may have and still count as one picture against the picture limit; a larger one counts as
#: its area in these units (a 4096 x 4096 picture costs 16), so a few huge pictures cannot take a worker's time
#: at the price of small ones.
PICTURE_UNIT_PX = 1024 * 1024


def picture_cost(args: Any, max_px: int) -> float:
    """What one picture request costs against the picture limit: ``w * h / PICTURE_UNIT_PX``, at least 1.

    ``w`` and ``h`` are read leniently (a bad value costs 1; the route itself refuses it with 400) and bounded by
    ``max_px`` before any arithmetic.
    """
    sides = []
    for key in ("w", "h"):
        raw = str(args.get(key, "") or "")
        sides.append(min(int(raw), max_px) if raw.isdigit() and len(raw) <= 9 else 1)
    return max(1.0, sides[0] * sides[1] / PICTURE_UNIT_PX)


def large_picture_mpx(args: Any, max_px: int) -> float:
    """Megapixels (units of :data:`PICTURE_UNIT_PX`) of a picture larger than one unit, else 0: what it draws on
    the server's picture budget. Read and bounded as in :func:`picture_cost`."""
    cost = picture_cost(args, max_px)
    return cost if cost > 1.0 else 0.0


class PictureBudget:
    """The server's budget of megapixels per second for large pictures: one bucket shared by every client (and
    by every worker, through Redis or the state folder like the per-client limits).

    Parameters
    ----------
    limiter : RateLimiter, optional
        its bucket (one client, ``"server"``); None turns the budget off.
    max_px : int
        largest picture side, bounding the size read from a request.
    """

    CLIENT = "server"

    def __init__(self, limiter: RateLimiter | None, max_px: int):
        self.limiter = limiter
        self.max_px = max_px

    def check(self, args: Any) -> None:
        """Draw a large picture's megapixels from the budget; raise :class:`PictureBudgetSpent` when too few are
        left. A picture of at most one megapixel draws nothing and always passes."""
        mpx = large_picture_mpx(args, self.max_px)
        if self.limiter is None or mpx <= 0:
            return
        allowed, retry_after = self.limiter.consume(self.CLIENT, mpx)
        if not allowed:
            raise PictureBudgetSpent(retry_after)


def make_picture_budget(settings: Settings, guard: Any = None,
                        clock: Callable[[], float] = time.monotonic) -> PictureBudget:
    """The picture budget of ``settings`` (off when ``picture_budget_mpx_per_s`` is 0)."""
    if settings.picture_budget_mpx_per_s <= 0:
        return PictureBudget(None, settings.max_image_px)
    limiter = make_rate_limiter(settings, "picture-budget", settings.picture_budget_mpx_per_s * 60.0,
                                settings.picture_budget_burst_mpx,
                                guard=guard, clock=clock, what="large pictures")
    return PictureBudget(limiter, settings.max_image_px)


def redis_client(settings: Settings) -> Any:
    """A Redis client for ``settings.redis_url`` when the cache is Redis, else None (no connection is made here)."""
    if settings.resolved_cache_type != "redis" or not settings.redis_url:
        return None
    import redis

    return redis.Redis.from_url(settings.redis_url, socket_timeout=settings.redis_timeout_s,
                                socket_connect_timeout=settings.redis_timeout_s)


_STATE_FILES: dict[Path, SqliteState] = {}
_STATE_LOCK = threading.Lock()


def state_file(settings: Settings, name: str, schema: str) -> SqliteState:
    """The SQLite file ``name`` in the private state folder of ``settings`` (one object per file and process).

    Raises
    ------
    StateDirError
        when the folder cannot be made private.
    """
    path = settings.resolved_state_dir / name
    with _STATE_LOCK:
        state = _STATE_FILES.get(path)
        if state is None or state._schema != schema:
            state = _STATE_FILES[path] = SqliteState(path, schema)
        return state


def make_rate_limiter(settings: Settings, name: str, rate_per_min: float, burst: int, guard: Any = None,
                      clock: Callable[[], float] = time.monotonic, what: str = "exports") -> RateLimiter:
    """A :class:`RateLimiter` for limit ``name``, with buckets every worker sees when several serve: Redis when the
    cache is Redis, else SQLite in the state folder when several gunicorn workers serve
    (:attr:`settings.Settings.shares_limits`), else only this process's.

    Parameters
    ----------
    name : str
        the limit's name (its Redis key prefix and SQLite rows).
    what : str
        what is limited, in the 429 message.
    """
    rate = rate_per_min / 60.0
    local = LocalBuckets(rate, burst, clock=clock)
    buckets = None
    client = redis_client(settings)
    if client is not None:
        buckets = RedisBuckets(client, rate, burst, prefix=f"atlas-viewer:{name}:")
    elif settings.shares_limits:
        buckets = SqliteBuckets(state_file(settings, "limits.sqlite3", _BUCKETS_SCHEMA), name, rate, burst)
    return RateLimiter(local, buckets, guard if client is not None else None, what=what)


def make_limiter(settings: Settings, guard: Any = None, clock: Callable[[], float] = time.monotonic,
                 burst: int | None = None, rate_per_min: float | None = None) -> RateLimiter:
    """The export limit of ``settings`` (shared through Redis or the state folder, see :func:`make_rate_limiter`)."""
    return make_rate_limiter(settings, "rate", rate_per_min or settings.export_rate_per_min,
                             burst or settings.export_burst, guard=guard, clock=clock, what="exports")


# --------------------------------------------------------------------------------------------- export slots
class ExportSlots:
    """At most ``slots`` exports at once in this worker; a further one waits up to ``wait_s``, then is refused.

    Parameters
    ----------
    slots : int
        exports run at once (keep below the worker's threads, so pictures always find a thread).
    wait_s : float
        seconds an export waits for a slot before :class:`ServerBusy`.
    retry_after_s : float
        what a refused client is told to wait.
    """

    def __init__(self, slots: int, wait_s: float, retry_after_s: float = 5.0):
        self.slots = slots
        self.wait_s = wait_s
        self.retry_after_s = retry_after_s
        self._semaphore = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self.busy = 0

    def acquire(self) -> None:
        """Take a slot, waiting at most ``wait_s``; raise :class:`ServerBusy` when none frees up."""
        if self.wait_s > 0:
            got = self._semaphore.acquire(timeout=self.wait_s)
        else:
            got = self._semaphore.acquire(blocking=False)
        if not got:
            raise ServerBusy(self.retry_after_s)
        with self._lock:
            self.busy += 1

    def release(self) -> None:
        """Give a slot back."""
        with self._lock:
            self.busy -= 1
        self._semaphore.release()

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """``with slots.slot(): ...``: run an export in a slot."""
        self.acquire()
        try:
            yield
        finally:
            self.release()


@contextlib.contextmanager
def export_slot(server: Flask | None = None) -> Iterator[None]:
    """Run the body in one of this worker's export slots (for a Dash callback that exports; the export routes take
    theirs automatically). Raises :class:`ServerBusy` when none frees up in time; does nothing without slots."""
    from flask import current_app

    server = server or current_app
    slots: ExportSlots | None = server.extensions.get(SLOTS_EXTENSION_KEY)
    if slots is None:
        yield
        return
    with slots.slot():
        yield


# --------------------------------------------------------------------------------------------- request bodies
class BodyTooLarge(RequestEntityTooLarge):
    """A request body over the bound; answered with 413 and JSON ``{"error", "parameter": "body", "reason"}``."""

    reason = "body_too_large"

    def __init__(self, max_bytes: int):
        super().__init__(f"body: the request body is over {max_bytes} bytes")
        self.max_bytes = max_bytes

    def to_json(self) -> dict[str, str]:
        return {"error": self.description, "parameter": "body", "reason": self.reason}


class CountingInput:
    """A request body stream that raises :class:`BodyTooLarge` once more than ``max_bytes`` have been read.

    Reads at most ``max_bytes + 1`` bytes from ``stream`` in all, so a body without a length (chunked) is never read
    whole, however large the client makes it.
    """

    def __init__(self, stream: Any, max_bytes: int):
        self._stream = stream
        self.max_bytes = max_bytes
        self.read_bytes = 0

    def _count(self, data: bytes) -> bytes:
        self.read_bytes += len(data)
        if self.read_bytes > self.max_bytes:
            raise BodyTooLarge(self.max_bytes)
        return data

    def _allowance(self, size: int | None) -> int:
        left = self.max_bytes + 1 - self.read_bytes  # one byte over is enough to know
        return left if size is None or size < 0 else min(size, left)

    def read(self, size: int | None = -1) -> bytes:
        if self.read_bytes > self.max_bytes:
            raise BodyTooLarge(self.max_bytes)
        allowance = self._allowance(size)
        if size is None or size < 0:  # "all of it": in pieces, never more than the bound plus one byte
            parts = []
            while allowance > 0:
                part = self._stream.read(min(allowance, 64 * 1024))
                if not part:
                    break
                parts.append(self._count(part))
                allowance = self._allowance(None)
            return b"".join(parts)
        return self._count(self._stream.read(allowance))

    def readline(self, size: int | None = -1) -> bytes:
        return self._count(self._stream.readline(self._allowance(size)))

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        return list(iter(self.readline, b""))

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")


class BodyLimit:
    """WSGI middleware: request bodies of at most ``max_bytes``.

    A declared ``Content-Length`` over the bound is answered 413 without reading the body; a body without a
    ``Content-Length`` (``Transfer-Encoding: chunked``) is read through :class:`CountingInput`, whose
    :class:`BodyTooLarge` the app answers with 413 (:func:`install_limits` registers the JSON answer). What the
    client still sends is left to the WSGI server (gunicorn drains a little, then closes the connection).
    """

    def __init__(self, app: Callable, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        declared = str(environ.get("CONTENT_LENGTH") or "").strip()
        if declared:
            if declared.isdigit() and int(declared) > self.max_bytes:
                return self._refuse(start_response)
        elif "wsgi.input" in environ:
            environ["wsgi.input"] = CountingInput(environ["wsgi.input"], self.max_bytes)
        return self.app(environ, start_response)

    def _refuse(self, start_response: Callable) -> list[bytes]:
        import json

        body = json.dumps(BodyTooLarge(self.max_bytes).to_json()).encode()
        # answered before the app: its request log and security headers do not see it, so the essentials are here
        start_response("413 Content Too Large", [("Content-Type", "application/json"),
                                                 ("Content-Length", str(len(body))), ("Connection", "close"),
                                                 ("X-Content-Type-Options", "nosniff"), ("Cache-Control", "no-store")])
        return [body]


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
                   ) -> RateLimiter:
    """Add the export and picture rate limits, the server's picture budget, the export slots and the 400/429/503
    error handlers to ``server``.

    Parameters
    ----------
    export_endpoints : iterable of str
        Flask endpoint names that count as exports, in addition to paths under :data:`EXPORT_PATH_PREFIXES`.

    Returns
    -------
    RateLimiter
        the export limit, also stored in ``server.extensions`` for :func:`check_export_rate`; the picture limit
        and the export slots are stored there too (:data:`PICTURE_EXTENSION_KEY`, :data:`SLOTS_EXTENSION_KEY`).
    """
    limiter = make_limiter(settings, guard=guard, clock=clock)
    pictures = make_rate_limiter(settings, "pictures", settings.picture_rate_per_min, settings.picture_burst,
                                 guard=guard, clock=clock, what="pictures")
    budget = make_picture_budget(settings, guard=guard, clock=clock)
    slots = ExportSlots(settings.export_slots, settings.export_wait_s)
    if settings.export_slots >= settings.threads:
        log.warning("ATLAS_VIEWER_EXPORT_SLOTS=%d is not below ATLAS_VIEWER_THREADS=%d: exports can hold every "
                    "thread of a worker", settings.export_slots, settings.threads)
    server.extensions[EXTENSION_KEY] = limiter
    server.extensions[PICTURE_EXTENSION_KEY] = pictures
    server.extensions[SLOTS_EXTENSION_KEY] = slots
    endpoints = frozenset(export_endpoints)

    @server.before_request
    def _limit_costly_work():
        path = request.path
        if request.endpoint in endpoints or path.startswith(EXPORT_PATH_PREFIXES):
            check_export_rate(server)
        elif path.startswith(PICTURE_PATH_PREFIXES):
            pictures.check(client_id(), picture_cost(request.args, settings.max_image_px))
            budget.check(request.args)
        if path.startswith(EXPORT_WORK_PREFIXES) or request.endpoint in endpoints:
            slots.acquire()
            g.atlas_viewer_export_slot = True
        return None

    @server.teardown_request
    def _free_export_slot(exc: BaseException | None = None):
        if g.pop("atlas_viewer_export_slot", False):
            slots.release()

    def come_back_later(exc: RateLimited | ServerBusy, status: int):
        response = jsonify({"error": str(exc), "reason": exc.reason})
        response.status_code = status
        response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
        return response

    server.register_error_handler(RateLimited, lambda exc: come_back_later(exc, 429))
    server.register_error_handler(ServerBusy, lambda exc: come_back_later(exc, 503))
    server.register_error_handler(BodyTooLarge, lambda exc: (jsonify(exc.to_json()), 413))

    @server.errorhandler(ViewError)
    def _bad_param(exc: ViewError):
        response = jsonify(exc.to_json())
        response.status_code = 400
        return response

    return limiter
