"""Costly work bounded through the real routes: pictures rate-limited per client (user, else address) with a burst
and shared by workers, and exports held to a few slots per worker so a picture still answers at once while
exports hold them; every refusal is JSON with Retry-After."""
import threading
import time

import pytest

from bench.servers import RedisServer
from server.auth import user_line
from server.limits import SLOTS_EXTENSION_KEY, ExportSlots, ServerBusy, SqliteBuckets, SqliteState, export_slot
from server_testapp import build_app, settings_for

PICTURE = "/render/human/H1.png"


def addr(address):
    return {"REMOTE_ADDR": address}


# --------------------------------------------------------------------------------------------- picture rate
def test_pictures_over_the_burst_get_429_json_with_retry_after(tmp_path):
    client = build_app(settings_for(tmp_path, picture_burst=3, picture_rate_per_min=6)).client()
    statuses = [client.get(f"{PICTURE}?w={10 + i}").status_code for i in range(3)]
    refused = client.get(PICTURE)
    assert statuses == [200, 200, 200]
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "10"
    assert refused.get_json() == {"error": "too many pictures; try again in 10 s", "reason": "rate_limit"}


def test_picture_limit_counts_each_address_apart_when_anonymous(tmp_path):
    client = build_app(settings_for(tmp_path, picture_burst=1)).client()
    assert client.get(PICTURE, environ_base=addr("192.0.2.1")).status_code == 200
    assert client.get(PICTURE, environ_base=addr("192.0.2.1")).status_code == 429
    assert client.get(PICTURE, environ_base=addr("192.0.2.2")).status_code == 200


def test_picture_limit_counts_a_logged_in_user_wherever_they_connect_from(tmp_path):
    client = build_app(settings_for(tmp_path, auth_proxy_header="X-User", trusted_proxies="0.0.0.0/0",
                                    picture_burst=2)).client()
    ada = {"X-User": "ada"}
    assert client.get(PICTURE, headers=ada, environ_base=addr("192.0.2.1")).status_code == 200
    assert client.get(PICTURE, headers=ada, environ_base=addr("192.0.2.2")).status_code == 200
    assert client.get(PICTURE, headers=ada, environ_base=addr("192.0.2.3")).status_code == 429
    assert client.get(PICTURE, headers={"X-User": "alan"}, environ_base=addr("192.0.2.3")).status_code == 200


def test_picture_limit_is_shared_by_workers_through_the_state_folder(tmp_path):
    settings = settings_for(tmp_path, served_by="gunicorn", workers=2, picture_burst=3, picture_rate_per_min=1)
    workers = [build_app(settings).client(), build_app(settings).client()]
    statuses = [workers[i % 2].get(PICTURE).status_code for i in range(5)]
    assert statuses == [200, 200, 200, 429, 429]


def test_picture_limit_is_shared_by_workers_through_redis(tmp_path):
    with RedisServer() as redis_server:
        settings = settings_for(tmp_path, redis_url=redis_server.url, picture_burst=3, picture_rate_per_min=1)
        workers = [build_app(settings).client(), build_app(settings).client()]
        statuses = [workers[i % 2].get(PICTURE).status_code for i in range(5)]
        assert statuses == [200, 200, 200, 429, 429]
        redis_server.stop()
        assert workers[0].get(PICTURE).status_code == 200  # Redis gone: this worker counts on its own


def test_a_damaged_state_file_falls_back_to_this_workers_count_not_to_a_500(tmp_path, caplog):
    settings = settings_for(tmp_path, served_by="gunicorn", workers=2, picture_burst=2, picture_rate_per_min=1)
    client = build_app(settings).client()
    assert client.get(PICTURE).status_code == 200
    (settings.resolved_state_dir / "limits.sqlite3").write_bytes(b"not a database" * 100)
    for suffix in ("-wal", "-shm"):
        (settings.resolved_state_dir / f"limits.sqlite3{suffix}").unlink(missing_ok=True)
    fresh = build_app(settings).client()
    statuses = []  # from a new thread, whose connection opens on the damaged file
    thread = threading.Thread(target=lambda: statuses.extend(fresh.get(PICTURE).status_code for _ in range(3)))
    thread.start()
    thread.join(timeout=30)
    assert statuses == [200, 200, 429]
    assert "counting in this process" in caplog.text


