"""Figure and cell export on the demo store: the ``/export/`` routes, their parameters and the export panel's steps.

The figures are checked as files: PNG size and dpi (Pillow), SVG as XML with its legend as ``<text>`` and the
cells as one ``<image>``, PDF by its signature and ``pdftotext``.
"""
from __future__ import annotations

import io
import shutil
import subprocess
import xml.etree.ElementTree as ET
from urllib.parse import urlencode

import numpy as np
import pandas as pd
import pytest
from dash import no_update
from PIL import Image

from app import create_app
from core.context import ViewerContext
from core.figures import visible_legend
from core.scope import view_window
from callbacks.export_panel import (convert_size, download_step, genes_for_view, panel_args, panel_view,
                                    preview_step)
from components import ids
from core.requests import figure_options
from core.selection import read_selection
from core.errors import ViewError
from core.state import strict_view
from core.state import ViewState
from core.viewport import Window
from settings import Settings

SVG_NS = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def atlas(demo_store):
    from data_layer import Atlas

    return Atlas.open(demo_store)


@pytest.fixture(scope="module")
def app(atlas, tmp_path_factory):
    store = tmp_path_factory.mktemp("export-app") / "store"
    store.mkdir()
    return create_app(Settings(store=store, export_burst=10_000, max_export_px=3000), atlas=atlas)


@pytest.fixture(scope="module")
def client(app):
    return app.server.test_client()


@pytest.fixture(scope="module")
def context(atlas, tmp_path_factory):
    return ViewerContext.build(atlas, Settings(store=tmp_path_factory.mktemp("export-ctx"), max_export_px=3000))


@pytest.fixture(scope="module")
def spatial(atlas):
    return next(d for d in atlas.datasets() if atlas.info(d).kind == "spatial")


@pytest.fixture(scope="module")
def section(atlas, spatial):
    return str(atlas.sections(spatial)["brain_section_label"].iloc[0])


@pytest.fixture(scope="module")
def zoom(atlas, spatial, section):
    """A window over a corner of the section: fewer categories than the whole section."""
    cells = atlas.cells(spatial, section=section)
    x0, x1 = np.percentile(cells["x"], [5, 30])
    y0, y1 = np.percentile(cells["y"], [5, 30])
    return Window(float(x0), float(x1), float(y0), float(y1))


def svg_texts(data: bytes) -> list[str]:
    root = ET.fromstring(data)
    return ["".join(node.itertext()).strip() for node in root.iter(f"{SVG_NS}text")]


def counts_in(atlas, dataset, section, level, window):
    cells = atlas.cells(dataset, section=section)
    inside = cells["x"].between(window.x0, window.x1) & cells["y"].between(window.y0, window.y1)
    return cells.loc[inside, level].value_counts()


# ---------------------------------------------------------------------------------------------- figures
def test_exported_png_has_the_asked_pixel_size_and_dpi(client, spatial, section):
    query = urlencode({"dataset": spatial, "section": section, "width": 1234, "height": 777, "dpi": 200})
    response = client.get(f"/export/figure.png?{query}")
    assert response.status_code == 200 and response.mimetype == "image/png"
    assert "attachment" in response.headers["Content-Disposition"]
    image = Image.open(io.BytesIO(response.data))
    assert image.size == (1234, 777)
    assert image.info["dpi"] == pytest.approx((200, 200), abs=0.05)


def test_size_in_inches_gives_inches_times_dpi_pixels(client, spatial, section):
    query = urlencode({"dataset": spatial, "section": section, "width": 3.5, "height": 2, "unit": "in", "dpi": 120})
    image = Image.open(io.BytesIO(client.get(f"/export/figure.png?{query}").data))
    assert image.size == (420, 240)


def test_png_cells_are_rendered_at_the_export_resolution_not_upscaled(context, spatial, section):
    """A larger export draws more distinct cell pixels (a stretched screen picture would keep the same count)."""
    from core.figures import figure_panel

    state = ViewState(dataset=spatial, section=section, color_by="Class")
    small = figure_panel(context, state, figure_options({"width": "600", "height": "400"}, fmt="png",
                                                        max_export_px=3000))
    large = figure_panel(context, state, figure_options({"width": "2400", "height": "1600"}, fmt="png",
                                                        max_export_px=3000))
    assert large.rgba.shape[0] >= 3.5 * small.rgba.shape[0]
    drawn_small = int(np.count_nonzero(small.rgba[..., 3]))
    drawn_large = int(np.count_nonzero(large.rgba[..., 3]))
    assert drawn_large > 4 * drawn_small


