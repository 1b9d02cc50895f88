"""The openai backend (the real ``openai`` SDK) against an in-process OpenAI-compatible HTTP
server on 127.0.0.1 that injects faults."""

from __future__ import annotations

import json
import logging
import time

import pytest

pytest.importorskip("openai")

from synthrank.data import load_beir  # noqa: E402
from synthrank.generate.api import GenerationShortfallError, generate  # noqa: E402
from synthrank.generate.backends.base import ChatRequest  # noqa: E402
from synthrank.generate.backends.openai import OpenAIBackend, redact_secret  # noqa: E402
from synthrank.generate.runner import FatalBackendError  # noqa: E402

from .fakes import FakeOpenAIServer, FaultPlan  # noqa: E402

MSG = [{"role": "user", "content": 'Search query: "q"\nWrite one passage. Its relevance to the query must be: related. x'}]


def backend(server, **kw):
    kw.setdefault("backoff", 0.01)
    return OpenAIBackend("fake-model", base_url=server.url, **kw)


def test_answers_and_usage_are_read(monkeypatch):
    monkeypatch.setenv("SECRET_VAR", "sk-test-123")
    with FakeOpenAIServer() as server:
        b = backend(server, api_key_env="SECRET_VAR", concurrency=3)
        results = dict(b.generate([ChatRequest(MSG, max_tokens=50, seed=7) for _ in range(5)]))
    assert sorted(results) == list(range(5))
    assert all(c.ok and "Background on the general subject" in c.text and c.tokens_in == 50 for c in results.values())
    assert server.auth_seen == ["Bearer sk-test-123"] * 5
    assert server.bodies[0]["seed"] == 7 and server.bodies[0]["max_tokens"] == 50
    assert "sk-test" not in repr(b)


