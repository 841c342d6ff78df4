"""Numeric cell columns of the release (10X ``umi_count``, ``doublet_score``; spatial ``total_counts``, marmoset
``cell_area``...): kept by prepare with the source's values and dtype, offered as numeric colourings drawn like a
gene (a perceptual map over a shown range, "not measured" grey), in the address, the picture route, the legend,
figures, the cell export and a selection's summary; and in a browser."""
from __future__ import annotations

import csv
import io
from urllib.parse import quote, urlencode

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from browser_helpers import atlas, open_view, store, viewer, wait_for_picture  # noqa: F401  (fixtures)
from callbacks.legend import legend_step
from callbacks.selection import level_choices, numeric_summary_text
from core.context import ViewerContext
from core.errors import ViewError
from core.state import parse_query, strict_view
from data_layer.analysis import column_summary
from data_layer.tables import read_numeric_columns
from rendering.colors import NOT_MEASURED_COLOR, cmap_lut
from settings import Settings

TENX = "HMBA-10xMultiome-BG-Aligned"
XENIUM = "HMBA-Xenium-CJ23.56.004-BG"
HUMAN = "HMBA-MERSCOPE-H22.30.001-BG"


@pytest.fixture(scope="module")
def context(atlas, tmp_path_factory):
    return ViewerContext.build(atlas, Settings(store=tmp_path_factory.mktemp("numeric")))


@pytest.fixture(scope="module")
def client(context, atlas):
    return __import__("app").create_app(context.settings, atlas=atlas).server.test_client()


def source_table(cache, dataset: str, name: str) -> dict[str, dict[str, str]]:
    """The release's CSV as text: cell label -> column -> the value as written."""
    path = next((cache / "metadata" / dataset).glob(f"*/{name}"))
    with open(path, newline="") as file:
        return {row["cell_label"]: row for row in csv.DictReader(file)}


def python_value(text: str) -> float:
    return float("nan") if text.strip() in ("", "NaN", "nan") else float(text)


# ---------------------------------------------------------------------------------------------- prepare
@pytest.mark.parametrize("dataset, table, columns", [
    (TENX, "cell_metadata.csv", {"umi_count": np.int64, "doublet_score": np.float64}),
    (XENIUM, "cell_supplemental_metadata.csv", {"total_counts": np.int64, "cell_area": np.float64,
                                                "nucleus_area": np.float64}),
    (HUMAN, "cell_supplemental_metadata.csv", {"total_counts": np.int64, "total_counts_genes": np.int64,
                                               "pct_counts_Blank": np.float64}),
])
def test_prepare_keeps_the_numeric_columns_with_the_source_values(demo_cache, atlas, dataset, table, columns):
    source = source_table(demo_cache, dataset, table)
    labels = atlas.cells(dataset)["cell_label"].astype(str).to_numpy()
    assert set(columns) <= set(atlas.numeric_columns(dataset))
    for column, dtype in columns.items():
        stored = atlas.values(dataset, column)
        assert stored.dtype == dtype and len(stored) == len(labels)
        expected = np.array([python_value(source[label][column]) if label in source else np.nan for label in labels])
        if dtype is np.int64:
            assert np.array_equal(stored, expected.astype(np.int64))
        else:  # the double nearest each decimal text, as Python's float() reads it: bit for bit
            assert np.array_equal(stored, expected, equal_nan=True)


def test_only_measurements_are_numeric_columns(tmp_path):
    path = tmp_path / "cells.csv"
    path.write_text("cell_label,umi_count,alignment_job_id,job,x,qc_pass,score,library_label,none\n"
                    "a,10,1177203229,12,1.5,True,0.1,7,\n"
                    "b,,5f3a9c,13,2.5,False,NaN,8,\n")
    found = read_numeric_columns(path)
    assert list(found) == ["cell_label", "umi_count", "job", "score"]  # no coordinate, key, hash, bool or empty
    assert found["umi_count"].dtype == np.float64 and np.isnan(found["umi_count"][1])  # an empty integer cell
    assert found["job"].dtype == np.int64 and list(found["job"]) == [12, 13]
    assert found["score"][0] == 0.1 and np.isnan(found["score"][1])


