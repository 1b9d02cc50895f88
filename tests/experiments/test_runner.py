import json

import pytest

from synthrank.experiments import ExperimentConfigError, Runner, format_plan, load_experiment, parse_experiment, plan
from synthrank.experiments.runner import substitute


def config_dict(tmp_path, **overrides):
    data = {
        "name": "t",
        "output": str(tmp_path / "run"),
        "generate": [{"name": "gen", "queries": "scifact", "limit": 3}],
        "mine": [{"name": "neg", "dataset": "scifact", "top_k": 5}],
        "settings": [
            {"name": "ws2", "loss": "ws2", "recipe": {"sources": [{"dataset": "{generate.gen}"},
                                                                  {"dataset": "scifact", "qrels": "{mine.neg}"}]}},
            {"name": "real", "loss": "infonce", "recipe": {"sources": [{"dataset": "scifact", "qrels": "{mine.neg}"}]}},
        ],
        "eval": {"datasets": [{"dataset": "scifact"}, {"dataset": "trec-dl-2019"}]},
    }
    data.update(overrides)
    return data


class FakeRunner(Runner):
    """Stage bodies replaced by bookkeeping: the runner's caching and failure logic is real."""

    def __init__(self, config, fail=()):
        super().__init__(config, show_progress=False, echo=lambda line: None)
        self.calls, self.fail = [], set(fail)

    def _body(self, stage):
        self.calls.append(stage.key)
        if stage.key in self.fail:
            raise RuntimeError(f"boom in {stage.key}")
        stage.output.mkdir(parents=True, exist_ok=True)
        return {"ok": True}

    def _run_generate(self, stage, outputs):
        return self._body(stage)

    def _run_mine(self, stage, outputs):
        return self._body(stage)

    def _run_train(self, stage, outputs):
        recipe = substitute(stage.spec["recipe"], outputs, None)
        (stage.output / "recipe.json").parent.mkdir(parents=True, exist_ok=True)
        (stage.output / "recipe.json").write_text(json.dumps(recipe))
        return self._body(stage)

    def _run_eval(self, stage, outputs):
        result = self._body(stage)
        (stage.output / "result.json").write_text(json.dumps({
            "model": stage.spec["model"], "dataset": stage.spec["dataset"], "split": "test", "num_queries": 1,
            "metrics": {"nDCG@10": 0.5 if stage.spec["model"] == "base" else 0.6, "RR@10": 0.4}}))
        return result


def test_plan_order_and_dependencies(tmp_path):
    stages = plan(parse_experiment(config_dict(tmp_path)))
    keys = [s.key for s in stages]
    assert keys[:4] == ["generate/gen", "mine/neg", "train/ws2", "train/real"]
    assert len([k for k in keys if k.startswith("eval/")]) == 6  # (base + 2 settings) x 2 eval sets
    train = {s.name: s for s in stages}["ws2"]
    assert train.deps == ["generate/gen", "mine/neg"]
    assert all(s.output.is_relative_to(tmp_path / "run") for s in stages)


def test_relative_run_folder_gives_absolute_recipe_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = parse_experiment(config_dict(tmp_path, output="runs/rel"))
    stages = {s.key: s for s in plan(config)}
    assert all(s.output.is_absolute() for s in stages.values())
    outputs = {key: s.output for key, s in stages.items()}
    recipe = substitute(config.setting("ws2").recipe, outputs, None)
    assert recipe["sources"][0]["dataset"] == str(tmp_path / "runs" / "rel" / "generate" / "gen")


def test_second_run_does_no_work(tmp_path):
    config = parse_experiment(config_dict(tmp_path))
    first = FakeRunner(config)
    first.run()
    assert len(first.calls) == 10
    second = FakeRunner(config)
    outcomes = second.run()
    assert second.calls == [] and {o.status for o in outcomes} == {"cached"}


def test_changed_input_reruns_only_what_depends_on_it(tmp_path):
    FakeRunner(parse_experiment(config_dict(tmp_path))).run()
    changed = config_dict(tmp_path)
    changed["mine"][0]["top_k"] = 10
    runner = FakeRunner(parse_experiment(changed))
    runner.run()
    assert "generate/gen" not in runner.calls and "eval/base@scifact-test" not in runner.calls
    assert {"mine/neg", "train/ws2", "train/real", "eval/ws2@scifact-test"} <= set(runner.calls)


