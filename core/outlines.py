"""Region outlines of a view: the slab plane's region polygons cut to the tissue of the section (or the whole
plane) shown, their names and colours for a key, for the map and the exported figures alike.

A slab plane's polygons (``Atlas.polygons``) cover the whole plane; one section holds cells in only part of it,
so its outlines are cut to the area its cells cover (:func:`data_layer.geometry.tissue_area`) and never drawn
over empty space. A whole slab plane's are cut to the area of all its cells.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.context import ViewerContext

#: Views whose cut outlines are kept (a view's are computed once, then every zoom and toggle reuses them).
OUTLINE_CACHE_SIZE = 32
EMPTY = {"type": "FeatureCollection", "features": []}


def view_outlines(context: ViewerContext, dataset: str | None, slab_plane: str | None,
                  section: str | None = None) -> dict:
    """The region outlines of a section (or, with ``section`` None, a whole slab plane), cut to its tissue.

    Returns
    -------
    dict
        A GeoJSON FeatureCollection in slab mm (``properties.label`` and ``properties.color`` per feature),
        Polygon / MultiPolygon geometries; empty for a plane without polygons, a UMAP or an unknown place. The
        same object is returned for the same view: read it, do not change it.
    """
    from data_layer.geometry import clip_regions, tissue_area

    entry = context.catalog.get(dataset)
    if entry is None or not entry.spatial or not slab_plane:
        return EMPTY
    plane = entry.plane(slab_plane)
    if plane is None or not plane.has_polygons:
        return EMPTY
    if section is not None and section not in plane.sections:
        return EMPTY
    key = (entry.name, slab_plane, section)
    cache = context.outline_cache
    found = cache.get(key)
    if found is not None:
        return found
    where = {"section": section} if section else {"slab_plane": slab_plane}
    x, y = context.atlas.xy(entry.name, **where)
    outlines = clip_regions(context.atlas.polygons(entry.name, slab_plane), tissue_area(x, y))
    cache[key] = outlines
    while len(cache) > OUTLINE_CACHE_SIZE:
        cache.pop(next(iter(cache)), None)
    return outlines


@dataclass(frozen=True)
class RegionName:
    """Where a region's name goes: its label, outline colour and a point inside its largest part (slab mm)."""

    label: str
    color: str
    x: float
    y: float


def _polygon_parts(collection: dict | None):
    """``(label, colour, polygon)`` for every non-empty polygon of every feature of a GeoJSON FeatureCollection, in
    its order (a MultiPolygon gives each of its polygons); ``colour`` is the first feature's of that label, a
    feature without a readable geometry is skipped."""
    from shapely.geometry import shape

    colours: dict[str, str] = {}
    for feature in (collection or {}).get("features", []) or []:
        properties = feature.get("properties") or {}
        label = str(properties.get("label", "region"))
        try:
            geometry = shape(feature.get("geometry") or {})
        except (ValueError, TypeError, AttributeError, KeyError):
            continue
        for part in (list(geometry.geoms) if hasattr(geometry, "geoms") else [geometry]):
            if part.geom_type != "Polygon" or part.is_empty:
                continue
            colour = colours.setdefault(label, str(properties.get("color") or "#3c4149"))
            yield label, colour, part


def region_names(collection: dict | None) -> list[RegionName]:
    """One name per region label of ``collection`` (first feature's colour), at a point surely inside the
    largest polygon of that label (shapely's ``representative_point``), in the collection's order."""
    largest: dict[str, tuple[float, Any, str]] = {}
    for label, colour, part in _polygon_parts(collection):
        if part.area > 0 and (label not in largest or part.area > largest[label][0]):
            largest[label] = (part.area, part, colour)
    names = []
    for label, (_, part, colour) in largest.items():
        point = part.representative_point()
        names.append(RegionName(label, colour, float(point.x), float(point.y)))
    return names


@dataclass(frozen=True)
class RegionOutline:
    """A region's outline as a figure draws it: its label, colour, rings and where its name goes.

    Attributes
    ----------
    label, color : str
    rings : tuple of numpy.ndarray
        ``(k, 2)`` float64 closed rings (exteriors and holes) in slab mm.
    name_xy : (float, float) or None
        A point inside its largest part for the name (:func:`region_names`).
    """

    label: str
    color: str
    rings: tuple
    name_xy: tuple | None


def figure_outlines(collection: dict | None) -> list[RegionOutline]:
    """The outlines of ``collection`` grouped by region label (first feature's colour), in its order, as plain
    arrays for :mod:`rendering.figures`."""
    import numpy as np

    rings: dict[str, list] = {}
    colours: dict[str, str] = {}
    for label, colour, part in _polygon_parts(collection):
        colours.setdefault(label, colour)
        rings.setdefault(label, []).extend(
            np.asarray(ring.coords, dtype=np.float64)[:, :2] for ring in (part.exterior, *part.interiors))
    names = {name.label: (name.x, name.y) for name in region_names(collection)}
    return [RegionOutline(label, colours[label], tuple(parts), names.get(label)) for label, parts in rings.items()]
