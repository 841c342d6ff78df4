"""The page's partial plotly.js bundle: the version Dash's own full bundle has, with every trace type the page's
figures use, and in a real browser the only plotly.js the page downloads."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from app import HERE, PLOTLY_BUNDLE
from browser_helpers import atlas, open_view, store, viewer, wait_for_picture  # noqa: F401  (fixtures)

BUNDLE = HERE / "assets" / PLOTLY_BUNDLE


def bundle_version() -> str:
    head = BUNDLE.read_text(encoding="utf-8", errors="replace")[:400]
    match = re.search(r"plotly\.js \(basic - minified\) v(\d+\.\d+\.\d+)", head)
    assert match, head
    return match.group(1)


def test_the_bundle_has_the_plotly_js_version_dash_ships():
    from plotly.offline import get_plotlyjs_version

    assert bundle_version() == get_plotlyjs_version()


def test_the_page_figures_use_only_the_bundles_trace_types():
    """Every trace type written by the page's figure builders is one of the basic bundle's (scatter, bar, pie)."""
    used = set()
    for folder in ("components", "callbacks", "core"):
        for path in (HERE / folder).glob("*.py"):
            used |= set(re.findall(r"[\"']type[\"']\s*:\s*[\"'](\w+)[\"']", path.read_text()))
    not_traces = {"category", "line", "rect", "path", "circle", "linear", "log", "date", "-",  # axes and shapes
                  "FeatureCollection", "Feature", "Polygon", "MultiPolygon", "LineString", "MultiLineString",
                  "Point", "GeometryCollection"}  # GeoJSON of the region outlines
    traces = used - not_traces
    assert traces and traces <= {"scatter", "bar", "pie"}, traces


@pytest.mark.browser
def test_the_page_loads_the_partial_bundle_and_never_the_full_one(viewer):
    open_view(viewer)
    wait_for_picture(viewer, "color_by=")
    plotly = viewer.driver.execute_script(
        "return {version: window.Plotly.version, traces: Object.keys(window.Plotly.PlotSchema.get().traces),"
        " scripts: performance.getEntriesByType('resource').map(function (e) { return e.name; })"
        "   .filter(function (n) { return n.indexOf('plotly') >= 0; })};")
    assert sorted(plotly["traces"]) == ["bar", "pie", "scatter"]
    assert any(PLOTLY_BUNDLE in name for name in plotly["scripts"])
    assert not any("package_data/plotly.min.js" in name for name in plotly["scripts"]), plotly["scripts"]

