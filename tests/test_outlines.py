"""Region outlines cut to the tissue shown: the tissue's area from cell positions, the cut, the map's traces and
key, the scale bar's corner, and exported figures drawing the same outlines (SVG, matplotlib artists)."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from urllib.parse import urlencode

import numpy as np
import pytest
import shapely
from shapely.geometry import shape

from app import create_app
from callbacks.export_panel import panel_args
from components.figures import _scale_bar_parts, picture_figure, polygon_traces
from core.context import ViewerContext
from core.figures import figure_of, figure_panel
from core.outlines import figure_outlines, region_names, view_outlines
from core.requests import figure_options
from core.state import ViewState
from core.viewport import Window, scale_bar
from data_layer.geometry import clip_regions, tissue_area, tissue_cell_mm
from rendering.figures import emptiest_corner
from settings import Settings

SVG_NS = "{http://www.w3.org/2000/svg}"


# ---------------------------------------------------------------------------------------------- synthetic
def _l_shaped_cells(n=6000, seed=0):
    """Cells filling an L: the square 0..10 x 0..10 without its upper right quarter (5..10 x 5..10)."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 10, size=(n * 2, 2))
    xy = xy[~((xy[:, 0] > 5) & (xy[:, 1] > 5))][:n]
    return xy[:, 0], xy[:, 1]


def test_the_tissue_covers_every_cell_and_leaves_a_concave_notch_empty():
    x, y = _l_shaped_cells()
    area = tissue_area(x, y)
    assert shapely.covers(area, shapely.points(x, y)).all()
    side = tissue_cell_mm(x, y)
    assert not area.intersects(shapely.box(5 + 2 * side, 5 + 2 * side, 10, 10))  # the notch stays out
    assert 75 * 0.9 < area.area < 75 * 1.15  # the L's 75 mm², not the hull's 87.5 or the box's 100


def test_a_region_cut_to_the_tissue_lies_inside_it_and_one_off_the_tissue_is_dropped():
    x, y = _l_shaped_cells()
    area = tissue_area(x, y)
    collection = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"label": "STR", "color": "#ff0000"},
         "geometry": shapely.geometry.mapping(shapely.box(-5, -5, 15, 15))},
        {"type": "Feature", "properties": {"label": "GP", "color": "#00ff00"},
         "geometry": shapely.geometry.mapping(shapely.box(7, 7, 9, 9))},  # in the notch: no cells
    ]}
    clipped = clip_regions(collection, area)
    assert [f["properties"]["label"] for f in clipped["features"]] == ["STR"]
    cut = shape(clipped["features"][0]["geometry"])
    assert cut.difference(area).area < 1e-9
    assert cut.area == pytest.approx(area.area, rel=1e-6)
    name = region_names(clipped)[0]
    assert name.label == "STR" and name.color == "#ff0000" and area.contains(shapely.Point(name.x, name.y))


def test_a_slanted_tissue_edge_is_cut_straight_not_in_grid_steps():
    # cells up to a line of slope 0.2 (11.3 degrees): the squares make a staircase along it; the cut edge follows
    # the line (segments near its direction, weighted by their length), and still covers every cell
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 10, size=(40000, 2)) * [1.0, 0.5]
    x, y = xy[:, 0], xy[:, 1]
    keep = y <= 2 + 0.2 * x
    x, y = x[keep], y[keep]
    area = tissue_area(x, y)
    side = tissue_cell_mm(x, y)
    assert shapely.covers(area, shapely.points(x, y)).all()
    ring = np.asarray(area.exterior.coords)
    a, b = ring[:-1], ring[1:]

    def near_line(p):
        return (np.abs(p[:, 1] - (2 + 0.2 * p[:, 0])) < 2 * side) & (p[:, 0] > 1) & (p[:, 0] < 9)
    along = near_line(a) & near_line(b)
    assert along.sum() >= 3
    step = b[along] - a[along]
    angles = np.degrees(np.arctan2(step[:, 1], step[:, 0])) % 180
    off = np.abs(angles - np.degrees(np.arctan(0.2)))
    assert np.average(off, weights=np.hypot(step[:, 0], step[:, 1])) < 10, np.round(angles, 1)
    assert off.max() < 35, np.round(angles, 1)  # no vertical riser of a grid step
    # and it stays near the tissue: its outward margin is about one square along the edge
    truth = shapely.Polygon([(0, 0), (10, 0), (10, 4), (0, 2)])
    assert area.difference(truth).area < 1.2 * side * truth.length


