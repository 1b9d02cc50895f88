"""Recipes: parsing, errors naming file and field, filters, grade transforms, subsets, pools."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthrank.data import write_corpus, write_qrels, write_queries
from synthrank.data.recipes import (
    RecipeError,
    SourceSpec,
    apply_source,
    build_pools,
    load_recipe,
    load_training_data,
    parse_recipe,
)


def make_folder(folder: Path, queries: dict[str, str], qrels: dict[str, dict[str, int]], split: str = "train") -> Path:
    pids = sorted({pid for judged in qrels.values() for pid in judged})
    write_corpus(folder / "corpus.jsonl", [{"_id": p, "title": f"T{p}", "text": f"text of {p}"} for p in pids])
    write_queries(folder / "queries.jsonl", queries)
    write_qrels(folder / "qrels" / f"{split}.tsv", qrels)
    return folder


@pytest.fixture()
def real(tmp_path) -> Path:
    return make_folder(tmp_path / "real", {"a": "query a", "b": "query b", "c": "query c"},
                       {"a": {"a1": 1, "a2": 2}, "b": {"b1": 1}, "c": {"c1": 0, "c2": 1}})


def pool_of(pools, qid):
    return next(p for p in pools.queries if p.qid == qid)


def texts_and_grades(pools, qid):
    pool = pool_of(pools, qid)
    return sorted((pools.passages[i], g) for s in pool.sources for i, g in zip(s.passages, s.grades))


# ------------------------------------------------------------------ parsing


def test_training_data_is_a_recipe_file_or_a_beir_folder(tmp_path, real):
    """A training config's ``data``: a BEIR folder (e.g. a generate output) is the one-source
    recipe with the defaults; anything else is read as a recipe file, as before."""
    recipe = load_training_data(real)
    assert (recipe.mode, recipe.group_size, recipe.sampling) == ("graded", 4, "random")
    assert [(s.dataset, s.split) for s in recipe.sources] == [(str(real.resolve()), "train")]
    pools = build_pools(recipe)
    assert texts_and_grades(pools, "a") == [("Ta1 text of a1", 1), ("Ta2 text of a2", 2)]  # grades as written
    (tmp_path / "r.json").write_text(json.dumps({"group_size": 3, "sources": [{"dataset": "real"}]}))
    assert load_training_data(tmp_path / "r.json").group_size == 3
    with pytest.raises(FileNotFoundError, match="no-such.toml"):  # as a missing recipe always was
        load_training_data(tmp_path / "no-such.toml")


def test_toml_recipe_with_relative_paths(tmp_path, real):
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "r.toml").write_text(
        'mode = "binary"\ngroup_size = 3\npositive_threshold = 2\n'
        '[[sources]]\ndataset = "../real"\nsplit = "train"\nmin_grade = 1\n[sources.grade_map]\n1 = 3\n'
    )
    recipe = load_recipe(recipes / "r.toml")
    assert recipe.mode == "binary" and recipe.group_size == 3 and recipe.positive_threshold == 2
    assert recipe.sources[0].grade_map == {1: 3}
    assert recipe.base_dir == recipes
    pools = build_pools(recipe)
    assert texts_and_grades(pools, "a") == [("Ta1 text of a1", 3), ("Ta2 text of a2", 2)]
    assert texts_and_grades(pools, "c") == [("Tc2 text of c2", 3)]  # c1 (grade 0) filtered by min_grade


def test_json_recipe_and_dataset_name(tmp_path, real, monkeypatch):
    monkeypatch.setenv("SYNTHRANK_DATA_DIR", str(tmp_path))
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"sources": [{"dataset": "real", "set_grade": 3}]}))
    recipe = load_recipe(path)
    assert recipe.mode == "graded" and recipe.group_size == 4 and recipe.sampling == "random"
    pools = build_pools(recipe)
    assert {p.qid for p in pools.queries} == {"a", "b", "c"}
    assert all(g == 3 for p in pools.queries for g in p.grades())


@pytest.mark.parametrize("data, field", [
    ({"sources": [{"dataset": "x", "sampel_k": 2}]}, "sources[0].sampel_k"),
    ({"sources": [{"dataset": "x", "sample_k": 0}]}, "sources[0].sample_k"),
    ({"sources": [{"dataset": "x"}], "group_size": 1}, "group_size"),
    ({"sources": [{"dataset": "x"}], "mode": "pairs"}, "mode"),
    ({"sources": []}, "sources"),
    ({"sources": [{"dataset": "x", "set_grade": 1, "grade_map": {"0": 1}}]}, "sources[0]"),
    ({"sources": [{"dataset": "x", "min_grade": 3, "max_grade": 1}]}, "sources[0]"),
    ({"sources": [{"split": "train"}]}, "sources[0].dataset"),
])
def test_validation_errors_name_file_and_field(tmp_path, data, field):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert info.value.path == path
    assert info.value.field == field
    assert str(path) in str(info.value) and field in str(info.value)


def test_invalid_toml_names_file_and_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('group_size = 4\n[[sources]\ndataset = "x"\n')
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert info.value.path == path and info.value.line == 2


def test_missing_data_errors_name_the_field(tmp_path, real):
    for source, field in [
        ({"dataset": "./nowhere"}, "sources[0].dataset"),
        ({"dataset": str(real), "split": "dev"}, "sources[0].split"),
        ({"dataset": str(real), "qrels": "missing.tsv"}, "sources[0].qrels"),
        ({"dataset": str(real), "queries": "ids.txt"}, "sources[0].queries"),
    ]:
        recipe = parse_recipe({"sources": [source]}, origin=tmp_path / "r.toml")
        with pytest.raises(RecipeError) as info:
            build_pools(recipe)
        assert info.value.field == field, source
        assert str(tmp_path / "r.toml") in str(info.value)


def test_unknown_dataset_name_is_a_recipe_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHRANK_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SYNTHRANK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SYNTHRANK_BEIR_URL", "file:///nonexistent")
    recipe = parse_recipe({"sources": [{"dataset": "nope"}]}, origin=tmp_path / "r.toml")
    with pytest.raises(RecipeError) as info:
        build_pools(recipe)
    assert info.value.field == "sources[0].dataset"


# ------------------------------------------------------------------ grades


def test_apply_source_filters_then_transforms():
    spec = SourceSpec(dataset="x", min_grade=1, max_grade=2, grade_map={1: 3})
    assert [apply_source(spec, g) for g in range(4)] == [None, 3, 2, None]
    spec = SourceSpec(dataset="x", set_grade=1)
    assert [apply_source(spec, g) for g in range(4)] == [1, 1, 1, 1]
    spec = SourceSpec(dataset="x")
    assert [apply_source(spec, g) for g in range(4)] == [0, 1, 2, 3]


# ------------------------------------------------------------------ combining sources


def test_sources_combine_per_query_and_first_source_wins(tmp_path, real):
    mined = tmp_path / "mined.tsv"
    # a1 is already a positive from source 0: source 1 must not re-add it as a negative
    write_qrels(mined, {"a": {"a1": 0, "c1": 0}, "b": {"a2": 0}, "zz": {"b1": 0}})
    recipe = parse_recipe({"sources": [
        {"name": "pos", "dataset": str(real), "min_grade": 1, "set_grade": 3},
        {"name": "neg", "dataset": str(real), "qrels": str(mined), "set_grade": 1, "sample_k": 1},
    ]}, origin=tmp_path / "r.json")
    pools = build_pools(recipe)
    a = pool_of(pools, "a")
    assert len(a.sources) == 2
    assert [pools.passages[i] for i in a.sources[1].passages] == ["Tc1 text of c1"]
    assert a.sources[1].grades == [1] and a.sources[1].sample_k == 1
    assert texts_and_grades(pools, "b") == [("Ta2 text of a2", 1), ("Tb1 text of b1", 3)]
    assert "zz" not in {p.qid for p in pools.queries}  # unknown query in the mined file
    # one passage text per (folder, id), shared across queries
    assert len(pools.passages) == len(set(pools.passages))
    assert pools.stats["sources"]["neg"]["missing_queries"] == 1


def test_query_subsets(tmp_path, real):
    ids = tmp_path / "ids.txt"
    ids.write_text("a\nc\n")
    recipe = parse_recipe({"sources": [{"dataset": str(real), "queries": "ids.txt"}]}, origin=tmp_path / "r.json")
    assert {p.qid for p in build_pools(recipe).queries} == {"a", "c"}
    recipe = parse_recipe({"sources": [{"dataset": str(real), "queries": ["b"]}]}, origin=tmp_path / "r.json")
    assert [p.qid for p in build_pools(recipe).queries] == ["b"]

    def sample(seed):
        recipe = parse_recipe({"seed": seed, "sources": [{"dataset": str(real), "max_queries": 2}]},
                              origin=tmp_path / "r.json")
        return sorted(p.qid for p in build_pools(recipe).queries)

    assert len(sample(0)) == 2
    assert sample(0) == sample(0)
    assert len({tuple(sample(s)) for s in range(10)}) > 1


def test_conflicting_query_texts_are_an_error(tmp_path, real):
    other = make_folder(tmp_path / "other", {"a": "a different text"}, {"a": {"x1": 2}})
    recipe = parse_recipe({"sources": [{"dataset": str(real)}, {"dataset": str(other)}]}, origin=tmp_path / "r.json")
    with pytest.raises(RecipeError) as info:
        build_pools(recipe)
    assert info.value.field == "sources[1].dataset" and "'a'" in str(info.value)


def test_same_passage_id_in_two_folders_stays_two_passages(tmp_path, real):
    other = make_folder(tmp_path / "other", {"a": "query a"}, {"a": {"a1": 2}})
    recipe = parse_recipe({"sources": [{"dataset": str(real)}, {"dataset": str(other)}]}, origin=tmp_path / "r.json")
    pools = build_pools(recipe)
    a = pool_of(pools, "a")
    assert sum(len(s.passages) for s in a.sources) == 3


def test_everything_filtered_is_an_error(tmp_path, real):
    recipe = parse_recipe({"sources": [{"dataset": str(real), "min_grade": 5}]}, origin=tmp_path / "r.json")
    with pytest.raises(RecipeError, match="no \\(query, passage\\) pairs"):
        build_pools(recipe)


def test_example_recipes_parse():
    folder = Path(__file__).resolve().parents[2] / "configs" / "recipes"
    files = sorted(folder.glob("*.toml")) + sorted(folder.glob("*.json"))
    assert files, "example recipes are missing"
    for path in files:
        recipe = load_recipe(path)
        assert recipe.sources


def test_a_recipe_with_non_utf8_bytes_names_file_and_line(tmp_path):
    path = tmp_path / "recipe.toml"
    path.write_bytes('group_size = 4\n\n[[sources]]\nname = "caf\xe9"\ndataset = "x"\n'.encode("latin-1"))
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert info.value.path == path and info.value.line == 4 and "not valid UTF-8 (byte 0xe9)" in str(info.value)