def test_no_categorical_or_place_column_is_numeric(context):
    for entry in context.catalog.datasets.values():
        assert not set(entry.numeric_columns) & (set(entry.levels) | set(entry.columns) | {"x", "y"})
    assert {"umi_count", "doublet_score"} <= set(context.catalog.get(TENX).color_by_choices())


# ---------------------------------------------------------------------------------------------- the address
def test_the_address_reads_a_numeric_column_in_any_case(context):
    for text in ("umi_count", "UMI_Count"):
        state, notices = parse_query(f"?dataset={quote(TENX)}&color_by={text}", context.catalog,
                                     gene_lookup=context.lookups.gene_symbol, term_lookup=context.lookups.term_level)
        assert (state.color_by, notices) == ("umi_count", [])


def test_an_unknown_column_is_refused_naming_color_by(context, client):
    with pytest.raises(ViewError) as caught:
        strict_view({"dataset": TENX, "color_by": "umi_counts"}, context.catalog,
                    gene_lookup=context.lookups.gene_symbol, term_lookup=context.lookups.term_level)
    assert caught.value.parameter == "color_by"
    response = client.get(f"/api/render?{urlencode({'dataset': TENX, 'color_by': 'cell_area'})}")
    assert response.status_code == 400 and response.json["parameter"] == "color_by"
    assert "cell_area" in response.json["error"]


# ---------------------------------------------------------------------------------------------- pictures
def picture(client, dataset: str, column: str, window, size: int = 300) -> np.ndarray:
    x0, x1, y0, y1 = window
    query = urlencode({"dataset": dataset, "color_by": column, "x0": x0, "x1": x1, "y0": y0, "y1": y1,
                       "w": size, "h": size})
    response = client.get(f"/render/map.png?{query}")
    assert response.status_code == 200, response.get_data(as_text=True)
    return np.asarray(Image.open(io.BytesIO(response.data)).convert("RGBA"))


def test_the_picture_route_colours_cells_by_the_column_on_the_colour_map(context, client, atlas, demo_cache):
    values = atlas.values(TENX, "umi_count")
    x, y = (np.asarray(v, dtype=np.float64) for v in atlas.xy(TENX))
    source = np.array([int(row["umi_count"]) for row in source_table(demo_cache, TENX, "cell_metadata.csv").values()])
    low, high = np.percentile(source, [1, 99])
    assert context.catalog.get(TENX).numeric_columns["umi_count"] == (low, high)
    lut = [tuple(c) for c in cmap_lut("viridis")[:, :3]]
    # the whole UMAP: every drawn pixel is a colour of the map (no cell lacks a value)
    whole = picture(client, TENX, "umi_count", context.catalog.get(TENX).bounds)
    drawn = whole[whole[..., 3] > 0][:, :3]
    assert len(drawn) and {tuple(p) for p in np.unique(drawn, axis=0)} <= set(lut)
    # one cell alone in a tiny window: the top of the map for the largest count, the bottom for the smallest
    for index, end in ((int(np.argmax(values)), lut[-1]), (int(np.argmin(values)), lut[0])):
        near = np.hypot(x - x[index], y - y[index])
        radius = np.partition(near, 1)[1] / 3  # closer to it than to any other cell
        alone = picture(client, TENX, "umi_count", (x[index] - radius, x[index] + radius,
                                                   y[index] - radius, y[index] + radius), size=9)
        assert tuple(alone[4, 4, :3]) == end and alone[4, 4, 3] == 255


