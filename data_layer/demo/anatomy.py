"""Coronal basal ganglia geometry for the demo sections (right hemisphere, slab millimetres).

Two kinds of slab plane are drawn in a canonical frame in human millimetres (``u`` from the midline
laterally, ``v`` from the dorsal edge ventrally, so ``v`` grows downwards like ``y_slab_mm``):

* ``anterior``: caudate head beside the lateral ventricle, the anterior limb of the internal capsule
  crossed by striatal cell bridges, the putamen, the nucleus accumbens joining them ventrally, the
  anterior commissure, the ventral pallidum and the olfactory tubercle with islands of Calleja;
* ``posterior``: caudate body, internal capsule, putamen, globus pallidus external and internal
  segments with their medullary laminae, thalamus medially, subthalamic nucleus and substantia nigra
  ventrally.

Both carry corpus callosum, external/extreme capsules, claustrum and insular cortex. Each plane is a list
of compartments (first match wins) giving cell density and composition; region polygons
(``STR, GP, GPe, GPi, VeP, SN, STH``) are what the release's GeoJSON files hold. A species is the
canonical frame scaled (human 1, macaque 1/2, marmoset 1/4), gently warped and moved to its slab origin.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from shapely import affinity
from shapely.geometry import LineString, MultiPolygon, Polygon, box
from shapely.ops import unary_union

#: Extent of the canonical frame (human millimetres).
FRAME_U, FRAME_V = 31.0, 30.0

#: Region labels in the order of ``cell_anatomical_annotations.csv``.
REGION_COLUMNS = ["Basal ganglia and adjacent", "STR", "GP", "GPe", "GPi", "VeP", "SN", "STH"]
REGION_COLORS = {
    "Basal ganglia and adjacent": "#BEBEBE", "STR": "#cd86cc", "GP": "#7AE361", "GPe": "#53DB33",
    "GPi": "#A7DB33", "VeP": "#9b19f5", "STH": "#907991", "SN": "#89522A",
}
REGION_DESCRIPTIONS = {
    "Basal ganglia and adjacent": "Basal ganglia and adjacent", "STR": "striatum", "GP": "globus pallidus",
    "GPe": "external segment of globus pallidus", "GPi": "internal segment of globus pallidus",
    "VeP": "ventral pallidus", "STH": "subthalamic nucleus", "SN": "substantia nigra",
}
REGION_IDENTIFIERS = {
    "Basal ganglia and adjacent": "basal_ganglia_and_adjacent", "STR": "DHBA:10333", "GP": "DHBA:10342",
    "GPe": "DHBA:10343", "GPi": "DHBA:10344", "VeP": "DHBA:10345", "STH": "DHBA:10466", "SN": "DHBA:12251",
}
REGION_ORDER = ["Basal ganglia and adjacent", "STR", "GP", "GPe", "GPi", "VeP", "STH", "SN"]


@dataclass
class Compartment:
    """A piece of tissue with one cell density (relative; grey matter 1) and one composition key."""

    name: str
    geometry: Polygon | MultiPolygon
    density: float
    composition: str


@dataclass
class PlaneAnatomy:
    """Compartments (priority order) and region polygons of one plane kind, in the canonical frame."""

    kind: str
    compartments: list[Compartment]
    regions: dict[str, Polygon | MultiPolygon]
    striosomes: list[Polygon]
    tissue: Polygon

    def compartment_of(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Index into ``compartments`` of each point (``-1`` outside the tissue); int16, shape (n,)."""
        out = np.full(len(u), -1, dtype=np.int16)
        todo = shapely.contains_xy(self.tissue, u, v)
        for i, comp in enumerate(self.compartments):
            if not todo.any():
                break
            idx = np.flatnonzero(todo)
            hit = shapely.contains_xy(comp.geometry, u[idx], v[idx])
            out[idx[hit]] = i
            todo[idx[hit]] = False
        return out


