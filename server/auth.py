"""Login for a shared server, off by default: a users file with password hashes, or a trusted proxy header.

* ``ATLAS_VIEWER_AUTH_USERS_FILE``: lines ``user:hash`` (hash from werkzeug's ``generate_password_hash``; write
  them with ``atlas-viewer hash-password USER``; ``#`` starts a comment). Users log in at ``/login``; the login
  lives in a signed session cookie (``ATLAS_VIEWER_SECRET_KEY``). The file is re-read when it changes, and a user
  removed from it is logged out at the next request.
* ``ATLAS_VIEWER_AUTH_PROXY_HEADER``: the reverse proxy authenticates and passes the user in this header; only
  safe when the proxy strips the header from client requests.

Every route is protected (the Dash page, ``/_dash-*``, assets, the picture routes) except ``/healthz``, ``/login``
and ``/logout``. A browser page load without a login is redirected to ``/login``; other requests get 401.
"""
from __future__ import annotations

import html
import logging
import os
import re
import threading
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

from flask import Flask, Response, g, jsonify, redirect, request, session
from werkzeug.security import check_password_hash, generate_password_hash

from settings import Settings

log = logging.getLogger(__name__)

LOGIN_PATH = "/login"
LOGOUT_PATH = "/logout"
OPEN_PATHS = frozenset({"/healthz", LOGIN_PATH, LOGOUT_PATH})
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


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Log in - ABC Atlas viewer</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<style>
body {{ font-family: system-ui, sans-serif; background: #f4f5f7; display: flex; justify-content: center;
       align-items: center; min-height: 90vh; margin: 0; }}
form {{ background: #fff; padding: 2em 2.5em; border-radius: 8px; box-shadow: 0 1px 4px #0002; min-width: 18em; }}
h1 {{ font-size: 1.2em; margin: 0 0 1em; }} label {{ display: block; margin: .6em 0 .2em; font-size: .9em; }}
input[type=text], input[type=password] {{ width: 100%; box-sizing: border-box; padding: .45em; }}
button {{ margin-top: 1.2em; width: 100%; padding: .55em; }} .error {{ color: #b00020; font-size: .9em; }}
</style></head>
<body><form method="post" action="{action}">
<h1>ABC Atlas viewer</h1>
{error}
<label for="user">User</label><input id="user" name="user" type="text" autocomplete="username" autofocus required>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<input type="hidden" name="next" value="{next}">
<button type="submit">Log in</button>
</form></body></html>
"""


def _login_page(next_path: str, error: str = "", status: int = 200) -> Response:
    page = _PAGE.format(
        action=html.escape(LOGIN_PATH),
        next=html.escape(next_path),
        error=f'<p class="error" role="alert">{html.escape(error)}</p>' if error else "",
    )
    response = Response(page, status=status, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response


def _wants_page() -> bool:
    """True for a browser navigation (an HTML page load), which gets a redirect rather than a 401."""
    return request.method == "GET" and "text/html" in request.headers.get("Accept", "")


def install_auth(server: Flask, settings: Settings, login_limiter=None) -> UsersFile | None:
    """Protect every route of ``server`` except ``/healthz``, ``/login`` and ``/logout``, when login is on.

    Parameters
    ----------
    login_limiter : callable, optional
        ``login_limiter(client) -> (allowed, retry_after_s)``, slowing password guessing.

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
    server.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="atlas_viewer_session",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings.session_hours),
    )
    header = settings.auth_proxy_header

    def request_user() -> str | None:
        if header:
            value = request.headers.get(header, "").strip()
            if value:
                return value
        if users_file is not None:
            user = session.get("user")
            if user and user in users_file.users():
                return user
        return None

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
        def login():
            next_path = safe_next(request.values.get("next"))
            if request.method == "GET":
                return _login_page(next_path)
            client = request.remote_addr or "-"
            if login_limiter is not None:
                allowed, retry_after = login_limiter(f"login:{client}")
                if not allowed:
                    response = _login_page(next_path, "Too many attempts; wait a minute.", status=429)
                    response.headers["Retry-After"] = str(max(1, int(retry_after + 0.999)))
                    return response
            user = request.form.get("user", "").strip()
            password = request.form.get("password", "")
            if not users_file.check(user, password):
                log.warning("failed login for user %r from %s", user[:64], client)
                return _login_page(next_path, "Wrong user or password.", status=401)
            session.clear()  # a fresh session: nothing from before the login carries over
            session["user"] = user
            session.permanent = True
            g.user = user
            log.info("login: %s from %s", user, client)
            return redirect(next_path, code=303)

        def logout():
            session.clear()
            return redirect(LOGIN_PATH, code=303)

        server.add_url_rule(LOGIN_PATH, endpoint="login", view_func=login, methods=["GET", "POST"])
        server.add_url_rule(LOGOUT_PATH, endpoint="logout", view_func=logout, methods=["GET", "POST"])
    log.info("login on: %s", " and ".join(
        filter(None, [f"users file {settings.auth_users_file}" if users_file else "",
                      f"proxy header {header}" if header else ""])))
    return users_file
