"""The small interface every generation backend implements.

A backend takes a list of chat requests and yields ``(index, Completion)`` pairs as answers
arrive, in any order. Errors are answers too (``Completion.error``), so that one bad request
never takes a run down; the runner decides whether to retry. ``concurrency`` is how many
requests the backend works on at once (parallel HTTP requests, a batch of sequences).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field


@dataclass
class ChatRequest:
    messages: list[dict]
    max_tokens: int = 512
    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    # When set, the answer must be one of these strings (e.g. grades "0".."3"); backends that
    # can constrain decoding do so, the others rely on the caller's parsing.
    choices: list[str] | None = None


@dataclass
class Completion:
    text: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    seconds: float = 0.0
    error: str | None = None
    finish_reason: str | None = None
    # The error is one that every further request would meet too (bad key, unknown model):
    # the runner stops instead of spending attempts on it.
    fatal: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


class Backend(ABC):
    name: str = "base"
    bundled: bool = False  # serving the bundled SmolLM2 (no model named)

    def __init__(self, model: str, concurrency: int = 1):
        self.model = model
        self.concurrency = max(1, int(concurrency))

    def identity(self) -> dict:
        """What identifies the model for the run's fingerprint (not concurrency or URLs)."""
        return {"backend": self.name, "model": self.model}

    def runtime(self) -> dict:
        """How this session runs the model (kernels, threads, CPU), for the manifest. Not part of
        the fingerprint: the same model may resume on another machine."""
        return {}

    @abstractmethod
    def generate(self, requests: Sequence[ChatRequest]) -> Iterator[tuple[int, Completion]]:
        """Yield ``(index into requests, completion)`` for every request, as each finishes."""

    def close(self) -> None:
        """Release the model, sessions or threads."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
