"""Side-panel builders: the lazy taxonomy tree, the legend and the inspector (plain values in, HTML/components out)."""
from __future__ import annotations

from html.parser import HTMLParser

from components.panels import (MAX_LEGEND, TermRow, inspect_children, legend_html, tree_html,
                               tree_search_html)


class _Rows(HTMLParser):
    """Reads the rows of the tree/legend HTML: each element's tag, classes, style and data-* attributes."""

    def __init__(self, markup):
        super().__init__()
        self.elements = []
        self.text = []
        self.feed(markup)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def rows_of(markup):
    """The term rows of a tree: (level, name, padding, row classes, expandable)."""
    elements = _Rows(markup).elements
    rows = []
    for i, (tag, attrs) in enumerate(elements):
        if tag == "div" and "tree-row" in attrs.get("class", ""):
            caret = elements[i + 1][1]
            term = next(a for t, a in elements[i + 1:] if a.get("data-action") == "pick")
            rows.append((term["data-level"], term["data-name"], attrs["style"].split(":")[1], attrs["class"],
                         caret.get("data-action") == "toggle"))
    return rows


def bg_terms(n_clusters=3):
    terms = {
        "Class": [TermRow("Class", "A", "#111111", "", 5, 50), TermRow("Class", "B", "#222222", "", 0, 10)],
        "Subclass": [TermRow("Subclass", "A1", "#333333", "A", 5, 40), TermRow("Subclass", "B1", "#444444", "B", 0, 10)],
        "Cluster": [TermRow("Cluster", f"c{i}", "#555555", "A1", 1, 2) for i in range(n_clusters)],
    }
    return ["Class", "Subclass", "Cluster"], terms


def test_collapsed_tree_shows_top_terms_only():
    levels, terms = bg_terms()
    assert [r[1] for r in rows_of(tree_html(levels, terms, [], None))] == ["A", "B"]


def test_expanded_term_shows_its_children_indented():
    levels, terms = bg_terms()
    rows = rows_of(tree_html(levels, terms, ["Class|A", "Subclass|A1"], None))
    assert [(r[1], r[2]) for r in rows] == [("A", "0px"), ("A1", "14px"), ("c0", "28px"), ("c1", "28px"),
                                            ("c2", "28px"), ("B", "0px")]


def test_expanding_a_child_of_a_collapsed_term_shows_nothing_more():
    levels, terms = bg_terms()
    rows = rows_of(tree_html(levels, terms, ["Subclass|A1"], None))
    assert [r[1] for r in rows] == ["A", "B"]


def test_highlighted_term_and_absent_terms_are_marked():
    levels, terms = bg_terms()
    rows = rows_of(tree_html(levels, terms, [], ("Class", "A")))
    assert "highlighted" in rows[0][3] and "absent" in rows[1][3]


def test_leaves_have_no_caret():
    levels, terms = bg_terms()
    rows = rows_of(tree_html(levels, terms, ["Class|A", "Subclass|A1"], None))
    assert [r[4] for r in rows] == [True, True, False, False, False, True]


def test_a_level_not_nested_in_the_one_above_is_its_own_group():
    # the mouse taxonomy: neurotransmitter is not the parent of class
    levels = ["neurotransmitter", "class", "subclass"]
    terms = {
        "neurotransmitter": [TermRow("neurotransmitter", "Glut", "#111111", "", 3, 3)],
        "class": [TermRow("class", "01 IT-ET Glut", "#222222", "", 3, 3)],
        "subclass": [TermRow("subclass", "001 CLA Glut", "#333333", "01 IT-ET Glut", 3, 3)],
    }
    markup = tree_html(levels, terms, ["class|01 IT-ET Glut"], None)
    assert markup.count('class="tree-group"') == 2
    assert markup.index(">neurotransmitter<") < markup.index(">class<")
    assert [r[1] for r in rows_of(markup)] == ["Glut", "01 IT-ET Glut", "001 CLA Glut"]


