"""Figures of views with hundreds of categories: the cells stay the main part of the figure, the legend (in the
taxonomy's order, beside or in columns under the picture) overlaps neither the picture nor the title, the terms
left out are counted, scale bars keep off the tissue and a gallery fills its page.

Measured on the matplotlib figures the export saves (``core.figures.figure_of``), drawn from the demo store through
the same steps as the export route, with matplotlib's renderer.
"""
from __future__ import annotations

import numpy as np
import pytest

from core.context import ViewerContext
from core.figures import figure_of, figure_panel, plan_comparison
from core.requests import PanelRequest, figure_options
from core.state import ViewState
from rendering.figures import MAX_LEGEND_ENTRIES, build_figure, more_label
from rendering.raster import Viewport
from settings import Settings

WMB = "WMB-10X"
#: The figure of the issue: 2100 x 1500 px (7 x 5 in at 300 dpi).
SIZE = {"width": "2100", "height": "1500"}


@pytest.fixture(scope="module")
def demo(demo_store, tmp_path_factory):
    from data_layer import Atlas

    atlas = Atlas.open(demo_store)
    store = tmp_path_factory.mktemp("figure-legends")
    return ViewerContext.build(atlas, Settings(store=store, max_export_px=3000))


def _boxes(figure):
    """``(picture axes boxes, legend box, heading boxes, figure box)`` in display pixels, as drawn."""
    figure.draw_without_rendering()
    renderer = figure.canvas.get_renderer()
    pictures = [axes.get_window_extent(renderer) for axes in figure.axes if axes.images]
    legend = figure.legends[0].get_window_extent(renderer)
    headings = [text.get_window_extent(renderer) for text in figure.texts if text.get_text().strip()]
    if figure._suptitle is not None:
        headings.append(figure._suptitle.get_window_extent(renderer))
    return pictures, legend, headings, figure.bbox


def _legend_labels(figure) -> list[str]:
    return [text.get_text() for text in figure.legends[0].get_texts()]


def _area(box) -> float:
    return float(box.width * box.height)


def _inside(inner, outer, slack: float = 1.0) -> bool:
    return (inner.x0 >= outer.x0 - slack and inner.y0 >= outer.y0 - slack and inner.x1 <= outer.x1 + slack
            and inner.y1 <= outer.y1 + slack)


def _taxonomy_order(context, dataset: str, level: str, labels: list[str]) -> list[str]:
    rank = {name: i for i, name in enumerate(context.atlas.categories(dataset, level))}
    return sorted(labels, key=rank.__getitem__)


def test_a_umap_by_cluster_keeps_the_cells_the_main_part_with_the_legend_clear_of_them_and_the_title(demo):
    options = figure_options(SIZE, fmt="png", max_export_px=3000)
    state = ViewState(dataset=WMB, color_by="cluster")
    panel = figure_panel(demo, state, options)
    figure = figure_of([panel], options)
    assert tuple(figure.get_size_inches() * figure.dpi) == pytest.approx((2100, 1500))
    (picture,), legend, headings, page = _boxes(figure)
    assert not picture.overlaps(legend)
    assert headings and not any(legend.overlaps(h) or picture.overlaps(h) for h in headings)
    assert _inside(legend, page) and _inside(picture, page)
    assert _area(picture) > 1.5 * _area(legend)  # the cells, not the legend, are the figure
    assert _area(picture) > 0.3 * _area(page)

    present = [name for name, _, n in panel.legend if n]
    assert len(present) > 300  # hundreds of clusters in view
    labels = _legend_labels(figure)
    terms = [label for label in labels if label in set(present)]
    assert len(terms) >= 30
    assert terms == _taxonomy_order(demo, WMB, "cluster", terms)  # the taxonomy's order, not by count
    assert labels[len(terms)] == more_label(len(present) - len(terms))  # the rest counted, named as such
    counts = {name: n for name, _, n in panel.legend}
    assert min(counts[t] for t in terms) >= max(counts[p] for p in present if p not in set(terms))


def test_the_legend_limit_goes_to_400_and_a_small_limit_is_kept(demo):
    state = ViewState(dataset=WMB, color_by="cluster")
    assert MAX_LEGEND_ENTRIES == 400
    big = figure_options({"width": "30", "height": "20", "unit": "in", "dpi": "100", "legend": "400"}, fmt="svg",
                         max_export_px=3000)
    panel = figure_panel(demo, state, big)
    labels = _legend_labels(figure_of([panel], big))
    present = [name for name, _, n in panel.legend if n]
    assert len([label for label in labels if label in set(present)]) == min(400, len(present))
    small = figure_options({**SIZE, "legend": "12"}, fmt="svg", max_export_px=3000)
    labels = _legend_labels(figure_of([figure_panel(demo, state, small)], small))
    assert len(labels) == 13 and labels[-1] == more_label(len(present) - 12)


