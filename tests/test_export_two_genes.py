"""The 2-D colour key of exported two-gene figures (PNG, SVG, PDF): one view and the comparison figures.

Pure tier: :class:`rendering.figures.TwoGeneKey` draws the picture's own colour table
(:func:`rendering.blend.legend_2d_rgba`), greys what "both" mode greys, and sits beside the picture inside the
figure. Route tier (demo store, Flask test client): the key is in the file as a raster with its gene symbols and
ranges as text, the ranges are the ones the cells were coloured over, the title's colour words are the theme's,
and a side-by-side or gallery figure has ONE key on the ranges all its two-gene panels share.
"""
from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from types import SimpleNamespace
from urllib.parse import urlencode

import numpy as np
import pytest
from PIL import Image

from app import create_app
from callbacks.compare import compare_datasets, gallery_sections, shared_gene_range
from core.context import ViewerContext
from core.export import figure_request
from core.figures import figure_panel, plan_comparison
from core.picture import view_picture
from core.render import render_rgba
from core.catalog import COLOR_BY_TWO_GENES
from rendering.blend import DEFAULT_THEME, THEMES, blend_color, blend_table, render_two_genes
from rendering.colors import parse_hex, to_rgba
from rendering.figures import TwoGeneKey, export_figure, export_panel_grid, plan_panel_grid
from rendering.raster import Viewport
from settings import Settings

SVG_NS = "{http://www.w3.org/2000/svg}"
XLINK = "{http://www.w3.org/1999/xlink}href"
GENE_A, GENE_B = "DRD1", "PENK"
SIZE = {"width": "1500", "height": "1000", "dpi": "150"}
VIEWPORT = Viewport(0.0, 10.0, 0.0, 14.0, 100, 140)


# ---------------------------------------------------------------------------------------------- helpers
def _svg(data: bytes) -> SimpleNamespace:
    """Texts (string, anchor x, anchor y in pt), images (box in pt, decoded RGBA) and the figure's size in pt."""
    root = ET.fromstring(data)
    _, _, width, height = (float(v) for v in root.get("viewBox").split())
    texts = []
    for node in root.iter(f"{SVG_NS}text"):
        if node.get("x") is not None:
            x, y = float(node.get("x")), float(node.get("y"))
        else:
            x, y = (float(v) for v in re.match(r"translate\(([-\d.e]+) ([-\d.e]+)\)", node.get("transform")).groups())
        texts.append(("".join(node.itertext()).strip().replace("\u00a0", " "), x, y))
    images = []
    for node in root.iter(f"{SVG_NS}image"):
        a, _, _, d, e, f = (float(v) for v in re.match(r"matrix\(([^)]*)\)", node.get("transform")).group(1).split())
        box = (e, f, e + a * float(node.get("width")), f + d * float(node.get("height")))
        href = node.get(XLINK) or node.get("href")
        rgba = np.asarray(Image.open(io.BytesIO(base64.b64decode(href.split(",", 1)[1]))).convert("RGBA"))
        images.append((box, rgba))
    return SimpleNamespace(texts=texts, images=images, width=width, height=height)


def _key_image(svg: SimpleNamespace):
    """The key: the rightmost image (the pictures lie left of it)."""
    return max(svg.images, key=lambda item: item[0][0])


def _distance(box, x, y) -> float:
    x0, y0, x1, y1 = box
    return float(np.hypot(max(x0 - x, 0.0, x - x1), max(y0 - y, 0.0, y - y1)))


def _corners(rgba: np.ndarray) -> dict[str, tuple[int, ...]]:
    return {"low-low": tuple(int(v) for v in rgba[-1, 0]), "high-low": tuple(int(v) for v in rgba[-1, -1]),
            "low-high": tuple(int(v) for v in rgba[0, 0]), "high-high": tuple(int(v) for v in rgba[0, -1])}


BLEND_CORNERS = {"low-low": (0.0, 0.0), "high-low": (1.0, 0.0), "low-high": (0.0, 1.0), "high-high": (1.0, 1.0)}


