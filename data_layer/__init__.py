"""The data layer: ABC cache -> prepared store -> :class:`Atlas`. No Dash, no plotting."""
from __future__ import annotations


def __getattr__(name):
    # `from data_layer import Atlas` without importing the heavy store code for the CLI's light commands.
    if name == "Atlas":
        from .atlas import Atlas

        return Atlas
    raise AttributeError(name)