def test_a_gallery_by_cluster_fills_its_page_and_hangs_its_scale_bars_under_the_tissue(demo):
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    spatial = next(d for d in demo.atlas.datasets() if demo.atlas.info(d).kind == "spatial")
    options = figure_options({}, fmt="pdf", max_export_px=3000)  # the default page: 7 x 5 in
    state = ViewState(dataset=spatial, color_by="Cluster")
    request = PanelRequest("gallery")
    plan = plan_comparison(demo, state, options, request)
    panels = [figure_panel(demo, view.state, options, window=view.window, size_px=size, title=view.title,
                           with_legend=False) for view, size in zip(plan.views, plan.grid.raster_px(options.dpi))]
    figure = figure_of(panels, options, plan.grid)
    pictures, legend, headings, page = _boxes(figure)
    assert len(pictures) == len(plan.views) > 1
    assert not any(p.overlaps(legend) for p in pictures)
    assert not any(p.overlaps(h) or legend.overlaps(h) for p in pictures for h in headings)  # titles, heading
    union_w = max(p.x1 for p in pictures) - min(p.x0 for p in pictures)
    union_h = max(p.y1 for p in pictures) - min(p.y0 for p in pictures)
    assert union_w > 0.85 * page.width or union_h > 0.6 * page.height  # the panels fill the page's binding side
    assert sum(_area(p) for p in pictures) > 0.3 * _area(page)
    labels = _legend_labels(figure)
    assert labels == _taxonomy_order(demo, spatial, "Cluster", [x for x in labels if not x.startswith("+ ")]) + \
        [x for x in labels if x.startswith("+ ")]
    renderer = figure.canvas.get_renderer()
    bars = [(axes, artist) for axes in figure.axes for artist in axes.artists if isinstance(artist, AnchoredSizeBar)]
    assert len(bars) == len(pictures)
    for axes, bar in bars:
        box, picture = bar.get_window_extent(renderer), axes.get_window_extent(renderer)
        assert box.y1 <= picture.y0 + 1 and box.x1 <= picture.x1 + 1  # under the picture, at its right
        assert all(not box.overlaps(p) for p in pictures)  # off every panel's tissue


def test_a_single_figure_puts_its_scale_bar_in_the_corner_without_cells():
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    rgba = np.zeros((200, 300, 4), np.uint8)
    rgba[:, :] = (40, 90, 200, 255)  # tissue everywhere ...
    rgba[:60, :110] = 0  # ... but the upper left corner
    figure = build_figure(rgba, Viewport(0.0, 15.0, 0.0, 10.0, 300, 200), width_in=5, height_in=4, dpi=100)
    figure.draw_without_rendering()
    renderer = figure.canvas.get_renderer()
    axes = next(a for a in figure.axes if a.images)
    (bar,) = [artist for artist in axes.artists if isinstance(artist, AnchoredSizeBar)]
    box, picture = bar.get_window_extent(renderer), axes.get_window_extent(renderer)
    assert box.x1 < picture.x0 + 0.37 * picture.width and box.y0 > picture.y0 + 0.7 * picture.height


def test_a_long_title_wraps_inside_a_narrow_figure_beside_its_species():
    rgba = np.full((100, 100, 4), 255, np.uint8)
    title = "Consensus-WMB-integrated-taxonomy UMAP · cluster · 0002 CLA-EPd-CTX Car3 Glut_1"
    figure = build_figure(rgba, Viewport(0.0, 10.0, 0.0, 10.0, 100, 100), width_in=4, height_in=6, dpi=100,
                          title=title, species="Mouse", units="")
    figure.draw_without_rendering()
    renderer = figure.canvas.get_renderer()
    heading = figure._suptitle
    species = next(text for text in figure.texts if text.get_text() == "Mouse")
    assert "\n" in heading.get_text() and heading.get_text().replace("\n", " ") == title
    for text in (heading, species):
        assert _inside(text.get_window_extent(renderer), figure.bbox)
    assert not heading.get_window_extent(renderer).overlaps(species.get_window_extent(renderer))
