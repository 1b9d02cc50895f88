"""vLLM's offline engine, for GPU users (optional: ``pip install vllm``).

All requests of a call go to ``LLM.chat`` at once; vLLM schedules them with continuous
batching. ``concurrency`` caps how many are submitted per call.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

from synthrank.generate.backends.base import Backend, ChatRequest, Completion


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

    def __init__(self, model: str | None = None, concurrency: int = 256, dtype: str | None = None,
                 max_model_len: int | None = None, engine=None, **_ignored):
        if not model and engine is None:
            raise ValueError("the vllm backend needs --model (a Hugging Face model id or folder)")
        super().__init__(model or "", concurrency)
        self._vllm = _import_vllm() if engine is None else None
        if engine is not None:
            self.engine = engine
        else:
            kwargs = {"model": model}
            if dtype:
                kwargs["dtype"] = dtype
            if max_model_len:
                kwargs["max_model_len"] = max_model_len
            self.engine = self._vllm.LLM(**kwargs)

    def sampling_params(self, request: ChatRequest):
        vllm = self._vllm or _import_vllm()
        kwargs = dict(max_tokens=request.max_tokens, temperature=request.temperature, top_p=request.top_p,
                      seed=request.seed)
        if request.top_k > 0:
            kwargs["top_k"] = request.top_k
        if request.stop:
            kwargs["stop"] = list(request.stop)
        if request.choices:
            try:
                from vllm.sampling_params import GuidedDecodingParams
                kwargs["guided_decoding"] = GuidedDecodingParams(choice=list(request.choices))
            except ImportError:  # older/newer vLLM without this API: parse the text instead
                pass
        return vllm.SamplingParams(**kwargs)

    def generate(self, requests: Sequence[ChatRequest]) -> Iterator[tuple[int, Completion]]:
        for start in range(0, len(requests), self.concurrency):
            chunk = list(requests[start:start + self.concurrency])
            began = time.perf_counter()
            try:
                outputs = self.engine.chat([r.messages for r in chunk], [self.sampling_params(r) for r in chunk],
                                           use_tqdm=False)
            except Exception as error:
                for offset in range(len(chunk)):
                    yield start + offset, Completion(error=f"{type(error).__name__}: {error}")
                continue
            seconds = time.perf_counter() - began
            for offset, output in enumerate(outputs):
                best = output.outputs[0]
                yield start + offset, Completion(text=best.text, tokens_in=len(output.prompt_token_ids or []),
                                                 tokens_out=len(best.token_ids), seconds=seconds,
                                                 finish_reason=best.finish_reason)
