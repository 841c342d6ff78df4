"""Login in a real headless Chromium: the viewer redirects to /login, the form logs in, the map picture loads
through the session cookie, and the browser logs no errors. A screenshot goes to /tmp/shots/auth_*.png."""
from __future__ import annotations

from pathlib import Path

import pytest
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
    assert dash_duo.get_logs() == []
