"""Every address the README gives opens in the demo: the page addresses name a dataset, section, gene and term the
demo has (the page's own reader finds nothing to complain about, and the page answers), and the HTTP API examples
answer 200 with what they promise."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from app import create_app
from core.context import ViewerContext
from core.state import parse_query
from settings import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
#: Page addresses written as `/?...` and API examples written as http://127.0.0.1:8050/api/...
PAGE_ADDRESSES = re.findall(r"`(/\?[^`\s]+)`", README)
API_ADDRESSES = re.findall(r"http://127\.0\.0\.1:8050(/api/[^'\s`\"]+)", README)


@pytest.fixture(scope="module")
def atlas(demo_store):
    from data_layer import Atlas

    return Atlas.open(demo_store)


@pytest.fixture(scope="module")
def app(atlas, tmp_path_factory):
    store = tmp_path_factory.mktemp("readme") / "store"
    store.mkdir()
    return create_app(Settings(store=store, export_burst=10_000), atlas=atlas)


def test_the_readme_gives_page_and_api_addresses():
    assert PAGE_ADDRESSES and API_ADDRESSES


@pytest.mark.parametrize("address", PAGE_ADDRESSES)
def test_a_readme_page_address_opens_in_the_demo_without_a_notice(address, atlas, app):
    context = ViewerContext.build(atlas, Settings(store=Path(".")))
    state, notices = parse_query(address[1:], context.catalog, gene_lookup=context.lookups.gene_symbol,
                                 term_lookup=context.lookups.term_level)
    assert notices == [], notices
    assert state.dataset in address
    assert app.server.test_client().get(address).status_code == 200


@pytest.mark.parametrize("address", API_ADDRESSES)
def test_a_readme_api_example_answers_in_the_demo(address, app):
    response = app.server.test_client().get(address)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    if "format=pdf" in address:
        assert response.data.startswith(b"%PDF")
    if "cells.csv" in address:
        lines = response.get_data(as_text=True).splitlines()
        assert len(lines) > 1 and "DRD1" in lines[0] and "PENK" in lines[0]
