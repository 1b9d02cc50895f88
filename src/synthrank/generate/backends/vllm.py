"""vLLM's offline engine, for GPU users (optional: ``pip install vllm``).

Every engine argument that matters at scale comes from :class:`VLLMOptions` (tensor, pipeline
and data parallel sizes, GPU memory utilisation, max model length, quantization, prefix
caching, ...) and reaches ``vllm.LLM`` unchanged. Requests stream through the engine: up to
``concurrency`` are in flight (``LLMEngine.add_request``), ``LLMEngine.step`` runs the
continuous-batching scheduler, and each request is handed to the caller the step it finishes,
when the next waiting one takes its place, so the runner commits every answer as it arrives
and a slow answer never holds back the others. Prefix caching is on by default: all requests
of a level share the prompt before the query.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Iterator, Sequence

from synthrank.generate.backends.base import Backend, ChatRequest, Completion
from synthrank.generate.backends.options import VLLMOptions, validate_backend_options

_CALLS = itertools.count()


def _import_vllm():
    try:
        import vllm
    except ImportError as error:
        raise ImportError(
            "the vllm backend needs the optional vllm package (a GPU install): pip install vllm; "
            "on a CPU use --backend llama-cpp or --backend transformers"
        ) from error
    return vllm


class VLLMBackend(Backend):
    name = "vllm"

    def __init__(self, model: str | None = None, concurrency: int = 256, engine=None, **options):
        """``options``: the fields of :class:`VLLMOptions`; ``engine``: an already built
        ``vllm.LLM`` (or an object with its ``llm_engine`` and ``get_tokenizer``)."""
        if not model and engine is None:
            raise ValueError("the vllm backend needs --model (a Hugging Face model id or folder)")
        self.options: VLLMOptions = validate_backend_options(self.name, options)  # type: ignore[assignment]
        super().__init__(model or "", concurrency)
        self._vllm = _import_vllm() if engine is None else None
        self.engine = engine if engine is not None else self._vllm.LLM(**self.options.engine_arguments(model))

    def identity(self) -> dict:
        # quantization and dtype change the answers; parallel sizes and memory settings do not
        return {"backend": self.name, "model": self.model, "dtype": self.options.dtype,
                "quantization": self.options.quantization}

    def sampling_params(self, request: ChatRequest):
        vllm = self._vllm or _import_vllm()
        kwargs = dict(max_tokens=request.max_tokens, temperature=request.temperature, top_p=request.top_p,
                      seed=request.seed)
        if request.top_k > 0:
            kwargs["top_k"] = request.top_k
        if request.stop:
            kwargs["stop"] = list(request.stop)
        try:  # only the finished answer is wanted, not one output per step
            from vllm.sampling_params import RequestOutputKind
            kwargs["output_kind"] = RequestOutputKind.FINAL_ONLY
        except ImportError:  # pragma: no cover - older vLLM
            pass
        if request.choices:
            kwargs.update(_choice_constraint(list(request.choices)))
        return vllm.SamplingParams(**kwargs)

    def prompt_token_ids(self, tokenizer, request: ChatRequest) -> list[int]:
        """The chat template rendered and tokenized once (the template already holds BOS)."""
        text = tokenizer.apply_chat_template(request.messages, add_generation_prompt=True, tokenize=False)
        return list(tokenizer.encode(text, add_special_tokens=False))

    def generate(self, requests: Sequence[ChatRequest]) -> Iterator[tuple[int, Completion]]:
        engine = self.engine.llm_engine
        tokenizer = self.engine.get_tokenizer()
        waiting = deque(enumerate(requests))
        in_flight: dict[str, tuple[int, float]] = {}  # request id -> (index, submitted at)
        prefix = f"synthrank-{next(_CALLS)}-"
        try:
            while waiting or in_flight:
                while waiting and len(in_flight) < self.concurrency:
                    index, request = waiting.popleft()
                    request_id = f"{prefix}{index}"
                    try:
                        prompt = {"prompt_token_ids": self.prompt_token_ids(tokenizer, request)}
                        engine.add_request(request_id, prompt, self.sampling_params(request))
                    except Exception as error:  # e.g. a prompt longer than max_model_len
                        yield index, Completion(error=f"{type(error).__name__}: {error}")
                        continue
                    in_flight[request_id] = (index, time.perf_counter())
                if not in_flight:
                    continue
                try:
                    outputs = engine.step()
                except Exception as error:  # the engine failed: every request it held fails
                    failed, in_flight = in_flight, {}
                    _abort(engine, list(failed))
                    for index, _ in failed.values():
                        yield index, Completion(error=f"{type(error).__name__}: {error}")
                    continue
                for output in outputs:
                    if not getattr(output, "finished", False) or output.request_id not in in_flight:
                        continue
                    index, submitted = in_flight.pop(output.request_id)
                    yield index, _completion(output, time.perf_counter() - submitted)
        finally:  # the caller stopped early (Ctrl-C, an error): nothing keeps running in the engine
            if in_flight:
                _abort(engine, list(in_flight))

    def close(self) -> None:
        self.engine = None


def _choice_constraint(choices: list[str]) -> dict:
    """Constrain decoding to ``choices``: ``structured_outputs`` in current vLLM,
    ``guided_decoding`` in older releases; without either the caller's parsing decides."""
    try:
        from vllm.sampling_params import StructuredOutputsParams
        return {"structured_outputs": StructuredOutputsParams(choice=choices)}
    except ImportError:
        pass
    try:
        from vllm.sampling_params import GuidedDecodingParams
        return {"guided_decoding": GuidedDecodingParams(choice=choices)}
    except ImportError:
        return {}


def _abort(engine, request_ids: list[str]) -> None:
    try:
        engine.abort_request(request_ids)
    except Exception:  # an engine that already failed may not abort; nothing is left to save
        pass


def _completion(output, seconds: float) -> Completion:
    best = output.outputs[0]
    return Completion(text=best.text, tokens_in=len(output.prompt_token_ids or []), tokens_out=len(best.token_ids),
                      seconds=seconds, finish_reason=best.finish_reason)
