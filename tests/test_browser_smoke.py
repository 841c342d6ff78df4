"""The app loads in a real headless Chromium with no console errors."""
import pytest

from app import create_app
from settings import Settings


@pytest.mark.browser
def test_app_loads_in_browser_without_console_errors(dash_duo, tmp_path):
    app = create_app(Settings(store=tmp_path))
    dash_duo.start_server(app)
    dash_duo.wait_for_element("#app-root", timeout=10)
    assert dash_duo.get_logs() == []