def test_cells_without_a_value_are_drawn_not_measured(context, atlas, tmp_path):
    from core.picture import PictureRequest
    from core.render import render_rgba
    from core.viewport import Window

    entry = context.catalog.get(TENX)
    request = PictureRequest(dataset=TENX, section=None, slab_plane=None, color_by="doublet_score", gene=None,
                             term=None, term_level=None, window=Window(*entry.bounds), width_px=200, height_px=200)
    rgba = render_rgba(context, request)
    lut = {tuple(c) for c in cmap_lut("viridis")[:, :3]}
    colours = {tuple(p) for p in np.unique(rgba[rgba[..., 3] > 0][:, :3], axis=0)}
    assert colours <= lut  # the demo's 10X cells all have a doublet score: nothing is "not measured"
    grey = tuple(int(NOT_MEASURED_COLOR[i:i + 2], 16) for i in (1, 3, 5))
    assert grey not in colours


# ---------------------------------------------------------------------------------------------- legend, figures
def test_the_legend_is_a_colour_bar_with_the_columns_name_and_range(context):
    children, title, info, *_ = legend_step(TENX, None, None, "umi_count", None, None, None, None, context)
    low, high = context.catalog.get(TENX).numeric_columns["umi_count"]
    text = str(children)
    assert "umi_count" in text and "colorbar" in text and "not measured" in text
    assert high >= 1000 > low  # the demo's counts: whole numbers on the bar from 1,000 on
    assert f"≤ {low:.3g}" in text and f"≥ {round(high):,}" in text and "percentile" in info
    assert title.startswith("Umi count")


@pytest.mark.parametrize("fmt", ["svg", "pdf", "png"])
def test_a_figure_of_a_numeric_column_has_its_colour_bar(client, fmt):
    query = urlencode({"dataset": XENIUM, "color_by": "cell_area", "format": fmt})
    response = client.get(f"/api/render?{query}")
    assert response.status_code == 200, response.get_data(as_text=True)
    if fmt == "svg":
        svg = response.get_data(as_text=True)
        assert "cell_area" in svg and "not measured" in svg and "not expressed" not in svg
    else:
        assert len(response.data) > 1000


def test_an_exported_figure_names_the_column_in_its_colour_bar(context):
    from core.figures import figure_panel
    from core.requests import FigureOptions
    from core.state import ViewState

    entry = context.catalog.get(HUMAN)
    section = next(iter(entry.sections))
    state = ViewState(dataset=HUMAN, slab_plane=entry.sections[section].slab_plane, section=section,
                      color_by="total_counts")
    panel = figure_panel(context, state, FigureOptions(fmt="png", width_in=4, height_in=3, dpi=50))
    cmap, vmin, vmax, label = panel.colorbar
    assert (vmin, vmax) == entry.numeric_columns["total_counts"] and label.startswith("total_counts")
    assert [name for name, *_ in panel.legend] == ["not measured"]


# ---------------------------------------------------------------------------------------------- cells, selections
def test_the_cell_export_holds_the_columns_exact_values(client, atlas, demo_cache):
    query = urlencode({"dataset": XENIUM, "section": atlas.sections(XENIUM)["brain_section_label"].iloc[0]})
    response = client.get(f"/api/cells.csv?{query}")
    assert response.status_code == 200
    table = pd.read_csv(io.StringIO(response.get_data(as_text=True)), dtype=str, keep_default_na=False)
    source = source_table(demo_cache, XENIUM, "cell_supplemental_metadata.csv")
    assert len(table)
    for label, area, count in zip(table["cell_label"], table["cell_area"], table["total_counts"]):
        assert float(area) == float(source[label]["cell_area"]) and count == source[label]["total_counts"]


