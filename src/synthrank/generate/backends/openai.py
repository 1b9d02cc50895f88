"""Any OpenAI-compatible chat endpoint (vLLM server, Ollama, llama.cpp server, OpenAI).

Requests run on an asyncio loop in a background thread with at most ``concurrency`` in
flight; answers are handed to the caller as they arrive. 429s, 5xx answers, timeouts and
dropped connections are retried with exponential backoff and jitter (``Retry-After`` is
honoured); other errors are returned at once, and those that no retry can fix (401, 403, 404,
an unknown model) are marked fatal so that the run stops. The API key comes from an environment
variable (``OPENAI_API_KEY`` unless told otherwise), is sent only in the ``Authorization``
header, and is never logged or put in an error message: error texts are redacted (the whole key
and any 8+ character piece of it) before they are cut to length.
"""

from __future__ import annotations

import asyncio
import os
import queue
import random
import re
import threading
import time
from collections.abc import Iterator, Sequence

from synthrank.generate.backends.base import Backend, ChatRequest, Completion

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
FATAL_STATUS = {401, 403, 404}  # wrong key, no access, wrong URL or model: every request would fail alike
# Servers answer an unknown model with 400 too (Ollama, some proxies): recognised by the body.
_UNKNOWN_MODEL = re.compile(r"model.{0,80}(not found|does not exist|not exist|unknown|no such)|"
                            r"(unknown|invalid) model|model_not_found", re.I | re.S)
# A piece of the key this long is redacted wherever it appears (e.g. cut off at the end of a body).
MIN_SECRET_PIECE = 8
_DONE = object()


def redact_secret(text: str, secret: str | None, min_piece: int = MIN_SECRET_PIECE) -> str:
    """``text`` with ``secret`` and every run of ``min_piece`` or more characters copied from it
    replaced by ``***``; a text cut in the middle of the secret thus keeps none of it."""
    if not secret or not text:
        return text
    text = text.replace(secret, "***")
    if len(secret) < min_piece:
        return text
    pieces = {secret[i:i + min_piece] for i in range(len(secret) - min_piece + 1)}
    covered = [False] * len(text)
    for start in range(len(text) - min_piece + 1):
        if text[start:start + min_piece] in pieces:
            covered[start:start + min_piece] = [True] * min_piece
    if not any(covered):
        return text
    out, index = [], 0
    while index < len(text):
        if covered[index]:
            while index < len(text) and covered[index]:
                index += 1
            out.append("***")
        else:
            out.append(text[index])
            index += 1
    return "".join(out)


