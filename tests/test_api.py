"""The HTTP API on the demo store: pictures and figures, cells, gene search, datasets and short links; bad
parameters get 400 naming them, renders count against the export rate limit, nothing reaches a file path."""
from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from urllib.parse import urlencode

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from app import create_app
from core.context import ViewerContext
from core.picture import view_picture
from core.scope import view_window
from core.state import ViewState
from core.viewport import Window
from settings import Settings


@pytest.fixture(scope="module")
def atlas(demo_store):
    from data_layer import Atlas

    return Atlas.open(demo_store)


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    store = tmp_path_factory.mktemp("api") / "store"
    store.mkdir()
    return Settings(store=store, export_burst=10_000, max_export_px=2500)


@pytest.fixture(scope="module")
def client(atlas, settings):
    return create_app(settings, atlas=atlas).server.test_client()


@pytest.fixture(scope="module")
def context(atlas, settings):
    return ViewerContext.build(atlas, settings)


@pytest.fixture(scope="module")
def spatial(atlas):
    return next(d for d in atlas.datasets() if atlas.info(d).kind == "spatial")


@pytest.fixture(scope="module")
def section(atlas, spatial):
    return str(atlas.sections(spatial)["brain_section_label"].iloc[0])


def rgba(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))


# ---------------------------------------------------------------------------------------------- render
def test_render_png_is_exactly_the_asked_size(client, spatial, section):
    response = client.get(f"/api/render?{urlencode({'dataset': spatial, 'section': section, 'width': 321, 'height': 123})}")
    assert response.status_code == 200 and response.mimetype == "image/png"
    assert Image.open(io.BytesIO(response.data)).size == (321, 123)


def test_render_png_with_only_a_width_keeps_the_views_aspect(client, context, spatial, section):
    state = ViewState(dataset=spatial, section=section)
    window = view_window(context, state)
    response = client.get(f"/api/render?{urlencode({'dataset': spatial, 'section': section, 'width': 400})}")
    assert Image.open(io.BytesIO(response.data)).size == (400, round(400 * window.height / window.width))


def test_api_picture_is_the_picture_routes_picture_of_the_same_view(client, context, atlas, spatial, section):
    """One rendering path: the API and ``/render/map.png`` give the same pixels for the same view and size."""
    cells = atlas.cells(spatial, section=section)
    x0, y0 = float(np.floor(cells["x"].min())) + 1, float(np.floor(cells["y"].min())) + 1
    view = {"x0": x0, "x1": x0 + 6, "y0": y0, "y1": y0 + 4}  # aspect 3:2, as the picture: no rounding anywhere
    state = ViewState(dataset=spatial, section=section, color_by="Class", viewport=Window(**view))
    route_url = view_picture(state, Window(**view), 300, 200).url()
    query = {"dataset": spatial, "section": section, "color_by": "Class", "width": 300, "height": 200, **view}
    api = client.get(f"/api/render?{urlencode(query)}")
    route = client.get(route_url)
    assert route.status_code == 200 and api.status_code == 200
    picture = rgba(api.data)
    assert np.count_nonzero(picture[..., 3]) > 1000  # cells were drawn
    np.testing.assert_array_equal(picture, rgba(route.data))


def test_render_svg_and_pdf_are_figures(client, spatial, section):
    svg = client.get(f"/api/render?{urlencode({'dataset': spatial, 'section': section, 'format': 'svg'})}")
    assert svg.status_code == 200 and svg.mimetype == "image/svg+xml"
    root = ET.fromstring(svg.data)
    assert len(list(root.iter("{http://www.w3.org/2000/svg}image"))) == 1
    pdf = client.get(f"/api/render?{urlencode({'dataset': spatial, 'section': section, 'format': 'pdf'})}")
    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF")


def test_render_png_figure_has_the_figure_size_and_dpi(client, spatial, section):
    query = urlencode({"dataset": spatial, "section": section, "figure": 1, "width": 900, "height": 600, "dpi": 150})
    image = Image.open(io.BytesIO(client.get(f"/api/render?{query}").data))
    assert image.size == (900, 600) and image.info["dpi"] == pytest.approx((150, 150), abs=0.05)


def test_render_of_a_umap_dataset_takes_no_section(client, atlas):
    umap = next(d for d in atlas.datasets() if atlas.info(d).kind == "umap")
    response = client.get(f"/api/render?{urlencode({'dataset': umap, 'width': 200})}")
    assert response.status_code == 200


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("params, parameter", [
    ({"dataset": "HMBA-nope"}, "dataset"),
    ({"section": "nope"}, "section"),
    ({"slab_plane": "nope"}, "slab_plane"),
    ({"color_by": "nope"}, "color_by"),
    ({"color_by": "gene"}, "gene"),
    ({"gene": "NOT-A-GENE"}, "gene"),
    ({"term": "No Such Term"}, "term"),
    ({"term_level": "Class"}, "term"),
    ({"x0": "1", "x1": "2", "y0": "3"}, "y1"),
    ({"x0": "abc", "x1": "2", "y0": "3", "y1": "4"}, "x0"),
    ({"x0": "2", "x1": "2", "y0": "3", "y1": "4"}, "x1"),
    ({"gene": "DRD1", "vmin": "3", "vmax": "1"}, "vmax"),
    ({"width": "0"}, "width"),
    ({"width": "2501"}, "width"),
    ({"height": "1.5"}, "height"),
    ({"format": "gif"}, "format"),
    ({"figure": "maybe"}, "figure"),
    ({"dpi": "300"}, "dpi"),
    ({"format": "svg", "dpi": "10"}, "dpi"),
    ({"format": "pdf", "width": "99999"}, "width"),
    ({"w": "100"}, "w"),
])
def test_bad_render_parameters_get_400_naming_the_parameter(client, spatial, params, parameter):
    query = {"dataset": spatial, **params}
    response = client.get(f"/api/render?{urlencode(query)}")
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.is_json and response.json["parameter"] == parameter
    assert parameter in response.json["error"]


