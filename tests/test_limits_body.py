"""Request bodies are bounded: a declared Content-Length over the bound is refused before the body is read, and a
body sent chunked without a length is counted while it is read and refused (413 JSON) once over the bound, never
read whole. Through a real gunicorn on loopback with a raw socket, since HTTP clients add a Content-Length."""
import json
import socket
import sys

import pytest

from server.limits import BodyLimit, BodyTooLarge, CountingInput
from server_testapp import build_app, settings_for

LIMIT = 4096


class EndlessBody:
    """A request body that never ends; counts the bytes handed out."""

    def __init__(self):
        self.served = 0

    def read(self, size=-1):
        size = 65536 if size is None or size < 0 else size
        self.served += size
        return b"x" * size

    def readline(self, size=-1):
        return self.read(size)


def test_an_endless_body_is_read_no_further_than_the_bound_plus_one_byte():
    body = EndlessBody()
    stream = CountingInput(body, LIMIT)
    with pytest.raises(BodyTooLarge):
        stream.read()
    assert body.served == LIMIT + 1
    with pytest.raises(BodyTooLarge):
        stream.read(10)
    assert body.served == LIMIT + 1


def test_a_body_under_the_bound_reads_as_it_is_in_pieces_or_whole():
    import io

    data = b"a=1&b=" + b"2" * 3000
    assert CountingInput(io.BytesIO(data), LIMIT).read() == data
    pieces = CountingInput(io.BytesIO(data), LIMIT)
    assert pieces.read(100) + pieces.read(5000) + pieces.read(10) == data


def test_a_declared_length_over_the_bound_is_refused_without_calling_the_app():
    called = []
    middleware = BodyLimit(lambda environ, start: called.append(1) or [b""], LIMIT)
    answered = []
    body = middleware({"CONTENT_LENGTH": str(LIMIT + 1), "wsgi.input": EndlessBody()},
                      lambda status, headers: answered.append((status, dict(headers))))
    assert not called and answered[0][0].startswith("413")
    assert json.loads(b"".join(body)) == {"error": f"body: the request body is over {LIMIT} bytes",
                                          "parameter": "body", "reason": "body_too_large"}


def test_through_flask_a_body_over_the_bound_gets_413_json(tmp_path):
    client = build_app(settings_for(tmp_path, max_body_bytes=LIMIT)).client()
    response = client.post("/api/cells.csv", data={"selection": "1," * 3000})
    assert response.status_code == 413 and response.get_json()["parameter"] == "body"


# --------------------------------------------------------------------------------------------- real gunicorn
@pytest.fixture(scope="module")
def gunicorn(tmp_path_factory):
    from abc_builders import build_quirky_cache
    from bench.servers import GunicornServer
    from data_layer.prepare import prepare_store

    root = tmp_path_factory.mktemp("body-limit")
    build_quirky_cache(root / "cache")
    prepare_store(root / "cache", root / "store")
    env = {"ATLAS_VIEWER_STORE": str(root / "store"), "ATLAS_VIEWER_WORKERS": "1", "ATLAS_VIEWER_THREADS": "2",
           "ATLAS_VIEWER_CACHE_DIR": str(root / "pictures"), "ATLAS_VIEWER_STATE_DIR": str(root / "state"),
           "ATLAS_VIEWER_MAX_BODY_BYTES": str(LIMIT), "ATLAS_VIEWER_LOG_LEVEL": "WARNING",
           "ATLAS_VIEWER_PRELOAD": "false"}
    with GunicornServer(env, python=sys.executable) as server:
        yield server


def raw_request(port, head, chunks=(), end=True, timeout=20):
    """Send ``head`` and ``chunks`` (chunked encoding, ended with the last chunk when ``end``) on a new socket;
    return the status and the JSON body of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head.encode())
        try:
            for chunk in chunks:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            if end:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before taking everything: the answer is read below
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < content_length(answer):
            part = sock.recv(65536)
            if not part:
                break
            answer += part
    head_part, body = answer.split(b"\r\n\r\n", 1)
    status = int(head_part.split(b" ", 2)[1])
    return status, json.loads(body[:content_length(answer)] or b"null")


def content_length(answer):
    for line in answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


CHUNKED = ("POST /_dash-update-component HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           "Transfer-Encoding: chunked\r\n\r\n")


@pytest.mark.slow
def test_a_chunked_body_over_the_bound_gets_413_json_while_the_client_still_sends(gunicorn):
    # 16 KiB sent, no last chunk: the server must answer from the first 4 KiB + 1 byte, not wait for the end
    status, body = raw_request(gunicorn.port, CHUNKED, [b"x" * 1024] * 16, end=False)
    assert status == 413
    assert body == {"error": f"body: the request body is over {LIMIT} bytes", "parameter": "body",
                    "reason": "body_too_large"}


@pytest.mark.slow
def test_a_chunked_body_under_the_bound_reaches_the_route(gunicorn):
    payload = json.dumps({"output": "nothing.children", "outputs": {}, "inputs": [], "pad": "p" * 2000}).encode()
    status, body = raw_request(gunicorn.port, CHUNKED, [payload[:1000], payload[1000:]])
    assert status == 400 and body["parameter"] != "body"  # read and checked by the callback guard


@pytest.mark.slow
def test_a_declared_length_over_the_bound_is_answered_without_sending_the_body(gunicorn):
    head = ("POST /_dash-update-component HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {100 * LIMIT}\r\n\r\n")
    status, body = raw_request(gunicorn.port, head, end=False)  # the server would wait forever for the body
    assert status == 413 and body["reason"] == "body_too_large"


@pytest.mark.slow
def test_the_server_still_answers_after_refusing_large_bodies(gunicorn):
    import requests

    assert requests.get(gunicorn.base_url + "/healthz", timeout=30).status_code == 200