def test_the_emptiest_corner_is_away_from_the_cells():
    grid = np.zeros((64, 64), dtype=bool)
    grid[32:, :] = True  # cells over the bottom half: both lower corners hold cells
    grid[:20, 44:] = True  # and the upper right
    assert emptiest_corner(grid, 0.3, 0.1) == "upper left"
    assert emptiest_corner(np.zeros((8, 8), dtype=bool), 0.3, 0.1) == "lower right"  # a tie: the first corner


def test_the_map_scale_bar_goes_in_the_corner_asked_inside_the_window():
    window = Window(0.0, 10.0, 0.0, 8.0)
    _, length, _ = scale_bar(window)
    for corner in ("lower left", "lower right", "upper left", "upper right"):
        line, label = _scale_bar_parts(window, corner)
        assert window.x0 <= line["x0"] < line["x1"] <= window.x1
        assert line["x1"] - line["x0"] == pytest.approx(length)
        assert (line["x0"] - window.x0 < window.x1 - line["x1"]) == corner.endswith("left")
        assert (line["y0"] < 0.5) == corner.startswith("lower")
        assert 0 <= label["y"] <= 1


def test_outline_traces_are_named_in_the_map_key():
    collection = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"label": "GPe", "color": "#123456"},
         "geometry": shapely.geometry.mapping(shapely.box(1, 1, 2, 2))}]}
    figure = picture_figure(frame=Window(0, 3, 0, 3), window=Window(0, 3, 0, 3), image=None, y_down=True,
                            polygons=collection)
    traces = figure["data"][1:]
    assert [t["name"] for t in traces] == ["GPe"]
    assert traces[0]["showlegend"] and traces[0]["line"]["color"] == "#123456"
    assert figure["layout"]["showlegend"] is True
    plain = picture_figure(frame=Window(0, 3, 0, 3), window=Window(0, 3, 0, 3), image=None, y_down=True)
    assert plain["layout"]["showlegend"] is False


# ---------------------------------------------------------------------------------------------- demo store
@pytest.fixture(scope="module")
def atlas(demo_store):
    from data_layer import Atlas

    return Atlas.open(demo_store)


@pytest.fixture(scope="module")
def context(atlas, tmp_path_factory):
    return ViewerContext.build(atlas, Settings(store=tmp_path_factory.mktemp("outlines-ctx"), max_export_px=3000))


@pytest.fixture(scope="module")
def outlined(context):
    """(dataset, slab plane, section) of the section whose plane's polygons reach farthest beyond its cells."""
    best = None
    for entry in context.catalog.datasets.values():
        if not entry.spatial:
            continue
        for plane in entry.slab_planes:
            if not plane.has_polygons:
                continue
            whole = shapely.union_all([shape(f["geometry"])
                                       for f in context.atlas.polygons(entry.name, plane.label)["features"]])
            for section in plane.sections:
                kept = sum(shape(f["geometry"]).area
                           for f in view_outlines(context, entry.name, plane.label, section)["features"])
                spare = whole.area - kept
                if best is None or spare > best[0]:
                    best = (spare, entry.name, plane.label, section)
    assert best is not None, "the demo store has region polygons"
    return best[1:]


def test_a_sections_outlines_lie_within_its_tissue_and_are_fewer_than_the_planes(context, outlined):
    dataset, plane, section = outlined
    x, y = context.atlas.xy(dataset, section=section)
    tissue = tissue_area(x, y)
    clipped = view_outlines(context, dataset, plane, section)
    assert clipped["features"]
    for feature in clipped["features"]:
        assert shape(feature["geometry"]).difference(tissue).area < 1e-9
    whole = context.atlas.polygons(dataset, plane)
    kept = sum(shape(f["geometry"]).area for f in clipped["features"])
    full = sum(shape(f["geometry"]).area for f in whole["features"])
    assert kept < full  # the plane's outlines reach beyond this section's cells: cut, not drawn over empty space
    side = tissue_cell_mm(np.asarray(x), np.asarray(y))
    lo_x, lo_y, hi_x, hi_y = shapely.union_all([shape(f["geometry"]) for f in clipped["features"]]).bounds
    assert lo_x >= float(np.min(x)) - side and hi_x <= float(np.max(x)) + side
    assert lo_y >= float(np.min(y)) - side and hi_y <= float(np.max(y)) + side
    assert view_outlines(context, dataset, plane, section) is clipped  # cached per view


def test_the_map_draws_the_cut_outlines_not_the_planes(context, outlined):
    from callbacks.map_view import map_figure_step

    dataset, plane, section = outlined
    state = ViewState(dataset=dataset, slab_plane=plane, section=section, color_by="Class")
    figure, *_ = map_figure_step(None, state, {"width_px": 800, "height_px": 600}, True, context)
    drawn = figure["data"][1:]
    expected = polygon_traces(view_outlines(context, dataset, plane, section), visible=True)
    assert [t["name"] for t in drawn] == [t["name"] for t in expected]
    assert [len(t["x"]) for t in drawn] == [len(t["x"]) for t in expected]


