"""The URL state of the viewer: parsing (defaults, unknown values -> notices), writing, and switching rules."""
from __future__ import annotations

from urllib.parse import parse_qs

import pytest

from core.state import (ViewState, default_state, frame_bounds, parse_query, switch_dataset,
                              switch_section, switch_slab_plane, to_query)
from core.viewport import Window
from viewer_catalog import gene_lookup, make_catalog, term_lookup

CATALOG = make_catalog()


def parse(search):
    return parse_query(search, CATALOG, gene_lookup=gene_lookup, term_lookup=term_lookup)


def test_empty_query_gives_first_dataset_its_whole_first_slab_plane_by_class():
    state, notices = parse("")
    assert notices == []
    assert (state.dataset, state.slab_plane, state.section, state.color_by) == (
        "HUMAN", "H.Plane.01", None, "Class")


def test_section_implies_its_slab_plane():
    state, _ = parse("?dataset=HUMAN&section=H.S3")
    assert (state.slab_plane, state.section) == ("H.Plane.02", "H.S3")


def test_slab_plane_without_section_means_whole_plane():
    state, notices = parse("?dataset=HUMAN&slab_plane=H.Plane.02")
    assert notices == []
    assert (state.slab_plane, state.section) == ("H.Plane.02", None)


def test_unknown_dataset_gives_notice_and_first_dataset():
    state, notices = parse("?dataset=NOPE")
    assert state.dataset == "HUMAN"
    assert len(notices) == 1 and "NOPE" in notices[0]


def test_unknown_section_gives_notice_and_the_whole_first_slab_plane():
    state, notices = parse("?dataset=MARMOSET&section=H.S1")
    assert (state.slab_plane, state.section) == ("M.Plane.01", None)
    assert "H.S1" in notices[0] and "the whole slab plane M.Plane.01" in notices[0]


def test_gene_with_color_by_gene_resolves_symbol_case():
    state, notices = parse("?dataset=HUMAN&color_by=gene&gene=drd1")
    assert notices == []
    assert (state.color_by, state.gene) == ("gene", "DRD1")


def test_bare_gene_means_colour_by_gene():
    state, _ = parse("?gene=DRD2")
    assert (state.color_by, state.gene) == ("gene", "DRD2")


def test_gene_beside_a_level_keeps_the_level():
    state, _ = parse("?color_by=Class&gene=DRD2")
    assert (state.color_by, state.gene) == ("Class", "DRD2")


def test_unknown_gene_gives_notice_and_default_colouring():
    state, notices = parse("?dataset=HUMAN&color_by=gene&gene=NOTAGENE")
    assert state.color_by == "Class"
    assert state.gene is None
    assert "NOTAGENE" in notices[0]


def test_color_by_is_matched_ignoring_case():
    state, notices = parse("?color_by=class")
    assert notices == [] and state.color_by == "Class"


def test_unknown_color_by_gives_notice():
    state, notices = parse("?color_by=flavour")
    assert state.color_by == "Class" and "flavour" in notices[0]


def test_region_is_not_a_colouring_of_a_umap_dataset():
    state, notices = parse("?dataset=TENX&color_by=region")
    assert state.color_by == "Class" and notices


def test_term_is_found_at_the_named_level():
    state, _ = parse("?term=STR%20D1%20MSN&term_level=Group")
    assert (state.term, state.term_level) == ("STR D1 MSN", "Group")


def test_term_without_level_prefers_the_colour_by_level():
    state, _ = parse("?color_by=Group&term=STR%20D1%20MSN")
    assert state.term_level == "Group"


def test_unknown_term_gives_notice():
    state, notices = parse("?term=Dragons")
    assert state.term is None and "Dragons" in notices[0]


def test_viewport_is_read_and_ordered():
    state, notices = parse("?x0=4&x1=1&y0=2&y1=5")
    assert notices == [] and state.viewport == Window(1.0, 4.0, 2.0, 5.0)


@pytest.mark.parametrize("query", ["?x0=1&x1=2", "?x0=a&x1=2&y0=0&y1=1", "?x0=1&x1=1&y0=0&y1=1",
                                   "?x0=inf&x1=2&y0=0&y1=1"])
def test_bad_viewport_gives_notice_and_whole_view(query):
    state, notices = parse(query)
    assert state.viewport is None and len(notices) == 1


def test_gene_range_needs_vmin_below_vmax():
    state, notices = parse("?gene=DRD1&vmin=3&vmax=1")
    assert (state.vmin, state.vmax) == (None, None) and notices


