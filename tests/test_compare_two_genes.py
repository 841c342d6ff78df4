"""Two genes at once on the demo store: the picture route draws ``color_by=two_genes`` with the blend of
:func:`rendering.blend.render_two_genes` (first gene magenta, second green, white where both are high), the
"both above thresholds" mode colours only the cells above both, and the controls give the route its parameters."""
from __future__ import annotations

import io
from types import SimpleNamespace
from urllib.parse import urlencode

import numpy as np
import pytest
from dash import no_update
from PIL import Image

from app import create_app
from callbacks import two_genes
from core.context import ViewerContext
from components import ids
from core.catalog import COLOR_BY_TWO_GENES
from core.state import parse_query, to_query
from core.viewport import padded
from rendering.blend import THEMES, blend_table
from rendering.colors import to_rgba
from settings import Settings

GENE_A, GENE_B = "DRD1", "PENK"  # D1 and D2 medium spiny neurons: few cells express both


@pytest.fixture(scope="module")
def demo(demo_store, tmp_path_factory):
    from data_layer import Atlas

    atlas = Atlas.open(demo_store)
    store = tmp_path_factory.mktemp("two-genes") / "store"
    store.mkdir()
    settings = Settings(store=store)
    context = ViewerContext.build(atlas, settings)
    dataset = next(d for d in atlas.datasets() if atlas.info(d).kind == "spatial")
    section = str(atlas.sections(dataset)["brain_section_label"].iloc[0])
    client = create_app(settings, atlas=atlas).server.test_client()
    return SimpleNamespace(atlas=atlas, context=context, dataset=dataset, section=section, client=client)


def picture(demo, **more) -> np.ndarray:
    bounds = demo.context.catalog.get(demo.dataset).sections[demo.section].bounds
    window = padded(bounds)
    query = {"dataset": demo.dataset, "section": demo.section, "color_by": COLOR_BY_TWO_GENES, "gene": GENE_A,
             "gene2": GENE_B, "x0": window.x0, "x1": window.x1, "y0": window.y0, "y1": window.y1, "w": 200,
             "h": 400, **more}
    response = demo.client.get("/render/map.png?" + urlencode(query))
    assert response.status_code == 200, response.data[:300]
    return np.asarray(Image.open(io.BytesIO(response.data)).convert("RGBA"))


def colours(image: np.ndarray) -> set[tuple[int, ...]]:
    return {tuple(int(v) for v in px) for px in image.reshape(-1, 4)}


