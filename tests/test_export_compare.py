"""Figures of the comparison views: the species side by side and the section gallery as ONE figure (PNG, SVG, PDF).

Three tiers: the pure layout (``rendering.figures.grid_geometry`` / ``plan_panel_grid``: one scale for every
panel, boxes inside the figure and apart, one legend beside them), the strict ``panels`` / ``sections``
parameters (``core.requests.panel_request``), and the real path on the demo store through Flask's
test client (``/export/figure.<fmt>?panels=...`` and ``/api/render``) and the export panel's steps. Files are
checked as files: PNG decoded (size, every panel drawn), SVG parsed (titles, one legend, one raster per panel),
PDF through ``pdftotext``.
"""
from __future__ import annotations

import io
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
from core.figures import comparison_views, plan_comparison
from callbacks.export_panel import download_step, panel_args, preview_step, target_step
from components import ids
from core.catalog import Catalog, DatasetEntry, SectionEntry, SlabPlaneEntry
from core.requests import MAX_FIGURE_PANELS, MIN_PANEL_PX, PanelRequest, panel_request
from core.errors import ViewError
from core.state import ViewState
from rendering.colors import GENE_KEY_ENTRIES
from rendering.figures import best_columns, export_panel_grid, grid_geometry, plan_panel_grid
from settings import Settings

SVG_NS = "{http://www.w3.org/2000/svg}"
SIZE = {"width": "1500", "height": "1000", "dpi": "150"}


# ---------------------------------------------------------------------------------------------- layout (pure)
EXTENTS = [(14.0, 31.0), (6.5, 15.5), (8.0, 8.0)]  # human, macaque, marmoset sections (mm): different sizes
NO_TITLES = [(0.0, 0.0)] * 3


def _overlap(a, b) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def test_every_panel_of_a_row_is_drawn_at_the_same_inches_per_mm():
    geometry = grid_geometry(EXTENTS, NO_TITLES, (0.0, 0.0, 6.0, 4.0), n_cols=3)
    ratios = [(box[2] / w, box[3] / h) for box, (w, h) in zip(geometry.boxes, EXTENTS)]
    assert all(r == pytest.approx(geometry.in_per_unit) for pair in ratios for r in pair)
    assert geometry.in_per_unit > 0
    assert len({round(box[2], 6) for box in geometry.boxes}) == 3  # not forced to one size


def test_grid_boxes_lie_inside_the_area_and_do_not_overlap():
    area = (0.5, 0.25, 6.0, 4.0)
    geometry = grid_geometry(EXTENTS * 3, [(0.6, 0.12)] * 9, area, n_cols=4)
    for box in geometry.boxes:
        assert box[0] >= area[0] - 1e-9 and box[0] + box[2] <= area[0] + area[2] + 1e-9
        assert box[1] >= area[1] - 1e-9 and box[1] + box[3] <= area[1] + area[3] + 1e-9
    pairs = [(a, b) for i, a in enumerate(geometry.boxes) for b in geometry.boxes[i + 1:]]
    assert not any(_overlap(a, b) for a, b in pairs)


def test_the_binding_side_is_filled():
    """The scale is the largest that fits: the tallest row (or the total width) reaches the area's side."""
    geometry = grid_geometry(EXTENTS, NO_TITLES, (0.0, 0.0, 60.0, 4.0), n_cols=3)  # very wide: height binds
    assert max(box[3] for box in geometry.boxes) == pytest.approx(4.0)
    narrow = grid_geometry(EXTENTS, NO_TITLES, (0.0, 0.0, 3.0, 40.0), n_cols=3)  # very tall: width binds
    assert narrow.right_in == pytest.approx(3.0, abs=1e-6)


def test_a_title_wider_than_its_picture_widens_its_column():
    wide_title = [(0.0, 0.1), (3.0, 0.1), (0.0, 0.1)]
    geometry = grid_geometry(EXTENTS, wide_title, (0.0, 0.0, 8.0, 3.0), n_cols=3)
    _, _, left_w, _ = geometry.boxes[0]
    right_x = geometry.boxes[2][0]
    assert right_x - (geometry.boxes[0][0] + left_w) >= 3.0  # the middle column holds the 3-inch title


