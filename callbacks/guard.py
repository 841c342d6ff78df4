"""The boundary of the page's callbacks: a request to ``/_dash-update-component`` is checked before any callback
runs, so a malformed or hostile one gets a clear ``400`` (JSON ``{"error", "parameter"}``), never a ``500``.

Checked: the body is a JSON object; its ``output`` names a server callback of this app (not a clientside one);
its ``inputs`` and ``state`` are exactly that callback's (the same components and properties, in order); every
value has the type its property holds (a dropdown ``value`` is text, a number or a list of them; ``n_clicks`` a
whole number; a graph's event a JSON object...) and the body is bounded in size. A callback that still fails on
values of the right type but that make no sense (``TypeError``, ``ValueError``, ``KeyError``...) answers ``400`` too,
with the error logged; anything else stays a server error.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from flask import jsonify, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

#: Largest body of one callback request (a figure in a State can be large: the map's polygons).
MAX_BODY_BYTES = 8 * 2**20
#: Errors of a callback that mean "these values make no sense here", answered 400.
BAD_VALUE_ERRORS = (TypeError, ValueError, KeyError, IndexError, AttributeError, LookupError, ArithmeticError)

_NUMBER = (int, float)


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, bool, *_NUMBER))


def _value(value: Any) -> bool:
    """A component ``value``: text, a number, a flag, None, or a list of those (multi-select, checklist)."""
    return _scalar(value) or (isinstance(value, list) and all(_scalar(v) for v in value))


def _count(value: Any) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0)


def _object(value: Any) -> bool:
    return value is None or isinstance(value, dict)


def _text(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _flag(value: Any) -> bool:
    return value is None or isinstance(value, bool)


def _json(value: Any) -> bool:
    return value is None or isinstance(value, (dict, list, str, bool, *_NUMBER))


#: What each property may hold; a property not listed may hold any JSON value.
PROPERTY_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "value": (_value, "text, a number or a list of them"),
    "n_clicks": (_count, "a whole number of clicks"),
    "search": (_text, "text"),
    "search_value": (_text, "text"),
    "hidden": (_flag, "true or false"),
    "figure": (_object, "a figure object"),
    "relayoutData": (_object, "an object"),
    "selectedData": (_object, "an object"),
    "clickData": (_object, "an object"),
    "hoverData": (_object, "an object"),
    "data": (_json, "a JSON value"),
}


class CallbackRequestError(ValueError):
    """A callback request refused; ``parameter`` names the part of the body at fault."""

    def __init__(self, parameter: str, message: str):
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter


def _dependencies(body: dict, key: str, declared: list[dict], callback: str) -> None:
    given = body.get(key, [])
    if not isinstance(given, list):
        raise CallbackRequestError(key, "must be a list")
    if len(given) != len(declared):
        raise CallbackRequestError(key, f"{len(given)} given; the callback of {callback[:80]} takes "
                                        f"{len(declared)}")
    for index, (item, wanted) in enumerate(zip(given, declared)):
        where = f"{key}[{index}]"
        if not isinstance(item, dict):
            raise CallbackRequestError(where, "must be an object with id, property and value")
        if item.get("id") != wanted["id"] or item.get("property") != wanted["property"]:
            raise CallbackRequestError(where, f"is not {wanted['id']}.{wanted['property']}")
        check = PROPERTY_TYPES.get(wanted["property"])
        if check is not None and "value" in item and not check[0](item["value"]):
            raise CallbackRequestError(f"{wanted['id']}.{wanted['property']}", f"must be {check[1]}")


def _outputs(given: Any, declared: Any) -> None:
    """``outputs`` of the body: one ``{"id", "property"}`` for a callback of one output, else a list of them in the
    callback's order."""
    def same(item: Any, wanted: Any) -> bool:
        # an output shared by several callbacks (allow_duplicate) travels as "<property>@<hash of the callback>"
        return (isinstance(item, dict) and item.get("id") == wanted.component_id
                and isinstance(item.get("property"), str)
                and item["property"].split("@", 1)[0] == wanted.component_property)

    if isinstance(declared, (list, tuple)):
        if not isinstance(given, list) or len(given) != len(declared):
            raise CallbackRequestError("outputs", f"must list the callback's {len(declared)} outputs")
        for index, (item, wanted) in enumerate(zip(given, declared)):
            if not same(item, wanted):
                raise CallbackRequestError(f"outputs[{index}]", f"is not {wanted}")
    elif not same(given, declared):
        raise CallbackRequestError("outputs", f"is not {declared}")


def check_callback_request(body: Any, callback_map: dict) -> None:
    """Check one ``/_dash-update-component`` body against the app's callbacks.

    Raises
    ------
    CallbackRequestError
        Naming the part of the body at fault.
    """
    if not isinstance(body, dict):
        raise CallbackRequestError("body", "must be a JSON object")
    output = body.get("output")
    if not isinstance(output, str):
        raise CallbackRequestError("output", "must be text")
    callback = callback_map.get(output)
    if callback is None or callback.get("callback") is None:
        raise CallbackRequestError("output", f"{output[:80]!r} is not a server callback of this page")
    _outputs(body.get("outputs"), callback["output"])
    changed = body.get("changedPropIds", [])
    if not isinstance(changed, list) or not all(isinstance(c, str) for c in changed):
        raise CallbackRequestError("changedPropIds", "must be a list of text")
    _dependencies(body, "inputs", callback["inputs"], output)
    _dependencies(body, "state", callback.get("state", []), output)


def install_callback_guard(app: Any) -> None:
    """Check every callback request of ``app`` before Dash dispatches it, and answer 400 for a callback that fails
    on values that make no sense."""
    server = app.server
    path = app.config.routes_pathname_prefix + "_dash-update-component"

    def refuse(parameter: str, message: str):
        response = jsonify({"error": f"{parameter}: {message}", "parameter": parameter})
        response.status_code = 400
        return response

    @server.before_request
    def _check_callback_request():
        if request.path != path:
            return None
        if request.method != "POST":
            return refuse("method", "callbacks are POST requests")
        if (request.content_length or 0) > MAX_BODY_BYTES:
            return refuse("body", f"is over {MAX_BODY_BYTES} bytes")
        body = request.get_json(silent=True)
        try:
            check_callback_request(body, app.callback_map)
        except CallbackRequestError as exc:
            return refuse(exc.parameter, str(exc).split(": ", 1)[1])
        return None

    @server.errorhandler(Exception)
    def _callback_failed(exc: Exception):
        if isinstance(exc, HTTPException):
            return exc
        if request.path == path and isinstance(exc, BAD_VALUE_ERRORS):
            log.warning("a callback request failed on its values (%s: %s)", type(exc).__name__, exc)
            return refuse("inputs", "these values cannot be used by this callback")
        raise exc
