"""Generation backends behind one interface; heavy libraries are imported lazily."""

from __future__ import annotations

from synthrank.generate.backends.base import Backend, ChatRequest, Completion
from synthrank.generate.backends.options import BACKEND_OPTIONS, validate_backend_options

BACKENDS = tuple(BACKEND_OPTIONS)


def make_backend(name: str, model: str | None = None, concurrency: int | None = None, **options) -> Backend:
    """Build a backend by name; ``model=None`` means the bundled SmolLM2 GGUF where it applies.

    ``options`` are checked against the backend's options model first: an unknown key is a
    ValueError naming it, raised before any model is loaded."""
    options = validate_backend_options(name, options).arguments()
    if concurrency is not None:
        options["concurrency"] = concurrency
    if name == "llama-cpp":
        from synthrank.generate.backends.llama_cpp import LlamaCppBackend
        return LlamaCppBackend(model, **options)
    if name == "openai":
        from synthrank.generate.backends.openai import OpenAIBackend
        return OpenAIBackend(model, **options)
    if name == "transformers":
        from synthrank.generate.backends.transformers import TransformersBackend
        return TransformersBackend(model, **options)
    if name == "vllm":
        from synthrank.generate.backends.vllm import VLLMBackend
        return VLLMBackend(model, **options)
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "Backend", "ChatRequest", "Completion", "make_backend", "validate_backend_options"]
