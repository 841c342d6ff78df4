"""The A-versus-B comparison of the marker card (``callbacks.markers``) and its CSV download
(``GET /export/markers.csv``, ``server.export``) on the demo store, whose D1 medium spiny neurons carry DRD1 and
D2 ones PENK: the pickers' choices, the dot plot, the link, and the served table against scipy."""
from __future__ import annotations

import io
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from callbacks import markers
from callbacks.selection import SelectedCells, selection_step
from core.context import ViewerContext
from settings import Settings

D1, D2 = "STR D1 MSN", "STR D2 MSN"


@pytest.fixture(scope="module")
def demo(demo_store, tmp_path_factory):
    from data_layer import Atlas

    atlas = Atlas.open(demo_store)
    store = tmp_path_factory.mktemp("compare") / "store"
    store.mkdir()
    context = ViewerContext.build(atlas, Settings(store=store))
    dataset = next(d for d in atlas.datasets() if atlas.info(d).kind == "spatial")
    section = str(atlas.sections(dataset)["brain_section_label"].iloc[0])
    plane = context.catalog.get(dataset).sections[section].slab_plane
    return SimpleNamespace(atlas=atlas, context=context, dataset=dataset, section=section, plane=plane,
                           selected=SelectedCells(context))


@pytest.fixture(scope="module")
def client(demo):
    from flask import Flask

    from server.export import export_blueprint

    app = Flask(__name__)
    app.register_blueprint(export_blueprint(demo.context))
    return app.test_client()


def step(demo, a, b, selection=None, added=None, level="Subclass"):
    return markers.markers_step(selection, None, added, level, demo.dataset, demo.plane, demo.section, demo.selected,
                                a=a, b=b)


def test_the_pickers_offer_the_levels_terms_the_selection_and_the_same_term_in_other_species(demo):
    a_options, b_options, a, b = markers.comparison_choices("Subclass", None, D1, None, demo.dataset, demo.plane,
                                                            demo.section, demo.selected)
    values = [o["value"] for o in a_options]
    assert D1 in values and D2 in values and markers.SELECTION not in values and a == D1 and b is None
    other = [o for o in b_options if o["value"].startswith(markers.SAME_TERM_IN)]
    assert {o["label"] for o in other} == {f"{D1} in Macaque", f"{D1} in Marmoset"}
    # a level without the chosen term clears it
    _, _, a, _ = markers.comparison_choices("Class", None, D1, D2, demo.dataset, demo.plane, demo.section,
                                            demo.selected)
    assert a is None


def test_d1_against_d2_puts_drd1_and_penk_at_opposite_ends_of_the_dot_plot(demo):
    figure, title, info, shown = step(demo, D1, D2, added=["sst"])
    genes = figure["layout"]["xaxis"]["categoryarray"]
    assert figure["layout"]["yaxis"]["categoryarray"] == [D1, D2]
    half = markers.COMPARE_GENES
    assert genes[0] == "DRD1" and "PENK" in genes[half:2 * half] and genes[-1] == "SST"
    dots = {(y, x): m for x, y, m in zip(figure["data"][0]["x"], figure["data"][0]["y"],
                                         figure["data"][0]["marker"]["color"])}
    assert dots[(D1, "DRD1")] > dots[(D2, "DRD1")] + 8 and dots[(D2, "PENK")] > dots[(D1, "PENK")] + 8
    hover = next(t for t, x, y in zip(figure["data"][0]["text"], figure["data"][0]["x"], figure["data"][0]["y"])
                 if x == "DRD1" and y == D1)
    assert "Welch t" in hover and "adjusted p" in hover
    assert title == f"{D1} vs {D2}" and "Benjamini-Hochberg" in info
    assert shown == {"dataset": demo.dataset, "genes": genes}


def test_one_pick_alone_keeps_the_usual_markers(demo):
    figure, title, _, _ = step(demo, D1, None)
    assert figure["layout"]["annotations"][0]["text"] == "Highlight a term or select cells"
    assert markers.comparison_link_step(D1, None, "Subclass", None, demo.dataset, demo.plane, demo.section,
                                        demo.context) == (None, True)