def test_svg_parses_and_holds_the_visible_legend_and_one_raster(client, atlas, spatial, section, zoom):
    level = "Subclass"
    query = urlencode({"dataset": spatial, "section": section, "color_by": level, "x0": zoom.x0, "x1": zoom.x1,
                       "y0": zoom.y0, "y1": zoom.y1, "legend": 60})
    response = client.get(f"/export/figure.svg?{query}")
    assert response.status_code == 200 and response.mimetype == "image/svg+xml"
    texts = svg_texts(response.data)
    root = ET.fromstring(response.data)
    assert len(list(root.iter(f"{SVG_NS}image"))) == 1
    present = counts_in(atlas, spatial, section, level, zoom)
    present = present[present > 0]
    for name in present.index:
        assert str(name) in texts
    absent = [str(name) for name in atlas.cells(spatial, section=section)[level].unique() if name not in present.index]
    assert absent, "the zoom window should miss some of the section's categories"
    for name in absent:
        assert name not in texts
    assert atlas.info(spatial).species in texts


def test_legend_lists_the_visible_terms_in_taxonomy_order_with_their_cells(context, atlas, spatial, section, zoom):
    state = ViewState(dataset=spatial, section=section, color_by="Subclass", viewport=zoom)
    entries = visible_legend(context, state, view_window(context, state), limit=3)
    counts = counts_in(atlas, spatial, section, "Subclass", zoom)
    order = atlas.categories(spatial, "Subclass")
    present = [name for name in order if counts.get(name, 0) > 0]
    assert len(present) > 3
    assert [name for name, _, _ in entries] == present  # every one: the figure chooses what fits
    assert [n for _, _, n in entries] == [int(counts[name]) for name in present]


def test_legend_of_a_highlighted_term_lists_its_cells_and_the_dimmed_rest(context, atlas, spatial, section):
    top = str(atlas.taxonomy(spatial).terms("Neighborhood")["name"].iloc[0])
    state = ViewState(dataset=spatial, section=section, color_by="Neighborhood", term=top,
                      term_level="Neighborhood")
    entries = visible_legend(context, state, view_window(context, state), limit=20)
    assert [name for name, *_ in entries] == [top, "other cells (dimmed)"]
    assert entries[1][2] is None  # a note, listed whatever fits


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="pdftotext (poppler-utils) is not installed")
def test_pdf_starts_with_signature_and_holds_the_legend_text(client, atlas, spatial, section, tmp_path):
    query = urlencode({"dataset": spatial, "section": section, "color_by": "Class", "title": "Figure 2a"})
    response = client.get(f"/export/figure.pdf?{query}")
    assert response.status_code == 200 and response.data.startswith(b"%PDF")
    path = tmp_path / "figure.pdf"
    path.write_bytes(response.data)
    text = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True,
                          check=True).stdout
    top = counts_in(atlas, spatial, section, "Class", view_window_of(atlas, spatial, section)).idxmax()
    assert str(top) in text
    assert "Figure 2a" in text and "x (mm)" in text


def view_window_of(atlas, dataset, section):
    cells = atlas.cells(dataset, section=section)
    return Window(float(cells["x"].min()), float(cells["x"].max()), float(cells["y"].min()), float(cells["y"].max()))


def test_gene_figure_has_a_colour_bar_labelled_with_the_gene(client, atlas, spatial, section):
    symbol = str(atlas.genes(spatial)["gene_symbol"].iloc[0])
    query = urlencode({"dataset": spatial, "section": section, "gene": symbol.lower()})
    texts = svg_texts(client.get(f"/export/figure.svg?{query}").data)
    assert f"{symbol} (log2 expression)" in texts


def test_umap_figure_has_no_scale_bar_and_no_mm_axes(client, atlas):
    umap = next(d for d in atlas.datasets() if atlas.info(d).kind == "umap")
    texts = svg_texts(client.get(f"/export/figure.svg?{urlencode({'dataset': umap})}").data)
    assert "UMAP 1" in texts and "UMAP 2" in texts and not any(t.endswith(" mm") or t.endswith("µm") for t in texts)


def test_figure_labels_stay_inside_the_figure_edges(client, atlas):
    """A near-square UMAP with a two-column legend once had its y label cut by the left edge."""
    umap = next(d for d in atlas.datasets() if atlas.info(d).kind == "umap")
    query = urlencode({"dataset": umap, "color_by": atlas.info(umap).levels[1], "width": 1050, "height": 750,
                       "dpi": 150, "legend": 30})
    ink = np.asarray(Image.open(io.BytesIO(client.get(f"/export/figure.png?{query}").data)).convert("L")) < 128
    assert ink.any()
    assert not ink[:, :3].any() and not ink[:, -3:].any() and not ink[-3:, :].any() and not ink[:3, :].any()


