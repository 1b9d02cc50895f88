"""The README's "Python API" block, run as written (slow; runs in CI), so the documented code
cannot rot: only the size lines at its top (``name = value``) are replaced, to run it on a tiny
BEIR folder written here with the real bundled SmolLM2 and MiniLM."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from synthrank.data import load_beir, write_corpus, write_qrels, write_queries

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]

TOPICS = {
    "q1": ("how does vitamin d affect bone health", [
        ("Vitamin D and bone", "Vitamin D helps the intestine absorb calcium, which the body needs to build and keep "
         "strong bones; a deficiency softens bones (rickets in children, osteomalacia in adults)."),
        ("Calcium intake", "Adults need about one gram of calcium a day; dairy, leafy greens and fortified foods "
         "are the main sources."),
        ("Sunlight and the skin", "Skin exposed to ultraviolet B light makes vitamin D from cholesterol."),
        ("Osteoporosis", "Osteoporosis is a loss of bone density that makes fractures more likely in old age."),
        ("Vitamin C", "Vitamin C is needed for collagen synthesis; scurvy follows a long deficiency."),
    ]),
    "q2": ("what causes thunder during a storm", [
        ("Thunder", "Thunder is the sound of air heated by a lightning bolt expanding so fast that it makes a "
         "shock wave, heard as a clap or a rumble."),
        ("Lightning", "Lightning is an electrical discharge between charged regions of a cloud, or a cloud and the "
         "ground, reaching about 30,000 kelvin."),
        ("Storm clouds", "Cumulonimbus clouds grow tall in unstable, moist air and bring heavy rain and hail."),
        ("Speed of sound", "Sound travels about 343 metres per second in air, so thunder lags the flash it follows."),
        ("Rainbows", "A rainbow appears when sunlight is refracted and reflected inside raindrops."),
    ]),
    "q3": ("how do vaccines train the immune system", [
        ("Vaccination", "A vaccine shows the immune system a harmless form of a pathogen, so that B and T cells "
         "learn to recognise it and memory cells respond quickly to a later infection."),
        ("Antibodies", "Antibodies are proteins made by B cells that bind a specific antigen and mark it for "
         "destruction."),
        ("Herd immunity", "When most of a population is immune, a disease spreads poorly and protects the rest."),
        ("Antibiotics", "Antibiotics kill bacteria or stop their growth; they do not act on viruses."),
        ("Fever", "A fever is a raised body temperature, often a response to an infection."),
    ]),
    "q4": ("why is the sea salty", [
        ("Ocean salinity", "Rain weathers rocks and rivers carry the dissolved minerals, mostly sodium and chloride, "
         "to the sea, where evaporation leaves them behind."),
        ("Hydrothermal vents", "Vents on the sea floor release minerals from the crust into sea water."),
        ("Dead Sea", "The Dead Sea is almost ten times as salty as the ocean, since water leaves it only by "
         "evaporation."),
        ("Fresh water", "Lakes fed and drained by rivers stay fresh because their water is replaced."),
        ("Tides", "Tides are caused mainly by the Moon's gravity pulling on the oceans."),
    ]),
}


def tiny_dataset(folder: Path) -> Path:
    """20 passages on 4 topics, 4 queries, graded qrels for train (what is generated for) and test."""
    corpus = [{"_id": f"{qid}-d{k}", "title": title, "text": text}
              for qid, (_, passages) in TOPICS.items() for k, (title, text) in enumerate(passages)]
    write_corpus(folder / "corpus.jsonl", corpus)
    write_queries(folder / "queries.jsonl", {qid: query for qid, (query, _) in TOPICS.items()})
    # the splits differ, so an evaluation of the wrong split does not give the same scores
    write_qrels(folder / "qrels" / "train.tsv", {qid: {f"{qid}-d0": 2, f"{qid}-d1": 1} for qid in TOPICS})
    write_qrels(folder / "qrels" / "test.tsv", {qid: {f"{qid}-d0": 2, f"{qid}-d3": 1} for qid in TOPICS})
    return folder


def readme_block() -> str:
    """The first python block of the README's "## Python API" section."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert "\n## Python API\n" in text, "README.md has no '## Python API' section"
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"^```python\n(.*?)^```", section, re.S | re.M)
    assert match, "the README's Python API section has no ```python block"
    return match.group(1)


def with_values(code: str, values: dict) -> str:
    """``code`` with each line ``name = ...`` (exactly one per name) replaced by ``name = value``."""
    for name, value in values.items():
        code, count = re.subn(rf"^{name} = .*$", f"{name} = {value!r}", code, flags=re.M)
        assert count == 1, f"the README block should set {name!r} on one line of its own, found {count}"
    return code


def test_readme_python_api_runs_as_written(tmp_path):
    from synthrank.generate import BundledModelMissing, bundled_generator_path

    pytest.importorskip("llama_cpp")
    try:
        bundled_generator_path()
    except BundledModelMissing as error:
        pytest.skip(str(error))
    data = tiny_dataset(tmp_path / "tiny")
    # the only substitutions: where the data and outputs are, and the sizes (2 queries, 2 steps)
    code = with_values(readme_block(), {"dataset": str(data), "num_queries": 2, "batch_size": 2, "max_steps": 2,
                                        "work": str(tmp_path / "work")})
    scope: dict = {}
    exec(compile(code, "README.md (Python API)", "exec"), scope)

    # generation (grounded) kept each sampled query's judged passage as level 3 and wrote levels 2-0
    counts = scope["generated"].manifest["counts"]
    assert counts["queries"] == 2 and counts["expected_passages"] == 8 and counts["passages"] >= 4, counts
    assert counts["by_level"]["3"]["done"] == 2, counts
    generated = load_beir(tmp_path / "work" / "generated", split="train")
    assert len(generated.corpus) == counts["passages"] and set(generated.qrels) <= set(TOPICS)
    levels = {grade for judged in generated.qrels.values() for grade in judged.values()}
    assert levels == {0, 1, 2, 3}, f"levels written: {sorted(levels)}"

    # training ran its 2 steps and saved a sentence-transformers model
    trained = scope["trained"]
    model_dir = tmp_path / "work" / "model"
    assert trained.global_step == 2 and Path(trained.output) == model_dir
    from sentence_transformers import SentenceTransformer

    vectors = SentenceTransformer(str(model_dir), device="cpu").encode(["why is the sea salty"])
    assert vectors.shape == (1, 384)
    provenance = json.loads((model_dir / "synthrank_train.json").read_text())
    assert provenance["config"]["loss"] == "ws2" and provenance["data"]["queries"] == 2

    # evaluation: nDCG@10 in (0, 1], and the scores `synthrank eval` gives the same model
    result = scope["result"]
    assert result.num_queries == 4 and 0 < result.metrics["nDCG@10"] <= 1, result.metrics
    from typer.testing import CliRunner

    from synthrank.cli import app

    out = tmp_path / "eval.json"
    done = CliRunner().invoke(app, ["eval", "--model", str(model_dir), "--dataset", str(data), "--no-cache",
                                    "--quiet", "--output", str(out)])
    assert done.exit_code == 0, done.output
    cli_metrics = json.loads(out.read_text())["metrics"]
    assert cli_metrics.keys() == result.metrics.keys()
    assert all(abs(cli_metrics[m] - result.metrics[m]) < 1e-6 for m in cli_metrics), (cli_metrics, result.metrics)
