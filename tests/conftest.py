"""Shared fixtures: the demo cache and store (built once per test session) and browser options."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

#: A browser test that times out waiting for the page is run again, at most this many times (pytest-rerunfailures
#: reports each rerun as ``R``): on a loaded machine a headless Chromium sometimes misses one of the page's events.
#: Any other failure, an assertion or a console error, fails at once.
BROWSER_RERUNS = 2


def pytest_collection_modifyitems(config, items):
    """Browser tests get :data:`BROWSER_RERUNS` reruns, for timeouts only."""
    for item in items:
        if item.get_closest_marker("browser") is not None and item.get_closest_marker("flaky") is None:
            item.add_marker(pytest.mark.flaky(reruns=BROWSER_RERUNS, only_rerun=["TimeoutException"]))


def pytest_setup_options():
    """Options for dash_duo's Chromium: headless, and no background traffic (the network is closed)."""
    from selenium.webdriver.chrome.options import Options

    options = Options()
    if CHROMIUM:
        options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--no-first-run",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    return options


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory) -> Path:
    """The synthetic demo ABC cache (``write_demo_cache``, seed 0), written once per test session."""
    from data_layer.demo import write_demo_cache

    cache = tmp_path_factory.mktemp("demo") / "cache"
    write_demo_cache(cache, seed=0, scale="demo", progress=False)
    return cache


@pytest.fixture(scope="session")
def demo_store(demo_cache, tmp_path_factory) -> Path:
    """The demo cache prepared into a store (``prepare_store``), once per test session; treat as read-only."""
    from data_layer.prepare import prepare_store

    store = tmp_path_factory.mktemp("demo_store") / "store"
    prepare_store(demo_cache, store, progress=False)
    return store
