"""Grounded generation: reference passages, the grounded prompt, the run and its export."""

from __future__ import annotations

import json

import pytest

from synthrank.data import load_beir
from synthrank.generate.api import generate
from synthrank.generate.levels import default_levels
from synthrank.generate.prompts import PromptSet
from synthrank.generate.references import Reference, load_references, references_from_qrels

from .fakes import ScriptedBackend, good_answer, level_of, passage_for

REFERENCE_TEXT = ("Eggs need about ten minutes in boiling water for a firm yolk, six minutes for a runny one, "
                  "and should be cooled in ice water afterwards so that they stop cooking and peel easily.")


def test_grounded_prompt_renders_reference_query_and_level_guide() -> None:
    prompts = PromptSet.load(few_shot=True, grounded=True)
    levels = default_levels(4)
    related = next(lv for lv in levels if lv.grade == 1)
    messages = prompts.grounded_messages("how long to boil an egg", REFERENCE_TEXT, related, 3, "60 to 100")
    last = messages[-1]["content"]
    assert last.endswith(f'Search query: "how long to boil an egg"\nReference passage: "{REFERENCE_TEXT}"')
    assert "must be: related." in last and related.grounded in last
    # the few-shot turn shows the example's top-level passage as reference, its level-1 passage as answer
    example = prompts.few_shot[0]
    assert example.passages[3][0] in messages[-3]["content"]
    assert messages[-2] == {"role": "assistant", "content": example.passages[1][0]}
    # everything before the query is the same for every query of a level (prefix sharing)
    other = prompts.grounded_messages("capital of australia", "Canberra is the capital.", related, 3, "60 to 100")
    assert other[:-1] == messages[:-1]
    assert other[-1]["content"].split("Search query")[0] == last.split("Search query")[0]


def test_ungrounded_prompt_digest_is_unchanged_by_the_grounded_template() -> None:
    plain = PromptSet.load()
    assert plain.grounded == "" and plain.digest() != PromptSet.load(grounded=True).digest()


def test_references_from_qrels_take_the_highest_grade_then_smallest_id() -> None:
    qrels = {"q1": {"d2": 1, "d3": 2, "d1": 2}, "q2": {"d4": 0}, "q3": {"missing": 3}}
    documents = {f"d{i}": (f"T{i}", f"text {i}") for i in range(1, 5)}
    refs = references_from_qrels(qrels, documents, ["q1", "q2", "q3", "q4"])
    assert refs == {"q1": Reference("d1", "T1", "text 1")}


def test_reference_prompt_text_is_bounded() -> None:
    ref = Reference("d", "Title", " ".join(["word"] * 500))
    text = ref.prompt_text(max_words=20)
    assert text.startswith("Title. word") and text.endswith(" ...") and len(text.split()) == 21


def test_references_jsonl_errors_name_file_line_and_field(tmp_path) -> None:
    path = tmp_path / "refs.jsonl"
    path.write_text('{"query-id": "q1", "corpus-id": "d1", "text": "ok"}\n{"query-id": "q2", "corpus-id": "d2"}\n')
    with pytest.raises(ValueError, match=r"refs.jsonl:2: field 'text': must be"):
        load_references(path, None, ["q1", "q2"])


def grounded_answer(request_messages):
    """Writes the requested level; fails the test if a grounded request asks for the top level."""
    level = level_of(request_messages)
    assert level != 3, "the top level is the reference: it must not be generated"
    return good_answer(request_messages)


@pytest.fixture
def beir_with_references(tmp_path, queries_file):
    folder = tmp_path / "beir"
    folder.mkdir()
    (folder / "queries.jsonl").write_text(queries_file.read_text())
    docs = [{"_id": f"d{i}", "title": f"Doc {i}", "text": passage_for(f"topic {i}", 3, salt=f"doc{i}")} for i in range(1, 6)]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (folder / "qrels").mkdir()
    # q5 has no relevant passage: grounded mode leaves it out
    (folder / "qrels" / "train.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(1, 5)) + "q5\td5\t0\n")
    return folder


def test_grounded_run_exports_the_real_reference_as_top_level(tmp_path, beir_with_references) -> None:
    backend = ScriptedBackend(lambda request, n: grounded_answer(request.messages))
    out = tmp_path / "out"
    result = generate(beir_with_references, out, split="train", references=beir_with_references,
                      backend_instance=backend, progress=False)
    assert len(backend.calls) == 4 * 3  # four queries with a reference, levels 2, 1, 0 each
    assert all("Reference passage" in call.messages[-1]["content"] for call in backend.calls)
    ds = load_beir(out, split="train")
    assert sorted(ds.queries) == ["q1", "q2", "q3", "q4"]
    assert ds.qrels["q1"] == {"q1-L3-0": 3, "q1-L2-0": 2, "q1-L1-0": 1, "q1-L0-0": 0}
    top = ds.corpus.ids.index("q1-L3-0")
    assert ds.corpus.titles[top] == "Doc 1" and ds.corpus.texts[top] == passage_for("topic 1", 3, salt="doc1")
    manifest = result.manifest
    assert manifest["counts"]["passages"] == 16 and manifest["counts"]["expected_passages"] == 16
    assert manifest["grounded"]["reference_ids"] == {f"q{i}": f"d{i}" for i in range(1, 5)}
    assert manifest["parameters"]["mode"] == "grounded"
    # resumable like any run: nothing is asked twice
    again = ScriptedBackend(lambda request, n: grounded_answer(request.messages))
    generate(beir_with_references, out, split="train", references=beir_with_references,
             backend_instance=again, progress=False)
    assert again.calls == []


def test_a_copy_of_the_reference_is_rejected(tmp_path, beir_with_references) -> None:
    def copier(request, n):
        content = request.messages[-1]["content"]
        return content.split('Reference passage: "', 1)[1].rstrip('"') if n <= 3 else grounded_answer(request.messages)

    backend = ScriptedBackend(copier)
    result = generate(beir_with_references, tmp_path / "out", split="train", references=beir_with_references,
                      limit=1, backend_instance=backend, progress=False)
    assert result.summary.done == 3 and len(backend.calls) == 6  # the three copies were retried


def test_grounded_mode_needs_references(tmp_path, queries_file) -> None:
    with pytest.raises(ValueError, match="needs references"):
        generate(queries_file, tmp_path / "out", mode="grounded", backend_instance=ScriptedBackend(), progress=False)
