"""``synthrank adapt`` with a scripted backend: queries from documents, the round-trip filter,
graded contexts, the BEIR export, bad input, and kill-and-resume."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synthrank.cli import app
from synthrank.data import DataFormatError, load_beir
from synthrank.data.recipes import build_pools, parse_recipe
from synthrank.generate.adapt import (
    adapt, grade_neighbours, load_documents, parse_neighbour_rule, resolve_corpus, sample_documents,
)
from synthrank.generate.backends.base import Completion
from synthrank.generate.doc_queries import QueryValidator, parse_query

from .conftest import REPO
from .fakes import ScriptedBackend

TESTS = Path(__file__).resolve().parents[1]

# Twelve documents, each with a distinctive topic word, so that BM25 finds the right one.
TOPICS = [
    ("zebrafish", "Zebrafish regenerate heart muscle", "cardiomyocytes proliferate after injury in adult fish"),
    ("telomerase", "Telomerase activity in stem cells", "chromosome ends shorten unless the enzyme extends them"),
    ("microbiome", "Gut microbiome and obesity", "bacterial communities in the intestine differ in obese mice"),
    ("insulin", "Insulin resistance in muscle", "glucose uptake falls when skeletal muscle ignores the hormone"),
    ("malaria", "Malaria parasites in red blood cells", "plasmodium invades erythrocytes using surface proteins"),
    ("dopamine", "Dopamine neurons and reward", "midbrain neurons fire when a reward is better than expected"),
    ("collagen", "Collagen in wound healing", "fibroblasts deposit the protein that gives scars their strength"),
    ("vaccine", "Vaccine response in the elderly", "older adults make fewer antibodies after immunisation"),
    ("autophagy", "Autophagy in starving cells", "cells digest their own organelles when nutrients run out"),
    ("melatonin", "Melatonin and sleep timing", "the pineal gland releases the hormone in the evening dark"),
    ("prion", "Prion proteins misfold", "abnormal folding spreads from one protein molecule to the next"),
    ("ribosome", "Ribosome assembly in the nucleolus", "ribosomal RNA and proteins come together before export"),
]
FILLER = ("The study measured this in several groups over many months and compared the results with "
          "controls, and the authors discuss what the finding means for future work in the field.")


def write_corpus_file(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "corpus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def corpus_dir(tmp_path) -> Path:
    rows = [{"_id": f"d{i}", "title": title, "text": f"In {word} research, {detail}. {FILLER}"}
            for i, (word, title, detail) in enumerate(TOPICS)]
    write_corpus_file(tmp_path / "docs", rows)
    return tmp_path / "docs"


def document_of(messages: list[dict]) -> str:
    return messages[-1]["content"].split("Document:", 1)[1].strip()


def topic_query(messages: list[dict], salt: int | None = None) -> str:
    """A query a good model would write: the document's topic word in new wording (``salt``
    makes the queries of one document differ)."""
    document = document_of(messages)
    word = next(w for w, _, _ in TOPICS if w in document.lower())
    extra = "" if salt is None else f" in case {salt % 997}"
    return f"what does {word} research show{extra}"


def run(corpus, out, backend, **kw):
    return adapt(corpus, out, backend_instance=backend, progress=False, **kw)


def test_writes_a_beir_training_folder_usable_by_recipes(tmp_path, corpus_dir):
    backend = ScriptedBackend(lambda request, n: topic_query(request.messages))
    result = run(corpus_dir, tmp_path / "out", backend, documents=6, seed=1, random_negatives=1)
    ds = load_beir(tmp_path / "out", split="train")
    assert ds.qrels_report.clean and len(ds.queries) == 6
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest == result.manifest
    assert manifest["filter"] == {"enabled": True, "retriever": "bm25", "base_model": None, "top_k": 20,
                                  "generated": 6, "kept": 6, "dropped": 0, "yield": 1.0}
    for qid, judged in ds.qrels.items():
        source = qid.rsplit("-Q", 1)[0]
        assert judged[source] == 3  # the real document the query was written from
        assert sorted(judged.values()) == [0, 1, 1, 1, 3]  # 3 BM25 neighbours at 1, one random at 0
        row = ds.corpus.ids.index(source)
        word = re.search(r"what does (\w+)", ds.queries[qid]).group(1)
        assert word in ds.corpus.texts[row]  # real text, unchanged
    assert manifest["contexts"]["by_grade"] == {"3": 6, "1": 18, "0": 6}
    assert manifest["query_generation"]["generated"] == 6 and manifest["query_generation"]["failed"] == 0
    for mode in ("graded", "binary"):  # the recipes of `synthrank train` read it as it is
        recipe = parse_recipe({"mode": mode, "group_size": 3, "positive_threshold": 3,
                               "sources": [{"dataset": str(tmp_path / "out"), "split": "train"}]})
        pools = build_pools(recipe)
        assert len(pools.queries) == 6


def test_several_queries_per_document_with_distinct_seeds(tmp_path, corpus_dir):
    def responder(request, n):
        return topic_query(request.messages, salt=request.seed)

    backend = ScriptedBackend(responder)
    result = run(corpus_dir, tmp_path / "out", backend, documents=3, queries_per_doc=2)
    q = result.manifest["query_generation"]
    assert q["expected"] == 6 and q["generated"] + q["failed"] == 6
    seeds = [c.seed for c in backend.calls]
    assert len(set(seeds)) == len(seeds)  # every request its own seed
    ids = list(load_beir(tmp_path / "out", split="train").queries)
    assert all(re.fullmatch(r"d\d+-Q[01]", qid) for qid in ids)


def test_bad_queries_are_rejected_with_reasons_and_retried(tmp_path, corpus_dir):
    answers = {}

    def responder(request, n):
        document = document_of(request.messages)
        doc = next(i for i, (w, _, _) in enumerate(TOPICS) if w in document.lower())
        count = answers[doc] = answers.get(doc, 0) + 1
        if doc == 0:
            return ""  # always empty
        if doc == 1:
            return "Telomerase activity in stem cells"  # the title, copied
        if doc == 2:
            return "Here is the query: " + " ".join(["microbiome"] * 40)  # too long
        if doc == 3 and count == 1:
            return Completion(error="HTTP 500: boom")
        return topic_query(request.messages)

    backend = ScriptedBackend(responder)
    result = run(corpus_dir, tmp_path / "out", backend, documents=None, limit=5, max_attempts=2)
    q = result.manifest["query_generation"]
    assert q["generated"] == 2 and q["failed"] == 3  # d3 succeeded on its second attempt
    reasons = {f["document"]: f["reason"] for f in result.manifest["failures"]}
    assert reasons["d0"].endswith("empty query") and "attempt 2 (query)" in reasons["d0"]
    assert "copied a sentence of the document" in reasons["d1"]
    assert "too long (40 words > 32)" in reasons["d2"]
    assert answers[3] == 2 and answers[0] == 2
    assert set(q["failure_reasons"]) == {"empty query", "copied a sentence of the document", "too long"}


@pytest.mark.parametrize("rule, generated", [("first-sentence", 2), ("reject", 0)])
def test_an_answer_cut_by_the_token_budget_keeps_its_first_sentence(tmp_path, corpus_dir, rule, generated):
    def responder(request, n):
        document = document_of(request.messages)
        word = next(w for w, _, _ in TOPICS if w in document.lower())
        if word == "zebrafish":  # one run-on sentence: nothing complete to keep
            text = "Zebrafish hearts regrow because cardiomyocytes divide again after an injury and"
        else:
            text = f"Adult {word} research shows a clear effect. The study then goes on to describe the"
        return Completion(text=text, tokens_in=100, tokens_out=64, finish_reason="length")

    result = run(corpus_dir, tmp_path / "out", ScriptedBackend(responder), documents=None, limit=3,
                 max_attempts=1, cut_off=rule)
    q = result.manifest["query_generation"]
    assert q["generated"] == generated and q["failed"] == 3 - generated
    if rule == "first-sentence":
        queries = load_beir(tmp_path / "out", split="train").queries
        assert sorted(queries.values()) == ["Adult microbiome research shows a clear effect.",
                                            "Adult telomerase research shows a clear effect."]
        assert [f["document"] for f in result.manifest["failures"]] == ["d0"]
        assert "cut off by the token limit" in result.manifest["failures"][0]["reason"]


def test_few_shot_examples_are_drawn_per_document_and_attempt(tmp_path, corpus_dir):
    pool = [{"document": f"Example abstract number {i} about topic {i}.", "query": f"Claim number {i} holds."}
            for i in range(4)]
    (tmp_path / "pool.json").write_text(json.dumps(pool))
    backend = ScriptedBackend(lambda request, n: topic_query(request.messages))
    run(corpus_dir, tmp_path / "out", backend, documents=None, limit=8, few_shot=tmp_path / "pool.json",
        few_shot_per_query=1)
    shown = [[m["content"] for m in c.messages if m["role"] == "assistant"] for c in backend.calls]
    assert all(len(examples) == 1 for examples in shown)
    assert len({examples[0] for examples in shown}) > 1  # not the same example for every document
    again = ScriptedBackend(lambda request, n: topic_query(request.messages))
    run(corpus_dir, tmp_path / "again", again, documents=None, limit=8, few_shot=tmp_path / "pool.json",
        few_shot_per_query=1)
    assert sorted(map(str, shown)) == sorted(
        str([m["content"] for m in c.messages if m["role"] == "assistant"]) for c in again.calls)  # seeded
    with pytest.raises(ValueError, match="few_shot_per_query"):
        run(corpus_dir, tmp_path / "bad", backend, documents=2, few_shot_per_query=0)


def test_round_trip_filter_drops_queries_whose_document_is_not_found(tmp_path, corpus_dir):
    def responder(request, n):
        if "zebrafish" in document_of(request.messages).lower():
            return "which enzyme keeps telomerase chromosome ends long"  # about another document
        return topic_query(request.messages)

    result = run(corpus_dir, tmp_path / "out", ScriptedBackend(responder), documents=None, limit=4,
                 filter_top_k=1)
    f = result.manifest["filter"]
    assert (f["generated"], f["kept"], f["dropped"]) == (4, 3, 1)
    dropped, = result.manifest["dropped"]
    assert dropped["document"] == "d0" and (dropped["source_rank"] is None or dropped["source_rank"] > 1)
    assert "d0-Q0" not in load_beir(tmp_path / "out", split="train").queries
    unfiltered = run(corpus_dir, tmp_path / "out", ScriptedBackend(responder), documents=None, limit=4,
                     filter=False)
    assert unfiltered.manifest["filter"]["kept"] == 4 and unfiltered.summary.requests == 0  # all from the store


def test_rerun_asks_nothing_and_new_documents_only_are_generated(tmp_path, corpus_dir):
    backend = ScriptedBackend(lambda request, n: topic_query(request.messages))
    first = run(corpus_dir, tmp_path / "out", backend, documents=None, limit=3)
    again = ScriptedBackend(lambda request, n: topic_query(request.messages))
    second = run(corpus_dir, tmp_path / "out", again, documents=None, limit=3)
    assert again.calls == [] and second.summary.already_finished == 3
    assert second.manifest["filter"] == first.manifest["filter"]
    more = ScriptedBackend(lambda request, n: topic_query(request.messages))
    run(corpus_dir, tmp_path / "out", more, documents=None, limit=5)
    assert len(more.calls) == 2


def test_shards_merge_into_the_unsharded_result(tmp_path, corpus_dir):
    make = lambda: ScriptedBackend(lambda request, n: topic_query(request.messages))  # noqa: E731
    for i in range(2):
        run(corpus_dir, tmp_path / f"shard{i}", make(), documents=8, shard=f"{i}/2")
    final = make()
    merged = run(corpus_dir, tmp_path / "all", final, documents=8,
                 merge_from=[tmp_path / "shard0", tmp_path / "shard1"])
    assert final.calls == [] and merged.manifest["query_generation"]["generated"] == 8
    run(corpus_dir, tmp_path / "direct", make(), documents=8)
    assert (tmp_path / "all" / "qrels" / "train.tsv").read_text() == (tmp_path / "direct" / "qrels" / "train.tsv").read_text()


# --- pieces ---------------------------------------------------------------------------------

def test_parse_query_strips_labels_quotes_and_json():
    assert parse_query('Query: "how do zebrafish regrow hearts?"\nThis query asks...') == "how do zebrafish regrow hearts?"
    assert parse_query("1. telomerase in stem cells") == "telomerase in stem cells"
    assert parse_query('```json\n{"query": "gut bacteria and weight"}\n```') == "gut bacteria and weight"
    assert parse_query("Here is a search query:\n\nmalaria invasion proteins") == "malaria invasion proteins"
    assert parse_query("   ") == ""
    assert parse_query("Document: Nrg1 signalling guides interneurons.") == "Nrg1 signalling guides interneurons."


def test_query_validator():
    document = "Zebrafish regenerate heart muscle.\nIn zebrafish research, cardiomyocytes proliferate after injury."
    check = QueryValidator(min_words=3, max_words=12).check
    assert check("how do zebrafish hearts heal", document) is None
    assert check("zebrafish hearts", document) == "too short (2 words < 3)"
    assert check("The above document is about zebrafish hearts", document) == "talks about the document, not its content"
    assert check("what does this article say", document) == "talks about the document, not its content"
    assert check("Zebrafish regenerate heart muscle", document) == "copied a sentence of the document"
    assert check("in zebrafish research cardiomyocytes proliferate", document).startswith("copied from the document")
    assert check("how do zebrafish hearts heal", document, others=["How do zebrafish hearts heal?"]) == \
        "duplicate of another query for the document"
    example = "how many minutes to boil an egg for a runny yolk"
    assert check("how many minutes to boil an egg for a soft-boiled egg", document, examples=[example]) == \
        "copy of a few-shot example"
    # wording carried over from the example rather than taken from the document
    assert check("how many minutes do zebrafish hearts need to heal", document, examples=[example]) == \
        "borrows the few-shot example's wording: how many minutes"
    assert check("how many days do zebrafish hearts need to heal", document, examples=[example]) is None
    # a shared question opening made of function words is not content
    assert check("how do zebrafish hearts heal after injury", document, examples=["how do i boil an egg"]) is None
    assert check("high caffeine intake promotes glioblastoma", document,
                 examples=["High caffeine intake before bed delays sleep onset."]).startswith("borrows")


def test_neighbour_rule():
    assert parse_neighbour_rule("1-3=1") == [(1, 3, 1)]
    assert parse_neighbour_rule("4-10=0, 1-2=1") == [(1, 2, 1), (4, 10, 0)]
    assert parse_neighbour_rule("") == []
    for bad in ("1-3", "0-2=1", "3-1=1", "1-3=3", "1-3=1,2-4=0"):
        with pytest.raises(ValueError, match="neighbour rule"):
            parse_neighbour_rule(bad)
    ranked = ["a", "src", "b", "c", "d", "e"]
    assert grade_neighbours(ranked, "src", [(1, 2, 1), (4, 4, 0)]) == {"a": 1, "b": 1, "d": 0}


def test_sampling_is_seeded_and_stratified_covers_all_lengths(tmp_path):
    rows = [{"_id": f"d{i}", "text": " ".join(["word"] * (5 + i))} for i in range(40)]
    corpus = load_documents(write_corpus_file(tmp_path / "c", rows))
    assert sample_documents(corpus, 8, seed=3) == sample_documents(corpus, 8, seed=3)
    assert sample_documents(corpus, 8, seed=3) != sample_documents(corpus, 8, seed=4)
    stratified = sample_documents(corpus, 8, seed=0, sampling="stratified", min_words=10)
    assert len(stratified) == 8 and min(stratified) >= 5  # rows 0-4 have fewer than 10 words
    # eligible rows 5-39 sorted by length fall into quartiles 5-12, 13-21, 22-30, 31-39
    assert [sum(lo <= r <= hi for r in stratified) for lo, hi in ((5, 12), (13, 21), (22, 30), (31, 39))] == [2] * 4
    assert sample_documents(corpus, None, min_words=40) == list(range(35, 40))
    with pytest.raises(ValueError, match="sampling must be"):
        sample_documents(corpus, 8, sampling="cluster")


# --- bad input ------------------------------------------------------------------------------

@pytest.mark.parametrize("rows, line, field, problem", [
    ([], None, None, "the corpus has no documents"),
    ([{"_id": "a", "title": "", "text": "fine text here"}, {"_id": "b", "title": "", "text": "  "}], 2, "text", "empty"),
    ([{"_id": "a", "text": "fine text here"}, {"_id": "b"}], 2, "text", "missing"),
    ([{"_id": "a", "text": "one"}, {"_id": "b", "text": "two"}, {"_id": "a", "text": "three"}], 3, "_id",
     "duplicate id 'a' (first on line 1)"),
])
def test_bad_corpus_is_an_error_naming_file_line_and_field(tmp_path, rows, line, field, problem):
    path = write_corpus_file(tmp_path / "bad", rows)
    with pytest.raises(DataFormatError) as info:
        run(path, tmp_path / "out", ScriptedBackend())
    error = info.value
    assert (error.path, error.line, error.field, error.problem) == (path, line, field, problem)
    assert str(error).startswith(f"{path}")
    assert not (tmp_path / "out").exists()  # nothing started


def test_cli_reports_bad_input_without_a_traceback(tmp_path):
    path = write_corpus_file(tmp_path / "bad", [{"_id": "a", "text": "x"}, {"_id": "a", "text": "y"}])
    result = CliRunner().invoke(app, ["adapt", "--corpus", str(tmp_path / "bad"), "--output", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert f"{path}:2: field '_id': duplicate id 'a'" in result.output
    assert "Traceback" not in result.output
    missing = CliRunner().invoke(app, ["adapt", "--corpus", str(tmp_path / "nope/corpus.jsonl"), "--output", "o"])
    assert missing.exit_code == 2 and "no such file or folder" in missing.output


def test_cli_takes_the_backend_options_of_generate():
    text = CliRunner().invoke(app, ["adapt", "--help"], env={"COLUMNS": "200"}).output
    for option in ("--backend", "--model", "--concurrency", "--base-url", "--threads", "--quantize", "--documents",
                   "--queries-per-doc", "--filter-top-k", "--neighbours", "--shard"):
        assert option in text


def test_resolve_corpus_by_name_folder_or_file(tmp_path, corpus_dir, monkeypatch):
    monkeypatch.setenv("SYNTHRANK_DATA_DIR", str(tmp_path))
    assert resolve_corpus("docs") == corpus_dir / "corpus.jsonl"  # a folder with no queries.jsonl
    assert resolve_corpus(corpus_dir) == resolve_corpus(corpus_dir / "corpus.jsonl")
    with pytest.raises(FileNotFoundError, match="no corpus.jsonl"):
        resolve_corpus(tmp_path)


# --- kill and resume ------------------------------------------------------------------------

SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from generate.fakes import ScriptedBackend
from generate.test_adapt import topic_query
from synthrank.generate.adapt import adapt
backend = ScriptedBackend(lambda request, n: topic_query(request.messages, salt=request.seed), concurrency=1, delay=0.3)
adapt({corpus!r}, {out!r}, documents=None, queries_per_doc=2, backend_instance=backend, progress=False)
"""


