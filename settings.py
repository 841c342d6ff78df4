"""Typed settings of the viewer, read once from ``ATLAS_VIEWER_*`` environment variables.

Nothing else in the code base reads ``os.environ``: build a :class:`Settings` with
:meth:`Settings.from_env` (or directly, in tests) and pass it down. ``python settings.py`` prints the README
table of every variable (:func:`settings_table_markdown`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

PREFIX = "ATLAS_VIEWER_"

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
CACHE_TYPES = ("auto", "simple", "filesystem", "redis", "null")


def _help(text: str, **checks: Any) -> dict[str, Any]:
    """Field metadata: the README meaning plus optional ``choices``, ``min`` and ``max`` checks."""
    return {"help": text, **checks}


@dataclass(frozen=True)
class Settings:
    """Every setting of the app, with its default.

    Each field ``name`` is read from the environment variable ``ATLAS_VIEWER_<NAME>``; the field metadata holds
    the meaning shown in the README table and the checks (``choices``, ``min``, ``max``) applied on creation.
    """

    store: Path = field(default=Path(".demo/store"), metadata=_help("prepared store folder"))
    host: str = field(default="127.0.0.1", metadata=_help("address to listen on (0.0.0.0 for a lab server)"))
    port: int = field(default=8050, metadata=_help("port to listen on", min=1, max=65535))
    debug: bool = field(default=False, metadata=_help("Dash debug mode (dev tools, reloader off)"))
    # --- serving (gunicorn.conf.py) ---
    workers: int = field(default=2, metadata=_help("gunicorn worker processes", min=1, max=64))
    threads: int = field(default=4, metadata=_help("gunicorn threads per worker", min=1, max=256))
    preload: bool = field(
        default=True,
        metadata=_help("gunicorn loads the app once before forking, so workers share the memory-mapped store"),
    )
    worker_timeout_s: int = field(
        default=120, metadata=_help("gunicorn kills and restarts a worker silent for this long", min=5)
    )
    max_requests: int = field(
        default=0, metadata=_help("gunicorn restarts a worker after this many requests (0: never)", min=0)
    )
    served_by: str = field(
        default="dev",
        metadata=_help("dev | gunicorn; gunicorn.conf.py sets gunicorn (cache_type=auto then shares the cache "
                       "between workers)", choices=("dev", "gunicorn")),
    )
    proxy_count: int = field(
        default=0,
        metadata=_help("reverse proxies in front whose X-Forwarded-For/-Proto are trusted (client address for "
                       "logs and rate limits)", min=0, max=5),
    )
    access_log: bool = field(default=True, metadata=_help("one JSON log line per request"))
    log_level: str = field(default="INFO", metadata=_help("logging level", choices=_LOG_LEVELS))
    full_plotly: bool = field(
        default=False,
        metadata=_help("serve Dash's full plotly.js (4.8 MB) instead of the page's partial bundle (scatter and bar, "
                       "1.2 MB); the bench compares both"),
    )
    first_picture: bool = field(
        default=True,
        metadata=_help("the page carries its first map and UMAP pictures (in the initial figures, and preloaded by "
                       "the HTML while the scripts load); false: the callbacks ask for them (the bench compares "
                       "both)"),
    )
    # --- caching ---
    cache_type: str = field(
        default="auto",
        metadata=_help("auto | simple | filesystem | redis | null (auto: redis if REDIS_URL is set, filesystem "
                       "under gunicorn with more than one worker, else simple)", choices=CACHE_TYPES),
    )
    cache_dir: Path | None = field(
        default=None, metadata=_help("filesystem cache folder, private to the server's user (default: a folder per "
                                     "store in the user's cache home, ~/.cache/abc-atlas-viewer)")
    )
    cache_timeout_s: int = field(default=3600, metadata=_help("seconds a cached picture or look-up lives", min=0))
    cache_max_items: int = field(
        default=1000, metadata=_help("entries kept by the in-process or filesystem cache (bounds its size)", min=1)
    )
    cache_max_bytes: int = field(
        default=512 * 2**20, metadata=_help("bytes the filesystem cache may hold (0: bounded by entries only)", min=0)
    )
    redis_url: str | None = field(default=None, metadata=_help("redis://host:port/db of a shared cache"))
    redis_timeout_s: float = field(
        default=0.5, metadata=_help("seconds to wait for Redis before serving without cache", min=0.01, max=60)
    )
    redis_retry_s: float = field(
        default=30.0, metadata=_help("seconds between reconnection attempts after Redis went away", min=0)
    )
    store_check_s: float = field(
        default=5.0,
        metadata=_help("seconds between two looks at the store's catalog file; after a re-prepare the running server "
                       "serves the new version to new requests and lets go of the old one (0: serve the version "
                       "opened at start until restarted)", min=0),
    )
    # --- limits ---
    max_image_px: int = field(
        default=4096, metadata=_help("largest width or height of a rendered picture", min=16, max=65536)
    )
    max_export_px: int = field(
        default=8000, metadata=_help("largest width or height of an exported figure", min=16, max=65536)
    )
    export_rate_per_min: float = field(
        default=30.0, metadata=_help("exports allowed per client per minute (sustained)", min=0.01)
    )
    export_burst: int = field(default=5, metadata=_help("exports a client may make at once before waiting", min=1))
    share_rate_per_min: float = field(
        default=20.0, metadata=_help("short links a client may make per minute (a burst of as many first)", min=0.01)
    )
    max_shares: int = field(
        default=100_000, metadata=_help("short links kept at most; then new ones are refused (503)", min=1)
    )
    export_slots: int = field(
        default=2,
        metadata=_help("figure and cell exports (/export/*, /api/render, /api/cells.*) one worker runs at once; keep "
                       "it below THREADS so pictures always find a free thread", min=1, max=256),
    )
    export_wait_s: float = field(
        default=0.0,
        metadata=_help("seconds an export waits for a free slot before it is refused (503 with Retry-After); a "
                       "waiting export holds a thread, so keep it 0 or short", min=0, max=60),
    )
    picture_rate_per_min: float = field(
        default=600.0,
        metadata=_help("pictures (/render/...) allowed per client (user, else address) per minute, sustained; a "
                       "picture over 1 megapixel counts as its megapixels", min=0.01),
    )
    picture_burst: int = field(
        default=200,
        metadata=_help("pictures a client may ask for at once before waiting (a gallery asks for many)", min=1),
    )
    picture_budget_mpx_per_s: float = field(
        default=8.0,
        metadata=_help("megapixels per second the whole server (every client and worker together) draws in pictures "
                       "over 1 megapixel; then such pictures get 503 with Retry-After while smaller ones still pass "
                       "(0: no budget)", min=0),
    )
    picture_budget_burst_mpx: int = field(
        default=48,
        metadata=_help("megapixels of large pictures the whole server may draw at once before the budget above "
                       "paces them (a 4096x4096 picture is 16)", min=1),
    )
    max_body_bytes: int = field(
        default=8 * 2**20,
        metadata=_help("largest request body in bytes, with a Content-Length or sent chunked without one (then "
                       "counted while read); a larger one gets 413", min=1024),
    )
    # --- login ---
    auth_users_file: Path | None = field(
        default=None,
        metadata=_help("file of 'user:password-hash' lines (`atlas-viewer hash-password`); enables login"),
    )
    auth_proxy_header: str | None = field(
        default=None,
        metadata=_help("trust this reverse-proxy header (e.g. X-Forwarded-User) as the user; enables login. Only "
                       "behind a proxy that sets it and strips it from clients"),
    )
    secret_key: str = field(
        default="dev-not-secret",
        metadata=_help("Flask session key; must be set when AUTH_USERS_FILE is (e.g. `python -c 'import "
                       "secrets; print(secrets.token_hex())'`)"),
    )
    session_hours: float = field(default=12.0, metadata=_help("hours a login lasts", min=0.01))
    session_cookie_secure: bool = field(
        default=False,
        metadata=_help("send the login cookie over HTTPS only (set true when the server is reached by HTTPS)"),
    )
    trusted_proxies: str = field(
        default="127.0.0.1,::1",
        metadata=_help("comma-separated addresses or networks (CIDR) of the reverse proxies: AUTH_PROXY_HEADER and "
                       "the X-Forwarded-* headers (PROXY_COUNT) are honoured only on connections from them"),
    )
    login_attempts_per_min: float = field(
        default=10.0, metadata=_help("login attempts allowed per client address per minute (also the burst)",
                                     min=0.01),
    )
    login_attempts_per_user_per_min: float = field(
        default=5.0,
        metadata=_help("login attempts allowed per user name per minute, from any address (burst: twice this)",
                       min=0.01),
    )
    state_dir: Path | None = field(
        default=None,
        metadata=_help("private folder (made 0700) for what the workers share without Redis: login throttle, "
                       "ended sessions, rate limits (default: .server-state in the store folder)"),
    )

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            kind, optional = _kind(f.type)
            if kind == "Path" and isinstance(value, str):
                value = Path(value) if value else None
                object.__setattr__(self, f.name, value)
            if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
                object.__setattr__(self, f.name, value)
            if f.name == "log_level" and isinstance(value, str):
                value = value.upper()
                object.__setattr__(self, f.name, value)
            problem = _check(f, value, kind, optional)
            if problem:
                raise ValueError(f"{env_name(f.name)}={value!r}: {problem}")
        self.trusted_proxy_networks  # a malformed address fails here, naming the variable

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Build settings from ``environ`` (default ``os.environ``); ``overrides`` that are not None win.

        Raises
        ------
        ValueError
            naming the variable (``ATLAS_VIEWER_...``) when a value cannot be parsed or is out of range.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = env_name(f.name)
            if key not in environ:
                continue
            raw = environ[key]
            try:
                values[f.name] = _convert(f.type, raw)
            except ValueError as exc:
                raise ValueError(f"{key}={raw!r}: {exc}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def replace(self, **changes: Any) -> "Settings":
        """A copy with ``changes`` applied (checked like a new object)."""
        return dataclasses.replace(self, **changes)

    # --- derived values (computed, never stored) ---
    @property
    def auth_enabled(self) -> bool:
        """True when a users file or a proxy header is configured."""
        return self.auth_users_file is not None or bool(self.auth_proxy_header)

    @property
    def trusted_proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """``trusted_proxies`` parsed: one network per entry (a bare address is a network of one).

        Raises
        ------
        ValueError
            naming ``ATLAS_VIEWER_TRUSTED_PROXIES`` and the entry that is not an address or network.
        """
        networks = []
        for entry in filter(None, (part.strip() for part in self.trusted_proxies.split(","))):
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ValueError(f"{env_name('trusted_proxies')}={self.trusted_proxies!r}: {entry!r} is not an "
                                 "IP address or network (e.g. 10.0.0.5 or 10.0.0.0/24)") from None
        return tuple(networks)

    @property
    def shares_limits(self) -> bool:
        """True when several worker processes serve (gunicorn with more than one worker), so per-process counters
        would let each worker count apart: limits and ended sessions then go to Redis or the state folder."""
        return self.served_by == "gunicorn" and self.workers > 1

    @property
    def resolved_state_dir(self) -> Path:
        """``state_dir``, or ``.server-state`` inside the store folder (a path the server's owner chose, not one
        derived from anything a client can learn)."""
        if self.state_dir is not None:
            return Path(self.state_dir)
        return Path(self.store) / ".server-state"

    @property
    def bind(self) -> str:
        """``host:port`` for gunicorn."""
        return f"{self.host}:{self.port}"

    @property
    def resolved_cache_type(self) -> str:
        """The cache backend ``cache_type`` stands for: ``auto`` resolved to simple, filesystem or redis."""
        if self.cache_type != "auto":
            return self.cache_type
        if self.redis_url:
            return "redis"
        if self.served_by == "gunicorn" and self.workers > 1:
            return "filesystem"
        return "simple"

    @property
    def resolved_cache_dir(self) -> Path:
        """``cache_dir``, or a folder named after the absolute store path in the user's own cache home
        (``$XDG_CACHE_HOME`` or ``~/.cache``, then ``abc-atlas-viewer``): every worker of one deployment finds the
        same folder, two stores never share one, and no other local user can make it first (the shared temp folder
        would let them)."""
        if self.cache_dir is not None:
            return Path(self.cache_dir)
        digest = hashlib.sha1(str(Path(self.store).resolve()).encode()).hexdigest()[:12]
        home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        return home / "abc-atlas-viewer" / f"pictures-{digest}"


def env_name(field_name: str) -> str:
    """The environment variable of a setting: ``cache_type`` -> ``ATLAS_VIEWER_CACHE_TYPE``."""
    return PREFIX + field_name.upper()


def _kind(type_name: Any) -> tuple[str, bool]:
    """``"Path | None"`` -> ``("Path", True)``; annotations are strings (``from __future__ import annotations``)."""
    parts = [p.strip() for p in str(type_name).split("|")]
    optional = "None" in parts
    base = next(p for p in parts if p != "None")
    return base, optional


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("not a boolean (use true or false)")


def _convert(type_name: Any, raw: str) -> Any:
    """Parse the text of an environment variable into the field's type."""
    kind, optional = _kind(type_name)
    if optional and raw.strip() == "":
        return None
    if kind == "bool":
        return _parse_bool(raw)
    if kind == "int":
        try:
            return int(raw.strip())
        except ValueError:
            raise ValueError("not a whole number") from None
    if kind == "float":
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError("not a number") from None
        if not math.isfinite(value):
            raise ValueError("not a finite number")
        return value
    if kind == "Path":
        if not raw.strip():
            raise ValueError("empty path")
        return Path(raw.strip()).expanduser()
    return raw.strip()


