"""Coronal basal ganglia geometry for the demo sections (right hemisphere, slab millimetres).

Two kinds of slab plane are drawn for each species, in that species' own millimetres (``u`` from the
midline laterally, ``v`` from the dorsal edge ventrally, so ``v`` grows downwards like ``y_slab_mm``):

* ``anterior`` (the nucleus accumbens level): the anterior horn of the lateral ventricle beside the septum,
  the caudate head bulging into it, the anterior limb of the internal capsule crossed by striatal cell
  bridges, the putamen lateral to it, the accumbens joining caudate and putamen ventrally, the anterior
  commissure, the ventral pallidum and the olfactory tubercle with islands of Calleja on the ventral surface;
* ``posterior`` (the pallidal and subthalamic level): the body of the lateral ventricle with the caudate body
  in its lateral angle, the thalamus, the posterior limb of the internal capsule, and the lentiform nucleus:
  a wedge whose convex base faces laterally and whose apex points medially, divided by the medullary laminae
  into putamen (lateral), external and internal globus pallidus; ventrally the cerebral peduncle, the
  substantia nigra and the subthalamic nucleus.

Both carry the corpus callosum, the white matter above the striatum, the external capsule, claustrum, extreme
capsule and insular cortex. The structures are drawn once in a template (human millimetres) as smoothed
outlines; a :class:`SpeciesShape` changes their proportions (internal capsule width, ventricle and caudate
size, insular folding) and scales them: the human and macaque planes are mosaics of blocks cut around the
basal ganglia, the marmoset plane is a whole smooth (lissencephalic) hemisphere with its cortical mantle.
Each plane is a list of compartments (first match wins) giving cell density and composition; region polygons
(``STR, GP, GPe, GPi, VeP, SN, STH``) are what the release's GeoJSON files hold.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from shapely import affinity
from shapely.geometry import LineString, MultiPolygon, Polygon, box
from shapely.ops import unary_union

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

#: Internal capsule width of the template (human millimetres).
_HUMAN_CAPSULE = 3.0


@dataclass(frozen=True)
class SpeciesShape:
    """How one species' basal ganglia differ from the human template.

    Attributes
    ----------
    name : str
        Species (``Human``, ``Macaque``, ``Marmoset``).
    scale : float
        Species millimetres per template millimetre (human 1).
    capsule : float
        Internal capsule width in template millimetres (human 3; thinner in smaller brains, where caudate and
        putamen lie closer).
    ventricle : float
        Size of the lateral ventricle relative to the template's.
    caudate : float
        Size of the caudate relative to the template's.
    putamen : float
        Size of the lentiform nucleus (putamen and pallidum) relative to the template's.
    insular_sulci : int
        Sulci cut into the insular cortex (0: smooth, lissencephalic).
    sulcus_depth : float
        Depth of those sulci (template millimetres).
    whole_hemisphere : bool
        Whether the section is a whole hemisphere with its cortical mantle (else blocks around the basal ganglia).
    cortex : float
        Thickness of the cortical mantle (template millimetres) of a whole hemisphere.
    """

    name: str
    scale: float
    capsule: float
    ventricle: float
    caudate: float
    putamen: float
    insular_sulci: int
    sulcus_depth: float
    whole_hemisphere: bool = False
    cortex: float = 0.0


SPECIES_SHAPES = {
    "Human": SpeciesShape("Human", 1.0, 3.0, 1.0, 1.0, 1.0, 3, 3.0),
    "Macaque": SpeciesShape("Macaque", 0.47, 2.3, 1.25, 1.08, 0.95, 1, 1.6),
    "Marmoset": SpeciesShape("Marmoset", 0.24, 1.6, 1.7, 1.2, 1.0, 0, 0.0, whole_hemisphere=True, cortex=8.0),
}


@dataclass
class Compartment:
    """A piece of tissue with one cell density (relative; grey matter 1) and one composition key."""

    name: str
    geometry: Polygon | MultiPolygon
    density: float
    composition: str


@dataclass
class PlaneAnatomy:
    """Compartments (priority order) and region polygons of one plane kind, in the species' millimetres."""

    kind: str
    compartments: list[Compartment]
    regions: dict[str, Polygon | MultiPolygon]
    striosomes: list[Polygon]
    tissue: Polygon | MultiPolygon

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(u_min, v_min, u_max, v_max)`` of the tissue (mm)."""
        return tuple(self.tissue.bounds)  # type: ignore[return-value]

    def compartment(self, name: str) -> Compartment:
        """The compartment called ``name``."""
        for comp in self.compartments:
            if comp.name == name:
                return comp
        raise KeyError(name)

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


# ------------------------------------------------------------------------------------------------ drawing helpers

def _smooth(points: list[tuple[float, float]], iterations: int = 3) -> Polygon:
    """A closed outline through ``points`` rounded by Chaikin corner cutting (organic, not an ellipse)."""
    p = np.asarray(points, dtype=np.float64)
    for _ in range(iterations):
        q = np.roll(p, -1, axis=0)
        p = np.column_stack([0.75 * p + 0.25 * q, 0.25 * p + 0.75 * q]).reshape(-1, 2)
    return Polygon(p).buffer(0)


def _ellipse(cu: float, cv: float, a: float, b: float, rot: float = 0.0) -> Polygon:
    circle = shapely.Point(0, 0).buffer(1.0, quad_segs=24)
    return affinity.translate(affinity.rotate(affinity.scale(circle, a, b), rot), cu, cv)


def _band(points: list[tuple[float, float]], width: float, cap: str = "round") -> Polygon:
    return LineString(points).buffer(width / 2, cap_style=cap, join_style="round")


def _polys(geom) -> list[Polygon]:
    return [p for p in getattr(geom, "geoms", [geom]) if p.geom_type == "Polygon" and p.area > 1e-6]


def _multi(*geoms) -> MultiPolygon:
    """A MultiPolygon of the polygon parts of ``geoms`` (which must not overlap)."""
    parts: list[Polygon] = []
    for g in geoms:
        parts += _polys(g)
    return MultiPolygon(parts)


def _largest(geom) -> Polygon:
    parts = _polys(geom)
    return max(parts, key=lambda p: p.area) if parts else Polygon()


def _lateral_of(geom, u_min: float):
    return geom.intersection(box(u_min, -100, 200, 200))


def _striosomes(rng: np.random.Generator, inside, n: int, size: float) -> list[Polygon]:
    """Up to ``n`` patches (striosomes) inside ``inside``, not touching each other."""
    out: list[Polygon] = []
    minx, miny, maxx, maxy = inside.bounds
    core = inside.buffer(-0.3 * size)
    tries = 0
    while len(out) < n and tries < 600:
        tries += 1
        cu, cv = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
        blob = _ellipse(cu, cv, size * rng.uniform(0.5, 1.1), size * rng.uniform(0.35, 0.8), rng.uniform(0, 180))
        if core.contains(blob) and not any(blob.buffer(0.4 * size).intersects(o) for o in out):
            out.append(blob)
    return out


def _lateral_layers(core, shape: SpeciesShape, u_cut: float) -> dict[str, Polygon]:
    """External capsule, claustrum, extreme capsule and insular cortex lateral to ``core`` (template mm)."""
    thin = 0.75 if shape.whole_hemisphere else 1.0
    # in a whole hemisphere the insula runs on into the lateral cortical mantle
    ec, cl, ex, ins = 1.1 * thin, 0.9 * thin, 0.9 * thin, 12.0 if shape.whole_hemisphere else 3.2
    d1, d2, d3, d4 = ec, ec + cl, ec + cl + ex, ec + cl + ex + ins
    rings = [core.buffer(d) for d in (d1, d2, d3, d4)]
    layers = {
        "external_capsule": _lateral_of(rings[0].difference(core), u_cut),
        "claustrum": _lateral_of(rings[1].difference(rings[0]), u_cut + 1.5),
        "extreme_capsule": _lateral_of(rings[2].difference(rings[1]), u_cut + 1.5),
        "insula": _lateral_of(rings[3].difference(rings[2]), u_cut + 3.0),
        "outline": rings[3],
    }
    if shape.whole_hemisphere:  # the cortex bends medially under the hemisphere (piriform, amygdala)
        vc = core.centroid.y
        half = Polygon([(u_cut + 3.0 + 0.9 * (vc + 100), -100), (200, -100), (200, 200),
                        (u_cut + 3.0 - 0.9 * (200 - vc), 200)])
        layers["insula"] = rings[3].difference(rings[2]).intersection(half)
    return layers


def _sulci(core, shape: SpeciesShape, u_cut: float) -> Polygon:
    """Sulci of the insular cortex: narrow clefts from the surface inwards (none when lissencephalic)."""
    if shape.insular_sulci <= 0:
        return Polygon()
    outer = core.buffer(6.1)
    minx, miny, maxx, maxy = core.bounds
    cu, cv = core.centroid.x, core.centroid.y
    cuts = []
    for k in range(shape.insular_sulci):
        angle = np.deg2rad(-38 + 76 * (k + 0.5) / shape.insular_sulci)
        far = (cu + 40 * np.cos(angle), cv + 40 * np.sin(angle))
        ray = LineString([(cu, cv), far])
        hit = ray.intersection(outer.exterior)
        if hit.is_empty:
            continue
        point = hit if hit.geom_type == "Point" else list(hit.geoms)[-1]
        inner = (point.x - shape.sulcus_depth * np.cos(angle), point.y - shape.sulcus_depth * np.sin(angle))
        cuts.append(LineString([inner, (point.x + 2 * np.cos(angle), point.y + 2 * np.sin(angle))])
                    .buffer(0.4, cap_style="round"))
    return _lateral_of(unary_union(cuts), u_cut + 3.0) if cuts else Polygon()


def _shift(geom, du: float):
    return affinity.translate(geom, du, 0.0)


def _grow(geom, factor: float, origin=None):
    return affinity.scale(geom, factor, factor, origin=origin if origin is not None else "centroid")


def _hemisphere(shape: SpeciesShape) -> Polygon:
    """The outline of a whole (marmoset-like) hemisphere at the basal ganglia level, template mm."""
    return _smooth([(0.0, -11.0), (12.0, -12.5), (26.0, -9.0), (36.5, -1.0), (41.5, 9.0), (41.0, 22.0),
                    (36.0, 32.0), (26.0, 38.5), (12.0, 40.0), (0.0, 39.5)], iterations=4).intersection(
        box(0.0, -40, 100, 100))


def _block(lateral_surface, ventral_v: float, dorsal_v: float, medial_bottom: float) -> Polygon:
    """Tissue of a mosaic of blocks: cut straight dorsally and at the midline, natural surfaces elsewhere."""
    ventral = _smooth([(0.0, dorsal_v), (20.0, dorsal_v), (24.0, ventral_v - 6), (18.0, ventral_v),
                       (8.0, ventral_v + 0.5), (0.0, medial_bottom)], iterations=3)
    body = unary_union([lateral_surface, ventral, box(0.0, dorsal_v, lateral_surface.centroid.x, ventral_v - 4)])
    body = body.buffer(2.0).buffer(-2.0)
    return _largest(body.intersection(box(0.0, dorsal_v, 100, 100)))


def _finish(kind: str, shape: SpeciesShape, comps: list[Compartment], regions: dict, striosomes: list,
            tissue) -> PlaneAnatomy:
    """Scale a template plane to the species' millimetres and clip every compartment to the tissue."""
    s = shape.scale

    def sc(g):
        return affinity.scale(g, s, s, origin=(0, 0))

    tissue_s = sc(tissue)
    comps_s = [Compartment(c.name, sc(c.geometry.intersection(tissue)), c.density, c.composition) for c in comps]
    regions_s = {k: sc(unary_union(_polys(g.intersection(tissue)))) for k, g in regions.items()}
    return PlaneAnatomy(kind, comps_s, regions_s, [sc(p) for p in striosomes], tissue_s)


