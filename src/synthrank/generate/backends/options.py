"""Typed options of each generation backend, checked before any model is loaded.

``backend_options`` come from the command line or from an experiment config's ``[[generate]]``
section; every backend has one pydantic model with ``extra="forbid"``, so a misspelt key
(``tensor_paralel_size``) is an error that names it instead of an option silently dropped (a
70B model then loading on one GPU). :func:`validate_backend_options` is what ``make_backend``
and the experiment config loader call.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def arguments(self) -> dict[str, Any]:
        """The options the user set, as keyword arguments of the backend's constructor."""
        return self.model_dump(exclude_unset=True)


class LlamaCppOptions(_Options):
    threads: int | None = Field(None, ge=1, description="CPU threads")
    ctx_per_sequence: int = Field(2048, ge=64)
    n_batch: int = Field(2048, ge=1)
    quantize: str | None = Field("auto", description="re-encode the GGUF once (cached): auto (Q8_0 for the bundled "
                                 "model), none, q8_0, f16, q5_0, iq4_nl, q4_0 (4- and 5-bit: faster, "
                                 "lower quality; README, Speed)")
    share_prefix: bool = True
    verbose: bool = False


class OpenAIOptions(_Options):
    base_url: str | None = Field(None, description="endpoint, e.g. http://127.0.0.1:8000/v1")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the API key")
    timeout: float | None = Field(None, gt=0, description="seconds per request")
    max_retries: int | None = Field(None, ge=0, description="retries on 429/5xx/timeouts")
    backoff: float = Field(0.5, ge=0)
    max_backoff: float = Field(30.0, ge=0)
    send_seed: bool = True


class TransformersOptions(_Options):
    device: str | None = Field(None, description="cpu, cuda, ...")
    dtype: str | None = Field(None, description="float32, bfloat16, ...")
    threads: int | None = Field(None, ge=1, description="CPU threads")


class VLLMOptions(_Options):
    """The arguments of ``vllm.LLM`` / ``vllm.EngineArgs`` that matter at scale (same names)."""

    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one model replica is split over")
    pipeline_parallel_size: int = Field(1, ge=1, description="Pipeline stages (multi-node models)")
    data_parallel_size: int = Field(
        1, ge=1, description="Replicas; vLLM's offline engine runs one per process, so >1 needs "
        "external_launcher (torchrun) or one `--shard i/N` process per replica")
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1, description="None: vLLM's default")
    max_model_len: int | None = Field(None, ge=1)
    quantization: str | None = None
    dtype: str = Field("auto", description="float32, bfloat16, ...")
    kv_cache_dtype: str | None = None
    # All requests of a level share the prompt before the query: the KV cache of that prefix is reused.
    enable_prefix_caching: bool = True
    max_num_seqs: int | None = Field(None, ge=1)
    max_num_batched_tokens: int | None = Field(None, ge=1)
    enforce_eager: bool | None = None
    distributed_executor_backend: Literal["mp", "ray", "uni", "external_launcher"] | None = None
    seed: int | None = None
    download_dir: str | None = None
    trust_remote_code: bool = False

    @model_validator(mode="after")
    def _check_data_parallel(self) -> "VLLMOptions":
        # vllm.LLM itself refuses data_parallel_size > 1 in one process (it may hang); say so now,
        # not after the weights of a 70B model have been read.
        if self.data_parallel_size > 1 and self.distributed_executor_backend != "external_launcher":
            raise ValueError("data_parallel_size > 1 needs distributed_executor_backend = \"external_launcher\" "
                             "(one process per replica under torchrun); or run one `synthrank generate "
                             "--shard i/N` per replica and `synthrank generate-merge`")
        return self

    def engine_arguments(self, model: str) -> dict[str, Any]:
        """Keyword arguments of ``vllm.LLM``: every option, set or default, so what the engine
        receives never depends on vLLM's own defaults changing (``None`` means vLLM's default)."""
        return {"model": model, **{k: v for k, v in self.model_dump().items() if v is not None}}


BACKEND_OPTIONS: dict[str, type[_Options]] = {
    "llama-cpp": LlamaCppOptions,
    "openai": OpenAIOptions,
    "transformers": TransformersOptions,
    "vllm": VLLMOptions,
}


def validate_backend_options(backend: str, options: dict[str, Any] | None) -> _Options:
    """Check ``options`` for ``backend``; a ValueError names every unknown or invalid key."""
    if backend not in BACKEND_OPTIONS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKEND_OPTIONS)}")
    model_cls = BACKEND_OPTIONS[backend]
    if options is not None and not isinstance(options, dict):
        raise ValueError(f"backend_options must be a table of options, got {type(options).__name__}")
    try:
        return model_cls.model_validate(options or {})
    except ValidationError as error:
        known = ", ".join(model_cls.model_fields)
        problems = []
        for item in error.errors():
            key = ".".join(str(part) for part in item["loc"]) or "<options>"
            if item["type"] == "extra_forbidden":
                problems.append(f"backend_options.{key}: unknown option of the {backend} backend")
            else:
                problems.append(f"backend_options.{key}: {item['msg']}")
        raise ValueError("; ".join(problems) + f" (options of the {backend} backend: {known})") from None