def _check(f: dataclasses.Field, value: Any, kind: str, optional: bool) -> str | None:
    """Why ``value`` is not acceptable for field ``f``, or None."""
    if value is None:
        return None if optional else "may not be empty"
    expected = {"bool": bool, "int": int, "float": float, "str": str, "Path": Path}.get(kind)
    if expected is not None and not isinstance(value, expected):
        return f"expected {kind}, got {type(value).__name__}"
    if kind == "int" and isinstance(value, bool):
        return "expected a whole number, got a boolean"
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        return f"must be one of {', '.join(choices)}"
    if "min" in f.metadata and value < f.metadata["min"]:
        return f"must be at least {f.metadata['min']}"
    if "max" in f.metadata and value > f.metadata["max"]:
        return f"must be at most {f.metadata['max']}"
    return None


def _format_default(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def settings_table_markdown() -> str:
    """The README table of every environment variable: name, default and meaning, from the field metadata.

    Returns
    -------
    str
        A Markdown table, one row per :class:`Settings` field, in declaration order.
    """
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for f in fields(Settings):
        meaning = f.metadata.get("help", "").replace("|", "\\|")
        rows.append(f"| `{env_name(f.name)}` | `{_format_default(f.default)}` | {meaning} |")
    return "\n".join(rows)


if __name__ == "__main__":  # pragma: no cover
    print(settings_table_markdown())