def test_failure_is_recorded_and_independent_stages_go_on(tmp_path):
    config = parse_experiment(config_dict(tmp_path))
    runner = FakeRunner(config, fail={"generate/gen"})
    outcomes = {o.stage.key: o for o in runner.run()}
    assert outcomes["generate/gen"].status == "failed" and "boom" in outcomes["generate/gen"].error
    assert outcomes["train/ws2"].status == "skipped" and "generate/gen" in outcomes["train/ws2"].error
    assert outcomes["train/real"].status == "done" and outcomes["eval/real@scifact-test"].status == "done"
    record = json.loads((tmp_path / "run" / "generate" / "gen" / "stage.json").read_text())
    assert record["status"] == "failed" and "boom" in record["error"]
    assert "RuntimeError" in (tmp_path / "run" / "generate" / "gen" / "error.log").read_text()
    retry = FakeRunner(config)
    retry.run()  # the failed stage and what waited on it run again; the rest is cached
    assert set(retry.calls) == {"generate/gen", "train/ws2", "eval/ws2@scifact-test", "eval/ws2@trec-dl-2019-test"}


def test_interrupted_stage_resumes(tmp_path):
    config = parse_experiment(config_dict(tmp_path))
    stage = next(s for s in plan(config) if s.key == "mine/neg")
    stage.output.mkdir(parents=True)
    stage.record_path.write_text(json.dumps({"fingerprint": stage.fingerprint, "status": "running", "seconds": 3.0}))
    assert stage.status() == "resume"
    FakeRunner(config).run()
    record = json.loads(stage.record_path.read_text())
    assert record["status"] == "done" and record["seconds"] >= 3.0  # time before the crash still counts


def test_time_of_a_killed_stage_is_kept_for_its_resume(tmp_path):
    """The heartbeat rewrites a running stage's record, so a SIGKILL loses at most one interval."""
    import time

    class Killed(BaseException):  # like SIGKILL: no `except Exception` sees it
        pass

    class SlowThenKilled(FakeRunner):
        heartbeat_interval = 0.05

        def _run_mine(self, stage, outputs):
            time.sleep(0.3)
            raise Killed

    config = parse_experiment(config_dict(tmp_path))
    with pytest.raises(Killed):
        SlowThenKilled(config).run()
    stage = next(s for s in plan(config) if s.key == "mine/neg")
    record = json.loads(stage.record_path.read_text())
    assert record["status"] == "running" and 0.2 <= record["seconds"] <= 0.35
    # the report tells the killed stage from a live one by its heartbeat
    from types import SimpleNamespace

    from synthrank.experiments.report import stage_table
    from synthrank.experiments.runner import shown_status

    beat = record["beat_at"]
    assert abs(beat - time.time()) < 60 and record["beat_interval"] == 0.05
    assert shown_status(record, now=beat + 1) == "running"
    assert shown_status(record, now=beat + 600).startswith("interrupted (no heartbeat for 10 min")
    assert "| mine/neg | interrupted (no heartbeat for" in stage_table(SimpleNamespace(stages=[
        {**record, "beat_at": time.time() - 3600}]))
    legacy = {k: v for k, v in record.items() if k not in ("beat_at", "beat_interval")}
    assert shown_status(legacy) == "running or interrupted"
    FakeRunner(config).run()
    record = json.loads(stage.record_path.read_text())
    assert record["status"] == "done" and record["seconds"] >= 0.2


def test_only_one_setting(tmp_path):
    keys = [s.key for s in plan(parse_experiment(config_dict(tmp_path)), only="real")]
    assert keys == ["mine/neg", "train/real", "eval/real@scifact-test", "eval/real@trec-dl-2019-test"]
    assert [s.key for s in plan(parse_experiment(config_dict(tmp_path)), only="base")] == [
        "eval/base@scifact-test", "eval/base@trec-dl-2019-test"]
    with pytest.raises(ValueError, match="no such setting"):
        plan(parse_experiment(config_dict(tmp_path)), only="nope")