def _ellipse(cu: float, cv: float, a: float, b: float, rot: float = 0.0) -> Polygon:
    circle = shapely.Point(0, 0).buffer(1.0, quad_segs=24)
    return affinity.translate(affinity.rotate(affinity.scale(circle, a, b), rot), cu, cv)


def _band(points: list[tuple[float, float]], width: float) -> Polygon:
    return LineString(points).buffer(width / 2, cap_style="flat", join_style="round")


def _lateral(geom, u_min: float):
    return geom.intersection(box(u_min, -5, FRAME_U + 5, FRAME_V + 5))


def _capsules(putamen: Polygon, tissue: Polygon, u_cut: float) -> dict[str, Polygon]:
    ext = _lateral(putamen.buffer(1.0).difference(putamen), u_cut)
    claustrum = _lateral(putamen.buffer(1.7).difference(putamen.buffer(1.0)), u_cut + 2)
    extreme = _lateral(putamen.buffer(2.4).difference(putamen.buffer(1.7)), u_cut + 2)
    insula = _lateral(tissue.difference(putamen.buffer(2.4)), u_cut + 3.5)
    return {"external_capsule": ext, "claustrum": claustrum, "extreme_capsule": extreme, "insula": insula}


def _multi(*geoms) -> MultiPolygon:
    """A MultiPolygon of the polygon parts of ``geoms`` (which must not overlap)."""
    parts: list[Polygon] = []
    for g in geoms:
        parts += [p for p in getattr(g, "geoms", [g]) if p.geom_type == "Polygon" and p.area > 1e-6]
    return MultiPolygon(parts)


def _tissue() -> Polygon:
    # A tissue block with softly rounded corners.
    return box(0.3, 0.3, FRAME_U - 0.3, FRAME_V - 0.3).buffer(-1.0).buffer(1.0)


def _striosomes(rng: np.random.Generator, inside: Polygon, n: int) -> list[Polygon]:
    out = []
    minx, miny, maxx, maxy = inside.bounds
    tries = 0
    while len(out) < n and tries < 500:
        tries += 1
        cu, cv = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
        blob = _ellipse(cu, cv, rng.uniform(0.5, 1.1), rng.uniform(0.35, 0.8), rng.uniform(0, 180))
        if inside.buffer(-0.3).contains(blob) and not any(blob.buffer(0.4).intersects(o) for o in out):
            out.append(blob)
    return out


