"""Login for a shared server, off by default: a users file with password hashes, or a trusted proxy header; and the
security headers of every response.

* ``ATLAS_VIEWER_AUTH_USERS_FILE``: lines ``user:hash`` (hash from werkzeug's ``generate_password_hash``; write
  them with ``atlas-viewer hash-password USER``; ``#`` starts a comment). Users log in at ``/login`` (a form with a
  CSRF token); the login lives in a signed session cookie (``ATLAS_VIEWER_SECRET_KEY``; HttpOnly, SameSite=Lax,
  Secure with ``ATLAS_VIEWER_SESSION_COOKIE_SECURE``). The file is re-read when it changes. A session ends
  server-side when its user is removed from the file, when the user's password hash changes (the session carries
  a keyed fingerprint of the hash it was opened with), and when it logs out (``POST /logout`` with the CSRF token:
  its id is recorded as ended until it would have expired, in Redis or the private state folder, so every worker
  refuses it). Login attempts are throttled per address and per user name, counted across workers.
* ``ATLAS_VIEWER_AUTH_PROXY_HEADER``: the reverse proxy authenticates and passes the user in this header. It is
  honoured only on connections from ``ATLAS_VIEWER_TRUSTED_PROXIES`` (the direct peer, before any
  ``X-Forwarded-For`` is applied); from anyone else it is ignored. The proxy must also strip it from clients.

Every route is protected (the Dash page, ``/_dash-*``, assets, the picture routes) except ``/healthz``, ``/login``
and ``/logout``. A browser page load without a login is redirected to ``/login``; other requests get 401 JSON.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import html
import ipaddress
import logging
import os
import re
import secrets
import threading
import time
from collections import OrderedDict
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import urlencode

from flask import Flask, Response, g, jsonify, redirect, request, session
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.security import check_password_hash, generate_password_hash

from settings import Settings

log = logging.getLogger(__name__)

LOGIN_PATH = "/login"
LOGOUT_PATH = "/logout"
OPEN_PATHS = frozenset({"/healthz", LOGIN_PATH, LOGOUT_PATH})
#: The WSGI environ key holding the direct peer's address, before any X-Forwarded-For is applied.
PEER_KEY = "atlas_viewer.peer"
CSRF_FIELD = "csrf_token"
DEFAULT_SECRET = "dev-not-secret"
_USER_RE = re.compile(r"^[A-Za-z0-9_.@+-]{1,64}$")
# A hash to check against when the user is unknown, so a wrong user name costs the same time as a wrong password.
_DUMMY_HASH = generate_password_hash("not-a-password")


class AuthConfigError(ValueError):
    """The login settings or the users file are wrong (the message names the variable, file and line)."""


def user_line(user: str, password: str) -> str:
    """One line of the users file: ``user:<werkzeug password hash>``.

    Raises
    ------
    AuthConfigError
        if the user name has characters other than letters, digits and ``_.@+-``, or the password is empty.
    """
    if not _USER_RE.match(user):
        raise AuthConfigError(f"user name {user!r}: use 1-64 letters, digits or _.@+-")
    if not password:
        raise AuthConfigError("the password may not be empty")
    return f"{user}:{generate_password_hash(password)}"


def parse_users(text: str, source: str = "<users>") -> dict[str, str]:
    """Parse users-file text into ``{user: hash}``.

    Raises
    ------
    AuthConfigError
        naming ``source`` and the line number of a malformed line or a repeated user.
    """
    users: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")  # werkzeug hashes contain ':' themselves: split on the first
        if not sep or not _USER_RE.match(user) or "$" not in hashed:
            raise AuthConfigError(f"{source}, line {number}: expected 'user:hash' "
                                  "(write lines with `atlas-viewer hash-password USER`)")
        if user in users:
            raise AuthConfigError(f"{source}, line {number}: user {user!r} appears twice")
        users[user] = hashed
    return users


class UsersFile:
    """The users file, re-read when its modification time or size changes.

    Parameters
    ----------
    path : Path
        the ``user:hash`` file.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, str] = {}
        self.users()  # fail at start-up, naming the file, if it is missing or malformed

    def users(self) -> dict[str, str]:
        """``{user: hash}`` as the file is now.

        Raises
        ------
        AuthConfigError
            if the file is missing or malformed at start-up; later failures keep the last good users.
        """
        try:
            st = os.stat(self.path)
        except OSError as exc:
            if self._stamp is None:
                raise AuthConfigError(f"ATLAS_VIEWER_AUTH_USERS_FILE={self.path}: cannot read: {exc}") from None
            log.error("users file %s cannot be read (%s); keeping the last users", self.path, exc)
            return self._users
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            with self._lock:
                if stamp != self._stamp:
                    try:
                        self._users = parse_users(self.path.read_text(encoding="utf-8"), str(self.path))
                    except (OSError, AuthConfigError) as exc:
                        if self._stamp is None:
                            raise AuthConfigError(str(exc)) from None
                        log.error("users file %s: %s; keeping the last users", self.path, exc)
                    else:
                        log.info("users file %s: %d users", self.path, len(self._users))
                    self._stamp = stamp
        return self._users

    def hash_of(self, user: str) -> str | None:
        """``user``'s password hash as the file is now, or None for an unknown user."""
        return self.users().get(user)

    def check(self, user: str, password: str) -> bool:
        """True if ``password`` matches ``user``'s hash (constant work for unknown users)."""
        hashed = self.users().get(user)
        if hashed is None:
            check_password_hash(_DUMMY_HASH, password)
            return False
        return check_password_hash(hashed, password)