def test_sqlite_buckets_refill_at_the_rate(tmp_path):
    now = [1000.0]
    buckets = SqliteBuckets(SqliteState(tmp_path / "state" / "limits.sqlite3",
                                        "CREATE TABLE IF NOT EXISTS buckets (name TEXT NOT NULL, client TEXT NOT "
                                        "NULL, tokens REAL NOT NULL, ts REAL NOT NULL, PRIMARY KEY (name, client));"),
                            "t", rate_per_s=0.5, burst=2, clock=lambda: now[0])
    assert [buckets.consume("ada")[0] for _ in range(3)] == [True, True, False]
    assert buckets.consume("ada")[1] == pytest.approx(2.0)
    now[0] += 2.0
    assert buckets.consume("ada") == (True, 0.0)


# --------------------------------------------------------------------------------------------- export slots
@pytest.fixture
def slow_export_app(tmp_path):
    """The test app with ``/export/slow.png`` and ``/api/render`` that hold their export slot until released."""
    app = build_app(settings_for(tmp_path, export_slots=1, export_wait_s=0.2, export_burst=100))
    entered, release = threading.Event(), threading.Event()

    def slow():
        entered.set()  # the route runs only once its request holds a slot
        release.wait(timeout=30)
        return "slow export done"

    app.server.add_url_rule("/export/slow.png", "slow_export", slow)
    app.server.add_url_rule("/api/render", "slow_api_render", slow)
    app.entered = entered
    yield app, release
    release.set()


def hold_slot(app, path):
    """Start ``path`` on a thread; return the thread once the request holds the worker's export slot."""
    results = []
    thread = threading.Thread(target=lambda: results.append(app.client().get(path)), daemon=True)
    thread.start()
    assert app.entered.wait(timeout=10)
    assert app.server.extensions[SLOTS_EXTENSION_KEY].busy == 1
    return thread, results


@pytest.mark.parametrize("holder", ["/export/slow.png", "/api/render"])
def test_while_exports_hold_the_slots_a_picture_answers_at_once_and_another_export_gets_503(slow_export_app,
                                                                                            holder):
    app, release = slow_export_app
    thread, results = hold_slot(app, holder)
    client = app.client()

    started = time.perf_counter()
    assert client.get(PICTURE).status_code == 200
    assert time.perf_counter() - started < 0.5

    started = time.perf_counter()
    busy = client.get("/export/human.png")
    assert time.perf_counter() - started < 2.0  # refused after the bounded wait, not after the slow export
    assert busy.status_code == 503 and int(busy.headers["Retry-After"]) >= 1
    assert "busy" in busy.get_json()["error"]

    release.set()
    thread.join(timeout=10)
    assert results[0].status_code == 200
    assert client.get("/export/human.png").status_code == 200  # the slot was given back


def test_an_export_waits_for_a_slot_freed_within_the_wait(tmp_path):
    slots = ExportSlots(1, wait_s=5.0)
    slots.acquire()
    threading.Timer(0.1, slots.release).start()
    started = time.perf_counter()
    slots.acquire()
    assert time.perf_counter() - started < 4.0
    slots.release()


def test_a_refused_export_does_not_take_a_slot(tmp_path):
    app = build_app(settings_for(tmp_path, export_slots=1, export_burst=1))
    client = app.client()
    assert client.get("/export/human.png").status_code == 200
    assert client.get("/export/human.png").status_code == 429
    assert app.server.extensions[SLOTS_EXTENSION_KEY].busy == 0


def test_export_slot_for_callbacks_refuses_when_the_slots_are_taken(tmp_path):
    app = build_app(settings_for(tmp_path, export_slots=1, export_wait_s=0))
    slots = app.server.extensions[SLOTS_EXTENSION_KEY]
    with app.server.app_context():
        with export_slot():
            assert slots.busy == 1
            with pytest.raises(ServerBusy):
                with export_slot():
                    pass
        assert slots.busy == 0


