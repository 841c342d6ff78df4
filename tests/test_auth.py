"""Login: off by default; with a users file every route but /healthz needs a login; or a trusted proxy header."""
import logging
import re

import pytest
from click.testing import CliRunner
from werkzeug.security import check_password_hash

from server.auth import AuthConfigError, parse_users, safe_next, user_line
from server_testapp import build_app, settings_for

SECRET = "0123456789abcdef0123456789abcdef"
PROTECTED = ["/", "/_dash-layout", "/_dash-dependencies", "/render/human/H1.png", "/export/human.png"]


@pytest.fixture
def users_file(tmp_path):
    path = tmp_path / "users.txt"
    path.write_text("# lab users\n" + user_line("ada", "lovelace-pw") + "\n\n" + user_line("alan", "turing-pw") + "\n")
    return path


@pytest.fixture
def login_app(tmp_path, users_file):
    return build_app(settings_for(tmp_path, auth_users_file=users_file, secret_key=SECRET))


def form_token(client, path="/login"):
    """The CSRF token of the form at ``path`` (the login page, or the logout page when logged in)."""
    page = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def log_in(client, user="ada", password="lovelace-pw", next_path="/"):
    return client.post("/login", data={"user": user, "password": password, "next": next_path,
                                       "csrf_token": form_token(client)})


def test_login_is_off_by_default_and_every_route_answers(tmp_path):
    client = build_app(settings_for(tmp_path)).client()
    for path in PROTECTED:
        assert client.get(path).status_code == 200, path
    assert 'type="password"' not in client.get("/login").get_data(as_text=True)  # no login page either


def test_page_load_without_login_redirects_to_the_login_page(login_app):
    response = login_app.client().get("/?dataset=human", headers={"Accept": "text/html,application/xhtml+xml"})
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=%2F%3Fdataset%3Dhuman"


@pytest.mark.parametrize("path", PROTECTED)
def test_every_route_answers_401_without_login(login_app, path):
    response = login_app.client().get(path)
    assert response.status_code == 401
    assert response.get_json() == {"error": "login required"}


def test_dash_callback_route_answers_401_without_login(login_app):
    response = login_app.client().post("/_dash-update-component", json={"output": "x.children", "inputs": []})
    assert response.status_code == 401


def test_healthz_stays_open_when_login_is_on(login_app):
    assert login_app.client().get("/healthz").status_code == 200


def test_login_page_is_a_form_posting_user_and_password(login_app):
    page = login_app.client().get("/login?next=/render/human/H1.png").get_data(as_text=True)
    assert '<form method="post" action="/login">' in page
    assert 'name="user"' in page and 'type="password"' in page
    assert 'value="/render/human/H1.png"' in page


def test_wrong_password_is_refused_and_no_session_opens(login_app):
    client = login_app.client()
    response = log_in(client, password="wrong")
    assert response.status_code == 401 and "Wrong user or password" in response.get_data(as_text=True)
    assert client.get("/_dash-layout").status_code == 401


def test_unknown_user_is_refused(login_app):
    assert log_in(login_app.client(), user="mallory").status_code == 401


def test_right_password_opens_every_route_and_the_user_is_logged(login_app, caplog):
    client = login_app.client()
    response = log_in(client, next_path="/render/human/H1.png")
    assert response.status_code == 303 and response.headers["Location"] == "/render/human/H1.png"
    caplog.set_level(logging.INFO, logger="atlas_viewer.access")
    for path in PROTECTED:
        assert client.get(path).status_code == 200, path
    assert all('"user":"ada"' in r.getMessage() for r in caplog.records if r.name == "atlas_viewer.access")


def test_session_cookie_is_http_only_and_same_site(login_app):
    cookie = log_in(login_app.client()).headers["Set-Cookie"]
    assert cookie.startswith("atlas_viewer_session=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_logout_closes_the_session(login_app):
    client = login_app.client()
    log_in(client)
    response = client.post("/logout", data={"csrf_token": form_token(client, "/logout")})
    assert response.status_code == 303
    assert client.get("/_dash-layout").status_code == 401


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "\\\\evil", "/\\evil", "", None])
def test_after_login_only_local_paths_are_followed(target):
    assert safe_next(target) == "/"


def test_after_login_a_local_path_with_query_is_kept():
    assert safe_next("/?dataset=human&section=H1") == "/?dataset=human&section=H1"


def test_user_removed_from_the_file_is_logged_out_at_the_next_request(login_app, users_file):
    client = login_app.client()
    log_in(client, user="alan", password="turing-pw")
    assert client.get("/_dash-layout").status_code == 200
    users_file.write_text(user_line("ada", "lovelace-pw") + "\n")
    assert client.get("/_dash-layout").status_code == 401


def test_login_attempts_per_client_are_limited(login_app):
    client = login_app.client()
    statuses = [log_in(client, password="guess").status_code for _ in range(11)]
    assert statuses[:10] == [401] * 10
    assert statuses[10] == 429


def test_users_file_without_a_real_secret_key_is_refused(tmp_path, users_file):
    with pytest.raises(AuthConfigError, match="ATLAS_VIEWER_SECRET_KEY"):
        build_app(settings_for(tmp_path, auth_users_file=users_file))


def test_missing_users_file_is_refused_naming_the_variable(tmp_path):
    with pytest.raises(AuthConfigError, match="ATLAS_VIEWER_AUTH_USERS_FILE"):
        build_app(settings_for(tmp_path, auth_users_file=tmp_path / "nope.txt", secret_key=SECRET))


def test_malformed_users_file_line_is_named():
    with pytest.raises(AuthConfigError, match=r"users\.txt, line 2: expected 'user:hash'"):
        parse_users("ada:scrypt:1$a$b\nbob-without-hash\n", "users.txt")


def test_repeated_user_is_refused():
    with pytest.raises(AuthConfigError, match="line 2: user 'ada' appears twice"):
        parse_users("ada:x$y\nada:x$z\n", "users.txt")


def test_proxy_header_user_is_trusted_when_configured(tmp_path, caplog):
    client = build_app(settings_for(tmp_path, auth_proxy_header="X-Forwarded-User")).client()
    assert client.get("/_dash-layout").status_code == 401
    caplog.set_level(logging.INFO, logger="atlas_viewer.access")
    for path in PROTECTED:
        assert client.get(path, headers={"X-Forwarded-User": "grace"}).status_code == 200, path
    assert '"user":"grace"' in caplog.records[-1].getMessage()


def test_proxy_header_is_ignored_when_not_configured(tmp_path, users_file):
    client = build_app(settings_for(tmp_path, auth_users_file=users_file, secret_key=SECRET)).client()
    assert client.get("/_dash-layout", headers={"X-Forwarded-User": "grace"}).status_code == 401


def test_hash_password_command_prints_a_line_that_checks():
    from cli import main

    result = CliRunner().invoke(main, ["hash-password", "ada"], input="s3cret-pw\ns3cret-pw\n")
    assert result.exit_code == 0, result.output
    line = result.output.strip().splitlines()[-1]
    user, hashed = line.split(":", 1)
    assert user == "ada"
    assert check_password_hash(hashed, "s3cret-pw") and not check_password_hash(hashed, "other")
    assert parse_users(line) == {"ada": hashed}


def test_hash_password_command_refuses_a_user_name_with_a_colon():
    from cli import main

    result = CliRunner().invoke(main, ["hash-password", "a:b", "--password", "x"])
    assert result.exit_code != 0 and "user name 'a:b'" in result.output