def test_a_figure_with_outlines_draws_one_line_collection_and_one_name_per_region(context, outlined):
    dataset, plane, section = outlined
    state = ViewState(dataset=dataset, slab_plane=plane, section=section, color_by="Class")
    regions = figure_outlines(view_outlines(context, dataset, plane, section))
    counts = {}
    for flag in ("1", "0"):
        options = figure_options({"width": "700", "height": "500", "dpi": "100", "outlines": flag}, fmt="png",
                                 max_export_px=3000)
        figure = figure_of([figure_panel(context, state, options)], options)
        axes = figure.axes[0]
        lines = [c for c in axes.collections if str(c.get_gid() or "").startswith("region-outline")]
        names = [t.get_text() for t in axes.texts]
        counts[flag] = (len(lines), names)
    assert counts["1"][0] == len(regions) > 0
    assert sorted(counts["1"][1]) == sorted(r.label for r in regions)
    assert counts["0"] == (0, [])


@pytest.fixture(scope="module")
def client(atlas, tmp_path_factory):
    store = tmp_path_factory.mktemp("outlines-app") / "store"
    store.mkdir()
    app = create_app(Settings(store=store, export_burst=10_000, max_export_px=3000), atlas=atlas)
    return app.server.test_client()


def test_an_exported_svg_holds_the_outlines_and_their_names_unless_turned_off(client, context, outlined):
    dataset, plane, section = outlined
    names = {r.label for r in figure_outlines(view_outlines(context, dataset, plane, section))}
    found = {}
    for flag in ("1", "0"):
        query = urlencode({"dataset": dataset, "section": section, "color_by": "Class", "width": 700,
                           "height": 500, "dpi": 100, "outlines": flag})
        response = client.get(f"/export/figure.svg?{query}")
        assert response.status_code == 200
        root = ET.fromstring(response.data)
        texts = {"".join(node.itertext()).strip() for node in root.iter(f"{SVG_NS}text")}
        groups = [g for g in root.iter(f"{SVG_NS}g") if str(g.get("id", "")).startswith("region-outline")]
        found[flag] = (texts, groups)
    assert names <= found["1"][0] and len(found["1"][1]) == len(names)
    assert not (names & found["0"][0]) and found["0"][1] == []
    query = urlencode({"dataset": dataset, "section": section, "format": "svg", "width": 700, "height": 500,
                       "dpi": 100})
    api = client.get(f"/api/render?{query}")  # the API draws them by default, as the map does
    assert api.status_code == 200
    assert names <= {"".join(n.itertext()).strip() for n in ET.fromstring(api.data).iter(f"{SVG_NS}text")}


def test_a_bad_outlines_value_gets_400_naming_it(client, outlined):
    dataset, _, section = outlined
    query = urlencode({"dataset": dataset, "section": section, "outlines": "maybe"})
    response = client.get(f"/export/figure.png?{query}")
    assert response.status_code == 400 and response.get_json()["parameter"] == "outlines"


def test_the_export_panel_turns_outlines_off_when_the_map_box_is_unticked(outlined):
    dataset, plane, section = outlined
    state = ViewState(dataset=dataset, slab_plane=plane, section=section, color_by="Class")
    assert panel_args(state, {"outlines": []})["outlines"] == "0"
    assert "outlines" not in panel_args(state, {"outlines": ["on"]})


def test_a_gallery_figure_draws_each_sections_cut_outlines_unless_turned_off(client, context, outlined):
    dataset, _, _ = outlined
    groups = {}
    for flag in ("1", "0"):
        query = urlencode({"dataset": dataset, "color_by": "Class", "panels": "gallery", "width": 1400,
                           "height": 1000, "dpi": 100, "outlines": flag})
        response = client.get(f"/export/figure.svg?{query}")
        assert response.status_code == 200
        root = ET.fromstring(response.data)
        groups[flag] = [g for g in root.iter(f"{SVG_NS}g") if str(g.get("id", "")).startswith("region-outline")]
    from core.compare import gallery_sections

    expected = sum(len(figure_outlines(view_outlines(context, dataset, context.catalog.get(dataset)
                                                     .sections[s].slab_plane, s)))
                   for s in gallery_sections(context, dataset))
    assert len(groups["1"]) == expected > 0 and groups["0"] == []
    assert len({g.get("id") for g in groups["1"]}) == expected  # one id each
