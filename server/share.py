"""Short links: ``/s/<id>`` stands for a view's long address (``/?dataset=...``) and survives a server restart.

The id is the first 10 characters of the lowercase base32 of the SHA-256 of the view's CANONICAL query string
(:func:`canonical_query`: parsed and written back by ``core.state``), so the same view always gives the
same link, from any worker or server. On the (astronomically rare) clash with another view, the next id of the
sequence ``sha256(query + "#1")``, ``"#2"``... is taken.

Links are kept in ``<store>/.shares/shares.sqlite3`` (SQLite in WAL mode: atomic writes, safe with several
gunicorn workers; ``atlas-viewer prepare`` leaves the folder alone), or a folder in the system temp when the store
is read-only. When ``redis_url`` is set they also go to Redis (shared by several servers), written through to the
SQLite file so a Redis eviction (``allkeys-lru``) or outage loses none: reads try Redis, then the file.

Nothing from a request reaches a file path: ids are checked against ``^[a-z2-7]{10}$`` before any look-up.
"""
from __future__ import annotations

import base64
import hashlib
import html
import logging
import sqlite3
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlencode
from typing import Any, Protocol

from flask import Blueprint, Response, current_app, redirect

from core.context import ViewerContext
from core.requests import share_id_ok
from server.limits import client_id, make_rate_limiter
from core.state import MAP_VIEW_KEYS, PANEL_KEYS, QUERY_KEYS, SELECTION_KEYS, ViewState, parse_query, to_query

log = logging.getLogger(__name__)

#: Folder of the links inside the store, and the database file.
SHARES_DIR = ".shares"
SHARES_DB = "shares.sqlite3"
#: Redis key prefix of a link.
REDIS_PREFIX = "atlas-viewer:share:"
#: Path of a short link (``<share_id>`` is validated before use).
SHARE_PATH = "/s/<share_id>"
#: Longest query string stored (a view's address is a few hundred characters).
MAX_QUERY_CHARS = 4000
#: Ids tried for one query before giving up (a clash needs 2^50 links).
MAX_ATTEMPTS = 8
#: Where the app keeps the short-link rate limit.
SHARE_LIMIT_KEY = "atlas_viewer_share_limit"
#: Parameters a stored view may hold: the address bar's.
ADDRESS_KEYS = frozenset(QUERY_KEYS) | frozenset(SELECTION_KEYS) | frozenset(MAP_VIEW_KEYS) | frozenset(PANEL_KEYS)


class ShareError(RuntimeError):
    """A link could not be stored (no writable folder, Redis and file both failing)."""


def share_id(query: str, attempt: int = 0) -> str:
    """The id of ``query`` (``attempt`` > 0: the next ids after a clash).

    Returns
    -------
    str
        10 characters of ``[a-z2-7]``.
    """
    text = query if attempt == 0 else f"{query}#{attempt}"
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:10]


def canonical_query(state: ViewState, context: ViewerContext) -> str:
    """The query string of a view, canonical: written, read back through the URL parser, written again.

    The second write drops what the parser would not keep and rounds numbers the same way, so two equal views
    give the same text (and the same link).
    """
    first = to_query(state)
    parsed, _ = parse_query(first, context.catalog, gene_lookup=context.lookups.gene_symbol,
                            term_lookup=context.lookups.term_level)
    return to_query(parsed)


def checked_record(link_id: str, record: Any) -> str | None:
    """A stored record read back, validated: the query it holds re-encoded, or None when it is not one this server
    wrote.

    A record is accepted when it is a query string (``?`` first, at most :data:`MAX_QUERY_CHARS`, no control
    characters) whose id is its own hash (:func:`share_id`, any of the :data:`MAX_ATTEMPTS` ids) and whose
    parameters are all the address bar's; it is re-encoded, so the redirect it gives is always a relative address
    of this viewer (never another host).
    """
    if isinstance(record, bytes):
        try:
            record = record.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if not isinstance(record, str) or not record.startswith("?") or len(record) > MAX_QUERY_CHARS:
        return None
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in record):
        return None
    if link_id not in {share_id(record, attempt) for attempt in range(MAX_ATTEMPTS)}:
        return None
    pairs = parse_qsl(record[1:], keep_blank_values=True)
    if not pairs or any(key not in ADDRESS_KEYS for key, _ in pairs):
        return None
    return "?" + urlencode(pairs)


class ShareBackend(Protocol):
    """Where links are kept: ``add`` if absent and return what the id holds; ``get`` an id's query or None."""

    def add(self, share_id: str, query: str) -> str: ...

    def get(self, share_id: str) -> str | None: ...