def test_titles_that_cannot_fit_leave_no_room():
    geometry = grid_geometry(EXTENTS, [(3.0, 0.1)] * 3, (0.0, 0.0, 5.0, 4.0), n_cols=3)
    assert geometry.in_per_unit == 0 and geometry.boxes == ()


def test_best_columns_puts_many_sections_in_a_grid_that_suits_the_figure():
    sections = [(12.0, 30.0)] * 12  # tall sections
    wide = best_columns(sections, [(0.0, 0.0)] * 12, (0.0, 0.0, 10.0, 4.0))
    tall = best_columns(sections, [(0.0, 0.0)] * 12, (0.0, 0.0, 4.0, 10.0))
    assert wide.n_cols > tall.n_cols
    for geometry in (wide, tall):
        others = [grid_geometry(sections, [(0.0, 0.0)] * 12, (0.0, 0.0, 10.0, 4.0) if geometry is wide
                                else (0.0, 0.0, 4.0, 10.0), n_cols=n).in_per_unit for n in range(1, 13)]
        assert geometry.in_per_unit == pytest.approx(max(others))


def test_the_plan_puts_one_legend_right_of_every_panel_inside_the_figure():
    legend = [(f"term {i}", "#336699") for i in range(12)]
    grid = plan_panel_grid(EXTENTS, ["Human\nA.1", "Macaque\nB.1", "Marmoset\nC.1"], width_in=7, height_in=4,
                           dpi=100, heading="Species side by side", legend=legend, n_cols=3)
    assert grid.legend_anchor is not None and grid.legend_anchor[0] <= 7.0
    assert all(left + w < grid.legend_anchor[0] for left, _, w, _ in grid.geometry.boxes)
    assert all(bottom >= 0 and bottom + h <= 4.0 for _, bottom, _, h in grid.geometry.boxes)
    assert grid.raster_px(100) == [(round(w * 100), round(h * 100)) for _, _, w, h in grid.geometry.boxes]


def test_the_plan_of_a_gene_keeps_one_colour_bar_beside_the_panels():
    grid = plan_panel_grid(EXTENTS, ["a", "b", "c"], width_in=7, height_in=4, dpi=100,
                           colorbar=("viridis", 0.0, 5.0, "DRD1"), n_cols=3)
    left, bottom, width, height = grid.colorbar_box
    assert all(box[0] + box[2] < left for box in grid.geometry.boxes)
    assert left + width <= 7.0 and bottom >= 0 and height > 0


def test_the_scale_bar_turns_white_on_a_dark_picture():
    from rendering.figures import _bar_colour

    dark = np.zeros((40, 60, 4), dtype=np.uint8)
    dark[..., 3] = 255  # a two-gene picture's black background
    assert _bar_colour(dark) == "white"
    assert _bar_colour(np.zeros((40, 60, 4), dtype=np.uint8)) == "black"  # transparent: the white page


def test_a_grid_figure_draws_one_raster_per_panel_and_refuses_a_plan_without_room():
    grid = plan_panel_grid(EXTENTS, ["a", "b", "c"], width_in=5, height_in=3, dpi=100, n_cols=3)
    pictures = [np.full((h, w, 4), 200, dtype=np.uint8) for w, h in grid.raster_px(100)]
    windows = [(0.0, w, 0.0, h) for w, h in EXTENTS]
    svg = export_panel_grid(pictures, windows, grid, fmt="svg", dpi=100)
    assert len(list(ET.fromstring(svg).iter(f"{SVG_NS}image"))) == 3
    with pytest.raises(ValueError, match="3 pictures and 2 windows"):
        export_panel_grid(pictures, windows[:2], grid, fmt="svg", dpi=100)
    cramped = plan_panel_grid(EXTENTS, ["a very long title for a panel"] * 3, width_in=1, height_in=1, dpi=100,
                              n_cols=3)
    with pytest.raises(ValueError, match="no room"):
        export_panel_grid(pictures, windows, cramped, fmt="png", dpi=100)


