"""``GenerateOptions``: every option of ``synthrank generate``, declared once.

The command line (:mod:`synthrank.generate.cli` builds its options from these fields), the
Python API (:func:`synthrank.generate.api.generate` validates its keyword arguments with this
model) and experiment configs (``[[generate]]`` jobs are :class:`GenerateOptions` plus a
``name``) all read this declaration: name, type, default, help text and validation.

Not options, so not here: ``output`` (where, not how; a positional argument of ``generate()``,
``--output`` on the command line, the stage folder in an experiment), ``progress`` and
``backend_instance`` (Python API only). The backends' own options are declared in
:mod:`synthrank.generate.backends.options`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from synthrank.data.config_files import parse_assignments
from synthrank.utils.options import Cli

__all__ = ["GenerateOptions", "FIDELITY_SCORERS"]

FIDELITY_SCORERS = ("bm25", "encoder")

BACKEND_HELP = "llama-cpp | openai | transformers | vllm (default: llama-cpp with the bundled SmolLM2 GGUF)"
BACKEND_OPTION_HELP = ("KEY=VALUE, repeatable: any option of the backend, e.g. tensor_parallel_size=4 for vllm "
                       "(VALUE read as JSON when it parses: 4, 0.9, true)")

PathLike = str | Path


def _backend_option_items(items: list[str]) -> dict[str, Any]:
    return parse_assignments(items, "--backend-option")


class GenerateOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # input
    queries: Annotated[PathLike, Field(
        description="BEIR folder, queries.jsonl, TSV (qid<TAB>text) or dataset name"), Cli(type=str)]
    split: Annotated[str | None, Field(None, description="With a BEIR folder: only queries judged in this split")]
    limit: Annotated[int | None, Field(None, ge=0, description="Only the first N (selected) queries")]
    sample: Annotated[int | None, Field(None, ge=0, description="Draw N queries at random (with --seed)")]
    seed: Annotated[int, Field(0, description="Seed for sampling queries and decoding")]
    query_ids: Annotated[str | list[str] | None, Field(
        None, description="Comma-separated ids, or @file with one id per line"), Cli(type=str)]
    shard: Annotated[str | None, Field(None, description="i/n: this machine's share of the queries (0 <= i < n)")]
    # backend
    backend: Annotated[str | None, Field(None, description=BACKEND_HELP)]
    model: Annotated[str | None, Field(None, description="GGUF path, HF model id/path, or served model name")]
    concurrency: Annotated[int | None, Field(
        None, ge=1, description="Requests in flight / sequences per batch (default: the backend's)")]
    backend_options: Annotated[dict[str, Any], Field(default_factory=dict, description=BACKEND_OPTION_HELP),
                               Cli(flag="--backend-option", type=list[str], parse=_backend_option_items)]
    # levels and prompts
    levels: Annotated[int, Field(4, description="Built-in scale with 4 (TREC DL), 3 or 2 levels")]
    levels_file: Annotated[PathLike | None, Field(None, description="JSON list of {grade, name, description}"),
                           Cli(type=Path)]
    per_level: Annotated[int, Field(1, ge=1, description="Passages per level and query")]
    mode: Annotated[Literal["auto", "joint", "per-level", "grounded"], Field(
        "auto", description="joint (all levels in one JSON answer, per-level fallback), per-level, grounded (needs "
        "--references), or auto (grounded with --references, else per-level for the bundled model, else joint)")]
    references: Annotated[PathLike | None, Field(
        None, description="Grounded mode: BEIR folder or dataset name whose --split qrels give each query's real "
        "top-level passage, or a JSONL of {query-id, corpus-id, title, text}; the model writes the other levels "
        "relative to it"), Cli(type=str)]
    reference_words: Annotated[int, Field(120, ge=1, description="Grounded mode: words of the reference shown to the model")]
    system_prompt: Annotated[PathLike | None, Field(None, description="Template file overriding the system prompt"),
                             Cli(type=Path)]
    joint_prompt: Annotated[PathLike | None, Field(None, description="Template file overriding the joint prompt"),
                            Cli(type=Path)]
    level_prompt: Annotated[PathLike | None, Field(None, description="Template file overriding the per-level prompt"),
                            Cli(type=Path)]
    grounded_prompt: Annotated[PathLike | None, Field(None, description="Template file overriding the grounded prompt"),
                               Cli(type=Path)]
    few_shot: Annotated[PathLike | bool, Field(
        True, description="JSON/JSONL few-shot examples; true: the built-in one, false: none (--no-few-shot)"),
        Cli(type=Path, show_default="the built-in example")]
    # decoding and validation
    temperature: Annotated[float, Field(0.7, ge=0, description="Sampling temperature")]
    top_p: Annotated[float, Field(0.95, gt=0, le=1, description="Nucleus sampling: smallest token set of this mass")]
    max_tokens_per_passage: Annotated[int, Field(200, ge=1, description="Token budget per passage"),
                                      Cli(flag="--max-tokens")]
    min_words: Annotated[int, Field(30, ge=1, description="Reject passages shorter than this")]
    max_words: Annotated[int, Field(160, ge=1, description="Reject passages longer than this")]
    max_attempts: Annotated[int, Field(4, ge=1, description="Answers tried per passage before it is recorded as failed")]
    retry_failed: Annotated[bool, Field(False, description="Generate passages recorded as failed again")]
    # output
    fidelity: Annotated[list[str], Field(
        default_factory=lambda: list(FIDELITY_SCORERS), description="Scorers of level fidelity written to the "
        "manifest and fidelity.json: comma-separated bm25, encoder; 'none' for none"),
        Cli(type=str, show_default="bm25,encoder")]
    fidelity_encoder: Annotated[str | None, Field(
        None, description="Encoder for the 'encoder' fidelity scorer (default: the bundled base encoder)")]
    overwrite: Annotated[bool, Field(False, description="Replace an export of another configuration in --output")]
    min_success: Annotated[float, Field(
        0.5, ge=0, le=1, description="Exit with status 1 when less than this share of the passages exists "
        "(always when none does)")]

    @field_validator("fidelity", mode="before")
    @classmethod
    def _scorers(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [] if value.strip().lower() == "none" else [s.strip() for s in value.split(",") if s.strip()]
        if isinstance(value, (list, tuple)):
            unknown = sorted(set(value) - set(FIDELITY_SCORERS))
            if unknown:
                raise ValueError(f"unknown fidelity scorer(s) {', '.join(map(str, unknown))}; "
                                 f"known: {', '.join(FIDELITY_SCORERS)}")
            return list(value)
        return value

    def _where(self) -> str:
        """Prefix of the errors of the checks below (an experiment job names itself)."""
        return ""

    @model_validator(mode="after")
    def _check(self) -> "GenerateOptions":
        try:
            self._check_combination()
        except ValueError as error:
            raise ValueError(self._where() + str(error)) from None
        return self

    def _check_combination(self) -> None:
        if self.mode == "grounded" and self.references is None:
            raise ValueError("mode 'grounded' needs references (a BEIR folder with qrels, or a JSONL file)")
        if self.references is not None and self.mode not in ("auto", "grounded"):
            raise ValueError(f"references are used by grounded mode only, not mode {self.mode!r}")
        if self.min_words > self.max_words:
            raise ValueError("need min_words <= max_words")
        # Backend options are checked here, so a misspelt engine option fails before any
        # model is loaded (and, in an experiment, before hours of other stages run).
        from synthrank.generate.api import default_backend
        from synthrank.generate.backends.options import validate_backend_options

        validate_backend_options(self.backend or default_backend(), self.backend_options)