def safe_next(target: str | None) -> str:
    """A local path to go to after login: ``target`` if it is a path on this site, else ``/``."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    if any(ord(c) < 32 for c in target):
        return "/"
    return target


# --------------------------------------------------------------------------------------------- trusted proxies
class TrustedProxies:
    """The addresses whose connections may carry the proxy login header and ``X-Forwarded-*``.

    Parameters
    ----------
    networks : iterable of ipaddress networks
        from :attr:`settings.Settings.trusted_proxy_networks`.
    """

    def __init__(self, networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]):
        self.networks = tuple(networks)

    def trusts(self, address: str | None) -> bool:
        """True if ``address`` (an IP address as text) is inside one of the networks."""
        if not address:
            return False
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == net.version and ip in net for net in self.networks)


class TrustedProxyFix:
    """WSGI middleware: note the direct peer (:data:`PEER_KEY`), and apply ``X-Forwarded-For/-Proto/-Host`` (as
    werkzeug's ``ProxyFix`` with ``proxy_count`` hops) only on connections from a trusted proxy, so a client
    reaching the app directly cannot choose the address its limits and logs see.

    Parameters
    ----------
    app : WSGI callable
    trusted : TrustedProxies
    proxy_count : int
        reverse proxies in front (0: the forwarded headers are never applied).
    """

    def __init__(self, app: Callable, trusted: TrustedProxies, proxy_count: int = 0):
        self.app = app
        self.trusted = trusted
        n = proxy_count
        self.fixed = ProxyFix(app, x_for=n, x_proto=n, x_host=n) if n else None
        self._warned = False

    def __call__(self, environ: dict, start_response: Callable) -> Any:
        peer = environ.get("REMOTE_ADDR", "")
        environ[PEER_KEY] = peer
        if self.fixed is not None:
            if self.trusted.trusts(peer):
                return self.fixed(environ, start_response)
            if "HTTP_X_FORWARDED_FOR" in environ and not self._warned:
                # once: a proxy missing from the list would make every client look like the proxy to the limits
                self._warned = True
                log.warning("X-Forwarded-For from %s ignored: not in ATLAS_VIEWER_TRUSTED_PROXIES (a proxy in front "
                            "must be listed there, or every client counts as the proxy)", peer)
        return self.app(environ, start_response)


def direct_peer() -> str:
    """The address of the connection's other end (the proxy, when there is one), not the forwarded client."""
    if PEER_KEY in request.environ:
        return request.environ[PEER_KEY]
    original = request.environ.get("werkzeug.proxy_fix.orig") or {}
    return original.get("REMOTE_ADDR") or request.remote_addr or ""


# --------------------------------------------------------------------------------------------- ended sessions
class LocalRevocations:
    """Ended session ids in this process: ``{sid: until}`` (bounded; the oldest are forgotten first)."""

    def __init__(self, max_entries: int = 100_000, clock: Callable[[], float] = time.time):
        self._ended: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_entries
        self._clock = clock

    def revoke(self, sid: str, until: float) -> None:
        """Record ``sid`` as ended until ``until`` (epoch seconds)."""
        with self._lock:
            self._ended[sid] = until
            self._ended.move_to_end(sid)
            while len(self._ended) > self._max:
                self._ended.popitem(last=False)

    def is_revoked(self, sid: str) -> bool:
        """True if ``sid`` was ended and its record has not expired."""
        with self._lock:
            until = self._ended.get(sid)
            if until is not None and until < self._clock():
                del self._ended[sid]
                return False
            return until is not None


class RedisRevocations:
    """Ended session ids in Redis (one key each, expiring when the session would have): every worker sees them."""

    def __init__(self, client: Any, prefix: str = "atlas-viewer:ended-session:",
                 clock: Callable[[], float] = time.time):
        self._client = client
        self._prefix = prefix
        self._clock = clock

    def revoke(self, sid: str, until: float) -> None:
        self._client.set(self._prefix + sid, b"1", ex=max(1, int(until - self._clock()) + 1))

    def is_revoked(self, sid: str) -> bool:
        return bool(self._client.exists(self._prefix + sid))


_REVOCATIONS_SCHEMA = """
CREATE TABLE IF NOT EXISTS ended_sessions (sid TEXT PRIMARY KEY, until REAL NOT NULL);
CREATE INDEX IF NOT EXISTS ended_sessions_until ON ended_sessions (until);
"""


class SqliteRevocations:
    """Ended session ids in a SQLite file of the private state folder, seen by every worker of this host."""

    def __init__(self, state: Any, clock: Callable[[], float] = time.time):
        self.state = state
        self._clock = clock

    def revoke(self, sid: str, until: float) -> None:
        with self.state.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO ended_sessions (sid, until) VALUES (?, ?)", (sid, until))
            conn.execute("DELETE FROM ended_sessions WHERE until < ?", (self._clock(),))

    def is_revoked(self, sid: str) -> bool:
        row = self.state.connect().execute("SELECT until FROM ended_sessions WHERE sid = ?", (sid,)).fetchone()
        return row is not None and row[0] >= self._clock()


class Revocations:
    """Ended sessions: recorded in this process and in the shared record (Redis or SQLite) when there is one.

    A session ended in this worker stays ended here even while the shared record fails; while Redis is away,
    other workers do not learn of sessions ended during the outage (they still end at their expiry, at a
    password change or when the user is removed from the users file).

    Parameters
    ----------
    local : LocalRevocations
    shared : RedisRevocations or SqliteRevocations, optional
    guard : server.caching.BackendGuard, optional
        Redis's outage state (shared with the cache).
    """

    def __init__(self, local: LocalRevocations, shared: Any = None, guard: Any = None):
        self.local = local
        self.shared = shared
        self.guard = guard
        self._logged_at = float("-inf")

    def _shared(self, call: Callable[[], Any]) -> Any:
        if self.shared is None or (self.guard is not None and not self.guard.should_try()):
            return None
        try:
            result = call()
        except Exception as exc:
            if self.guard is not None:
                self.guard.failed(exc)
            elif time.monotonic() - self._logged_at >= 60.0:  # once a minute, not at the pace of requests
                self._logged_at = time.monotonic()
                log.error("shared record of ended sessions failed: %s", exc)
            return None
        if self.guard is not None:
            self.guard.succeeded()
        return result

    def revoke(self, sid: str, until: float) -> None:
        """End session ``sid`` until ``until`` (epoch seconds, when it would have expired anyway)."""
        self.local.revoke(sid, until)
        self._shared(lambda: self.shared.revoke(sid, until))

    def is_revoked(self, sid: str) -> bool:
        """True if session ``sid`` was ended here or in any worker."""
        return self.local.is_revoked(sid) or bool(self._shared(lambda: self.shared.is_revoked(sid)))


def make_revocations(settings: Settings, guard: Any = None) -> Revocations:
    """The record of ended sessions for ``settings``: Redis when the cache is Redis, else SQLite in the private
    state folder when several workers serve, else this process alone."""
    from server.limits import redis_client, state_file

    client = redis_client(settings)
    shared: Any = None
    if client is not None:
        shared = RedisRevocations(client)
    elif settings.shares_limits:
        shared = SqliteRevocations(state_file(settings, "sessions.sqlite3", _REVOCATIONS_SCHEMA))
    return Revocations(LocalRevocations(), shared, guard if client is not None else None)


def password_fingerprint(secret_key: str, user: str, hashed: str) -> str:
    """A keyed fingerprint of ``user``'s password hash, kept in the session: a changed password changes it.

    Keyed with the secret key, so the cookie (signed, not encrypted) does not reveal anything about the hash.
    """
    digest = hmac.new(secret_key.encode(), f"{user}\0{hashed}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode()


# --------------------------------------------------------------------------------------------- CSRF
def csrf_token() -> str:
    """The session's CSRF token (made on first use): forms that change the login carry it."""
    token = session.get("csrf")
    if not isinstance(token, str) or len(token) < 16:
        token = secrets.token_urlsafe(24)
        session["csrf"] = token
    return token


def csrf_ok() -> bool:
    """True if the POSTed ``csrf_token`` matches the session's."""
    expected = session.get("csrf")
    given = request.form.get(CSRF_FIELD, "")
    return isinstance(expected, str) and bool(given) and hmac.compare_digest(expected.encode(), given.encode())


# --------------------------------------------------------------------------------------------- pages
_STYLE = """
body { font-family: system-ui, sans-serif; background: #f4f5f7; display: flex; justify-content: center;
       align-items: center; min-height: 90vh; margin: 0; }
form { background: #fff; padding: 2em 2.5em; border-radius: 8px; box-shadow: 0 1px 4px #0002; min-width: 18em; }
h1 { font-size: 1.2em; margin: 0 0 1em; } label { display: block; margin: .6em 0 .2em; font-size: .9em; }
input[type=text], input[type=password] { width: 100%; box-sizing: border-box; padding: .45em; }
button { margin-top: 1.2em; width: 100%; padding: .55em; } .error { color: #b00020; font-size: .9em; }
"""

# One small page with one form posting to ``action`` with the session's CSRF token: the login and logout pages.
_FORM_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} - ABC Atlas viewer</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<style>{style}</style></head>
<body><form method="post" action="{action}">
<h1>ABC Atlas viewer</h1>
{fields}
<input type="hidden" name="csrf_token" value="{csrf}">
<button type="submit">{title}</button>
</form></body></html>
"""

_LOGIN_FIELDS = """{error}
<label for="user">User</label><input id="user" name="user" type="text" autocomplete="username" autofocus required>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<input type="hidden" name="next" value="{next}">"""


def _form_page(title: str, action: str, fields: str, status: int = 200) -> Response:
    """A page with one form (``fields`` already escaped) posting to ``action`` with the CSRF token; not stored."""
    page = _FORM_PAGE.format(title=title, style=_STYLE, action=html.escape(action), fields=fields,
                             csrf=html.escape(csrf_token()))
    return _no_store(Response(page, status=status, mimetype="text/html"))


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


def _login_page(next_path: str, error: str = "", status: int = 200) -> Response:
    fields = _LOGIN_FIELDS.format(
        next=html.escape(next_path),
        error=f'<p class="error" role="alert">{html.escape(error)}</p>' if error else "",
    )
    return _form_page("Log in", LOGIN_PATH, fields, status=status)


def _wants_page() -> bool:
    """True for a browser navigation (an HTML page load), which gets a redirect rather than a 401."""
    return request.method == "GET" and "text/html" in request.headers.get("Accept", "")


def _wants_html() -> bool:
    """True when the client is a browser showing pages (a form post from the login page)."""
    return "text/html" in request.headers.get("Accept", "")


def _refusal(error: str, status: int, next_path: str = "/", parameter: str | None = None,
             retry_after_s: float | None = None) -> Response:
    """A login refusal: the login page with the message for a browser, JSON ``{"error"[, "parameter"]}`` otherwise."""
    if _wants_html():
        response = _login_page(next_path, error, status=status)
    else:
        body = {"error": error, **({"parameter": parameter} if parameter else {})}
        response = _no_store(jsonify(body))
        response.status_code = status
    if retry_after_s is not None:
        response.headers["Retry-After"] = str(max(1, int(retry_after_s + 0.999)))
    return response


# --------------------------------------------------------------------------------------------- security headers
def content_security_policy(script_hashes: Iterable[str] = ()) -> str:
    """The page's Content-Security-Policy: scripts only from this site (and Dash's inline scripts by hash), no
    framing, no plugins, forms and connections to this site only. Styles may be inline (Plotly and Dash set
    style attributes); pictures may be ``data:``/``blob:`` URLs (Plotly's icons and image export)."""
    script_src = " ".join(["'self'", *script_hashes])
    return "; ".join([
        "default-src 'self'",
        f"script-src {script_src}",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ])


def install_security_headers(server: Flask, settings: Settings,
                             script_hashes: Callable[[], Iterable[str]] | None = None) -> None:
    """Add the security headers to every response of ``server`` and set the session cookie's flags.

    Parameters
    ----------
    script_hashes : callable, optional
        returns the CSP hashes of the page's inline scripts (``dash.Dash.csp_hashes``); called once, at the
        first request, when every clientside callback is registered.
    """
    server.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.session_cookie_secure,
        SESSION_COOKIE_NAME="atlas_viewer_session",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings.session_hours),
    )
    policy: list[str] = []
    lock = threading.Lock()

    def csp() -> str:
        if not policy:
            with lock:
                if not policy:
                    policy.append(content_security_policy(script_hashes() if script_hashes else ()))
        return policy[0]

    @server.after_request
    def _security_headers(response: Response) -> Response:
        headers = response.headers
        headers.setdefault("Content-Security-Policy", csp())
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        if settings.session_cookie_secure:
            headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response


