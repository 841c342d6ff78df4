"""Tests of the publication export: sizes, dpi, vector text, embedded raster, orientation, request bounds."""
from __future__ import annotations

import io
import shutil
import subprocess
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from rendering.figures import MAX_LEGEND_ENTRIES, export_figure, export_raster_px
from rendering.raster import Viewport

SVG_NS = "{http://www.w3.org/2000/svg}"
VIEWPORT = Viewport(0.0, 10.0, 0.0, 8.0, 100, 80)
LEGEND = [("STR D1 MSN", "#FF3358"), ("L2/3 IT", "#a8afa5"), ("unassigned", "#c8c8c8")]


def two_band_picture(height=80, width=100):
    """Top half red, bottom half blue (row 0 = top)."""
    rgba = np.zeros((height, width, 4), np.uint8)
    rgba[: height // 2] = (255, 0, 0, 255)
    rgba[height // 2 :] = (0, 0, 255, 255)
    return rgba


def svg_texts(data: bytes) -> list[str]:
    root = ET.fromstring(data)
    return ["".join(node.itertext()).strip() for node in root.iter(f"{SVG_NS}text")]


def test_png_export_has_asked_pixel_size_and_dpi():
    data = export_figure(two_band_picture(), VIEWPORT, fmt="png", width_in=4.0, height_in=3.0, dpi=150,
                         title="Section 12", species="human", legend=LEGEND)
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    assert image.size == (600, 450)
    assert image.info["dpi"] == pytest.approx((150, 150), abs=0.05)  # pHYs stores whole pixels per metre


def test_svg_export_keeps_legend_title_and_species_as_text_and_embeds_an_image():
    data = export_figure(two_band_picture(), VIEWPORT, fmt="svg", width_in=5, height_in=4, dpi=100,
                         title="Section 12", species="macaque", legend=LEGEND)
    texts = svg_texts(data)
    for label, _ in LEGEND:
        assert label in texts
    assert "Section 12" in texts and "macaque" in texts
    assert "2 mm" in texts  # scale bar label for a 10 mm wide window
    root = ET.fromstring(data)
    assert len(list(root.iter(f"{SVG_NS}image"))) == 1


def test_svg_export_shows_colorbar_label_and_no_scale_bar_for_umap_units():
    data = export_figure(two_band_picture(), VIEWPORT, fmt="svg", width_in=5, height_in=4, dpi=100,
                         colorbar=("viridis", 0.0, 4.5, "DRD1 log2(CPM+1)"), units="")
    texts = svg_texts(data)
    assert "DRD1 log2(CPM+1)" in texts
    assert not any(t.endswith("mm") for t in texts)


def test_axes_are_named_as_the_page_names_them():
    umap = svg_texts(export_figure(two_band_picture(), VIEWPORT, fmt="svg", dpi=100, units=""))
    assert "UMAP 1" in umap and "UMAP 2" in umap
    section = svg_texts(export_figure(two_band_picture(), VIEWPORT, fmt="svg", dpi=100))
    assert "x (mm)" in section and "y (mm)" in section and "UMAP 1" not in section


def test_a_long_legend_lists_the_terms_with_most_cells_in_the_given_order_and_counts_the_rest():
    counts = [(i * 7919) % 1000 + 1 for i in range(MAX_LEGEND_ENTRIES + 50)]  # distinct orders of place and count
    legend = [(f"cluster {i}", "#123456", n) for i, n in enumerate(counts)]
    texts = svg_texts(export_figure(two_band_picture(), VIEWPORT, fmt="svg", legend=legend, dpi=100))
    listed = [t for t in texts if t.startswith("cluster ")]
    assert 20 < len(listed) < MAX_LEGEND_ENTRIES  # a 7 x 5 in figure holds many, not all
    places = [int(t.split()[1]) for t in listed]
    assert places == sorted(places)  # the given (taxonomy) order, not by count
    fewest_listed = min(counts[i] for i in places)
    left_out = [n for i, n in enumerate(counts) if i not in set(places)]
    assert max(left_out) <= fewest_listed  # the ones left out have the fewest cells
    assert f"+ {len(counts) - len(listed):,} more with fewer cells" in texts


def test_the_legend_limit_is_kept_and_notes_always_listed():
    legend = [(f"t{i}", "#123456", 100 - i) for i in range(30)] + [("other cells (dimmed)", "#dddddd", None)]
    texts = svg_texts(export_figure(two_band_picture(), VIEWPORT, fmt="svg", legend=legend, dpi=100,
                                    legend_limit=5))
    assert [t for t in texts if t.startswith("t") and t[1:].isdigit()] == ["t0", "t1", "t2", "t3", "t4"]
    assert "+ 25 more with fewer cells" in texts and "other cells (dimmed)" in texts
    assert not [t for t in svg_texts(export_figure(two_band_picture(), VIEWPORT, fmt="svg", legend=legend, dpi=100,
                                                   legend_limit=0)) if t.startswith("t")]


def test_pdf_export_is_pdf_with_legend_text():
    data = export_figure(two_band_picture(), VIEWPORT, fmt="pdf", width_in=5, height_in=4, dpi=100,
                         title="Section 12", legend=LEGEND)
    assert data.startswith(b"%PDF")
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext is not installed")
    text = subprocess.run(["pdftotext", "-", "-"], input=data, capture_output=True, check=True).stdout.decode()
    for label, _ in LEGEND:
        assert label in text
    assert "Section 12" in text


@pytest.mark.parametrize("y_down", [True, False])
def test_export_draws_picture_row_0_at_the_top(y_down):
    # The picture is given with row 0 = top in either orientation, so red must be on top in the figure.
    data = export_figure(two_band_picture(), VIEWPORT, fmt="png", width_in=4, height_in=4, dpi=100,
                         y_down=y_down, show_axes=False, scale_bar_mm=False)
    pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    column = pixels[:, pixels.shape[1] // 2]
    coloured = np.flatnonzero((column != 255).any(axis=1))
    top, bottom = coloured.min(), coloured.max()
    assert tuple(column[top + 3]) == (255, 0, 0)
    assert tuple(column[bottom - 3]) == (0, 0, 255)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"fmt": "gif"}, "fmt"), ({"dpi": 5000}, "dpi"), ({"width_in": 0}, "width_in"),
     ({"width_in": 39.0, "dpi": 1000}, "width_in"), ({"height_in": float("nan")}, "height_in")],
)
def test_export_rejects_bad_request_naming_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        export_figure(two_band_picture(), VIEWPORT, **kwargs)


def test_export_raster_px_keeps_viewport_aspect_within_the_figure():
    width_px, height_px = export_raster_px(VIEWPORT, 7.0, 5.0, 300)
    assert (width_px, height_px) == (1875, 1500)
    assert export_raster_px(VIEWPORT, 40.0, 40.0, 1200, max_px=4000)[0] == 4000
