"""Any OpenAI-compatible chat endpoint (vLLM server, Ollama, llama.cpp server, OpenAI).

Requests go through the official ``openai`` SDK's ``AsyncOpenAI`` client on an asyncio loop in a
background thread, with at most ``concurrency`` in flight; answers are handed to the caller as
they arrive. The SDK sends the requests, applies ``timeout`` and turns answers into typed
objects and exceptions. Retries stay here (the SDK is built with ``max_retries=0``): 429s, 5xx
answers, timeouts, dropped connections and 200s whose body is not a chat completion are retried
with exponential backoff and jitter (``Retry-After`` is honoured up to ``max_backoff``); other
errors are returned at once, and those that no retry can fix (401, 403, 404, an unknown model)
are marked fatal so that the run stops. Why our own loop: the SDK's backoff is fixed (0.5 s
doubling to 8 s, ``Retry-After`` up to 60 s) with no public setting, so the ``backoff`` and
``max_backoff`` options would do nothing; it does not retry a malformed 200; and a request that
fails after its retries does not say how many it took (``retries`` counts them) -- see
``test_backoff_options_set_the_wait_between_retries`` and
``test_retries_500_429_malformed_and_dropped_connections``.

The API key comes from an environment variable (``OPENAI_API_KEY`` unless told otherwise), is
given to the SDK explicitly (so the SDK never picks up ``OPENAI_API_KEY`` when ``api_key_env``
names another variable), is sent only in the ``Authorization`` header (no header at all when
the variable is unset), and is never logged or put in an error message: error texts are
redacted (the whole key and any 8+ character piece of it) before they are cut to length.
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
from dataclasses import dataclass

from synthrank.generate.backends.base import Backend, ChatRequest, Completion

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
FATAL_STATUS = {401, 403, 404}  # wrong key, no access, wrong URL or model: every request would fail alike
# Servers answer an unknown model with 400 too (Ollama, some proxies): recognised by the body.
_UNKNOWN_MODEL = re.compile(r"model.{0,80}(not found|does not exist|not exist|unknown|no such)|"
                            r"(unknown|invalid) model|model_not_found", re.I | re.S)
# A piece of the key this long is redacted wherever it appears (e.g. cut off at the end of a body).
MIN_SECRET_PIECE = 8
_DONE = object()
# The SDK refuses to build a client without a key; keyless servers (a local vLLM, Ollama) get this
# placeholder, and the Authorization header is then removed from every request (see _no_auth).
_NO_KEY = "no-key"


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


@dataclass
class _Retryable:
    """An attempt that failed in a way a later attempt may not: what went wrong, and the
    server's ``Retry-After`` if it sent one."""

    error: str
    retry_after: str | None = None