def _items(out: Path):
    con = sqlite3.connect(f"file:{out / 'generate.sqlite'}?mode=ro", uri=True)
    try:
        return con.execute("SELECT qid, level, k, status, text, request_id, session_id FROM items").fetchall()
    finally:
        con.close()


def test_sigkill_midway_then_rerun_loses_and_duplicates_nothing(tmp_path, corpus_dir):
    out = tmp_path / "out"
    script = SCRIPT.format(tests=str(TESTS), corpus=str(corpus_dir), out=str(out))
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}:{TESTS}"}
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, env=env, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    try:
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.1)
            try:
                if len(_items(out)) >= 3:
                    proc.send_signal(signal.SIGKILL)
                    break
            except sqlite3.OperationalError:
                continue
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    before = _items(out)
    assert 3 <= len(before) < 24 and not (out / "manifest.json").exists()

    rerun = subprocess.run([sys.executable, "-c", script.replace("delay=0.3", "delay=0")], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    after = _items(out)
    keys = [(q, lv, k) for q, lv, k, *_ in after]
    assert len(keys) == len(set(keys)) == 24  # 12 documents x 2 queries, each exactly once
    by_key = {(q, lv, k): row for q, lv, k, *row in after}
    for q, lv, k, *row in before:  # what the killed run committed is kept as it was
        assert by_key[(q, lv, k)] == row
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["query_generation"]["generated"] == 24 and manifest["query_generation"]["sessions"] == 2
    assert manifest["query_generation"]["this_session"]["already_finished"] == len(before)
    queries = load_beir(out, split="train").queries
    assert len(queries) == manifest["filter"]["kept"] and len(set(queries.values())) == len(queries)


@pytest.mark.slow
def test_bundled_model_killed_midway_then_rerun(tmp_path, corpus_dir):
    """The same with the bundled SmolLM2 through the command line."""
    pytest.importorskip("llama_cpp")
    from synthrank.generate.bundled import BundledModelMissing, bundled_generator_path

    try:
        bundled_generator_path()
    except BundledModelMissing as error:
        pytest.skip(str(error))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "synthrank", "adapt", "--corpus", str(corpus_dir), "--output", str(out),
           "--documents", "6", "--queries-per-doc", "2", "--threads", "2", "--concurrency", "2", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
            try:
                if len(_items(out)) >= 1:
                    proc.send_signal(signal.SIGKILL)
                    break
            except sqlite3.OperationalError:
                continue
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stdout.read().decode()[-2000:]
    before = _items(out)
    rerun = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    after = _items(out)
    keys = [(q, lv, k) for q, lv, k, *_ in after]
    assert len(keys) == len(set(keys)) == 12
    by_key = {(q, lv, k): row for q, lv, k, *row in after}
    assert all(by_key[(q, lv, k)] == row for q, lv, k, *row in before)
    manifest = json.loads((out / "manifest.json").read_text())
    q = manifest["query_generation"]
    assert q["generated"] + q["failed"] == 12 and q["sessions"] == 2
    assert q["model"] == "SmolLM2-135M-Instruct-Q4_1-as-Q8_0"
    assert len(load_beir(out, split="train").queries) == manifest["filter"]["kept"]


def test_grounded_levels_are_written_from_the_source_document(tmp_path, corpus_dir):
    from .fakes import good_answer

    def responder(request, n):
        content = request.messages[-1]["content"]
        return topic_query(request.messages) if "Document:" in content else good_answer(request.messages)

    backend = ScriptedBackend(responder)
    result = run(corpus_dir, tmp_path / "out", backend, documents=4, grounded=True)
    grounded_prompts = [c.messages[-1]["content"] for c in backend.calls if "Reference passage" in c.messages[-1]["content"]]
    assert len(grounded_prompts) == 12  # levels 2, 1, 0 for each of 4 queries; level 3 is the document
    ds = load_beir(tmp_path / "out", split="train")
    for qid, judged in ds.qrels.items():
        source = qid.rsplit("-Q", 1)[0]
        assert judged[source] == 3
        assert sorted(g for pid, g in judged.items() if pid.startswith(f"{qid}-L")) == [0, 1, 2]
        reference = json.loads(next(line for line in (tmp_path / "out" / "grounded" / "references.jsonl")
                                    .read_text().splitlines() if json.loads(line)["query-id"] == qid))
        assert reference["corpus-id"] == source
        assert any(ds.corpus.texts[ds.corpus.ids.index(source)][:30] in p for p in grounded_prompts)
    g = result.manifest["grounded"]
    assert g["passages"] == 12 and g["failed"] == 0 and g["reference_level"] == 3
    assert result.manifest["contexts"]["by_grade"] == {"3": 4, "2": 4, "1": 16, "0": 4}
    again = ScriptedBackend(responder)
    run(corpus_dir, tmp_path / "out", again, documents=4, grounded=True)
    assert again.calls == []  # both stores resume: nothing is asked twice


def test_refuses_to_overwrite_folders_it_did_not_write(tmp_path, corpus_dir):
    with pytest.raises(ValueError, match="holds the input corpus"):
        run(corpus_dir, corpus_dir, ScriptedBackend())
    beir = tmp_path / "beir"
    write_corpus_file(beir, [{"_id": "x", "text": "keep me"}])
    with pytest.raises(ValueError, match="holds corpus.jsonl but no adapt manifest"):
        run(corpus_dir, beir, ScriptedBackend())
    (beir / "manifest.json").write_text('{"fingerprint": "abc", "counts": {}}')
    with pytest.raises(ValueError, match="something else than synthrank adapt"):
        run(corpus_dir, beir, ScriptedBackend())
    assert (beir / "corpus.jsonl").read_text() == '{"_id": "x", "text": "keep me"}\n'


def test_round_trip_filter_with_the_base_dense_retriever(tmp_path, corpus_dir, tiny_model_dir):
    from synthrank.generate.adapt import dense_rankings, load_documents

    backend = ScriptedBackend(lambda request, n: topic_query(request.messages))
    result = run(corpus_dir, tmp_path / "out", backend, documents=None, limit=6, filter_retriever="base",
                 base_model=str(tiny_model_dir), filter_top_k=3)
    f = result.manifest["filter"]
    assert f["retriever"] == "base" and f["base_model"] == str(tiny_model_dir)
    queries = {f"d{i}-Q0": topic_query([{"content": f"Document: {TOPICS[i][0]}"}]) for i in range(6)}
    docs = load_documents(corpus_dir / "corpus.jsonl")
    ranking = dense_rankings(docs, queries, 3, str(tiny_model_dir))
    expected_kept = sum(f"d{i}" in ranking[f"d{i}-Q0"] for i in range(6))
    assert f["kept"] == expected_kept and f["kept"] + f["dropped"] == 6
    assert all(d["source_rank"] is None or d["source_rank"] > 3 for d in result.manifest["dropped"])


def test_neighbours_from_the_base_dense_retriever(tmp_path, corpus_dir, tiny_model_dir):
    from synthrank.generate.adapt import bm25_rankings, dense_rankings, grade_neighbours, load_documents

    backend = ScriptedBackend(lambda request, n: topic_query(request.messages))
    result = run(corpus_dir, tmp_path / "out", backend, documents=None, limit=6, neighbour_retriever="base",
                 base_model=str(tiny_model_dir), neighbours="1-2=1")
    c = result.manifest["contexts"]
    assert c["neighbour_retriever"] == "base" and c["neighbour_model"] == str(tiny_model_dir)
    ds = load_beir(tmp_path / "out", split="train")
    docs = load_documents(corpus_dir / "corpus.jsonl")
    dense = dense_rankings(docs, dict(ds.queries), 3, str(tiny_model_dir))
    bm25 = bm25_rankings(docs, dict(ds.queries), 3)
    differs = False
    for qid, judged in ds.qrels.items():
        source = qid.rsplit("-Q", 1)[0]
        expected = grade_neighbours(dense[qid], source, [(1, 2, 1)])
        assert {pid: g for pid, g in judged.items() if pid != source} == expected  # the dense neighbours, graded 1
        differs |= expected != grade_neighbours(bm25[qid], source, [(1, 2, 1)])
    assert differs  # not BM25's neighbours under another name
    with pytest.raises(ValueError, match="neighbour_retriever"):
        run(corpus_dir, tmp_path / "bad", backend, documents=2, neighbour_retriever="splade")


def test_the_earlier_behaviour_keeps_its_store_fingerprint():
    from synthrank.generate.doc_queries import QueryConfig

    earlier = QueryConfig(cut_off="reject").parameters()
    assert "cut_off" not in earlier and "few_shot_per_query" not in earlier  # stores of earlier versions resume
    assert QueryConfig().parameters()["cut_off"] == "first-sentence"  # new behaviour, new fingerprint
    assert QueryConfig(few_shot_per_query=2).parameters()["few_shot_per_query"] == 2