# ------------------------------------------------------------------------------------------------------- planes

def posterior_plane(rng: np.random.Generator, shape: SpeciesShape | None = None) -> PlaneAnatomy:
    """The pallidal and subthalamic level (GPe, GPi, thalamus, internal capsule, STH, SN)."""
    shape = shape or SPECIES_SHAPES["Human"]
    du = shape.capsule - _HUMAN_CAPSULE  # the lentiform nucleus moves medially when the capsule is thinner

    callosum = _band([(0.0, 3.0), (8.0, 2.6), (16.0, 3.6), (23.0, 6.5)], 2.6)
    ventricle = _grow(_smooth([(0.6, 5.0), (5.0, 4.6), (9.5, 5.5), (10.6, 6.6), (7.0, 7.4), (3.0, 7.7),
                               (0.6, 7.3)]), shape.ventricle, origin=(0.6, 5.0)).difference(callosum)
    ependyma = ventricle.buffer(0.3).difference(ventricle).difference(callosum)
    caudate = _grow(_smooth([(8.8, 6.5), (11.0, 5.3), (13.4, 6.1), (13.3, 8.5), (11.3, 9.8), (9.4, 9.1)]),
                    shape.caudate).difference(ventricle.buffer(0.3)).difference(callosum)
    thalamus = _smooth([(0.6, 8.6), (5.0, 8.1), (9.0, 9.4), (11.0, 12.0), (11.5, 17.0), (10.6, 22.0),
                        (8.0, 24.5), (3.0, 25.0), (0.6, 24.5)]).difference(ventricle.buffer(0.3))
    apex = (13.6 + du, 19.5)
    lentiform = _grow(_shift(_smooth([(13.6, 19.5), (19.0, 12.5), (23.5, 8.2), (26.2, 8.6), (28.2, 12.5),
                                      (29.0, 17.5), (28.0, 22.5), (25.5, 26.5), (22.0, 27.5), (17.5, 24.5)],
                                     iterations=2), du), shape.putamen, origin=apex)
    lamina = 0.5
    pallidum = _grow(lentiform, 0.5, origin=apex)
    gpi = _grow(lentiform, 0.26, origin=apex)
    putamen = lentiform.difference(pallidum.buffer(lamina))
    gpe = pallidum.difference(gpi.buffer(0.8 * lamina))
    laminae = lentiform.difference(unary_union([putamen, gpe, gpi]))
    grey = unary_union([caudate, thalamus, lentiform])
    capsule = unary_union([
        grey.convex_hull.intersection(box(0, 4.0, 60, 26.0)),
        _band([(15.8 + du, 3.6), (13.6 + du, 10.0), (12.2 + du / 2, 16.0), (11.8, 22.0), (12.6, 26.5)],
              shape.capsule),
    ]).difference(grey).difference(ventricle.buffer(0.3))
    peduncle = _band([(12.8, 25.5), (11.6, 30.5), (8.0, 34.6)], 2.3)
    sn = _band([(10.4, 27.4), (9.2, 30.6), (5.6, 33.0)], 1.3).difference(peduncle)
    sth = _ellipse(7.6, 27.6, 2.6, 0.95, -58).difference(sn.buffer(0.15)).difference(peduncle)
    zi_hth = _smooth([(0.6, 24.6), (8.0, 24.4), (6.8, 28.5), (4.0, 33.0), (0.6, 34.5)]).difference(
        unary_union([sth, sn, peduncle]))

    u_cut = lentiform.centroid.x
    layers = _lateral_layers(lentiform, shape, u_cut)
    sulci = _sulci(lentiform, shape, u_cut)
    if shape.whole_hemisphere:
        tissue = _hemisphere(shape)
    else:
        tissue = _block(layers["outline"], 37.0, 0.0, 36.0)
    tissue = tissue.difference(sulci)
    strio = _striosomes(rng, putamen, 6, 1.0) + _striosomes(rng, caudate, 2, 0.8)
    comps = [
        Compartment("ventricle", ventricle, 0.0, "none"),
        Compartment("ependyma", ependyma, 1.4, "ependyma"),
        Compartment("corpus_callosum", callosum, 0.6, "white_matter"),
        Compartment("striosome", unary_union(strio), 1.0, "striosome"),
        Compartment("caudate", caudate, 1.0, "striatum"),
        Compartment("putamen", putamen, 1.0, "striatum"),
        Compartment("gpi", gpi, 0.6, "gpi"),
        Compartment("gpe", gpe, 0.62, "gpe"),
        Compartment("medullary_laminae", laminae, 0.55, "white_matter"),
        Compartment("sth", sth, 0.95, "sth"),
        Compartment("sn", sn, 0.8, "sn"),
        Compartment("cerebral_peduncle", peduncle, 0.5, "white_matter"),
        Compartment("internal_capsule", capsule, 0.55, "white_matter"),
        Compartment("thalamus", thalamus, 0.95, "thalamus"),
        Compartment("zona_incerta_hypothalamus", zi_hth, 0.9, "zi_hypothalamus"),
    ] + _outer_compartments(layers, tissue, shape, top_of_grey=5.0)
    regions = {"STR": _multi(caudate, putamen), "GP": pallidum, "GPe": gpe, "GPi": gpi, "STH": sth, "SN": sn}
    return _finish("posterior", shape, comps, regions, strio, tissue)


