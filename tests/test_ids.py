"""Component ids have one home (components/ids.py): the page's scripts get theirs from it, never as literals."""
from __future__ import annotations

import json
import re
from pathlib import Path

from app import PLOTLY_BUNDLE
from components import ids

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def all_ids() -> set[str]:
    return {value for name, value in vars(ids).items() if name.isupper() and isinstance(value, str)}


def test_no_script_writes_a_component_id_as_a_literal():
    found = {}
    known = all_ids() - {ids.JS_IDS_ELEMENT}
    for script in ASSETS.glob("*.js"):
        if script.name == PLOTLY_BUNDLE:  # plotly.js itself, vendored: its strings are Plotly's, not our ids
            continue
        literals = set(re.findall(r"""["']([A-Za-z0-9_-]+)["']""", script.read_text()))
        if literals & known:
            found[script.name] = sorted(literals & known)
    assert found == {}


def test_the_page_carries_the_ids_the_scripts_use(demo_store, tmp_path):
    from app import create_app
    from data_layer import Atlas
    from settings import Settings

    app = create_app(Settings(store=tmp_path), atlas=Atlas.open(demo_store))
    page = app.server.test_client().get("/").get_data(as_text=True)
    block = re.search(rf'<script id="{ids.JS_IDS_ELEMENT}" type="application/json">(.*?)</script>', page, re.S)
    assert block is not None
    assert json.loads(block.group(1)) == ids.JS_IDS
    used = set()
    for script in ASSETS.glob("*.js"):
        text = script.read_text()
        used |= set(re.findall(r"atlasIds\(\)\.(\w+)", text))
        used |= set(re.findall(r"(?:pick|toggle): \"(\w+)\"", text))  # the tree's click stores, by name
    assert used == set(ids.JS_IDS)
