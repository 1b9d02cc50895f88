"""End-to-end tests with the bundled SmolLM2 model: kill-and-resume, a real OpenAI-compatible
server on loopback behind a fault-injecting proxy, and the judge. Marked slow (they run in CI)."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from synthrank.data import load_beir

from .conftest import REPO, data_dir
from .fakes import FaultPlan, FaultProxy

pytestmark = pytest.mark.slow

llama_cpp = pytest.importorskip("llama_cpp")


def _bundled():
    from synthrank.generate.bundled import BundledModelMissing, bundled_generator_path

    try:
        return bundled_generator_path()
    except BundledModelMissing as error:
        pytest.skip(str(error))


def _queries(tmp_path: Path, n: int) -> Path:
    """n real MS MARCO dev queries when the shared data is there, else a few written here."""
    source = data_dir() / "msmarco-dev-small" / "queries.jsonl"
    lines = source.read_text().splitlines()[:n] if source.is_file() else [
        json.dumps({"_id": str(i), "text": t}) for i, t in enumerate(
            ["how long to boil an egg", "what is the capital of australia", "what causes thunder"][:n])]
    path = tmp_path / "queries.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _store_rows(out: Path):
    con = sqlite3.connect(f"file:{out / 'generate.sqlite'}?mode=ro", uri=True)
    try:
        items = con.execute("SELECT qid, level, k, status, text, request_id, session_id FROM items").fetchall()
        requests = con.execute("SELECT session_id, items FROM requests").fetchall()
    finally:
        con.close()
    return items, requests


def test_sigkill_midway_then_rerun_does_every_item_exactly_once(tmp_path):
    _bundled()
    queries = _queries(tmp_path, 3)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "synthrank.generate", "generate", "--queries", str(queries), "--output", str(out),
           "--max-tokens", "120", "--max-attempts", "2", "--threads", "2", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    killed_with = 0
    try:
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
            if (out / "generate.sqlite").is_file():
                try:
                    items, _ = _store_rows(out)
                except sqlite3.OperationalError:
                    continue
                if len(items) >= 1:
                    killed_with = len(items)
                    proc.send_signal(signal.SIGKILL)
                    break
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, f"run ended on its own before any kill: {proc.stdout.read()!r}"
    before, _ = _store_rows(out)
    assert 1 <= len(before) < 12 and len(before) >= killed_with
    assert not (out / "corpus.jsonl").exists()  # killed before the export

    rerun = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    after, requests = _store_rows(out)
    keys = [(q, lv, k) for q, lv, k, *_ in after]
    assert len(keys) == len(set(keys)) == 12  # every item finished, none twice
    by_key = {(q, lv, k): row for q, lv, k, *row in after}
    for q, lv, k, status, text, request_id, session_id in before:  # earlier results untouched
        assert by_key[(q, lv, k)] == [status, text, request_id, session_id]
    first_session = {row[6] for row in before}
    rerun_items = {tuple(item) for session, items in requests if session not in first_session
                   for item in json.loads(items)}
    assert not rerun_items & {(q, lv, k) for q, lv, k, *_ in before}  # nothing done was asked again
    ds = load_beir(out, split="train")
    manifest = json.loads((out / "manifest.json").read_text())
    counts = manifest["counts"]
    assert len(ds.corpus) == counts["passages"] and counts["passages"] + counts["failed"] == 12
    assert counts["missing"] == 0 and manifest["sessions"] == 2
    assert all(f["reason"] for f in manifest["failures"])
    assert manifest["model"] == "SmolLM2-135M-Instruct-Q4_1-as-Q8_0" and manifest["backend"] == "llama-cpp"
    assert all(30 <= len(t.split()) <= 200 for t in ds.corpus.texts)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_openai_backend_against_llama_cpp_server_behind_fault_proxy(tmp_path):
    pytest.importorskip("uvicorn")
    pytest.importorskip("openai")
    model = _bundled()
    port = _free_port()
    log = (tmp_path / "server.log").open("wb")  # a pipe would fill up with llama.cpp's logging and block it
    server = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1", "--port", str(port),
         "--n_ctx", "2048", "--n_threads", "2", "--model_alias", "smollm2"],
        stdout=log, stderr=subprocess.STDOUT)
    upstream = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(f"{upstream}/models", timeout=2).read()
                break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    pytest.fail(f"llama-cpp server did not start: {(tmp_path / 'server.log').read_text()[-2000:]!r}")
                time.sleep(0.5)
        from synthrank.generate.api import generate
        from synthrank.generate.backends.openai import OpenAIBackend

        plan = FaultPlan(["500", "429", "slow", "503"], every={4: "500", 5: "429", 7: "slow"}, slow_seconds=2.0)
        with FaultProxy(upstream, plan) as proxy:
            backend = OpenAIBackend(None, base_url=proxy.url, concurrency=2, timeout=120, backoff=0.05)
            assert backend.model == "smollm2"
            result = generate(_queries(tmp_path, 2), tmp_path / "out", backend_instance=backend, mode="per-level",
                              max_tokens_per_passage=120, max_attempts=2, progress=False)
        counts = result.manifest["counts"]
        assert counts["passages"] + counts["failed"] == 8 and counts["missing"] == 0
        assert counts["passages"] >= 2
        assert not any("backend error" in f["reason"] for f in result.manifest["failures"])  # faults all survived
        assert {"500", "429", "slow", "503"} <= set(plan.seen) and backend.retries >= 4
        assert len(load_beir(tmp_path / "out", split="train").corpus) == counts["passages"]
        assert result.manifest["tokens_out"] > 0
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def test_judge_with_the_bundled_model_on_trec_dl_pairs(tmp_path):
    _bundled()
    folder = data_dir() / "trec-dl-2019"
    if not (folder / "qrels" / "test.tsv").is_file():
        pytest.skip("trec-dl-2019 not found (set SYNTHRANK_DATA_DIR)")
    from synthrank.generate.judge import judge

    summary = judge(folder, tmp_path / "j", sample=8, seed=0, progress=False, backend_options={"threads": 2})
    assert summary["pairs"] == 8 and summary["unparsed"] == 0  # grammar-constrained: always a grade
    assert 0.0 <= summary["agreement"]["exact"] <= 1.0
    rows = [json.loads(line) for line in (tmp_path / "j" / "judgments.jsonl").read_text().splitlines()]
    assert all(r["judge"] in (0, 1, 2, 3) and r["label"] in (0, 1, 2, 3) for r in rows)


def test_transformers_backend_loads_the_bundled_gguf_and_batches():
    pytest.importorskip("gguf")
    pytest.importorskip("transformers")
    _bundled()
    from synthrank.generate.backends.base import ChatRequest
    from synthrank.generate.backends.transformers import TransformersBackend

    backend = TransformersBackend(None, concurrency=3, threads=2)
    requests = [ChatRequest([{"role": "user", "content": f"Name a color. Request {i}."}], max_tokens=6,
                            temperature=0.0) for i in range(3)]
    requests.append(ChatRequest([{"role": "user", "content": "Is the sky blue? Answer 0 for no, 1 for yes."}],
                                max_tokens=2, temperature=0.0, choices=["0", "1"]))
    out = dict(backend.generate(requests))
    assert sorted(out) == [0, 1, 2, 3] and all(c.ok for c in out.values())
    assert all(0 < out[i].tokens_out <= 6 and out[i].text.strip() for i in range(3))
    assert out[3].text in {"0", "1"} and out[3].tokens_out == 1
    assert backend.identity() == {"backend": "transformers", "model": "SmolLM2-135M-Instruct-Q4_1"}