def anterior_plane(rng: np.random.Generator, shape: SpeciesShape | None = None) -> PlaneAnatomy:
    """The nucleus accumbens level (caudate head, anterior limb, putamen, NAC, ventral pallidum, tubercle)."""
    shape = shape or SPECIES_SHAPES["Human"]
    du = shape.capsule - _HUMAN_CAPSULE

    callosum = _band([(0.0, 3.0), (9.0, 2.6), (17.0, 3.4), (24.0, 6.0)], 2.8)
    septum = _smooth([(0.0, 4.4), (2.0, 4.4), (2.2, 12.0), (1.9, 20.0), (0.0, 20.5)], iterations=2)
    ventricle = _grow(_smooth([(1.9, 4.6), (7.4, 4.4), (5.2, 7.4), (3.8, 11.5), (3.0, 16.0), (2.2, 16.4)]),
                      shape.ventricle, origin=(1.9, 4.6)).difference(callosum)
    septum = septum.difference(ventricle.buffer(0.3))
    ependyma = ventricle.buffer(0.3).difference(ventricle).difference(callosum)
    capsule = _band([(17.5 + du, 4.2), (15.0 + du, 9.0), (12.8 + du / 2, 14.0), (11.2, 18.5)], shape.capsule,
                    cap="flat")
    caudate = _grow(_smooth([(3.0, 5.0), (8.0, 4.6), (12.5, 6.5), (12.4, 11.0), (10.6, 16.0), (8.0, 19.6),
                             (4.5, 19.4), (3.0, 15.0)]), shape.caudate, origin=(3.0, 5.0))
    caudate = caudate.difference(ventricle.buffer(0.3)).difference(callosum).difference(capsule)
    putamen = _grow(_shift(_smooth([(15.5, 9.5), (19.5, 5.8), (24.5, 7.0), (27.0, 12.0), (27.2, 18.0),
                                    (24.5, 23.5), (19.5, 24.8), (15.5, 21.5), (13.5, 17.0)]), du),
                    shape.putamen).difference(capsule).difference(callosum)
    nac = _smooth([(5.5, 18.8), (10.0, 18.4), (14.5 + du / 2, 19.6), (17.0 + du, 22.6), (15.0, 25.6),
                   (10.0, 26.0), (6.0, 24.2)]).difference(capsule)
    striatum = unary_union([caudate, putamen, nac]).buffer(0.05).buffer(-0.05)
    direction = np.array([17.5 - 11.2, 4.2 - 18.5])
    direction /= np.linalg.norm(direction)
    normal = np.array([direction[1], -direction[0]])
    bridges = []
    for t in np.arange(2.0, 15.0, 1.6):
        c = np.array([11.2 + du / 2, 18.5]) + t * direction
        a, b = c - 3.0 * normal, c + 3.0 * normal
        bridges.append(LineString([tuple(a), tuple(b)]).buffer(0.28 * shape.capsule / _HUMAN_CAPSULE + 0.12))
    bridges = unary_union(bridges).intersection(capsule)
    ac = _ellipse(13.5, 27.4, 3.2, 0.7, -8)
    vep = _band([(7.0, 28.4), (13.0, 29.2), (20.0, 28.2)], 1.9).difference(ac).difference(striatum)
    ot = _band([(5.5, 31.6), (13.0, 32.4), (21.0, 31.3)], 1.6).difference(vep.buffer(0.2))
    islands = [_ellipse(7.5 + 3.4 * i, 32.3 + 0.3 * np.sin(i), 0.5, 0.3, 10 * i) for i in range(4)]
    strio = _striosomes(rng, putamen, 5, 1.0) + _striosomes(rng, caudate, 4, 0.9)

    u_cut = putamen.centroid.x
    layers = _lateral_layers(putamen, shape, u_cut)
    sulci = _sulci(putamen, shape, u_cut)
    if shape.whole_hemisphere:
        tissue = _hemisphere(shape)
    else:
        tissue = _block(layers["outline"], 33.6, 0.0, 33.2)
    tissue = tissue.difference(sulci)
    comps = [
        Compartment("ventricle", ventricle, 0.0, "none"),
        Compartment("ependyma", ependyma, 1.4, "ependyma"),
        Compartment("corpus_callosum", callosum, 0.6, "white_matter"),
        Compartment("striosome", unary_union(strio), 1.0, "striosome"),
        Compartment("septum", septum, 0.95, "septum"),
        Compartment("caudate", caudate, 1.0, "striatum"),
        Compartment("putamen", putamen, 1.0, "striatum"),
        Compartment("nac", nac, 1.05, "accumbens"),
        Compartment("striatal_bridges", bridges, 0.9, "striatum"),
        Compartment("internal_capsule", capsule, 0.55, "white_matter"),
        Compartment("anterior_commissure", ac, 0.5, "white_matter"),
        Compartment("islands_of_calleja", unary_union(islands), 2.2, "islands_of_calleja"),
        Compartment("olfactory_tubercle", ot, 1.1, "olfactory_tubercle"),
        Compartment("vep", vep, 0.8, "ventral_pallidum"),
    ] + _outer_compartments(layers, tissue, shape, top_of_grey=4.6)
    regions = {"STR": _multi(striatum, ot.difference(striatum)), "VeP": vep}
    return _finish("anterior", shape, comps, regions, strio, tissue)


