"""The vllm backend: engine arguments, streaming through the engine, and the real vLLM package.

The streaming tests drive the backend with a scripted engine that has the two methods the
backend uses (``add_request``/``step``, the interface of ``vllm.LLMEngine``) and checks what the
backend does with them: how many requests are in flight, when answers reach the caller, that
each answer goes back to its own request. The tests marked ``vllm`` import the real package.
"""

from __future__ import annotations

import importlib.util
import sys
import tomllib
import types
from pathlib import Path

import pytest

from synthrank.generate.backends import make_backend
from synthrank.generate.backends.base import ChatRequest
from synthrank.generate.backends.options import VLLMOptions, validate_backend_options
from synthrank.generate.backends.vllm import VLLMBackend

REPO = Path(__file__).resolve().parents[2]
HAS_VLLM = importlib.util.find_spec("vllm") is not None


def paper_backend_options() -> dict:
    config = tomllib.loads((REPO / "configs" / "paper.toml").read_text())
    (job,) = [g for g in config["generate"] if g["backend"] == "vllm"]
    return job["backend_options"]


class _Tokenizer:
    """Chat template: the contents joined; token ids: the characters' code points."""

    def apply_chat_template(self, messages, add_generation_prompt, tokenize):
        assert add_generation_prompt and not tokenize
        return "|".join(m["content"] for m in messages)

    def encode(self, text, add_special_tokens):
        return [ord(c) for c in text]


class _ScriptedEngine:
    """Request ``i`` needs ``steps(i)`` engine steps; records what the backend did."""

    def __init__(self, steps):
        self.steps_needed = steps
        self.running: dict[str, dict] = {}
        self.added: list[str] = []
        self.max_in_flight = 0
        self.aborted: list[str] = []

    def add_request(self, request_id, prompt, params):
        assert isinstance(request_id, str)
        text = "".join(chr(t) for t in prompt["prompt_token_ids"])
        self.running[request_id] = {"left": self.steps_needed(text), "prompt": prompt["prompt_token_ids"],
                                    "text": text}
        self.added.append(request_id)
        self.max_in_flight = max(self.max_in_flight, len(self.running))

    def step(self):
        finished = []
        for request_id, state in list(self.running.items()):
            state["left"] -= 1
            if state["left"] <= 0:
                del self.running[request_id]
                best = types.SimpleNamespace(text=f"answer to {state['text']}", token_ids=[1] * len(state["text"]),
                                             finish_reason="stop")
                finished.append(types.SimpleNamespace(request_id=request_id, finished=True, outputs=[best],
                                                      prompt_token_ids=state["prompt"]))
        # an unfinished output, as vLLM returns with other output kinds: must be ignored
        for request_id in self.running:
            finished.append(types.SimpleNamespace(request_id=request_id, finished=False, outputs=[], prompt_token_ids=[]))
        return finished

    def abort_request(self, request_ids):
        self.aborted.extend(request_ids)
        for request_id in request_ids:
            self.running.pop(request_id, None)


class _LLM:
    def __init__(self, engine):
        self.llm_engine = engine

    def get_tokenizer(self):
        return _Tokenizer()


def _backend(engine, concurrency, monkeypatch):
    backend = VLLMBackend("org/model", concurrency=concurrency, engine=_LLM(engine))
    monkeypatch.setattr(backend, "sampling_params", lambda request: ("params", request.max_tokens))
    return backend


def _requests(n):
    return [ChatRequest([{"role": "user", "content": f"q{i}"}], max_tokens=8) for i in range(n)]


def test_answers_stream_out_as_they_finish_with_at_most_concurrency_in_flight(monkeypatch):
    # q0 takes 6 steps, the others 1: q1..q9 must not wait for q0
    engine = _ScriptedEngine(lambda text: 6 if text == "q0" else 1)
    backend = _backend(engine, 3, monkeypatch)
    stream = backend.generate(_requests(10))
    first_index, first = next(stream)
    assert first_index in (1, 2) and first.text == f"answer to q{first_index}"
    assert len(engine.added) == 3  # the first answer came back before the rest were even submitted
    rest = dict(stream)
    results = {first_index: first, **rest}
    assert sorted(results) == list(range(10))
    assert all(results[i].text == f"answer to q{i}" for i in range(10))  # each answer to its own request
    assert results[3].tokens_in == 2 and results[3].tokens_out == 2
    assert engine.max_in_flight == 3
    assert list(results)[-1] == 0  # the slow one came last, the others did not wait for it


def test_a_request_the_engine_refuses_fails_alone(monkeypatch):
    engine = _ScriptedEngine(lambda text: 1)
    original = engine.add_request

    def refuse_long(request_id, prompt, params):
        if len(prompt["prompt_token_ids"]) > 2:
            raise ValueError("prompt longer than max_model_len")
        original(request_id, prompt, params)

    engine.add_request = refuse_long
    requests = _requests(2) + [ChatRequest([{"role": "user", "content": "long prompt"}])]
    out = dict(_backend(engine, 8, monkeypatch).generate(requests))
    assert out[0].ok and out[1].ok
    assert "max_model_len" in out[2].error


def test_an_engine_failure_fails_the_requests_in_flight_and_aborts_them(monkeypatch):
    engine = _ScriptedEngine(lambda text: 3)
    steps = {"n": 0}
    original = engine.step

    def step():
        steps["n"] += 1
        if steps["n"] == 2:
            raise RuntimeError("CUDA out of memory")
        return original()

    engine.step = step
    out = dict(_backend(engine, 2, monkeypatch).generate(_requests(4)))
    assert "CUDA out of memory" in out[0].error and "CUDA out of memory" in out[1].error
    assert out[2].ok and out[3].ok  # the next requests run on
    assert len(engine.aborted) == 2