def posterior_plane(rng: np.random.Generator) -> PlaneAnatomy:
    """The globus pallidus level (GPe, GPi, thalamus, STH, rostral SN)."""
    tissue = _tissue()
    ventricle = _ellipse(2.6, 4.8, 0.7, 3.6, -10)
    ependyma = ventricle.buffer(0.3).difference(ventricle)
    callosum = _band([(0.0, 0.9), (8.0, 0.7), (16.0, 1.1)], 1.4)
    caudate = _ellipse(5.9, 5.6, 2.9, 4.2, -25).difference(ventricle.buffer(0.3)).difference(callosum)
    putamen = _ellipse(20.0, 12.5, 4.5, 8.6, -18)
    gpe = _ellipse(15.3, 15.8, 2.1, 5.8, -20).difference(putamen.buffer(0.45))
    gpi = _ellipse(12.5, 18.2, 1.5, 3.7, -20).difference(gpe.buffer(0.35))
    lamina_lat = gpe.buffer(0.45).difference(gpe).difference(putamen)
    lamina_med = gpi.buffer(0.35).difference(gpi).difference(gpe)
    thalamus = Polygon([(0.3, 10.5), (6.2, 9.5), (7.6, 14.0), (7.4, 22.0), (5.5, 24.0), (0.3, 24.0)])
    grey = unary_union([caudate, putamen, gpe, gpi, thalamus])
    capsule = unary_union([
        grey.convex_hull.intersection(box(0, 1.0, FRAME_U, 24.5)).difference(grey.buffer(0.05)),
        _band([(11.4, 0.2), (10.4, 6.0), (9.4, 12.0), (8.8, 18.0), (8.4, 24.5)], 3.0),
    ]).difference(ventricle.buffer(0.3)).difference(grey)
    sth = _ellipse(9.6, 26.0, 2.4, 0.95, 15)
    peduncle = _band([(8.0, 23.5), (11.5, 27.2), (16.0, 28.6)], 1.6).difference(sth)
    sn = _ellipse(12.8, 28.6, 3.3, 0.85, 18).difference(peduncle)
    zi_hth = Polygon([(0.3, 24.0), (6.5, 23.6), (8.2, 27.0), (6.5, 29.7), (0.3, 29.7)])
    striosomes = _striosomes(rng, putamen, 7) + _striosomes(rng, caudate, 3)
    caps = _capsules(putamen, tissue, 20.0)
    basal_forebrain = box(10.5, 22.0, 24.0, 30.0).difference(putamen.buffer(1.0))
    gp = unary_union([gpe, gpi, lamina_med]).buffer(0.05).buffer(-0.05)

    comps = [
        Compartment("ventricle", ventricle, 0.0, "none"),
        Compartment("ependyma", ependyma, 1.4, "ependyma"),
        Compartment("corpus_callosum", callosum, 0.6, "white_matter"),
        Compartment("striosome", unary_union(striosomes), 1.0, "striosome"),
        Compartment("caudate", caudate, 1.0, "striatum"),
        Compartment("putamen", putamen, 1.0, "striatum"),
        Compartment("gpi", gpi, 0.6, "gpi"),
        Compartment("gpe", gpe, 0.62, "gpe"),
        Compartment("medullary_laminae", unary_union([lamina_lat, lamina_med]), 0.55, "white_matter"),
        Compartment("sth", sth, 0.95, "sth"),
        Compartment("sn", sn, 0.8, "sn"),
        Compartment("cerebral_peduncle", peduncle, 0.5, "white_matter"),
        Compartment("internal_capsule", capsule, 0.55, "white_matter"),
        Compartment("thalamus", thalamus, 0.95, "thalamus"),
        Compartment("zona_incerta_hypothalamus", zi_hth, 0.9, "zi_hypothalamus"),
        Compartment("external_capsule", caps["external_capsule"], 0.55, "white_matter"),
        Compartment("claustrum", caps["claustrum"], 1.0, "claustrum"),
        Compartment("extreme_capsule", caps["extreme_capsule"], 0.55, "white_matter"),
        Compartment("insula", caps["insula"], 1.05, "cortex"),
        Compartment("basal_forebrain", basal_forebrain, 0.9, "basal_forebrain"),
        Compartment("other", tissue, 0.85, "other_grey"),
    ]
    regions = {
        "STR": _multi(caudate, putamen),
        "GP": gp, "GPe": gpe, "GPi": gpi, "STH": sth, "SN": sn,
    }
    return PlaneAnatomy("posterior", comps, regions, striosomes, tissue)