def _outer_compartments(layers: dict, tissue, shape: SpeciesShape, top_of_grey: float) -> list[Compartment]:
    """The lateral layers, the white matter above the striatum, the cortical mantle and the rest."""
    comps = [
        Compartment("external_capsule", layers["external_capsule"], 0.55, "white_matter"),
        Compartment("claustrum", layers["claustrum"], 1.0, "claustrum"),
        Compartment("extreme_capsule", layers["extreme_capsule"], 0.55, "white_matter"),
        Compartment("insula", layers["insula"], 1.05, "cortex"),
    ]
    if shape.whole_hemisphere:
        inner = tissue.buffer(-shape.cortex)
        # the medial wall below the corpus callosum (septum, thalamus, hypothalamus) has no cortex
        mantle = tissue.difference(inner).difference(box(0.0, 1.5, 14.0, 60.0))
        white = inner.difference(inner.buffer(-1.6)).difference(box(0.0, 1.5, 14.0, 60.0))
        comps += [Compartment("cortex", mantle, 1.05, "cortex"),
                  Compartment("white_matter", white, 0.55, "white_matter")]
    comps += [
        Compartment("corona_radiata", box(0.0, -100.0, 100.0, top_of_grey + 1.5), 0.55, "white_matter"),
        Compartment("basal_forebrain", box(4.0, 24.0, 100.0, 100.0), 0.9, "basal_forebrain"),
        Compartment("other", tissue, 0.85, "other_grey"),
    ]
    return comps


@dataclass(frozen=True)
class SpeciesFrame:
    """Maps a plane's millimetres to slab millimetres: a gentle warp and the slab origin.

    ``scale`` multiplies the plane's millimetres (1 when the plane is already drawn at the species' size).
    """

    scale: float
    origin: tuple[float, float]
    warp: tuple[float, float, float, float]  # amplitude_u, phase_u, amplitude_v, phase_v (mm)
    extent: tuple[float, float] = (31.0, 30.0)  # (width, height) of the plane in mm: the warp's wavelength

    def to_slab(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        au, pu, av, pv = self.warp
        width, height = self.extent
        uu = u + au * np.sin(2 * np.pi * v / height + pu)
        vv = v + av * np.sin(2 * np.pi * u / width + pv)
        return self.origin[0] + self.scale * uu, self.origin[1] + self.scale * vv

    def geometry_to_slab(self, geom):
        def f(coords: np.ndarray) -> np.ndarray:
            x, y = self.to_slab(coords[:, 0], coords[:, 1])
            return np.column_stack([x, y])

        return shapely.transform(geom, f)