def test_a_selections_summary_gives_the_columns_mean_and_median(context, atlas):
    assert "umi_count" in level_choices(context, TENX)
    values = atlas.values(TENX, "umi_count")
    mask = np.zeros(len(values), dtype=bool)
    mask[::7] = True
    found = column_summary(values, mask)
    assert found["mean"] == pytest.approx(values[mask].mean(), rel=1e-12)
    assert found["median"] == np.median(values[mask]) and found["n_measured"] == mask.sum()
    text = numeric_summary_text("umi_count", found)
    assert f"{np.median(values[mask]):.4g}" in text and "mean" in text
    missing = column_summary(np.array([1.0, np.nan, 3.0]))
    assert (missing["mean"], missing["n_missing"]) == (2.0, 1)


# ---------------------------------------------------------------------------------------------- browser
@pytest.mark.browser
def test_colouring_the_10x_umap_by_umi_count_in_a_browser(viewer):
    open_view(viewer, f"?dataset={quote(TENX)}&color_by=umi_count")
    wait_for_picture(viewer, "color_by=umi_count")
    viewer.wait_for_contains_text("#legend", "umi_count")
    assert "Umi count" in viewer.find_element("#color-by").text


# ---------------------------------------------------------------------------------------------- side by side
SPATIAL = (HUMAN, "HMBA-MERSCOPE-QM23.50.001-BG", XENIUM)


def test_the_side_by_side_maps_share_one_range_of_a_column(context, atlas):
    from callbacks.compare import MODE_SPECIES, legend_step as compare_legend
    from core.compare import compare_datasets, shared_column_range

    datasets = [d for d in compare_datasets(context) if d in SPATIAL]
    assert len(datasets) == 3
    ranges = [np.percentile(atlas.values(d, "total_counts"), [1, 99]) for d in datasets]
    shared = shared_column_range(context, compare_datasets(context), "total_counts")
    assert shared == (min(r[0] for r in ranges), max(r[1] for r in ranges))
    children = str(compare_legend(MODE_SPECIES, [], "total_counts", None, None, None, None, None, context))
    high = f"{shared[1]:,.0f}" if shared[1] >= 1000 else f"{shared[1]:.3g}"
    assert "total_counts" in children and f"≥ {high}" in children and "over the species shown" in children


def _maps_ranges(context, color_by, gene=None, vmin=None, vmax=None) -> set[tuple[float, float]]:
    """``(vmin, vmax)`` of the picture of every side-by-side map (read from its address), as the map card draws it."""
    from urllib.parse import parse_qs, urlsplit

    from callbacks.compare import MODE_SPECIES, slot_step
    from core.compare import compare_datasets

    ranges = set()
    for slot in range(len(compare_datasets(context))):
        figure, _, _ = slot_step(slot, MODE_SPECIES, [], color_by, gene, None, None, vmin, vmax, None,
                                 [{"width_px": 400, "height_px": 300}] * 3, None, context)
        query = parse_qs(urlsplit(figure["layout"]["images"][0]["source"]).query)
        ranges.add((float(query["vmin"][0]), float(query["vmax"][0])))
    return ranges


def _bar_ends(children) -> tuple[str, str]:
    """The texts at the ends of a legend's colour bar."""
    ticks = next(child for child in children if getattr(child, "className", "") == "colorbar-ticks")
    return ticks.children[0].children, ticks.children[-1].children


