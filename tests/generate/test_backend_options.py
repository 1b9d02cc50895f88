"""Typed backend options: unknown keys are errors that name them, at load, before any model."""

from __future__ import annotations

import pytest

from synthrank.generate.backends import make_backend
from synthrank.generate.backends.options import BACKEND_OPTIONS, validate_backend_options


@pytest.mark.parametrize("backend, key", [
    ("llama-cpp", "n_ctx"), ("openai", "threads"), ("transformers", "quantize"), ("vllm", "tensor_paralel_size"),
])
def test_every_backend_rejects_a_key_it_does_not_have(backend, key):
    with pytest.raises(ValueError, match=rf"backend_options\.{key}: unknown option of the {backend} backend"):
        validate_backend_options(backend, {key: 1})
    # ... before anything is loaded: no model, no server, no vllm needed
    with pytest.raises(ValueError, match=key):
        make_backend(backend, "no-such-model", **{key: 1})


def test_wrong_types_name_the_key():
    with pytest.raises(ValueError, match="backend_options.tensor_parallel_size"):
        validate_backend_options("vllm", {"tensor_parallel_size": "four"})
    with pytest.raises(ValueError, match="backend_options.gpu_memory_utilization"):
        validate_backend_options("vllm", {"gpu_memory_utilization": 1.5})
    with pytest.raises(ValueError, match="unknown backend 'tgi'"):
        validate_backend_options("tgi", {})


def test_known_options_pass_and_only_set_ones_are_forwarded():
    assert validate_backend_options("openai", {"base_url": "http://127.0.0.1:1/v1"}).arguments() == {
        "base_url": "http://127.0.0.1:1/v1"}
    assert validate_backend_options("llama-cpp", None).arguments() == {}
    assert set(BACKEND_OPTIONS) == {"llama-cpp", "openai", "transformers", "vllm"}


def _experiment(tmp_path, backend_options, backend="vllm"):
    path = tmp_path / "exp.toml"
    options = ", ".join(f"{k} = {v!r}" if isinstance(v, str) else f"{k} = {str(v).lower()}"
                        for k, v in backend_options.items())
    path.write_text(f"""
name = "x"
[[generate]]
name = "big-gen"
queries = "scifact"
backend = "{backend}"
model = "org/model"
backend_options = {{ {options} }}

[eval]
datasets = [{{ dataset = "scifact" }}]
""")
    return path


def test_experiment_config_with_a_misspelt_backend_option_fails_at_load(tmp_path):
    from synthrank.experiments import ExperimentConfigError, load_experiment

    path = _experiment(tmp_path, {"tensor_paralel_size": 4})
    with pytest.raises(ExperimentConfigError) as error:
        load_experiment(path)
    message = str(error.value)
    assert str(path) in message                       # the file
    assert "generate[0]" in message and "big-gen" in message  # the section
    assert "backend_options.tensor_paralel_size" in message    # the key
    load_experiment(_experiment(tmp_path, {"tensor_parallel_size": 4}))  # spelt right: loads


def test_experiment_dry_run_fails_early_on_a_bad_backend_option(tmp_path):
    from typer.testing import CliRunner

    from synthrank.cli import app

    path = _experiment(tmp_path, {"threads": 4}, backend="openai")
    result = CliRunner().invoke(app, ["experiment", str(path), "--dry-run"])
    assert result.exit_code == 2
    assert "backend_options.threads: unknown option of the openai backend" in result.output


def test_backend_option_flags_parse_json_values():
    from synthrank.generate.cli import _backend_options

    options = _backend_options(None, "OPENAI_API_KEY", None, None, None, None, "bfloat16",
                               extra=["tensor_parallel_size=4", "enable_prefix_caching=false", "quantization=fp8",
                                      "gpu_memory_utilization=0.85"])
    assert options == {"dtype": "bfloat16", "tensor_parallel_size": 4, "enable_prefix_caching": False,
                       "quantization": "fp8", "gpu_memory_utilization": 0.85}
    assert validate_backend_options("vllm", options).tensor_parallel_size == 4


def test_generate_command_names_a_flag_the_backend_does_not_take(tmp_path):
    from typer.testing import CliRunner

    from synthrank.cli import app

    result = CliRunner().invoke(app, ["generate", "--queries", "scifact", "--output", str(tmp_path / "g"),
                                      "--backend", "openai", "--threads", "4"])
    assert result.exit_code == 2 and "backend_options.threads: unknown option of the openai backend" in result.output
