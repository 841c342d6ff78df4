"""The page's JavaScript and the callbacks' JSON are sent compressed to a browser that accepts it; pictures are
sent as the PNG they are. Through a real HTTP server on loopback."""
from __future__ import annotations

import gzip
import threading
from pathlib import Path

import pytest
import requests
from werkzeug.serving import make_server

from app import create_app
from settings import Settings


@pytest.fixture(scope="module")
def server(demo_store):
    from data_layer import Atlas

    atlas = Atlas.open(demo_store)
    app = create_app(Settings(store=Path(demo_store)), atlas=atlas)
    httpd = make_server("127.0.0.1", 0, app.server, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}", atlas
    httpd.shutdown()
    thread.join(timeout=10)


def _raw(url: str, encoding: str) -> requests.Response:
    response = requests.get(url, headers={"Accept-Encoding": encoding}, stream=True, timeout=30)
    response.raw.decode_content = False
    response.body = response.raw.read()  # the bytes on the wire
    return response


def test_plotly_js_is_sent_gzipped_to_a_browser_that_accepts_it(server):
    base, _ = server
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    url = f"{base}/_dash-component-suites/plotly/package_data/plotly.min.js"
    response = _raw(url, "gzip")
    assert response.status_code == 200
    assert response.headers["Content-Encoding"] == "gzip"
    assert len(response.body) < path.stat().st_size / 2
    assert gzip.decompress(response.body) == path.read_bytes()


def test_without_accept_encoding_the_script_is_sent_plain(server):
    base, _ = server
    response = _raw(f"{base}/_dash-component-suites/plotly/package_data/plotly.min.js", "identity")
    assert "Content-Encoding" not in response.headers
    assert response.body.startswith(b"/**") or b"plotly" in response.body[:2000].lower()


def test_a_picture_is_sent_as_its_png(server):
    base, atlas = server
    dataset = next(d for d in atlas.datasets() if atlas.info(d).kind == "spatial")
    response = _raw(f"{base}/api/render?dataset={dataset}&color_by=Class&width=200&height=150", "gzip")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/png"
    assert "Content-Encoding" not in response.headers
    assert response.body.startswith(b"\x89PNG")
