"""A local causal LM through Hugging Face transformers, batched (static batches, left padding).

``model`` is a model folder or hub id (loaded from the local cache; no downloads are made
here) or a ``.gguf`` file, which transformers dequantises (needs the ``gguf`` package). The
default is the bundled SmolLM2 GGUF.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from synthrank.generate.backends.base import Backend, ChatRequest, Completion
from synthrank.generate.bundled import BUNDLED_NAME, bundled_generator_path


class TransformersBackend(Backend):
    name = "transformers"

    def __init__(self, model: str | None = None, concurrency: int = 8, device: str | None = None,
                 dtype: str | None = None, threads: int | None = None):
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as error:  # pragma: no cover
            raise ImportError("the transformers backend needs torch and transformers") from error
        path = Path(model) if model else bundled_generator_path()
        super().__init__(str(path) if model is None or path.exists() else model, concurrency)
        self.bundled = model is None
        self.model_name = BUNDLED_NAME if model is None else (path.stem if path.suffix == ".gguf" else model)
        if threads:
            torch.set_num_threads(threads)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        torch_dtype = getattr(torch, dtype) if dtype else (torch.float32 if self.device == "cpu" else torch.bfloat16)
        kwargs: dict = {}
        if path.suffix == ".gguf":
            source, kwargs["gguf_file"] = str(path.parent), path.name
        else:
            source = model
        self.tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.lm = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, **kwargs).to(self.device).eval()
        self._torch = torch

    def identity(self) -> dict:
        return {"backend": self.name, "model": self.model_name}

    def _prompt(self, request: ChatRequest) -> str:
        return self.tokenizer.apply_chat_template(request.messages, add_generation_prompt=True, tokenize=False)

    def generate(self, requests: Sequence[ChatRequest]) -> Iterator[tuple[int, Completion]]:
        prompts = {}
        for index, request in enumerate(requests):
            try:
                prompts[index] = self._prompt(request)
            except Exception as error:
                yield index, Completion(error=f"prompt formatting failed: {error}")
        # Similar lengths together: less padding. Same sampling settings together: one generate call.
        order = sorted(prompts, key=lambda i: (requests[i].choices is not None, requests[i].temperature,
                                               requests[i].top_p, len(prompts[i])))
        for start in range(0, len(order), self.concurrency):
            batch = order[start:start + self.concurrency]
            try:
                yield from self._run_batch(batch, requests, prompts)
            except Exception as error:  # e.g. out of memory: every request of the batch fails
                for index in batch:
                    yield index, Completion(error=f"{type(error).__name__}: {error}")

    def _run_batch(self, batch, requests, prompts):
        torch = self._torch
        first = requests[batch[0]]
        started = time.perf_counter()
        enc = self.tokenizer([prompts[i] for i in batch], return_tensors="pt", padding=True,
                             add_special_tokens=False).to(self.device)
        n_in = enc["attention_mask"].sum(dim=1).tolist()
        if all(requests[i].choices for i in batch) and all(
                len(self.tokenizer.encode(c, add_special_tokens=False)) == 1 for i in batch for c in requests[i].choices):
            with torch.no_grad():
                logits = self.lm(**enc).logits[:, -1, :]
            seconds = time.perf_counter() - started
            for row, index in enumerate(batch):
                choices = requests[index].choices
                ids = [self.tokenizer.encode(c, add_special_tokens=False)[0] for c in choices]
                best = choices[int(torch.argmax(logits[row, ids]))]
                yield index, Completion(text=best, tokens_in=int(n_in[row]), tokens_out=1, seconds=seconds,
                                        finish_reason="stop")
            return
        max_new = max(requests[i].max_tokens for i in batch)
        if first.seed is not None:
            torch.manual_seed(first.seed)
        sample = first.temperature > 0
        kwargs = dict(max_new_tokens=max_new, do_sample=sample, pad_token_id=self.tokenizer.pad_token_id)
        if sample:
            kwargs.update(temperature=first.temperature, top_p=first.top_p, top_k=first.top_k or None)
        with torch.no_grad():
            out = self.lm.generate(**enc, **kwargs)
        seconds = time.perf_counter() - started
        new = out[:, enc["input_ids"].shape[1]:]
        eos_ids = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id}
        for token_id in (getattr(self.lm.generation_config, "eos_token_id", None) or []) if isinstance(
                getattr(self.lm.generation_config, "eos_token_id", None), list) else [getattr(self.lm.generation_config, "eos_token_id", None)]:
            if token_id is not None:
                eos_ids.add(token_id)
        for row, index in enumerate(batch):
            ids = new[row].tolist()
            limit = requests[index].max_tokens
            cut = next((j for j, t in enumerate(ids) if t in eos_ids), None)
            finish = "stop" if cut is not None and cut <= limit else "length"
            ids = ids[: min(cut if cut is not None else len(ids), limit)]
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            for stop in requests[index].stop:
                if stop in text:
                    text, finish = text[: text.index(stop)], "stop"
            yield index, Completion(text=text, tokens_in=int(n_in[row]), tokens_out=len(ids), seconds=seconds,
                                    finish_reason=finish)