def test_query_round_trip_keeps_every_field():
    state = ViewState(dataset="HUMAN", slab_plane="H.Plane.02", section="H.S3", color_by="gene", gene="DRD1",
                      term="STR D1 MSN", term_level="Group", viewport=Window(1.25, 4.5, 0.5, 3.0), vmin=0.5,
                      vmax=4.0)
    again, notices = parse(to_query(state))
    assert notices == []
    assert again == state


def test_query_of_whole_plane_names_the_plane_not_a_section():
    query = to_query(ViewState(dataset="HUMAN", slab_plane="H.Plane.01", section=None, color_by="Class"))
    params = parse_qs(query.lstrip("?"))
    assert params["slab_plane"] == ["H.Plane.01"] and "section" not in params


def test_query_omits_gene_unless_colouring_by_gene():
    query = to_query(ViewState(dataset="HUMAN", section="H.S1", color_by="Class", gene="DRD1"))
    assert "gene" not in parse_qs(query.lstrip("?"))


def test_switch_dataset_keeps_level_gene_and_shared_term():
    before = ViewState(dataset="HUMAN", slab_plane="H.Plane.01", section="H.S2", color_by="gene", gene="DRD1",
                       term="STR D1 MSN", term_level="Group", viewport=Window(0, 1, 0, 1))
    after, notices = switch_dataset(CATALOG, before, "MARMOSET", gene_lookup=gene_lookup, term_lookup=term_lookup)
    assert notices == []
    assert (after.slab_plane, after.section, after.color_by, after.gene, after.term, after.viewport) == (
        "M.Plane.01", None, "gene", "DRD1", "STR D1 MSN", None)


def test_switch_dataset_drops_a_cluster_term():
    before = ViewState(dataset="HUMAN", section="H.S1", color_by="Cluster", term="Human-1", term_level="Cluster")
    after, _ = switch_dataset(CATALOG, before, "MARMOSET", gene_lookup=gene_lookup, term_lookup=term_lookup)
    assert after.term is None and after.color_by == "Cluster"


def test_switch_dataset_with_a_missing_gene_falls_back_with_notice():
    before = ViewState(dataset="HUMAN", section="H.S1", color_by="gene", gene="PPP1R1B")
    after, notices = switch_dataset(CATALOG, before, "MARMOSET", gene_lookup=gene_lookup, term_lookup=term_lookup)
    assert after.color_by == "Class" and after.gene is None and "PPP1R1B" in notices[0]


def test_switch_to_another_taxonomy_drops_term_and_unknown_level():
    before = ViewState(dataset="HUMAN", section="H.S1", color_by="Group", term="Astrocyte", term_level="Group")
    after, _ = switch_dataset(CATALOG, before, "WMB", gene_lookup=gene_lookup, term_lookup=term_lookup)
    assert (after.color_by, after.term, after.section) == ("class", None, None)


def test_switch_dataset_uses_previous_taxonomy_when_old_dataset_unknown():
    before = ViewState(dataset=None, color_by="Class", term="CN LGE GABA", term_level="Class")
    after, _ = switch_dataset(CATALOG, before, "MARMOSET", gene_lookup=gene_lookup, term_lookup=term_lookup,
                              previous_taxonomy="HMBA-BG-taxonomy-CCN20250428")
    assert after.term == "CN LGE GABA"


def test_switch_slab_plane_shows_its_first_section_whole():
    before = ViewState(dataset="HUMAN", slab_plane="H.Plane.01", section="H.S2", viewport=Window(0, 1, 0, 1))
    after = switch_slab_plane(CATALOG, before, "H.Plane.02")
    assert (after.slab_plane, after.section, after.viewport) == ("H.Plane.02", "H.S3", None)


def test_switch_section_in_same_plane_keeps_an_overlapping_viewport():
    before = ViewState(dataset="HUMAN", slab_plane="H.Plane.01", section="H.S1", viewport=Window(1, 2, 1, 2))
    assert switch_section(CATALOG, before, "H.S2").viewport == Window(1, 2, 1, 2)


def test_switch_section_drops_a_viewport_outside_it():
    before = ViewState(dataset="HUMAN", slab_plane="H.Plane.01", section="H.S1", viewport=Window(50, 60, 1, 2))
    assert switch_section(CATALOG, before, "H.S2").viewport is None


def test_frame_of_whole_plane_is_the_plane_bounds():
    state = ViewState(dataset="HUMAN", slab_plane="H.Plane.02", section=None)
    assert frame_bounds(CATALOG, state) == (10.0, 18.0, 0.0, 6.0)


def test_default_state_of_umap_dataset_has_no_section():
    state = default_state(CATALOG, "WMB")
    assert (state.slab_plane, state.section, state.color_by) == (None, None, "class")