def test_stopping_early_aborts_what_is_still_running(monkeypatch):
    engine = _ScriptedEngine(lambda text: 1 if text == "q0" else 50)
    stream = _backend(engine, 4, monkeypatch).generate(_requests(6))
    assert next(stream)[0] == 0
    stream.close()
    assert sorted(engine.aborted) == sorted(engine.added[1:])
    assert not engine.running


def test_paper_config_options_reach_the_engine(monkeypatch):
    """What configs/paper.toml says is what vllm.LLM receives (the module is replaced so that
    the constructor's arguments can be read; the next test checks them against real vLLM)."""
    received = {}
    module = types.ModuleType("vllm")
    module.LLM = lambda **kwargs: received.update(kwargs) or object()
    monkeypatch.setitem(sys.modules, "vllm", module)
    options = paper_backend_options()
    backend = make_backend("vllm", "meta-llama/Llama-3.3-70B-Instruct", concurrency=256, **options)
    assert received["model"] == "meta-llama/Llama-3.3-70B-Instruct"
    assert received["tensor_parallel_size"] == options["tensor_parallel_size"] == 4
    for key, value in options.items():
        assert received[key] == value, key
    assert received["enable_prefix_caching"] is True
    assert backend.concurrency == 256


def test_prefix_caching_is_on_unless_turned_off():
    assert VLLMOptions().engine_arguments("m")["enable_prefix_caching"] is True
    assert VLLMOptions(enable_prefix_caching=False).engine_arguments("m")["enable_prefix_caching"] is False


def test_misspelt_engine_option_is_an_error_naming_it():
    with pytest.raises(ValueError, match="tensor_paralel_size: unknown option of the vllm backend"):
        make_backend("vllm", "m", tensor_paralel_size=4)
    with pytest.raises(ValueError, match="external_launcher"):
        validate_backend_options("vllm", {"data_parallel_size": 2})


def test_clear_error_without_vllm(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(ImportError, match="pip install vllm"):
        make_backend("vllm", "m")
    with pytest.raises(ValueError, match="needs --model"):
        make_backend("vllm", None)


@pytest.mark.skipif(not HAS_VLLM, reason="vllm is not installed")
def test_engine_arguments_are_accepted_by_real_vllm(tiny_model_dir):
    """Every argument built from paper.toml is a field of the installed vLLM's EngineArgs, and
    EngineArgs takes them (a renamed argument in a new vLLM fails here, not on the cluster).
    A local model folder: EngineArgs reads the model's config, and tests make no downloads."""
    import dataclasses

    from vllm.engine.arg_utils import EngineArgs

    arguments = validate_backend_options("vllm", paper_backend_options()).engine_arguments(str(tiny_model_dir))
    fields = {f.name for f in dataclasses.fields(EngineArgs)}
    assert set(arguments) <= fields, set(arguments) - fields
    engine_args = EngineArgs(**arguments)
    assert engine_args.tensor_parallel_size == 4 and engine_args.enable_prefix_caching is True


@pytest.mark.skipif(not HAS_VLLM, reason="vllm is not installed")
def test_sampling_params_are_real_vllm_params():
    from vllm.sampling_params import RequestOutputKind, SamplingParams

    backend = VLLMBackend("org/model", engine=_LLM(_ScriptedEngine(lambda text: 1)))
    backend._vllm = None
    params = backend.sampling_params(ChatRequest([{"role": "user", "content": "x"}], max_tokens=64, temperature=0.5,
                                                 top_p=0.9, seed=3, stop=["\n\n"], choices=["0", "1", "2", "3"]))
    assert isinstance(params, SamplingParams)
    assert (params.max_tokens, params.temperature, params.top_p, params.seed, params.top_k) == (64, 0.5, 0.9, 3, 40)
    assert params.stop == ["\n\n"]
    assert params.output_kind == RequestOutputKind.FINAL_ONLY
    constraint = getattr(params, "structured_outputs", None) or getattr(params, "guided_decoding", None)
    assert constraint is not None and constraint.choice == ["0", "1", "2", "3"]


def _gpu_available() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not HAS_VLLM or not _gpu_available(), reason="needs vllm and a GPU")
def test_real_vllm_generates_with_the_backend(tmp_path):
    """The backend on a real engine (the bundled SmolLM2 GGUF; vLLM reads GGUF files)."""
    from synthrank.generate.bundled import bundled_generator_path

    path = bundled_generator_path()
    backend = make_backend("vllm", str(path), concurrency=4, max_model_len=2048, gpu_memory_utilization=0.3,
                           enforce_eager=True)
    requests = [ChatRequest([{"role": "user", "content": f"Write one sentence about the number {i}."}],
                            max_tokens=32, temperature=0.0) for i in range(8)]
    out = dict(backend.generate(requests))
    assert sorted(out) == list(range(8))
    assert all(c.ok and c.tokens_out > 0 and c.text for c in out.values())
    graded = dict(backend.generate([ChatRequest([{"role": "user", "content": "Grade 0-3:"}], max_tokens=2,
                                                choices=["0", "1", "2", "3"])]))
    assert graded[0].text in {"0", "1", "2", "3"}
