"""The view as one grouped callback dependency, and its one reader on the page's side.

A callback that needs the view declares ``inputs=dict(view=view_inputs(...))`` (or ``state=dict(view=
view_states(...))``): Dash then passes ``view`` as ONE dict of control values keyed by component id, and
:func:`view_of` turns it into a :class:`core.state.ViewState` (the same type the address bar and every HTTP route
read). The controls' own conventions (the whole-slab-plane entry of the section dropdown, the term store's dict,
the viewport store's dict, gene ranges typed as text) are undone here and nowhere else.
"""
from __future__ import annotations

from typing import Any, Mapping

from dash import Input, State

from components import ids
from core.catalog import WHOLE_SLAB_PLANE, WHOLE_UMAP
from core.state import ViewState
from core.viewport import Window

#: The controls that hold the view, by component id, with the property that holds the value.
VIEW_CONTROLS: dict[str, str] = {
    ids.DATASET: "value",
    ids.SLAB_PLANE: "value",
    ids.SECTION: "value",
    ids.EMBEDDING: "value",
    ids.COLOR_BY: "value",
    ids.GENE: "value",
    ids.TERM: "data",
    ids.VIEWPORT: "data",
    ids.GENE_VMIN: "value",
    ids.GENE_VMAX: "value",
    ids.GENE2: "value",
    ids.BLEND_MODE: "value",
    ids.THRESHOLD_A: "value",
    ids.THRESHOLD_B: "value",
}
#: The place shown: dataset, slab plane and section, or which UMAP of a single-cell dataset.
PLACE = (ids.DATASET, ids.SLAB_PLANE, ids.SECTION, ids.EMBEDDING)


def view_inputs(*controls: str) -> dict[str, Input]:
    """``{id: Input}`` of ``controls`` (default: every control of :data:`VIEW_CONTROLS`)."""
    return {control: Input(control, VIEW_CONTROLS[control]) for control in controls or VIEW_CONTROLS}


def view_states(*controls: str) -> dict[str, State]:
    """``{id: State}`` of ``controls`` (default: every control of :data:`VIEW_CONTROLS`)."""
    return {control: State(control, VIEW_CONTROLS[control]) for control in controls or VIEW_CONTROLS}


def section_of(value: Any) -> str | None:
    """The section of the section dropdown's value: None for the whole slab plane (or nothing chosen)."""
    return None if value in (None, "", WHOLE_SLAB_PLANE) else str(value)


def place_of(values: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    """``(dataset, slab_plane, section)`` of control values keyed by id (section None = the whole slab plane)."""
    return values.get(ids.DATASET), values.get(ids.SLAB_PLANE), section_of(values.get(ids.SECTION))


def embedding_of(values: Mapping[str, Any]) -> str | None:
    """The neighborhood UMAP of the UMAP dropdown's value: None for the whole UMAP (or nothing chosen)."""
    value = values.get(ids.EMBEDDING)
    return None if value in (None, "", WHOLE_UMAP) else str(value)


def _number_or_none(value: Any) -> float | None:
    try:
        return None if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return None


def view_of(values: Mapping[str, Any]) -> ViewState:
    """The view the controls show now (``values`` keyed by component id; missing controls take defaults)."""
    term = values.get(ids.TERM) or None
    term = term if isinstance(term, Mapping) else None
    dataset, slab_plane, section = place_of(values)
    return ViewState(
        dataset=dataset,
        slab_plane=slab_plane,
        section=section,
        color_by=values.get(ids.COLOR_BY) or "",
        gene=values.get(ids.GENE) or None,
        term=term.get("name") if term else None,
        term_level=term.get("level") if term else None,
        viewport=Window.from_dict(values.get(ids.VIEWPORT)),
        vmin=_number_or_none(values.get(ids.GENE_VMIN)),
        vmax=_number_or_none(values.get(ids.GENE_VMAX)),
        gene2=values.get(ids.GENE2) or None,
        blend_mode="both" if values.get(ids.BLEND_MODE) == "both" else "blend",
        threshold_a=_number_or_none(values.get(ids.THRESHOLD_A)),
        threshold_b=_number_or_none(values.get(ids.THRESHOLD_B)),
        embedding=embedding_of(values),
    )
