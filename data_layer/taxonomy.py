"""Cell type taxonomies: read the ABC taxonomy tables (prepare side) and answer questions about them (Atlas side).

A taxonomy has ordered levels (``Neighborhood`` ... ``Cluster`` for the basal ganglia, ``neurotransmitter`` ...
``cluster`` for mouse), terms per level in taxonomy order with a colour and a parent, and a map from
``cluster_alias`` (an opaque string: ``Human-143`` or ``14``) to one term per level. Term codes are positions
within a level; cells of every dataset sharing a taxonomy use the same codes, followed by two extra codes for
``Adjacent`` (mapped to a taxon the taxonomy does not hold) and ``unassigned`` (not mapped).

A term's annotation is the release's spelling out of the abbreviations in its name (``abbreviation_term`` and
``cluster_annotation_to_abbreviation_map``, optional tables): ``STR D1 MSN`` -> striatum (``DHBA:10333``),
``DRD1`` (an ``NCBIGene:`` id), medium spiny neuron (``CL:1001474``).
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from .tables import (
    ADJACENT, ADJACENT_COLOR, UNASSIGNED, UNASSIGNED_COLOR, TableError, fill_colors, normalize_color, read_csv,
)

log = logging.getLogger(__name__)

#: Metadata tags a taxonomy dataset must have (cluster.csv is optional: aliases also come from the membership).
REQUIRED_TAGS = ("cluster_annotation_term_set", "cluster_annotation_term", "cluster_to_cluster_annotation_membership")
#: Optional metadata tags of a taxonomy: its cluster counts and the abbreviations its term names use.
OPTIONAL_TAGS = ("cluster", "abbreviation_term", "cluster_annotation_to_abbreviation_map")
#: Columns of a taxonomy's abbreviation table in the store (one row per abbreviation of a term, in map order).
ABBREVIATION_COLUMNS = ["term_label", "abbreviation", "meaning", "type", "primary_identifier",
                        "secondary_identifier"]
_INT_FLOAT = re.compile(r"^-?\d+\.0+$")


def normalize_alias(value: str) -> str:
    """An alias as an opaque string key: stripped, and ``'14.0'`` (a float-formatted integer) -> ``'14'``."""
    text = str(value).strip()
    if _INT_FLOAT.match(text):
        text = text.split(".", 1)[0]
    return text


def normalize_aliases(values) -> np.ndarray:
    """Vectorised :func:`normalize_alias` over an array of strings (object array out).

    Each distinct value is normalised once (millions of cells name a few thousand clusters), and the cells
    share the resulting string objects."""
    codes, uniques = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=False)
    s = pd.Series(np.asarray(uniques, dtype=object), dtype=object).astype(str).str.strip()
    mask = s.str.match(_INT_FLOAT.pattern)
    if mask.any():
        s[mask] = s[mask].str.split(".", n=1).str[0]
    return s.to_numpy(dtype=object)[codes]


@dataclass
class TaxonomyTables:
    """A taxonomy read from the cache, ready to write into the store.

    Attributes
    ----------
    terms : DataFrame
        one row per term: ``level`` (int, 0 = coarsest), ``code`` (position within the level), ``label``,
        ``name`` (unique within its level), ``color`` (``#rrggbb``), ``parent_label``, ``parent`` (parent name),
        ``n_cells_source`` (cells per term according to the taxonomy's own ``cluster.csv``; 0 if unknown).
    aliases : DataFrame
        ``cluster_alias`` (str), ``cluster_code`` (int, -1 if the alias has no cluster-level term).
    alias_paths : ndarray of int32, shape (n_aliases, n_levels)
        term code of each alias at each level (-1 where unknown).
    cluster_paths : ndarray of int32, shape (n_clusters, n_levels)
        term codes of each cluster (finest-level term) and its ancestors.
    abbreviations : DataFrame or None
        :data:`ABBREVIATION_COLUMNS`: the abbreviations of each term's name spelled out (None: the release
        has no abbreviation tables).
    """

    name: str
    levels: list[str]
    level_labels: list[str]
    terms: pd.DataFrame
    aliases: pd.DataFrame
    alias_paths: np.ndarray
    cluster_paths: np.ndarray
    abbreviations: pd.DataFrame | None = None

    def n_terms(self, level: int) -> int:
        return int((self.terms["level"] == level).sum())

    def alias_index(self) -> pd.Index:
        return pd.Index(self.aliases["cluster_alias"].to_numpy(dtype=object))

    def cell_codes(self, aliases: np.ndarray, source: str = "") -> np.ndarray:
        """Per-cell term codes of every level from per-cell cluster aliases.

        Parameters
        ----------
        aliases : ndarray of str, shape (n_cells,)
            normalized aliases; ``""`` = not mapped.

        Returns
        -------
        ndarray of int32, shape (n_cells, n_levels)
            term code, or ``n_terms(level)`` for ``Adjacent`` (alias unknown to the taxonomy), or
            ``n_terms(level) + 1`` for ``unassigned`` (no alias).
        """
        n_levels = len(self.levels)
        idx = self.alias_index().get_indexer(aliases)
        empty = np.asarray(aliases == "", dtype=bool)
        unknown = (idx < 0) & ~empty
        if unknown.any():
            examples = pd.unique(aliases[unknown])[:5]
            log.info("%s: %d cells mapped to %d cluster aliases absent from taxonomy %s (shown as %r), e.g. %s",
                     source, int(unknown.sum()), len(pd.unique(aliases[unknown])), self.name, ADJACENT,
                     ", ".join(map(str, examples)))
        out = np.empty((len(aliases), n_levels), dtype=np.int32)
        for level in range(n_levels):
            n = self.n_terms(level)
            col = np.full(len(aliases), n + 1, dtype=np.int32)
            known = idx >= 0
            codes = self.alias_paths[idx[known], level]
            codes = np.where(codes < 0, n + 1, codes)
            col[known] = codes
            col[unknown] = n
            out[:, level] = col
        return out

    def write(self, folder: Path) -> None:
        """Write ``taxonomy.json``, ``terms.parquet``, ``aliases.parquet``, ``alias_paths.npy``, ``cluster_paths.npy``
        and, when the release spells out its abbreviations, ``abbreviations.parquet``."""
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"name": self.name, "levels": self.levels, "level_labels": self.level_labels,
                "n_terms": [self.n_terms(i) for i in range(len(self.levels))]}
        (folder / "taxonomy.json").write_text(json.dumps(meta, indent=1))
        self.terms.to_parquet(folder / "terms.parquet", index=False)
        self.aliases.to_parquet(folder / "aliases.parquet", index=False)
        np.save(folder / "alias_paths.npy", self.alias_paths)
        np.save(folder / "cluster_paths.npy", self.cluster_paths)
        if self.abbreviations is not None:
            self.abbreviations[ABBREVIATION_COLUMNS].to_parquet(folder / "abbreviations.parquet", index=False)

    @classmethod
    def load(cls, folder: Path) -> "TaxonomyTables":
        meta = json.loads((folder / "taxonomy.json").read_text())
        return cls(
            name=meta["name"], levels=meta["levels"], level_labels=meta["level_labels"],
            terms=pd.read_parquet(folder / "terms.parquet"),
            aliases=pd.read_parquet(folder / "aliases.parquet"),
            alias_paths=np.load(folder / "alias_paths.npy"),
            cluster_paths=np.load(folder / "cluster_paths.npy"),
            abbreviations=(pd.read_parquet(folder / "abbreviations.parquet")
                           if (folder / "abbreviations.parquet").exists() else None),
        )


def read_taxonomy(name: str, files: Mapping[str, Path]) -> TaxonomyTables:
    """Read a taxonomy from its ABC metadata files.

    Parameters
    ----------
    name
        the taxonomy dataset name (e.g. ``HMBA-BG-taxonomy-CCN20250428``).
    files
        metadata tag -> local path; needs the :data:`REQUIRED_TAGS`, uses the :data:`OPTIONAL_TAGS` when present
        (abbreviation tables that lack a column are left out with a warning naming the file and the column).

    Raises
    ------
    TableError
        naming the file and column when a table lacks a required column, or the file when a table is
        inconsistent (no levels, no terms).
    """
    missing = [t for t in REQUIRED_TAGS if t not in files]
    if missing:
        raise TableError(f"taxonomy {name}: missing table {missing[0]}.csv")
    path_sets = files["cluster_annotation_term_set"]
    sets = read_csv(path_sets, {"label": "str", "name": "str", "order": "float"}, required=["label", "name"])
    if "order" not in sets:
        sets["order"] = np.nan
    sets["_pos"] = np.arange(len(sets))
    sets = sets.sort_values(["order", "_pos"], na_position="last").reset_index(drop=True)

    path_terms = files["cluster_annotation_term"]
    terms = read_csv(
        path_terms,
        {"label": "str", "name": "str", "cluster_annotation_term_set_label": "str",
         "cluster_annotation_term_set_name": "str", "color_hex_triplet": "str", "term_order": "float",
         "parent_term_label": "str"},
        required=["label", "name", "cluster_annotation_term_set_label"],
    )
    set_by_label = {lab: i for i, lab in enumerate(sets["label"])}
    set_by_name = {nm: i for i, nm in enumerate(sets["name"])}
    level = terms["cluster_annotation_term_set_label"].map(set_by_label)
    if "cluster_annotation_term_set_name" in terms:
        level = level.fillna(terms["cluster_annotation_term_set_name"].map(set_by_name))
    if level.isna().any():
        bad = terms.loc[level.isna(), "cluster_annotation_term_set_label"].unique()[:3]
        log.warning("%s: %d terms of unknown term sets ignored (e.g. %s)", path_terms, int(level.isna().sum()),
                    ", ".join(bad))
    terms = terms[level.notna()].copy()
    terms["level"] = level[level.notna()].astype(int)
    used_levels = sorted(terms["level"].unique())
    if not used_levels:
        raise TableError(f"{path_terms}: no terms in any term set of {path_sets}")
    # Renumber levels densely (a term set without terms is not a level anyone can colour by).
    renumber = {old: new for new, old in enumerate(used_levels)}
    terms["level"] = terms["level"].map(renumber)
    levels = [sets["name"][i] for i in used_levels]
    level_labels = [sets["label"][i] for i in used_levels]

    if "term_order" not in terms:
        terms["term_order"] = np.nan
    terms["_pos"] = np.arange(len(terms))
    terms = terms.sort_values(["level", "term_order", "_pos"], na_position="last").drop_duplicates("label")
    terms["name"] = [n if n != "" else lab for n, lab in zip(terms["name"], terms["label"])]
    terms["name"] = _unique_names(terms, path_terms)
    terms["code"] = terms.groupby("level").cumcount().astype(np.int32)
    raw_colors = terms["color_hex_triplet"] if "color_hex_triplet" in terms else pd.Series("", index=terms.index)
    terms["color"] = fill_colors(normalize_color(c) for c in raw_colors)
    if "parent_term_label" not in terms:
        terms["parent_term_label"] = ""
    terms = terms.reset_index(drop=True)
    label_to_row = pd.Series(np.arange(len(terms)), index=terms["label"])

    # Membership: alias -> term at each level.
    path_mem = files["cluster_to_cluster_annotation_membership"]
    mem = read_csv(path_mem, {"cluster_alias": "str", "cluster_annotation_term_label": "str"},
                   required=["cluster_alias", "cluster_annotation_term_label"])
    mem["cluster_alias"] = normalize_aliases(mem["cluster_alias"])
    aliases_seen = list(pd.unique(mem["cluster_alias"]))
    cluster_counts: dict[str, float] = {}
    if "cluster" in files:
        clusters = read_csv(files["cluster"], {"label": "str", "cluster_alias": "str", "number_of_cells": "float"},
                            required=["cluster_alias"])
        clusters["cluster_alias"] = normalize_aliases(clusters["cluster_alias"])
        for a in clusters["cluster_alias"]:
            if a not in cluster_counts:
                aliases_seen.append(a)
                cluster_counts[a] = 0.0
        if "number_of_cells" in clusters:
            cluster_counts.update(dict(zip(clusters["cluster_alias"], clusters["number_of_cells"].fillna(0))))
        if "label" in clusters:
            # cluster.csv's label is the cluster-level term when the membership lacks that row.
            extra = clusters[clusters["label"].isin(label_to_row.index)][["cluster_alias", "label"]]
            extra = extra.rename(columns={"label": "cluster_annotation_term_label"})
            mem = pd.concat([mem[["cluster_alias", "cluster_annotation_term_label"]], extra], ignore_index=True)
    aliases = list(dict.fromkeys(a for a in aliases_seen if a != ""))
    alias_pos = pd.Series(np.arange(len(aliases)), index=aliases)

    n_levels = len(levels)
    alias_paths = np.full((len(aliases), n_levels), -1, dtype=np.int32)
    mem = mem[mem["cluster_alias"] != ""]
    rows = label_to_row.reindex(mem["cluster_annotation_term_label"]).to_numpy()
    unknown_terms = np.isnan(rows)
    if unknown_terms.any():
        log.warning("%s: %d membership rows name terms absent from %s, ignored (e.g. %s)", path_mem,
                    int(unknown_terms.sum()), path_terms.name,
                    ", ".join(mem["cluster_annotation_term_label"][unknown_terms].unique()[:3]))
    ok = ~unknown_terms
    a_idx = alias_pos[mem["cluster_alias"].to_numpy()[ok]].to_numpy()
    t_rows = rows[ok].astype(int)
    alias_paths[a_idx, terms["level"].to_numpy()[t_rows]] = terms["code"].to_numpy()[t_rows]

    # Parents: from parent_term_label, else from the membership paths.
    parent_row = label_to_row.reindex(terms["parent_term_label"]).to_numpy()
    if np.isnan(parent_row).all() and n_levels > 1:
        parent_row = _parents_from_paths(terms, alias_paths)
    terms["parent_label"] = [terms["label"][int(p)] if not np.isnan(p) else "" for p in parent_row]
    terms["parent"] = [terms["name"][int(p)] if not np.isnan(p) else "" for p in parent_row]

    # Cluster paths: the finest level's terms with their ancestors (parent chain, then membership).
    finest = n_levels - 1
    cluster_rows = np.flatnonzero(terms["level"].to_numpy() == finest)
    cluster_paths = np.full((len(cluster_rows), n_levels), -1, dtype=np.int32)
    codes = terms["code"].to_numpy()
    lev = terms["level"].to_numpy()
    for c, row in enumerate(cluster_rows):
        r = row
        while True:
            cluster_paths[c, lev[r]] = codes[r]
            p = parent_row[r]
            if np.isnan(p) or lev[int(p)] >= lev[r]:
                break
            r = int(p)
    have_cluster = alias_paths[:, finest] >= 0
    for a in np.flatnonzero(have_cluster):
        c = alias_paths[a, finest]
        fill = cluster_paths[c] < 0
        cluster_paths[c, fill] = alias_paths[a, fill]
        fill_alias = alias_paths[a] < 0
        alias_paths[a, fill_alias] = cluster_paths[c, fill_alias]

    # Cells per term from cluster.csv (the taxonomy's own numbers).
    n_src = np.zeros(len(terms), dtype=np.int64)
    if cluster_counts:
        level_offset = np.concatenate([[0], np.cumsum([int((lev == i).sum()) for i in range(n_levels)])])
        for a, n in cluster_counts.items():
            if a in alias_pos.index:
                for i, code in enumerate(alias_paths[alias_pos[a]]):
                    if code >= 0:
                        n_src[level_offset[i] + code] += int(n)
    terms["n_cells_source"] = n_src
    terms = terms[["level", "code", "label", "name", "color", "parent_label", "parent", "n_cells_source"]]
    alias_table = pd.DataFrame({"cluster_alias": np.asarray(aliases, dtype=object),
                                "cluster_code": alias_paths[:, finest] if len(aliases) else np.zeros(0, np.int32)})
    log.info("taxonomy %s: levels %s; %s terms; %d cluster aliases", name, ", ".join(levels),
             "/".join(str(int((lev == i).sum())) for i in range(n_levels)), len(aliases))
    abbreviations = None
    if "abbreviation_term" in files and "cluster_annotation_to_abbreviation_map" in files:
        try:
            abbreviations = read_abbreviations(files["abbreviation_term"],
                                               files["cluster_annotation_to_abbreviation_map"], set(terms["label"]))
        except TableError as exc:
            log.warning("taxonomy %s: term annotations left out: %s", name, exc)
    return TaxonomyTables(name=name, levels=levels, level_labels=level_labels, terms=terms,
                          aliases=alias_table, alias_paths=alias_paths, cluster_paths=cluster_paths,
                          abbreviations=abbreviations)


def read_abbreviations(path_terms: Path, path_map: Path, term_labels: set[str]) -> pd.DataFrame:
    """The abbreviations of each term's name spelled out, from ``abbreviation_term.csv`` (``abbreviation_term,
    abbreviation_meaning`` required; ``abbreviation_type, primary_identifier, secondary_identifier`` optional) and
    ``cluster_annotation_to_abbreviation_map.csv`` (``cluster_annotation_term_label, abbreviation_term``).

    Returns
    -------
    DataFrame
        :data:`ABBREVIATION_COLUMNS`, one row per (term, abbreviation) in the map's order; map rows naming a term
        absent from ``term_labels`` or an abbreviation absent from the abbreviation table are dropped (logged).

    Raises
    ------
    TableError
        naming the file and the missing column.
    """
    abbr = read_csv(path_terms, {"abbreviation_term": "str", "abbreviation_meaning": "str",
                                 "abbreviation_type": "str", "primary_identifier": "str",
                                 "secondary_identifier": "str"},
                    required=["abbreviation_term", "abbreviation_meaning"])
    for col in ("abbreviation_type", "primary_identifier", "secondary_identifier"):
        if col not in abbr:
            abbr[col] = ""
    abbr = abbr.drop_duplicates("abbreviation_term").set_index("abbreviation_term")
    mapping = read_csv(path_map, {"cluster_annotation_term_label": "str", "abbreviation_term": "str"},
                       required=["cluster_annotation_term_label", "abbreviation_term"])
    mapping = mapping.drop_duplicates(["cluster_annotation_term_label", "abbreviation_term"])
    known = mapping["cluster_annotation_term_label"].isin(term_labels) & mapping["abbreviation_term"].isin(abbr.index)
    if not known.all():
        log.info("%s: %d rows name a term absent from the taxonomy or an abbreviation absent from %s; ignored",
                 path_map, int((~known).sum()), Path(path_terms).name)
    mapping = mapping[known]
    spelled = abbr.loc[mapping["abbreviation_term"].to_numpy()]
    return pd.DataFrame({
        "term_label": mapping["cluster_annotation_term_label"].to_numpy(dtype=object),
        "abbreviation": mapping["abbreviation_term"].to_numpy(dtype=object),
        "meaning": spelled["abbreviation_meaning"].to_numpy(dtype=object),
        "type": spelled["abbreviation_type"].to_numpy(dtype=object),
        "primary_identifier": spelled["primary_identifier"].to_numpy(dtype=object),
        "secondary_identifier": spelled["secondary_identifier"].to_numpy(dtype=object),
    })[ABBREVIATION_COLUMNS]


def _unique_names(terms: pd.DataFrame, path: Path) -> list[str]:
    """Term names made unique within a level (Categorical categories must be), never ``Adjacent``/``unassigned``."""
    out = []
    seen: set[tuple[int, str]] = set()
    reserved = {ADJACENT, UNASSIGNED}
    for level, name, label in zip(terms["level"], terms["name"], terms["label"]):
        new = name
        if (level, new) in seen or new in reserved:
            new = f"{name} ({label})"
            log.warning("%s: term name %r repeated or reserved at level %d; shown as %r", path, name, level, new)
        seen.add((level, new))
        out.append(new)
    return out


def _parents_from_paths(terms: pd.DataFrame, alias_paths: np.ndarray) -> np.ndarray:
    lev = terms["level"].to_numpy()
    code = terms["code"].to_numpy()
    row_of = {(int(l), int(c)): i for i, (l, c) in enumerate(zip(lev, code))}
    parent = np.full(len(terms), np.nan)
    for path in alias_paths:
        for i in range(1, len(path)):
            if path[i] >= 0 and path[i - 1] >= 0:
                parent[row_of[(i, int(path[i]))]] = row_of[(i - 1, int(path[i - 1]))]
    return parent


class Taxonomy:
    """A taxonomy as the app sees it: levels, terms per level, colours, paths.

    ``n_cells`` in :meth:`terms` counts the cells of the dataset the object was obtained for
    (``atlas.taxonomy(dataset)``), or the taxonomy's own counts when obtained by taxonomy name.
    """

    def __init__(self, tables: TaxonomyTables, counts: Mapping[str, np.ndarray] | None = None):
        self._t = tables
        self.name: str = tables.name
        self.levels: list[str] = list(tables.levels)
        self._by_level = {lvl: tables.terms[tables.terms["level"] == i].reset_index(drop=True)
                          for i, lvl in enumerate(self.levels)}
        self._counts = counts
        self._code_of: dict[str, dict[str, int]] = {
            lvl: {n: i for i, n in enumerate(df["name"])} for lvl, df in self._by_level.items()
        }
        self._code_of_label = {lab: (lvl, i) for lvl, df in self._by_level.items() for i, lab in enumerate(df["label"])}

    def __repr__(self) -> str:
        return f"Taxonomy({self.name!r}, levels={self.levels})"

    def level(self, level: str | int) -> str:
        """The level name for a name (any case) or index; ``KeyError`` listing the levels."""
        if isinstance(level, (int, np.integer)):
            return self.levels[int(level)]
        if level in self._by_level:
            return level
        for lvl in self.levels:
            if lvl.lower() == str(level).lower():
                return lvl
        raise KeyError(f"taxonomy {self.name} has no level {level!r}; levels: {', '.join(self.levels)}")

    def level_index(self, level: str | int) -> int:
        return self.levels.index(self.level(level))

    def terms(self, level: str | int) -> pd.DataFrame:
        """Terms of ``level`` in taxonomy order.

        Returns
        -------
        DataFrame
            ``label, name, color, parent, n_cells`` (parent = name of the parent term at the level above, ""
            at the top; n_cells int64).
        """
        lvl = self.level(level)
        df = self._by_level[lvl]
        if self._counts is not None and lvl in self._counts:
            n = np.asarray(self._counts[lvl][: len(df)], dtype=np.int64)
        else:
            n = df["n_cells_source"].to_numpy(dtype=np.int64)
        return pd.DataFrame({"label": df["label"].to_numpy(), "name": df["name"].to_numpy(),
                             "color": df["color"].to_numpy(), "parent": df["parent"].to_numpy(), "n_cells": n})

    def categories(self, level: str | int) -> list[str]:
        """Categories of the level's Categorical columns: term names in order, then ``Adjacent``, ``unassigned``."""
        return list(self._by_level[self.level(level)]["name"]) + [ADJACENT, UNASSIGNED]

    def colors(self, level: str | int) -> list[str]:
        """``#rrggbb`` per category of :meth:`categories` (ends with the Adjacent and unassigned greys)."""
        return list(self._by_level[self.level(level)]["color"]) + [ADJACENT_COLOR, UNASSIGNED_COLOR]

    def counts(self, level: str | int) -> np.ndarray | None:
        """Cells of the bound dataset per category (int64, length ``len(categories(level))``), or None."""
        lvl = self.level(level)
        if self._counts is None or lvl not in self._counts:
            return None
        return np.asarray(self._counts[lvl], dtype=np.int64)

    def code(self, level: str | int, term: str) -> int:
        """Category code of a term given by name or label; ``KeyError`` with close matches."""
        lvl = self.level(level)
        codes = self._code_of[lvl]
        if term in codes:
            return codes[term]
        if term == ADJACENT:
            return len(codes)
        if term == UNASSIGNED:
            return len(codes) + 1
        hit = self._code_of_label.get(term)
        if hit and hit[0] == lvl:
            return hit[1]
        for name, c in codes.items():
            if name.lower() == str(term).lower():
                return c
        import difflib

        close = difflib.get_close_matches(str(term), list(codes), n=5)
        raise KeyError(f"taxonomy {self.name}, level {lvl}: no term {term!r}"
                       + (f"; close matches: {', '.join(close)}" if close else ""))

    def path(self, level: str | int, term_name: str) -> dict[str, str]:
        """``{level: term name}`` for the term and its ancestors, coarse to fine."""
        lvl = self.level(level)
        i = self.levels.index(lvl)
        code = self.code(lvl, term_name)
        out = {}
        df = self._by_level[lvl]
        if code >= len(df):
            return {lvl: term_name}
        out[lvl] = df["name"][code]
        parent = df["parent"][code]
        for j in range(i - 1, -1, -1):
            if not parent:
                break
            up = self._by_level[self.levels[j]]
            c = self._code_of[self.levels[j]].get(parent)
            if c is None:
                break
            out[self.levels[j]] = parent
            parent = up["parent"][c]
        return dict(reversed(list(out.items())))

    def children(self, level: str | int, term_name: str) -> list[str]:
        """Names of the terms one level below whose parent is ``term_name`` (taxonomy order)."""
        i = self.level_index(level)
        if i + 1 >= len(self.levels):
            return []
        below = self._by_level[self.levels[i + 1]]
        name = self._by_level[self.levels[i]]["name"][self.code(level, term_name)]
        return list(below["name"][below["parent"] == name])

    def annotation(self, level: str | int, term: str) -> pd.DataFrame:
        """The abbreviations of a term's name spelled out as the release gives them.

        Returns
        -------
        DataFrame
            ``abbreviation, meaning, type, primary_identifier, secondary_identifier`` (str), in the release's
            order; empty when the release has no abbreviation tables or none for this term.

        Raises
        ------
        KeyError
            an unknown level or term.
        """
        lvl = self.level(level)
        code = self.code(lvl, term)
        columns = ABBREVIATION_COLUMNS[1:]
        df = self._by_level[lvl]
        table = self._t.abbreviations
        if table is None or code >= len(df):
            return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
        rows = table[table["term_label"] == df["label"][code]]
        return rows[columns].reset_index(drop=True)

    def cluster_codes(self, level: str | int, term: str) -> np.ndarray:
        """Codes (at the finest level) of the clusters under a term. int64 array."""
        i = self.level_index(level)
        code = self.code(level, term)
        return np.flatnonzero(self._t.cluster_paths[:, i] == code)

    def cluster_paths(self) -> np.ndarray:
        """int32 ``[n_clusters, n_levels]``: term code of each cluster at each level (-1 unknown)."""
        return self._t.cluster_paths

    def bound(self, counts: Mapping[str, np.ndarray]) -> "Taxonomy":
        """The same taxonomy counting the cells of one dataset."""
        return Taxonomy(self._t, counts)