def _has_run_sequence(image: np.ndarray, colours: list[tuple[int, ...]]) -> bool:
    """Whether some pixel row holds ``colours`` as consecutive runs (one run per colour, in this order)."""
    rgb = image[..., :3]
    first = np.asarray(colours[0], dtype=rgb.dtype)
    for row in rgb[np.any(np.all(rgb == first, axis=2), axis=1)]:
        starts = np.r_[0, np.nonzero(np.any(row[1:] != row[:-1], axis=1))[0] + 1]
        runs = [tuple(int(v) for v in row[i]) for i in starts]
        for i in range(len(runs) - len(colours) + 1):
            if runs[i:i + len(colours)] == colours:
                return True
    return False


def _picture(mode: str = "blend") -> np.ndarray:
    rng = np.random.default_rng(7)
    x, y = rng.uniform(0, 10, 4000), rng.uniform(0, 14, 4000)
    a, b = rng.uniform(0, 8, 4000), rng.uniform(0, 6, 4000)
    return render_two_genes(x, y, a, b, VIEWPORT, range_a=(0, 8), range_b=(0, 6), mode=mode, threshold_a=2,
                            threshold_b=1.5, y_down=True)


# ---------------------------------------------------------------------------------------------- pure
@pytest.mark.parametrize("theme", ["dark", "light"])
def test_key_corner_pixels_are_the_blend_colours_of_each_gene_low_and_high(theme):
    key = TwoGeneKey("DRD1", "TAC1", (0.0, 8.0), (0.0, 6.0), theme=theme)
    corners = _corners(key.rgba(120))
    assert corners == {name: blend_color(a, b, theme) for name, (a, b) in BLEND_CORNERS.items()}


def test_key_pixels_are_the_picture_colour_table_only():
    key = TwoGeneKey("DRD1", "TAC1", (0.0, 8.0), (0.0, 6.0))
    table = {tuple(int(v) for v in c) for c in blend_table(DEFAULT_THEME).reshape(-1, 4)}
    assert {tuple(int(v) for v in px) for px in key.rgba(200).reshape(-1, 4)} == table  # every level, nothing else


def test_both_mode_key_greys_the_values_at_or_below_a_threshold():
    blend = TwoGeneKey("DRD1", "TAC1", (0.0, 8.0), (0.0, 6.0)).rgba(80)
    both = TwoGeneKey("DRD1", "TAC1", (0.0, 8.0), (0.0, 6.0), mode="both", threshold_a=2.0,
                      threshold_b=3.0).rgba(80)
    dimmed = to_rgba(THEMES[DEFAULT_THEME].dimmed)
    # column c shows DRD1 at 8 * (c + 0.5) / 80; row r (from the top) TAC1 at 6 * (80 - r - 0.5) / 80
    assert np.all(both[:, :20] == dimmed)  # DRD1 <= 2: columns 0..19 (centre 1.95 at 19)
    assert np.all(both[40:, :] == dimmed)  # TAC1 <= 3: the lower half
    np.testing.assert_array_equal(both[:40, 20:], blend[:40, 20:])  # above both: the blend colours
    assert tuple(both[0, -1]) == blend_color(1.0, 1.0)


def test_both_mode_note_names_each_gene_and_threshold_and_the_grey_rest():
    key = TwoGeneKey("DRD1", "TAC1", (0.0, 8.0), (0.0, 6.0), mode="both", threshold_a=2.0, threshold_b=1.5)
    assert key.note.replace("\u00a0", " ") == "Coloured: cells with DRD1 > 2 and TAC1 > 1.5; all other cells grey"
    assert TwoGeneKey("DRD1", "TAC1", (0.0, 8.0), (0.0, 6.0)).note == ""


@pytest.mark.parametrize("kwargs, words", [({"range_a": (3.0, 3.0)}, "range_a"),
                                           ({"range_b": (0.0, np.nan)}, "range_b"), ({"mode": "mix"}, "mode")])
def test_a_bad_key_is_refused_naming_the_field(kwargs, words):
    fields = {"gene_a": "A", "gene_b": "B", "range_a": (0.0, 1.0), "range_b": (0.0, 1.0), **kwargs}
    with pytest.raises(ValueError, match=words):
        TwoGeneKey(**fields)