# ---------------------------------------------------------------------------------------------- parameters
def _catalog(n_sections: int) -> Catalog:
    labels = tuple(f"S{i:03d}" for i in range(n_sections))
    sections = {label: SectionEntry(label, "P1", 10, (0.0, 1.0, 0.0, 1.0)) for label in labels}
    plane = SlabPlaneEntry("P1", labels, 10 * n_sections, (0.0, 1.0, 0.0, 1.0), False)
    spatial = DatasetEntry("D", "spatial", "Human", "MERSCOPE", "T", ("Class",), 10, 0, None, (0.0, 1.0, 0.0, 1.0),
                           (plane,), sections)
    umap = DatasetEntry("U", "umap", None, "10x", "T", ("Class",), 10, 0, None, (0.0, 1.0, 0.0, 1.0))
    return Catalog({"D": spatial, "U": umap})


def test_no_panels_parameter_is_the_one_view():
    assert panel_request({}, _catalog(3), ViewState(dataset="D"), ["D"]) is None
    assert panel_request({"panels": ""}, _catalog(3), ViewState(dataset="D"), ["D"]) is None


def test_species_panels_read_one_section_per_dataset():
    request = panel_request({"panels": "Species"}, _catalog(3), ViewState(dataset="D"), ["D"])
    assert request == PanelRequest("species", ())
    request = panel_request({"panels": "species", "sections": "S002"}, _catalog(3), ViewState(dataset="D"), ["D"])
    assert request == PanelRequest("species", ("S002",))
    request = panel_request({"panels": "species", "sections": " "}, _catalog(3), ViewState(dataset="D"), ["D"])
    assert request == PanelRequest("species", ())


@pytest.mark.parametrize("args, parameter, words", [
    ({"panels": "grid"}, "panels", "not one of species, gallery"),
    ({"panels": "species", "sections": "S999"}, "sections", "not a section of D"),
    ({"panels": "species", "sections": "S001,S002"}, "sections", "2 sections for 1 side-by-side"),
    ({"sections": "S001"}, "sections", "applies to panels=species only"),
    ({"panels": "gallery", "sections": "S001"}, "sections", "applies to panels=species only"),
    ({"panels": "gallery", "x0": "0.1"}, "x0", "draws whole sections"),
])
def test_a_bad_panels_request_names_its_parameter(args, parameter, words):
    with pytest.raises(ViewError) as caught:
        panel_request(args, _catalog(3), ViewState(dataset="D"), ["D"])
    assert caught.value.parameter == parameter and words in str(caught.value)


def test_a_gallery_of_a_umap_dataset_is_refused():
    with pytest.raises(ViewError, match="gallery needs a dataset of sections") as caught:
        panel_request({"panels": "gallery"}, _catalog(3), ViewState(dataset="U"), ["D"])
    assert caught.value.parameter == "panels"


def test_a_gallery_of_more_sections_than_a_figure_holds_is_refused():
    catalog = _catalog(MAX_FIGURE_PANELS + 1)
    with pytest.raises(ViewError, match=f"at most {MAX_FIGURE_PANELS}"):
        panel_request({"panels": "gallery"}, catalog, ViewState(dataset="D"), ["D"])
    assert panel_request({"panels": "gallery"}, _catalog(MAX_FIGURE_PANELS), ViewState(dataset="D"), ["D"])


# ---------------------------------------------------------------------------------------------- demo store
@pytest.fixture(scope="module")
def demo(demo_store, tmp_path_factory):
    from data_layer import Atlas

    atlas = Atlas.open(demo_store)
    store = tmp_path_factory.mktemp("export-compare") / "store"
    store.mkdir()
    settings = Settings(store=store, export_burst=10_000, max_export_px=3000)
    app = create_app(settings, atlas=atlas)
    context = ViewerContext.build(atlas, settings)
    spatial = [d for d in atlas.datasets() if atlas.info(d).kind == "spatial"]
    return SimpleNamespace(atlas=atlas, client=app.server.test_client(), context=context, spatial=spatial,
                           human=spatial[0])


def _get(demo, fmt, **params):
    response = demo.client.get(f"/export/figure.{fmt}?{urlencode({**SIZE, **params})}")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response


def _plan(demo, fmt, **params):
    args = {**SIZE, **params}
    from core.export import figure_request

    state, options, request = figure_request(demo.context, args, fmt)
    return plan_comparison(demo.context, state, options, request)


