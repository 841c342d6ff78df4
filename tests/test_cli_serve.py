"""`atlas-viewer serve` (what `make run` runs) serves the page with gunicorn, not Flask's development server."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest
import requests

from bench.servers import free_port


@pytest.mark.slow
def test_serve_answers_with_a_production_server(demo_store, tmp_path):
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "cli", "serve", str(demo_store), "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        page = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                page = requests.get(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except requests.ConnectionError:
                time.sleep(0.5)  # the server is still starting (warm-up compiles the rendering code)
        assert page is not None and page.status_code == 200, log.read_text()[-2000:]
        assert "dash" in page.text.lower()
        assert page.headers.get("Server", "").startswith("gunicorn")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    text = log.read_text()
    assert "development server" not in text.lower() and "Serving" in text
