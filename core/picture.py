"""The picture request: every parameter of ``GET /render/map.png``, written into its URL and checked when read.

The URL carries the whole picture (dataset, section or slab plane, colour-by, gene, highlighted term, data window,
size, gene range), so the browser, the picture cache and a proxy can cache it. :func:`parse_picture_args` checks
every value against the catalog and raises :class:`PictureRequestError` naming the parameter otherwise; no request
value ever reaches a file path.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping
from urllib.parse import urlencode

from core.catalog import COLOR_BY_GENE, COLOR_BY_REGION, COLOR_BY_TWO_GENES, Catalog
from core.selection import MAX_CODE, decode_codes, encode_codes, parse_selection_param, selection_param
from core.viewport import Window

#: Path of the picture route.
PICTURE_PATH = "/render/map.png"


class PictureRequestError(ValueError):
    """A bad picture request; ``parameter`` names the offending query parameter."""

    def __init__(self, parameter: str, message: str):
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter


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

    def cache_key(self) -> tuple:
        """Plain-value key of the picture (for the picture cache)."""
        return (
            self.dataset, self.section, self.slab_plane, self.color_by, self.gene, self.term, self.term_level,
            *(round(v, 9) for v in self.window), self.width_px, self.height_px, self.vmin, self.vmax,
            self.selection, self.clusters, self.gene2, self.blend_mode, self.threshold_a, self.threshold_b,
        )

    def url(self) -> str:
        """``/render/map.png?...`` with every parameter (numbers rounded so equal views share a URL)."""
        pairs: list[tuple[str, str]] = [("dataset", self.dataset)]
        if self.section:
            pairs.append(("section", self.section))
        elif self.slab_plane:
            pairs.append(("slab_plane", self.slab_plane))
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
        if self.color_by == COLOR_BY_GENE and self.vmin is not None and self.vmax is not None:
            pairs += [("vmin", f"{self.vmin:.6g}"), ("vmax", f"{self.vmax:.6g}")]
        if self.selection:
            pairs.append(("selection", self.selection))
        if self.clusters:
            pairs.append(("clusters", self.clusters))
        return PICTURE_PATH + "?" + urlencode(pairs)


def _float(args: Mapping[str, str], key: str, required: bool) -> float | None:
    raw = args.get(key)
    if raw is None or raw == "":
        if required:
            raise PictureRequestError(key, "is required")
        return None
    try:
        value = float(raw)
    except ValueError:
        raise PictureRequestError(key, f"{raw!r} is not a number") from None
    if not math.isfinite(value):
        raise PictureRequestError(key, f"{raw!r} is not finite")
    return value


def _size(args: Mapping[str, str], key: str, max_px: int) -> int:
    raw = args.get(key)
    if raw is None or raw == "":
        raise PictureRequestError(key, "is required")
    try:
        value = int(raw)
    except ValueError:
        raise PictureRequestError(key, f"{raw!r} is not a whole number of pixels") from None
    if not 1 <= value <= max_px:
        raise PictureRequestError(key, f"{value} must be between 1 and {max_px} pixels")
    return value


def parse_picture_args(
    args: Mapping[str, str],
    catalog: Catalog,
    *,
    max_px: int,
    gene_lookup: Callable[[str, str], str],
    term_exists: Callable[[str, str, str], bool],
) -> PictureRequest:
    """Check the query parameters of a picture request.

    Parameters
    ----------
    args : mapping
        Query parameters (``flask.request.args``).
    catalog : Catalog
        What the store holds.
    max_px : int
        Largest picture side allowed.
    gene_lookup : callable
        ``(dataset, gene) -> symbol``; raises ``KeyError`` for an unknown gene.
    term_exists : callable
        ``(dataset, level, name) -> bool``.

    Returns
    -------
    PictureRequest

    Raises
    ------
    PictureRequestError
        Naming the first bad parameter.
    """
    known = {"dataset", "section", "slab_plane", "color_by", "gene", "term", "term_level",
             "x0", "x1", "y0", "y1", "w", "h", "vmin", "vmax", "v",
             "selection", "clusters", "gene2", "blend", "ta", "tb"}
    for key in args:
        if key not in known:
            raise PictureRequestError(key, "is not a parameter of this picture")
    dataset = args.get("dataset") or ""
    entry = catalog.get(dataset)
    if entry is None:
        raise PictureRequestError("dataset", f"unknown dataset {dataset!r}")

    section = args.get("section") or None
    slab_plane = args.get("slab_plane") or None
    if entry.spatial:
        if section is not None:
            found = entry.sections.get(section)
            if found is None:
                raise PictureRequestError("section", f"unknown section {section!r} in {dataset}")
            if slab_plane is not None and slab_plane != found.slab_plane:
                raise PictureRequestError("slab_plane", f"section {section} is in {found.slab_plane}, not {slab_plane}")
            slab_plane = found.slab_plane
        elif slab_plane is not None:
            if entry.plane(slab_plane) is None:
                raise PictureRequestError("slab_plane", f"unknown slab plane {slab_plane!r} in {dataset}")
        else:
            raise PictureRequestError("section", f"a section or a slab_plane of {dataset} is required")
    elif section is not None or slab_plane is not None:
        raise PictureRequestError("section" if section else "slab_plane", f"{dataset} has no sections")

    color_by = args.get("color_by") or ""
    if color_by not in entry.color_by_choices():
        raise PictureRequestError(
            "color_by", f"{color_by!r} is not one of {', '.join(entry.color_by_choices())}"
        )
    gene = args.get("gene") or None
    if color_by in (COLOR_BY_GENE, COLOR_BY_TWO_GENES):
        if gene is None:
            raise PictureRequestError("gene", f"is required when color_by={color_by}")
        try:
            gene = gene_lookup(dataset, gene)
        except KeyError as exc:
            raise PictureRequestError("gene", str(exc.args[0] if exc.args else exc)) from None
    elif gene is not None:
        gene = None  # ignored unless colouring by gene
    two = _two_genes(args, dataset, color_by, gene_lookup)
    if color_by == COLOR_BY_REGION and not entry.spatial:  # pragma: no cover - excluded by choices
        raise PictureRequestError("color_by", f"{dataset} has no regions")

    term = args.get("term") or None
    term_level = args.get("term_level") or None
    if term is not None or term_level is not None:
        if term is None or term_level is None:
            raise PictureRequestError("term" if term is None else "term_level", "term and term_level go together")
        if term_level not in entry.levels:
            raise PictureRequestError("term_level", f"{term_level!r} is not a level of {dataset}")
        if not term_exists(dataset, term_level, term):
            raise PictureRequestError("term", f"no {term_level} called {term!r} in {dataset}")

    x0, x1, y0, y1 = (_float(args, key, True) for key in ("x0", "x1", "y0", "y1"))
    if not x0 < x1:
        raise PictureRequestError("x1", f"must be greater than x0 ({x0:g})")
    if not y0 < y1:
        raise PictureRequestError("y1", f"must be greater than y0 ({y0:g})")
    width_px = _size(args, "w", max_px)
    height_px = _size(args, "h", max_px)
    vmin, vmax = _float(args, "vmin", False), _float(args, "vmax", False)
    if (vmin is None) != (vmax is None):
        raise PictureRequestError("vmin" if vmin is None else "vmax", "vmin and vmax go together")
    if vmin is not None and not vmin < vmax:
        raise PictureRequestError("vmax", f"must be greater than vmin ({vmin:g})")
    selection = _selection(args)
    clusters = _clusters(args)
    return PictureRequest(
        dataset=dataset, section=section, slab_plane=slab_plane, color_by=color_by, gene=gene, term=term,
        term_level=term_level, window=Window(x0, x1, y0, y1), width_px=width_px, height_px=height_px,
        vmin=vmin, vmax=vmax, selection=selection, clusters=clusters, **two,
    )


def _selection(args: Mapping[str, str]) -> str | None:
    """The ``selection`` parameter, checked and written canonically (so equal selections share a cache key)."""
    try:
        return selection_param(parse_selection_param(args.get("selection")))
    except ValueError as exc:
        raise PictureRequestError("selection", str(exc)) from None


def _clusters(args: Mapping[str, str]) -> str | None:
    """The ``clusters`` parameter (code ranges of the finest level), checked for form and written canonically;
    codes past the taxonomy's last term match no cell."""
    raw = args.get("clusters") or None
    if raw is None:
        return None
    try:
        return encode_codes(decode_codes(raw, MAX_CODE + 1)) or None
    except ValueError as exc:
        raise PictureRequestError("clusters", str(exc)) from None


def _two_genes(args: Mapping[str, str], dataset: str, color_by: str,
               gene_lookup: Callable[[str, str], str]) -> dict:
    """``gene2``, ``blend`` (mode) and the thresholds ``ta``/``tb`` of a two-gene picture (ignored otherwise)."""
    if color_by != COLOR_BY_TWO_GENES:
        return {}
    raw = args.get("gene2") or None
    if raw is None:
        raise PictureRequestError("gene2", "is required when color_by=two_genes")
    try:
        gene2 = gene_lookup(dataset, raw)
    except KeyError as exc:
        raise PictureRequestError("gene2", str(exc.args[0] if exc.args else exc)) from None
    mode = args.get("blend") or "blend"
    if mode not in ("blend", "both"):
        raise PictureRequestError("blend", f"{mode[:20]!r} is not one of blend, both")
    threshold_a, threshold_b = _float(args, "ta", False), _float(args, "tb", False)
    return {"gene2": gene2, "blend_mode": mode,
            "threshold_a": threshold_a if mode == "both" else None,
            "threshold_b": threshold_b if mode == "both" else None}
