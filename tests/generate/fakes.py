"""Test doubles: a scripted in-process backend and OpenAI-compatible HTTP servers on 127.0.0.1."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from synthrank.generate.backends.base import Backend, ChatRequest, Completion

_TOPICS = {
    3: "The direct answer to {q} is given here in full detail with the exact facts that a reader needs, "
       "stated plainly in the first sentence and then explained step by step with numbers, names and dates.",
    2: "Many people wonder about {q} while reading about other subjects such as travel plans, cooking habits "
       "and family history; somewhere in this long text a partial hint appears without a clear conclusion.",
    1: "Background on the general subject of {q} covers its history, the vocabulary used by specialists and "
       "several famous debates, yet this overview never says anything that would settle the question itself.",
    0: "Volcanic islands form when magma rises through the ocean floor, cools into basalt and slowly builds "
       "cones that break the surface after thousands of eruptions, creating new land for plants and seabirds.",
}


def passage_for(query: str, grade: int, salt: str = "") -> str:
    text = _TOPICS[grade % 4].format(q=query)
    return f"{text} Extra words {salt or 'here'} keep this passage long enough to pass the validator of the generator."


def query_of(messages: list[dict]) -> str:
    match = re.search(r'Search query: "(.*?)"', messages[-1]["content"], re.S)
    return match.group(1) if match else messages[-1]["content"][:40]


def level_of(messages: list[dict]) -> int | None:
    match = re.search(r"must be: (.*?)\.", messages[-1]["content"])
    names = {"perfectly relevant": 3, "highly relevant": 2, "related": 1, "irrelevant": 0}
    return names.get(match.group(1)) if match else None


def good_answer(request_messages: list[dict]) -> str:
    """What a perfect model would answer to the shipped joint / per-level / judge prompts."""
    content = request_messages[-1]["content"]
    query = query_of(request_messages)
    if "Grade how relevant" in content:
        return "2"
    if "JSON object" in content:
        return json.dumps({str(g): passage_for(query, g) for g in (3, 2, 1, 0)})
    level = level_of(request_messages)
    return passage_for(query, 3 if level is None else level, salt="single")


class ScriptedBackend(Backend):
    """Answers with ``responder(request, call_number)``; counts calls; optional delay per answer."""

    name = "scripted"

    def __init__(self, responder: Callable[[ChatRequest, int], str] | None = None, concurrency: int = 2,
                 delay: float = 0.0, model: str = "fake-model"):
        super().__init__(model, concurrency)
        self.responder = responder or (lambda request, n: good_answer(request.messages))
        self.calls: list[ChatRequest] = []
        self.delay = delay

    def generate(self, requests: Sequence[ChatRequest]) -> Iterator[tuple[int, Completion]]:
        for index in reversed(range(len(requests))):  # out of order on purpose
            request = requests[index]
            self.calls.append(request)
            if self.delay:
                time.sleep(self.delay)
            text = self.responder(request, len(self.calls))
            if isinstance(text, Completion):
                yield index, text
            else:
                yield index, Completion(text=text, tokens_in=100, tokens_out=len(text.split()), seconds=0.01,
                                        finish_reason="stop")


class FaultPlan:
    """Which fault the n-th request gets: a list of modes consumed in order, then ``default``.

    Modes: ``ok``, ``500``, ``503``, ``429``, ``slow`` (answers after ``slow_seconds``),
    ``malformed`` (200 with a broken body), ``drop`` (closes the connection), ``400``, ``401``,
    ``403``, ``404``, ``400-model`` (400 "model 'x' not found"), ``no-choices`` (200 with valid
    JSON but no choice), and ``echo-<status>`` (that status with a body echoing the request's
    bearer token so that it starts 10 characters before character ``echo_cut`` of the body: a
    text cut there keeps the token's first 10). A ``429`` carries ``Retry-After: retry_after``.
    """

    def __init__(self, modes: Sequence[str] = (), default: str = "ok", slow_seconds: float = 3.0,
                 every: dict[int, str] | None = None, echo_cut: int = 300, retry_after: str = "0.05"):
        self.echo_cut = echo_cut
        self.retry_after = retry_after
        self.modes = list(modes)
        self.default = default
        self.slow_seconds = slow_seconds
        self.every = every or {}
        self.count = 0
        self.seen: list[str] = []
        self.lock = threading.Lock()

    def next(self) -> str:
        with self.lock:
            self.count += 1
            if self.modes:
                mode = self.modes.pop(0)
            else:
                mode = next((m for k, m in sorted(self.every.items()) if self.count % k == 0), self.default)
            self.seen.append(mode)
            return mode


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def _make_handler(answer: Callable[[dict], dict], plan: FaultPlan, auth_seen: list, models_auth_seen: list,
                  models: Callable[[], dict] | None = None):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def _send(self, status: int, body: bytes, headers: dict | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path.rstrip("/").endswith("/models"):
                models_auth_seen.append(self.headers.get("Authorization"))
                data = models() if models else {"data": [{"id": "fake-model"}]}
                self._send(200, json.dumps(data).encode())
            else:
                self._send(404, b"{}")

        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            auth_seen.append(self.headers.get("Authorization"))
            mode = plan.next()
            if mode == "drop":
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if mode in {"500", "503", "400", "401", "403", "404"}:
                self._send(int(mode), json.dumps({"error": {"message": f"injected {mode}"}}).encode())
                return
            if mode == "400-model":
                self._send(400, b'{"error": {"message": "model \'nonesuch\' not found, try pulling it first"}}')
                return
            if mode.startswith("echo-"):
                token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                head = '{"error": {"message": "invalid key '
                text = head + "x" * (plan.echo_cut - 10 - len(head)) + token + ' was rejected"}}'
                self._send(int(mode.removeprefix("echo-")), text.encode())
                return
            if mode == "429":
                self._send(429, b'{"error": {"message": "rate limited"}}', {"Retry-After": plan.retry_after})
                return
            if mode == "no-choices":
                self._send(200, b'{"id": "x", "object": "chat.completion", "choices": []}')
                return
            if mode == "malformed":
                self._send(200, b'{"choices": [')
                return
            if mode == "slow":
                time.sleep(plan.slow_seconds)
            try:
                data = answer(body)
            except Exception as error:  # upstream failure in a proxy
                self._send(502, json.dumps({"error": {"message": str(error)}}).encode())
                return
            self._send(200, json.dumps(data).encode())

    return Handler


class FakeOpenAIServer:
    """An OpenAI-compatible chat server on 127.0.0.1 answering like a perfect model, with faults."""

    def __init__(self, plan: FaultPlan | None = None, answer: Callable[[dict], dict] | None = None,
                 models: Callable[[], dict] | None = None):
        self.plan = plan or FaultPlan()
        self.auth_seen: list = []  # the Authorization header of each chat request (None: not sent)
        self.models_auth_seen: list = []  # the same for each GET .../models
        self.bodies: list[dict] = []

        def default_answer(body: dict) -> dict:
            self.bodies.append(body)
            text = good_answer(body["messages"])
            return {"id": "x", "object": "chat.completion", "model": body.get("model"),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 50, "completion_tokens": len(text.split())}}

        self.server = _Server(("127.0.0.1", 0), _make_handler(answer or default_answer, self.plan, self.auth_seen,
                                                                         self.models_auth_seen, models))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> "FakeOpenAIServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


class FaultProxy(FakeOpenAIServer):
    """Forwards chat requests to a real upstream server, injecting faults per the plan."""

    def __init__(self, upstream: str, plan: FaultPlan):
        def forward(body: dict) -> dict:
            request = urllib.request.Request(f"{upstream}/chat/completions", data=json.dumps(body).encode(),
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=300) as response:
                return json.loads(response.read())

        def models() -> dict:
            with urllib.request.urlopen(f"{upstream}/models", timeout=30) as response:
                return json.loads(response.read())

        super().__init__(plan, forward, models)
