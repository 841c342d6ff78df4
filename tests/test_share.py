"""Short links: deterministic ids of the canonical view, SQLite under the store (and Redis written through),
surviving an app restart, resolving to the same view, and refusing anything that is not an id."""
from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
import redis

from app import create_app
from bench.servers import RedisServer
from core.context import ViewerContext
from callbacks.export_panel import share_step
from server.share import (SHARES_DB, RedisShares, ShareError, ShareStore, SqliteShares, canonical_query,
                             open_share_store, share_id)
from components import ids
from core.requests import SHARE_ID_RE
from core.state import ViewState, parse_query
from settings import Settings


@pytest.fixture(scope="module")
def atlas(demo_store):
    from data_layer import Atlas

    return Atlas.open(demo_store)


@pytest.fixture(scope="module")
def spatial(atlas):
    return next(d for d in atlas.datasets() if atlas.info(d).kind == "spatial")


@pytest.fixture(scope="module")
def section(atlas, spatial):
    return str(atlas.sections(spatial)["brain_section_label"].iloc[-1])


@pytest.fixture()
def store_dir(tmp_path):
    """A store folder of this test (the atlas is the session's demo store; links go here)."""
    folder = tmp_path / "store"
    folder.mkdir()
    return folder


def new_app(atlas, store_dir, **settings):
    return create_app(Settings(store=store_dir, **settings), atlas=atlas)


def make_link(app, query: str) -> dict:
    response = app.server.test_client().post(f"/api/share?{query.lstrip('?')}")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.json


def view_values(**given):
    base = {ids.DATASET: None, ids.SLAB_PLANE: None, ids.SECTION: None, ids.COLOR_BY: None, ids.GENE: None,
            ids.TERM: None, ids.VIEWPORT: None, ids.GENE_VMIN: None, ids.GENE_VMAX: None, ids.UMAP_VIEWPORT: None}
    base.update({getattr(ids, key.upper()): value for key, value in given.items()})
    return base


# ---------------------------------------------------------------------------------------------- ids
def test_id_is_ten_base32_characters_and_depends_only_on_the_query():
    first = share_id("?dataset=A&section=B")
    assert SHARE_ID_RE.fullmatch(first)
    assert share_id("?dataset=A&section=B") == first
    assert share_id("?dataset=A&section=C") != first
    assert share_id("?dataset=A&section=B", attempt=1) != first


def test_equivalent_addresses_give_the_same_link(atlas, store_dir, spatial, section):
    app = new_app(atlas, store_dir)
    plane = atlas.sections(spatial).set_index("brain_section_label").loc[section, "slab_plane_label"]
    gene = str(atlas.genes(spatial)["gene_symbol"].iloc[0])
    one = make_link(app, urlencode({"dataset": spatial, "section": section, "gene": gene}))
    two = make_link(app, urlencode({"gene": gene.lower(), "slab_plane": plane, "section": section,
                                    "dataset": spatial, "color_by": "gene"}))
    three = make_link(app, urlencode({"dataset": spatial, "section": section, "color_by": "Class"}))
    assert one["id"] == two["id"] != three["id"]


# ---------------------------------------------------------------------------------------------- restart
def test_a_short_link_survives_an_app_restart_and_opens_the_same_view(atlas, store_dir, spatial, section):
    taxonomy = atlas.taxonomy(spatial)
    term = str(taxonomy.terms(taxonomy.levels[1])["name"].iloc[0])
    values = view_values(dataset=spatial, section=section, color_by="Subclass",
                         term={"level": taxonomy.levels[1], "name": term},
                         viewport={"x0": 10.5, "x1": 14.25, "y0": 60, "y1": 66})
    first = new_app(atlas, store_dir)
    context = ViewerContext.build(atlas, Settings(store=store_dir))
    made = share_step(values, 1, context, first.server.extensions["atlas_viewer_shares"])
    path = made["path"]
    assert SHARE_ID_RE.fullmatch(path.rsplit("/", 1)[1])
    del first

    second = new_app(atlas, store_dir)  # a new process would see only the store folder
    response = second.server.test_client().get(path)
    assert response.status_code == 302
    target = urlsplit(response.headers["Location"])
    assert target.path == "/"
    state, notices = parse_query(target.query, context.catalog, gene_lookup=context.lookups.gene_symbol,
                                 term_lookup=context.lookups.term_level)
    assert notices == []
    assert (state.dataset, state.section, state.color_by, state.term, state.term_level) == (
        spatial, section, "Subclass", term, taxonomy.levels[1])
    assert tuple(state.viewport) == pytest.approx((10.5, 14.25, 60, 66))
    assert (store_dir / ".shares" / SHARES_DB).is_file()


