"""Login in a real headless Chromium: the viewer redirects to /login, the form logs in, the map picture loads
through the session cookie, and the browser logs no errors, the page running under its Content-Security-Policy;
the header's "Log out" leads to the logout form, whose POST ends the session. Screenshots go to
/tmp/shots/auth_*.png."""
from __future__ import annotations

from pathlib import Path

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from app import create_app
from server.auth import user_line
from settings import Settings

pytestmark = pytest.mark.browser
SHOTS = Path("/tmp/shots")
TIMEOUT = 30
PICTURE_LOADED_JS = """
var gd = document.querySelector('#map-graph .js-plotly-plot');
if (!gd || !gd.layout || !gd.layout.images || !gd.layout.images.length) { return false; }
var url = new URL(gd.layout.images[0].source, window.location.href).href;
return performance.getEntriesByName(url).some(function (e) { return e.responseEnd > 0; });
"""


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    from abc_builders import build_quirky_cache
    from data_layer.prepare import prepare_store

    root = tmp_path_factory.mktemp("auth-browser")
    build_quirky_cache(root / "cache")
    prepare_store(root / "cache", root / "store")
    return root / "store"


def test_login_page_leads_to_the_viewer_and_its_pictures_without_console_errors(dash_duo, small_store, tmp_path):
    users = tmp_path / "users.txt"
    users.write_text(user_line("ada", "lovelace-pw") + "\n")
    app = create_app(Settings(store=small_store, auth_users_file=users, secret_key="k" * 32))
    dash_duo.start_server(app, navigate=False)  # dash_duo would wait for the app page; /login comes first
    csp = requests.get(dash_duo.server.url + "/login", timeout=TIMEOUT).headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
    dash_duo.driver.get(dash_duo.server.url)
    dash_duo.wait_for_element("form input[name=password]", timeout=TIMEOUT)  # redirected to /login
    assert "/login" in dash_duo.driver.current_url
    SHOTS.mkdir(exist_ok=True)
    dash_duo.driver.save_screenshot(str(SHOTS / "auth_login.png"))
    dash_duo.find_element("#user").send_keys("ada")
    dash_duo.find_element("#password").send_keys("lovelace-pw")
    dash_duo.driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()

    dash_duo.wait_for_element("#app-root", timeout=TIMEOUT)
    WebDriverWait(dash_duo.driver, TIMEOUT, poll_frequency=0.1).until(
        lambda driver: driver.execute_script(PICTURE_LOADED_JS))
    dash_duo.driver.save_screenshot(str(SHOTS / "auth_viewer.png"))
    assert dash_duo.get_logs() == []  # a script or style refused by the CSP would be logged here

    dash_duo.find_element("a.logout-link").click()
    dash_duo.wait_for_element("form[action='/logout'] button[type=submit]", timeout=TIMEOUT).click()
    dash_duo.wait_for_element("form input[name=password]", timeout=TIMEOUT)  # back at the login page
    dash_duo.driver.get(dash_duo.server.url + "/?dataset=x")  # the viewer again: the session is over
    dash_duo.wait_for_element("form input[name=password]", timeout=TIMEOUT)
    assert "/login?next=" in dash_duo.driver.current_url
