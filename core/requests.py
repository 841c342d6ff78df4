"""Export and API requests: the view (the URL state's parameters, read strictly) plus figure or cell options.

The figure export (``/export/figure.<fmt>``), the cell export (``/export/cells.<fmt>``) and the HTTP API
(``/api/...``) take the SAME view parameters as the address bar (:data:`core.state.QUERY_KEYS`), read by the
same parser (:func:`core.state.parse_query`). The address bar is lenient (a bad value becomes a notice and a
default); here every notice is an error naming its parameter (:class:`ViewError`, answered with 400).
Pure functions of plain values: the catalog checks use the look-up functions the caller passes.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Mapping

from core.catalog import COLOR_BY_GENE, COLOR_BY_TWO_GENES, Catalog
from core.errors import ViewError
from core.state import GeneLookup, ViewState

#: Formats of a figure and of a cell export.
FIGURE_FORMATS = ("png", "svg", "pdf")
CELL_FORMATS = ("csv", "h5ad")
#: Units of a figure's width and height.
SIZE_UNITS = ("px", "in")
#: Figure defaults: 7 x 5 inches at 300 dpi (a journal column and a half).
DEFAULT_DPI = 300.0
DEFAULT_SIZE_IN = (7.0, 5.0)
#: dpi bounds and largest side in inches (those of ``rendering.figures``).
MIN_DPI, MAX_DPI = 50.0, 1200.0
MAX_SIZE_IN = 40.0
#: Largest number read as a width or height (in any unit), before the limits in pixels and inches are checked.
MAX_SIZE_NUMBER = 1e7
#: Legend entries of a figure: default and largest number of visible categories listed (in taxonomy order; past
#: the number, or past what fits the figure, those with the fewest cells are counted in one "+ N more" line).
MAX_LEGEND_ENTRIES = 400
DEFAULT_LEGEND_ENTRIES = MAX_LEGEND_ENTRIES
#: Longest title accepted.
MAX_TITLE_CHARS = 200
#: Genes one cell export may carry, and cells x genes values (a dense h5ad X of float32: 4 bytes each).
MAX_EXPORT_GENES = 200
MAX_EXPORT_VALUES = 50_000_000
#: Cells one export may carry.
MAX_EXPORT_CELLS = 2_000_000
#: Short-link ids: 10 characters of lowercase RFC 4648 base32.
SHARE_ID_RE = re.compile(r"^[a-z2-7]{10}$")


# ---------------------------------------------------------------------------------------------- numbers
def read_number(args: Mapping[str, str], key: str, default: float, lo: float, hi: float) -> float:
    """``args[key]`` as a finite float in ``[lo, hi]`` (``default`` when absent or empty), else an error naming it."""
    raw = args.get(key)
    if raw is None or str(raw).strip() == "":
        return default
    try:
        value = float(str(raw).strip())
    except ValueError:
        raise ViewError(key, f"{str(raw)[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise ViewError(key, "must be a finite number")
    if not lo <= value <= hi:
        raise ViewError(key, f"{value:g} is outside {lo:g}..{hi:g}")
    return value


def read_choice(args: Mapping[str, str], key: str, choices: tuple[str, ...], default: str) -> str:
    """``args[key]`` (lowercased) if one of ``choices`` (``default`` when absent), else an error naming it."""
    raw = args.get(key)
    value = default if raw is None or raw == "" else str(raw).strip().lower()
    if value not in choices:
        raise ViewError(key, f"{str(raw)[:40]!r} is not one of {', '.join(choices)}")
    return value


def read_flag(args: Mapping[str, str], key: str) -> bool:
    """``args[key]`` as a yes/no value (absent = no), else an error naming it."""
    raw = str(args.get(key, "")).strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ViewError(key, f"{raw[:40]!r} is not a yes/no value (1, 0, true, false)")


# ---------------------------------------------------------------------------------------------- figures
@dataclass(frozen=True)
class FigureOptions:
    """How to draw a figure.

    Attributes
    ----------
    fmt : {"png", "svg", "pdf"}
    width_in, height_in : float
        Figure size in inches.
    dpi : float
        Resolution; a PNG is ``width_px x height_px`` pixels with this dpi in its metadata.
    title : str or None
        Title; None = automatic (what is drawn and how it is coloured).
    legend_entries : int
        Visible categories listed at most (the most frequent in the view).
    outlines : bool
        Draw the region outlines of a section or slab plane (cut to its tissue, each named), as the map's
        "Region outlines" box does; on by default, as on screen.
    """

    fmt: str
    width_in: float
    height_in: float
    dpi: float
    title: str | None = None
    legend_entries: int = DEFAULT_LEGEND_ENTRIES
    outlines: bool = True

    @property
    def width_px(self) -> int:
        return int(round(self.width_in * self.dpi))

    @property
    def height_px(self) -> int:
        return int(round(self.height_in * self.dpi))



#: Figures of several panels: ``panels=species`` (the species side by side, ``sections=`` one per species),
#: ``panels=gallery`` (every section of the dataset) or ``panels=across`` (the highlighted term across species: the
#: panel of :mod:`core.species` as one figure, its maps the species side by side); absent = the one view.
PANEL_KINDS = ("species", "gallery", "across")
#: Path of the figure export route (``server.export``; rate-limited and in the export slots as ``/export/``).
EXPORT_FIGURE_PATH = "/export/figure.<fmt>"
#: Panels one figure may hold at most, and the smallest panel side (pixels at the figure's dpi) it may draw: a
#: gallery of more or smaller sections is refused rather than drawn as specks.
MAX_FIGURE_PANELS = 120
MIN_PANEL_PX = 48
#: View parameters a figure of panels refuses: its panels draw whole sections.
_VIEWPORT_KEYS = ("x0", "x1", "y0", "y1")

#: Figure parameters besides the view's.
FIGURE_KEYS = ("width", "height", "unit", "dpi", "title", "legend", "outlines", "panels", "sections")


def figure_options(args: Mapping[str, str], *, fmt: str, max_export_px: int) -> FigureOptions:
    """Read a figure's size, dpi, title and legend length; sizes are bounded by ``max_export_px``.

    Parameters
    ----------
    args : mapping of str to str
        ``width``, ``height`` (in ``unit``; default 7 x 5 in), ``unit`` (``px`` default, or ``in``), ``dpi``
        (default 300), ``title`` (default automatic; empty = none), ``legend`` (most entries listed; default and
        at most :data:`MAX_LEGEND_ENTRIES`: as many as fit), ``outlines`` (region outlines, yes/no; default yes).
    fmt : str
        ``png``, ``svg`` or ``pdf`` (from the route).
    max_export_px : int
        Largest side in pixels (``settings.max_export_px``).

    Raises
    ------
    ViewError
        Naming ``width``, ``height``, ``dpi``, ``unit``, ``title``, ``legend`` or ``outlines``; an oversized
        figure names the setting that bounds it.
    """
    if fmt not in FIGURE_FORMATS:
        raise ViewError("format", f"{str(fmt)[:20]!r} is not one of {', '.join(FIGURE_FORMATS)}")
    unit = read_choice(args, "unit", SIZE_UNITS, "px")
    dpi = read_number(args, "dpi", DEFAULT_DPI, MIN_DPI, MAX_DPI)
    sizes = {}
    for key, default_in in zip(("width", "height"), DEFAULT_SIZE_IN):
        default = default_in if unit == "in" else round(default_in * dpi)
        value = read_number(args, key, default, 0.0, MAX_SIZE_NUMBER)  # bounded before any arithmetic
        if not value > 0:
            raise ViewError(key, "must be positive")
        inches = value if unit == "in" else value / dpi
        pixels = inches * dpi
        if round(pixels) > max_export_px:
            raise ViewError(
                key, f"{pixels:.0f} px ({inches:.3g} in at {dpi:g} dpi) is over the export limit of "
                     f"{max_export_px} px (setting max_export_px, ATLAS_VIEWER_MAX_EXPORT_PX)")
        if round(pixels) < 16:
            raise ViewError(key, f"{pixels:.0f} px is too small for a figure (at least 16 px)")
        if inches > MAX_SIZE_IN:
            raise ViewError(key, f"{inches:.3g} in is over {MAX_SIZE_IN:g} in")
        sizes[key] = inches
    title = args.get("title")
    if title is not None:
        title = str(title)
        if len(title) > MAX_TITLE_CHARS:
            raise ViewError("title", f"is {len(title)} characters, over {MAX_TITLE_CHARS}")
        if any(ord(ch) < 32 for ch in title):
            raise ViewError("title", "holds control characters")
    legend = int(read_number(args, "legend", DEFAULT_LEGEND_ENTRIES, 0, MAX_LEGEND_ENTRIES))
    outlines = True if str(args.get("outlines") or "").strip() == "" else read_flag(args, "outlines")
    return FigureOptions(fmt=fmt, width_in=sizes["width"], height_in=sizes["height"], dpi=dpi, title=title,
                         legend_entries=legend, outlines=outlines)


@dataclass(frozen=True)
class PanelRequest:
    """A figure of several panels.

    Attributes
    ----------
    kind : {"species", "gallery", "across"}
    sections : tuple of (str or None)
        ``species`` and ``across``: the section of each side-by-side dataset, in their order (None = its first section; fewer
        entries than datasets leave the rest at their first). ``gallery``: empty (every section).
    """

    kind: str
    sections: tuple[str | None, ...] = ()


def panel_request(args: Mapping[str, str], catalog: Catalog, state: ViewState,
                  species_datasets: list[str]) -> PanelRequest | None:
    """Read ``panels`` and ``sections`` strictly; None for a figure of the one view.

    Parameters
    ----------
    args : mapping of str to str
        ``panels`` (``species``, ``gallery`` or ``across``; absent or empty = the one view) and, with ``species`` or
        ``across``, ``sections``:
        comma-separated section labels, one per side-by-side dataset in ``species_datasets`` order (an empty entry
        = that dataset's first section).
    catalog : Catalog
    state : ViewState
        The view read from ``args`` (the gallery draws its dataset).
    species_datasets : list of str
        The side-by-side datasets (``callbacks.compare.compare_datasets``).

    Raises
    ------
    ViewError
        Naming ``panels`` (unknown kind, no dataset to compare, a UMAP gallery, more than
        :data:`MAX_FIGURE_PANELS` sections), ``sections`` (not with ``species``, too many, unknown) or ``x0``
        (a viewport: panels draw whole sections).
    """
    raw = args.get("panels")
    if raw is None or str(raw).strip() == "":
        if str(args.get("sections") or "").strip():
            raise ViewError("sections", "applies to panels=species only (or panels=across)")
        return None
    kind = str(raw).strip().lower()
    if kind not in PANEL_KINDS:
        raise ViewError("panels", f"{str(raw)[:40]!r} is not one of {', '.join(PANEL_KINDS)}")
    if state.selection is not None:
        raise ViewError("selection", f"a figure of panels ({kind}) draws whole sections; leave out the selection")
    for key in _VIEWPORT_KEYS:
        if str(args.get(key) or "").strip():
            raise ViewError(key, f"a figure of panels ({kind}) draws whole sections; leave out x0, x1, y0, "
                                          "y1")
    if kind == "gallery":
        if str(args.get("sections") or "").strip():
            raise ViewError("sections", "applies to panels=species only (a gallery draws every section)")
        entry = catalog.get(state.dataset)
        if entry is None or not entry.spatial or not entry.sections:
            raise ViewError("panels", f"a gallery needs a dataset of sections; {state.dataset} has none")
        if len(entry.sections) > MAX_FIGURE_PANELS:
            raise ViewError("panels", f"{entry.name} has {len(entry.sections)} sections; a gallery figure "
                                               f"holds at most {MAX_FIGURE_PANELS}")
        return PanelRequest(kind)
    if not species_datasets:
        raise ViewError("panels", "the store holds no dataset of sections to put side by side")
    text = str(args.get("sections") or "")
    parts = [part.strip() for part in text.split(",")] if text.strip() else []
    if len(parts) > len(species_datasets):
        raise ViewError("sections", f"{len(parts)} sections for {len(species_datasets)} side-by-side "
                                             f"datasets ({', '.join(species_datasets)})")
    sections: list[str | None] = []
    for dataset, label in zip(species_datasets, parts):
        entry = catalog.get(dataset)
        if label and label not in entry.sections:
            first = next(iter(entry.sections), "")
            raise ViewError("sections", f"{label[:60]!r} is not a section of {dataset} "
                                                 f"({entry.species or dataset}; e.g. {first})")
        sections.append(label or None)
    return PanelRequest(kind, tuple(sections))


# ---------------------------------------------------------------------------------------------- cells
@dataclass(frozen=True)
class CellOptions:
    """What a cell export holds.

    Attributes
    ----------
    fmt : {"csv", "h5ad"}
    genes : tuple of str
        Gene symbols written (CSV columns, h5ad ``X``), in the asked order.
    selection : dict or None
        Cells chosen inside the view (``{"kind", "xs", "ys"}``: the view's ``selection``); None = every cell of the
        view.
    """

    fmt: str
    genes: tuple[str, ...] = ()
    selection: dict | None = None


#: Cell-export parameters besides the view's.
CELL_KEYS = ("genes",)


def cell_options(args: Mapping[str, str], state: ViewState, *, fmt: str, gene_lookup: GeneLookup,
                 has_genes: bool) -> CellOptions:
    """Read the genes and the selection of a cell export.

    ``genes`` is a comma-separated list of symbols or identifiers; without it, the view's gene (colour by gene)
    is written. ``genes=`` (empty) writes none.

    Raises
    ------
    ViewError
        Naming ``format``, ``genes`` or ``selection``.
    """
    if fmt not in CELL_FORMATS:
        raise ViewError("format", f"{str(fmt)[:20]!r} is not one of {', '.join(CELL_FORMATS)}")
    raw = args.get("genes")
    if raw is None:
        names = [state.gene] if state.gene and state.color_by in (COLOR_BY_GENE, COLOR_BY_TWO_GENES) else []
        if state.gene2 and state.color_by == COLOR_BY_TWO_GENES:
            names.append(state.gene2)
    else:
        names = [name.strip() for name in str(raw).split(",") if name.strip()]
    if names and not has_genes:
        raise ViewError("genes", f"{state.dataset} has no expression data")
    if len(names) > MAX_EXPORT_GENES:
        raise ViewError("genes", f"{len(names)} genes asked; at most {MAX_EXPORT_GENES}")
    symbols: list[str] = []
    for name in names:
        try:
            symbol = gene_lookup(state.dataset, name)
        except KeyError as exc:
            detail = exc.args[0] if exc.args and isinstance(exc.args[0], str) else ""
            raise ViewError("genes", f"unknown gene {name[:40]!r} in {state.dataset}"
                                              + (f" ({detail})" if detail else "")) from None
        if symbol not in symbols:
            symbols.append(symbol)
    selection = state.selection.geometry() if state.selection is not None else None
    return CellOptions(fmt=fmt, genes=tuple(symbols), selection=selection)


def share_id_ok(share_id: str) -> bool:
    """True when ``share_id`` has the form of a short-link id (``^[a-z2-7]{10}$``)."""
    return bool(SHARE_ID_RE.fullmatch(share_id or ""))
