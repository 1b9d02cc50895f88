"""Training-data recipes: combine BEIR sources into per-query ranking contexts, copying nothing.

A recipe (TOML or JSON) names one or more *sources*. Each source is a BEIR folder (a path, or a
dataset name resolved by :func:`~synthrank.data.resolve_dataset`) plus a qrels split (or an
explicit qrels file, e.g. BM25 negatives written by ``synthrank mine``), with optional filters,
a grade transform, random-k sampling of its passages per query and a query subset::

    mode = "graded"          # or "binary" (InfoNCE: 1 positive >= positive_threshold, G-1 below)
    group_size = 4
    sampling = "random"      # graded mode: "random" or "top" (most relevant first)

    [[sources]]
    name = "real-positives"
    dataset = "scifact"      # name under $SYNTHRANK_DATA_DIR, or a path (relative to this file)
    split = "train"
    min_grade = 1
    set_grade = 3            # every passage of this source becomes grade 3

    [[sources]]
    name = "bm25-negatives"
    dataset = "scifact"
    qrels = "../../runs/scifact-bm25/qrels/train.tsv"
    set_grade = 1
    sample_k = 3             # 3 of this query's mined negatives, re-drawn every epoch

A query's *pool* is the union of its passages over all sources (a passage already given by an
earlier source for the same query is skipped by later ones). Groups are drawn from pools by
:mod:`synthrank.train.dataset`, afresh each epoch.

Errors in a recipe raise :class:`RecipeError` (a :class:`~synthrank.data.DataFormatError`)
naming the recipe file and the field.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from synthrank.data.beir import Corpus, load_corpus, load_qrels, load_queries
from synthrank.data.config_files import read_config_file, validate_config
from synthrank.data.errors import DataFormatError, DatasetNotFoundError
from synthrank.data.resolve import resolve_dataset

log = logging.getLogger(__name__)

__all__ = [
    "Recipe", "RecipeError", "SourceSpec", "QueryPool", "SourcePassages", "TrainingPools", "apply_source",
    "build_pools", "load_recipe", "load_training_data", "parse_recipe",
]


class RecipeError(DataFormatError):
    """A recipe is malformed or names data that cannot be used; names the file and the field."""


class SourceSpec(BaseModel):
    """One source of (query, passage, grade) triples."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, description="Label used in logs and statistics")
    dataset: str = Field(description="BEIR folder (path, relative to the recipe file) or dataset name")
    split: str = Field("train", description="Qrels split: <dataset>/qrels/<split>.tsv")
    qrels: str | None = Field(None, description="Explicit qrels file (BEIR TSV or TREC); replaces the split's file")
    min_grade: int | None = Field(None, description="Keep passages with original grade >= this")
    max_grade: int | None = Field(None, description="Keep passages with original grade <= this")
    grade_map: dict[int, int] | None = Field(None, description="Original grade -> new grade (unmapped grades kept)")
    set_grade: int | None = Field(None, description="Every kept passage gets this grade")
    sample_k: int | None = Field(None, ge=1, description="Draw k of this source's passages per query and epoch")
    queries: list[str] | str | None = Field(
        None, description="Query subset: a list of ids, or a file (one id per line, or a queries.jsonl)")
    max_queries: int | None = Field(None, ge=1, description="Random subset of this many queries (recipe seed)")
    min_fidelity: float | None = Field(
        None, ge=0, le=1, description="Consistency filter: keep a query only if the scorer orders its levels with at "
        "least this pairwise accuracy (from the folder's fidelity.json, written by synthrank generate)")
    fidelity_scorer: Literal["bm25", "encoder"] = Field("bm25", description="Scorer for min_fidelity")

    @model_validator(mode="after")
    def _check(self) -> "SourceSpec":
        if self.grade_map is not None and self.set_grade is not None:
            raise ValueError("give either grade_map or set_grade, not both")
        if self.min_grade is not None and self.max_grade is not None and self.min_grade > self.max_grade:
            raise ValueError(f"min_grade ({self.min_grade}) > max_grade ({self.max_grade})")
        return self

    @property
    def label(self) -> str:
        return self.name or f"{self.dataset}:{self.qrels or self.split}"


