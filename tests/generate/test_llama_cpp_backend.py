"""The llama-cpp engine with the bundled model: the cached Q8_0 re-encoding, and prompt-prefix
sharing between sequences (a KV stream copied from another slot must give the same logits as
decoding the whole prompt). Marked slow: they load the model (they run in CI)."""

from __future__ import annotations

import numpy as np
import pytest

from synthrank.generate.backends.base import ChatRequest
from synthrank.generate.levels import default_levels
from synthrank.generate.prompts import PromptSet

pytestmark = pytest.mark.slow

llama_cpp = pytest.importorskip("llama_cpp")

QUERIES = ["how long to boil an egg", "what is the capital of australia", "symptoms of vitamin d deficiency",
           "who invented the telephone"]


def _bundled():
    from synthrank.generate.bundled import BundledModelMissing, bundled_generator_path

    try:
        return bundled_generator_path()
    except BundledModelMissing as error:
        pytest.skip(str(error))


def _level_requests(max_tokens: int = 16) -> list[ChatRequest]:
    prompts, levels = PromptSet.load(), default_levels(4)
    return [ChatRequest(prompts.level_messages(q, level, "60 to 100", 30, 160), max_tokens=max_tokens,
                        temperature=0.0)
            for level in levels[:2] for q in QUERIES]


def test_requantize_writes_the_cached_copy_once(tmp_path):
    from synthrank.generate.backends.llama_cpp import requantize

    source = _bundled()
    first = requantize(source, "q8_0", cache=tmp_path, threads=2)
    assert first.parent == tmp_path and first.stat().st_size > source.stat().st_size  # 8 bits vs ~5
    stamp = first.stat().st_mtime_ns
    assert requantize(source, "q8_0", cache=tmp_path) == first and first.stat().st_mtime_ns == stamp
    assert not list(tmp_path.glob("*.partial"))
    with pytest.raises(ValueError, match="unknown quantization"):
        requantize(source, "q3_weird", cache=tmp_path)


def test_every_offered_reencoding_is_a_llama_cpp_file_type():
    from synthrank.generate.backends.llama_cpp import QUANT_TYPES

    assert {"q8_0", "q5_0", "iq4_nl", "q4_0", "f16"} <= set(QUANT_TYPES)
    assert all(isinstance(getattr(llama_cpp, ftype, None), int) for ftype in QUANT_TYPES.values())


def test_backend_identity_names_the_reencoding():
    from synthrank.generate.backends.llama_cpp import LlamaCppBackend

    _bundled()
    with LlamaCppBackend(None, threads=2) as backend:
        assert backend.model_name.endswith("-as-Q8_0") and backend.path.name.endswith(".q8_0.gguf")
        runtime = backend.runtime()
        assert runtime["weights"] == "q8_0" and runtime["threads"] == 2 and runtime["concurrency"] == 1
        # what ggml itself reports for this build: its instruction sets and kernels, not the CPU's
        assert "AVX2" in runtime["ggml_cpu_features"] and set(runtime["cpu_flags"]) >= {"avx2", "fma"}
    with LlamaCppBackend(None, threads=2, quantize="none") as backend:
        assert backend.model_name == "SmolLM2-135M-Instruct-Q4_1" and backend.path.suffix == ".gguf"
        assert backend.runtime()["weights"] == "as stored"
    with pytest.raises(ValueError, match="unknown quantization"):
        LlamaCppBackend(None, quantize="q3_weird")


def _last_logits(backend, tokens: list[int], start: int, seq: int) -> np.ndarray:
    lib = backend._lib
    for n, pos in enumerate(range(start, len(tokens))):
        backend._add(n, tokens[pos], pos, seq, pos == len(tokens) - 1)
    backend._batch.n_tokens = len(tokens) - start
    assert lib.llama_decode(backend._ctx, backend._batch) == 0
    row = lib.llama_get_logits_ith(backend._ctx, len(tokens) - start - 1)
    return np.ctypeslib.as_array(row, shape=(lib.llama_vocab_n_tokens(backend._vocab),)).copy()


