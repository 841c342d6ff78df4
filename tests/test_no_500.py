"""No request answers 500: a bounded, seeded fuzz of the page's callback endpoint and of every route, and the cases
that used to fail (a title with ``$``, a width of 1e308 inches)."""
from __future__ import annotations

import json
import random
from urllib.parse import urlencode

import pytest

from app import create_app
from components import ids
from settings import Settings

SEED = 20261206


@pytest.fixture(scope="module")
def atlas(demo_store):
    from data_layer import Atlas

    return Atlas.open(demo_store)


@pytest.fixture(scope="module")
def app(atlas, tmp_path_factory):
    store = tmp_path_factory.mktemp("no500") / "store"
    store.mkdir()
    return create_app(Settings(store=store, export_burst=100_000, export_rate_per_min=100_000), atlas=atlas)


@pytest.fixture(scope="module")
def names(atlas):
    """Real names of the demo, so the fuzz reaches past the first check."""
    spatial = next(d for d in atlas.datasets() if atlas.info(d).kind == "spatial")
    return {"dataset": list(atlas.datasets()), "section": [str(s) for s in atlas.sections(spatial)["brain_section_label"]],
            "gene": ["DRD1", "PENK", "drd1"], "level": list(atlas.info(spatial).levels)}


def junk(rng: random.Random, names: dict) -> object:
    """One value of any JSON type, hostile or real."""
    pool = [None, "", " ", "x" * 3000, "../../etc/passwd", "<script>alert(1)</script>", "$\\foo$", -1, 0, 1, 2**63,
            1e308, -1e308, 0.5, True, False, [], [1, "a", None], [[1]], {}, {"a": 1}, {"x0": "a", "x1": [1]},
            {"dataset": None}, {"kind": "lasso", "xs": [1, 2], "ys": "a"}, {"level": 1, "name": {}},
            {"range": {"x": [1]}}, {"lassoPoints": {"x": "a"}}, {"points": [{"x": None}]},
            {"xaxis.range[0]": "a", "xaxis.range[1]": 1e308}, {"autosize": True},
            {"width_px": -5, "height_px": 1e9}, {"query": 5, "replace": "no"}]
    pool += [rng.choice(values) for values in names.values()]
    return rng.choice(pool)


def renderer_outputs(output: str) -> list | dict:
    """``outputs`` as Dash's renderer sends them, read from the callback's key: ``{"id", "property"}`` each, a shared
    output's property with its ``@<hash>`` (``..a.value...b.options@1f2e..`` for several outputs)."""
    parts = output[2:-2].split("...") if output.startswith("..") else [output]
    items = [dict(zip(("id", "property"), part.rsplit(".", 1))) for part in parts]
    return items if output.startswith("..") else items[0]


def test_the_renderers_own_requests_pass_the_boundary(app):
    """Every server callback, with its outputs written as the renderer writes them (shared outputs included)."""
    from callbacks.guard import CallbackRequestError, check_callback_request

    shared = 0
    for output, spec in app.callback_map.items():
        if spec.get("callback") is None:
            continue
        shared += "@" in output
        body = callback_body(app, output, spec, [None] * (len(spec["inputs"]) + len(spec.get("state", []))))
        try:
            check_callback_request(body, app.callback_map)
        except CallbackRequestError as exc:
            pytest.fail(f"{output[:80]}: {exc}")
    assert shared > 5


def callback_body(app, output: str, spec: dict, values: list) -> dict:
    deps = [*spec["inputs"], *spec.get("state", [])]
    items = [{"id": d["id"], "property": d["property"], "value": v} for d, v in zip(deps, values)]
    n_inputs = len(spec["inputs"])
    outputs = renderer_outputs(output)
    return {"output": output, "outputs": outputs, "inputs": items[:n_inputs], "state": items[n_inputs:],
            "changedPropIds": [f"{items[0]['id']}.{items[0]['property']}"] if items else []}


def test_a_fuzz_of_the_callback_endpoint_answers_no_500(app, names):
    rng = random.Random(SEED)
    client = app.server.test_client()
    statuses: dict[int, int] = {}
    failures = []
    for output, spec in sorted(app.callback_map.items()):
        if spec.get("callback") is None:
            continue  # clientside: never dispatched by the server (a test below)
        n = len(spec["inputs"]) + len(spec.get("state", []))
        for _ in range(5):
            body = callback_body(app, output, spec, [junk(rng, names) for _ in range(n)])
            response = client.post("/_dash-update-component", json=body)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code >= 500:
                failures.append((output[:60], json.dumps(body)[:300]))
    assert failures == []
    assert statuses.get(200, 0) + statuses.get(204, 0) > 0 and statuses.get(400, 0) > 0, statuses


