"""The store, the generation loop and the BEIR export, with a scripted backend."""

from __future__ import annotations

import json
import sqlite3

import pytest

from synthrank.data import load_beir
from synthrank.generate.api import ExportConflictError, GenerationShortfallError, generate, merge
from synthrank.generate.backends.base import Completion
from synthrank.generate.store import Store

from .fakes import ScriptedBackend, good_answer, passage_for, query_of


def run(queries_file, out, backend, **kw):
    return generate(queries_file, out, backend_instance=backend, progress=False, **kw)


def test_generates_a_valid_beir_folder(tmp_path, queries_file):
    backend = ScriptedBackend()
    result = run(queries_file, tmp_path / "out", backend)
    ds = load_beir(tmp_path / "out", split="train")
    assert len(ds.corpus) == 20 and ds.qrels_report.clean
    assert set(ds.qrels["q1"].items()) == {("q1-L3-0", 3), ("q1-L2-0", 2), ("q1-L1-0", 1), ("q1-L0-0", 0)}
    assert ds.corpus.texts[ds.corpus.ids.index("q1-L3-0")] == passage_for("how long to boil an egg", 3)
    assert len(backend.calls) == 5  # one joint request per query
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["counts"]["passages"] == 20 and manifest["counts"]["failed"] == 0
    assert manifest["backend"] == "scripted" and manifest["model"] == "fake-model"
    assert manifest["tokens_in"] == 500 and manifest["tokens_out"] > 0 and manifest["prompt_hash"]
    assert manifest["parameters"]["levels"][0]["grade"] == 3
    assert result.summary.done == 20
    assert manifest["this_session"]["runtime"] == {}  # a backend that reports nothing about how it ran


def test_manifest_records_how_the_backend_ran_this_session(tmp_path, queries_file):
    backend = ScriptedBackend()
    backend.runtime = lambda: {"weights": "q8_0", "threads": 2}
    run(queries_file, tmp_path / "out", backend, limit=1)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["this_session"]["runtime"] == {"weights": "q8_0", "threads": 2}


def test_rerun_skips_done_items_and_changed_parameters_start_fresh(tmp_path, queries_file):
    out = tmp_path / "out"
    run(queries_file, out, ScriptedBackend(), limit=2)
    again = ScriptedBackend()
    result = run(queries_file, out, again, limit=2)
    assert again.calls == [] and result.summary.already_finished == 8
    more = ScriptedBackend()
    run(queries_file, out, more, limit=4)  # same fingerprint, two more queries
    assert len(more.calls) == 2
    other = ScriptedBackend()
    run(queries_file, out, other, limit=2, temperature=0.1, overwrite=True)  # new fingerprint: new items
    assert len(other.calls) == 2
    with Store.in_dir(out) as store:
        assert len(store.fingerprints()) == 2


def test_broken_json_falls_back_to_per_level_requests(tmp_path, queries_file):
    def responder(request, n):
        content = request.messages[-1]["content"]
        if "JSON object" in content:  # only level 3 usable, level 2 a copy of the query, rest garbage
            q = query_of(request.messages)
            return "```json\n" + json.dumps({"3": passage_for(q, 3), "2": q}) + "\n```"
        return good_answer(request.messages)

    backend = ScriptedBackend(responder)
    run(queries_file, tmp_path / "out", backend, limit=1)
    kinds = ["joint" if "JSON object" in c.messages[-1]["content"] else "level" for c in backend.calls]
    assert kinds == ["joint", "level", "level", "level"]
    ds = load_beir(tmp_path / "out", split="train")
    assert len(ds.corpus) == 4


def test_failures_are_recorded_with_reasons_and_bounded_attempts(tmp_path, queries_file):
    def responder(request, n):
        content = request.messages[-1]["content"]
        if "JSON object" in content:
            return "I am sorry, I cannot write JSON."
        if "irrelevant" in content:
            return "Too short."
        if "related." in content and "highly" not in content:
            return Completion(error="HTTP 500: boom")
        return good_answer(request.messages)

    backend = ScriptedBackend(responder)
    result = run(queries_file, tmp_path / "out", backend, limit=1, max_attempts=3)
    assert result.summary.done == 2 and result.summary.failed == 2
    assert len(backend.calls) == 1 + 2 + 2 * 2  # joint, then 3/2 once each, 1/0 twice each
    manifest = result.manifest
    failures = {f["id"]: f for f in manifest["failures"]}
    assert set(failures) == {"q1-L0-0", "q1-L1-0"}
    assert failures["q1-L0-0"]["attempts"] == 3
    assert "no JSON object" in failures["q1-L0-0"]["reason"] and "too short" in failures["q1-L0-0"]["reason"]
    assert "HTTP 500" in failures["q1-L1-0"]["reason"]
    assert manifest["counts"]["by_level"]["0"] == {"done": 0, "failed": 1, "missing": 0}
    # Failed items are not retried by default, and are with --retry-failed.
    again = ScriptedBackend()
    run(queries_file, tmp_path / "out", again, limit=1, max_attempts=3)
    assert again.calls == []
    result = run(queries_file, tmp_path / "out", again, limit=1, max_attempts=3, retry_failed=True)
    assert len(again.calls) == 1  # one joint request covers the two missing levels
    assert result.manifest["counts"]["passages"] == 4 and result.manifest["counts"]["failed"] == 0


