"""One grammar for the view: the picture route, the HTTP API and the exports give one verdict for the same view.

Every route reads its view with the address bar's reader in strict mode (``core.state.strict_view``) and its
selection with the one selection parser (``core.selection``), so a case either works on every route or is refused
by every route naming the same parameter. A selection too long for a URL reaches the app in a POST body; the
viewer's own longest picture URL fits a proxy's request-line limit (checked through a real gunicorn).
"""
from __future__ import annotations

import io
import math
import sys
from urllib.parse import urlencode

import pandas as pd
import pytest
import requests

from app import create_app
from core.catalog import catalog_from_atlas
from core.picture import PictureRequest
from core.selection import (MAX_LASSO_VERTICES, MAX_SELECTION_VERTICES, MAX_URL_BYTES, compact_selection,
                            selection_param)
from core.viewport import Window, padded
from data_layer.geometry import cells_in_polygon
from settings import Settings


@pytest.fixture(scope="module")
def atlas(demo_store):
    from data_layer import Atlas

    return Atlas.open(demo_store)


@pytest.fixture(scope="module")
def client(atlas, tmp_path_factory):
    store = tmp_path_factory.mktemp("grammar") / "store"
    store.mkdir()
    return create_app(Settings(store=store, export_burst=10_000), atlas=atlas).server.test_client()


@pytest.fixture(scope="module")
def place(atlas):
    """``(dataset, section, frame)`` of the first section of the first spatial dataset."""
    catalog = catalog_from_atlas(atlas)
    entry = next(e for e in catalog.datasets.values() if e.spatial)
    section = entry.slab_planes[0].sections[0]
    return entry, section, padded(entry.sections[section].bounds)


def circle(frame: Window, n: int, fraction: float = 0.3) -> tuple[list[float], list[float]]:
    """``n`` vertices of a circle in the middle of ``frame``."""
    cx, cy = (frame.x0 + frame.x1) / 2, (frame.y0 + frame.y1) / 2
    r = fraction * min(frame.x1 - frame.x0, frame.y1 - frame.y0)
    angles = [2 * math.pi * i / n for i in range(n)]
    return [cx + r * math.cos(a) for a in angles], [cy + r * math.sin(a) for a in angles]


def lasso(xs, ys, sep: str = ",") -> str:
    return ",".join(f"{x:.6g}{sep}{y:.6g}" for x, y in zip(xs, ys))


#: Each route with the parameters of its own that a request needs besides the view's.
ROUTES = {
    "picture": ("/render/map.png", {"w": "64", "h": "48"}),
    "api render": ("/api/render", {"width": "64", "height": "48"}),
    "api cells": ("/api/cells.csv", {}),
    "export cells": ("/export/cells.csv", {}),
}


def verdicts(client, view: dict[str, str], method: str = "get") -> dict[str, tuple[int, str | None]]:
    """``{route: (status, parameter named by a 400)}`` for the same view sent to every route."""
    out = {}
    for name, (path, extra) in ROUTES.items():
        if method == "post" and name == "picture":
            continue  # the page's pictures are GET URLs (they fit: see the URL-length test)
        params = {**view, **extra}
        if method == "get":
            response = client.get(f"{path}?{urlencode(params)}")
        else:
            response = client.post(path, data=params)
        body = response.get_json(silent=True) if response.status_code >= 400 else None
        out[name] = (response.status_code, (body or {}).get("parameter"))
    return out


def base_view(place) -> dict[str, str]:
    entry, section, frame = place
    return {"dataset": entry.name, "section": section, "color_by": entry.levels[2],
            "x0": f"{frame.x0:.6g}", "x1": f"{frame.x1:.6g}", "y0": f"{frame.y0:.6g}", "y1": f"{frame.y1:.6g}"}


def test_a_lasso_over_the_vertex_limit_is_refused_by_every_route_naming_selection(client, place):
    xs, ys = circle(place[2], MAX_SELECTION_VERTICES + 500)
    found = verdicts(client, {**base_view(place), "selection": lasso(xs, ys)})
    assert set(found.values()) == {(400, "selection")}, found


def test_a_level_in_lower_case_is_read_by_every_route(client, place):
    view = {**base_view(place), "color_by": place[0].levels[2].lower()}
    found = verdicts(client, view)
    assert set(found.values()) == {(200, None)}, found


def test_a_term_without_its_level_is_read_by_every_route(client, atlas, place):
    entry, section, _ = place
    cells = atlas.cells(entry.name, section=section)
    term = str(cells[entry.levels[2]].value_counts().index[0])
    found = verdicts(client, {**base_view(place), "term": term})
    assert set(found.values()) == {(200, None)}, found


def test_a_selection_with_semicolons_is_refused_by_every_route(client, place):
    xs, ys = circle(place[2], 8)
    found = verdicts(client, {**base_view(place), "selection": lasso(xs, ys, sep=";")})
    assert set(found.values()) == {(400, "selection")}, found


@pytest.mark.parametrize("change,parameter", [
    ({"term_level": "Class"}, "term"),  # term_level alone
    ({"vmin": "1"}, "vmax"),  # half a gene range
    ({"color_by": "flavour"}, "color_by"),
    ({"evil": "1"}, "evil"),
])
def test_the_same_mistake_gets_the_same_400_everywhere(client, place, change, parameter):
    found = verdicts(client, {**base_view(place), **change})
    assert set(found.values()) == {(400, parameter)}, found


def test_a_section_of_another_slab_plane_is_refused_everywhere(client, place):
    entry = place[0]
    other = next((p for p in entry.slab_planes if place[1] not in p.sections), None)
    if other is None:
        pytest.skip("the demo dataset has one slab plane")
    found = verdicts(client, {**base_view(place), "slab_plane": other.label})
    assert set(found.values()) == {(400, "slab_plane")}, found


