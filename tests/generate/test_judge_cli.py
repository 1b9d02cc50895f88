"""``synthrank judge`` logic and both commands through typer's CliRunner (no model needed)."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from synthrank.data import load_beir, load_qrels
from synthrank.generate.cli import generate_command, judge_command, merge_command
from synthrank.generate.judge import agreement, cohen_kappa, judge, parse_grade

from .fakes import FakeOpenAIServer, FaultPlan, ScriptedBackend


def make_app() -> typer.Typer:
    app = typer.Typer()
    app.command("generate")(generate_command)
    app.command("generate-merge")(merge_command)
    app.command("judge")(judge_command)
    return app


@pytest.fixture
def judged_folder(tmp_path):
    folder = tmp_path / "judged"
    (folder / "qrels").mkdir(parents=True)
    (folder / "queries.jsonl").write_text('{"_id": "a", "text": "cats"}\n{"_id": "b", "text": "dogs"}\n')
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}", "text": f"passage {i}"}) + "\n"
                                                 for i in range(4)))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\na\td0\t3\na\td1\t0\nb\td2\t2\nb\td3\t1\n")
    return folder


def test_agreement_math():
    assert parse_grade("Grade: 2.", [0, 1, 2, 3]) == 2
    assert parse_grade("7 then 1", [0, 1, 2, 3]) == 1
    assert parse_grade("none", [0, 1, 2, 3]) is None
    a = agreement([3, 0, 2, 1], [3, 1, None, 0])
    assert a["exact"] == 0.25 and a["binary"] == 0.75 and a["parsed"] == 3
    assert a["exact_of_parsed"] == pytest.approx(1 / 3)
    assert cohen_kappa([0, 1, 0, 1], [0, 1, 0, 1]) == 1.0
    assert cohen_kappa([0, 0, 1, 1], [0, 1, 0, 1]) == 0.0


def test_judge_writes_judgments_summary_and_relabelled_qrels(tmp_path, judged_folder):
    answers = {"passage 0": "3", "passage 1": "1", "passage 2": "The grade is 2", "passage 3": "no idea"}

    def responder(request, n):
        assert request.choices == ["3", "2", "1", "0"] and request.temperature == 0
        return next(v for k, v in answers.items() if k in request.messages[-1]["content"])

    summary = judge(judged_folder, tmp_path / "out", backend_instance=ScriptedBackend(responder), progress=False,
                    relabel=tmp_path / "relabel.tsv", keep_agreeing=tmp_path / "keep.tsv")
    assert summary["pairs"] == 4 and summary["unparsed"] == 1
    assert summary["agreement"]["exact"] == 0.5 and summary["agreement"]["binary"] == 0.75
    assert summary["confusion_label_by_judge"]["0"]["1"] == 1
    lines = (tmp_path / "out" / "judgments.jsonl").read_text().splitlines()
    assert json.loads(lines[0]) == {"query_id": "a", "corpus_id": "d0", "label": 3, "judge": 3, "answer": "3",
                                    "error": None}
    assert load_qrels(tmp_path / "relabel.tsv") == {"a": {"d0": 3, "d1": 1}, "b": {"d2": 2}}
    assert load_qrels(tmp_path / "keep.tsv") == {"a": {"d0": 3}, "b": {"d2": 2}}
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["agreement"]["exact"] == 0.5


def test_judge_sample_is_seeded(tmp_path, judged_folder):
    s1 = judge(judged_folder, tmp_path / "o1", sample=2, seed=3, backend_instance=ScriptedBackend(lambda r, n: "0"),
               progress=False)
    judge(judged_folder, tmp_path / "o2", sample=2, seed=3, backend_instance=ScriptedBackend(lambda r, n: "0"),
          progress=False)
    assert s1["pairs"] == 2
    assert (tmp_path / "o1" / "judgments.jsonl").read_text() == (tmp_path / "o2" / "judgments.jsonl").read_text()


def test_cli_generate_merge_and_judge_over_openai(tmp_path, queries_file, judged_folder, monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-cli-secret")
    runner = CliRunner()
    app = make_app()
    with FakeOpenAIServer(FaultPlan(["500"])) as server:
        common = ["--queries", str(queries_file), "--backend", "openai", "--base-url", server.url,
                  "--api-key-env", "MY_KEY", "--model", "fake-model", "--quiet"]
        for i in range(2):
            result = runner.invoke(app, ["generate", *common, "--output", str(tmp_path / f"s{i}"), "--shard", f"{i}/2"])
            assert result.exit_code == 0, result.output
            assert "sk-cli-secret" not in result.output
        result = runner.invoke(app, ["generate-merge", "--output", str(tmp_path / "all"), str(tmp_path / "s0"),
                                     str(tmp_path / "s1")])
        assert result.exit_code == 0, result.output
        assert "20/20 passages for 5 queries" in result.output
        assert len(load_beir(tmp_path / "all", split="train").corpus) == 20
        result = runner.invoke(app, ["judge", "--pairs", str(judged_folder), "--output", str(tmp_path / "j"),
                                     "--backend", "openai", "--base-url", server.url, "--model", "fake-model",
                                     "--quiet"])
        assert result.exit_code == 0, result.output
        assert "4 pairs judged" in result.output


def test_cli_reports_bad_input_cleanly(tmp_path):
    bad = tmp_path / "q.tsv"
    bad.write_text("no tab\n")
    result = CliRunner().invoke(make_app(), ["generate", "--queries", str(bad), "--output", str(tmp_path / "o")])
    assert result.exit_code == 2 and "q.tsv:1" in result.output
    result = CliRunner().invoke(make_app(), ["generate", "--queries", str(bad), "--output", str(tmp_path / "o"),
                                             "--backend", "nope"])
    assert result.exit_code == 2


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_cli_generate_exits_non_zero_when_nothing_or_too_little_succeeded(tmp_path, queries_file):
    common = ["generate", "--queries", str(queries_file), "--backend", "openai", "--model", "fake-model", "--quiet",
              "--max-retries", "0", "--max-attempts", "1"]
    refused = CliRunner().invoke(make_app(), [*common, "--output", str(tmp_path / "a"),
                                              "--base-url", f"http://127.0.0.1:{_closed_port()}/v1"])
    assert refused.exit_code == 1 and "only 0 of 20 passages" in refused.output and "ConnectError" in refused.output
    with FakeOpenAIServer(FaultPlan(default="401")) as server:
        denied = CliRunner().invoke(make_app(), [*common, "--output", str(tmp_path / "b"), "--base-url", server.url])
    assert denied.exit_code == 1 and "HTTP 401" in denied.output and server.plan.count <= 8  # one window at most
    with FakeOpenAIServer(FaultPlan(every={2: "500"})) as server:  # every second request fails: 10 of 20
        args = [*common, "--output", str(tmp_path / "c"), "--base-url", server.url, "--concurrency", "1"]
        assert CliRunner().invoke(make_app(), [*args, "--min-success", "0.9"]).exit_code == 1
    with FakeOpenAIServer(FaultPlan(every={2: "500"})) as server:
        args = [*common, "--output", str(tmp_path / "d"), "--base-url", server.url, "--concurrency", "1"]
        result = CliRunner().invoke(make_app(), [*args, "--min-success", "0.4"])
    assert result.exit_code == 0, result.output


def test_cli_generate_refuses_another_configurations_export(tmp_path, queries_file):
    common = ["generate", "--queries", str(queries_file), "--backend", "openai", "--model", "fake-model", "--quiet",
              "--output", str(tmp_path / "o"), "--limit", "3"]
    with FakeOpenAIServer() as server:
        assert CliRunner().invoke(make_app(), [*common, "--base-url", server.url]).exit_code == 0
        result = CliRunner().invoke(make_app(), [*common, "--base-url", server.url, "--temperature", "0.2"])
        assert result.exit_code == 2 and "temperature: 0.7 -> 0.2" in result.output
        assert len(load_beir(tmp_path / "o", split="train").corpus) == 12
        result = CliRunner().invoke(make_app(), [*common, "--base-url", server.url, "--temperature", "0.2",
                                                 "--overwrite"])
        assert result.exit_code == 0, result.output


def test_cli_keeps_quotes_of_messages(tmp_path, queries_file, judged_folder):
    result = CliRunner().invoke(make_app(), ["generate", "--queries", str(judged_folder), "--split", "dev",
                                             "--output", str(tmp_path / "o")])
    assert result.exit_code == 2 and "split 'dev'" in result.output