def test_duplicates_across_levels_are_rejected(tmp_path, queries_file):
    def responder(request, n):
        q = query_of(request.messages)
        if "JSON object" in request.messages[-1]["content"]:
            same = passage_for(q, 3)
            return json.dumps({"3": same, "2": same, "1": passage_for(q, 1), "0": passage_for(q, 0)})
        return passage_for(q, 2)

    result = run(queries_file, tmp_path / "out", ScriptedBackend(responder), limit=1)
    assert result.manifest["counts"]["passages"] == 4
    with Store.in_dir(tmp_path / "out") as store:
        fp = store.fingerprints()[0]
        texts = [i.text for i in store.items(fp, "done")]
    assert len(set(texts)) == 4


def test_store_never_commits_an_item_twice(tmp_path):
    from synthrank.generate.store import RequestRecord

    with Store(tmp_path / "s.sqlite") as store:
        store.register_run("fp", {"x": 1}, {"q": "text"})
        key = ("q", 3, 0)
        assert store.commit("fp", RequestRecord("q", "level", [key]), {key: ("first", 1)}, {}) == 1
        assert store.commit("fp", RequestRecord("q", "level", [key]), {key: ("second", 2)}, {}) == 0
        assert [i.text for i in store.items("fp")] == ["first"]
        assert store.totals("fp")["requests"] == 2
    con = sqlite3.connect(tmp_path / "s.sqlite")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_shards_merge_into_the_full_set(tmp_path, queries_file):
    outs = []
    for i in range(2):
        out = tmp_path / f"shard{i}"
        run(queries_file, out, ScriptedBackend(), shard=f"{i}/2")
        outs.append(out)
    sizes = [len(load_beir(o, split="train").corpus) for o in outs]
    assert sum(sizes) == 20 and all(sizes)
    manifest = merge(tmp_path / "merged", outs)
    ds = load_beir(tmp_path / "merged", split="train")
    assert len(ds.corpus) == 20 and len(ds.queries) == 5 and ds.qrels_report.clean
    assert manifest["counts"]["passages"] == 20 and manifest["requests"] == 5
    assert merge(tmp_path / "merged", outs)["counts"]["passages"] == 20  # idempotent
    with pytest.raises(ValueError, match="into itself"):
        merge(outs[0], [outs[0]])


def test_per_level_mode_and_several_passages_per_level(tmp_path, queries_file):
    def responder(request, n):
        return " ".join(f"call{n}word{i}" for i in range(40)) + "."

    backend = ScriptedBackend(responder)
    result = run(queries_file, tmp_path / "out", backend, limit=1, mode="per-level", per_level=2, levels=2)
    assert len(backend.calls) == 4
    ds = load_beir(tmp_path / "out", split="train")
    assert sorted(ds.qrels["q1"]) == ["q1-L0-0", "q1-L0-1", "q1-L1-0", "q1-L1-1"]
    assert result.manifest["counts"]["expected_passages"] == 4


def test_another_configuration_does_not_replace_an_export_without_overwrite(tmp_path, queries_file):
    out = tmp_path / "out"
    run(queries_file, out, ScriptedBackend(), limit=3)
    corpus_before = (out / "corpus.jsonl").read_text()
    other = ScriptedBackend()
    with pytest.raises(ExportConflictError, match=r"temperature: 0\.7 -> 0\.9") as caught:
        run(queries_file, out, other, limit=0, temperature=0.9)
    assert "--overwrite" in str(caught.value) and "12 passages" in str(caught.value)
    assert other.calls == [] and (out / "corpus.jsonl").read_text() == corpus_before
    # The same configuration resumes (a smaller selection keeps what the export holds) ...
    run(queries_file, out, ScriptedBackend(), limit=0, min_success=0)
    assert len(load_beir(out, split="train").corpus) == 12
    # ... and overwrite=True replaces the export.
    run(queries_file, out, ScriptedBackend(), limit=1, temperature=0.9, overwrite=True)
    assert len(load_beir(out, split="train").corpus) == 4


def test_a_beir_folder_not_written_by_generate_is_not_replaced(tmp_path, queries_file):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "corpus.jsonl").write_text('{"_id": "d1", "text": "my own passage"}\n')
    with pytest.raises(ExportConflictError, match="no manifest.json"):
        run(queries_file, out, ScriptedBackend(), limit=1)
    assert (out / "corpus.jsonl").read_text() == '{"_id": "d1", "text": "my own passage"}\n'


def test_too_few_passages_raise_after_the_export(tmp_path, queries_file):
    def half_fail(request, n):  # levels 3 and 2 written, 1 and 0 fail: 50 %
        if "related." in request.messages[-1]["content"] or "irrelevant" in request.messages[-1]["content"]:
            return Completion(error="HTTP 500: boom")
        return good_answer(request.messages)

    with pytest.raises(GenerationShortfallError, match=r"only 4 of 8 passages.*at least 60%.*HTTP 500") as caught:
        run(queries_file, tmp_path / "a", ScriptedBackend(half_fail), limit=2, max_attempts=1, min_success=0.6,
            mode="per-level")
    assert caught.value.result.manifest["counts"]["passages"] == 4
    assert (tmp_path / "a" / "manifest.json").is_file()
    run(queries_file, tmp_path / "b", ScriptedBackend(half_fail), limit=2, max_attempts=1, min_success=0.5,
        mode="per-level")
    with pytest.raises(GenerationShortfallError, match="only 0 of 20"):  # nothing at all: always an error
        run(queries_file, tmp_path / "c", ScriptedBackend(lambda r, n: Completion(error="refused")), min_success=0)