def anterior_plane(rng: np.random.Generator) -> PlaneAnatomy:
    """The nucleus accumbens level (NAC, ventral pallidum, olfactory tubercle)."""
    tissue = _tissue()
    ventricle = _ellipse(3.1, 7.2, 0.9, 5.4, -8)
    ependyma = ventricle.buffer(0.3).difference(ventricle)
    callosum = _band([(0.0, 0.9), (9.0, 0.6), (17.0, 1.0)], 1.4)
    septum = Polygon([(0.3, 1.7), (2.0, 1.7), (2.2, 13.0), (1.8, 19.5), (0.3, 19.5)]).difference(ventricle.buffer(0.3))
    caudate = _ellipse(7.2, 9.0, 4.1, 7.0, -20).difference(ventricle.buffer(0.3)).difference(callosum)
    putamen = _ellipse(19.6, 11.0, 4.8, 7.9, -22)
    nac = _ellipse(10.8, 18.9, 5.3, 3.4, 8)
    grey = unary_union([caudate, putamen, nac])
    capsule = unary_union([
        grey.convex_hull.intersection(box(4.0, 1.0, FRAME_U, 17.5)).difference(grey),
        _band([(13.3, 0.2), (12.7, 6.0), (12.4, 12.0), (13.0, 16.8)], 2.6),
    ]).difference(ventricle.buffer(0.3))
    nac = nac.difference(capsule)
    ac = _ellipse(13.8, 22.4, 4.2, 0.65, -4)
    vep = _ellipse(13.8, 24.4, 5.2, 1.5, -4).difference(ac)
    ot_band = _band([(6.0, 27.6), (13.0, 28.2), (20.5, 27.4)], 1.6)
    islands = [_ellipse(8.0 + 3.2 * i, 27.9 + 0.25 * np.sin(i), 0.45, 0.28, 10 * i) for i in range(4)]
    bridges = unary_union([_band([(9.5, v), (15.5, v + 0.6)], 0.45) for v in np.arange(2.5, 16.5, 1.7)])
    striatum_a = unary_union([caudate, nac]).buffer(0.05).buffer(-0.05)
    putamen_only = putamen.difference(striatum_a.buffer(0.4))
    striosomes = _striosomes(rng, putamen_only, 6) + _striosomes(rng, caudate, 4)
    caps = _capsules(putamen, tissue, 19.6)
    basal_forebrain = box(4.0, 21.0, 26.0, 30.0).difference(putamen.buffer(1.0))
    ot = ot_band.difference(vep.buffer(0.2))

    comps = [
        Compartment("ventricle", ventricle, 0.0, "none"),
        Compartment("ependyma", ependyma, 1.4, "ependyma"),
        Compartment("corpus_callosum", callosum, 0.6, "white_matter"),
        Compartment("striosome", unary_union(striosomes), 1.0, "striosome"),
        Compartment("septum", septum, 0.95, "septum"),
        Compartment("caudate", caudate, 1.0, "striatum"),
        Compartment("putamen", putamen_only, 1.0, "striatum"),
        Compartment("nac", nac, 1.05, "accumbens"),
        Compartment("striatal_bridges", bridges.intersection(capsule), 0.9, "striatum"),
        Compartment("internal_capsule", capsule, 0.55, "white_matter"),
        Compartment("anterior_commissure", ac, 0.5, "white_matter"),
        Compartment("islands_of_calleja", unary_union(islands), 2.2, "islands_of_calleja"),
        Compartment("olfactory_tubercle", ot, 1.1, "olfactory_tubercle"),
        Compartment("vep", vep, 0.8, "ventral_pallidum"),
        Compartment("external_capsule", caps["external_capsule"], 0.55, "white_matter"),
        Compartment("claustrum", caps["claustrum"], 1.0, "claustrum"),
        Compartment("extreme_capsule", caps["extreme_capsule"], 0.55, "white_matter"),
        Compartment("insula", caps["insula"], 1.05, "cortex"),
        Compartment("basal_forebrain", basal_forebrain, 0.9, "basal_forebrain"),
        Compartment("other", tissue, 0.85, "other_grey"),
    ]
    regions = {"STR": _multi(striatum_a, putamen_only, ot), "VeP": vep}
    return PlaneAnatomy("anterior", comps, regions, striosomes, tissue)


@dataclass(frozen=True)
class SpeciesFrame:
    """Maps canonical human millimetres to a species' slab millimetres: scale, warp, origin."""

    scale: float
    origin: tuple[float, float]
    warp: tuple[float, float, float, float]  # amplitude_u, phase_u, amplitude_v, phase_v (canonical mm)

    def to_slab(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        au, pu, av, pv = self.warp
        uu = u + au * np.sin(2 * np.pi * v / FRAME_V + pu)
        vv = v + av * np.sin(2 * np.pi * u / FRAME_U + pv)
        return self.origin[0] + self.scale * uu, self.origin[1] + self.scale * vv

    def geometry_to_slab(self, geom):
        def f(coords: np.ndarray) -> np.ndarray:
            x, y = self.to_slab(coords[:, 0], coords[:, 1])
            return np.column_stack([x, y])

        return shapely.transform(geom, f)