def is_fatal(status: int, body: str) -> bool:
    """Whether retrying (or sending the next request) cannot help: auth, URL or model errors."""
    return status in FATAL_STATUS or (status in (400, 422) and bool(_UNKNOWN_MODEL.search(body)))


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(self, model: str | None = None, concurrency: int = 8, base_url: str | None = None,
                 api_key_env: str = "OPENAI_API_KEY", timeout: float | None = None, max_retries: int | None = None,
                 backoff: float = 0.5, max_backoff: float = 30.0, send_seed: bool = True, **_ignored):
        try:
            import httpx  # noqa: F401
        except ImportError as error:  # pragma: no cover
            raise ImportError("the openai backend needs httpx: pip install httpx") from error
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1").rstrip("/")
        self._api_key = os.environ.get(api_key_env) or None
        self.api_key_env = api_key_env
        self.timeout = 120.0 if timeout is None else float(timeout)
        self.max_retries = 6 if max_retries is None else int(max_retries)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.send_seed = send_seed
        self.retries = 0  # how many retries this backend made (for reports and tests)
        self._fatal_error: str | None = None  # set by an answer no retry can fix; later requests are not sent
        super().__init__(model or "", concurrency)
        if not self.model:
            self.model = self._first_served_model()

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIBackend(model={self.model!r}, base_url={self.base_url!r}, concurrency={self.concurrency})"

    def identity(self) -> dict:
        return {"backend": self.name, "model": self.model}

    def _headers(self) -> dict:
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _redact(self, text: str) -> str:
        return redact_secret(text, self._api_key)

    def _first_served_model(self) -> str:
        import httpx

        try:
            response = httpx.get(f"{self.base_url}/models", headers=self._headers(), timeout=self.timeout)
            response.raise_for_status()
            models = [m["id"] for m in response.json().get("data", [])]
        except Exception as error:
            raise RuntimeError(self._redact(f"--model not given and {self.base_url}/models could not be read: {error}")) from None
        if not models:
            raise RuntimeError(f"--model not given and {self.base_url}/models lists no model")
        return models[0]

    def payload(self, request: ChatRequest) -> dict:
        body = {"model": self.model, "messages": request.messages, "max_tokens": request.max_tokens,
                "temperature": request.temperature, "top_p": request.top_p}
        if request.stop:
            body["stop"] = request.stop
        if self.send_seed and request.seed is not None:
            body["seed"] = request.seed
        return body

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(float(retry_after), self.max_backoff)
            except ValueError:
                pass
        base = min(self.backoff * (2 ** attempt), self.max_backoff)
        return base * (0.5 + random.random() / 2)

    async def _one(self, client, semaphore: asyncio.Semaphore, request: ChatRequest) -> Completion:
        import httpx

        url = f"{self.base_url}/chat/completions"
        body = self.payload(request)
        last_error = "no attempt made"
        async with semaphore:
            started = time.perf_counter()
            if self._fatal_error is not None:  # a request before this one showed that none can succeed
                return Completion(error=f"not sent after {self._fatal_error}", fatal=True)
            for attempt in range(self.max_retries + 1):
                retry_after = None
                try:
                    response = await client.post(url, json=body)
                except (httpx.TimeoutException, httpx.TransportError) as error:
                    last_error = f"{type(error).__name__}: {self._redact(str(error)) or 'no detail'}"
                else:
                    if response.status_code == 200:
                        try:
                            data = response.json()
                            choice = data["choices"][0]
                            text = choice["message"].get("content") or ""
                            usage = data.get("usage") or {}
                            return Completion(text=text, tokens_in=int(usage.get("prompt_tokens") or 0),
                                              tokens_out=int(usage.get("completion_tokens") or 0),
                                              seconds=time.perf_counter() - started,
                                              finish_reason=choice.get("finish_reason"))
                        except (ValueError, KeyError, IndexError, TypeError) as error:
                            last_error = f"malformed response body ({type(error).__name__})"
                    elif response.status_code in RETRYABLE_STATUS or response.status_code >= 500:
                        retry_after = response.headers.get("retry-after")
                        last_error = f"HTTP {response.status_code}: {self._redact(response.text)[:200]}"
                    else:
                        body = self._redact(response.text)
                        error = f"HTTP {response.status_code}: {body[:300]}"
                        fatal = is_fatal(response.status_code, body)
                        if fatal:
                            self._fatal_error = f"HTTP {response.status_code}"
                        return Completion(error=error, seconds=time.perf_counter() - started, fatal=fatal)
                if attempt < self.max_retries:
                    self.retries += 1
                    await asyncio.sleep(self._delay(attempt, retry_after))
            return Completion(error=f"gave up after {self.max_retries + 1} attempts; last: {last_error}",
                              seconds=time.perf_counter() - started)

    async def _run_all(self, requests: Sequence[ChatRequest], out: queue.Queue, stop: threading.Event) -> None:
        import httpx

        semaphore = asyncio.Semaphore(self.concurrency)
        self._fatal_error = None
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        async with httpx.AsyncClient(headers=self._headers(), timeout=self.timeout, limits=limits) as client:
            async def run(index: int, request: ChatRequest) -> None:
                try:
                    completion = await self._one(client, semaphore, request)
                except Exception as error:  # never lose an item silently
                    completion = Completion(error=self._redact(f"{type(error).__name__}: {error}"))
                if not stop.is_set():
                    out.put((index, completion))

            tasks = [asyncio.create_task(run(i, r)) for i, r in enumerate(requests)]
            while tasks and not stop.is_set():
                done, pending = await asyncio.wait(tasks, timeout=0.2)
                tasks = list(pending)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def generate(self, requests: Sequence[ChatRequest]) -> Iterator[tuple[int, Completion]]:
        out: queue.Queue = queue.Queue()
        stop = threading.Event()

        def worker() -> None:
            try:
                asyncio.run(self._run_all(requests, out, stop))
            except BaseException as error:  # pragma: no cover - reported to the caller below
                out.put(("error", self._redact(f"{type(error).__name__}: {error}")))
            finally:
                out.put(_DONE)

        thread = threading.Thread(target=worker, name="synthrank-openai", daemon=True)
        thread.start()
        seen = set()
        try:
            while True:
                item = out.get()
                if item is _DONE:
                    break
                if item[0] == "error":
                    for index in range(len(requests)):
                        if index not in seen:
                            yield index, Completion(error=item[1])
                            seen.add(index)
                    continue
                seen.add(item[0])
                yield item
        finally:
            stop.set()
            thread.join(timeout=10)
