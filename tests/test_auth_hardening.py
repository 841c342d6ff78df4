"""Login attacks refused through the real routes: a proxy header or X-Forwarded-For from a client that is not a
trusted proxy, an old session cookie after logout or a password change (in this worker and in another one),
login and logout without the form's CSRF token, password guessing per address and per user name across workers;
and the security headers and cookie flags on every answer."""
import os
import re

import pytest

from bench.servers import RedisServer
from server.auth import TrustedProxies, content_security_policy, user_line
from server.limits import StateDirError, private_folder
from server_testapp import build_app, settings_for
from settings import Settings

SECRET = "0123456789abcdef0123456789abcdef"
HTML = {"Accept": "text/html,application/xhtml+xml"}


@pytest.fixture
def users_file(tmp_path):
    path = tmp_path / "users.txt"
    path.write_text(user_line("ada", "lovelace-pw") + "\n" + user_line("alan", "turing-pw") + "\n")
    return path


def login_settings(tmp_path, users_file, **changes):
    return settings_for(tmp_path, auth_users_file=users_file, secret_key=SECRET, **changes)


def form_token(client, path="/login"):
    page = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def log_in(client, user="ada", password="lovelace-pw", **environ):
    token = form_token(client)
    return client.post("/login", data={"user": user, "password": password, "csrf_token": token},
                       environ_base=environ)


def session_cookie(client):
    return client.get_cookie("atlas_viewer_session").value


def with_cookie(app, value):
    """A new client (another browser, or another worker's view of the same browser) holding ``value``."""
    client = app.client()
    client.set_cookie("atlas_viewer_session", value)
    return client


