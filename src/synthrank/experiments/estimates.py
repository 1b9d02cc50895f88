"""The ``--dry-run`` cost estimate: stated throughputs times counted (or published) sizes.

Every stage gets an estimate and the line it came from (``basis``): how many queries, passages
or steps, at which rate, on how many devices. Sizes are counted from the dataset on disk; a
dataset that is not there yet uses its published BEIR size (:data:`PUBLISHED_SIZES`, or the
config's ``[estimates.dataset_sizes]``), and the basis says so. A stage that still cannot be
estimated is shown as unknown and named under the total, never counted as zero.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from synthrank.utils.cpu import cpu_flags


class DatasetSize(BaseModel):
    model_config = ConfigDict(extra="forbid")
    passages: int | None = Field(None, ge=0)
    queries: dict[str, int] = Field(default_factory=dict, description="Judged queries per split")


# Published sizes (BEIR, Thakur et al. 2021, table 1; MS MARCO train from its qrels; TREC DL
# 2019/2020 judged query counts), for planning before a dataset is downloaded.
_MSMARCO_PASSAGES = 8_841_823
PUBLISHED_SIZES: dict[str, DatasetSize] = {
    "msmarco": DatasetSize(passages=_MSMARCO_PASSAGES, queries={"train": 502_939, "dev": 6_980}),
    "trec-dl-2019": DatasetSize(passages=_MSMARCO_PASSAGES, queries={"test": 43}),
    "trec-dl-2020": DatasetSize(passages=_MSMARCO_PASSAGES, queries={"test": 54}),
    "arguana": DatasetSize(passages=8_674, queries={"test": 1_406}),
    "climate-fever": DatasetSize(passages=5_416_593, queries={"test": 1_535}),
    "cqadupstack/android": DatasetSize(passages=22_998, queries={"test": 699}),
    "dbpedia-entity": DatasetSize(passages=4_635_922, queries={"test": 400}),
    "fever": DatasetSize(passages=5_416_568, queries={"test": 6_666}),
    "fiqa": DatasetSize(passages=57_638, queries={"test": 648}),
    "hotpotqa": DatasetSize(passages=5_233_329, queries={"test": 7_405}),
    "nfcorpus": DatasetSize(passages=3_633, queries={"test": 323}),
    "nq": DatasetSize(passages=2_681_468, queries={"test": 3_452}),
    "quora": DatasetSize(passages=522_931, queries={"test": 10_000}),
    "scidocs": DatasetSize(passages=25_657, queries={"test": 1_000}),
    "scifact": DatasetSize(passages=5_183, queries={"test": 300, "train": 809}),
    "webis-touche2020": DatasetSize(passages=382_545, queries={"test": 49}),
    "trec-covid": DatasetSize(passages=171_332, queries={"test": 50}),
}


# MiniLM over SciFact (~250 tokens a passage) on 2 cores: ~60 passages/s in bf16 on an AVX-512-BF16 CPU,
# 8-15/s in fp32 on an AVX2-only one (README, "Speed"; the lower CPU kind is the one laptops often have).
ENCODE_RATE_NATIVE_BF16 = 60.0
ENCODE_RATE_FP32 = 15.0
# Training MiniLM (batch 16, group 4, passages <= 256 tokens) on 2 cores: 16 queries in ~6 s on the
# AVX-512-BF16 CPU. In fp32 on the AVX2-only one (`synthrank quickstart`, 809 queries of full-length
# SciFact abstracts; README, "synthrank quickstart"): 1.41 queries/s (573 s) with synthrank's dropout
# defaults, 0.68 queries/s (1,194 s) with the model's attention dropout (`attention_dropout = "model"`),
# which keeps torch's fused attention kernel from running.
TRAIN_RATE_NATIVE_BF16 = 16 / 6
TRAIN_RATE_FP32 = 809 / 573
TRAIN_RATE_FP32_MODEL_DROPOUT = 0.68


def has_native_bf16(flags: set[str] | None = None) -> bool:
    """Whether this CPU computes bf16 natively (AVX-512-BF16 or AMX). Read from the flags, not from
    torch, so that a dry run stays cheap."""
    flags = cpu_flags() if flags is None else flags
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def default_encode_rate(flags: set[str] | None = None) -> float:
    """The encoder rate to assume on this CPU kind."""
    return ENCODE_RATE_NATIVE_BF16 if has_native_bf16(flags) else ENCODE_RATE_FP32


def default_train_rate(flags: set[str] | None = None, bf16: bool = True, model_dropout: bool = False) -> float:
    """The training rate (queries/s) to assume on this CPU kind; fp32 training (``bf16`` off) runs
    at the fp32 rate on every CPU kind, about half as fast with the model's attention dropout."""
    if bf16 and has_native_bf16(flags):
        return TRAIN_RATE_NATIVE_BF16
    return TRAIN_RATE_FP32_MODEL_DROPOUT if model_dropout else TRAIN_RATE_FP32