def test_model_defaults_to_the_first_served_model(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-list-models")
    with FakeOpenAIServer() as server:
        assert OpenAIBackend(None, base_url=server.url).model == "fake-model"
    assert server.models_auth_seen == ["Bearer sk-list-models"]


def test_an_unreadable_model_list_is_an_error_naming_the_url(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    with pytest.raises(RuntimeError, match="--model not given and .*/v1/models could not be read: ConnectError") as info:
        OpenAIBackend(None, base_url=url, max_retries=0)
    assert url in str(info.value) and KEY[:8] not in str(info.value)


def test_without_a_key_no_authorization_header_is_sent(monkeypatch):
    """The SDK wants a key; the backend gives it a placeholder and removes the header. It never
    lets the SDK fall back to OPENAI_API_KEY when api_key_env names another variable."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-of-another-service")
    monkeypatch.delenv("UNSET_KEY_VARIABLE", raising=False)
    with FakeOpenAIServer() as server:
        b = OpenAIBackend(None, base_url=server.url, api_key_env="UNSET_KEY_VARIABLE")
        (_, completion), = list(b.generate([ChatRequest(MSG)]))
    assert b.model == "fake-model" and completion.ok
    assert server.models_auth_seen == [None] and server.auth_seen == [None]


def test_retries_500_429_malformed_and_dropped_connections(caplog, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    plan = FaultPlan(["500", "429", "malformed", "drop", "503"])
    with FakeOpenAIServer(plan) as server, caplog.at_level(logging.DEBUG):
        b = backend(server, concurrency=1)
        results = list(b.generate([ChatRequest(MSG), ChatRequest(MSG)]))
    assert len(results) == 2 and all(c.ok for _, c in results)
    assert b.retries == 5 and plan.count == 7
    # The SDK's debug log of every request and fault was captured, and holds no piece of the key.
    assert any(r.name.startswith("openai") for r in caplog.records)
    assert [KEY[i:i + 8] for i in range(len(KEY) - 7) if KEY[i:i + 8] in caplog.text] == []


def test_a_200_without_a_choice_is_retried():
    plan = FaultPlan(["no-choices"])
    with FakeOpenAIServer(plan) as server:
        b = backend(server)
        (_, completion), = list(b.generate([ChatRequest(MSG)]))
    assert completion.ok and b.retries == 1 and plan.seen == ["no-choices", "ok"]
    with FakeOpenAIServer(FaultPlan(default="no-choices")) as server:
        (_, completion), = list(backend(server, max_retries=1).generate([ChatRequest(MSG)]))
    assert completion.error == "gave up after 2 attempts; last: malformed response body (IndexError)"


def test_backoff_options_set_the_wait_between_retries():
    """Why the backend retries by itself instead of through the SDK's max_retries: the SDK's wait
    is fixed (0.5 s doubling, jittered by up to -25%, so >= 2.6 s for these three 500s; and it
    obeys a Retry-After of up to 60 s), while ``backoff`` and ``max_backoff`` must set it."""
    plan = FaultPlan(["500", "500", "500", "429"], retry_after="30")
    with FakeOpenAIServer(plan) as server:
        b = backend(server, backoff=0.01, max_backoff=0.05)
        started = time.perf_counter()
        (_, completion), = list(b.generate([ChatRequest(MSG)]))
        elapsed = time.perf_counter() - started
    assert completion.ok and b.retries == 4 and plan.seen == ["500", "500", "500", "429", "ok"]
    assert elapsed < 2.5  # waits of at most 0.01 + 0.02 + 0.04 + 0.05 s (the Retry-After cut to max_backoff)


def test_slow_answers_time_out_and_are_retried():
    plan = FaultPlan(["slow"], slow_seconds=1.5)
    with FakeOpenAIServer(plan) as server:
        b = backend(server, timeout=0.5)
        (index, completion), = list(b.generate([ChatRequest(MSG)]))
    assert completion.ok and b.retries == 1 and plan.seen == ["slow", "ok"]


def test_gives_up_after_max_retries_and_does_not_retry_400(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-should-not-leak")
    with FakeOpenAIServer(FaultPlan(default="500")) as server:
        (_, completion), = list(backend(server, max_retries=2).generate([ChatRequest(MSG)]))
    assert not completion.ok and "gave up after 3 attempts" in completion.error and "HTTP 500" in completion.error
    assert server.plan.count == 3
    with FakeOpenAIServer(FaultPlan(["400"])) as server:
        b = backend(server)
        (_, completion), = list(b.generate([ChatRequest(MSG)]))
    assert completion.error.startswith("HTTP 400") and b.retries == 0
    assert "sk-should-not-leak" not in completion.error


def test_concurrency_is_bounded():
    import threading
    import time

    active, peak, lock = [0], [0], threading.Lock()
    from .fakes import good_answer

    def answer(body):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
        return {"choices": [{"message": {"content": good_answer(body["messages"])}, "finish_reason": "stop"}]}

    with FakeOpenAIServer(answer=answer) as server:
        results = list(backend(server, concurrency=3).generate([ChatRequest(MSG) for _ in range(12)]))
    assert len(results) == 12 and peak[0] == 3


def test_generation_run_survives_faults_without_losing_items(tmp_path, queries_file):
    plan = FaultPlan(every={3: "500", 5: "429", 7: "slow", 11: "drop"}, slow_seconds=1.0)
    with FakeOpenAIServer(plan) as server:
        b = backend(server, concurrency=4, timeout=0.5)
        result = generate(queries_file, tmp_path / "out", backend_instance=b, progress=False)
    ds = load_beir(tmp_path / "out", split="train")
    assert len(ds.corpus) == 20 and result.manifest["counts"]["failed"] == 0
    assert b.retries >= 1 and {"500", "429", "slow"} & set(plan.seen)
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["backend"] == "openai"


KEY = "sk-live-Zq8Lr2Vx9Tb4Mw7"  # 23 characters


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pieces_of_key_in(folder, length=8) -> list[str]:
    """Every 8-character piece of KEY found in any file of ``folder`` (store, WAL, manifest)."""
    blob = b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())
    return [KEY[i:i + length] for i in range(len(KEY) - length + 1) if KEY[i:i + length].encode() in blob]


def test_redaction_removes_the_key_and_any_long_piece_of_it():
    assert redact_secret(f"a {KEY} b", KEY) == "a *** b"
    assert redact_secret(f"cut here: {KEY[:12]}", KEY) == "cut here: ***"
    assert redact_secret(f"{KEY[5:14]} and {KEY[:7]}", KEY) == f"*** and {KEY[:7]}"  # 7 characters stay
    assert redact_secret("nothing secret", KEY) == "nothing secret" and redact_secret("x", None) == "x"


@pytest.mark.parametrize("status, cut, error", [("500", 200, GenerationShortfallError), ("401", 300, FatalBackendError)])
def test_a_key_echoed_across_the_cut_leaks_nowhere(tmp_path, queries_file, monkeypatch, status, cut, error):
    """The server echoes the key so that it straddles the point where the error text is cut
    (200 characters for retried errors, 300 for the others)."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    out = tmp_path / "out"
    with FakeOpenAIServer(FaultPlan(default=f"echo-{status}", echo_cut=cut)) as server:
        with pytest.raises(error):
            generate(queries_file, out, backend_instance=backend(server, max_retries=0), progress=False, limit=2,
                     max_attempts=1)
        assert server.auth_seen[0] == f"Bearer {KEY}"
    assert (out / "generate.sqlite").is_file()
    assert _pieces_of_key_in(out) == []
    errors = [row[0] for row in __import__("sqlite3").connect(out / "generate.sqlite").execute(
        "SELECT error FROM requests")]
    assert errors and all(f"HTTP {status}" in e and "***" in e for e in errors)


@pytest.mark.parametrize("mode", ["401", "403", "404", "400-model"])
def test_errors_no_retry_can_fix_stop_the_run_at_once(tmp_path, queries_file, mode):
    with FakeOpenAIServer(FaultPlan(default=mode)) as server:
        b = backend(server, concurrency=1)
        with pytest.raises(FatalBackendError, match=f"(?s)HTTP {mode[:3]}.*retrying cannot fix"):
            generate(queries_file, tmp_path / "out", backend_instance=b, progress=False)
    assert server.plan.count == 1 and b.retries == 0  # not 5 queries x 4 attempts
    from synthrank.generate.store import Store

    with Store.in_dir(tmp_path / "out") as store:  # nothing recorded as failed: a fixed key resumes cleanly
        assert list(store.items(store.fingerprints()[0])) == []
    with FakeOpenAIServer() as server:
        result = generate(queries_file, tmp_path / "out", backend_instance=backend(server), progress=False)
    assert result.manifest["counts"]["passages"] == 20