class SqliteShares:
    """Links in a SQLite file (WAL journal, one short connection per call: safe across threads and forks).

    Parameters
    ----------
    path : Path
        The database file; its folder is created (mode 0700) when missing.
    max_rows : int
        Links kept at most (``settings.max_shares``).
    """

    def __init__(self, path: Path, max_rows: int = 100_000):
        self.path = Path(path)
        self.max_rows = int(max_rows)
        self._ready = False
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        if not self._ready:
            with self._lock:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("CREATE TABLE IF NOT EXISTS shares (id TEXT PRIMARY KEY, query TEXT NOT NULL, "
                                   "created REAL NOT NULL)")
                self._ready = True
        return connection

    def prepare(self) -> None:
        """Create the folder and the table now (raises ``OSError``/``sqlite3.Error`` if it cannot)."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._connect().close()

    def add(self, share_id: str, query: str) -> str:
        """Store ``query`` under ``share_id`` unless the id is taken; return the id's query.

        Raises
        ------
        ShareError
            When the file already holds :attr:`max_rows` links (it never grows without bound).
        """
        connection = self._connect()
        try:
            connection.execute("BEGIN IMMEDIATE")
            held = connection.execute("SELECT query FROM shares WHERE id = ?", (share_id,)).fetchone()
            if held is None and connection.execute("SELECT COUNT(*) FROM shares").fetchone()[0] >= self.max_rows:
                connection.execute("ROLLBACK")
                raise ShareError(f"the server keeps at most {self.max_rows:,} short links and holds as many "
                                 "(setting ATLAS_VIEWER_MAX_SHARES)")
            connection.execute("INSERT OR IGNORE INTO shares (id, query, created) VALUES (?, ?, ?)",
                               (share_id, query, time.time()))
            row = connection.execute("SELECT query FROM shares WHERE id = ?", (share_id,)).fetchone()
            connection.execute("COMMIT")
        finally:
            connection.close()
        return row[0]

    def get(self, share_id: str) -> str | None:
        """The query of ``share_id``, or None."""
        connection = self._connect()
        try:
            row = connection.execute("SELECT query FROM shares WHERE id = ?", (share_id,)).fetchone()
        finally:
            connection.close()
        return row[0] if row else None


class RedisShares:
    """Links in Redis under ``atlas-viewer:share:<id>``, without expiry (``SET NX`` keeps the first writer's)."""

    def __init__(self, client: Any, prefix: str = REDIS_PREFIX):
        self.client = client
        self.prefix = prefix

    def add(self, share_id: str, query: str) -> str:
        key = self.prefix + share_id
        self.client.set(key, query, nx=True)
        value = self.client.get(key)
        return value.decode("utf-8") if isinstance(value, bytes) else str(value)

    def get(self, share_id: str) -> str | None:
        value = self.client.get(self.prefix + share_id)
        if value is None:
            return None
        return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class ShareStore:
    """The links of one app: every backend written, the first that answers read (and refilled on a miss).

    Parameters
    ----------
    backends : list
        :class:`RedisShares` first when configured, then :class:`SqliteShares`.
    """

    def __init__(self, backends: list[ShareBackend]):
        if not backends:
            raise ValueError("a ShareStore needs at least one backend")
        self.backends = backends

    def create(self, query: str) -> str:
        """The id of ``query``, stored.

        Raises
        ------
        ShareError
            When no backend could store it, or ``query`` is too long.
        """
        if len(query) > MAX_QUERY_CHARS:
            raise ShareError(f"the view's address is {len(query)} characters, over {MAX_QUERY_CHARS}")
        for attempt in range(MAX_ATTEMPTS):
            candidate = share_id(query, attempt)
            held = self._add(candidate, query)
            if held == query:
                return candidate
            log.warning("short link %s already holds another view; trying the next id", candidate)
        raise ShareError(f"no free id for this view after {MAX_ATTEMPTS} attempts")  # pragma: no cover

    def _add(self, candidate: str, query: str) -> str:
        held: str | None = None
        errors = []
        for backend in self.backends:
            try:
                value = backend.add(candidate, query)
            except Exception as exc:  # one backend down: the others keep the link
                errors.append(f"{type(backend).__name__}: {exc}")
                log.warning("short link not stored in %s: %s", type(backend).__name__, exc)
                continue
            if held is None:
                held = value
        if held is None:
            raise ShareError("the link could not be stored (" + "; ".join(errors) + ")")
        return held

    def resolve(self, share_id: str) -> str | None:
        """The query of a valid id, or None (unknown, not of the id form, or a record that is not one this server
        wrote: see :func:`checked_record`)."""
        if not share_id_ok(share_id):
            return None
        missed = []
        for backend in self.backends:
            try:
                query = backend.get(share_id)
            except Exception as exc:
                log.warning("short link look-up in %s failed: %s", type(backend).__name__, exc)
                continue
            if query is not None:
                query = checked_record(share_id, query)
                if query is None:
                    log.warning("short link %s in %s is not a record this server wrote: refused", share_id,
                                type(backend).__name__)
                    continue
                for earlier in missed:  # e.g. evicted from Redis: put it back
                    try:
                        earlier.add(share_id, query)
                    except Exception:  # pragma: no cover - best effort
                        pass
                return query
            missed.append(backend)
        return None


def shares_folder(store: Path) -> Path:
    """``<store>/.shares`` (the links live beside the prepared data)."""
    return Path(store) / SHARES_DIR


def open_share_store(settings: Any) -> ShareStore:
    """The links of ``settings``: SQLite under the store (or the system temp when the store is read-only),
    behind Redis when ``settings.redis_url`` is set."""
    sqlite = SqliteShares(shares_folder(settings.store) / SHARES_DB, max_rows=settings.max_shares)
    try:
        sqlite.prepare()
    except (OSError, sqlite3.Error) as exc:
        digest = hashlib.sha1(str(Path(settings.store).resolve()).encode()).hexdigest()[:12]
        fallback = Path(tempfile.gettempdir()) / f"atlas-viewer-shares-{digest}" / SHARES_DB
        log.warning("cannot keep short links in %s (%s); using %s (links survive restarts, not a cleaned temp)",
                    sqlite.path.parent, exc, fallback.parent)
        sqlite = SqliteShares(fallback, max_rows=settings.max_shares)
        sqlite.prepare()
    backends: list[ShareBackend] = [sqlite]
    if getattr(settings, "redis_url", None):
        import redis

        client = redis.Redis.from_url(settings.redis_url, socket_timeout=settings.redis_timeout_s,
                                      socket_connect_timeout=settings.redis_timeout_s)
        backends.insert(0, RedisShares(client))
    return ShareStore(backends)


# ---------------------------------------------------------------------------------------------- routes
NOT_FOUND_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Unknown link · ABC Atlas viewer</title>
<link rel="icon" href="data:,">
<style>body{{font-family:system-ui,sans-serif;margin:12vh auto;max-width:34em;color:#1f2733;padding:0 1em}}
a{{color:#2f6fde}}code{{background:#eef1f5;padding:1px 4px;border-radius:3px}}</style></head>
<body><h1>This link is unknown</h1>
<p>No view is stored under <code>{share}</code> on this server. It may come from another server, or be mistyped.</p>
<p><a href="{home}">Open the viewer</a></p></body></html>
"""


def share_blueprint(store: ShareStore, home: str = "/") -> Blueprint:
    """``GET /s/<id>``: 302 to the long address of the view, or a 404 page with a link home.

    Parameters
    ----------
    home : str
        The viewer's path (Dash's ``requests_pathname_prefix``); the long address is ``home + query``.
    """
    blueprint = Blueprint("shares", __name__)

    @blueprint.get(SHARE_PATH)
    def resolve_share(share_id: str) -> Response:
        query = store.resolve(share_id)
        if query is None:
            page = NOT_FOUND_PAGE.format(share=html.escape(share_id[:40]), home=html.escape(home))
            return Response(page, status=404, mimetype="text/html")
        response = redirect(home + query, code=302)
        response.headers["Cache-Control"] = "no-store"
        return response

    return blueprint


def share_path(share_id: str, home: str = "/") -> str:
    """The path of a short link (``/s/<id>``, under the app's prefix)."""
    return f"{home.rstrip('/')}/s/{share_id}"


def register(app: Any, context: ViewerContext) -> ShareStore:
    """Serve ``/s/<id>`` on ``app``'s server (the page's "Copy link" callbacks create links through the store).

    Returns
    -------
    ShareStore
        Also kept in ``server.extensions["atlas_viewer_shares"]`` (the HTTP API creates links through it).
    """
    server = getattr(app, "server", app)
    store = open_share_store(context.settings)
    home = getattr(getattr(app, "config", None), "requests_pathname_prefix", None) or "/"
    server.extensions["atlas_viewer_shares"] = store
    settings = context.settings
    server.extensions[SHARE_LIMIT_KEY] = make_rate_limiter(
        settings, "shares", settings.share_rate_per_min, max(1, round(settings.share_rate_per_min)), what="short links")
    server.register_blueprint(share_blueprint(store, home))
    return store


def check_share_rate() -> None:
    """Count one new short link for the current client (the user when logged in, else the address).

    Raises
    ------
    server.limits.RateLimited
        Over ``settings.share_rate_per_min`` (answered 429 with ``Retry-After``).
    """
    limiter = current_app.extensions.get(SHARE_LIMIT_KEY)
    if limiter is not None:
        limiter.check(client_id())
