"""What every route answers with: a request's parameters, a file download and a JSON error naming the parameter."""
from __future__ import annotations

from flask import Response, jsonify, request

from core.errors import ViewError
from core.export import MIMETYPES


def file_response(data: bytes, fmt: str, filename: str) -> Response:
    """A download response: the file, its type, and ``Content-Disposition: attachment``."""
    response = Response(data, mimetype=MIMETYPES[fmt])
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "private, no-store"
    return response


def error_response(exc: ViewError, status: int | None = None) -> Response:
    """``{"error", "parameter"}`` JSON with ``status`` (default: the error's own, 400, or 503 for a damaged
    dataset)."""
    response = jsonify(exc.to_json())
    response.status_code = status or exc.status
    return response


def request_args() -> dict[str, str]:
    """The current request's parameters (first value of each): the query string, and for a POST the form body too
    (a selection too long for a URL travels there; the same names, read by the same reader).

    Raises
    ------
    core.errors.ViewError
        Naming a parameter given twice, once in the URL and once in the body.
    """
    args = {key: request.args.get(key, "") for key in request.args}
    if request.method == "POST":
        for key in request.form:
            if key in args:
                raise ViewError(key, "is given both in the URL and in the POST body")
            args[key] = request.form.get(key, "")
    return args
