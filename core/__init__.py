"""The view and what is computed from it, in plain Python: no Dash, no Flask.

The view state and its one reader (:mod:`core.state`), the catalog snapshot (:mod:`core.catalog`), picture
requests and the picture pipeline (:mod:`core.picture`, :mod:`core.render`), selections (:mod:`core.selection`),
export and API requests (:mod:`core.requests`) and figure and cell export (:mod:`core.export`).
"""
