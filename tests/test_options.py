"""Each option of ``generate``, ``train`` and ``eval`` is declared once, in its options model; the command
line, the Python API and experiment configs must agree with it.

The command lines are built from the models, so these tests guard the builder and catch an
option added by hand (a CLI option that is no field and not listed as CLI-only fails here)."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from synthrank.evaluate.options import EvalOptions, EvalSettings
from synthrank.generate.options import GenerateOptions
from synthrank.train.config import TrainConfig
from synthrank.utils.options import cli_of, default_text, flag_of


def _click_command(function):
    app = typer.Typer()
    app.command("run")(function)
    app.command("other")(lambda: None)
    return typer.main.get_command(app).commands["run"]


def _commands():
    from synthrank.evaluate import cli as evaluate_cli
    from synthrank.generate import cli as generate_cli
    from synthrank.train import cli as train_cli

    return [pytest.param(generate_cli.generate_command, GenerateOptions, generate_cli.CLI_ONLY, id="generate"),
            pytest.param(train_cli.train_command, TrainConfig, train_cli.CLI_ONLY, id="train"),
            pytest.param(evaluate_cli.eval_command, EvalOptions, evaluate_cli.CLI_ONLY, id="eval")]


@pytest.mark.parametrize("function, model, cli_only", _commands())
def test_cli_options_are_the_options_model(function, model, cli_only):
    """Names, flags, help and shown defaults of the CLI equal the model's fields; nothing else
    is on the CLI but the listed CLI-only options, each setting a field of the model."""
    command = _click_command(function)
    options = {param.name: param for param in command.params if param.name not in ("help", "typer_context")}
    fields = {name: info for name, info in model.model_fields.items() if not cli_of(info).hidden}
    assert set(options) == set(fields) | set(cli_only), "CLI options and model fields differ"
    for name, info in fields.items():
        option = options[name]
        assert info.description, f"{model.__name__}.{name} has no description (it is the --help text)"
        assert option.help == info.description, name
        assert option.opts[0] == flag_of(name, info), name
        shown = default_text(info)
        if shown is None or info.is_required():
            assert option.default is None and option.show_default in (False, None), name
        elif isinstance(option.show_default, str):
            assert option.show_default == shown, name
        else:
            assert str(option.default) == shown, name  # typer shows the real default
    for name, targets in cli_only.items():
        assert options[name].help, name
        assert all(target in model.model_fields for target in targets or ()), name


def test_train_cli_reaches_every_training_option(tmp_path, monkeypatch):
    """Every TrainConfig field given on the command line arrives in the config train() gets,
    and a config file fills what the command line leaves out."""
    import synthrank.train.trainer as trainer_module

    received = {}
    monkeypatch.setattr(trainer_module, "train", lambda config: received.update(config=config))
    (tmp_path / "ds.json").write_text("{}")
    values = {"data": "r.json", "group_size": 3, "mode": "binary", "sampling": "top", "positive_threshold": 2,
              "model": "m", "pooling": "cls", "normalize": True, "query_max_length": 11, "passage_max_length": 22,
              "query_prefix": "q: ", "passage_prefix": "p: ", "trust_remote_code": True, "loss": "kl",
              "temperature": 0.5, "loss_params": {"a": 1}, "output": "out", "batch_size": 4, "lr": 0.001,
              "epochs": 2.0, "max_steps": 7, "warmup": 3.0, "weight_decay": 0.1, "lr_scheduler": "cosine",
              "optim": "sgd", "max_grad_norm": 0.5, "grad_accum": 2, "chunk_size": None, "forward_batch_size": 8,
              "bf16": True, "fp16": False, "attention_dropout": 0.05, "dropout_masks": "torch", "gradient_checkpointing": True, "deepspeed": str(tmp_path / "ds.json"),
              "seed": 5, "drop_last": False, "dataloader_workers": 1, "ddp_find_unused_parameters": True,
              "save_steps": 9, "save_total_limit": 2, "logging_steps": 3, "report_to": "tensorboard",
              "run_name": "r", "resume": True, "quiet": True}
    assert set(values) == set(TrainConfig.model_fields)
    args = []
    for name, value in values.items():
        flag = flag_of(name, TrainConfig.model_fields[name])
        if value is None:
            continue
        if isinstance(value, bool):
            args.append(flag if value else f"--no-{flag[2:]}")
        elif isinstance(value, dict):
            args += [item for key, v in value.items() for item in (flag, f"{key}={json.dumps(v)}")]
        else:
            args += [flag, str(value)]
    from synthrank.train.cli import train_command

    result = CliRunner().invoke(_app(train_command), ["run", *args])
    assert result.exit_code == 0, result.output
    config = received["config"]
    for name, value in values.items():
        assert getattr(config, name) == value, name

    received.clear()
    (tmp_path / "train.toml").write_text('data = "r.json"\noutput = "o"\nlr = 0.5\nbf16 = true\n')
    result = CliRunner().invoke(_app(train_command), ["run", "--config", str(tmp_path / "train.toml"), "--no-bf16",
                                                      "--max-length", "9"])
    assert result.exit_code == 0, result.output
    config = received["config"]
    assert (config.lr, config.bf16, config.query_max_length, config.passage_max_length) == (0.5, False, 9, 9)
    assert config.batch_size == TrainConfig.model_fields["batch_size"].default  # the model's default


def _app(function):
    app = typer.Typer()
    app.command("run")(function)
    app.command("other")(lambda: None)
    return app


def test_bad_values_on_the_command_line_are_one_clear_line(tmp_path):
    from synthrank.generate.cli import generate_command
    from synthrank.train.cli import train_command

    cases = [(train_command, ["--data", "r", "--output", "o", "--batch-size", "0"], "batch_size"),
             (train_command, ["--data", "r", "--output", "o", "--loss-param", "nokey"], "--loss-param expects KEY=VALUE"),
             (train_command, ["--data", "r", "--output", "o", "--mode", "graded-ish"], "--mode"),
             (generate_command, ["--queries", "q", "--output", str(tmp_path), "--min-success", "2"], "min_success"),
             (generate_command, ["--queries", "q", "--output", str(tmp_path), "--fidelity", "bm26"],
              "unknown fidelity scorer(s) bm26"),
             (generate_command, ["--queries", "q", "--output", str(tmp_path), "--mode", "joint", "--references", "x"],
              "references are used by grounded mode only")]
    for function, args, text in cases:
        result = CliRunner().invoke(_app(function), ["run", *args])
        assert result.exit_code == 2, (args, result.output)
        assert text in result.output, (args, result.output)
        assert "Traceback" not in result.output and not isinstance(result.exception, (TypeError, ValueError))


def test_generate_api_takes_the_options_model_and_names_unknown_keywords(tmp_path):
    from synthrank.generate.api import generate, resolve_options

    with pytest.raises(TypeError, match="unknown option.*temprature"):
        generate("q", tmp_path, temprature=0.3)
    with pytest.raises(ValueError, match="top_p"):
        generate("q", tmp_path, top_p=2)
    options = resolve_options(None, GenerateOptions(queries="q", levels=3), {"temperature": 0.2})
    assert (options.queries, options.levels, options.temperature) == ("q", 3, 0.2)
    defaults = GenerateOptions(queries="q")
    assert defaults.fidelity == ["bm25", "encoder"] and defaults.max_tokens_per_passage == 200


def test_experiment_generate_jobs_are_generate_options():
    from synthrank.experiments.config import GenerateJob

    assert issubclass(GenerateJob, GenerateOptions)
    assert set(GenerateJob.model_fields) - set(GenerateOptions.model_fields) == {"name"}
    job = GenerateJob.model_validate({"name": "g", "queries": "scifact", "temperature": 1, "limit": 3})
    assert job.arguments() == {"queries": "scifact", "temperature": 1, "limit": 3}  # as given: fingerprints keep


def test_training_arguments_come_from_the_fields(tmp_path):
    """Every TrainingArguments argument synthrank sets is named by one TrainConfig field."""
    from transformers import TrainingArguments

    from synthrank.train.arguments import RankingTrainingArguments, training_arguments_from
    from synthrank.utils.options import hf_of

    assert issubclass(RankingTrainingArguments, TrainingArguments)
    known = set(inspect.signature(TrainingArguments).parameters)
    targets = [name for info in TrainConfig.model_fields.values() if hf_of(info) for name in hf_of(info).names]
    assert len(targets) == len(set(targets)) and set(targets) <= known
    config = TrainConfig(data="r", output=str(tmp_path / "o"), batch_size=3, lr=2e-5, seed=7, report_to="a, b",
                         quiet=True)
    arguments = training_arguments_from(config)
    assert arguments["per_device_train_batch_size"] == 3 and arguments["learning_rate"] == 2e-5
    assert arguments["seed"] == arguments["data_seed"] == 7 and arguments["report_to"] == ["a", "b"]
    assert arguments["max_steps"] == -1 and "deepspeed" not in arguments and arguments["disable_tqdm"] is True
    args = RankingTrainingArguments.from_options(config.model_copy(update={"report_to": "none"}))
    assert args.remove_unused_columns is False and args.logging_first_step is True
    assert args.per_device_train_batch_size == 3 and args.output_dir == str(Path(tmp_path / "o"))


def test_eval_cli_reaches_every_evaluation_option(monkeypatch, tmp_path):
    """Every EvalOptions field given on the command line arrives in the options evaluate() gets,
    and becomes the encoder's / BM25's settings."""
    import synthrank.evaluate as evaluate_package
    from synthrank.evaluate.cli import eval_command

    received = {}
    monkeypatch.setattr(evaluate_package, "evaluate", lambda options, **kw: received.update(options=options, **kw)
                        or (_ for _ in ()).throw(ValueError("stop here")))
    values = {"dataset": "d", "model": "m", "split": "dev", "measures": ["AP", "P@5"], "cache": False,
              "dtype": "int8", "pooling": "max", "normalize": False, "query_prefix": "q: ", "passage_prefix": "p: ",
              "max_length": 77, "bm25_k1": 1.2, "bm25_b": 0.75, "bm25_stemmer": None, "bm25_stopwords": None,
              "trust_remote_code": True}
    assert set(values) == set(EvalOptions.model_fields)
    args = []
    for name, value in values.items():
        flag = flag_of(name, EvalOptions.model_fields[name])
        if isinstance(value, bool):
            args.append(flag if value else f"--no-{flag[2:]}")
        elif isinstance(value, list):
            args += [flag, ",".join(value)]
        else:
            args += [flag, "none" if value is None else str(value)]
    result = CliRunner().invoke(_app(eval_command), ["run", *args, "--quiet", "--run", str(tmp_path / "r.trec")])
    assert result.exit_code == 2 and "stop here" in result.output, result.output
    options = received["options"]
    assert options.model_dump() == values
    assert received["run_path"] == tmp_path / "r.trec" and received["show_progress"] is False
    assert options.encoder_options() == {"dtype": "int8", "pooling": "max", "normalize": False, "query_prefix": "q: ",
                                         "passage_prefix": "p: ", "trust_remote_code": True,
                                         "query_max_length": 77, "passage_max_length": 77}
    assert options.bm25_options() == {"k1": 1.2, "b": 0.75, "stemmer": None, "stopwords": None}


def test_experiment_eval_section_is_eval_settings_and_keeps_old_fingerprints(tmp_path):
    """[eval] takes every option of `synthrank eval` but dataset/model/split; an eval stage's spec
    holds only the settings that differ from the defaults, so runs recorded before keep theirs."""
    from synthrank.experiments import parse_experiment, plan
    from synthrank.experiments.config import EvalSpec

    assert issubclass(EvalSpec, EvalSettings)
    assert set(EvalSpec.model_fields) - set(EvalSettings.model_fields) == {"datasets"}
    assert set(EvalOptions.model_fields) - set(EvalSettings.model_fields) == {"dataset", "model", "split"}

    def eval_specs(**settings):
        config = parse_experiment({"name": "t", "output": str(tmp_path / "run"),
                                   "eval": {"datasets": [{"dataset": "scifact"}], **settings}})
        return [stage.spec for stage in plan(config) if stage.kind == "eval"]

    (plain,) = eval_specs()
    assert set(plain) == {"model", "dataset", "split", "measures", "base_model"}
    (quantized,) = eval_specs(dtype="int8", max_length=256, bm25_stemmer="none")
    assert {k: quantized[k] for k in set(quantized) - set(plain)} == {"dtype": "int8", "max_length": 256,
                                                                      "bm25_stemmer": None}
    with pytest.raises(Exception, match="eval.dtype"):
        eval_specs(dtype="int4")
    with pytest.raises(Exception, match=r"eval.measures\[1\]: Input should be a valid string"):
        eval_specs(measures=["nDCG@10", 10])  # refused, not dropped
    with pytest.raises(Exception, match="eval.split"):
        eval_specs(split="dev")  # the split belongs to each dataset


def test_evaluate_api_takes_the_options_model_or_its_fields(tiny_beir):
    from pydantic import ValidationError

    from synthrank.evaluate import evaluate, evaluate_model

    by_fields = evaluate(dataset=str(tiny_beir), model="bm25", measures="nDCG@10", bm25_k1=1.2, show_progress=False)
    options = EvalOptions(dataset=str(tiny_beir), model="bm25", measures=["nDCG@10"])
    by_model = evaluate(options, bm25_k1=1.2, show_progress=False)
    engine = evaluate_model("bm25", str(tiny_beir), measures=["nDCG@10"], bm25_options={"k1": 1.2}, show_progress=False)
    assert by_fields.metrics == by_model.metrics == engine.metrics and set(engine.metrics) == {"nDCG@10"}
    assert by_model.settings == engine.settings and engine.settings["bm25"]["k1"] == 1.2
    with pytest.raises(ValidationError, match="max_length"):
        evaluate(dataset=str(tiny_beir), max_length=0)
    with pytest.raises(ValidationError, match="mesures"):
        evaluate(dataset=str(tiny_beir), mesures="AP")