@pytest.mark.parametrize("params, parameter", [
    ({"width": "9000"}, "width"),
    ({"height": "40", "unit": "in"}, "height"),
    ({"dpi": "5000"}, "dpi"),
    ({"width": "abc"}, "width"),
    ({"unit": "cm"}, "unit"),
    ({"legend": "500"}, "legend"),
    ({"title": "x" * 300}, "title"),
    ({"gene": "NOT-A-GENE"}, "gene"),
    ({"section": "no-such-section"}, "section"),
    ({"color_by": "flavour"}, "color_by"),
    ({"x0": "1", "x1": "2"}, "y0"),
    ({"x0": "nan", "x1": "2", "y0": "1", "y1": "2"}, "x0"),
    ({"x0": "1000", "x1": "1001", "y0": "1000", "y1": "1001"}, "x0"),
    ({"colour": "red"}, "colour"),
])
def test_bad_figure_parameters_get_400_naming_the_parameter(client, spatial, params, parameter):
    response = client.get(f"/export/figure.png?{urlencode({'dataset': spatial, **params})}")
    assert response.status_code == 400
    assert response.json["parameter"] == parameter
    assert response.json["error"].startswith(parameter + ":")


def test_oversized_figure_message_names_the_setting(client, spatial):
    response = client.get(f"/export/figure.png?{urlencode({'dataset': spatial, 'width': 3001})}")
    assert "max_export_px" in response.json["error"] and "3000" in response.json["error"]


def test_unknown_figure_format_gets_400(client, spatial):
    response = client.get(f"/export/figure.gif?dataset={spatial}")
    assert response.status_code == 400 and response.json["parameter"] == "format"


# ---------------------------------------------------------------------------------------------- cells
def test_cells_csv_holds_the_cells_in_the_view_with_levels_and_genes(client, atlas, spatial, section, zoom):
    genes = atlas.genes(spatial)["gene_symbol"].astype(str).tolist()[:2]
    query = urlencode({"dataset": spatial, "section": section, "x0": zoom.x0, "x1": zoom.x1, "y0": zoom.y0,
                       "y1": zoom.y1, "genes": ",".join(g.lower() for g in genes)})
    response = client.get(f"/export/cells.csv?{query}")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    table = pd.read_csv(io.StringIO(response.get_data(as_text=True)))
    cells = atlas.cells(spatial, section=section)
    inside = cells["x"].between(zoom.x0, zoom.x1) & cells["y"].between(zoom.y0, zoom.y1)
    assert sorted(table["cell_label"]) == sorted(cells.loc[inside, "cell_label"].astype(str))
    for column in ["x", "y", "brain_section_label", "slab_plane_label", *atlas.taxonomy(spatial).levels, *genes]:
        assert column in table.columns
    expected = atlas.gene(spatial, genes[0], section=section)[inside.to_numpy()]
    got = table.set_index("cell_label").loc[cells.loc[inside, "cell_label"].astype(str), genes[0]].to_numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, equal_nan=True)


def test_box_selection_keeps_only_the_cells_inside_it(client, atlas, spatial, section, zoom):
    half = Window(zoom.x0, (zoom.x0 + zoom.x1) / 2, zoom.y0, zoom.y1)
    query = urlencode({"dataset": spatial, "section": section, "x0": zoom.x0, "x1": zoom.x1, "y0": zoom.y0,
                       "y1": zoom.y1, "selection": f"{half.x0},{half.x1},{half.y0},{half.y1}"})
    table = pd.read_csv(io.StringIO(client.get(f"/export/cells.csv?{query}").get_data(as_text=True)))
    assert len(table) > 0
    assert table["x"].between(half.x0 - 1e-4, half.x1 + 1e-4).all()


def test_polygon_selection_uses_the_atlas_polygon_query(client, atlas, spatial, section, zoom):
    xs = [zoom.x0, zoom.x1, zoom.x0]
    ys = [zoom.y0, zoom.y0, zoom.y1]
    query = urlencode({"dataset": spatial, "section": section,
                       "selection": ",".join(f"{x},{y}" for x, y in zip(xs, ys))})
    table = pd.read_csv(io.StringIO(client.get(f"/export/cells.csv?{query}").get_data(as_text=True)))
    expected = atlas.cells_in_polygon(spatial, xs, ys, section=section)
    assert len(table) == len(expected) > 0