def test_copied_kv_stream_gives_the_logits_of_a_full_decode():
    """What the engine relies on: copy sequence 0's cells to sequence 1, drop those past the
    shared prefix, decode only the rest of the second prompt. The reference decodes the same two
    pieces (shared prefix, then the rest) on sequence 1 itself, so both take the same arithmetic."""
    from synthrank.generate.backends.llama_cpp import LlamaCppBackend, _common_prefix

    _bundled()
    requests = _level_requests()
    with LlamaCppBackend(None, concurrency=2, threads=2) as backend:
        lib, mem = backend._lib, backend._mem
        first, _ = backend.tokenize_chat(requests[0].messages)
        second, _ = backend.tokenize_chat(requests[1].messages)
        shared = _common_prefix(first, second)
        assert shared > 100 and shared < len(second)  # everything but the query is shared

        _last_logits(backend, second[:shared], 0, seq=1)
        reference = _last_logits(backend, second, shared, seq=1)
        lib.llama_memory_seq_rm(mem, 1, -1, -1)
        whole = _last_logits(backend, second, 0, seq=1)  # one piece: other rounding, same answer
        lib.llama_memory_seq_rm(mem, 1, -1, -1)

        _last_logits(backend, first, 0, seq=0)
        lib.llama_memory_seq_cp(mem, 0, 1, -1, -1)
        assert lib.llama_memory_seq_rm(mem, 1, shared, -1)
        copied = _last_logits(backend, second, shared, seq=1)
        lib.llama_memory_seq_rm(mem, 1, -1, -1)

        without_prefix = _last_logits(backend, second, shared, seq=1)  # the control: no cells at all

    scale = np.abs(reference).max()
    assert np.abs(copied - reference).max() <= 1e-4 * scale
    assert copied.argmax() == reference.argmax() == whole.argmax()
    assert np.abs(whole - reference).max() < 0.05 * scale
    assert np.abs(without_prefix - reference).max() > 0.1 * scale  # the comparison can tell a missing prefix


def test_batched_engine_copies_shared_prompts_instead_of_decoding_them():
    from synthrank.generate.backends.llama_cpp import LlamaCppBackend

    _bundled()
    requests = _level_requests()
    prompt_tokens = {}
    for share in (True, False):
        with LlamaCppBackend(None, concurrency=4, threads=2, share_prefix=share) as backend:
            answers = dict(backend.generate(requests))
            stats = dict(backend.stats)
        assert sorted(answers) == list(range(len(requests)))
        assert all(c.ok and c.text.strip() and c.tokens_out > 0 for c in answers.values())
        total = sum(c.tokens_in for c in answers.values())
        assert stats["prompt_tokens_decoded"] + stats["prompt_tokens_reused"] + stats["prompt_tokens_copied"] == total
        prompt_tokens[share] = (stats["prompt_tokens_decoded"], stats["kv_copies"], total)
    decoded_shared, copies, total = prompt_tokens[True]
    decoded_alone, no_copies, _ = prompt_tokens[False]
    assert copies >= 3 and no_copies == 0
    # 4 slots: without sharing each decodes a full prompt first; with it, one does
    assert decoded_shared < 0.5 * decoded_alone < total


def test_requantize_is_quiet_unless_verbose(tmp_path, capfd):
    """llama.cpp logs each re-encoded tensor (~300 lines); only -v (synthrank at INFO) shows them."""
    import logging

    from synthrank.generate.backends.llama_cpp import requantize

    source = _bundled()
    # A model loaded with verbose=False (as the backend does) leaves llama-cpp-python's logger at
    # ERROR for the rest of the process; -v must still show the re-encoding after that (CI ran
    # this test after the backend tests and saw nothing).
    import llama_cpp

    llama_cpp.Llama(model_path=str(source), n_ctx=64, verbose=False)
    capfd.readouterr()
    requantize(source, "q8_0", cache=tmp_path / "quiet", threads=2)
    assert len(capfd.readouterr().err.splitlines()) < 5
    synthrank_logger = logging.getLogger("synthrank")
    previous = synthrank_logger.level
    synthrank_logger.setLevel(logging.INFO)
    try:
        requantize(source, "q8_0", cache=tmp_path / "verbose", threads=2)
    finally:
        synthrank_logger.setLevel(previous)
    assert len(capfd.readouterr().err.splitlines()) > 100