class Estimates(BaseModel):
    """Throughput assumptions behind ``--dry-run``, printed with the plan; set them in the
    config's ``[estimates]`` for your hardware. The defaults are the 2-core CPU of
    ``configs/laptop.toml`` (its header: 1,800 passages generated in 15 min, i.e. ~2 passages/s)."""

    model_config = ConfigDict(extra="forbid")
    generate_tokens_per_s_per_device: float = Field(
        260.0, gt=0, description="Generated tokens/s per GPU (or CPU process), all sequences together "
        "(laptop: ~2 passages/s x 130 tokens)")
    generate_tokens_per_passage: float = Field(130.0, gt=0, description="Tokens the generator writes per passage")
    encode_passages_per_s_per_device: float = Field(
        default_factory=lambda: default_encode_rate(), gt=0,
        description="Encoder throughput per GPU/CPU (default: MiniLM on SciFact-length passages, 2 cores, measured "
        "per CPU kind: 60/s with native bf16, 15/s on AVX2 without it)")
    train_queries_per_s_per_device: float = Field(
        default_factory=lambda: default_train_rate(), gt=0,
        description="Training queries (with their passages) per second per device (default: MiniLM, batch 16, "
        "group 4, 256 tokens, 2 cores, measured per CPU kind: 2.67/s with native bf16; on AVX2 without it 1.41/s, "
        "0.68/s with the model's attention dropout)")
    bm25_passages_per_s: float = Field(5000.0, gt=0, description="BM25 indexing (mining)")
    # `synthrank adapt --corpus scifact --documents 50` with the bundled SmolLM2: 50 queries in 272 s,
    # 8 of 43 kept by the round-trip filter (2 shared cores; README, "Adapt to your own documents")
    adapt_queries_per_s: float = Field(0.18, gt=0, description="Queries written per second by adapt's generator")
    adapt_filter_yield: float = Field(0.2, gt=0, le=1, description="Share of adapt's queries the round-trip filter keeps")
    eval_devices: int = Field(1, ge=1, description="Processes of a sharded evaluation (torchrun)")
    dataset_sizes: dict[str, DatasetSize] = Field(
        default_factory=dict, description="Sizes of datasets not on disk (overrides the published ones)")

    def lines(self) -> list[str]:
        """The assumptions, one line each, for the plan's header."""
        lines = [f"  {name} = {getattr(self, name):g}" for name in (
            "generate_tokens_per_s_per_device", "generate_tokens_per_passage", "encode_passages_per_s_per_device",
            "train_queries_per_s_per_device", "bm25_passages_per_s", "adapt_queries_per_s", "adapt_filter_yield",
            "eval_devices")]
        if "train_queries_per_s_per_device" not in self.model_fields_set:
            lines[3] = (f"  train_queries_per_s_per_device = {self.train_rate(True)[0]:.3g} with bf16 = true, "
                        f"{self.train_rate(False)[0]:.3g} in fp32, {self.train_rate(False, True)[0]:g} in fp32 "
                        f"with attention_dropout = \"model\" (this CPU kind)")
        return lines

    def train_rate(self, bf16: bool, model_dropout: bool = False) -> tuple[float, str]:
        """Training queries/s per device and how it was chosen: the config's figure when it sets
        one, else this CPU kind's default for the stage's precision and attention dropout."""
        if "train_queries_per_s_per_device" in self.model_fields_set:
            return self.train_queries_per_s_per_device, ""
        rate = default_train_rate(bf16=bf16, model_dropout=model_dropout)
        dropout = ", model's attention dropout" if rate == TRAIN_RATE_FP32_MODEL_DROPOUT else ""
        return rate, (", bf16" if bf16 else ", fp32") + dropout