def test_the_long_address_keeps_working_beside_the_short_link(atlas, store_dir, spatial, section):
    app = new_app(atlas, store_dir)
    made = make_link(app, urlencode({"dataset": spatial, "section": section}))
    client = app.server.test_client()
    assert client.get("/" + made["query"]).status_code == 200
    assert client.get(made["path"]).headers["Location"] == "/" + made["query"]


# ---------------------------------------------------------------------------------------------- refusals
def test_unknown_id_gets_a_404_page_with_a_link_home(atlas, store_dir):
    response = new_app(atlas, store_dir).server.test_client().get("/s/abcdefghij")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert 'href="/"' in response.get_data(as_text=True)


@pytest.mark.parametrize("bad", ["ABCDEFGHIJ", "abcdefghi", "abcdefghijk", "abcdefgh19", "..%2F..%2Fetc",
                                 "%2e%2e", "abcde%00fgh", "....", "abcdefghij.db"])
def test_anything_but_an_id_never_reaches_the_store(atlas, store_dir, bad, monkeypatch):
    app = new_app(atlas, store_dir)
    store = app.server.extensions["atlas_viewer_shares"]
    asked = []
    for backend in store.backends:
        original = backend.get
        monkeypatch.setattr(backend, "get", lambda key, original=original: asked.append(key) or original(key))
    response = app.server.test_client().get(f"/s/{bad}")
    assert response.status_code in (400, 404)
    assert asked == []


# ---------------------------------------------------------------------------------------------- storage
def test_a_clash_takes_the_next_id_and_keeps_both_views(tmp_path):
    shares = SqliteShares(tmp_path / "shares.sqlite3")
    shares.prepare()
    store = ShareStore([shares])
    shares.add(share_id("?dataset=B"), "?dataset=OTHER")  # another view already holds B's first id
    made = store.create("?dataset=B")
    assert made == share_id("?dataset=B", attempt=1)
    assert store.resolve(made) == "?dataset=B"
    assert store.resolve(share_id("?dataset=B")) is None  # its record is not the view its id is the hash of


@pytest.mark.parametrize("planted", [
    "//evil.example/phish",  # a redirect off-site
    "?dataset=X\r\nSet-Cookie: a=b",  # a header in the redirect
    "?next=https://evil.example",  # a parameter the viewer does not have
    "?" + "a" * 5000,  # too long
])
def test_a_planted_record_is_refused_even_under_its_own_hash(tmp_path, planted):
    shares = SqliteShares(tmp_path / "shares.sqlite3")
    shares.prepare()
    link = share_id(planted)
    shares.add(link, planted)
    assert ShareStore([shares]).resolve(link) is None


def test_a_planted_share_record_in_the_database_never_redirects_off_site(atlas, store_dir, spatial):
    app = new_app(atlas, store_dir)
    good = make_link(app, f"?{urlencode({'dataset': spatial})}")
    with sqlite3.connect(store_dir / ".shares" / SHARES_DB) as connection:
        connection.execute("UPDATE shares SET query = ? WHERE id = ?", ("//evil.example/", good["id"]))
    response = app.server.test_client().get(f"/s/{good['id']}")
    assert response.status_code == 404 and "evil" not in response.headers.get("Location", "")


def test_a_planted_share_record_in_redis_is_refused_and_the_files_record_used(atlas, store_dir, spatial,
                                                                              redis_server):
    app = new_app(atlas, store_dir, redis_url=redis_server.url)
    good = make_link(app, f"?{urlencode({'dataset': spatial})}")
    client = redis.Redis.from_url(redis_server.url)
    key = next(k for k in client.keys("*share*") if k.decode().endswith(good["id"]))
    client.set(key, "//evil.example/")
    response = app.server.test_client().get(f"/s/{good['id']}")
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert location.netloc in ("", "localhost") and location.path == "/" and spatial in location.query


def _create_many(path: str, queries: list[str]) -> list[str]:
    store = ShareStore([SqliteShares(Path(path))])
    return [store.create(q) for q in queries]


def test_several_worker_processes_write_one_database_consistently(tmp_path):
    path = tmp_path / "shares.sqlite3"
    SqliteShares(path).prepare()
    queries = [f"?dataset=D&section=S{i % 40}" for i in range(120)]
    context = multiprocessing.get_context("fork")
    with context.Pool(4) as pool:
        results = pool.starmap(_create_many, [(str(path), queries[i::4]) for i in range(4)])
    made = {q: i for chunk, part in zip(results, [queries[i::4] for i in range(4)]) for q, i in zip(part, chunk)}
    assert all(made[q] == share_id(q) for q in queries)
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT COUNT(*) FROM shares").fetchone()[0] == 40
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_store_folder_that_cannot_be_written_falls_back_to_the_temp_folder(tmp_path, caplog):
    not_a_folder = tmp_path / "store-file"
    not_a_folder.write_text("a file where the store should be")
    store = open_share_store(Settings(store=not_a_folder))
    made = store.create("?dataset=X")
    assert store.resolve(made) == "?dataset=X"
    assert "cannot keep short links" in caplog.text