@pytest.mark.parametrize("color_by, gene", [("total_counts", None), ("gene", "DRD1")])
def test_with_the_species_side_by_side_the_left_legend_shows_the_maps_one_range(context, color_by, gene):
    from callbacks.compare import MODE_SPECIES
    from components.panels import _tick

    from core.compare import compare_datasets

    symbol = context.lookups.gene_symbol(HUMAN, gene) if gene else None
    (shared,) = _maps_ranges(context, color_by, symbol)  # the maps share one range

    def own_range(dataset):
        entry = context.catalog.get(dataset)
        return entry.numeric_columns[color_by] if gene is None else context.gene_range(dataset, symbol)

    # a species whose own range is not the shared one (the others' stretch it)
    dataset = next(d for d in compare_datasets(context)
                   if (_tick(own_range(d)[0]), _tick(own_range(d)[1])) != (_tick(shared[0]), _tick(shared[1])))
    own = own_range(dataset)
    section = next(iter(context.catalog.get(dataset).sections))
    children, _, info, low_hint, high_hint = legend_step(dataset, None, section, color_by, symbol, None, None, None,
                                                         context, mode=MODE_SPECIES)
    low, high = _bar_ends(children)
    assert (low.lstrip("≤ "), high.lstrip("≥ ")) == (_tick(shared[0]), _tick(shared[1]))
    assert "over the species shown" in info and "over the species shown" in str(children)
    digits = ".3g" if gene else ".4g"
    assert (low_hint, high_hint) == (f"{shared[0]:{digits}}", f"{shared[1]:{digits}}")
    # the dataset's own range is what the legend shows with the map alone
    alone, *_ = legend_step(dataset, None, section, color_by, symbol, None, None, None, context, mode="map")
    assert tuple(end.lstrip("≤≥ ") for end in _bar_ends(alone)) == (_tick(own[0]), _tick(own[1]))


def test_a_range_set_by_hand_for_a_column_colours_every_side_by_side_map_and_their_legend(context):
    from callbacks.compare import MODE_SPECIES, legend_step as compare_legend

    shared = context.catalog.get(HUMAN).numeric_columns["total_counts"]
    chosen = (round(shared[0] + 10.0), round(shared[0] + 0.5 * (shared[1] - shared[0])))
    assert _maps_ranges(context, "total_counts", None, *chosen) == {chosen}
    section = next(iter(context.catalog.get(HUMAN).sections))
    children, *_ = legend_step(HUMAN, None, section, "total_counts", None, None, *chosen, context, mode=MODE_SPECIES)
    low, high = _bar_ends(children)
    assert (low.lstrip("≤ "), high.lstrip("≥ ")) == (f"{chosen[0]:,}", f"{chosen[1]:,}")
    assert "range: set by hand" in str(children)
    below = str(compare_legend(MODE_SPECIES, [], "total_counts", None, None, None, *chosen, context))
    assert "range: set by hand" in below and f"≥ {chosen[1]:,}" in below  # the legend under the maps too
    assert _maps_ranges(context, "total_counts") != {chosen}  # without it, the shared default
    # a range no input box gives (a crafted request) is the shared default too, not an infinite picture range
    assert _maps_ranges(context, "total_counts", None, "-inf", "1e3") == _maps_ranges(context, "total_counts")
    # and the exported figure
    from core.figures import plan_comparison
    from core.requests import FigureOptions, PanelRequest
    from core.state import ViewState

    state = ViewState(dataset=HUMAN, slab_plane=context.catalog.get(HUMAN).sections[section].slab_plane,
                      section=section, color_by="total_counts", map_view="species", vmin=chosen[0], vmax=chosen[1])
    plan = plan_comparison(context, state, FigureOptions(fmt="png", width_in=16, height_in=6, dpi=100),
                           PanelRequest("species"))
    assert tuple(plan.grid.colorbar[1:3]) == chosen


def test_a_side_by_side_figure_of_a_column_has_the_shared_range_on_its_colour_bar(context):
    from core.compare import compare_datasets, shared_column_range
    from core.figures import plan_comparison
    from core.requests import FigureOptions, PanelRequest
    from core.state import ViewState

    entry = context.catalog.get(HUMAN)
    section = next(iter(entry.sections))
    state = ViewState(dataset=HUMAN, slab_plane=entry.sections[section].slab_plane, section=section,
                      color_by="total_counts", map_view="species")
    plan = plan_comparison(context, state, FigureOptions(fmt="png", width_in=16, height_in=6, dpi=100),
                           PanelRequest("species"))
    assert plan.grid.colorbar[1:3] == shared_column_range(context, compare_datasets(context), "total_counts")
    assert {v.state.vmin for v in plan.views if v.state.color_by == "total_counts"} == {plan.grid.colorbar[1]}