def test_dry_run_plan_shows_status_and_estimates(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("SYNTHRANK_DATA_DIR", str(data_dir))
    config = parse_experiment(config_dict(tmp_path))
    text = format_plan(plan(config))
    assert "generate/gen" in text and "pending" in text and "total (not yet done)" in text
    gen = plan(config)[0]
    rates = config.estimates
    assert gen.estimate_s == pytest.approx(3 * 4 * rates.generate_tokens_per_passage / rates.generate_tokens_per_s_per_device)
    assert not (tmp_path / "run").exists()  # planning writes nothing


def test_substitute_placeholders(tmp_path):
    outputs = {"generate/gen": tmp_path / "g", "mine/neg": tmp_path / "m"}
    recipe = {"sources": [{"dataset": "{generate.gen}", "queries": "{generate.gen}/queries.jsonl"},
                          {"dataset": "scifact", "qrels": "{mine.neg}"}, {"dataset": "./local"}]}
    out = substitute(recipe, outputs, tmp_path / "cfg")
    assert out["sources"][0] == {"dataset": str(tmp_path / "g"), "queries": str(tmp_path / "g" / "queries.jsonl")}
    assert out["sources"][1] == {"dataset": "scifact", "qrels": str(tmp_path / "m" / "qrels" / "train.tsv")}
    assert out["sources"][2]["dataset"] == str((tmp_path / "cfg" / "local").resolve())
    assert recipe["sources"][0]["dataset"] == "{generate.gen}"  # input untouched


def test_config_errors_name_file_and_field(tmp_path):
    bad = config_dict(tmp_path)
    bad["settings"][0]["recipe"]["sources"][0]["dataset"] = "{generate.missing}"
    with pytest.raises(ExperimentConfigError, match="missing"):
        parse_experiment(bad, "x.toml")
    path = tmp_path / "exp.toml"
    path.write_text('name = "x"\n[eval]\ndatasets = [{ dataset = "scifact", splt = "test" }]\n')
    with pytest.raises(ExperimentConfigError) as info:
        load_experiment(path)
    assert str(path) in str(info.value) and "eval.datasets[0].splt" in str(info.value)
    path.write_text('name = "x"\n[eval\n')
    with pytest.raises(ExperimentConfigError, match="invalid TOML"):
        load_experiment(path)


def test_report_from_run_folder(tmp_path):
    from synthrank.experiments import write_report

    config = parse_experiment(config_dict(tmp_path))
    FakeRunner(config).run()
    out = write_report(tmp_path / "run", tmp_path / "report")
    text = (out / "report.md").read_text()
    assert "| base (untrained) | 1 | 0.5000 | 0.4000 | 0.5000 | 0.4000 |" in text
    assert "**0.6000**" in text and "scifact/test nDCG@10" in text
    settings = text.split("## Settings", 1)[1].split("## Stages", 1)[0]
    assert "| ws2 | ws2 | 1 | 1 |" in settings and "| real | infonce |" in settings
    assert "| total | |" in text.split("## Stages", 1)[1]
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["numbers"]) == 6 and manifest["config"]["name"] == "t"
    assert all(n["stage_fingerprint"] for n in manifest["numbers"])
    assert all(n["code"]["synthrank"] and "git_commit" in n["code"] for n in manifest["numbers"])
    pngs = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert pngs == ["nDCG_at_10_scifact_test.png", "nDCG_at_10_trec-dl-2019_test.png"]


# -- holdout splits, seeds, placeholders in generate/eval, per-setting significance ---------------

def seeded_config(tmp_path):
    return config_dict(
        tmp_path,
        holdout=[{"name": "sf", "dataset": "scifact", "split": "train", "size": 100}],
        generate=[{"name": "gen", "queries": "{holdout.sf}", "split": "train", "references": "{holdout.sf}",
                   "limit": 3}],
        settings=[
            {"name": "ws2", "loss": "ws2", "seeds": [0, 1, 2], "compare_to": "real",
             "recipe": {"sources": [{"dataset": "{generate.gen}"}]}},
            {"name": "real", "loss": "infonce", "recipe": {"sources": [{"dataset": "scifact", "qrels": "{mine.neg}"}]}},
        ],
        eval={"datasets": [{"dataset": "{holdout.sf}", "split": "dev"}, {"dataset": "scifact"}]},
    )


