"""A small Dash app with the shared-server features and stand-in picture and export routes, for the server tests.

The routes validate like the viewer's do (catalog choices, bounded sizes) and render a few bytes, counting renders,
so the tests exercise caching, login, limits and validation without a prepared store.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dash import Dash, html
from flask import Response, request

from server.caching import PNG_SIGNATURE, picture_cache
from core.errors import ViewError
from server.features import ServerFeatures, install_server_features
from settings import Settings

SECTIONS = {"human": ["H1", "H2"], "macaque": ["M1"]}


class FakeAtlas:
    """Stands in for ``data_layer.Atlas`` where only the catalog matters."""

    def datasets(self) -> list[str]:
        return list(SECTIONS)


@dataclass
class ServerTestApp:
    app: Dash
    features: ServerFeatures
    renders: list = field(default_factory=list)

    @property
    def server(self):
        return self.app.server

    def client(self):
        return self.app.server.test_client()


def build_app(settings: Settings, opener=lambda store: FakeAtlas()) -> ServerTestApp:
    """A Dash app with :func:`install_server_features` and ``/render/<dataset>/<section>.png`` and
    ``/export/<dataset>.png`` routes (query: ``viewport=x0,x1,y0,y1``, ``w``, ``h``)."""
    app = Dash(__name__, title="server test app")
    app.layout = html.Div("server test app", id="root")
    features = install_server_features(app, settings, store_opener=opener)
    result = ServerTestApp(app, features)

    def picture(dataset: str, section: str, max_px: int) -> Response:
        if dataset not in SECTIONS:
            raise ViewError("dataset", f"unknown dataset {dataset[:60]!r}")
        if section not in SECTIONS[dataset]:
            raise ViewError("section", f"unknown section {section[:60]!r} of {dataset}")
        width, height = (_pixels(key, max_px) for key in ("w", "h"))
        viewport = request.args.get("viewport", "0,1,0,1")
        key = ("test", dataset, section, *viewport, width, height)

        def render() -> bytes:
            result.renders.append(key)
            return PNG_SIGNATURE + f"PNG {dataset} {section} {viewport} {width}x{height}".encode()

        return Response(picture_cache().get_or_render(key, render), mimetype="image/png")

    @app.server.route("/render/<dataset>/<section>.png")
    def render_route(dataset: str, section: str):
        return picture(dataset, section, settings.max_image_px)

    @app.server.route("/export/<dataset>.png")
    def export_route(dataset: str):
        return picture(dataset, SECTIONS.get(dataset, [""])[0], settings.max_export_px)

    return result


def _pixels(key: str, max_px: int) -> int:
    """``request.args[key]`` (default 100) as a whole number of pixels in ``1..max_px``, else :class:`ViewError`."""
    raw = request.args.get(key, "100")
    if not raw.isdigit() or not 1 <= int(raw) <= max_px:
        raise ViewError(key, f"{raw[:40]!r} is not a whole number of pixels in 1..{max_px}")
    return int(raw)


def settings_for(tmp_path: Path, **changes) -> Settings:
    """Settings on an empty store folder under ``tmp_path`` with a cache folder of its own."""
    store = tmp_path / "store"
    store.mkdir(exist_ok=True)
    return Settings(store=store, cache_dir=tmp_path / "cache", **changes)