def _svg(data: bytes):
    root = ET.fromstring(data)
    texts = ["".join(node.itertext()).strip() for node in root.iter(f"{SVG_NS}text")]
    groups = [node.get("id") or "" for node in root.iter(f"{SVG_NS}g")]
    images = list(root.iter(f"{SVG_NS}image"))
    return texts, groups, images


def _pdf_text(data: bytes, tmp_path) -> str:
    path = tmp_path / "figure.pdf"
    path.write_bytes(data)
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True,
                          check=True).stdout


def _panels_drawn(png: bytes, plan, dpi: float) -> list[float]:
    """Fraction of non-white pixels inside each panel's box of the PNG."""
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    height_px = image.shape[0]
    fractions = []
    for left, bottom, width, height in plan.grid.geometry.boxes:
        x0, x1 = int(left * dpi) + 2, int((left + width) * dpi) - 2
        y0, y1 = height_px - int((bottom + height) * dpi) + 2, height_px - int(bottom * dpi) - 2
        box = image[y0:y1, x0:x1]
        fractions.append(float(np.mean(np.any(box < 235, axis=2))))
    return fractions


def test_side_by_side_png_has_the_asked_size_and_every_species_panel_drawn(demo):
    response = _get(demo, "png", dataset=demo.human, panels="species")
    assert 'filename="species-side-by-side_' in response.headers["Content-Disposition"]
    image = Image.open(io.BytesIO(response.data))
    assert image.size == (1500, 1000)
    assert image.info["dpi"] == pytest.approx((150, 150), abs=0.05)
    plan = _plan(demo, "png", dataset=demo.human, panels="species")
    assert len(plan.views) == len(compare_datasets(demo.context)) == 3
    assert all(fraction > 0.05 for fraction in _panels_drawn(response.data, plan, 150))  # none blank


def test_side_by_side_svg_holds_each_species_title_one_legend_and_one_raster_per_panel(demo):
    data = _get(demo, "svg", dataset=demo.human, panels="species").data
    texts, groups, images = _svg(data)
    for dataset in compare_datasets(demo.context):
        info = demo.atlas.info(dataset)
        section = str(demo.atlas.sections(dataset)["brain_section_label"].iloc[0])
        assert f"{info.species} · {info.platform}" in texts
        assert section in texts
    assert sum(1 for g in groups if g.startswith("legend_")) == 1
    assert len(images) == 3
    assert any(text.endswith("mm") for text in texts)  # the scale bars are text, not pixels


def test_side_by_side_pdf_names_every_species_and_section(demo, tmp_path):
    if not shutil.which("pdftotext"):
        pytest.skip("pdftotext (poppler-utils) is not installed")
    data = _get(demo, "pdf", dataset=demo.human, panels="species").data
    assert data.startswith(b"%PDF")
    text = _pdf_text(data, tmp_path)
    for dataset in compare_datasets(demo.context):
        assert demo.atlas.info(dataset).species in text
        assert str(demo.atlas.sections(dataset)["brain_section_label"].iloc[0]) in text


def test_side_by_side_uses_the_sections_asked_per_species(demo):
    macaque = demo.spatial[1]
    last = str(demo.atlas.sections(macaque)["brain_section_label"].iloc[-1])
    texts, _, _ = _svg(_get(demo, "svg", dataset=demo.human, panels="species", sections=f",{last}").data)
    assert last in texts


def test_gallery_png_has_the_asked_size_and_every_section_drawn(demo):
    response = _get(demo, "png", dataset=demo.human, panels="gallery")
    assert "_gallery_" in response.headers["Content-Disposition"]
    assert Image.open(io.BytesIO(response.data)).size == (1500, 1000)
    plan = _plan(demo, "png", dataset=demo.human, panels="gallery")
    assert [v.state.section for v in plan.views] == gallery_sections(demo.context, demo.human)
    assert all(fraction > 0.05 for fraction in _panels_drawn(response.data, plan, 150))  # none blank
    # the human sections are tall blocks (one row fits them best); the marmoset's whole hemispheres make a grid
    marmoset = _plan(demo, "png", dataset="HMBA-Xenium-CJ23.56.004-BG", panels="gallery")
    assert 1 < marmoset.grid.geometry.n_cols < len(marmoset.views)  # a grid, not one row or one column