def test_seeds_holdout_and_placeholders_in_the_plan(tmp_path):
    stages = {s.key: s for s in plan(parse_experiment(seeded_config(tmp_path)))}
    assert list(stages)[:2] == ["holdout/sf", "generate/gen"]
    assert stages["generate/gen"].deps == ["holdout/sf"]
    assert stages["generate/gen"].spec["fidelity"] == ["bm25", "encoder"]
    trained = [k for k in stages if k.startswith("train/")]
    assert trained == ["train/ws2-seed0", "train/ws2-seed1", "train/ws2-seed2", "train/real"]
    assert [stages[k].spec["train"]["seed"] for k in trained[:3]] == [0, 1, 2]
    assert stages["train/ws2-seed1"].spec["setting"] == "ws2"
    assert len({stages[k].fingerprint for k in trained}) == 4
    dev_eval = stages["eval/ws2-seed2@sf-dev"]
    assert sorted(dev_eval.deps) == ["holdout/sf", "train/ws2-seed2"]
    assert "eval/base@sf-dev" in stages and "eval/real@scifact-test" in stages
    only = [s.key for s in plan(parse_experiment(seeded_config(tmp_path)), only="ws2")]
    assert "train/ws2-seed1" in only and "train/real" not in only


def test_placeholders_are_checked_where_they_are_used(tmp_path):
    bad = config_dict(tmp_path, eval={"datasets": [{"dataset": "{generate.gen}"}]})
    with pytest.raises(ExperimentConfigError, match="not available there"):
        parse_experiment(bad)
    missing = seeded_config(tmp_path)
    missing["generate"][0]["queries"] = "{holdout.nope}"
    with pytest.raises(ExperimentConfigError, match="no \\[\\[holdout\\]\\] job is called 'nope'"):
        parse_experiment(missing)
    wrong = seeded_config(tmp_path)
    wrong["settings"][0]["compare_to"] = "nothing"
    with pytest.raises(ExperimentConfigError, match="compare_to"):
        parse_experiment(wrong)


def test_report_shows_mean_std_over_seeds_and_paired_p_values(tmp_path):
    from synthrank.experiments.report import write_report

    class SeededRunner(FakeRunner):
        def _run_holdout(self, stage, outputs):
            return self._body(stage)

        def _run_eval(self, stage, outputs):
            result = self._body(stage)
            model = stage.spec["model"]
            shift = {"base": 0.0, "real": 0.01}.get(model, 0.1 + 0.01 * int(model[-1]) if "seed" in model else 0.0)
            per_query = {f"q{i}": {"nDCG@10": min(1.0, 0.3 + 0.002 * i + shift)} for i in range(40)}
            mean = sum(v["nDCG@10"] for v in per_query.values()) / 40
            (stage.output / "result.json").write_text(json.dumps({
                "model": model, "dataset": stage.spec["dataset"], "split": stage.spec["split"], "num_queries": 40,
                "metrics": {"nDCG@10": mean, "RR@10": 0.4}, "per_query": per_query}))
            return result

    config = parse_experiment(seeded_config(tmp_path))
    SeededRunner(config).run()
    out = write_report(config.run_dir(), tmp_path / "report")
    text = (out / "report.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| ws2 |"))
    assert "| 3 |" in row and "0.4490 ± 0.0100" in row  # seeds 0.10, 0.11, 0.12 over base's 0.339
    sig = next(line for line in text.splitlines() if line.startswith("| ws2 | sf/dev |"))
    assert "+0.1100 (p < 0.001)" in sig and "| real |" in sig and "+0.1000 (p < 0.001)" in sig and "40 / 0" in sig
    assert (out / "plots" / "nDCG_at_10_sf_dev.png").is_file()


@pytest.mark.parametrize("change, field, text", [
    (lambda d: d["settings"][0].update(loss="ws3"), "settings[0].loss", "unknown loss 'ws3'"),
    (lambda d: d.update(train={"lrr": 1e-5}), "train.lrr", "Extra inputs are not permitted"),
    (lambda d: d["settings"][1].update(train={"epoch": 2}), "settings[1].train.epoch", "Extra inputs"),
    (lambda d: d["settings"][1].update(train={"loss_params": {"nonsense": 1}}), "settings[1].train.loss_params",
     "invalid parameters for loss 'infonce'"),
    (lambda d: d["settings"][0]["recipe"].update(group_sise=4), "settings[0].recipe.group_sise", "Extra inputs"),
    (lambda d: d["settings"][0]["recipe"]["sources"][0].update(min_grad=1), "settings[0].recipe.sources[0].min_grad",
     "Extra inputs"),
    (lambda d: d["generate"][0].update(temprature=0.3), "generate[0].temprature", "Extra inputs are not permitted"),
    (lambda d: d.update(train={"model": "other"}), "train.model", "set by [base] model"),
])
def test_plan_rejects_bad_stage_options_naming_file_and_section(tmp_path, change, field, text):
    data = config_dict(tmp_path)
    change(data)
    config_file = tmp_path / "exp.json"
    config_file.write_text(json.dumps(data))
    with pytest.raises(ExperimentConfigError) as caught:
        plan(load_experiment(config_file))
    message = str(caught.value)
    assert message.startswith(f"{config_file}: field '{field}':") and text in message
    assert "<command line>" not in message and "recipe.json" not in message