def test_login_required_before_an_export_takes_a_slot(tmp_path):
    users = tmp_path / "users.txt"
    users.write_text(user_line("ada", "pw") + "\n")
    app = build_app(settings_for(tmp_path, auth_users_file=users, secret_key="k" * 32, export_slots=1))
    assert app.client().get("/export/human.png").status_code == 401
    assert app.server.extensions[SLOTS_EXTENSION_KEY].busy == 0


# --------------------------------------------------------------------------------------------- real gunicorn
@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    from abc_builders import build_quirky_cache
    from data_layer.prepare import prepare_store

    root = tmp_path_factory.mktemp("limits-gunicorn")
    build_quirky_cache(root / "cache")
    prepare_store(root / "cache", root / "store")
    return root / "store"


@pytest.mark.slow
def test_through_gunicorn_the_picture_limit_and_a_logout_hold_in_every_worker(small_store, tmp_path):
    """Two gunicorn workers without Redis: a logged-in user's pictures are counted once across both workers (the
    state folder's SQLite), and after logout the old cookie is refused by both."""
    import re
    import sys
    from concurrent.futures import ThreadPoolExecutor

    import requests

    from bench.load_test import build_scenario
    from bench.servers import GunicornServer

    users = tmp_path / "users.txt"
    users.write_text(user_line("ada", "lovelace-pw") + "\n")
    env = {"ATLAS_VIEWER_STORE": str(small_store), "ATLAS_VIEWER_WORKERS": "2", "ATLAS_VIEWER_THREADS": "2",
           "ATLAS_VIEWER_CACHE_DIR": str(tmp_path / "cache"), "ATLAS_VIEWER_STATE_DIR": str(tmp_path / "state"),
           "ATLAS_VIEWER_AUTH_USERS_FILE": str(users), "ATLAS_VIEWER_SECRET_KEY": "k" * 32,
           "ATLAS_VIEWER_PICTURE_BURST": "4", "ATLAS_VIEWER_PICTURE_RATE_PER_MIN": "0.01",
           "ATLAS_VIEWER_LOG_LEVEL": "WARNING", "ATLAS_VIEWER_PRELOAD": "false"}
    scenario = build_scenario(small_store)
    place = scenario.places[0]
    urls = [scenario.url(place, place.levels[0], None, place.window, (40 + i, 30)) for i in range(16)]
    with GunicornServer(env, python=sys.executable) as server:
        browser = requests.Session()
        page = browser.get(server.base_url + "/login", timeout=30).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        logged_in = browser.post(server.base_url + "/login", timeout=30, allow_redirects=False,
                                 data={"user": "ada", "password": "lovelace-pw", "csrf_token": token})
        assert logged_in.status_code == 303
        cookie = {"atlas_viewer_session": browser.cookies["atlas_viewer_session"]}

        def fetch(path):  # a new connection each time, so both workers answer
            response = requests.get(server.base_url + path, cookies=cookie, timeout=60,
                                    headers={"Connection": "close"})
            return response.status_code, response.headers.get("Content-Type", "")

        with ThreadPoolExecutor(8) as pool:
            pictures = list(pool.map(fetch, urls))
        assert sorted(status for status, _ in pictures) == [200] * 4 + [429] * 12
        assert all(kind == "application/json" for status, kind in pictures if status == 429)

        token = re.search(r'name="csrf_token" value="([^"]+)"',
                          browser.get(server.base_url + "/logout", timeout=30).text).group(1)
        assert browser.post(server.base_url + "/logout", data={"csrf_token": token}, timeout=30,
                            allow_redirects=False).status_code == 303
        with ThreadPoolExecutor(8) as pool:
            after = list(pool.map(fetch, ["/_dash-layout"] * 16))
        assert {status for status, _ in after} == {401}


def test_a_huge_picture_costs_its_megapixels_so_a_few_exhaust_the_burst(tmp_path):
    client = build_app(settings_for(tmp_path, picture_burst=20, picture_rate_per_min=1)).client()
    assert client.get(f"{PICTURE}?w=4096&h=4096").status_code == 200  # 16 of the 20
    refused = client.get(f"{PICTURE}?w=4096&h=4000")
    assert refused.status_code == 429 and refused.get_json()["error"].startswith("too many pictures")
    assert [client.get(f"{PICTURE}?w=800&h=600").status_code for _ in range(5)] == [200] * 4 + [429]


