"""The marker-gene card (``callbacks.markers``) on the demo store, whose D1 medium spiny neurons carry planted
markers (DRD1 first, TAC1 and PDYN next by mean log2 difference): the dot plot of a highlighted term and of
a selection, the genes a user adds, and a click on a gene colouring the map by it."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from dash import no_update

from callbacks import markers
from core.context import ViewerContext
from callbacks.selection import SelectedCells, selection_step
from core.catalog import COLOR_BY_GENE
from settings import Settings

D1 = "STR D1 MSN"


@pytest.fixture(scope="module")
def demo(demo_store, tmp_path_factory):
    from data_layer import Atlas

    atlas = Atlas.open(demo_store)
    store = tmp_path_factory.mktemp("markers") / "store"
    store.mkdir()
    context = ViewerContext.build(atlas, Settings(store=store))
    dataset = next(d for d in atlas.datasets() if atlas.info(d).kind == "spatial")
    section = str(atlas.sections(dataset)["brain_section_label"].iloc[0])
    plane = context.catalog.get(dataset).sections[section].slab_plane
    return SimpleNamespace(atlas=atlas, context=context, dataset=dataset, section=section, plane=plane)


def dots(figure) -> dict:
    """``{(row, gene): (fraction, mean)}`` of a dot plot figure."""
    trace = figure["data"][0]
    return {(y, x): (f, m) for x, y, f, m in zip(trace["x"], trace["y"], trace["marker"]["size"],
                                                 trace["marker"]["color"])}


def test_a_highlighted_d1_msn_gets_drd1_as_its_top_marker_and_its_siblings_as_rows(demo):
    figure, title, info, shown = markers.markers_step(None, {"level": "Subclass", "name": D1}, None, None,
                                                      demo.dataset, demo.plane, demo.section,
                                                      SelectedCells(demo.context))
    genes = figure["layout"]["xaxis"]["categoryarray"]
    rows = figure["layout"]["yaxis"]["categoryarray"]
    assert genes[0] == "DRD1" and "TAC1" in genes[:3]  # the demo's planted D1 markers
    assert rows[0] == D1 and "STR D2 MSN" in rows  # siblings under the same parent
    table = dots(figure)
    assert table[(D1, "DRD1")][1] > 4 * table[("STR D2 MSN", "DRD1")][1]
    assert table[(D1, "DRD1")][0] > 0.75  # most D1 MSNs express DRD1 (a spatial panel misses some)
    assert shown == {"dataset": demo.dataset, "genes": genes}
    assert title == f"of Subclass {D1}" and "Welch's t-test" in info
    drd1 = next(t for t, x, y in zip(figure["data"][0]["text"], figure["data"][0]["x"], figure["data"][0]["y"])
                if x == "DRD1" and y == D1)
    assert "Welch t" in drd1 and "adjusted p" in drd1  # the test against the rest, on the term's top genes


def test_a_selection_of_d1_msns_on_the_umap_ranks_drd1_in_its_top_markers(demo):
    umap = demo.context.umap_dataset(demo.dataset)
    cells = demo.atlas.cells(umap)
    d1 = cells[cells["Subclass"] == D1]
    # the UMAP is continuous: a box on one stretch of the D1 branch (its commonest cluster), not over the
    # whole branch, whose bounding box also holds other MSNs
    d1 = d1[d1["Cluster"] == d1["Cluster"].value_counts().index[0]]
    x0, x1 = np.percentile(d1["x"], [25, 75])
    y0, y1 = np.percentile(d1["y"], [25, 75])
    store = selection_step({"range": {"x": [x0, x1], "y": [y0, y1]}}, "umap", demo.dataset, demo.plane,
                           demo.section, None, demo.context)
    figure, title, info, shown = markers.markers_step(store, None, None, "Subclass", demo.dataset, demo.plane,
                                                      demo.section, SelectedCells(demo.context))
    genes = figure["layout"]["xaxis"]["categoryarray"]
    assert genes[0] == "DRD1"  # the top marker of a box of D1 MSNs
    rows = figure["layout"]["yaxis"]["categoryarray"]
    assert rows[0].startswith("Selection (") and rows[1] == "Rest" and D1 in rows
    table = dots(figure)
    assert table[(rows[0], "DRD1")][1] > table[("Rest", "DRD1")][1] + 5
    assert "computed in" in info and umap in title


def test_a_map_selection_compares_its_cells_with_the_rest_of_the_section(demo):
    cells = demo.atlas.cells(demo.dataset, section=demo.section)
    cx, cy = float(np.median(cells["x"])), float(np.median(cells["y"]))
    store = selection_step({"range": {"x": [cx - 1, cx + 1], "y": [cy - 1, cy + 1]}}, "map", demo.dataset,
                           demo.plane, demo.section, None, demo.context)
    figure, _, info, shown = markers.markers_step(store, None, None, "Subclass", demo.dataset, demo.plane,
                                                  demo.section, SelectedCells(demo.context))
    _, mask, _ = SelectedCells(demo.context).get(store)
    n_selected = int(mask.sum())
    assert figure["layout"]["yaxis"]["categoryarray"][0] == f"Selection ({n_selected:,})"
    assert f"{n_selected:,} selected cells against the" in info and "section" in info
    assert len(shown["genes"]) == markers.TOP_GENES


def test_genes_the_user_adds_become_columns_and_unknown_ones_are_named(demo):
    figure, _, info, shown = markers.markers_step(None, {"level": "Subclass", "name": D1}, ["penk", "NOTAGENE"],
                                                  None, demo.dataset, demo.plane, demo.section,
                                                  SelectedCells(demo.context))
    genes = figure["layout"]["xaxis"]["categoryarray"]
    assert genes[-1] == "PENK" and "NOTAGENE" not in genes
    assert "NOTAGENE" in info


def test_no_term_and_no_selection_gives_a_hint_not_a_blank_plot(demo):
    figure, _, _, shown = markers.markers_step(None, None, None, None, demo.dataset, demo.plane, demo.section,
                                               SelectedCells(demo.context))
    assert figure["layout"]["annotations"][0]["text"] == "Highlight a term or select cells"
    assert shown is None


def test_clicking_a_gene_colours_the_map_by_it(demo):
    click = {"points": [{"customdata": "DRD1", "x": "DRD1"}]}
    value, options, color_by, note = markers.gene_clicked(click, demo.dataset, "Subclass", None, demo.context)
    assert value == "DRD1" and options[0]["value"] == "DRD1"
    assert color_by is no_update and note is no_update  # the gene box's rules colour by the new gene
    # the gene box already holds it: only the colour-by changes
    value, _, color_by, _ = markers.gene_clicked(click, demo.dataset, "Subclass", "DRD1", demo.context)
    assert value is no_update and color_by == COLOR_BY_GENE


def test_clicking_a_gene_the_map_does_not_measure_says_so(demo):
    umap = demo.context.umap_dataset(demo.dataset)
    spatial_genes = set(demo.atlas.genes(demo.dataset)["gene_symbol"])
    only_10x = next(g for g in demo.atlas.genes(umap)["gene_symbol"] if g not in spatial_genes)
    value, _, _, note = markers.gene_clicked({"points": [{"customdata": only_10x}]}, demo.dataset, "Subclass",
                                             None, demo.context)
    assert value is no_update and only_10x in note


def test_the_add_genes_box_completes_in_the_markers_dataset(demo):
    options = markers.gene_choices("DRD", None, demo.dataset, ["PENK"], demo.context)
    values = [o["value"] for o in options]
    assert "DRD1" in values and "PENK" in values
