"""A box or lasso selection as a compact, bounded value: what the selection store holds and what the picture and
export URLs carry (``selection=x0,x1,y0,y1`` for a box, ``selection=x1,y1,x2,y2,...`` for a lasso: the format of
:func:`read_selection`), and the linked clusters of another view as code ranges
(``clusters=3-7,12``).

Why the geometry travels in the URL (and not a selection id held in a server cache): the picture URL then still
names the whole picture, so the browser, the picture cache and a proxy cache it like any other; any gunicorn worker
can draw it without a shared cache; a copied link or an export of the selection needs nothing that can expire.
It stays small and bounded because a hand-drawn lasso (Plotly sends one vertex per mouse move, often hundreds) is
simplified to at most :data:`MAX_LASSO_VERTICES` vertices at a tolerance of a fraction of the view, and its
numbers are rounded. The count, the composition, the marker genes, the highlighted picture and the exported cells
are all computed from this same compacted polygon, so they always agree.

Pure functions of plain values (shapely simplifies the outline), plus :class:`SelectionMasks`: the one cache of
the cells inside a selection, shared by the page's callbacks, the picture route and the exports of one worker.
"""
from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from core.errors import ViewError

#: Most vertices a lasso drawn in the viewer keeps: its picture URL then stays under
#: :data:`MAX_URL_BYTES` (tested), so it passes any proxy's request-line limit.
MAX_LASSO_VERTICES = 120
#: Most vertices any route accepts in ``selection=`` (and the address bar in ``sel=``). A selection this long does
#: not fit in a URL: scripts send it in a POST form body (``/api/render``, ``/api/cells.<fmt>``, ``/export/...``).
MAX_SELECTION_VERTICES = 1000
#: Longest request line the viewer's own URLs need (gunicorn's default limit is 4094 bytes).
MAX_URL_BYTES = 4000
#: First simplification tolerance, as a fraction of the selection's extent.
SIMPLIFY_FRACTION = 0.002
#: Most linked terms a ``clusters=`` parameter may name, and the largest code it may hold.
MAX_LINKED_CODES = 20000
MAX_CODE = 999_999
#: ``clusters=`` value linking nothing (a code no taxonomy has): every cell of the view is dimmed.
NOTHING_LINKED = str(MAX_CODE)

_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def _finite(values: Iterable) -> list[float]:
    out = []
    for value in values:
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"a selection coordinate is not a finite number: {value!r}")
        out.append(number)
    return out


def _round(value: float) -> float:
    return float(f"{value:.6g}")


def compact_selection(kind: str, xs: Sequence[float], ys: Sequence[float],
                      max_vertices: int = MAX_LASSO_VERTICES) -> dict | None:
    """The selection as a small JSON-able dict ``{"kind", "xs", "ys"}``, or None when it encloses nothing.

    Parameters
    ----------
    kind : {"box", "lasso"}
    xs, ys : sequence of float
        box: the two x and the two y bounds (any order); lasso: the vertices (Plotly's ``lassoPoints``).
    max_vertices : int
        A lasso is simplified (Douglas-Peucker, growing tolerance) until it has at most this many vertices.

    Returns
    -------
    dict or None
        box: ``xs = [x0, x1]``, ``ys = [y0, y1]`` ascending; lasso: at least 3 vertices, without a closing
        repeat. Numbers rounded to 6 significant digits. None for an empty box or a lasso of fewer than three
        distinct vertices.
    """
    xs, ys = _finite(xs), _finite(ys)
    if len(xs) != len(ys):
        raise ValueError(f"a selection has {len(xs)} x values but {len(ys)} y values")
    if kind == "box":
        if len(xs) != 2:
            raise ValueError(f"a box selection needs two x and two y values, got {len(xs)}")
        (x0, x1), (y0, y1) = sorted(map(_round, xs)), sorted(map(_round, ys))
        if not (x0 < x1 and y0 < y1):
            return None
        return {"kind": "box", "xs": [x0, x1], "ys": [y0, y1]}
    if kind != "lasso":
        raise ValueError(f"selection kind {kind!r} must be 'box' or 'lasso'")
    points = np.column_stack([xs, ys]) if xs else np.zeros((0, 2))
    if len(points) > 1 and np.array_equal(points[0], points[-1]):
        points = points[:-1]
    points = _simplify(points, max_vertices)
    rounded = [(_round(x), _round(y)) for x, y in points]
    deduped = [p for i, p in enumerate(rounded) if i == 0 or p != rounded[i - 1]]
    if len(deduped) > 1 and deduped[0] == deduped[-1]:
        deduped.pop()
    if len(set(deduped)) < 3:
        return None
    return {"kind": "lasso", "xs": [p[0] for p in deduped], "ys": [p[1] for p in deduped]}