class Unknown(Exception):
    """A size that is neither on disk nor published: the stage's estimate is unknown."""


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in handle)


def _judged_queries(qrels: Path) -> int:
    seen = set()
    with qrels.open("r", encoding="utf-8") as handle:
        for number, line in enumerate(handle):
            qid = line.split("\t", 1)[0]
            if number == 0 and qid == "query-id":
                continue
            seen.add(qid)
    return len(seen)


def _folder(dataset: str) -> Path | None:
    from synthrank.data.resolve import resolve_dataset

    try:
        return resolve_dataset(dataset, download=False)
    except Exception:  # not on disk (yet): sizes come from the published table
        return None


def _published(dataset: str, estimates: Estimates) -> DatasetSize | None:
    """The configured or published size of ``dataset``; a path made absolute by the planner is
    matched by its last one or two parts (``.../cqadupstack/android``)."""
    parts = Path(dataset).parts
    names = [dataset, "/".join(parts[-2:]), parts[-1] if parts else dataset]
    for table in (estimates.dataset_sizes, PUBLISHED_SIZES):
        for name in names:
            if name in table:
                return table[name]
    return None


def passages_of(dataset: str, estimates: Estimates) -> tuple[int, str]:
    folder = _folder(dataset)
    if folder is not None and (folder / "corpus.jsonl").is_file():
        return _count_lines(folder / "corpus.jsonl"), "on disk"
    size = _published(dataset, estimates)
    if size is None or size.passages is None:
        raise Unknown(f"{dataset}: not on disk and no published size; set [estimates.dataset_sizes.\"{dataset}\"]")
    return size.passages, "published size"


# The encode rate is for SciFact-length passages (~1,560 bytes of corpus.jsonl a passage, most
# truncated at 256 tokens). Shorter passages encode faster in proportion to their length: the TREC DL
# 2019 pool (~400 bytes a passage) encoded ~3x faster per passage than SciFact on the AVX2 machine.
REFERENCE_PASSAGE_BYTES = 1500


def passage_length_scale(dataset: str, passages: int | None = None) -> float:
    """How long a dataset's passages are against the encode rate's reference (at most 1: truncation caps
    long ones), from the size of its corpus.jsonl on disk; 1 when it is not on disk. ``passages``: the
    corpus's line count when the caller has it (:func:`passages_of`), so the file is not read again."""
    folder = _folder(dataset)
    if folder is None or not (folder / "corpus.jsonl").is_file():
        return 1.0
    lines = _count_lines(folder / "corpus.jsonl") if passages is None else passages
    if lines == 0:
        return 1.0
    return min(1.0, (folder / "corpus.jsonl").stat().st_size / lines / REFERENCE_PASSAGE_BYTES)


def queries_of(dataset: str, split: str | None, estimates: Estimates) -> tuple[int, str]:
    folder = _folder(dataset)
    if folder is not None:
        if split is not None and (folder / "qrels" / f"{split}.tsv").is_file():
            return _judged_queries(folder / "qrels" / f"{split}.tsv"), "on disk"
        if split is None and (folder / "queries.jsonl").is_file():
            return _count_lines(folder / "queries.jsonl"), "on disk"
    path = Path(dataset).expanduser()
    if path.is_file():  # a queries file
        return _count_lines(path), "on disk"
    size = _published(dataset, estimates)
    if size is None or (split or "test") not in size.queries:
        raise Unknown(f"{dataset}/{split}: not on disk and no published query count; "
                      f"set [estimates.dataset_sizes.\"{dataset}\"] queries = {{ {split or 'test'} = N }}")
    return size.queries[split or "test"], "published size"


