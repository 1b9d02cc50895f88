"""The vllm backend's request building, without vllm: the module is replaced by a fake."""

from __future__ import annotations

import sys
import types

import pytest

from synthrank.generate.backends import make_backend
from synthrank.generate.backends.base import ChatRequest


class _SamplingParams:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


class _Out:
    def __init__(self, text):
        self.outputs = [types.SimpleNamespace(text=text, token_ids=[1, 2, 3], finish_reason="stop")]
        self.prompt_token_ids = [9] * 11


class _Engine:
    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.calls = []

    def chat(self, conversations, params, use_tqdm=False):
        self.calls.append((conversations, params))
        return [_Out(f"answer {i}") for i in range(len(conversations))]


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.SamplingParams = _SamplingParams
    module.LLM = _Engine
    monkeypatch.setitem(sys.modules, "vllm", module)
    return module


def test_requests_become_chat_calls_with_sampling_params(fake_vllm):
    b = make_backend("vllm", "org/model", concurrency=2, dtype="bfloat16")
    assert b.engine.kwargs == {"model": "org/model", "dtype": "bfloat16"}
    reqs = [ChatRequest([{"role": "user", "content": str(i)}], max_tokens=64, temperature=0.5, top_p=0.9, seed=i,
                        stop=["\n\n"]) for i in range(3)]
    out = dict(b.generate(reqs))
    assert [out[i].text for i in range(3)] == ["answer 0", "answer 1", "answer 0"]
    assert out[0].tokens_in == 11 and out[0].tokens_out == 3
    (convs, params), _ = b.engine.calls
    assert convs[1] == [{"role": "user", "content": "1"}]
    assert params[1].kwargs == {"max_tokens": 64, "temperature": 0.5, "top_p": 0.9, "seed": 1, "top_k": 40,
                                "stop": ["\n\n"]}


def test_engine_errors_become_failed_completions(fake_vllm):
    b = make_backend("vllm", "m")

    def boom(*a, **k):
        raise RuntimeError("CUDA out of memory")

    b.engine.chat = boom
    (_, c), = list(b.generate([ChatRequest([{"role": "user", "content": "x"}])]))
    assert "CUDA out of memory" in c.error


def test_clear_error_without_vllm(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(ImportError, match="pip install vllm"):
        make_backend("vllm", "m")
    with pytest.raises(ValueError, match="needs --model"):
        make_backend("vllm", None)
