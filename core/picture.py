"""The picture request: every parameter of ``GET /render/map.png``, written into its URL and read back by the
view's one reader.

The URL carries the whole picture (dataset, section or slab plane, colour-by, gene, highlighted term, data window,
size, gene range), so the browser, the picture cache and a proxy can cache it. :func:`parse_picture_args` reads
the view with the address bar's grammar in strict mode (:func:`core.state.strict_view`) and raises
:class:`core.errors.ViewError` naming the first bad parameter; no request value ever reaches a file path.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import urlencode

from core.catalog import COLOR_BY_GENE, COLOR_BY_TWO_GENES, Catalog
from core.selection import MAX_CODE, decode_codes, encode_codes, selection_param
from core.state import GeneLookup, TermLookup, ViewState, strict_view
from core.errors import ViewError
from core.viewport import Window

#: Path of the picture route.
PICTURE_PATH = "/render/map.png"


@dataclass(frozen=True)
class PictureRequest:
    """One picture: what to draw, where and how big.

    Attributes
    ----------
    dataset : str
    section, slab_plane : str or None
        For a spatial dataset: a section, or a whole slab plane (section None); both None for UMAP datasets.
    color_by : str
        Taxonomy level, ``"region"`` or ``"gene"``.
    gene : str or None
        Gene symbol or identifier (``color_by == "gene"``).
    term, term_level : str or None
        Highlighted term (others dimmed).
    window : Window
        Data window drawn.
    width_px, height_px : int
        Picture size.
    vmin, vmax : float or None
        Gene range; None = the gene's default range.
    y_down : bool
        Row 0 at ``window.y0`` (sections) instead of ``window.y1`` (UMAP).
    selection : str or None
        A box or lasso (:func:`core.selection.selection_param` format): its cells are highlighted.
    clusters : str or None
        Codes of the finest taxonomy level (:func:`core.selection.encode_codes` ranges): the
        clusters of a selection in another view, highlighted here. With a term too, only cells in all are bright.
    gene2 : str or None
        Second gene of ``color_by == "two_genes"`` (``gene`` is the first).
    blend_mode : {"blend", "both"}
        Two genes: every cell in its blend colour, or only the cells above both thresholds.
    threshold_a, threshold_b : float or None
        Thresholds (log2) of ``blend_mode == "both"`` (None = 0, detected at all).
    embedding : str or None
        A single-cell dataset's neighborhood UMAP (its cells only, in its coordinates); None = the whole UMAP.
    """

    dataset: str
    section: str | None
    slab_plane: str | None
    color_by: str
    gene: str | None
    term: str | None
    term_level: str | None
    window: Window
    width_px: int
    height_px: int
    vmin: float | None = None
    vmax: float | None = None
    selection: str | None = None
    clusters: str | None = None
    gene2: str | None = None
    blend_mode: str = "blend"
    threshold_a: float | None = None
    threshold_b: float | None = None
    embedding: str | None = None

    def cache_key(self) -> tuple:
        """Plain-value key of the picture (for the picture cache)."""
        return (
            self.dataset, self.section, self.slab_plane, self.color_by, self.gene, self.term, self.term_level,
            *(round(v, 9) for v in self.window), self.width_px, self.height_px, self.vmin, self.vmax,
            self.selection, self.clusters, self.gene2, self.blend_mode, self.threshold_a, self.threshold_b,
            self.embedding,
        )

    def url(self) -> str:
        """``/render/map.png?...`` with every parameter (numbers rounded so equal views share a URL)."""
        pairs: list[tuple[str, str]] = [("dataset", self.dataset)]
        if self.section:
            pairs.append(("section", self.section))
        elif self.slab_plane:
            pairs.append(("slab_plane", self.slab_plane))
        elif self.embedding:
            pairs.append(("embedding", self.embedding))
        pairs.append(("color_by", self.color_by))
        if self.color_by in (COLOR_BY_GENE, COLOR_BY_TWO_GENES) and self.gene:
            pairs.append(("gene", self.gene))
        if self.color_by == COLOR_BY_TWO_GENES and self.gene2:
            pairs.append(("gene2", self.gene2))
            if self.blend_mode == "both":
                pairs += [("blend", "both"), ("ta", f"{self.threshold_a or 0:.6g}"),
                          ("tb", f"{self.threshold_b or 0:.6g}")]
        if self.term and self.term_level:
            pairs += [("term", self.term), ("term_level", self.term_level)]
        pairs += [(key, f"{value:.6g}") for key, value in zip(("x0", "x1", "y0", "y1"), self.window)]
        pairs += [("w", str(self.width_px)), ("h", str(self.height_px))]
        if self.vmin is not None and self.vmax is not None:  # a gene's or a numeric column's (view_picture)
            pairs += [("vmin", f"{self.vmin:.6g}"), ("vmax", f"{self.vmax:.6g}")]
        if self.selection:
            pairs.append(("selection", self.selection))
        if self.clusters:
            pairs.append(("clusters", self.clusters))
        return PICTURE_PATH + "?" + urlencode(pairs)


def view_picture(state: ViewState, window: Window, width_px: int, height_px: int, *,
                 numeric: bool = False) -> PictureRequest:
    """The picture request of a view at a size (what the map's picture URL holds, at another resolution); a
    selection of the view's own place (``sel_view=map``) is highlighted, written canonically.

    The one place where a view's colouring is cleaned for a picture: the gene only when colouring by gene(s), the
    range (``vmin``, ``vmax``) only for one gene or a numeric cell column (``numeric``: the caller knows the
    dataset's columns, :meth:`core.catalog.DatasetEntry.is_numeric`), two genes without the second yet as the
    first alone, thresholds only in ``both`` mode.
    """
    if state.color_by == COLOR_BY_TWO_GENES and not state.gene2:
        state = state.replace(color_by=COLOR_BY_GENE)  # until the second gene is known: the first alone
    gene = state.gene if state.color_by in (COLOR_BY_GENE, COLOR_BY_TWO_GENES) else None
    by_gene = (gene is not None and state.color_by == COLOR_BY_GENE) or (numeric and state.color_by not in
                                                                          (COLOR_BY_GENE, COLOR_BY_TWO_GENES))
    two = {}
    if state.color_by == COLOR_BY_TWO_GENES:
        two = {"gene2": state.gene2, "blend_mode": state.blend_mode,
               "threshold_a": state.threshold_a if state.blend_mode == "both" else None,
               "threshold_b": state.threshold_b if state.blend_mode == "both" else None}
    return PictureRequest(
        dataset=state.dataset, section=state.section, slab_plane=None if state.section else state.slab_plane,
        color_by=state.color_by, gene=gene, term=state.term, term_level=state.term_level if state.term else None,
        window=window, width_px=int(width_px), height_px=int(height_px),
        vmin=state.vmin if by_gene else None, vmax=state.vmax if by_gene else None,
        selection=selection_param(state.selection.geometry()) if state.selection and state.selection.view == "map"
        else None, embedding=state.embedding, **two,
    )


def _size(args: Mapping[str, str], key: str, max_px: int) -> int:
    raw = args.get(key)
    if raw is None or raw == "":
        raise ViewError(key, "is required")
    try:
        value = int(raw)
    except ValueError:
        raise ViewError(key, f"{str(raw)[:40]!r} is not a whole number of pixels") from None
    if not 1 <= value <= max_px:
        raise ViewError(key, f"{value} must be between 1 and {max_px} pixels")
    return value


#: Parameters of a picture besides the view's (the view's ``selection`` included): its size, the store version and
#: the linked clusters of a selection in another view.
PICTURE_KEYS = ("w", "h", "v", "clusters")


def parse_picture_args(
    args: Mapping[str, str],
    catalog: Catalog,
    *,
    max_px: int,
    gene_lookup: GeneLookup,
    term_lookup: TermLookup,
) -> PictureRequest:
    """Read a picture request strictly: the view by the one reader (:func:`core.state.strict_view`, the address
    bar's grammar), then the picture's own parameters (:data:`PICTURE_KEYS`).

    Parameters
    ----------
    args : mapping
        Query parameters (``flask.request.args``).
    catalog : Catalog
        What the store holds.
    max_px : int
        Largest picture side allowed.
    gene_lookup, term_lookup : callable
        See :data:`core.state.GeneLookup` and :data:`core.state.TermLookup`.

    Returns
    -------
    PictureRequest

    Raises
    ------
    ViewError
        Naming the first bad parameter.
    """
    state = strict_view(args, catalog, gene_lookup=gene_lookup, term_lookup=term_lookup, extra_keys=PICTURE_KEYS)
    if state.viewport is None:
        raise ViewError("x0", "is required: a picture names its data window x0, x1, y0, y1")
    width_px = _size(args, "w", max_px)
    height_px = _size(args, "h", max_px)
    picture = view_picture(state, state.viewport, width_px, height_px,
                           numeric=catalog.get(state.dataset).is_numeric(state.color_by))
    return dataclasses.replace(picture, clusters=_clusters(args))


def _clusters(args: Mapping[str, str]) -> str | None:
    """The ``clusters`` parameter (code ranges of the finest level), checked for form and written canonically;
    codes past the taxonomy's last term match no cell."""
    raw = args.get("clusters") or None
    if raw is None:
        return None
    try:
        return encode_codes(decode_codes(raw, MAX_CODE + 1)) or None
    except ValueError as exc:
        raise ViewError("clusters", str(exc)) from None
