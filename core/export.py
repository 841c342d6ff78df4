"""What the ``/export/`` routes, the HTTP API and the export panel answer with: a request's view and options read
strictly, then a figure (:mod:`core.figures`) or cells (:mod:`core.cells`), and a safe download name.

``GET /export/figure.<png|svg|pdf>`` and ``GET /export/cells.<csv|h5ad>`` take the address bar's parameters (read
strictly by :func:`core.state.strict_view`) plus the export options; being under ``/export/`` they go through the
export rate limit (``server.limits``). The HTTP API (``server.api``) calls the same functions; the export panel
(``callbacks.export_panel``) downloads a figure through ``dcc.Download`` and the cells through links to the routes.
"""
from __future__ import annotations

import logging
import re
from typing import Sequence


from core.compare import compare_datasets
from core.context import ViewerContext
from core.catalog import COLOR_BY_GENE, COLOR_BY_TWO_GENES
from core.errors import ViewError
from core.requests import (CELL_FORMATS, CELL_KEYS, EXPORT_FIGURE_PATH, FIGURE_KEYS, FigureOptions, PanelRequest,
                           cell_options, figure_options, panel_request)
from core.state import ViewState, strict_view
from core.cells import export_cells
from core.figures import render_comparison, render_figure

log = logging.getLogger(__name__)

#: Path prefix of the export routes (rate-limited by ``server.limits``).
EXPORT_CELLS_PATH = "/export/cells.<fmt>"
MIMETYPES = {"png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf", "csv": "text/csv",
             "h5ad": "application/x-hdf5"}


# ---------------------------------------------------------------------------------------------- names
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def export_filename(state: ViewState, kind: str, fmt: str, panels: str | None = None) -> str:
    """A safe download name: ``<dataset>_<section or plane>_<colour>.<fmt>`` (``kind`` = figure|cells; the colour
    is the level, the gene, or ``<gene>-<gene2>``);
    a figure of ``panels`` is ``species-side-by-side_<colour>``, ``<dataset>_gallery_<colour>`` or
    ``across-species_<term>``."""
    parts = [state.dataset or "atlas", state.section or state.slab_plane or "umap"]
    if panels == "across":
        return f"{_UNSAFE.sub('-', f'across-species_{state.term or state.dataset}').strip('-')[:150]}.{fmt}"
    if panels == "species":
        parts = ["species-side-by-side"]
    elif panels == "gallery":
        parts = [state.dataset or "atlas", "gallery"]
    if state.color_by == COLOR_BY_GENE and state.gene:
        parts.append(state.gene)
    elif state.color_by == COLOR_BY_TWO_GENES and state.gene and state.gene2:
        parts.append(f"{state.gene}-{state.gene2}")
    else:
        parts.append(state.color_by)
    if kind == "cells":
        parts.append("cells")
    name = "_".join(_UNSAFE.sub("-", str(p)).strip("-") for p in parts if p)
    return f"{name[:150]}.{fmt}"


# ---------------------------------------------------------------------------------------------- routes
def read_view(context: ViewerContext, args: dict[str, str], extra_keys: Sequence[str]) -> ViewState:
    """The view of a request, strictly (see :func:`core.state.strict_view`)."""
    return strict_view(args, context.catalog, gene_lookup=context.lookups.gene_symbol,
                       term_lookup=context.lookups.term_level, extra_keys=extra_keys)


def figure_request(context: ViewerContext, args: dict[str, str], fmt: str,
                   extra_keys: Sequence[str] = FIGURE_KEYS) -> tuple[ViewState, FigureOptions, PanelRequest | None]:
    """Parse a figure request strictly: the view, the options and the panels (None = the one view)."""
    state = read_view(context, args, extra_keys)
    options = figure_options(args, fmt=fmt, max_export_px=context.settings.max_export_px)
    request = panel_request(args, context.catalog, state, compare_datasets(context))
    return state, options, request


def figure_from_args(context: ViewerContext, args: dict[str, str], fmt: str,
                     extra_keys: Sequence[str] = FIGURE_KEYS) -> tuple[bytes, ViewState]:
    """Parse, render and return a figure of a request's parameters (the route's, the API's and the export
    panel's body): the one view, or with ``panels=species|gallery|across`` the side-by-side, gallery or
    across-species (:func:`core.species.render_across_figure`) figure."""
    state, options, request = figure_request(context, args, fmt, extra_keys)
    if request is None:
        return render_figure(context, state, options), state
    if request.kind == "across":
        from core.species import render_across_figure

        return render_across_figure(context, state, options, request), state
    return render_comparison(context, state, options, request), state


def cells_from_args(context: ViewerContext, args: dict[str, str], fmt: str) -> tuple[bytes, ViewState, int]:
    """Parse and export the cells of a request's parameters (the route's and the API's body)."""
    if fmt not in CELL_FORMATS:
        raise ViewError("format", f"{fmt[:20]!r} is not one of {', '.join(CELL_FORMATS)}")
    state = read_view(context, args, CELL_KEYS)
    entry = context.catalog.get(state.dataset)
    options = cell_options(args, state, fmt=fmt, gene_lookup=context.lookups.gene_symbol,
                           has_genes=entry.has_genes)
    data, n_cells = export_cells(context, state, options)
    return data, state, n_cells
