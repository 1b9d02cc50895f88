"""The --dry-run estimate: every stage estimated from stated throughputs, nothing left out silently."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthrank.experiments import format_plan, load_experiment, parse_experiment, plan
from synthrank.experiments.estimates import Estimates, launcher_devices

REPO = Path(__file__).resolve().parents[2]


def test_paper_plan_has_an_estimate_for_every_stage_and_prints_its_assumptions(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHRANK_DATA_DIR", str(tmp_path / "no-data"))  # sizes from the published table
    config = load_experiment(REPO / "configs" / "paper.toml")
    config.output = str(tmp_path / "run")
    stages = plan(config)
    assert stages and all(stage.estimate_s and stage.estimate_s > 0 for stage in stages)
    text = format_plan(stages, config.estimates)
    assert "unknown" not in text
    for assumption in ("generate_tokens_per_s_per_device = 700", "encode_passages_per_s_per_device = 3000",
                       "train_queries_per_s_per_device = 40"):
        assert assumption in text
    (generate,) = [s for s in stages if s.kind == "generate"]
    # 502,939 MS MARCO training queries x 4 levels x 130 tokens on 4 GPUs (tensor_parallel_size) at 700 tokens/s each
    assert generate.estimate_s == pytest.approx(502_939 * 4 * 130 / (700 * 4))
    assert "502,939 queries (published size)" in generate.estimate_basis and "4 devices" in generate.estimate_basis
    train = next(s for s in stages if s.key == "train/ws2-synthetic")
    assert train.estimate_s == pytest.approx(502_939 / (40 * 4))  # torchrun --nproc_per_node 4
    total = sum(s.estimate_s for s in stages)
    assert total > 24 * 3600  # a multi-day plan, not 36 s
    assert text.splitlines()[-1].split()[-2:] == [f"{total / 3600:.1f}", "h"]


def test_a_stage_that_cannot_be_estimated_is_named_not_counted_as_zero(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHRANK_DATA_DIR", str(tmp_path / "no-data"))
    config = parse_experiment({"name": "t", "output": str(tmp_path / "run"),
                               "eval": {"datasets": [{"dataset": "scifact"}, {"dataset": "my-private-set"}]}})
    stages = plan(config)
    unknown = [s for s in stages if s.estimate_s is None]
    assert [s.key for s in unknown] == ["eval/base@my-private-set-test"]
    assert "my-private-set" in unknown[0].estimate_basis and "dataset_sizes" in unknown[0].estimate_basis
    text = format_plan(stages, config.estimates)
    assert "plus 1 stage(s) without an estimate: eval/base@my-private-set-test" in text
    assert ">= " in text.splitlines()[-2]


def test_dataset_sizes_and_throughputs_come_from_the_config(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHRANK_DATA_DIR", str(tmp_path / "no-data"))
    config = parse_experiment({
        "name": "t", "output": str(tmp_path / "run"),
        "eval": {"datasets": [{"dataset": "my-private-set"}]},
        "estimates": {"encode_passages_per_s_per_device": 100.0, "eval_devices": 2,
                      "dataset_sizes": {"my-private-set": {"passages": 1000, "queries": {"test": 200}}}},
    })
    (stage,) = plan(config)
    assert stage.estimate_s == pytest.approx((1000 + 200 * 0.1) / (100 * 2))  # a query counts as 0.1 passage


def test_unknown_estimate_keys_are_errors():
    from synthrank.experiments import ExperimentConfigError

    with pytest.raises(ExperimentConfigError, match="generate_passages_per_sec"):
        parse_experiment({"name": "t", "eval": {"datasets": [{"dataset": "scifact"}]},
                          "estimates": {"generate_passages_per_sec": 3}}, "x.toml")
    assert Estimates().generate_tokens_per_s_per_device > 0


def test_launcher_devices():
    assert launcher_devices(None) == 1
    assert launcher_devices(["torchrun", "--nproc_per_node", "4"]) == 4
    assert launcher_devices(["torchrun", "--nnodes=2", "--nproc_per_node=8"]) == 16
    assert launcher_devices(["deepspeed", "--num_gpus", "4"]) == 4


def test_default_encode_rate_follows_the_cpu_kind(tmp_path):
    from synthrank.experiments.estimates import (ENCODE_RATE_FP32, ENCODE_RATE_NATIVE_BF16,
                                                 default_encode_rate)
    from synthrank.utils.cpu import cpu_flags, cpu_model, speed_flags

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma avx512f avx512_bf16\n")
    assert cpu_flags(info) == {"fpu", "sse2", "avx2", "fma", "avx512f", "avx512_bf16"}
    assert default_encode_rate(cpu_flags(info)) == ENCODE_RATE_NATIVE_BF16
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n")
    assert default_encode_rate(cpu_flags(info)) == ENCODE_RATE_FP32 < ENCODE_RATE_NATIVE_BF16
    assert cpu_flags(tmp_path / "missing") == set()
    assert cpu_model(tmp_path / "missing") is None
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx2 fma\n")
    assert cpu_model(info) == "AMD EPYC 7B13"
    assert speed_flags(info) == ["avx2", "fma"]
    assert default_encode_rate(set()) == ENCODE_RATE_FP32  # unknown CPU: the slower kind


def test_default_train_rate_follows_the_cpu_kind():
    from synthrank.experiments.estimates import TRAIN_RATE_FP32, TRAIN_RATE_NATIVE_BF16, default_train_rate

    assert default_train_rate({"avx2", "fma", "amx_bf16"}) == TRAIN_RATE_NATIVE_BF16
    assert default_train_rate({"avx2", "fma"}) == TRAIN_RATE_FP32 < TRAIN_RATE_NATIVE_BF16
    assert default_train_rate(set()) == TRAIN_RATE_FP32  # unknown CPU: the slower kind


def test_fp32_training_with_the_models_attention_dropout_is_estimated_at_its_slower_rate(tmp_path, monkeypatch):
    from synthrank.experiments.estimates import TRAIN_RATE_FP32, TRAIN_RATE_FP32_MODEL_DROPOUT, default_train_rate

    assert default_train_rate({"avx2"}, bf16=False, model_dropout=True) == TRAIN_RATE_FP32_MODEL_DROPOUT
    assert TRAIN_RATE_FP32_MODEL_DROPOUT < TRAIN_RATE_FP32  # the fused attention kernel cannot run
    monkeypatch.setenv("SYNTHRANK_DATA_DIR", str(tmp_path / "no-data"))
    recipe = {"mode": "graded", "group_size": 4, "sources": [{"dataset": "scifact", "split": "train"}]}
    config = parse_experiment({
        "name": "t", "output": str(tmp_path / "run"), "train": {"max_steps": 10, "batch_size": 16},
        "settings": [{"name": "default", "loss": "ws2", "recipe": recipe},
                     {"name": "pinned", "loss": "ws2", "recipe": recipe, "train": {"attention_dropout": "model"}}],
        "eval": {"datasets": [{"dataset": "scifact"}]}})
    stages = {s.key: s for s in plan(config)}
    assert stages["train/default"].estimate_s == pytest.approx(160 / TRAIN_RATE_FP32)
    assert stages["train/pinned"].estimate_s == pytest.approx(160 / TRAIN_RATE_FP32_MODEL_DROPOUT)
    assert "attention dropout" in stages["train/pinned"].estimate_basis
    assert "attention dropout" not in stages["train/default"].estimate_basis
    assert 'attention_dropout = "model"' in format_plan(list(stages.values()), config.estimates)


def test_short_passages_are_estimated_to_encode_faster(tmp_path):
    from synthrank.experiments.estimates import REFERENCE_PASSAGE_BYTES, passage_length_scale

    long, short = tmp_path / "long", tmp_path / "short"
    for folder, size in ((long, 3 * REFERENCE_PASSAGE_BYTES), (short, REFERENCE_PASSAGE_BYTES // 4)):
        folder.mkdir()
        line = '{"_id": "d", "text": "' + "x" * (size - 24) + '"}\n'
        (folder / "corpus.jsonl").write_text(line * 10)
        (folder / "queries.jsonl").write_text('{"_id": "q", "text": "a query"}\n')
    assert passage_length_scale(str(long)) == 1.0  # truncation caps long passages
    assert abs(passage_length_scale(str(short)) - 0.25) < 0.01
    assert passage_length_scale(str(tmp_path / "missing")) == 1.0


def test_fp32_training_is_estimated_at_the_fp32_rate_on_every_cpu_kind(tmp_path, monkeypatch):
    from synthrank.experiments.estimates import TRAIN_RATE_FP32, TRAIN_RATE_NATIVE_BF16, default_train_rate

    assert default_train_rate({"avx512_bf16"}, bf16=False) == TRAIN_RATE_FP32
    assert default_train_rate({"avx512_bf16"}, bf16=True) == TRAIN_RATE_NATIVE_BF16
    monkeypatch.setenv("SYNTHRANK_DATA_DIR", str(tmp_path / "no-data"))
    recipe = {"mode": "graded", "group_size": 4, "sources": [{"dataset": "scifact", "split": "train"}]}
    config = parse_experiment({
        "name": "t", "output": str(tmp_path / "run"), "train": {"max_steps": 10, "batch_size": 16},
        "settings": [{"name": "fp32", "loss": "ws2", "recipe": recipe},
                     {"name": "bf16", "loss": "ws2", "recipe": recipe, "train": {"bf16": True}}],
        "eval": {"datasets": [{"dataset": "scifact"}]}})
    stages = {s.key: s for s in plan(config)}
    assert stages["train/fp32"].estimate_s == pytest.approx(160 / TRAIN_RATE_FP32)
    assert "fp32" in stages["train/fp32"].estimate_basis
    assert stages["train/bf16"].estimate_s == pytest.approx(160 / default_train_rate(bf16=True))
    assert "in fp32" in format_plan(list(stages.values()), config.estimates)


def test_a_second_eval_set_of_the_same_corpus_reads_the_embedding_cache(tmp_path, monkeypatch):
    folder = tmp_path / "data" / "mine"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(f'{{"_id": "d{i}", "text": "passage {i}"}}\n' for i in range(400)))
    (folder / "queries.jsonl").write_text("".join(f'{{"_id": "q{i}", "text": "query {i}"}}\n' for i in range(30)))
    for split, ids in (("dev", range(10)), ("test", range(10, 30))):
        (folder / "qrels" / f"{split}.tsv").write_text(
            "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in ids))
    monkeypatch.setenv("SYNTHRANK_DATA_DIR", str(tmp_path / "data"))
    config = parse_experiment({
        "name": "t", "output": str(tmp_path / "run"), "estimates": {"encode_passages_per_s_per_device": 10.0},
        "eval": {"datasets": [{"dataset": "mine", "split": "test"}, {"dataset": "mine", "split": "dev"}]}})
    test, dev = plan(config)
    assert test.estimate_s == pytest.approx((400 * _scale("mine") + 20 * 0.1) / 10)
    assert dev.estimate_s == pytest.approx(10 * 0.1 / 10)  # queries only: the corpus vectors are cached
    assert "from the embedding cache" in dev.estimate_basis


def _scale(dataset: str) -> float:
    from synthrank.experiments.estimates import passage_length_scale

    return passage_length_scale(dataset)