def _simplify(points: np.ndarray, max_vertices: int) -> np.ndarray:
    """At most ``max_vertices`` vertices of a closed outline, simplified with a growing tolerance."""
    if len(points) <= max_vertices:
        return points
    import shapely

    extent = float(max(np.ptp(points[:, 0]), np.ptp(points[:, 1]))) or 1.0
    ring = shapely.LineString(np.vstack([points, points[:1]]))
    tolerance = SIMPLIFY_FRACTION * extent
    for _ in range(40):
        simple = np.asarray(shapely.simplify(ring, tolerance, preserve_topology=False).coords)[:-1]
        if len(simple) <= max_vertices:
            return simple
        tolerance *= 1.5
    step = math.ceil(len(points) / max_vertices)  # pragma: no cover - a pathological outline: decimate
    return points[::step]


def selection_param(selection: Mapping | None) -> str | None:
    """The query value of a compact selection (``x0,x1,y0,y1`` or ``x1,y1,x2,y2,...``), None for none."""
    if not selection:
        return None
    xs, ys = selection["xs"], selection["ys"]
    if selection.get("kind") == "box":
        numbers: list[float] = [xs[0], xs[1], ys[0], ys[1]]
    else:
        numbers = [v for pair in zip(xs, ys) for v in pair]
    return ",".join(f"{float(v):.6g}" for v in numbers)


def parse_selection_param(raw: str | None, max_vertices: int = MAX_SELECTION_VERTICES) -> dict | None:
    """Inverse of :func:`selection_param`: ``{"kind", "xs", "ys"}`` or None for an empty value.

    Raises
    ------
    ValueError
        A value that is not a number, not finite, too many vertices, a box with ``x0 >= x1`` or ``y0 >= y1``, or
        a count of numbers that is neither 4 (box) nor an even number >= 6 (lasso).
    """
    if raw is None or not str(raw).strip():
        return None
    parts = [p for p in str(raw).split(",") if p.strip()]
    if len(parts) > 2 * max_vertices:
        raise ValueError(f"more than {max_vertices} vertices (send a longer outline in a POST body; at most "
                         f"{max_vertices})")
    numbers = []
    for part in parts:
        try:
            numbers.append(float(part))
        except ValueError:
            raise ValueError(f"{part.strip()[:30]!r} is not a number") from None
    if not all(math.isfinite(v) for v in numbers):
        raise ValueError("holds a number that is not finite")
    if len(numbers) == 4:
        x0, x1, y0, y1 = numbers
        if not (x0 < x1 and y0 < y1):
            raise ValueError("a box x0,x1,y0,y1 needs x0 < x1 and y0 < y1")
        return {"kind": "box", "xs": [x0, x1], "ys": [y0, y1]}
    if len(numbers) >= 6 and len(numbers) % 2 == 0:
        return {"kind": "lasso", "xs": numbers[0::2], "ys": numbers[1::2]}
    raise ValueError("expected a box x0,x1,y0,y1 or a lasso x1,y1,x2,y2,x3,y3,...")


def read_selection(raw: str | None, parameter: str = "selection") -> dict | None:
    """The ``selection=`` of a request, strictly: ``{"kind", "xs", "ys"}`` (:func:`parse_selection_param`), None when
    absent or empty.

    Raises
    ------
    ViewError
        Naming ``parameter``.
    """
    try:
        return parse_selection_param(raw)
    except ValueError as exc:
        raise ViewError(parameter, str(exc)) from None


def selection_where(selection: Mapping) -> dict[str, str]:
    """The place a selection store was drawn in, as keyword arguments of the atlas's cell methods (and of
    :meth:`SelectionMasks.mask`): ``section``, ``embedding`` (a neighborhood's UMAP) or ``slab_plane``; empty for
    a whole single-cell dataset's UMAP."""
    if selection.get("section"):
        return {"section": selection["section"]}
    if selection.get("embedding"):
        return {"embedding": selection["embedding"]}
    return {"slab_plane": selection["slab_plane"]} if selection.get("slab_plane") else {}


