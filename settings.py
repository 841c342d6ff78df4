"""Typed settings of the viewer, read once from ``ATLAS_VIEWER_*`` environment variables.

Nothing else in the code base reads ``os.environ``: build a :class:`Settings` with
:meth:`Settings.from_env` (or directly, in tests) and pass it down.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Mapping

PREFIX = "ATLAS_VIEWER_"


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {text!r} (use true/false)")


@dataclass(frozen=True)
class Settings:
    """Every setting of the app, with its default.

    Each field ``name`` is read from the environment variable ``ATLAS_VIEWER_<NAME>``.
    """

    store: Path = field(default=Path(".demo/store"), metadata={"help": "prepared store folder"})
    host: str = field(default="127.0.0.1", metadata={"help": "address to listen on"})
    port: int = field(default=8050, metadata={"help": "port to listen on"})
    debug: bool = field(default=False, metadata={"help": "Dash debug mode (dev tools, reloader off)"})
    workers: int = field(default=2, metadata={"help": "gunicorn worker processes"})
    threads: int = field(default=4, metadata={"help": "gunicorn threads per worker"})
    cache_type: str = field(
        default="auto",
        metadata={"help": "auto | simple | filesystem | redis | null (auto: redis if REDIS_URL, else simple)"},
    )
    cache_dir: Path | None = field(default=None, metadata={"help": "filesystem cache folder (default: <store>/.cache)"})
    cache_timeout_s: int = field(default=3600, metadata={"help": "seconds a cached picture lives"})
    cache_max_items: int = field(default=2000, metadata={"help": "entries kept by the in-process/filesystem cache"})
    redis_url: str | None = field(default=None, metadata={"help": "redis://host:port/db for a shared cache"})
    max_image_px: int = field(default=4096, metadata={"help": "largest width or height of a rendered picture"})
    max_export_px: int = field(default=8000, metadata={"help": "largest width or height of an exported figure"})
    export_rate_per_min: int = field(default=30, metadata={"help": "exports allowed per client per minute"})
    auth_users_file: Path | None = field(default=None, metadata={"help": "file of 'user:password-hash' lines; enables login"})
    auth_proxy_header: str | None = field(default=None, metadata={"help": "trust this reverse-proxy header as the user"})
    secret_key: str = field(default="dev-not-secret", metadata={"help": "Flask session key (set on a shared server)"})
    log_level: str = field(default="INFO", metadata={"help": "logging level"})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> "Settings":
        """Build settings from ``environ`` (default ``os.environ``); ``overrides`` win.

        Raises
        ------
        ValueError
            naming the variable when a value cannot be parsed.
        """
        environ = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            key = PREFIX + f.name.upper()
            if key not in environ:
                continue
            raw = environ[key]
            try:
                values[f.name] = _convert(f.type, raw)
            except ValueError as exc:
                raise ValueError(f"{key}={raw!r}: {exc}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **changes)


def _convert(type_name: str, raw: str):
    t = str(type_name)
    if t.startswith("bool"):
        return _parse_bool(raw)
    if t.startswith("int"):
        return int(raw)
    if t.startswith("Path"):
        return Path(raw) if raw else None
    if raw == "" and "None" in t:
        return None
    return raw