def test_a_blend_picture_uses_only_the_blend_table_with_pure_channels_and_white_where_both_are_high(demo):
    image = picture(demo)
    table = {tuple(int(v) for v in c) for c in blend_table("dark").reshape(-1, 4)}
    theme = THEMES["dark"]
    allowed = table | {tuple(to_rgba(theme.nan)), tuple(to_rgba(theme.background))}
    seen = colours(image)
    assert seen <= allowed
    # D1 cells in magenta, D2 cells in green: both channels appear on their own
    table_arr = blend_table("dark")
    n = table_arr.shape[0]
    magenta_side = {tuple(int(v) for v in table_arr[i, 0]) for i in range(n // 2, n)}
    green_side = {tuple(int(v) for v in table_arr[0, j]) for j in range(n // 2, n)}
    assert seen & magenta_side and seen & green_side


def test_both_above_thresholds_keeps_only_cells_over_both_in_colour(demo):
    theme = THEMES["dark"]
    grey = {tuple(to_rgba(theme.dimmed)), tuple(to_rgba(theme.nan)), tuple(to_rgba(theme.background))}
    values_a = demo.atlas.gene(demo.dataset, GENE_A, section=demo.section)
    values_b = demo.atlas.gene(demo.dataset, GENE_B, section=demo.section)
    above = float(np.nanmax(values_a)) + 1
    nothing = picture(demo, blend="both", ta=above, tb=0)
    assert colours(nothing) <= grey  # no cell is above a threshold over the gene's maximum
    both = (values_a > 0) & (values_b > 0)
    some = picture(demo, blend="both", ta=0, tb=0)
    assert both.any()  # the demo has cells expressing both
    assert colours(some) - grey  # ...and they keep their blend colour
    blend = picture(demo)
    assert len(colours(some) - grey) < len(colours(blend) - grey)  # fewer colours than the full blend


def test_the_route_matches_the_rendering_function(demo):
    from core.render import render_rgba
    from core.picture import parse_picture_args

    bounds = padded(demo.context.catalog.get(demo.dataset).sections[demo.section].bounds)
    args = {"dataset": demo.dataset, "section": demo.section, "color_by": COLOR_BY_TWO_GENES, "gene": GENE_A,
            "gene2": GENE_B, "blend": "both", "ta": "1", "tb": "0.5", "x0": str(bounds.x0), "x1": str(bounds.x1),
            "y0": str(bounds.y0), "y1": str(bounds.y1), "w": "200", "h": "400"}
    request = parse_picture_args(args, demo.context.catalog, max_px=4000,
                                 gene_lookup=demo.context.lookups.gene_symbol,
                                 term_lookup=demo.context.lookups.term_level)
    assert (request.gene, request.gene2, request.blend_mode, request.threshold_a, request.threshold_b) == (
        GENE_A, GENE_B, "both", 1.0, 0.5)
    assert np.array_equal(render_rgba(demo.context, request), picture(demo, blend="both", ta=1, tb=0.5))


def test_a_two_gene_picture_without_its_second_gene_is_refused_naming_it(demo):
    bounds = padded(demo.context.catalog.get(demo.dataset).sections[demo.section].bounds)
    query = {"dataset": demo.dataset, "section": demo.section, "color_by": COLOR_BY_TWO_GENES, "gene": GENE_A,
             "x0": bounds.x0, "x1": bounds.x1, "y0": bounds.y0, "y1": bounds.y1, "w": 100, "h": 100}
    response = demo.client.get("/render/map.png?" + urlencode(query))
    assert response.status_code == 400 and b"gene2" in response.data
    response = demo.client.get("/render/map.png?" + urlencode({**query, "gene2": "NOTAGENE"}))
    assert response.status_code == 400 and b"gene2" in response.data


def test_the_controls_give_the_picture_its_second_gene_mode_and_thresholds(demo):
    assert two_genes.params_step(COLOR_BY_TWO_GENES, demo.dataset, "penk", "blend", 1, 2, None, demo.context) == {
        "gene2": GENE_B, "blend_mode": "blend", "threshold_a": None, "threshold_b": None}
    params = two_genes.params_step(COLOR_BY_TWO_GENES, demo.dataset, GENE_B, "both", "1.5", None, None,
                                   demo.context)
    assert params == {"gene2": GENE_B, "blend_mode": "both", "threshold_a": 1.5, "threshold_b": 0.0}
    assert two_genes.params_step(COLOR_BY_TWO_GENES, demo.dataset, GENE_B, "both", "1.5", None, params,
                                 demo.context) is no_update
    assert two_genes.params_step("Subclass", demo.dataset, GENE_B, "both", 1, 1, params, demo.context) is None


def test_the_second_gene_defaults_to_another_gene_and_is_kept_while_measured(demo):
    value, options, mode, _, _ = two_genes.second_gene_step(ids.COLOR_BY, "", COLOR_BY_TWO_GENES, demo.dataset,
                                                            GENE_A, None, demo.context)
    assert value and value != GENE_A and options[0]["value"] == value and mode is no_update
    value, _, _, _, _ = two_genes.second_gene_step(ids.DATASET, "", COLOR_BY_TWO_GENES, demo.dataset, GENE_A,
                                                   GENE_B.lower(), demo.context)
    assert value == GENE_B
    assert two_genes.second_gene_step(ids.COLOR_BY, "", "Subclass", demo.dataset, GENE_A, None,
                                      demo.context) == (no_update,) * 5


def test_the_address_sets_the_second_gene_mode_and_thresholds(demo):
    search = (f"?dataset={demo.dataset}&color_by=two_genes&gene={GENE_A}&gene2={GENE_B.lower()}&blend=both"
              "&ta=1.5&tb=0.25")
    assert two_genes.second_gene_step(ids.URL, search, COLOR_BY_TWO_GENES, demo.dataset, GENE_A, None,
                                      demo.context)[::2] == (GENE_B, "both", 0.25)
    state, notices = parse_query(search, demo.context.catalog, gene_lookup=demo.context.lookups.gene_symbol,
                                 term_lookup=demo.context.lookups.term_level)
    assert notices == [] and (state.gene2, state.blend_mode, state.threshold_a, state.threshold_b) == (
        GENE_B, "both", 1.5, 0.25)
    assert to_query(state).endswith(f"gene={GENE_A}&gene2={GENE_B}&blend=both&ta=1.5&tb=0.25")


def test_an_unknown_second_gene_in_the_address_shows_the_first_gene_alone_with_a_notice(demo):
    state, notices = parse_query(f"?dataset={demo.dataset}&color_by=two_genes&gene={GENE_A}&gene2=NOTAGENE",
                                 demo.context.catalog, gene_lookup=demo.context.lookups.gene_symbol,
                                 term_lookup=demo.context.lookups.term_level)
    assert state.color_by == "gene" and state.gene == GENE_A
    assert notices[0].parameter == "gene2" and "NOTAGENE" in notices[0]


def test_a_two_gene_view_exports_as_a_figure_and_its_cells_carry_both_genes(demo):
    query = urlencode({"dataset": demo.dataset, "section": demo.section, "color_by": COLOR_BY_TWO_GENES,
                       "gene": GENE_A, "gene2": GENE_B, "blend": "both", "ta": 1})
    figure = demo.client.get("/export/figure.png?" + query + "&width=600&height=400&dpi=100")
    assert figure.status_code == 200 and figure.data[:4] == b"\x89PNG"
    cells = demo.client.get("/export/cells.csv?" + query + "&selection=15,16,70,71")
    assert cells.status_code == 200
    assert cells.data.split(b"\n")[0].endswith(f",{GENE_A},{GENE_B}".encode())
    missing = demo.client.get("/export/figure.png?" + urlencode({"dataset": demo.dataset,
                                                                 "color_by": COLOR_BY_TWO_GENES, "gene": GENE_A}))
    assert missing.status_code == 400 and missing.get_json()["parameter"] == "gene2"


def test_the_legend_shows_the_two_dimensional_key_with_both_ranges(demo):
    params = {"gene2": GENE_B, "blend_mode": "both", "threshold_a": 1.0, "threshold_b": 2.0}
    legend = two_genes.legend_step(params, COLOR_BY_TWO_GENES, demo.dataset, GENE_A, demo.context)
    text = str(legend)
    assert "data:image/png;base64," in text and GENE_A in text and GENE_B in text
    high_a = demo.context.gene_range(demo.dataset, GENE_A)[1]
    assert f"{high_a:.3g}" in text and "> 1" in text and "> 2" in text
    assert two_genes.legend_step(params, "Subclass", demo.dataset, GENE_A, demo.context) is no_update


def test_the_two_gene_map_picture_fills_the_plot_and_a_colouring_keeps_to_the_cells(demo):
    """On a wide plot a narrow section's blend (on black) covers the whole plot area, so no white strips frame
    it; a categorical picture stays on the cells' frame."""
    from callbacks.map_view import map_figure_step
    from core.state import ViewState
    from core.viewport import fit_aspect

    size = {"width_px": 1200, "height_px": 500}
    base = ViewState(dataset=demo.dataset, section=demo.section, gene=GENE_A)
    frame = demo.context.frame(base)
    shown = fit_aspect(frame, 1200, 500)
    for color_by, extra, covers in ((COLOR_BY_TWO_GENES, {"gene2": GENE_B}, shown), ("Subclass", {}, frame)):
        figure, *_ = map_figure_step(None, base.replace(color_by=color_by), size, False, demo.context, extra=extra)
        image = figure["layout"]["images"][0]
        x0, y_top, width, height = image["x"], image["y"], image["sizex"], image["sizey"]
        assert x0 == pytest.approx(covers.x0, abs=1e-3) and x0 + width == pytest.approx(covers.x1, abs=1e-3)
        assert height == pytest.approx(covers.height, abs=1e-3)