@pytest.mark.parametrize("body", [
    None, [], "text", 5, {"output": 5}, {"output": "nope.children"},
    {"output": f"{ids.URL_WRITTEN}.data", "inputs": []},  # a clientside callback is not the server's
    {"output": "..header-summary.children..", "inputs": {"id": "dataset"}},
    {"output": "..header-summary.children..", "inputs": [{"id": "evil", "property": "value", "value": 1}]},
    {"output": "..header-summary.children..", "inputs": [], "state": []},
    {"output": "..header-summary.children..", "inputs": [{"id": "dataset", "property": "value", "value": {}}]},
    {"output": "..header-summary.children..", "inputs": [{"id": "dataset", "property": "value", "value": 1}],
     "changedPropIds": "dataset.value"},
])
def test_malformed_callback_bodies_get_400_naming_the_part(app, body):
    client = app.server.test_client()
    response = client.post("/_dash-update-component", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["parameter"]


def test_a_well_formed_callback_still_answers(app, names):
    body = {"output": "header-summary.children", "outputs": {"id": "header-summary", "property": "children"},
            "inputs": [{"id": "dataset", "property": "value", "value": names["dataset"][0]}],
            "changedPropIds": ["dataset.value"]}
    response = app.server.test_client().post("/_dash-update-component", json=body)
    assert response.status_code == 200 and "cells" in response.get_json()["response"]["header-summary"]["children"]


ROUTES = ["/render/map.png", "/api/render", "/api/cells.csv", "/export/cells.csv", "/api/genes", "/api/datasets",
          "/healthz", "/s/abcdefghij", "/export/figure.png", "/export/markers.csv"]
KEYS = ["dataset", "section", "slab_plane", "color_by", "gene", "gene2", "term", "term_level", "x0", "x1", "y0", "y1",
        "w", "h", "vmin", "vmax", "blend", "ta", "tb", "selection", "clusters", "width", "height", "unit", "dpi",
        "title", "legend", "panels", "sections", "format", "figure", "genes", "q", "limit", "v", "level", "a", "b",
        "b_dataset"]


def test_a_fuzz_of_every_route_answers_no_500(app, names):
    rng = random.Random(SEED + 1)
    client = app.server.test_client()
    failures = []
    for i in range(240):
        route = ROUTES[i % len(ROUTES)]
        params = {key: junk(rng, names) for key in rng.sample(KEYS, rng.randint(1, 8))}
        params = {k: (json.dumps(v) if isinstance(v, (list, dict)) else "" if v is None else str(v))
                  for k, v in params.items()}
        if route.startswith("/export/figure"):
            params.update({"width": "120", "height": "90"})  # a few small figures, not a long render each time
        response = client.get(f"{route}?{urlencode(params)}")
        if response.status_code >= 500:
            failures.append((route, params))
    assert failures == []


@pytest.mark.parametrize("title", ["$\\foo$", "cost $5 and $10", "$", "\\"])
def test_a_title_is_plain_text(app, names, title):
    query = urlencode({"dataset": names["dataset"][0], "title": title, "width": "300", "height": "200"})
    response = app.server.test_client().get(f"/export/figure.svg?{query}")
    assert response.status_code == 200
    if title == "cost $5 and $10":  # drawn as it is (wrapped into lines on a small figure), not as mathtext
        import xml.etree.ElementTree as ET

        root = ET.fromstring(response.data)
        lines = ["".join(node.itertext()).strip() for node in root.iter("{http://www.w3.org/2000/svg}text")]
        assert "cost $5 and $10" in " ".join(lines)


@pytest.mark.parametrize("params,parameter", [
    ({"width": "1e308", "unit": "in"}, "width"),
    ({"height": "1e308"}, "height"),
    ({"width": "-1e308", "unit": "in"}, "width"),
])
def test_huge_sizes_are_refused_naming_them(app, names, params, parameter):
    query = urlencode({"dataset": names["dataset"][0], **params})
    response = app.server.test_client().get(f"/export/figure.pdf?{query}")
    assert response.status_code == 400 and response.get_json()["parameter"] == parameter