def test_cells_h5ad_holds_the_genes_as_x_and_the_cells_as_obs(client, atlas, spatial, section, zoom, tmp_path):
    import anndata

    genes = atlas.genes(spatial)["gene_symbol"].astype(str).tolist()[:3]
    query = urlencode({"dataset": spatial, "section": section, "x0": zoom.x0, "x1": zoom.x1, "y0": zoom.y0,
                       "y1": zoom.y1, "genes": ",".join(genes)})
    response = client.get(f"/export/cells.h5ad?{query}")
    assert response.status_code == 200
    path = tmp_path / "cells.h5ad"
    path.write_bytes(response.data)
    adata = anndata.read_h5ad(path)
    cells = atlas.cells(spatial, section=section)
    inside = (cells["x"].between(zoom.x0, zoom.x1) & cells["y"].between(zoom.y0, zoom.y1)).to_numpy()
    assert adata.shape == (int(inside.sum()), 3)
    assert list(adata.var_names) == genes
    assert "Subclass" in adata.obs.columns and adata.obsm["spatial"].shape == (int(inside.sum()), 2)
    first = atlas.gene(spatial, genes[0], section=section)[inside]
    order = pd.Index(cells.loc[inside, "cell_label"].astype(str))
    np.testing.assert_allclose(np.asarray(adata[order, genes[0]].X).ravel(), first, rtol=1e-6, equal_nan=True)
    assert adata.uns["atlas_viewer"]["dataset"] == spatial


def test_cells_of_an_unknown_gene_get_400_naming_genes(client, spatial, section):
    response = client.get(f"/export/cells.csv?{urlencode({'dataset': spatial, 'genes': 'DRD1,NOPE'})}")
    assert response.status_code == 400 and response.json["parameter"] == "genes"


@pytest.mark.parametrize("raw", ["1,2,3", "1,0,0,1", "a,b,c,d", "1,2,3,4,5", "inf,1,2,3", "0;0,1;0,1;1"])
def test_bad_selections_are_refused(raw):
    with pytest.raises(ViewError) as info:
        read_selection(raw)
    assert info.value.parameter == "selection"


def test_export_routes_are_rate_limited(atlas, tmp_path, spatial):
    store = tmp_path / "store"
    store.mkdir()
    app = create_app(Settings(store=store, export_burst=2, export_rate_per_min=0.01), atlas=atlas)
    client = app.server.test_client()
    query = urlencode({"dataset": spatial, "width": 64, "height": 64})
    codes = [client.get(f"/export/figure.png?{query}").status_code for _ in range(3)]
    assert codes == [200, 200, 429]


@pytest.mark.parametrize("path", ["/export/figure.png", "/export/cells.csv", "/export/cells.h5ad"])
@pytest.mark.parametrize("payload", ["../../etc/passwd", "/etc/passwd", "..%2F..%2Fetc%2Fpasswd", "a\x00b"])
def test_path_payloads_in_export_parameters_get_400(client, path, payload):
    for key in ("dataset", "section", "slab_plane", "gene", "genes", "term", "term_level", "selection"):
        response = client.get(f"{path}?{urlencode({key: payload})}")
        assert response.status_code == 400, (key, payload)
        assert b"root:" not in response.data


def test_a_path_in_the_title_is_drawn_as_text_never_read(client, spatial):
    response = client.get(f"/export/figure.svg?{urlencode({'dataset': spatial, 'title': '/etc/passwd'})}")
    assert response.status_code == 200
    assert "/etc/passwd" in svg_texts(response.data) and b"root:" not in response.data


# ---------------------------------------------------------------------------------------------- panel
def panel_values(**given):
    base = {ids.DATASET: None, ids.SLAB_PLANE: None, ids.SECTION: None, ids.COLOR_BY: None, ids.GENE: None,
            ids.TERM: None, ids.VIEWPORT: None, ids.GENE_VMIN: None, ids.GENE_VMAX: None, ids.UMAP_VIEWPORT: None}
    base.update({getattr(ids, key.upper()): value for key, value in given.items()})
    return base


OPTIONS = {"target": "map", "format": "png", "width": 800, "height": 600, "unit": "px", "dpi": 100,
           "title": None, "legend": 20}


