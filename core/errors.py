"""The one error type of the view's reader: a request refused, naming its parameter (and its HTTP status)."""
from __future__ import annotations


class ViewError(ValueError):
    """A request the view's reader refuses (strict mode, every HTTP route): ``parameter`` names the query parameter,
    answered with ``status`` (400) and JSON ``{"error", "parameter"}``."""

    status = 400

    def __init__(self, parameter: str, message: str):
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = message

    def to_json(self) -> dict[str, str]:
        """``{"error": ..., "parameter": ...}`` for a JSON 400 answer."""
        return {"error": str(self), "parameter": self.parameter}


class DatasetUnavailable(ViewError):
    """A request naming a dataset that is damaged in the store: 503 (the server cannot serve it until the store
    is prepared again; the other datasets still serve), naming the dataset, never its files' paths."""

    status = 503

    def __init__(self, dataset: str):
        super().__init__("dataset", f"{dataset} is damaged in the store (files missing or truncated) and cannot be "
                                    f"served until it is prepared again; the other datasets are served")
        self.dataset = dataset

    def to_json(self) -> dict[str, str]:
        return {**super().to_json(), "dataset": self.dataset}
