"""A re-prepare while serving: the running server notices the new catalog (one stat every few seconds), new
requests get the new version while running ones finish on theirs, and the old version's folders are let go and
removed once no request uses them; nothing answers 500 during the switch."""
import csv
import io
import json
import sys
import threading

import pandas as pd
import pytest
from selenium.webdriver.support.ui import WebDriverWait

from abc_builders import MARMOSET, build_quirky_cache
from core.context import LiveContext, ViewerContext
from data_layer import Atlas
from data_layer.prepare import prepare_store
from data_layer.store import CATALOG, UNITS, catalog_stamp
from settings import Settings


def annotate_everything_as_str(quirky):
    """Change one value of the sources: every annotated marmoset cell in the STR region; return those cells."""
    path = next((quirky.root / "metadata" / MARMOSET).rglob("cell_anatomical_annotations.csv"))
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    table["parcellation_term_symbol"] = "STR"
    quirky.builder.csv(MARMOSET, "cell_anatomical_annotations", table, version=path.parent.name)
    quirky.builder.write_manifest()
    return set(table["cell_label"])


def marmoset_unit(store):
    return json.loads((store / CATALOG).read_text())["datasets"][MARMOSET]["unit"]


@pytest.fixture
def quirky_store(tmp_path):
    quirky = build_quirky_cache(tmp_path / "cache", n_per_section=12)
    store = tmp_path / "store"
    prepare_store(quirky.root, store)
    return quirky, store


def annotated_regions(atlas, labels):
    cells = atlas.cells(MARMOSET)
    return set(cells.loc[cells["cell_label"].astype(str).isin(labels), "region"])


def test_a_request_keeps_its_version_while_new_ones_get_the_new_and_the_old_is_released_after(quirky_store):
    quirky, store = quirky_store
    now = [0.0]
    released = []
    live = LiveContext(ViewerContext.build(Atlas.open(store), Settings(store=store)), opener=Atlas.open,
                       check_every_s=5, stamp=catalog_stamp, on_release=released.append, clock=lambda: now[0])
    first = live.current
    running = live.pin()  # a request that started before the re-prepare
    labels = annotate_everything_as_str(quirky)
    prepare_store(quirky.root, store)

    assert not live.refresh()  # not yet: the catalog is looked at every 5 s
    now[0] += 5
    results = {}

    def new_request():  # another thread, as gunicorn's
        token = live.pin()
        results["new"] = annotated_regions(live.atlas, labels)
        live.unpin(token)

    assert live.refresh() and live.current is not first
    thread = threading.Thread(target=new_request)
    thread.start()
    thread.join(30)
    assert results["new"] == {"STR"}
    assert live.atlas is first.atlas and annotated_regions(live.atlas, labels) != {"STR"}  # the running request
    assert released == []  # still in use
    live.unpin(running)
    assert released == [first]


def test_a_store_that_changes_into_something_unreadable_keeps_the_working_version(quirky_store, caplog):
    _, store = quirky_store
    live = LiveContext(ViewerContext.build(Atlas.open(store), Settings(store=store)), opener=Atlas.open,
                       check_every_s=1, stamp=catalog_stamp)
    first = live.current
    (store / CATALOG).write_text("{ not json")
    assert not live.refresh(force=True)
    assert live.current is first and "cannot be opened" in caplog.text


def test_with_checks_off_the_server_keeps_the_version_it_opened(quirky_store):
    quirky, store = quirky_store
    live = LiveContext(ViewerContext.build(Atlas.open(store), Settings(store=store)), opener=Atlas.open,
                       check_every_s=0, stamp=catalog_stamp)
    first = live.current
    annotate_everything_as_str(quirky)
    prepare_store(quirky.root, store)
    assert not live.refresh() and live.current is first


@pytest.mark.slow
def test_through_gunicorn_a_reprepare_is_served_without_restart_and_without_a_500(quirky_store, tmp_path):
    import requests

    from bench.load_test import build_scenario
    from bench.servers import GunicornServer

    quirky, store = quirky_store
    old_unit = marmoset_unit(store)
    env = {"ATLAS_VIEWER_STORE": str(store), "ATLAS_VIEWER_WORKERS": "2", "ATLAS_VIEWER_THREADS": "2",
           "ATLAS_VIEWER_CACHE_DIR": str(tmp_path / "pictures"), "ATLAS_VIEWER_STATE_DIR": str(tmp_path / "state"),
           "ATLAS_VIEWER_STORE_CHECK_S": "1", "ATLAS_VIEWER_LOG_LEVEL": "WARNING",
           "ATLAS_VIEWER_EXPORT_BURST": "10000", "ATLAS_VIEWER_EXPORT_RATE_PER_MIN": "100000",
           "ATLAS_VIEWER_PICTURE_BURST": "10000", "ATLAS_VIEWER_PICTURE_RATE_PER_MIN": "100000"}
    url = f"/api/cells.csv?dataset={MARMOSET}"
    scenario = build_scenario(store)
    place = next(place for place in scenario.places if place.dataset == MARMOSET)
    picture = scenario.url(place, place.levels[0], None, place.window, (300, 200))

    with GunicornServer(env, python=sys.executable) as server:
        def regions(labels):
            response = requests.get(server.base_url + url, timeout=60, headers={"Connection": "close"})
            assert response.status_code == 200, response.text
            rows = csv.DictReader(io.StringIO(response.text))
            return {row["region"] for row in rows if row["cell_label"] in labels}

        statuses, stop = [], threading.Event()

        def hammer():  # pictures and cell tables all through the switch, on new connections (both workers)
            while not stop.is_set():
                for path in (url, picture, "/healthz"):
                    try:
                        statuses.append(requests.get(server.base_url + path, timeout=60,
                                                     headers={"Connection": "close"}).status_code)
                    except requests.RequestException as exc:
                        statuses.append(repr(exc))

        annotated = set(pd.read_csv(next((quirky.root / "metadata" / MARMOSET).rglob(
            "cell_anatomical_annotations.csv")), dtype=str)["cell_label"])
        assert regions(annotated) != {"STR"}
        threads = [threading.Thread(target=hammer) for _ in range(3)]
        for thread in threads:
            thread.start()
        try:
            # the requests are under way before the store changes
            WebDriverWait(None, 60, poll_frequency=0.1).until(lambda _: len(statuses) >= 3)
            labels = annotate_everything_as_str(quirky)
            old_version = requests.get(server.base_url + "/healthz", timeout=60).json()["store_version"]
            prepare_store(quirky.root, store)
            assert (store / UNITS / old_unit).is_dir()  # kept: the running server holds it
            # both workers say they serve the new version (each request lands on either worker)
            served: dict = {}

            def every_worker_switched(_):
                body = requests.get(server.base_url + "/healthz", timeout=60,
                                    headers={"Connection": "close"}).json()
                served[body["worker"]] = body["store_version"]
                return len(served) == 2 and old_version not in served.values()
            WebDriverWait(None, 60, poll_frequency=0.2).until(every_worker_switched)
            assert [regions(labels) for _ in range(6)] == [{"STR"}] * 6  # every worker serves the new value
            # both workers let go of the old version once no request used it; the server removed its folders
            WebDriverWait(None, 60, poll_frequency=0.5).until(lambda _: not (store / UNITS / old_unit).exists())
            assert not (store / UNITS / old_unit).exists()
        finally:
            stop.set()
            for thread in threads:
                thread.join(60)
        assert statuses and all(status in (200, 304) for status in statuses), sorted(set(map(str, statuses)))
        assert "Traceback" not in server.log_tail(400)
