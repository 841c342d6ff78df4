"""A damaged dataset in a real headless Chromium: the page says so, names it, and shows a sound dataset instead
(no blank panel, no console error)."""
from __future__ import annotations

import pytest

from browser_helpers import SHOTS, TIMEOUT, open_view, shot, wait_for_picture
from test_store_damage import DAMAGED, SOUND, store_copy, truncate, unit_folder


@pytest.mark.browser
def test_the_page_names_a_damaged_dataset_and_shows_a_sound_one(dash_duo, demo_store, tmp_path):
    from app import create_app
    from data_layer import Atlas
    from settings import Settings

    store = store_copy(demo_store, tmp_path)
    truncate(unit_folder(store, DAMAGED) / "x.npy")
    SHOTS.mkdir(parents=True, exist_ok=True)
    dash_duo.start_server(create_app(Settings(store=store), atlas=Atlas.open(store)))
    open_view(dash_duo, f"?dataset={DAMAGED}")
    wait_for_picture(dash_duo, f"dataset={SOUND}")
    dash_duo.wait_for_contains_text("#notice-view", f"Dataset '{DAMAGED}' is damaged in the store", timeout=TIMEOUT)
    assert DAMAGED not in dash_duo.find_element("#dataset").text
    shot(dash_duo, "damaged_dataset_notice")
    assert dash_duo.get_logs() == []