# --------------------------------------------------------------------------------------------- login
RateCheck = Callable[[str], "tuple[bool, float]"]


def install_auth(server: Flask, settings: Settings, login_limiter: RateCheck | None = None,
                 account_limiter: RateCheck | None = None,
                 revocations: Revocations | None = None) -> UsersFile | None:
    """Protect every route of ``server`` except ``/healthz``, ``/login`` and ``/logout``, when login is on.

    Parameters
    ----------
    login_limiter : callable, optional
        ``login_limiter(key) -> (allowed, retry_after_s)`` per client address (key ``login:<address>``).
    account_limiter : callable, optional
        the same per user name (key ``login-user:<name>``), whatever the address.
    revocations : Revocations, optional
        the record of ended sessions (default: this process only).

    Returns
    -------
    UsersFile or None
        the users file in use (None without one).

    Raises
    ------
    AuthConfigError
        if a users file is set without a real ``ATLAS_VIEWER_SECRET_KEY``, or the file is missing or malformed.
    """
    if not settings.auth_enabled:
        return None
    users_file = None
    if settings.auth_users_file is not None:
        if settings.secret_key == DEFAULT_SECRET or len(settings.secret_key) < 16:
            raise AuthConfigError("ATLAS_VIEWER_AUTH_USERS_FILE is set: set ATLAS_VIEWER_SECRET_KEY to a random "
                                  "string of at least 16 characters (every worker must use the same one)")
        users_file = UsersFile(settings.auth_users_file)
    server.secret_key = settings.secret_key
    header = settings.auth_proxy_header
    proxies = TrustedProxies(settings.trusted_proxy_networks)
    ended = revocations or Revocations(LocalRevocations())
    lifetime_s = settings.session_hours * 3600.0

    def session_user() -> str | None:
        """The session's user if the session is still good: user in the file, same password, not ended."""
        user = session.get("user")
        if not user or users_file is None:
            return None
        hashed = users_file.hash_of(user)
        sid = session.get("sid")
        good = (hashed is not None and isinstance(sid, str)
                and hmac.compare_digest(str(session.get("pw", "")),
                                        password_fingerprint(settings.secret_key, user, hashed))
                and not ended.is_revoked(sid))
        if not good:
            session.pop("user", None)
            session.pop("sid", None)
            session.pop("pw", None)
            return None
        return user

    def request_user() -> str | None:
        if header:
            value = request.headers.get(header, "").strip()
            if value:
                peer = direct_peer()
                if proxies.trusts(peer):
                    return value
                log.warning("ignored %s from %s: not a trusted proxy (ATLAS_VIEWER_TRUSTED_PROXIES)", header, peer)
        return session_user()

    @server.before_request
    def _require_login():
        user = request_user()
        if user:
            g.user = user
        if request.path in OPEN_PATHS or user:
            return None
        if _wants_page() and users_file is not None:
            query = request.query_string.decode("latin-1")
            here = request.path + (f"?{query}" if query else "")
            return redirect(f"{LOGIN_PATH}?{urlencode({'next': here})}", code=302)
        response = jsonify({"error": "login required"})
        response.status_code = 401
        return response

    if users_file is not None:
        def throttled(limiter: RateCheck | None, key: str) -> float | None:
            if limiter is None:
                return None
            allowed, retry_after = limiter(key)
            return None if allowed else retry_after

        def login():
            next_path = safe_next(request.values.get("next"))
            if request.method == "GET":
                return _login_page(next_path)
            client = request.remote_addr or "-"
            if not csrf_ok():
                return _refusal("The login form expired; load it again and log in.", 400, next_path,
                                parameter=CSRF_FIELD)
            user = request.form.get("user", "").strip()
            password = request.form.get("password", "")
            wait = throttled(login_limiter, f"login:{client}")
            if wait is None and user:
                wait = throttled(account_limiter, f"login-user:{user[:64]}")
            if wait is not None:
                log.warning("login throttled for user %r from %s", user[:64], client)
                return _refusal("Too many attempts; wait a minute.", 429, next_path, retry_after_s=wait)
            if not users_file.check(user, password):
                log.warning("failed login for user %r from %s", user[:64], client)
                return _refusal("Wrong user or password.", 401, next_path)
            session.clear()  # a fresh session: nothing from before the login carries over
            session["user"] = user
            session["sid"] = secrets.token_urlsafe(18)
            session["iat"] = int(time.time())
            session["pw"] = password_fingerprint(settings.secret_key, user, users_file.hash_of(user) or "")
            session.permanent = True
            csrf_token()  # a new token for the new session
            g.user = user
            log.info("login: %s from %s", user, client)
            return redirect(next_path, code=303)

        def logout():
            if request.method == "GET":
                user = g.get("user")
                if not user:
                    return redirect(LOGIN_PATH, code=303)
                return _form_page("Log out", LOGOUT_PATH, f"<p>Logged in as {html.escape(user)}.</p>")
            if not csrf_ok():
                response = _no_store(jsonify({"error": "log out with the form's csrf_token",
                                              "parameter": CSRF_FIELD}))
                response.status_code = 400
                return response
            sid = session.get("sid")
            if isinstance(sid, str):
                issued = session.get("iat")
                issued = float(issued) if isinstance(issued, (int, float)) else time.time()
                ended.revoke(sid, issued + lifetime_s)
                log.info("logout: %s", session.get("user"))
            session.clear()
            return redirect(LOGIN_PATH, code=303)

        server.add_url_rule(LOGIN_PATH, endpoint="login", view_func=login, methods=["GET", "POST"])
        server.add_url_rule(LOGOUT_PATH, endpoint="logout", view_func=logout, methods=["GET", "POST"])
    log.info("login on: %s", " and ".join(
        filter(None, [f"users file {settings.auth_users_file}" if users_file else "",
                      f"proxy header {header} from {settings.trusted_proxies}" if header else ""])))
    return users_file