class Recipe(BaseModel):
    """Sources plus how groups are drawn from the per-query pools."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["graded", "binary"] = Field("graded", description="graded groups, or binary groups for InfoNCE")
    group_size: int = Field(4, ge=2, description="Passages per query (G)")
    sampling: Literal["random", "top"] = Field(
        "random", description="graded mode: G passages at random, or the most relevant first (ties at random)")
    positive_threshold: int = Field(1, description="binary mode: grades >= t are positives, grades < t negatives")
    short_groups: Literal["repeat", "drop"] = Field(
        "repeat", description="A pool with fewer than G passages: repeat passages at random, or drop the query")
    seed: int = Field(0, description="Seed for query subsets (max_queries)")
    sources: list[SourceSpec] = Field(min_length=1)

    # Folder against which relative paths resolve (the recipe file's folder); not a recipe field.
    base_dir: Path | None = Field(None, exclude=True)
    origin: Path | None = Field(None, exclude=True)


def parse_recipe(data: dict, origin: str | Path = "<recipe>", base_dir: str | Path | None = None) -> Recipe:
    """Validate a recipe mapping; errors name ``origin`` and the offending field."""
    recipe = validate_config(Recipe, data, origin, RecipeError)
    recipe.origin = Path(origin)
    recipe.base_dir = Path(base_dir) if base_dir is not None else Path(origin).parent
    return recipe


def load_recipe(path: str | Path) -> Recipe:
    """Read a recipe from TOML (``.toml``) or JSON (``.json``; other suffixes: tried as both)."""
    path = Path(path)
    return parse_recipe(read_config_file(path, RecipeError, "recipe"), origin=path, base_dir=path.parent)


def load_training_data(data: str | Path) -> Recipe:
    """The recipe a training config's ``data`` names: a recipe file, or a BEIR folder, read as the
    one-source recipe with the defaults (its graded ``train`` qrels, groups of 4). The folder form
    lets the output of ``synthrank generate`` be trained on as it is, from the command line and
    the Python API alike, without a recipe file written for it."""
    path = Path(data).expanduser()
    if path.is_dir():
        return parse_recipe({"sources": [{"dataset": str(path.resolve()), "split": "train"}]}, origin=path)
    return load_recipe(path)


# --------------------------------------------------------------------------------------------
# Building per-query pools


@dataclass
class SourcePassages:
    """One source's passages for one query: indices into ``TrainingPools.passages`` and grades."""

    passages: list[int]
    grades: list[int]
    sample_k: int | None = None

    def max_size(self) -> int:
        return len(self.passages) if self.sample_k is None else min(self.sample_k, len(self.passages))


@dataclass
class QueryPool:
    qid: str
    text: str
    sources: list[SourcePassages] = field(default_factory=list)

    def max_size(self) -> int:
        return sum(s.max_size() for s in self.sources)

    def grades(self) -> list[int]:
        return [g for s in self.sources for g in s.grades]


@dataclass
class TrainingPools:
    """Everything needed to draw groups: query pools and a table of passage texts."""

    queries: list[QueryPool]
    passages: list[str]
    stats: dict = field(default_factory=dict)

    def describe(self) -> str:
        lines = [f"{len(self.queries)} queries, {len(self.passages)} distinct passages"]
        for label, info in self.stats.get("sources", {}).items():
            lines.append(f"  {label}: {info['queries']} queries, {info['rows']} judgements, grades {info['grades']}")
        return "\n".join(lines)


