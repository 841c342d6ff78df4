"""`atlas-viewer serve` (what `make run` runs) serves the page with gunicorn, not Flask's development server."""
from __future__ import annotations

import subprocess
import sys

import pytest
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from bench.servers import free_port


@pytest.mark.slow
def test_serve_answers_with_a_production_server(demo_store, tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cli", "serve", str(demo_store), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in proc.stdout:  # the warm-up compiles the rendering code first; then it says where it serves
            lines.append(line)
            if line.startswith("Serving"):
                break
        assert any(line.startswith("Serving") for line in lines), "".join(lines)[-2000:]
        session = requests.Session()  # gunicorn binds just after that line: retry the first connection
        session.mount("http://", HTTPAdapter(max_retries=Retry(connect=20, backoff_factor=0.2)))
        page = session.get(f"http://127.0.0.1:{port}/", timeout=30)
        assert page.status_code == 200 and "dash" in page.text.lower()
        assert page.headers.get("Server", "").startswith("gunicorn")
    finally:
        proc.terminate()
        rest, _ = proc.communicate(timeout=30)
    text = "".join(lines) + (rest or "")
    assert "development server" not in text.lower()