def test_dry_run_reports_every_problem_and_accepts_generate_parameters(tmp_path):
    from typer.testing import CliRunner

    from synthrank.cli import app

    data = config_dict(tmp_path)
    data["generate"][0].update(temperature=0.3, min_success=0.8, mode="per-level")  # real generate() parameters
    good = tmp_path / "good.json"
    good.write_text(json.dumps(data))
    assert CliRunner().invoke(app, ["experiment", str(good), "--dry-run"]).exit_code == 0
    data["settings"][0]["loss"] = "ws3"
    data["train"] = {"lrr": 1}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    result = CliRunner().invoke(app, ["experiment", str(bad), "--dry-run"])
    assert result.exit_code == 2 and str(bad) in result.output
    assert "settings[0].loss" in result.output and "train.lrr" in result.output


def test_eval_settings_of_the_experiment_reach_every_evaluation(tmp_path, monkeypatch):
    """[eval] dtype / max_length / measures arrive in the options each eval stage evaluates with."""
    import synthrank.evaluate as evaluate_package
    from synthrank.evaluate import EvalResult

    seen = []

    def fake_evaluate(options, show_progress=True):
        seen.append(options)
        return EvalResult(model=options.model, dataset=options.dataset, split=options.split, num_queries=1,
                          metrics={"AP": 0.5}, timing={})

    monkeypatch.setattr(evaluate_package, "evaluate", fake_evaluate)
    config = parse_experiment({"name": "t", "output": str(tmp_path / "run"), "base": {"model": "some/encoder"},
                               "eval": {"datasets": [{"dataset": "scifact", "split": "dev"}], "measures": ["AP"],
                                        "dtype": "int8", "max_length": 64}})
    outcomes = Runner(config, show_progress=False, echo=lambda line: None).run()
    assert [o.status for o in outcomes] == ["done"]
    (options,) = seen
    assert (options.model, options.dataset, options.split) == ("some/encoder", "scifact", "dev")
    assert (options.dtype, options.max_length, options.measures) == ("int8", 64, ["AP"])
    assert options.encoder_options()["passage_max_length"] == 64


def test_train_fingerprint_spells_new_options_by_behaviour(tmp_path):
    """attention_dropout and dropout_masks came after runs were recorded: pinning the old behaviour
    ("model", "torch") keeps an old run's fingerprint; relying on a new default (0, "fast") or
    another value changes it."""
    from synthrank.experiments.runner import _hash

    def train_fingerprints(**train):
        data = config_dict(tmp_path)
        data["train"] = train
        return {s.key: s.fingerprint for s in plan(parse_experiment(data)) if s.kind in ("train", "eval")}

    before_option = train_fingerprints()  # what a run recorded before the option would have had...
    from synthrank import __version__

    stages = {s.key: s for s in plan(parse_experiment(config_dict(tmp_path)))}
    stage = stages["train/ws2"]
    assert "attention_dropout" not in stage.spec["train"]
    legacy = _hash({"kind": "train", "spec": stage.spec, "deps": [stages[d].fingerprint for d in stage.deps],
                    "version": __version__})  # the fingerprint as the runner computed it before the option
    pinned = train_fingerprints(attention_dropout="model", dropout_masks="torch")
    assert pinned["train/ws2"] == legacy  # ...is kept by pinning the model's dropout
    assert before_option["train/ws2"] != legacy  # the default is now 0: such a run is redone
    assert before_option == train_fingerprints(attention_dropout=0.0, dropout_masks="fast")  # defaults, given or not
    assert train_fingerprints(attention_dropout="model")["train/ws2"] not in (legacy, before_option["train/ws2"])
    assert train_fingerprints(attention_dropout=0.1)["train/ws2"] not in (legacy, before_option["train/ws2"])
    assert pinned["eval/ws2@scifact-test"] != before_option["eval/ws2@scifact-test"]  # evals follow their model
