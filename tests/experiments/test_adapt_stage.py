"""The ``[[adapt]]`` job kind of experiment configs: parsing, planning, running, dry-run."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synthrank.cli import app
from synthrank.experiments import ExperimentConfigError, Runner, load_experiment, parse_experiment, plan
from synthrank.experiments.runner import substitute

REPO = Path(__file__).resolve().parents[2]


def adapt_config(tmp_path, corpus, **adapt_options):
    return {
        "name": "a",
        "output": str(tmp_path / "run"),
        "base": {"evaluate": False},
        "adapt": [{"name": "docs", "corpus": str(corpus), "documents": 4, **adapt_options}],
        "settings": [{"name": "ws2", "loss": "ws2", "recipe": {"mode": "graded", "group_size": 4, "sources": [
            {"dataset": "{adapt.docs}", "split": "train"}]}}],
        "eval": {"datasets": [{"dataset": "scifact"}]},
    }


def test_adapt_job_plans_before_the_settings_that_name_it(tmp_path):
    config = parse_experiment(adapt_config(tmp_path, "scifact", few_shot="ex.json"), base_dir=tmp_path)
    stages = {s.key: s for s in plan(config)}
    assert list(stages)[:2] == ["adapt/docs", "train/ws2"]
    assert stages["train/ws2"].deps == ["adapt/docs"]
    assert stages["adapt/docs"].spec["corpus"] == "scifact"  # a name stays a name
    assert stages["adapt/docs"].spec["few_shot"] == "ex.json"
    recipe = substitute(config.setting("ws2").recipe, {k: s.output for k, s in stages.items()}, None)
    assert recipe["sources"][0]["dataset"] == str(stages["adapt/docs"].output)
    relative = parse_experiment(adapt_config(tmp_path, "./docs", few_shot="./ex.json"), base_dir=tmp_path / "cfg")
    spec = plan(relative)[0].spec
    assert spec["corpus"] == str(tmp_path / "cfg" / "docs") and spec["few_shot"] == str(tmp_path / "cfg" / "ex.json")


def test_unknown_adapt_option_and_unknown_placeholder_are_errors(tmp_path):
    with pytest.raises(ExperimentConfigError) as info:
        parse_experiment(adapt_config(tmp_path, "scifact", documnets=4), "x.toml")
    assert "x.toml" in str(info.value) and "documnets" in str(info.value) and "adapt[0]" in str(info.value)
    bad = adapt_config(tmp_path, "scifact")
    bad["settings"][0]["recipe"]["sources"][0]["dataset"] = "{adapt.other}"
    with pytest.raises(ExperimentConfigError, match="no \\[\\[adapt\\]\\] job is called 'other'"):
        parse_experiment(bad, "x.toml")


def test_runner_runs_the_adapt_stage_and_caches_it(tmp_path, monkeypatch):
    from generate.fakes import ScriptedBackend  # tests/ is on sys.path (rootdir conftest)
    from generate.test_adapt import FILLER, TOPICS, topic_query, write_corpus_file

    write_corpus_file(tmp_path / "docs", [{"_id": f"d{i}", "title": t, "text": f"In {w} research, {d}. {FILLER}"}
                                          for i, (w, t, d) in enumerate(TOPICS)])
    backends = []

    def fake_backend(*args, **kwargs):
        backends.append(ScriptedBackend(lambda request, n: topic_query(request.messages)))
        return backends[-1]

    monkeypatch.setattr("synthrank.generate.api.build_backend", fake_backend)
    data = adapt_config(tmp_path, tmp_path / "docs", random_negatives=1)
    data["adapt"].append({**data["adapt"][0], "name": "again", "merge_from": ["{adapt.docs}"]})
    data["settings"] = []
    config = parse_experiment(data)
    outcomes = Runner(config, show_progress=False, echo=lambda line: None).run()
    assert [(o.stage.key, o.status) for o in outcomes] == [("adapt/docs", "done"), ("adapt/again", "done")]
    assert backends[1].calls == []  # the second job took every query from the first one's store
    assert (tmp_path / "run" / "adapt" / "again" / "qrels" / "train.tsv").read_text() == \
        (tmp_path / "run" / "adapt" / "docs" / "qrels" / "train.tsv").read_text()
    folder = tmp_path / "run" / "adapt" / "docs"
    record = json.loads((folder / "stage.json").read_text())
    assert record["status"] == "done" and record["details"]["filter"]["kept"] == 4
    assert (folder / "qrels" / "train.tsv").is_file() and len(backends[0].calls) == 4
    again = Runner(config, show_progress=False, echo=lambda line: None).run()
    assert [o.status for o in again] == ["cached", "cached"] and len(backends) == 2


def test_dry_run_of_the_shipped_adapt_config(data_dir, monkeypatch):
    monkeypatch.setenv("SYNTHRANK_DATA_DIR", str(data_dir))
    config = load_experiment(REPO / "configs" / "adapt-scifact.toml")
    assert config.adapt[0].arguments()["documents"] == 800
    result = CliRunner().invoke(app, ["experiment", str(REPO / "configs" / "adapt-scifact.toml"), "--dry-run",
                                      "--output", "/nonexistent/adapt-dry-run"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for key in ("adapt/scifact-docs", "train/ws2-adapt-seed0", "train/infonce-adapt-seed2", "eval/base@scifact-test",
                "eval/ws2-adapt-seed1@scifact-train"):
        assert key in result.output
    assert "unknown" not in result.output.split("adapt/scifact-docs", 1)[1].splitlines()[0]  # estimated
    stages = {s.key: s for s in plan(config)}
    assert Path(stages["adapt/scifact-docs"].spec["few_shot"]).is_file()


def test_an_adapt_job_can_reuse_an_earlier_ones_queries(tmp_path):
    data = adapt_config(tmp_path, "scifact")
    data["adapt"].append({"name": "grounded", "corpus": "scifact", "documents": 4, "grounded": True,
                          "merge_from": ["{adapt.docs}"]})
    stages = {s.key: s for s in plan(parse_experiment(data))}
    assert stages["adapt/grounded"].deps == ["adapt/docs"]
    later = adapt_config(tmp_path, "scifact")
    later["adapt"].insert(0, {"name": "first", "corpus": "scifact", "merge_from": ["{adapt.docs}"]})
    with pytest.raises(ExperimentConfigError, match="only an earlier \\[\\[adapt\\]\\] job"):
        parse_experiment(later)
