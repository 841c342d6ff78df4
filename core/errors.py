"""The one error type of the view's reader: a request refused, naming its parameter."""
from __future__ import annotations


class ViewError(ValueError):
    """A request the view's reader refuses (strict mode, every HTTP route): ``parameter`` names the query parameter,
    answered with 400 and JSON ``{"error", "parameter"}``."""

    def __init__(self, parameter: str, message: str):
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = message

    def to_json(self) -> dict[str, str]:
        """``{"error": ..., "parameter": ...}`` for a JSON 400 answer."""
        return {"error": str(self), "parameter": self.parameter}