def test_an_oversized_render_names_the_setting(client, spatial):
    response = client.get(f"/api/render?{urlencode({'dataset': spatial, 'width': 5000})}")
    assert "max_export_px" in response.json["error"]


def test_unknown_api_route_gets_a_json_404(client):
    response = client.get("/api/nothing-here")
    assert response.status_code == 404 and response.json["parameter"] == "path"


def test_api_renders_go_through_the_export_rate_limit(atlas, tmp_path, spatial):
    store = tmp_path / "store"
    store.mkdir()
    client = create_app(Settings(store=store, export_burst=2, export_rate_per_min=0.01),
                        atlas=atlas).server.test_client()
    query = urlencode({"dataset": spatial, "width": 32})
    answers = [client.get(f"/api/render?{query}") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert int(answers[-1].headers["Retry-After"]) >= 1
    assert client.get(f"/api/cells.csv?{urlencode({'dataset': spatial})}").status_code == 429
    assert client.get(f"/api/genes?{urlencode({'dataset': spatial, 'q': 'a'})}").status_code == 200


# ---------------------------------------------------------------------------------------------- cells, genes
def test_cells_csv_is_the_cells_of_the_view(client, atlas, spatial, section):
    query = urlencode({"dataset": spatial, "section": section, "x0": 0, "x1": 1000, "y0": 0, "y1": 1000,
                       "genes": "drd1"})
    response = client.get(f"/api/cells.csv?{query}")
    assert response.status_code == 200
    table = pd.read_csv(io.StringIO(response.get_data(as_text=True)))
    assert len(table) == len(atlas.cells(spatial, section=section)) and "DRD1" in table.columns


def test_cells_in_an_unknown_format_get_400(client, spatial):
    response = client.get(f"/api/cells.xlsx?dataset={spatial}")
    assert response.status_code == 400 and response.json["parameter"] == "format"


def test_gene_search_finds_prefix_matches_first(client, atlas, spatial):
    symbol = str(atlas.genes(spatial)["gene_symbol"].iloc[3])
    response = client.get(f"/api/genes?{urlencode({'q': symbol[:3].lower(), 'dataset': spatial})}")
    assert response.status_code == 200
    found = [g["gene_symbol"] for g in response.json]
    assert symbol in found and all(s.upper().startswith(symbol[:3].upper()) for s in found[:1])


@pytest.mark.parametrize("params, parameter", [
    ({"dataset": "nope", "q": "a"}, "dataset"),
    ({"q": "a", "limit": "0"}, "limit"),
    ({"q": "a", "limit": "x"}, "limit"),
    ({"q": "x" * 101}, "q"),
    ({"q": "a", "extra": "1"}, "extra"),
])
def test_bad_gene_search_parameters_get_400(client, spatial, params, parameter):
    query = {"dataset": spatial, **params}
    response = client.get(f"/api/genes?{urlencode(query)}")
    assert response.status_code == 400 and response.json["parameter"] == parameter


def test_datasets_lists_the_catalog(client, atlas):
    listed = client.get("/api/datasets").json
    assert [d["dataset"] for d in listed] == atlas.datasets()
    spatial = next(d for d in listed if d["kind"] == "spatial")
    assert spatial["slab_planes"] and "gene" in spatial["color_by"]


def test_share_gives_a_link_that_redirects_to_the_view(client, spatial, section):
    made = client.post(f"/api/share?{urlencode({'dataset': spatial, 'section': section})}").json
    assert made["path"] == f"/s/{made['id']}" and made["url"].endswith(made["path"])
    assert client.get(made["path"]).headers["Location"] == "/" + made["query"]


def test_share_of_a_bad_view_gets_400(client):
    response = client.post("/api/share?dataset=nope")
    assert response.status_code == 400 and response.json["parameter"] == "dataset"


# ---------------------------------------------------------------------------------------------- paths
@pytest.mark.parametrize("route", ["/api/render", "/api/cells.csv", "/api/cells.h5ad", "/api/genes"])
@pytest.mark.parametrize("payload", ["../../etc/passwd", "/etc/passwd", "..\\..\\windows", "a\x00b"])
def test_path_payloads_in_api_parameters_get_400(client, route, payload):
    for key in ("dataset", "section", "gene", "genes", "term", "q", "format"):
        response = client.get(f"{route}?{urlencode({key: payload})}")
        assert b"root:" not in response.data
        if route == "/api/genes" and key == "q" and response.status_code == 200:
            assert response.json == []  # a search text is only compared with gene names
            continue
        assert response.status_code == 400, (route, key, payload, response.status_code)


@pytest.mark.parametrize("path", ["/api/../etc/passwd", "/api/cells.%2e%2e", "/s/..%2f..%2fetc%2fpasswd",
                                  "/api/cells.csv%00"])
def test_path_payloads_in_new_routes_get_400_or_404(client, path):
    response = client.get(path)
    assert response.status_code in (400, 404)
    assert b"root:" not in response.data


def test_api_needs_a_login_when_login_is_on(atlas, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    client = create_app(Settings(store=store, auth_proxy_header="X-User"), atlas=atlas).server.test_client()
    assert client.get("/api/datasets").status_code == 401
    client.environ_base["HTTP_X_USER"] = "ada"
    assert client.get("/api/datasets").status_code == 200