def apply_source(spec: SourceSpec, grade: int) -> int | None:
    """Filter then transform one original grade; ``None`` when the filters reject it."""
    if spec.min_grade is not None and grade < spec.min_grade:
        return None
    if spec.max_grade is not None and grade > spec.max_grade:
        return None
    if spec.set_grade is not None:
        return spec.set_grade
    if spec.grade_map is not None:
        return spec.grade_map.get(grade, grade)
    return grade


def _resolve_path(recipe: Recipe, value: str) -> Path:
    path = Path(os.path.expandvars(value)).expanduser()
    if not path.is_absolute() and recipe.base_dir is not None:
        path = recipe.base_dir / path
    return path


def _looks_like_path(value: str) -> bool:
    return any(sep in value for sep in ("/", os.sep)) or value.startswith((".", "~", "$"))


def _resolve_folder(recipe: Recipe, index: int, spec: SourceSpec) -> Path:
    origin = recipe.origin or "<recipe>"
    candidate = _resolve_path(recipe, spec.dataset)
    if candidate.is_dir():
        if not (candidate / "queries.jsonl").is_file():
            raise RecipeError(origin, None, f"sources[{index}].dataset", f"{candidate}: not a BEIR folder (no queries.jsonl)")
        return candidate
    if _looks_like_path(spec.dataset):
        raise RecipeError(origin, None, f"sources[{index}].dataset", f"{candidate}: no such folder")
    try:
        return resolve_dataset(spec.dataset)
    except DatasetNotFoundError as error:
        raise RecipeError(origin, None, f"sources[{index}].dataset", str(error)) from None


def _read_id_list(path: Path) -> list[str]:
    if path.suffix == ".jsonl":
        return list(load_queries(path))
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _read_fidelity(folder: Path, scorer: str, origin, index: int) -> dict[str, float]:
    """Per-query pairwise ordering accuracy of ``scorer`` from ``folder/fidelity.json``."""
    import json

    path = folder / "fidelity.json"
    field_name = f"sources[{index}].min_fidelity"
    if not path.is_file():
        raise RecipeError(origin, None, field_name, f"{path}: missing (synthrank generate writes it)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {str(q): float(v) for q, v in data["scorers"][scorer]["per_query"].items()}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise RecipeError(origin, None, field_name,
                          f"{path}: no per-query accuracies for scorer {scorer!r}") from None