def test_the_link_serves_every_genes_statistics_as_scipy_computes_them(demo, client):
    href, hidden = markers.comparison_link_step(D1, D2, "Subclass", None, demo.dataset, demo.plane, demo.section,
                                                demo.context)
    assert not hidden and urlsplit(href).path == "/export/markers.csv"
    response = client.get(href)
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    table = pd.read_csv(io.StringIO(response.get_data(as_text=True)))
    assert list(table.columns) == ["gene", "mean_A", "mean_B", "frac_A", "frac_B", "mean_diff", "t", "p", "p_adj"]
    assert table["gene"].iloc[0] == "DRD1" and table.set_index("gene").loc["PENK", "mean_diff"] < -8
    assert len(table) == demo.atlas.expression_matrix(demo.dataset).n_genes
    cells = demo.atlas.cells(demo.dataset)
    a = (cells["Subclass"] == D1).to_numpy()
    b = (cells["Subclass"] == D2).to_numpy()
    for gene in ("DRD1", "PENK", "SST", table["gene"].iloc[len(table) // 2]):
        values = demo.atlas.gene(demo.dataset, gene).astype(np.float64)
        x, y = values[a], values[b]
        res = stats.ttest_ind(x[np.isfinite(x)], y[np.isfinite(y)], equal_var=False)
        row = table.set_index("gene").loc[gene]
        assert row["t"] == pytest.approx(res.statistic, rel=1e-5)  # the CSV keeps 6 significant digits
        assert row["p"] == pytest.approx(res.pvalue, rel=1e-5, abs=1e-300)


def test_a_selection_against_a_term_goes_through_the_link_with_the_selection(demo, client):
    cells = demo.atlas.cells(demo.dataset, section=demo.section)
    cx, cy = float(np.median(cells["x"])), float(np.median(cells["y"]))
    store = selection_step({"range": {"x": [cx - 1.5, cx + 1.5], "y": [cy - 1.5, cy + 1.5]}}, "map", demo.dataset,
                           demo.plane, demo.section, None, demo.context)
    a_options, _, _, _ = markers.comparison_choices("Subclass", store, None, None, demo.dataset, demo.plane,
                                                    demo.section, demo.selected)
    assert a_options[0]["value"] == markers.SELECTION and a_options[0]["label"].startswith("Selection (")
    figure, title, info, _ = step(demo, markers.SELECTION, D2, selection=store)
    assert figure["layout"]["yaxis"]["categoryarray"] == ["Selection", D2] and title == f"Selection vs {D2}"
    href, _ = markers.comparison_link_step(markers.SELECTION, D2, "Subclass", store, demo.dataset, demo.plane,
                                           demo.section, demo.context)
    query = parse_qs(urlsplit(href).query)
    assert query["a"] == [markers.SELECTION] and query["section"] == [demo.section] and "selection" in query
    table = pd.read_csv(io.StringIO(client.get(href).get_data(as_text=True)))
    _, mask, _ = demo.selected.get(store)
    values = demo.atlas.gene(demo.dataset, "PENK", section=demo.section)[mask]
    assert table.set_index("gene").loc["PENK", "mean_A"] == pytest.approx(np.nanmean(values), rel=1e-5)


@pytest.mark.parametrize("query, parameter", [
    ("level=Subclass&a=STR+D1+MSN&b=STR+D2+MSN", "dataset"),
    ("dataset={ds}&level=Subclass&a=STR+D1+MSN&b=STR+D9+MSN", "b"),
    ("dataset={ds}&level=Nope&a=STR+D1+MSN&b=STR+D2+MSN", "level"),
    ("dataset={ds}&level=Subclass&a=%40selection&b=STR+D2+MSN", "selection"),
    ("dataset={ds}&level=Subclass&a=STR+D1+MSN&b=STR+D1+MSN", "b"),
    ("dataset={ds}&level=Subclass&a=STR+D1+MSN&b=STR+D1+MSN&b_dataset=nowhere", "b_dataset"),
    ("dataset={ds}&level=Subclass&a=STR+D1+MSN&b=STR+D2+MSN&bogus=1", "bogus"),
])
def test_a_bad_download_request_is_a_400_naming_the_parameter(demo, client, query, parameter):
    response = client.get("/export/markers.csv?" + query.format(ds=demo.dataset))
    assert response.status_code == 400
    assert response.get_json()["parameter"] == parameter