def test_share_step_gives_the_long_address_when_no_backend_can_store(atlas, spatial, section, tmp_path):
    class Broken:
        def add(self, share_id, query):
            raise OSError("disk full")

        def get(self, share_id):
            return None

    context = ViewerContext.build(atlas, Settings(store=tmp_path))
    made = share_step(view_values(dataset=spatial, section=section, color_by="Class"), 3, context,
                      ShareStore([Broken()]))
    assert "error" in made and "disk full" in made["error"]
    assert made["long"].startswith("/?dataset=")


def test_canonical_query_drops_what_the_view_does_not_use(atlas, spatial, section, tmp_path):
    context = ViewerContext.build(atlas, Settings(store=tmp_path))
    state = ViewState(dataset=spatial, section=section, color_by="Class", gene="DRD1", vmin=1.0, vmax=2.0)
    query = canonical_query(state, context)
    assert "gene=" not in query and "vmin" not in query  # not colouring by gene: neither is part of the view


# ---------------------------------------------------------------------------------------------- redis
@pytest.fixture(scope="module")
def redis_server():
    with RedisServer() as server:
        yield server


def test_with_redis_links_go_to_redis_and_to_the_file(atlas, store_dir, spatial, section, redis_server):
    redis.Redis.from_url(redis_server.url).flushall()
    app = new_app(atlas, store_dir, redis_url=redis_server.url)
    made = make_link(app, urlencode({"dataset": spatial, "section": section}))
    client = redis.Redis.from_url(redis_server.url)
    assert client.get(f"atlas-viewer:share:{made['id']}").decode() == made["query"]
    assert SqliteShares(store_dir / ".shares" / SHARES_DB).get(made["id"]) == made["query"]


def test_a_link_evicted_from_redis_still_resolves_and_is_put_back(atlas, store_dir, spatial, section,
                                                                  redis_server):
    redis.Redis.from_url(redis_server.url).flushall()
    app = new_app(atlas, store_dir, redis_url=redis_server.url)
    made = make_link(app, urlencode({"dataset": spatial, "section": section, "color_by": "Class"}))
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()  # allkeys-lru eviction, or a Redis restart without persistence
    response = app.server.test_client().get(made["path"])
    assert response.status_code == 302 and response.headers["Location"] == "/" + made["query"]
    assert client.get(f"atlas-viewer:share:{made['id']}").decode() == made["query"]


def test_links_are_made_and_resolved_while_redis_is_down(tmp_path):
    with RedisServer() as server:
        url = server.url
    store = ShareStore([RedisShares(redis.Redis.from_url(url, socket_timeout=0.2, socket_connect_timeout=0.2)),
                        SqliteShares(tmp_path / SHARES_DB)])
    store.backends[1].prepare()
    made = store.create("?dataset=Z")
    assert store.resolve(made) == "?dataset=Z"


def test_no_backend_at_all_is_an_error():
    with pytest.raises(ValueError):
        ShareStore([])
    class Broken:
        def add(self, share_id, query):
            raise OSError("read-only")
    with pytest.raises(ShareError):
        ShareStore([Broken()]).create("?dataset=Z")


def test_short_links_are_rate_limited_per_client(atlas, store_dir, spatial):
    app = new_app(atlas, store_dir, share_rate_per_min=2.0)
    client = app.server.test_client()
    answers = [client.post(f"/api/share?{urlencode({'dataset': spatial, 'color_by': level})}")
               for level in ("Class", "Subclass", "Group")]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert int(answers[2].headers["Retry-After"]) >= 1 and "short links" in answers[2].get_json()["error"]


def test_the_link_store_never_grows_past_its_bound(tmp_path, atlas, spatial):
    shares = SqliteShares(tmp_path / "shares.sqlite3", max_rows=2)
    shares.prepare()
    store = ShareStore([shares])
    first, second = store.create("?dataset=A"), store.create("?dataset=B")
    with pytest.raises(ShareError, match="at most 2"):
        store.create("?dataset=C")
    assert store.create("?dataset=A") == first and store.resolve(second) == "?dataset=B"  # old links still work