@pytest.mark.parametrize("theme", ["dark", "light"])
def test_theme_colour_words_name_the_hue_of_each_corner_colour(theme):
    """The words a title uses must be the colours drawn: magenta = red+blue, green, teal = green+blue, ..."""
    hues = {"magenta": lambda r, g, b: r > 150 and b > 150 and g < 80, "green": lambda r, g, b: g > 150 > r and b < 150,
            "white": lambda r, g, b: min(r, g, b) > 230, "pink": lambda r, g, b: r > g and b > g and r > 150,
            "teal": lambda r, g, b: g > r + 50 and b > r + 50, "dark blue": lambda r, g, b: b > r and b > g and b < 170}
    th = THEMES[theme]
    for word, colour in zip(th.colour_words(), (th.color_a, th.color_b, th.color_both)):
        assert hues[word](*parse_hex(colour)), (word, colour)


def test_single_figure_svg_draws_the_key_right_of_the_picture_with_its_labels_beside_it():
    key = TwoGeneKey("DRD1", "TAC1", (0.0, 8.0), (0.0, 6.5))
    svg = _svg(export_figure(_picture(), VIEWPORT, fmt="svg", width_in=7, height_in=5, dpi=150, title="t",
                             two_gene_key=key))
    assert len(svg.images) == 2  # the cells and the key
    (picture_box, _), (key_box, key_rgba) = sorted(svg.images, key=lambda item: item[0][0])
    assert key_box[0] > picture_box[2]  # right of the picture
    side = key_box[2] - key_box[0]
    assert side == pytest.approx(key_box[3] - key_box[1]) and side >= 0.5 * 72  # square, at least half an inch
    assert _corners(key_rgba) == {name: blend_color(a, b) for name, (a, b) in BLEND_CORNERS.items()}
    for text in ("DRD1", "TAC1", "0", "8", "6.5", "log2 expression"):
        assert any(t == text and _distance(key_box, x, y) < 30 for t, x, y in svg.texts), text
    gene_a = next((x, y) for t, x, y in svg.texts if t == "DRD1")
    gene_b = next((x, y) for t, x, y in svg.texts if t == "TAC1")
    assert gene_a[1] > key_box[3] and key_box[0] < gene_a[0] < key_box[2]  # under the square
    assert gene_b[0] < key_box[0] and key_box[1] < gene_b[1] < key_box[3]  # left of it


@pytest.mark.parametrize("mode", ["blend", "both"])
@pytest.mark.parametrize("width_in, height_in", [(7.0, 5.0), (3.5, 2.5), (10.0, 3.0)])
def test_the_key_labels_and_note_stay_inside_the_figure(mode, width_in, height_in):
    key = TwoGeneKey("DRD1", "TAC1", (0.0, 17.9), (0.0, 17.5), mode=mode, threshold_a=2.0, threshold_b=1.5)
    data = export_figure(_picture(mode), VIEWPORT, fmt="png", width_in=width_in, height_in=height_in, dpi=150,
                         two_gene_key=key)
    ink = np.asarray(Image.open(io.BytesIO(data)).convert("L")) < 200
    assert not ink[:, -3:].any() and not ink[-3:, :].any() and not ink[:3, :].any()
    svg = _svg(export_figure(_picture(mode), VIEWPORT, fmt="svg", width_in=width_in, height_in=height_in, dpi=150,
                             two_gene_key=key))
    for text, x, y in svg.texts:
        assert 0 <= x <= svg.width and 0 <= y <= svg.height, text


def test_a_panel_grid_draws_one_key_right_of_every_panel_inside_the_figure():
    key = TwoGeneKey("DRD1", "TAC1", (0.0, 8.0), (0.0, 6.0), mode="both", threshold_a=1.0, threshold_b=1.0)
    grid = plan_panel_grid([(10.0, 14.0)] * 3, ["a", "b", "c"], width_in=10, height_in=5, dpi=100, heading="h",
                           two_gene_key=key, n_cols=3)
    left, bottom, side, _ = grid.two_gene_key_box
    assert all(box[0] + box[2] < left for box in grid.geometry.boxes)
    assert left + side < 10 and bottom > 0
    svg = _svg(export_panel_grid([_picture("both")] * 3, [VIEWPORT] * 3, grid, fmt="svg", dpi=100))
    assert len(svg.images) == 4
    assert sum(t == "DRD1" for t, _, _ in svg.texts) == 1