def test_thousands_of_children_are_all_listed_up_to_the_limit():
    levels, terms = bg_terms(n_clusters=1500)
    rows = rows_of(tree_html(levels, terms, ["Class|A", "Subclass|A1"], None))
    assert len(rows) == 2 + 1 + 1500  # no truncation at 100 labels


def test_search_rows_show_the_level_of_each_match():
    match = TermRow("Subclass", "A1", "#333333", "A", 5, 40)
    markup = tree_search_html([match], None, "a1")
    assert '<span class="level-chip">Subclass</span>' in markup and rows_of(markup)[0][:2] == ("Subclass", "A1")


def test_search_without_match_says_so():
    assert "No term matches 'zz'" in tree_search_html([], None, "zz")


def test_names_are_escaped():
    evil = TermRow("Class", '<img src=x onerror="alert(1)">', "#111111", "", 1, 1)
    markup = tree_html(["Class"], {"Class": [evil]}, [], None)
    assert "<img" not in markup
    assert rows_of(markup)[0][1] == evil.name  # the attribute still carries the exact name


def test_legend_entries_are_clickable_terms_and_capped():
    items = [(f"t{i}", "#123456", i + 1) for i in range(MAX_LEGEND + 5)]
    elements = _Rows(legend_html("Class", items, "t1")).elements
    buttons = [a for tag, a in elements if tag == "button"]
    assert (buttons[0]["data-action"], buttons[0]["data-level"], buttons[0]["data-name"]) == ("pick", "Class", "t0")
    assert "highlighted" in buttons[1]["class"] and len(buttons) == MAX_LEGEND
    assert "5 more" in "".join(_Rows(legend_html("Class", items, None)).text)


def test_legend_filter_keeps_the_order_and_names_in_full_with_their_cells():
    items = [("0002 CLA-EPd-CTX Car3 Glut_1", "#111111", 12), ("0003 CLA-EPd-CTX Car3 Glut_2", "#222222", 3400),
             ("0107 STR D1 Gaba_1", "#333333", 7)]
    elements = _Rows(legend_html("cluster", items, None, text="car3 GLUT")).elements
    buttons = [a for tag, a in elements if tag == "button"]
    assert [b["data-name"] for b in buttons] == [items[0][0], items[1][0]]  # every word, any case, given order
    assert buttons[1]["title"].startswith("0003 CLA-EPd-CTX Car3 Glut_2: 3,400 cells here")
    text = "".join(_Rows(legend_html("cluster", items, None, text="car3")).text)
    assert "0003 CLA-EPd-CTX Car3 Glut_2" in text and "3,400" in text  # the whole name and its cells
    assert "No entry matches 'zz'" in legend_html("cluster", items, None, text="zz")


def test_legend_filter_over_thousands_of_terms_lists_the_first_matches_and_counts_the_rest():
    items = [(f"{i:04d} term", "#123456", i + 1) for i in range(5322)]
    markup = legend_html("cluster", items, None, text="1")
    matching = [name for name, _, _ in items if "1" in name]
    buttons = [a for tag, a in _Rows(markup).elements if tag == "button"]
    assert [b["data-name"] for b in buttons] == matching[:MAX_LEGEND]
    assert f"+ {len(matching) - MAX_LEGEND:,} more" in "".join(_Rows(markup).text)


def test_region_legend_is_not_clickable():
    assert "data-action" not in legend_html("region", [("STR", "#cd86cc", 3)], None, clickable=False)


def test_inspector_lists_every_level_and_the_gene_value():
    cell = {"cell_label": "c1", "section": "S1", "region": "STR", "x": 1.0, "y": 2.0,
            "levels": [("Class", "A", "#111111"), ("Subclass", "A1", "#222222")], "gene": ("DRD1", 3.25)}
    text = str(inspect_children(cell))
    assert all(fragment in text for fragment in ("c1", "S1", "STR", "A1", "DRD1", "3.250"))


def test_inspector_says_not_measured_for_a_missing_value():
    cell = {"cell_label": "c1", "x": 0, "y": 0, "levels": [], "gene": ("DRD1", None)}
    assert "not measured" in str(inspect_children(cell))
