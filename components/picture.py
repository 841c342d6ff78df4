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

from components.catalog import COLOR_BY_GENE, COLOR_BY_REGION, Catalog
from components.viewport import Window

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

    def cache_key(self) -> tuple:
        """Plain-value key of the picture (for the picture cache)."""
        return (
            self.dataset, self.section, self.slab_plane, self.color_by, self.gene, self.term, self.term_level,
            *(round(v, 9) for v in self.window), self.width_px, self.height_px, self.vmin, self.vmax,
        )

    def url(self) -> str:
        """``/render/map.png?...`` with every parameter (numbers rounded so equal views share a URL)."""
        pairs: list[tuple[str, str]] = [("dataset", self.dataset)]
        if self.section:
            pairs.append(("section", self.section))
        elif self.slab_plane:
            pairs.append(("slab_plane", self.slab_plane))
        pairs.append(("color_by", self.color_by))
        if self.color_by == COLOR_BY_GENE and self.gene:
            pairs.append(("gene", self.gene))
        if self.term and self.term_level:
            pairs += [("term", self.term), ("term_level", self.term_level)]
        pairs += [(key, f"{value:.6g}") for key, value in zip(("x0", "x1", "y0", "y1"), self.window)]
        pairs += [("w", str(self.width_px)), ("h", str(self.height_px))]
        if self.color_by == COLOR_BY_GENE and self.vmin is not None and self.vmax is not None:
            pairs += [("vmin", f"{self.vmin:.6g}"), ("vmax", f"{self.vmax:.6g}")]
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
             "x0", "x1", "y0", "y1", "w", "h", "vmin", "vmax", "v"}
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
    if color_by == COLOR_BY_GENE:
        if gene is None:
            raise PictureRequestError("gene", "is required when color_by=gene")
        try:
            gene = gene_lookup(dataset, gene)
        except KeyError as exc:
            raise PictureRequestError("gene", str(exc.args[0] if exc.args else exc)) from None
    elif gene is not None:
        gene = None  # ignored unless colouring by gene
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
    return PictureRequest(
        dataset=dataset, section=section, slab_plane=slab_plane, color_by=color_by, gene=gene, term=term,
        term_level=term_level, window=Window(x0, x1, y0, y1), width_px=width_px, height_px=height_px,
        vmin=vmin, vmax=vmax,
    )