# --------------------------------------------------------------------------------------------- trusted proxies
def test_proxy_header_from_a_client_that_is_not_a_trusted_proxy_is_ignored(tmp_path):
    app = build_app(settings_for(tmp_path, auth_proxy_header="X-Forwarded-User"))
    response = app.client().get("/_dash-layout", headers={"X-Forwarded-User": "admin"},
                                environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert response.status_code == 401 and response.get_json() == {"error": "login required"}


def test_proxy_header_from_a_configured_proxy_network_logs_the_user_in(tmp_path):
    app = build_app(settings_for(tmp_path, auth_proxy_header="X-Forwarded-User", trusted_proxies="10.1.0.0/16"))
    client = app.client()
    assert client.get("/_dash-layout", headers={"X-Forwarded-User": "grace"},
                      environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200
    # loopback is no longer trusted once the proxies are configured
    assert client.get("/_dash-layout", headers={"X-Forwarded-User": "grace"},
                      environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 401


def test_proxy_header_is_not_trusted_when_forwarded_for_claims_a_proxy_address(tmp_path):
    app = build_app(settings_for(tmp_path, auth_proxy_header="X-Forwarded-User", proxy_count=1))
    response = app.client().get("/_dash-layout", headers={"X-Forwarded-User": "admin",
                                                          "X-Forwarded-For": "127.0.0.1"},
                                environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert response.status_code == 401


def test_forwarded_for_from_an_untrusted_client_does_not_change_its_address_for_the_limits(tmp_path):
    client = build_app(settings_for(tmp_path, proxy_count=1, export_burst=1)).client()
    direct = {"REMOTE_ADDR": "192.0.2.7"}
    assert client.get("/export/human.png", headers={"X-Forwarded-For": "198.51.100.1"},
                      environ_base=direct).status_code == 200
    refused = client.get("/export/human.png", headers={"X-Forwarded-For": "198.51.100.2"}, environ_base=direct)
    assert refused.status_code == 429


def test_forwarded_for_from_a_trusted_proxy_names_the_client_for_the_limits(tmp_path):
    client = build_app(settings_for(tmp_path, proxy_count=1, export_burst=1)).client()
    via_proxy = {"REMOTE_ADDR": "127.0.0.1"}
    for address in ("198.51.100.1", "198.51.100.2"):
        assert client.get("/export/human.png", headers={"X-Forwarded-For": address},
                          environ_base=via_proxy).status_code == 200


@pytest.mark.parametrize("address, trusted", [
    ("127.0.0.1", True), ("::1", True), ("::ffff:127.0.0.1", True), ("10.0.0.1", False), ("", False),
    ("not-an-ip", False),
])
def test_default_trusted_proxies_are_loopback_only(address, trusted):
    assert TrustedProxies(Settings().trusted_proxy_networks).trusts(address) is trusted


def test_a_malformed_trusted_proxy_is_refused_naming_the_variable():
    with pytest.raises(ValueError, match="ATLAS_VIEWER_TRUSTED_PROXIES.*'10.0.0.300'"):
        Settings(trusted_proxies="127.0.0.1, 10.0.0.300")


# --------------------------------------------------------------------------------------------- ended sessions
def test_old_session_cookie_is_refused_after_logout(tmp_path, users_file):
    app = build_app(login_settings(tmp_path, users_file))
    client = app.client()
    assert log_in(client).status_code == 303
    stolen = session_cookie(client)
    assert with_cookie(app, stolen).get("/_dash-layout").status_code == 200
    assert client.post("/logout", data={"csrf_token": form_token(client, "/logout")}).status_code == 303
    assert with_cookie(app, stolen).get("/_dash-layout").status_code == 401


def test_old_session_cookie_is_refused_after_a_password_change(tmp_path, users_file):
    app = build_app(login_settings(tmp_path, users_file))
    client = app.client()
    log_in(client)
    stolen = session_cookie(client)
    users_file.write_text(user_line("ada", "a-new-password") + "\n" + user_line("alan", "turing-pw") + "\n")
    assert with_cookie(app, stolen).get("/_dash-layout").status_code == 401
    fresh = app.client()
    assert log_in(fresh, password="a-new-password").status_code == 303
    assert fresh.get("/_dash-layout").status_code == 200


def test_another_users_password_change_keeps_a_session(tmp_path, users_file):
    app = build_app(login_settings(tmp_path, users_file))
    client = app.client()
    log_in(client)
    ada_line = users_file.read_text().splitlines()[0]
    users_file.write_text(ada_line + "\n" + user_line("alan", "changed-pw") + "\n")
    assert client.get("/_dash-layout").status_code == 200


def test_logout_in_one_worker_ends_the_session_in_another_through_the_state_folder(tmp_path, users_file):
    settings = login_settings(tmp_path, users_file, served_by="gunicorn", workers=2)
    worker_a, worker_b = build_app(settings), build_app(settings)
    client = worker_a.client()
    log_in(client)
    stolen = session_cookie(client)
    assert with_cookie(worker_b, stolen).get("/_dash-layout").status_code == 200
    client.post("/logout", data={"csrf_token": form_token(client, "/logout")})
    assert with_cookie(worker_b, stolen).get("/_dash-layout").status_code == 401
    assert oct(os.stat(settings.resolved_state_dir).st_mode & 0o777) == "0o700"


def test_logout_in_one_worker_ends_the_session_in_another_through_redis(tmp_path, users_file):
    with RedisServer() as redis_server:
        settings = login_settings(tmp_path, users_file, redis_url=redis_server.url)
        worker_a, worker_b = build_app(settings), build_app(settings)
        client = worker_a.client()
        log_in(client)
        stolen = session_cookie(client)
        client.post("/logout", data={"csrf_token": form_token(client, "/logout")})
        assert with_cookie(worker_b, stolen).get("/_dash-layout").status_code == 401


# --------------------------------------------------------------------------------------------- CSRF
def test_login_without_the_forms_token_is_refused_naming_it(tmp_path, users_file):
    client = build_app(login_settings(tmp_path, users_file)).client()
    response = client.post("/login", data={"user": "ada", "password": "lovelace-pw"})
    assert response.status_code == 400
    assert response.get_json()["parameter"] == "csrf_token"
    assert client.get("/_dash-layout").status_code == 401


def test_login_with_another_sessions_token_is_refused(tmp_path, users_file):
    app = build_app(login_settings(tmp_path, users_file))
    attacker_token = form_token(app.client())
    victim = app.client()
    form_token(victim)  # the victim has a session of its own
    response = victim.post("/login", data={"user": "ada", "password": "lovelace-pw", "csrf_token": attacker_token})
    assert response.status_code == 400


def test_get_logout_shows_a_form_and_does_not_log_out(tmp_path, users_file):
    client = build_app(login_settings(tmp_path, users_file)).client()
    log_in(client)
    page = client.get("/logout", headers=HTML)
    assert page.status_code == 200
    assert '<form method="post" action="/logout">' in page.get_data(as_text=True)
    assert client.get("/_dash-layout").status_code == 200


def test_post_logout_without_the_token_is_refused_and_the_session_stays(tmp_path, users_file):
    client = build_app(login_settings(tmp_path, users_file)).client()
    log_in(client)
    response = client.post("/logout")
    assert response.status_code == 400 and response.get_json()["parameter"] == "csrf_token"
    assert client.get("/_dash-layout").status_code == 200


def test_login_refusals_answer_json_to_scripts_and_the_page_to_browsers(tmp_path, users_file):
    client = build_app(login_settings(tmp_path, users_file)).client()
    token = form_token(client)
    data = {"user": "ada", "password": "wrong", "csrf_token": token}
    assert client.post("/login", data=data).get_json() == {"error": "Wrong user or password."}
    page = client.post("/login", data=data, headers=HTML)
    assert page.status_code == 401 and 'type="password"' in page.get_data(as_text=True)


# --------------------------------------------------------------------------------------------- throttling
def test_guessing_one_users_password_from_many_addresses_is_throttled(tmp_path, users_file):
    app = build_app(login_settings(tmp_path, users_file, login_attempts_per_user_per_min=3))
    statuses = [log_in(app.client(), password="guess", REMOTE_ADDR=f"192.0.2.{i}").status_code
                for i in range(1, 9)]
    assert statuses == [401] * 6 + [429] * 2  # burst: twice the per-minute rate
    # the throttle is per user name: another user is not locked out
    assert log_in(app.client(), user="alan", password="turing-pw", REMOTE_ADDR="192.0.2.99").status_code == 303


def test_throttled_login_says_when_to_retry(tmp_path, users_file):
    app = build_app(login_settings(tmp_path, users_file, login_attempts_per_min=2))
    client = app.client()
    for _ in range(2):
        log_in(client, password="guess")
    refused = log_in(client, password="guess")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert "Too many attempts" in refused.get_json()["error"]


def test_login_throttle_per_address_is_shared_by_workers(tmp_path, users_file):
    settings = login_settings(tmp_path, users_file, served_by="gunicorn", workers=2, login_attempts_per_min=4,
                              login_attempts_per_user_per_min=100)
    workers = [build_app(settings), build_app(settings)]
    statuses = [log_in(workers[i % 2].client(), user=f"u{i}", password="guess").status_code for i in range(6)]
    assert statuses == [401] * 4 + [429] * 2


def test_login_throttle_is_shared_through_redis(tmp_path, users_file):
    with RedisServer() as redis_server:
        settings = login_settings(tmp_path, users_file, redis_url=redis_server.url, login_attempts_per_min=3)
        workers = [build_app(settings), build_app(settings)]
        statuses = [log_in(workers[i % 2].client(), password="guess", REMOTE_ADDR="192.0.2.50").status_code
                    for i in range(4)]
        assert statuses == [401, 401, 401, 429]


# --------------------------------------------------------------------------------------------- headers, cookie
@pytest.mark.parametrize("path", ["/", "/healthz", "/login", "/_dash-layout", "/render/human/H1.png",
                                  "/render/human/H9.png", "/no/such/page/../x"])
def test_every_answer_carries_the_security_headers(tmp_path, users_file, path):
    response = build_app(login_settings(tmp_path, users_file)).client().get(path)
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    csp = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
    assert "'unsafe-inline'" not in csp.split("script-src", 1)[1].split(";", 1)[0]


def test_dash_pages_inline_scripts_are_allowed_by_hash(tmp_path):
    app = build_app(settings_for(tmp_path))
    csp = app.client().get("/").headers["Content-Security-Policy"]
    assert all(h in csp for h in app.app.csp_hashes()) and "'sha256-" in csp


def test_session_cookie_is_secure_when_the_setting_is_on(tmp_path, users_file):
    client = build_app(login_settings(tmp_path, users_file, session_cookie_secure=True)).client()
    cookie = log_in(client).headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_session_cookie_is_not_secure_by_default(tmp_path, users_file):
    cookie = log_in(build_app(login_settings(tmp_path, users_file)).client()).headers["Set-Cookie"]
    assert "Secure" not in cookie


def test_csp_lists_the_script_hashes_given():
    assert "script-src 'self' 'sha256-abc'" in content_security_policy(["'sha256-abc'"])


# --------------------------------------------------------------------------------------------- state folder
def test_state_folder_is_made_private(tmp_path):
    folder = tmp_path / "state"
    folder.mkdir(mode=0o777)
    os.chmod(folder, 0o777)
    private_folder(folder)
    assert os.stat(folder).st_mode & 0o777 == 0o700


def test_state_folder_that_is_a_symbolic_link_is_refused(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "state").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(StateDirError, match="not a folder"):
        private_folder(tmp_path / "state")


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give the folder to another user")
def test_state_folder_of_another_user_is_refused(tmp_path):
    folder = tmp_path / "state"
    folder.mkdir(mode=0o700)
    os.chown(folder, 12345, 12345)
    with pytest.raises(StateDirError, match="another user"):
        private_folder(folder)


def test_gunicorn_trusts_forwarded_headers_from_the_same_proxies_as_the_app(monkeypatch):
    import runpy
    from pathlib import Path

    monkeypatch.setenv("ATLAS_VIEWER_TRUSTED_PROXIES", "10.1.0.0/16")
    monkeypatch.setenv("ATLAS_VIEWER_SERVED_BY", "gunicorn")
    conf = runpy.run_path(str(Path(__file__).resolve().parent.parent / "gunicorn.conf.py"))
    assert conf["forwarded_allow_ips"] == "10.1.0.0/16"