# ---------------------------------------------------------------------------------------------- demo store
@pytest.fixture(scope="module")
def demo(demo_store, tmp_path_factory):
    from data_layer import Atlas

    atlas = Atlas.open(demo_store)
    store = tmp_path_factory.mktemp("export-two-genes") / "store"
    store.mkdir()
    settings = Settings(store=store, export_burst=10_000, max_export_px=3000)
    context = ViewerContext.build(atlas, settings)
    spatial = [d for d in atlas.datasets() if atlas.info(d).kind == "spatial"]
    section = str(atlas.sections(spatial[0])["brain_section_label"].iloc[0])
    return SimpleNamespace(atlas=atlas, client=create_app(settings, atlas=atlas).server.test_client(),
                           context=context, human=spatial[0], section=section)


def _args(demo, **more) -> dict:
    return {**SIZE, "dataset": demo.human, "section": demo.section, "color_by": COLOR_BY_TWO_GENES, "gene": GENE_A,
            "gene2": GENE_B, **more}


def _get(demo, fmt: str, **more) -> bytes:
    response = demo.client.get(f"/export/figure.{fmt}?{urlencode(_args(demo, **more))}")
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    return response.data


def _range_texts(demo, dataset: str | None = None) -> list[str]:
    dataset = dataset or demo.human
    ranges = (demo.context.gene_range(dataset, GENE_A), demo.context.gene_range(dataset, GENE_B))
    return [f"{v:.3g}" for pair in ranges for v in pair]


def test_two_gene_png_figure_holds_the_key_rows_in_the_blend_order(demo):
    image = np.asarray(Image.open(io.BytesIO(_get(demo, "png"))).convert("RGBA"))
    assert image.shape[:2] == (1000, 1500)
    table = blend_table(DEFAULT_THEME)
    top = [tuple(int(v) for v in table[i, -1, :3]) for i in range(table.shape[0])]  # gene B high, A low -> high
    bottom = [tuple(int(v) for v in table[i, 0, :3]) for i in range(table.shape[0])]  # gene B low
    assert _has_run_sequence(image, top) and _has_run_sequence(image, bottom)


def test_two_gene_svg_figure_has_one_more_image_than_panels_and_the_genes_beside_the_key(demo):
    svg = _svg(_get(demo, "svg"))
    assert len(svg.images) == 2
    key_box, key_rgba = _key_image(svg)
    assert _corners(key_rgba) == {name: blend_color(a, b) for name, (a, b) in BLEND_CORNERS.items()}
    near = [t for t, x, y in svg.texts if _distance(key_box, x, y) < 30]
    assert GENE_A in near and GENE_B in near
    assert set(_range_texts(demo)) <= set(near)  # the ranges the picture was coloured over


def test_two_gene_pdf_figure_names_both_genes_and_their_ranges(demo, tmp_path):
    if not shutil.which("pdftotext"):
        pytest.skip("pdftotext (poppler-utils) is not installed")
    path = tmp_path / "figure.pdf"
    path.write_bytes(_get(demo, "pdf"))
    text = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True,
                          check=True).stdout
    words = set(text.split())
    assert {GENE_A, GENE_B, "log2", "expression"} <= words
    assert set(_range_texts(demo)) <= words


def test_both_mode_figure_notes_the_thresholds_and_greys_the_key_below_them(demo, tmp_path):
    svg = _svg(_get(demo, "svg", blend="both", ta="1.5", tb="0.5"))
    key_box, key_rgba = _key_image(svg)
    note = " ".join(t for t, x, y in sorted(svg.texts, key=lambda item: item[2])
                    if _distance(key_box, x, y) < 60 and t not in (GENE_A, GENE_B))
    assert f"Coloured: cells with {GENE_A} > 1.5 and {GENE_B} > 0.5; all other cells grey" in note
    dimmed = to_rgba(THEMES[DEFAULT_THEME].dimmed)
    assert tuple(int(v) for v in key_rgba[-1, 0]) == dimmed  # both genes low: drawn grey in this mode
    assert tuple(int(v) for v in key_rgba[0, -1]) == blend_color(1.0, 1.0)
    if shutil.which("pdftotext"):
        path = tmp_path / "both.pdf"
        path.write_bytes(_get(demo, "pdf", blend="both", ta="1.5", tb="0.5"))
        text = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True).stdout
        assert "1.5" in text and "0.5" in text and "other cells grey" in text