class SelectionMasks:
    """The cells inside a selection as a read-only ``(n,)`` bool mask over ``atlas.cells(dataset, **where)``,
    remembered for the last ``size`` selections (thread-safe: one per app, shared by a worker's threads).

    One lasso's count, composition, markers, highlighted picture and exported cells all read the same mask.
    """

    def __init__(self, atlas: Any, size: int = 8):
        self.atlas = atlas
        self.size = size
        self._lock = threading.Lock()
        self._masks: OrderedDict = OrderedDict()

    def mask(self, dataset: str, where: Mapping[str, str], geometry: Mapping) -> np.ndarray:
        """The mask of ``geometry`` (``{"kind", "xs", "ys"}``) over the cells of ``where`` (``section`` or
        ``slab_plane``; ``embedding`` for a neighborhood's UMAP; empty for a whole single-cell dataset).

        Returns
        -------
        numpy.ndarray
            ``(n,)`` bool, read-only (combine with ``&``, never in place).
        """
        from data_layer.geometry import cells_in_box, cells_in_polygon

        section, slab_plane, embedding = where.get("section"), where.get("slab_plane"), where.get("embedding")
        key = (dataset, section, slab_plane, embedding, geometry["kind"], tuple(map(float, geometry["xs"])),
               tuple(map(float, geometry["ys"])))
        with self._lock:
            found = self._masks.get(key)
            if found is not None:
                self._masks.move_to_end(key)
                return found
        x, y = self.atlas.xy(dataset, section, slab_plane, **({"embedding": embedding} if embedding else {}))
        if geometry["kind"] == "box":
            mask = cells_in_box(x, y, *geometry["xs"], *geometry["ys"])
        else:
            mask = cells_in_polygon(x, y, (geometry["xs"], geometry["ys"]))
        mask.setflags(write=False)
        with self._lock:
            self._masks[key] = mask
            while len(self._masks) > self.size:
                self._masks.popitem(last=False)
        return mask


def encode_codes(codes: Iterable[int]) -> str:
    """Category codes as sorted ranges: ``[3, 4, 5, 9]`` -> ``"3-5,9"`` (empty string for none)."""
    values = sorted({int(c) for c in codes if int(c) >= 0})
    parts: list[str] = []
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        parts.append(str(values[i]) if i == j else f"{values[i]}-{values[j]}")
        i = j + 1
    return ",".join(parts)


def decode_codes(raw: str | None, n_categories: int) -> np.ndarray:
    """Inverse of :func:`encode_codes`, checked: int64 codes, each in ``0 .. n_categories - 1``.

    Raises
    ------
    ValueError
        A part that is not ``N`` or ``N-M`` (``N <= M``), a code out of range, or more than
        :data:`MAX_LINKED_CODES` codes.
    """
    if raw is None or not str(raw).strip():
        return np.zeros(0, dtype=np.int64)
    chunks: list[np.ndarray] = []
    total = 0
    for part in str(raw).split(","):
        match = _RANGE.match(part.strip())
        if not match:
            raise ValueError(f"{part.strip()[:30]!r} is not a code or a range N-M")
        lo = int(match.group(1))
        hi = int(match.group(2)) if match.group(2) is not None else lo
        if hi < lo:
            raise ValueError(f"range {lo}-{hi} runs backwards")
        if hi >= n_categories:
            raise ValueError(f"code {hi} is out of range (there are {n_categories} terms)")
        total += hi - lo + 1
        if total > MAX_LINKED_CODES:
            raise ValueError(f"more than {MAX_LINKED_CODES} codes")
        chunks.append(np.arange(lo, hi + 1, dtype=np.int64))
    return np.unique(np.concatenate(chunks)) if chunks else np.zeros(0, dtype=np.int64)


def selection_from_event(selected_data: Mapping | None) -> dict | None:
    """The compact selection of a Plotly ``selectedData`` event (box ``range`` or ``lassoPoints``), or None.

    Plotly puts the geometry in ``range: {"x": [x0, x1], "y": [y0, y1]}`` (box) or ``lassoPoints: {"x": [...],
    "y": [...]}`` (lasso); a click or a cleared selection carries neither.
    """
    if not selected_data:
        return None
    rng = selected_data.get("range") or {}
    if rng.get("x") is not None and rng.get("y") is not None:
        try:
            return compact_selection("box", rng["x"], rng["y"])
        except (TypeError, ValueError):
            return None
    lasso = selected_data.get("lassoPoints") or {}
    if lasso.get("x") is not None and lasso.get("y") is not None:
        try:
            return compact_selection("lasso", lasso["x"], lasso["y"])
        except (TypeError, ValueError):
            return None
    return None
