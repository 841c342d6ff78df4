"""Figure builders and the picture request: image placement, reversed y, outlines, patches, URL checks."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from dash import Patch

from components.figures import (image_placement, message_figure, picture_figure, polygon_traces,
                                polygons_visibility_patch, view_patch)
from core.picture import PictureRequest, parse_picture_args
from core.errors import ViewError
from core.viewport import Window
from viewer_catalog import TERMS, gene_lookup, make_catalog, term_lookup

CATALOG = make_catalog()
FRAME = Window(0.0, 8.0, 0.0, 6.0)
SQUARE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}


def args(**overrides):
    base = {"dataset": "HUMAN", "section": "H.S1", "color_by": "Subclass", "x0": "0", "x1": "8", "y0": "0",
            "y1": "6", "w": "800", "h": "600"}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def parse(**overrides):
    return parse_picture_args(args(**overrides), CATALOG, max_px=4096, gene_lookup=gene_lookup,
                              term_lookup=term_lookup)


def test_section_image_hangs_from_y0_on_a_reversed_axis():
    placement = image_placement(FRAME, y_down=True)
    assert (placement["x"], placement["y"], placement["sizex"], placement["sizey"]) == (0.0, 0.0, 8.0, 6.0)
    assert (placement["xref"], placement["yref"], placement["sizing"]) == ("x", "y", "stretch")


def test_umap_image_hangs_from_y1():
    assert image_placement(FRAME, y_down=False)["y"] == 6.0


def test_section_figure_reverses_y_keeps_equal_aspect_and_hover_anywhere():
    figure = picture_figure(frame=FRAME, window=Window(1, 3, 2, 4), image=None, y_down=True)
    layout = figure["layout"]
    assert layout["yaxis"]["range"] == [4, 2]
    assert layout["yaxis"]["scaleanchor"] == "x"
    assert layout["hoveranywhere"] and layout["clickanywhere"]
    assert layout["uirevision"] == "picture"


def test_corner_trace_spans_the_frame_invisibly():
    corners = picture_figure(frame=FRAME, window=FRAME, image=None, y_down=True)["data"][0]
    assert (min(corners["x"]), max(corners["x"]), min(corners["y"]), max(corners["y"])) == (0, 8, 0, 6)
    assert corners["marker"]["opacity"] == 0


def test_scale_bar_is_drawn_for_sections_only():
    with_bar = picture_figure(frame=FRAME, window=FRAME, image=None, y_down=True)
    without = picture_figure(frame=FRAME, window=FRAME, image=None, y_down=False, with_scale_bar=False)
    assert with_bar["layout"]["annotations"][0]["text"].endswith("mm")
    assert without["layout"]["shapes"] == []


def test_polygons_become_one_hidden_line_trace_per_label():
    collection = {"features": [
        {"properties": {"label": "STR", "color": "#cd86cc"}, "geometry": SQUARE},
        {"properties": {"label": "STR", "color": "#cd86cc"},
         "geometry": {"type": "MultiPolygon", "coordinates": [SQUARE["coordinates"], SQUARE["coordinates"]]}},
        {"properties": {"label": "GP"},
         "geometry": {"type": "GeometryCollection", "geometries": [SQUARE]}},
    ]}
    traces = polygon_traces(collection, visible=False)
    assert [t["name"] for t in traces] == ["STR", "GP"]
    assert traces[0]["x"].count(None) == 3  # three rings, each closed by a gap
    assert not traces[0]["visible"] and traces[0]["hoverinfo"] == "skip"


def test_view_patch_swaps_image_ranges_and_scale_bar():
    patch = view_patch(Window(1, 2, 3, 4), {"source": "/render/map.png?a=1"}, y_down=True)
    assert isinstance(patch, Patch)
    operations = patch.to_plotly_json()["operations"]
    locations = {tuple(op["location"]) for op in operations}
    assert ("layout", "images") in locations
    assert ("layout", "yaxis", "range") in locations
    assert ("layout", "shapes", 0) in locations
    y_range = next(op for op in operations if op["location"] == ["layout", "yaxis", "range"])["params"]["value"]
    assert y_range == [4, 3]


def test_polygon_patch_touches_every_trace_but_the_corners():
    operations = polygons_visibility_patch(3, True).to_plotly_json()["operations"]
    assert sorted(op["location"][1] for op in operations) == [1, 2]


def test_message_figure_says_why():
    assert message_figure("No data")["layout"]["annotations"][0]["text"] == "No data"


def test_picture_url_round_trips_through_the_checks():
    picture = PictureRequest(dataset="HUMAN", section="H.S2", slab_plane=None, color_by="gene", gene="DRD1",
                             term="STR D1 MSN", term_level="Subclass", window=Window(0.5, 2.25, 1, 3),
                             width_px=640, height_px=480, vmin=0.0, vmax=4.5)
    query = {k: v[-1] for k, v in parse_qs(urlsplit(picture.url()).query).items()}
    again = parse_picture_args(query, CATALOG, max_px=4096, gene_lookup=gene_lookup, term_lookup=term_lookup)
    assert again == picture


@pytest.mark.parametrize("overrides,parameter", [
    ({"dataset": "../etc"}, "dataset"),
    ({"section": "H.S3", "slab_plane": "H.Plane.01"}, "slab_plane"),
    ({"section": "nope"}, "section"),
    ({"section": None, "slab_plane": "X"}, "slab_plane"),
    ({"color_by": "flavour"}, "color_by"),
    ({"color_by": "gene"}, "gene"),
    ({"color_by": "gene", "gene": "NOPE"}, "gene"),
    ({"term": "Astro-Epen", "term_level": "Subclass"}, "term"),
    ({"term": "Nope"}, "term"),
    ({"term_level": "Subclass"}, "term"),
    ({"term": "STR D1 MSN", "term_level": "Flavour"}, "term_level"),
    ({"x0": "nan"}, "x0"),
    ({"x1": "0"}, "x1"),
    ({"x0": None}, "x0"),
    ({"w": "0"}, "w"),
    ({"h": "100000"}, "h"),
    ({"w": "1.5"}, "w"),
    ({"vmin": "1"}, "vmax"),
    ({"vmin": "3", "vmax": "1"}, "vmax"),
    ({"evil": "1"}, "evil"),
])
def test_bad_picture_parameter_is_named(overrides, parameter):
    with pytest.raises(ViewError) as info:
        parse(**overrides)
    assert info.value.parameter == parameter
    assert parameter in str(info.value)


def test_the_picture_reads_the_address_grammar():
    """What the address bar accepts, the picture route accepts and reads the same way: a level in any case, a term
    without its level, a window in either order, the whole first slab plane when no place is named."""
    picture = parse(color_by="subclass", term="STR D1 MSN", x0="8", x1="0", section=None)
    assert (picture.color_by, picture.term, picture.term_level) == ("Subclass", "STR D1 MSN", "Subclass")
    assert picture.window == Window(0.0, 8.0, 0.0, 6.0)
    assert (picture.slab_plane, picture.section) == (CATALOG.get("HUMAN").slab_planes[0].label, None)
    assert "STR D1 MSN" in TERMS["Subclass"]


def test_umap_dataset_takes_no_section():
    with pytest.raises(ViewError, match="section"):
        parse(dataset="TENX")
    picture = parse(dataset="TENX", section=None)
    assert picture.section is None and picture.slab_plane is None


def test_whole_slab_plane_picture_is_accepted():
    picture = parse(section=None, slab_plane="H.Plane.02")
    assert (picture.section, picture.slab_plane) == (None, "H.Plane.02")


def test_gene_is_ignored_unless_colouring_by_gene():
    assert parse(gene="DRD1").gene is None
