"""A versus B as plain values: the two groups of a comparison (two terms of one level, the selection and a term,
or one term in two species' datasets), their differential-expression table (:func:`data_layer.analysis.
compare_groups`: mean difference, fractions expressing, Welch's t-test, Benjamini-Hochberg adjusted p) and its
CSV download.

The analysis panel (``callbacks.markers``) and ``GET /export/markers.csv`` (``server.export``) read a comparison
the same way: ``a`` and ``b`` name a term at ``level``, or :data:`SELECTION` for the view's selection (the
address bar's ``selection`` over ``dataset`` and its ``section``, ``slab_plane`` or neighborhood UMAP
``embedding``); ``b_dataset`` puts B in another dataset (one term across species).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import urlencode

from core.context import ViewerContext
from core.errors import ViewError
from core.scope import where_of
from core.selection import selection_param
from core.state import ViewState, strict_view

#: The value of ``a`` or ``b`` that means the view's selection (a term name never starts with "@").
SELECTION = "@selection"
#: Path of the A-versus-B table download (under ``/export/``: the export rate limit applies).
EXPORT_MARKERS_PATH = "/export/markers.csv"
#: Parameters of the download besides the view's.
MARKERS_KEYS = ("level", "a", "b", "b_dataset")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Comparison:
    """What is compared: groups ``a`` and ``b`` (term names at ``level`` or :data:`SELECTION`) in ``dataset``
    (B in ``b_dataset``); ``where`` and ``selection`` (``{"kind", "xs", "ys"}``) place the selection."""

    dataset: str
    level: str | None
    a: str
    b: str
    b_dataset: str
    where: Mapping[str, str]
    selection: Mapping | None = None

    @property
    def two_datasets(self) -> bool:
        return self.b_dataset != self.dataset


def group_label(context: ViewerContext, comparison: Comparison, side: str) -> str:
    """The row label of group ``side`` ("a" or "b"): the term or "Selection", followed by the species (else the
    dataset) when the groups are in two datasets."""
    value, dataset = (comparison.a, comparison.dataset) if side == "a" else (comparison.b, comparison.b_dataset)
    label = "Selection" if value == SELECTION else value
    if comparison.two_datasets:
        entry = context.catalog.get(dataset)
        label += f" ({(entry.species if entry is not None else None) or dataset})"
    return label


def check(context: ViewerContext, comparison: Comparison) -> Comparison:
    """``comparison`` if both groups exist, else a :class:`ViewError` naming the parameter (``a``, ``b``,
    ``level``, ``b_dataset`` or ``selection``)."""
    for key, dataset in (("dataset", comparison.dataset), ("b_dataset", comparison.b_dataset)):
        entry = context.catalog.get(dataset)
        if entry is None:
            raise ViewError(key, f"unknown dataset {str(dataset)[:60]!r}")
        if not entry.has_genes:
            raise ViewError(key, f"{dataset} has no expression data")
    for key, value, dataset in (("a", comparison.a, comparison.dataset), ("b", comparison.b, comparison.b_dataset)):
        if not value:
            raise ViewError(key, "is required: a term name at the level, or @selection")
        if value == SELECTION:
            if comparison.selection is None:
                raise ViewError("selection", f"{key}=@selection needs a selection")
            if dataset != comparison.dataset:
                raise ViewError(key, "the selection is in dataset, not b_dataset")
            continue
        level = comparison.level
        if not level or level not in context.catalog.get(dataset).levels:
            raise ViewError("level", f"{str(level)[:40]!r} is not a taxonomy level of {dataset}")
        if not context.lookups.term_exists(dataset, level, value):
            raise ViewError(key, f"no {level} term {value[:60]!r} in {dataset}")
    if comparison.a == comparison.b and comparison.dataset == comparison.b_dataset:
        raise ViewError("b", "is the same group as a")
    return comparison


def groups(context: ViewerContext, comparison: Comparison) -> tuple[Any, Any]:
    """The two :class:`data_layer.analysis.CellGroup` of a checked comparison."""
    from data_layer.analysis import rows_group, term_group

    def group(value: str, dataset: str, side: str):
        label = group_label(context, comparison, side)
        if value == SELECTION:
            mask = context.masks.mask(dataset, comparison.where, comparison.selection)
            return rows_group(context.atlas, dataset, mask, label=label, **comparison.where)
        try:
            return term_group(context.atlas, dataset, comparison.level, value, label=label)
        except KeyError as exc:  # checked above; a store without the term's cell category still gets a 400
            raise ViewError(side, str(exc.args[0] if exc.args else exc)) from None

    return group(comparison.a, comparison.dataset, "a"), group(comparison.b, comparison.b_dataset, "b")


def compare(context: ViewerContext, comparison: Comparison) -> Any:
    """The A-versus-B table of a checked comparison (:func:`data_layer.analysis.compare_groups`)."""
    from data_layer.analysis import compare_groups

    a, b = groups(context, comparison)
    return compare_groups(context.atlas, a, b)


# ---------------------------------------------------------------------------------------------- the download
def comparison_from_args(context: ViewerContext, args: Mapping[str, str]) -> tuple[Comparison, ViewState]:
    """The comparison of a request: the view's parameters (read strictly) plus :data:`MARKERS_KEYS`."""
    state = strict_view(args, context.catalog, gene_lookup=context.lookups.gene_symbol,
                        term_lookup=context.lookups.term_level, extra_keys=MARKERS_KEYS, require_dataset=True)
    comparison = Comparison(
        dataset=state.dataset, level=args.get("level") or None, a=str(args.get("a") or ""),
        b=str(args.get("b") or ""), b_dataset=str(args.get("b_dataset") or state.dataset),
        where=where_of(context, state),
        selection=state.selection.geometry() if state.selection is not None else None)
    return check(context, comparison), state


def markers_filename(context: ViewerContext, comparison: Comparison) -> str:
    """``<dataset>_<A>-vs-<B>_markers.csv`` with unsafe characters replaced."""
    labels = [group_label(context, comparison, side) for side in ("a", "b")]
    parts = [comparison.dataset, f"{labels[0]}-vs-{labels[1]}", "markers"]
    name = "_".join(_UNSAFE.sub("-", p).strip("-") for p in parts)
    return f"{name[:150]}.csv"


def markers_csv_from_args(context: ViewerContext, args: Mapping[str, str]) -> tuple[bytes, str]:
    """``(CSV bytes, download name)`` of a request's comparison: one line per gene, columns ``gene, mean_A,
    mean_B, frac_A, frac_B, mean_diff, t, p, p_adj``, ranked by ``mean_diff``."""
    from data_layer.analysis import compare_groups_csv

    comparison, _ = comparison_from_args(context, args)
    return compare_groups_csv(compare(context, comparison)).encode("utf-8"), markers_filename(context, comparison)


def markers_href(comparison: Comparison) -> str:
    """The download link of a comparison (the route reads it back with :func:`comparison_from_args`)."""
    pairs: list[tuple[str, str]] = [("dataset", comparison.dataset)]
    for key in ("section", "slab_plane", "embedding"):
        if comparison.where.get(key):
            pairs.append((key, comparison.where[key]))
    if comparison.level:
        pairs.append(("level", comparison.level))
    pairs += [("a", comparison.a), ("b", comparison.b)]
    if comparison.two_datasets:
        pairs.append(("b_dataset", comparison.b_dataset))
    if SELECTION in (comparison.a, comparison.b) and comparison.selection is not None:
        pairs.append(("selection", selection_param(comparison.selection)))
    return EXPORT_MARKERS_PATH + "?" + urlencode(pairs)