def test_gallery_svg_and_pdf_hold_every_section_title_and_one_legend(demo, tmp_path):
    sections = gallery_sections(demo.context, demo.human)
    texts, groups, images = _svg(_get(demo, "svg", dataset=demo.human, panels="gallery").data)
    assert all(section in texts for section in sections)
    assert sum(1 for g in groups if g.startswith("legend_")) == 1
    assert len(images) == len(sections)
    if shutil.which("pdftotext"):
        text = _pdf_text(_get(demo, "pdf", dataset=demo.human, panels="gallery").data, tmp_path)
        assert all(section in text for section in sections)


def test_every_comparison_panel_shares_one_scale_in_inches_per_mm(demo):
    for kind in ("species", "gallery"):
        plan = _plan(demo, "png", dataset=demo.human, panels=kind)
        scales = [box[2] / view.window.width for box, view in zip(plan.grid.geometry.boxes, plan.views)]
        assert np.allclose(scales, plan.grid.in_per_unit)
        if kind == "species":  # sections of different sizes stay different sizes
            assert len({round(box[2], 3) for box in plan.grid.geometry.boxes}) == len(plan.views)


def test_every_comparison_panel_draws_its_cells_with_one_dot_size(demo):
    """One scale on paper, one dot radius: the largest of the panels' own density radii (the demo's marmoset
    section is denser than the human one, so alone it would be drawn in single scattered pixels)."""
    from core.figures import comparison_dot_radius_px
    from core.picture import view_picture
    from core.render import picture_dot_radius_px

    plan = _plan(demo, "png", dataset=demo.human, color_by="Class", panels="species")
    sizes = plan.grid.raster_px(150)
    own = [picture_dot_radius_px(demo.context, view_picture(v.state, v.window, *size))
           for v, size in zip(plan.views, sizes)]
    assert len(set(own)) > 1  # the panels differ in density
    assert comparison_dot_radius_px(demo.context, plan.views, sizes) == max(own)


def test_the_shared_legend_lists_categories_of_all_panels_in_taxonomy_order(demo):
    plan = _plan(demo, "png", dataset=demo.human, panels="species", color_by="Class", legend="60")
    present: set[str] = set()
    for view in plan.views:
        counts = demo.atlas.cells(view.state.dataset, section=view.state.section)["Class"].value_counts()
        present |= {str(name) for name, n in counts.items() if n}
    order: list[str] = []  # the first panel's taxonomy order, then terms only the others have in theirs
    for view in plan.views:
        order += [str(c) for c in demo.atlas.categories(view.state.dataset, "Class") if str(c) not in order]
    labels = [label for label, _ in plan.grid.legend]
    assert set(labels) == present
    assert labels == [name for name in order if name in present]


def test_a_gene_is_one_colour_bar_on_one_range_across_species(demo):
    gene = "DRD1"
    plan = _plan(demo, "png", dataset=demo.human, panels="species", gene=gene)
    expected = shared_gene_range(demo.context, compare_datasets(demo.context), gene, None, None)
    assert plan.grid.colorbar[1:3] == pytest.approx(expected)
    assert plan.grid.legend == GENE_KEY_ENTRIES  # no categories: only the colours of the cells off the bar
    assert all((view.state.vmin, view.state.vmax) == pytest.approx(expected) for view in plan.views)
    texts, groups, _ = _svg(_get(demo, "svg", dataset=demo.human, panels="species", gene=gene).data)
    assert sum(1 for text in texts if gene in text and "log2" in text) == 1  # ONE colour bar label


def test_the_highlighted_term_dims_the_rest_in_every_panel(demo):
    level = "Subclass"
    term = "STR D1 MSN"
    plan = _plan(demo, "png", dataset=demo.human, panels="species", color_by=level, term=term, term_level=level)
    # Subclass is one of the levels shared across species (down to Group): every species highlights the term
    assert all(view.state.term == term and view.state.term_level == level for view in plan.views)
    assert ("other cells (dimmed)" in [label for label, _ in plan.grid.legend])
    assert [label for label, _ in plan.grid.legend][0] == term


def test_a_gallery_too_small_for_its_sections_is_refused_naming_panels(demo):
    response = demo.client.get("/export/figure.png?" + urlencode(
        {"dataset": demo.human, "panels": "gallery", "width": "160", "height": "120", "dpi": "50"}))
    assert response.status_code == 400
    body = response.get_json()
    assert body["parameter"] == "panels" and f"at least {MIN_PANEL_PX}" in body["error"]