def test_a_range_given_to_the_picture_route_colours_a_column_over_it(context, client, atlas):
    entry = context.catalog.get(TENX)
    x0, x1, y0, y1 = entry.bounds
    top = float(np.max(atlas.values(TENX, "umi_count")))
    query = urlencode({"dataset": TENX, "color_by": "umi_count", "x0": x0, "x1": x1, "y0": y0, "y1": y1,
                       "w": 200, "h": 200, "vmin": top, "vmax": top + 1})
    response = client.get(f"/render/map.png?{query}")
    assert response.status_code == 200
    rgba = np.asarray(Image.open(io.BytesIO(response.data)).convert("RGBA"))
    drawn = {tuple(p) for p in np.unique(rgba[rgba[..., 3] > 0][:, :3], axis=0)}
    assert drawn == {tuple(cmap_lut("viridis")[0, :3])}  # every cell at or below vmin: the low end


def test_a_selections_summary_panel_gives_the_mean_and_median_of_a_column(context, atlas):
    import callbacks.selection as sel

    entry = context.catalog.get(TENX)
    x0, x1, y0, y1 = entry.bounds
    box = sel.selection_step({"range": {"x": [x0, (x0 + x1) / 2], "y": [y0, y1]}}, "map", TENX, None, None, None,
                             context)
    text, figure = sel.summary_step(box, "umi_count", TENX, None, None, sel.SelectedCells(context))
    _, inside, _ = sel.SelectedCells(context).get(box)  # the box's cells, as every selection reads them
    assert 0 < inside.sum() < len(inside)
    values = atlas.values(TENX, "umi_count")[inside]
    words = figure["layout"]["annotations"][0]["text"]
    assert f"{inside.sum():,} cells selected" in text
    assert f"mean {values.mean():.4g}, median {np.median(values):.4g}" in words


def test_the_range_boxes_colour_a_column_and_travel_in_the_address(context):
    from callbacks.map_view import map_figure_step
    from callbacks.navigation import resolve_view
    from components import ids
    from components.layout import range_label
    from core.state import to_query

    entry = context.catalog.get(TENX)
    assert range_label(entry, "umi_count") == "Range (umi_count)" and range_label(entry, "gene") == "Gene range (log2)"
    lookups = dict(gene_lookup=context.lookups.gene_symbol, term_lookup=context.lookups.term_level)
    state, notices = parse_query(f"?dataset={quote(TENX)}&color_by=umi_count&vmin=100&vmax=900", context.catalog,
                                 **lookups)
    assert (state.vmin, state.vmax, notices) == (100.0, 900.0, [])
    assert "vmin=100&vmax=900" in to_query(state)
    # the map's picture is drawn over the range set by hand, the legend says so
    figure, *_ = map_figure_step(None, state, None, True, context)
    assert "vmin=100&vmax=900" in figure["layout"]["images"][0]["source"]
    children, _, info, low_hint, _ = legend_step(TENX, None, None, "umi_count", None, None, "100", "900", context)
    assert "≤ 100" in str(children) and "≥ 900" in str(children) and "set by hand" in str(children)
    assert low_hint == f"{entry.numeric_columns['umi_count'][0]:.4g}"
    # a categorical colouring has no range: the reader drops it, and another colouring empties the boxes
    plain, _ = parse_query(f"?dataset={quote(TENX)}&color_by=Class&vmin=100&vmax=900", context.catalog, **lookups)
    assert (plain.vmin, plain.vmax) == (None, None) and "vmin" not in to_query(plain)
    values = {ids.DATASET: TENX, ids.COLOR_BY: "doublet_score", ids.GENE_VMIN: 100, ids.GENE_VMAX: 900}
    changed, _ = resolve_view(ids.COLOR_BY, values, context)
    assert (changed.color_by, changed.vmin, changed.vmax) == ("doublet_score", None, None)