def launcher_devices(launcher: list[str] | None) -> int:
    """Processes a training launcher starts: ``--nproc_per_node`` (or ``--num_gpus``) x ``--nnodes``."""
    if not launcher:
        return 1
    text = " ".join(launcher)

    def number(*flags: str) -> int:
        for flag in flags:
            match = re.search(rf"{flag}[= ](\d+)", text)
            if match:
                return int(match.group(1))
        return 1

    return number("--nproc_per_node", "--nproc-per-node", "--num_gpus") * number("--nnodes", "--num_nodes")


def generator_devices(spec: dict[str, Any]) -> int:
    options = spec.get("backend_options") or {}
    if spec.get("backend") != "vllm":
        return 1
    return (int(options.get("tensor_parallel_size", 1)) * int(options.get("pipeline_parallel_size", 1))
            * int(options.get("data_parallel_size", 1)))


def estimate_stages(config, ordered: list) -> None:
    """Set ``estimate_s`` and ``estimate_basis`` of every stage (``None`` and the reason when unknown)."""
    rates: Estimates = config.estimates
    queries_by_stage: dict[str, int] = {}
    encoded: set[tuple[str, str]] = set()  # (model, corpus) pairs an earlier eval stage encodes
    for stage in ordered:
        try:
            stage.estimate_s, stage.estimate_basis = _estimate_one(config, stage, rates, queries_by_stage, encoded)
        except Unknown as reason:
            stage.estimate_s, stage.estimate_basis = None, f"unknown: {reason}"
        except Exception as error:  # e.g. an unreadable qrels file: the plan still prints, and says why
            stage.estimate_s, stage.estimate_basis = None, f"unknown: {type(error).__name__}: {error}"


def _without_holdout(config, spec: dict) -> dict:
    """A ``{holdout.NAME}`` dataset counts as the dataset it was split from (for sizes)."""
    sources = {f"{{holdout.{job.name}}}": job.dataset for job in getattr(config, "holdout", [])}
    return {key: sources.get(value, value) if isinstance(value, str) else value for key, value in spec.items()}