@pytest.mark.parametrize("query, cost", [
    ({"w": "800", "h": "600"}, 1.0), ({"w": "2048", "h": "2048"}, 4.0), ({"w": "999999999", "h": "4096"}, 16.0),
    ({"w": "1e308", "h": "4096"}, 1.0), ({}, 1.0), ({"w": "-5", "h": "9"}, 1.0),
])
def test_picture_cost_is_bounded_before_arithmetic(query, cost):
    from server.limits import picture_cost

    assert picture_cost(query, 4096) == pytest.approx(cost)


# --------------------------------------------------------------------------------------------- server picture budget
def test_large_pictures_of_many_clients_share_one_budget_while_small_ones_pass(tmp_path):
    client = build_app(settings_for(tmp_path, picture_budget_mpx_per_s=0.1, picture_budget_burst_mpx=8)).client()
    large = [client.get(f"{PICTURE}?w=2048&h=2048", environ_base=addr(f"192.0.2.{i}")) for i in range(1, 4)]
    assert [r.status_code for r in large] == [200, 200, 503]  # 4 + 4 megapixels of the 8, then none left
    assert large[2].get_json()["reason"] == "picture_budget" and int(large[2].headers["Retry-After"]) >= 1
    small = [client.get(f"{PICTURE}?w=1024&h=1024", environ_base=addr(f"192.0.2.{i}")) for i in range(4, 8)]
    assert [r.status_code for r in small] == [200] * 4


def test_the_picture_budget_can_be_turned_off(tmp_path):
    client = build_app(settings_for(tmp_path, picture_budget_mpx_per_s=0, picture_budget_burst_mpx=1)).client()
    assert [client.get(f"{PICTURE}?w=2048&h=2048", environ_base=addr(f"192.0.2.{i}")).status_code
            for i in range(1, 5)] == [200] * 4


@pytest.mark.slow
def test_through_gunicorn_the_picture_budget_holds_across_workers_and_clients(small_store, tmp_path):
    """Two gunicorn workers without Redis, clients at six addresses (behind a trusted proxy), each far under its
    own limit: their large pictures together draw on one budget, counted once across both workers; a small
    picture still answers."""
    import sys

    import requests

    from bench.load_test import build_scenario
    from bench.servers import GunicornServer

    env = {"ATLAS_VIEWER_STORE": str(small_store), "ATLAS_VIEWER_WORKERS": "2", "ATLAS_VIEWER_THREADS": "2",
           "ATLAS_VIEWER_CACHE_DIR": str(tmp_path / "cache"), "ATLAS_VIEWER_STATE_DIR": str(tmp_path / "state"),
           "ATLAS_VIEWER_PROXY_COUNT": "1", "ATLAS_VIEWER_PICTURE_BUDGET_MPX_PER_S": "0.01",
           "ATLAS_VIEWER_PICTURE_BUDGET_BURST_MPX": "8", "ATLAS_VIEWER_LOG_LEVEL": "WARNING",
           "ATLAS_VIEWER_PRELOAD": "false"}
    scenario = build_scenario(small_store)
    place = scenario.places[0]

    def url(side):
        return scenario.url(place, place.levels[0], None, place.window, (side, side))

    with GunicornServer(env, python=sys.executable) as server:
        def fetch(path, address):  # a new connection each time, so both workers answer
            return requests.get(server.base_url + path, timeout=60,
                                headers={"Connection": "close", "X-Forwarded-For": address})

        large = [fetch(url(2048), f"198.51.100.{i}") for i in range(1, 7)]
        assert [r.status_code for r in large] == [200, 200, 503, 503, 503, 503]
        refused = large[-1]
        assert refused.headers["Content-Type"] == "application/json"
        assert refused.json()["reason"] == "picture_budget" and int(refused.headers["Retry-After"]) > 1
        small = [fetch(url(600 + i), f"198.51.100.{i}") for i in range(1, 7)]
        assert [r.status_code for r in small] == [200] * 6
