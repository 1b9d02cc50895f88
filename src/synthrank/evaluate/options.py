"""``EvalOptions``: every option of ``synthrank eval``, declared once.

:class:`EvalSettings` holds *how* a model is evaluated (measures, encoding, BM25); it is what an
experiment's ``[eval]`` section sets for all its evaluations (``synthrank.experiments.config``).
:class:`EvalOptions` adds *what* is evaluated (dataset, model, split): the command line is built
from its fields (:mod:`synthrank.cli`) and the Python API :func:`synthrank.evaluate.evaluate`
validates its keyword arguments with it.

Not options, so not here: where results go (``--output``, ``--run``; ``run_path`` in Python)
and progress (``--quiet``; ``show_progress``).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from synthrank.evaluate.metrics import DEFAULT_MEASURES
from synthrank.models.bundled import DEFAULT_ENCODER
from synthrank.models.choices import Dtype, Pooling
from synthrank.utils.options import Cli

__all__ = ["EvalOptions", "EvalSettings"]


def _none_word(value: Any) -> Any:
    """'none' (any case) switches a BM25 text-processing step off, in configs and on the CLI."""
    return None if isinstance(value, str) and value.strip().lower() == "none" else value


class EvalSettings(BaseModel):
    """How a model is evaluated: the options one experiment shares across its evaluations."""

    model_config = ConfigDict(extra="forbid")

    measures: Annotated[list[str], Field(
        default_factory=lambda: list(DEFAULT_MEASURES),
        description="ir_measures names, comma-separated on the command line"),
        Cli(type=str, show_default=",".join(DEFAULT_MEASURES))]
    cache: Annotated[bool, Field(
        True, description="Read and write the embedding cache (keyed by weights, settings and corpus)")]
    dtype: Annotated[Dtype, Field(
        "auto", description="Inference precision: auto (bf16 where native), float32, bfloat16, or int8 (opt-in, "
        "CPU only: dynamically quantized Linear layers; scores move slightly)")]
    pooling: Annotated[Pooling | None, Field(
        None, description="Override the model folder's pooling")]
    normalize: Annotated[bool | None, Field(None, description="Override L2 normalisation")]
    query_prefix: Annotated[str, Field("", description="Text put before every query")]
    passage_prefix: Annotated[str, Field("", description="Text put before every passage")]
    max_length: Annotated[int | None, Field(
        None, description="Max tokens for queries and passages (default: the model folder's, else 512)")]
    bm25_k1: Annotated[float, Field(0.9, description="BM25 k1 (Anserini default 0.9)")]
    bm25_b: Annotated[float, Field(0.4, description="BM25 b (Anserini default 0.4)")]
    bm25_stemmer: Annotated[str | None, Field("english", description="Snowball stemmer language, or 'none'")]
    bm25_stopwords: Annotated[str | None, Field("en", description="Stop-word list ('en') or 'none'")]
    trust_remote_code: Annotated[bool, Field(False, description="Allow code shipped with the model to run")]

    @field_validator("measures", mode="before")
    @classmethod
    def _measure_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, (list, tuple)):
            from synthrank.evaluate.metrics import parse_measures

            if not all(isinstance(name, str) for name in value):
                return value  # pydantic names the item that is no text
            names = [name.strip() for name in value if name.strip()]
            parse_measures(names)  # ValueError names the measure and gives examples
            return names
        return value

    @field_validator("max_length")
    @classmethod
    def _positive_length(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError(f"must be >= 1 (tokens), not {value}")
        return value

    @field_validator("bm25_stemmer", "bm25_stopwords", mode="before")
    @classmethod
    def _off(cls, value: Any) -> Any:
        return _none_word(value)

    @model_validator(mode="after")
    def _check_bm25(self) -> "EvalSettings":
        from synthrank.retrieval.bm25 import BM25Config

        BM25Config(**self.bm25_options())  # ValueError: k1, b or an unknown stemmer
        return self

    def encoder_options(self) -> dict[str, Any]:
        """Keyword arguments of :class:`synthrank.models.encoder.EncoderConfig`."""
        options = {"dtype": self.dtype, "pooling": self.pooling, "normalize": self.normalize,
                   "query_prefix": self.query_prefix, "passage_prefix": self.passage_prefix,
                   "trust_remote_code": self.trust_remote_code}
        if self.max_length is not None:
            options.update(query_max_length=self.max_length, passage_max_length=self.max_length)
        return options

    def bm25_options(self) -> dict[str, Any]:
        """Keyword arguments of :class:`synthrank.retrieval.bm25.BM25Config`."""
        return {"k1": self.bm25_k1, "b": self.bm25_b, "stemmer": self.bm25_stemmer, "stopwords": self.bm25_stopwords}

    def given(self) -> dict[str, Any]:
        """The settings that differ from the defaults (what an experiment's eval stage records, so
        that stages run before a setting existed keep their fingerprints)."""
        return self.model_dump(exclude_defaults=True, include=set(EvalSettings.model_fields) - {"measures"})


class EvalOptions(EvalSettings):
    """One evaluation: what is evaluated, and how (:class:`EvalSettings`)."""

    dataset: Annotated[str, Field(
        description="A BEIR folder, or a dataset name under $SYNTHRANK_DATA_DIR / the cache / the BEIR mirror")]
    model: Annotated[str, Field(
        DEFAULT_ENCODER, description="A local model folder, a bundled alias (all-MiniLM-L6-v2), or 'bm25'")]
    split: Annotated[str, Field("test", description="Qrels split to evaluate")]