def _estimate_one(config, stage, rates: Estimates, queries_by_stage: dict[str, int],
                  encoded: set[tuple[str, str]]) -> tuple[float, str]:
    spec = _without_holdout(config, stage.spec)
    if stage.kind == "holdout":
        return 0.0, "splits a qrels file"
    if stage.kind == "adapt":
        n = int(spec.get("limit") or spec.get("documents", 100))
        queries = n * int(spec.get("queries_per_doc", 1))
        kept = queries * (rates.adapt_filter_yield if spec.get("filter", True) else 1.0)
        queries_by_stage[stage.key] = round(kept)
        # queries merged from an earlier job's store are not written again
        seconds = 0.0 if spec.get("merge_from") else queries / rates.adapt_queries_per_s
        basis = f"{queries:,} queries at {rates.adapt_queries_per_s:g}/s, {rates.adapt_filter_yield:g} kept"
        if spec.get("grounded"):
            passages = kept * (int(spec.get("grounded_levels", 4)) - 1)
            seconds += passages * rates.generate_tokens_per_passage / rates.generate_tokens_per_s_per_device
            basis += f", {passages:,.0f} grounded passages"
        return seconds, basis
    if stage.kind == "generate":
        n, source = queries_of(spec["queries"], spec.get("split"), rates)
        for cap in (spec.get("limit"), spec.get("sample")):
            if cap is not None:
                n = min(n, int(cap))
        queries_by_stage[stage.key] = n
        levels = int(spec.get("levels", 4)) - (1 if spec.get("references") else 0)  # grounded: top level is real
        passages = n * levels * int(spec.get("per_level", 1))
        devices = generator_devices(spec)
        tokens = passages * rates.generate_tokens_per_passage
        seconds = tokens / (rates.generate_tokens_per_s_per_device * devices)
        return seconds, (f"{n:,} queries ({source}) x {passages // max(n, 1)} passages x "
                         f"{rates.generate_tokens_per_passage:g} tokens / ({rates.generate_tokens_per_s_per_device:g} "
                         f"tokens/s x {devices} device{'s' if devices > 1 else ''})")
    if stage.kind == "mine":
        queries_by_stage[stage.key] = queries_of(spec["dataset"], spec.get("split"), rates)[0]
        passages, source = passages_of(spec["dataset"], rates)
        return passages / rates.bm25_passages_per_s, (
            f"BM25 index of {passages:,} passages ({source}) at {rates.bm25_passages_per_s:g}/s")
    if stage.kind == "train":
        options = spec["train"]
        devices = launcher_devices(config.launcher)
        per_step = int(options.get("batch_size", 16)) * int(options.get("grad_accum", 1)) * devices
        if options.get("max_steps"):
            queries = int(options["max_steps"]) * per_step
            what = f"{options['max_steps']} steps x {per_step} queries"
        else:
            known = [queries_by_stage[d] for d in stage.deps if d in queries_by_stage]
            if not known:
                queries, what = _recipe_queries(spec["recipe"], rates), "recipe data"
            else:
                queries, what = max(known), "from upstream stages"
            queries = math.ceil(queries * float(options.get("epochs", 1)))
            what = f"{queries:,} queries ({what}, {options.get('epochs', 1)} epoch(s))"
        rate, precision = rates.train_rate(bool(options.get("bf16")), options.get("attention_dropout") == "model")
        return queries / (rate * devices), (
            f"{what} / ({rate:g} queries/s{precision} x {devices} device{'s' if devices > 1 else ''})")
    if stage.kind == "eval":
        passages, source = passages_of(spec["dataset"], rates)
        held_out = {f"{{holdout.{job.name}}}": job.size for job in getattr(config, "holdout", [])}
        if stage.spec["dataset"] in held_out and spec.get("split") == "dev":
            queries = held_out[stage.spec["dataset"]]  # the held-out queries
        else:
            queries, _ = queries_of(spec["dataset"], spec.get("split"), rates)
        devices = rates.eval_devices
        scale = passage_length_scale(spec["dataset"], passages) if source == "on disk" else 1.0
        length = f", x{scale:.2f} for their length" if scale < 1 else ""
        corpus = (spec["model"], _corpus_identity(spec["dataset"]))
        cached = corpus in encoded
        encoded.add(corpus)
        # queries are short: count each as a tenth of a passage; a corpus this model already
        # encoded for another eval set (e.g. a dev split of the same collection) comes from the cache
        texts = (0 if cached else passages * scale) + queries * 0.1
        what = f"{passages:,} passages " + ("from the embedding cache" if cached else f"({source}{length})")
        return texts / (rates.encode_passages_per_s_per_device * devices), (
            f"encode {what} + {queries:,} queries / "
            f"({rates.encode_passages_per_s_per_device:g}/s x {devices} device{'s' if devices > 1 else ''})")
    raise Unknown(f"no estimate for stage kind {stage.kind!r}")


def _corpus_identity(dataset: str) -> str:
    """The corpus file a dataset's splits share (its resolved path), else the dataset's name."""
    folder = _folder(dataset)
    return str((folder / "corpus.jsonl").resolve()) if folder is not None else dataset


def _recipe_queries(recipe: dict, rates: Estimates) -> int:
    """Queries of a recipe that reads only existing datasets: the largest judged split."""
    counts = []
    for source in recipe.get("sources", []):
        dataset = source.get("dataset")
        if not isinstance(dataset, str) or "{" in dataset:
            continue
        counts.append(queries_of(dataset, source.get("split", "train"), rates)[0])
    if not counts:
        raise Unknown("the recipe's query count cannot be worked out before its inputs exist")
    return max(counts)