def test_a_bad_panels_value_is_a_400_naming_it(demo):
    response = demo.client.get(f"/export/figure.svg?dataset={demo.human}&panels=everything")
    assert response.status_code == 400
    assert response.get_json() == {"error": "panels: 'everything' is not one of species, gallery, across",
                                   "parameter": "panels"}


def test_api_render_draws_the_same_comparison_figure(demo):
    query = urlencode({**SIZE, "dataset": demo.human, "panels": "gallery", "format": "svg"})
    response = demo.client.get(f"/api/render?{query}")
    assert response.status_code == 200
    _, _, images = _svg(response.data)
    assert len(images) == len(gallery_sections(demo.context, demo.human))
    plain = demo.client.get(f"/api/render?dataset={demo.human}&panels=species")
    assert plain.status_code == 400 and plain.get_json()["parameter"] == "panels"


# ---------------------------------------------------------------------------------------------- export panel
def _values(demo, **extra):
    section = str(demo.atlas.sections(demo.human)["brain_section_label"].iloc[0])
    return {ids.DATASET: demo.human, ids.SECTION: section, ids.COLOR_BY: "Subclass",
            ids.VIEWPORT: {"x0": 12.0, "x1": 20.0, "y0": 60.0, "y1": 70.0}, **extra}


OPTIONS = {"format": "png", "width": 1500, "height": 1000, "unit": "px", "dpi": 150, "legend": 20}


def test_switching_the_map_card_to_a_comparison_makes_it_the_export_target(demo):
    options, value = target_step(demo.human, "species", "map", ids.MAP_VIEW_MODE, demo.context)
    assert value == "species" and "species" in [o["value"] for o in options]
    options, value = target_step(demo.human, "gallery", "species", ids.MAP_VIEW_MODE, demo.context)
    assert value == "gallery" and "species" not in [o["value"] for o in options]
    options, value = target_step(demo.human, "map", "gallery", ids.MAP_VIEW_MODE, demo.context)
    assert value == "map" and {o["value"] for o in options} == {"map", "umap"}


def test_the_panel_sends_the_side_by_side_sections_and_drops_the_zoom(demo):
    macaque_last = str(demo.atlas.sections(demo.spatial[1])["brain_section_label"].iloc[-1])
    values = _values(demo, **{ids.compare_section(1): macaque_last})
    info, disabled, api_url, csv, _, _ = preview_step(values, {**OPTIONS, "target": "species"}, [], demo.context)
    assert not disabled and info.startswith("Species side by side") and "one scale" in info
    assert "panels=species" in api_url and macaque_last in api_url and "x0=" not in api_url
    assert "x0=12" in csv  # the cell links stay the map's view
    from callbacks.export_panel import compare_sections, panel_view

    state = panel_view(values, "species", demo.context)
    assert panel_args(state, {"target": "species"}, compare_sections(values, demo.context))["sections"] == \
        f",{macaque_last},"


def test_the_panel_download_gives_the_gallery_figure(demo):
    data, message = download_step(_values(demo), {**OPTIONS, "target": "gallery"}, demo.context, check_rate=False)
    assert message.startswith("Downloaded") and data["filename"].endswith("_gallery_Subclass.png")
    import base64

    assert Image.open(io.BytesIO(base64.b64decode(data["content"]))).size == (1500, 1000)


def test_the_panel_says_why_a_comparison_cannot_be_exported(demo):
    options = {**OPTIONS, "target": "gallery", "width": 160, "height": 120, "dpi": 50}
    info, disabled, *_ = preview_step(_values(demo), options, [], demo.context)
    assert disabled and info.startswith("Cannot export: panels:")


def test_comparison_views_follow_the_compare_module(demo):
    views = comparison_views(demo.context, ViewState(dataset=demo.human, color_by="Subclass"),
                             PanelRequest("species"))
    assert [v.state.dataset for v in views] == compare_datasets(demo.context)
    assert [v.state.section for v in views] == [
        str(demo.atlas.sections(d)["brain_section_label"].iloc[0]) for d in compare_datasets(demo.context)]