def test_the_title_names_the_colours_of_the_theme_the_cells_are_drawn_in(demo):
    word_a, word_b, _ = THEMES[DEFAULT_THEME].colour_words()
    texts = [t for t, _, _ in _svg(_get(demo, "svg")).texts]
    assert any(f"{GENE_A} ({word_a}) and {GENE_B} ({word_b})" in t for t in texts)


def _plan(demo, panels: str, **more):
    state, options, request = figure_request(demo.context, _args(demo, panels=panels, **more), "svg")
    return state, options, plan_comparison(demo.context, state, options, request)


def test_species_panels_share_one_range_per_gene_and_one_key_on_it(demo):
    _, _, plan = _plan(demo, "species")
    datasets = [v.state.dataset for v in plan.views if v.state.color_by == COLOR_BY_TWO_GENES]
    assert len(datasets) == len(compare_datasets(demo.context)) == 3  # every demo species measures both
    shared = (shared_gene_range(demo.context, datasets, GENE_A, None, None),
              shared_gene_range(demo.context, datasets, GENE_B, None, None))
    assert all(v.gene_ranges == shared for v in plan.views)
    key = plan.grid.two_gene_key
    assert (key.gene_a, key.gene_b, key.range_a, key.range_b) == (GENE_A, GENE_B, *shared)
    own = [(demo.context.gene_range(d, GENE_A), demo.context.gene_range(d, GENE_B)) for d in datasets]
    assert any(pair != shared for pair in own)  # the demo species differ: sharing is not a no-op here


def test_species_two_gene_panels_are_drawn_on_the_shared_ranges(demo):
    _, options, plan = _plan(demo, "species")
    for view in plan.views:
        panel = figure_panel(demo.context, view.state, options, window=view.window, size_px=(120, 160),
                             title="", with_legend=False, dot_radius_px=1.0, gene_ranges=view.gene_ranges)
        expected = render_rgba(demo.context, view_picture(view.state, view.window, 120, 160), dot_radius_px=1.0,
                               gene_ranges=view.gene_ranges)
        np.testing.assert_array_equal(panel.rgba, expected)
        assert panel.two_gene_key.range_a == view.gene_ranges[0]


def test_species_svg_holds_one_key_one_more_image_than_panels(demo):
    svg = _svg(_get(demo, "svg", panels="species"))
    assert len(svg.images) == len(compare_datasets(demo.context)) + 1
    assert sum(t == GENE_A for t, _, _ in svg.texts) == 1 and sum(t == GENE_B for t, _, _ in svg.texts) == 1
    key_box, key_rgba = _key_image(svg)
    assert _corners(key_rgba) == {name: blend_color(a, b) for name, (a, b) in BLEND_CORNERS.items()}
    _, _, plan = _plan(demo, "species")
    labels = {f"{v:.3g}" for pair in (plan.grid.two_gene_key.range_a, plan.grid.two_gene_key.range_b) for v in pair}
    assert labels <= {t for t, x, y in svg.texts if _distance(key_box, x, y) < 30}


def test_gallery_has_one_key_on_the_dataset_ranges_and_one_more_image_than_sections(demo, tmp_path):
    _, _, plan = _plan(demo, "gallery", blend="both", ta="1", tb="1")
    expected = (demo.context.gene_range(demo.human, GENE_A), demo.context.gene_range(demo.human, GENE_B))
    assert all(v.gene_ranges == expected for v in plan.views)
    key = plan.grid.two_gene_key
    assert (key.range_a, key.range_b, key.mode, key.threshold_a, key.threshold_b) == (*expected, "both", 1.0, 1.0)
    svg = _svg(_get(demo, "svg", panels="gallery", blend="both", ta="1", tb="1"))
    assert len(svg.images) == len(gallery_sections(demo.context, demo.human)) + 1
    assert any("other cells grey" in t for t, _, _ in svg.texts)
    if shutil.which("pdftotext"):
        path = tmp_path / "gallery.pdf"
        path.write_bytes(_get(demo, "pdf", panels="gallery", blend="both", ta="1", tb="1"))
        words = set(subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True,
                                   check=True).stdout.split())
        assert {GENE_A, GENE_B} | set(_range_texts(demo)) <= words