def build_pools(recipe: Recipe) -> TrainingPools:
    """Read every source (corpora loaded once per folder) and build the per-query pools.

    Only the texts of passages that some pool uses are kept. Query ids are shared across
    sources: a query's text must agree between the folders that define it.
    """
    origin = recipe.origin or "<recipe>"
    corpora: dict[Path, tuple[Corpus, dict[str, int]]] = {}
    query_files: dict[Path, dict[str, str]] = {}
    passage_index: dict[tuple[Path, str], int] = {}
    passages: list[str] = []
    pools: dict[str, QueryPool] = {}
    query_origin: dict[str, Path] = {}
    stats: dict = {"sources": {}}

    for i, spec in enumerate(recipe.sources):
        folder = _resolve_folder(recipe, i, spec).resolve()
        if spec.qrels is not None:
            qrels_path = _resolve_path(recipe, spec.qrels)
            if not qrels_path.is_file():
                raise RecipeError(origin, None, f"sources[{i}].qrels", f"{qrels_path}: no such file")
        else:
            qrels_path = folder / "qrels" / f"{spec.split}.tsv"
            if not qrels_path.is_file():
                raise RecipeError(origin, None, f"sources[{i}].split", f"{qrels_path}: no qrels for split {spec.split!r}")
        if folder not in corpora:
            corpus_path = folder / "corpus.jsonl"
            if not corpus_path.is_file():
                raise RecipeError(origin, None, f"sources[{i}].dataset", f"{corpus_path}: missing")
            corpus = load_corpus(corpus_path)
            corpora[folder] = (corpus, corpus.index())
            query_files[folder] = load_queries(folder / "queries.jsonl")
        corpus, row_of = corpora[folder]
        documents_cache: dict[int, str] = {}
        all_queries = query_files[folder]
        qrels = load_qrels(qrels_path)

        selected = [qid for qid in qrels if qid in all_queries]
        missing_queries = len(qrels) - len(selected)
        if spec.queries is not None:
            if isinstance(spec.queries, str):
                ids_path = _resolve_path(recipe, spec.queries)
                if not ids_path.is_file():
                    raise RecipeError(origin, None, f"sources[{i}].queries", f"{ids_path}: no such file")
                wanted = set(_read_id_list(ids_path))
            else:
                wanted = set(spec.queries)
            selected = [qid for qid in selected if qid in wanted]
        dropped_by_fidelity = 0
        if spec.min_fidelity is not None:
            accuracy = _read_fidelity(folder, spec.fidelity_scorer, origin, i)
            kept = [qid for qid in selected if accuracy.get(qid, 0.0) >= spec.min_fidelity]
            dropped_by_fidelity = len(selected) - len(kept)
            selected = kept
        if spec.max_queries is not None and len(selected) > spec.max_queries:
            rng = np.random.default_rng([recipe.seed, i])
            keep = set(rng.choice(len(selected), size=spec.max_queries, replace=False).tolist())
            selected = [qid for j, qid in enumerate(selected) if j in keep]

        grade_counts: Counter = Counter()
        rows = missing_passages = used_queries = 0
        for qid in selected:
            text = all_queries[qid]
            if qid in pools and pools[qid].text.strip() != text.strip():
                raise RecipeError(origin, None, f"sources[{i}].dataset",
                                  f"query {qid!r} has a different text in {folder} than in {query_origin[qid]}; "
                                  "sources that share query ids must agree on the texts")
            source = SourcePassages([], [], spec.sample_k)
            claimed = {p for s in pools[qid].sources for p in s.passages} if qid in pools else set()
            for pid, original in qrels[qid].items():
                grade = apply_source(spec, original)
                if grade is None:
                    continue
                row = row_of.get(pid)
                if row is None:
                    missing_passages += 1
                    continue
                key = (folder, pid)
                index = passage_index.get(key)
                if index is None:
                    if row not in documents_cache:
                        title, body = corpus.titles[row], corpus.texts[row]
                        documents_cache[row] = f"{title} {body}".strip() if title else body
                    index = passage_index[key] = len(passages)
                    passages.append(documents_cache[row])
                if index in claimed:
                    continue
                claimed.add(index)
                source.passages.append(index)
                source.grades.append(grade)
                grade_counts[grade] += 1
                rows += 1
            if not source.passages:
                continue
            if qid not in pools:
                pools[qid] = QueryPool(qid, text)
                query_origin[qid] = folder
            pools[qid].sources.append(source)
            used_queries += 1
        if missing_passages:
            log.warning("%s: %d qrels rows name passages missing from %s/corpus.jsonl (skipped)",
                        spec.label, missing_passages, folder)
        if missing_queries:
            log.warning("%s: %d qrels queries are missing from %s/queries.jsonl (skipped)",
                        spec.label, missing_queries, folder)
        stats["sources"][spec.label] = {"queries": used_queries, "rows": rows,
                                        "grades": dict(sorted(grade_counts.items())),
                                        "missing_passages": missing_passages, "missing_queries": missing_queries}
        if spec.min_fidelity is not None:
            stats["sources"][spec.label]["consistency_filter"] = {
                "scorer": spec.fidelity_scorer, "min_fidelity": spec.min_fidelity, "dropped": dropped_by_fidelity,
                "reason": f"{spec.fidelity_scorer} orders fewer than {spec.min_fidelity:.0%} of the level pairs correctly"}
            log.info("%s: consistency filter dropped %d queries", spec.label, dropped_by_fidelity)
    result = TrainingPools(list(pools.values()), passages, stats)
    if not result.queries:
        raise RecipeError(origin, None, "sources", "no (query, passage) pairs left after filters and subsets")
    return result