def _import_sdk():
    try:
        import openai
    except ImportError as error:  # pragma: no cover - the generate extra installs it
        raise ImportError("the openai backend needs the openai SDK: pip install openai "
                          "(or pip install -e \".[generate]\")") from error
    return openai


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(self, model: str | None = None, concurrency: int = 8, base_url: str | None = None,
                 api_key_env: str = "OPENAI_API_KEY", timeout: float | None = None, max_retries: int | None = None,
                 backoff: float = 0.5, max_backoff: float = 30.0, send_seed: bool = True):
        _import_sdk()
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

    def _client_arguments(self, max_retries: int = 0) -> dict:
        """Keyword arguments of ``openai.OpenAI`` / ``openai.AsyncOpenAI``. The key is always
        passed: left out, the SDK would read ``OPENAI_API_KEY`` whatever ``api_key_env`` says.
        ``max_retries=0`` for chat requests: they are retried by :meth:`_one` (module docstring)."""
        return {"api_key": self._api_key or _NO_KEY, "base_url": self.base_url, "timeout": self.timeout,
                "max_retries": max_retries}

    def _no_auth(self) -> dict:
        """Per-request headers: without a key, drop the Authorization header the SDK would send
        with the placeholder (``omit`` is the SDK's way to remove a default header)."""
        return {} if self._api_key else {"Authorization": _import_sdk().omit}

    def _redact(self, text: str) -> str:
        return redact_secret(text, self._api_key)

    def _describe(self, error: BaseException) -> str:
        """``Type: message`` of the transport error under an SDK error (``ConnectError: All
        connection attempts failed`` says more than the SDK's ``Connection error.``), redacted."""
        error = error.__cause__ or error
        return self._redact(f"{type(error).__name__}: {error or 'no detail'}")

    def _first_served_model(self) -> str:
        openai = _import_sdk()
        try:
            # A couple of the SDK's own retries: this one call needs no backoff of ours, and a
            # wrong URL should fail within seconds.
            with openai.OpenAI(**self._client_arguments(max_retries=min(2, self.max_retries))) as client:
                models = [m.id for m in client.models.list(extra_headers=self._no_auth()).data or []]
        except Exception as error:
            raise RuntimeError(f"--model not given and {self.base_url}/models could not be read: "
                               f"{self._describe(error)}") from None
        if not models:
            raise RuntimeError(f"--model not given and {self.base_url}/models lists no model")
        return models[0]

    def payload(self, request: ChatRequest) -> dict:
        """The chat-completions arguments (and JSON body) of ``request``."""
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

    def _status_outcome(self, status: int, body: str, retry_after: str | None) -> Completion | _Retryable:
        """What an HTTP error answer means: retry it, or an error (fatal when no retry can fix it).
        The body is redacted before it is cut, so a key cut in half leaves no piece behind."""
        body = self._redact(body)
        if status in RETRYABLE_STATUS or status >= 500:
            return _Retryable(f"HTTP {status}: {body[:200]}", retry_after)
        fatal = is_fatal(status, body)
        if fatal:
            self._fatal_error = f"HTTP {status}"
        return Completion(error=f"HTTP {status}: {body[:300]}", fatal=fatal)

    @staticmethod
    def _read_completion(response) -> Completion:
        """A Completion from the SDK's ChatCompletion; raises AttributeError, IndexError or
        TypeError when the body lacks a choice (the SDK does not validate answers)."""
        choice = response.choices[0]
        usage = response.usage
        return Completion(text=choice.message.content or "",
                          tokens_in=int(getattr(usage, "prompt_tokens", None) or 0),
                          tokens_out=int(getattr(usage, "completion_tokens", None) or 0),
                          finish_reason=choice.finish_reason)

    async def _attempt(self, client, body: dict) -> Completion | _Retryable:
        """One request through the SDK (which makes no retries of its own)."""
        openai = _import_sdk()
        try:
            response = await client.chat.completions.create(**body, extra_headers=self._no_auth())
        except openai.APIStatusError as error:
            return self._status_outcome(error.status_code, error.response.text, error.response.headers.get("retry-after"))
        except openai.APIConnectionError as error:  # timeouts (APITimeoutError) and dropped connections
            return _Retryable(self._describe(error))
        except ValueError as error:  # a 200 whose body is not JSON: the SDK raises json's decode error
            return _Retryable(f"malformed response body ({type(error).__name__})")
        try:
            return self._read_completion(response)
        except (AttributeError, IndexError, TypeError) as error:
            return _Retryable(f"malformed response body ({type(error).__name__})")

    async def _one(self, client, semaphore: asyncio.Semaphore, request: ChatRequest) -> Completion:
        body = self.payload(request)
        last_error = "no attempt made"
        async with semaphore:
            started = time.perf_counter()
            if self._fatal_error is not None:  # a request before this one showed that none can succeed
                return Completion(error=f"not sent after {self._fatal_error}", fatal=True)
            for attempt in range(self.max_retries + 1):
                outcome = await self._attempt(client, body)
                if isinstance(outcome, Completion):
                    outcome.seconds = time.perf_counter() - started
                    return outcome
                last_error = outcome.error
                if attempt < self.max_retries:
                    self.retries += 1
                    await asyncio.sleep(self._delay(attempt, outcome.retry_after))
            return Completion(error=f"gave up after {self.max_retries + 1} attempts; last: {last_error}",
                              seconds=time.perf_counter() - started)

    async def _run_all(self, requests: Sequence[ChatRequest], out: queue.Queue, stop: threading.Event) -> None:
        openai = _import_sdk()
        semaphore = asyncio.Semaphore(self.concurrency)  # the SDK's connection pool allows far more
        self._fatal_error = None
        async with openai.AsyncOpenAI(**self._client_arguments()) as client:
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