def test_panel_arguments_are_the_route_parameters_of_the_view(context, spatial, section):
    values = panel_values(dataset=spatial, section=section, color_by="Class", viewport={"x0": 1, "x1": 2,
                                                                                         "y0": 3, "y1": 4})
    args = panel_args(panel_view(values, "map", context), dict(OPTIONS, title="My figure"))
    assert args["dataset"] == spatial and args["section"] == section and args["color_by"] == "Class"
    assert (args["x0"], args["x1"], args["width"], args["dpi"], args["title"]) == ("1", "2", "800", "100",
                                                                                  "My figure")
    state = strict_view(args, context.catalog, gene_lookup=context.lookups.gene_symbol,
                        term_lookup=context.lookups.term_level, extra_keys=("width", "height", "unit", "dpi",
                                                                           "title", "legend"))
    assert state.section == section and state.viewport == Window(1, 2, 3, 4)


def test_panel_umap_target_exports_the_umap_beside_the_map(context, atlas, spatial, section):
    umap = atlas.info(spatial).umap_dataset
    values = panel_values(dataset=spatial, section=section, color_by="Subclass", umap_viewport={
        "dataset": umap, "x0": -1, "x1": 1, "y0": -1, "y1": 1})
    state = panel_view(values, "umap", context)
    assert state.dataset == umap and state.color_by == "Subclass" and state.viewport == Window(-1, 1, -1, 1)


def test_panel_preview_gives_size_links_and_count(context, atlas, spatial, section):
    values = panel_values(dataset=spatial, section=section, color_by="Class")
    info, disabled, api_url, csv_href, h5ad_href, cells_info = preview_step(values, OPTIONS, ["DRD1"], context)
    assert info.startswith("800 × 600 px") and not disabled
    assert "/api/render?" in api_url and "figure=1" in api_url
    assert csv_href.startswith("/export/cells.csv?") and "genes=DRD1" in csv_href
    assert h5ad_href.startswith("/export/cells.h5ad?")
    n_cells = len(atlas.cells(spatial, section=section))
    assert cells_info.startswith(f"{n_cells:,} cells")


def test_panel_preview_names_an_oversized_width_and_disables_download(context, spatial, section):
    values = panel_values(dataset=spatial, section=section, color_by="Class")
    info, disabled, *_ = preview_step(values, dict(OPTIONS, width=99_999), [], context)
    assert disabled and "width" in info and "max_export_px" in info


def test_panel_download_gives_the_figure_bytes(context, spatial, section):
    values = panel_values(dataset=spatial, section=section, color_by="Class")
    data, message = download_step(values, dict(OPTIONS, format="svg"), context, check_rate=False)
    assert data["filename"].endswith(".svg") and message.startswith("Downloaded")
    assert data["base64"] is True


def test_switching_units_converts_the_size_at_the_dpi():
    assert convert_size("in", 600, 300, 150) == (4.0, 2.0)
    assert convert_size("px", 4, 2, 150) == (600, 300)


def test_genes_box_starts_from_the_maps_gene_and_adds_new_ones(context, atlas, spatial):
    genes = atlas.genes(spatial)["gene_symbol"].astype(str).tolist()
    chosen, options = genes_for_view(spatial, "gene", genes[0], None, ids.DATASET, context)
    assert chosen == [genes[0]] and any(o["value"] == genes[0] for o in options)
    chosen, _ = genes_for_view(spatial, "gene", genes[1], chosen, ids.GENE, context)
    assert chosen == [genes[0], genes[1]]



def test_download_names_say_what_the_figure_is_coloured_by():
    from core.export import export_filename

    view = ViewState(dataset="HMBA-MERSCOPE-H22.30.001-BG", section="H22.30.001.CX.15.01.03.02")
    assert export_filename(view.replace(color_by="Subclass"), "figure", "pdf") == \
        "HMBA-MERSCOPE-H22.30.001-BG_H22.30.001.CX.15.01.03.02_Subclass.pdf"
    assert export_filename(view.replace(color_by="gene", gene="DRD1"), "figure", "png").endswith("_DRD1.png")
    two = view.replace(color_by="two_genes", gene="DRD1", gene2="PENK")
    assert export_filename(two, "figure", "svg").endswith("_DRD1-PENK.svg")
    assert export_filename(two, "cells", "csv").endswith("_DRD1-PENK_cells.csv")


def test_switching_the_unit_of_a_huge_size_leaves_it_for_the_route_to_refuse():
    assert convert_size("in", "1e308", "600", "300") == (no_update, 2.0)
    assert convert_size("px", "2", "3", "1e308") == (no_update, no_update)