def test_a_term_named_at_another_level_is_refused_everywhere(client, atlas, place):
    entry, section, _ = place
    cells = atlas.cells(entry.name, section=section)
    subclass = str(cells[entry.levels[2]].value_counts().index[0])
    found = verdicts(client, {**base_view(place), "term": subclass, "term_level": entry.levels[0]})
    assert set(found.values()) == {(400, "term")}, found


def test_a_long_lasso_in_a_post_body_gives_the_cells_inside_it(client, atlas, place):
    entry, section, frame = place
    xs, ys = circle(frame, 700)
    view = {**base_view(place), "selection": lasso(xs, ys)}
    found = verdicts(client, view, method="post")
    assert set(found.values()) == {(200, None)}, found
    response = client.post("/api/cells.csv", data=view)
    table = pd.read_csv(io.BytesIO(response.data))
    x, y = atlas.xy(entry.name, section)
    parsed = [float(v) for v in lasso(xs, ys).split(",")]
    inside = cells_in_polygon(x, y, (parsed[0::2], parsed[1::2]))
    assert len(table) == int(inside.sum()) > 0


def test_a_parameter_in_both_url_and_body_is_refused(client, place):
    view = base_view(place)
    response = client.post(f"/api/cells.csv?{urlencode({'dataset': view['dataset']})}", data=view)
    assert response.status_code == 400 and response.get_json()["parameter"] == "dataset"


def test_the_viewers_longest_picture_url_fits_a_request_line():
    """A hand-drawn lasso of thousands of points is compacted to at most MAX_LASSO_VERTICES vertices; with the
    longest names of the release and every picture parameter, the URL stays under MAX_URL_BYTES."""
    frame = Window(-12345.6789, -1234.56789, -23456.789, -2345.6789)
    n = 5000
    xs = [-6000.123456 + 4000 * math.cos(2 * math.pi * i / n) + 97 * math.sin(41 * 2 * math.pi * i / n)
          for i in range(n)]
    ys = [-9000.654321 + 4000 * math.sin(2 * math.pi * i / n) + 89 * math.cos(37 * 2 * math.pi * i / n)
          for i in range(n)]
    geometry = compact_selection("lasso", xs, ys)
    assert 3 <= len(geometry["xs"]) <= MAX_LASSO_VERTICES
    picture = PictureRequest(
        dataset="HMBA-MERSCOPE-H22.30.001-BG", section="H22.30.001.CX.13.01.03.02", slab_plane=None,
        color_by="two_genes", gene="ENSG00000184845", gene2="ENSG00000169217", term="STR D1 MSN matrix " * 3,
        term_level="Supertype", window=frame, width_px=4096, height_px=4096, selection=selection_param(geometry),
        blend_mode="both", threshold_a=-1.23456e-7, threshold_b=12345.6789)
    assert len(picture.url() + "&v=0123456789") < MAX_URL_BYTES


@pytest.mark.slow
def test_through_gunicorn_the_viewers_urls_pass_and_long_selections_travel_by_post(demo_store, place, tmp_path):
    """Behind a real gunicorn (request lines over 4094 bytes refused before the app sees them): the viewer's own
    picture URL with a compacted lasso is drawn, a 1,500-vertex lasso in a GET never reaches the app, and the same
    outline in a POST body reaches it and gets the app's JSON 400 naming ``selection``."""
    from bench.servers import GunicornServer

    entry, section, frame = place
    env = {"ATLAS_VIEWER_STORE": str(demo_store), "ATLAS_VIEWER_WORKERS": "1", "ATLAS_VIEWER_THREADS": "2",
           "ATLAS_VIEWER_CACHE_DIR": str(tmp_path / "cache"), "ATLAS_VIEWER_LOG_LEVEL": "WARNING"}
    xs, ys = circle(frame, 1500)
    compact = compact_selection("lasso", xs, ys)
    picture = PictureRequest(dataset=entry.name, section=section, slab_plane=None, color_by=entry.levels[2],
                             gene=None, term=None, term_level=None, window=frame, width_px=96, height_px=64,
                             selection=selection_param(compact))
    with GunicornServer(env, python=sys.executable) as server:
        shown = requests.get(server.base_url + picture.url(), timeout=60)
        assert shown.status_code == 200 and shown.headers["Content-Type"] == "image/png"
        long_view = {**base_view(place), "selection": lasso(xs, ys)}
        refused = requests.get(f"{server.base_url}/api/cells.csv?{urlencode(long_view)}", timeout=60)
        assert refused.status_code == 414 and "json" not in refused.headers.get("Content-Type", "")
        posted = requests.post(f"{server.base_url}/api/cells.csv", data=long_view, timeout=60)
        assert posted.status_code == 400 and posted.json()["parameter"] == "selection"
        assert str(MAX_SELECTION_VERTICES) in posted.json()["error"]
        xs, ys = circle(frame, 600)
        posted = requests.post(f"{server.base_url}/api/cells.csv", data={**base_view(place), "selection": lasso(xs, ys)},
                               timeout=60)
        assert posted.status_code == 200 and posted.text.count("\n") > 1


def test_the_api_picture_dims_the_cells_outside_the_selection(client, place):
    xs, ys = circle(place[2], 40, fraction=0.15)
    view = {**base_view(place), "width": "120", "height": "90"}
    plain = client.get(f"/api/render?{urlencode(view)}")
    selected = client.get(f"/api/render?{urlencode({**view, 'selection': lasso(xs, ys)})}")
    assert plain.status_code == selected.status_code == 200
    assert plain.data != selected.data
