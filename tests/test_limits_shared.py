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
    assert refused.get_json() == {"error": "too many pictures; try again in 10 s"}


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
    release = threading.Event()

    def slow():
        release.wait(timeout=30)
        return "slow export done"

    app.server.add_url_rule("/export/slow.png", "slow_export", slow)
    app.server.add_url_rule("/api/render", "slow_api_render", slow)
    yield app, release
    release.set()


def hold_slot(app, path):
    """Start ``path`` on a thread; return the thread once the request holds the worker's export slot."""
    slots = app.server.extensions[SLOTS_EXTENSION_KEY]
    results = []
    thread = threading.Thread(target=lambda: results.append(app.client().get(path)), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while slots.busy < 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert slots.busy == 1
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
