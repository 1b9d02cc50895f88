"""The generation loop: work out what is left, ask the backend, validate, commit, retry.

Each query first gets one *joint* request that writes all its levels as JSON (unless
``mode="per-level"``). Passages that fail to parse or validate fall back to *per-level*
requests, one item at a time, until ``max_attempts`` answers have been tried for the item;
then the item is stored as failed with the reasons of its attempts. Every answer is committed
to the store as it arrives, so a run can be killed and resumed at any point.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from synthrank.generate.backends.base import Backend, ChatRequest, Completion
from synthrank.generate.levels import Level
from synthrank.generate.parsing import (
    ParseError, Validator, clean_passage, parse_joint, parse_single, shingles, trim_to_sentence,
)
from synthrank.generate.progress import Progress
from synthrank.generate.prompts import PromptSet
from synthrank.generate.references import Reference
from synthrank.generate.store import ItemKey, RequestRecord, Store

MODES = ("joint", "per-level", "grounded")


@dataclass
class GenerationConfig:
    levels: list[Level]
    per_level: int = 1
    mode: str = "joint"
    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens_per_passage: int = 200
    min_words: int = 30
    max_words: int = 160
    target_words: str = "60 to 100"
    max_attempts: int = 4
    seed: int = 0
    reference_words: int = 120  # grounded mode: words of the reference shown to the model

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.per_level < 1:
            raise ValueError("per_level must be >= 1")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if not 0 < self.min_words <= self.max_words:
            raise ValueError("need 0 < min_words <= max_words")
        if not self.levels:
            raise ValueError("at least one level is needed")
        if self.reference_words < 1:
            raise ValueError("reference_words must be >= 1")

    @property
    def validator(self) -> Validator:
        return Validator(self.min_words, self.max_words)

    @property
    def max_tokens_joint(self) -> int:
        return self.max_tokens_per_passage * len(self.levels) * self.per_level + 32

    def parameters(self) -> dict:
        params = asdict(self)
        params["levels"] = [lv.to_dict() for lv in self.levels]
        if self.mode != "grounded":  # the grounded guides play no part (and fingerprints stay as before)
            params.pop("reference_words")
            for level in params["levels"]:
                level.pop("grounded", None)
        return params

    @property
    def top_grade(self) -> int:
        return max(lv.grade for lv in self.levels)

    def generated_grades(self) -> list[int]:
        """Grades the model writes: all of them, or in grounded mode all but the top one (the
        top-level passage is the real reference)."""
        grades = [lv.grade for lv in self.levels]
        return [g for g in grades if g != self.top_grade] if self.mode == "grounded" else grades

    def level(self, grade: int) -> Level:
        return next(lv for lv in self.levels if lv.grade == grade)


def fingerprint(backend_identity: Mapping, prompt_digest: str, parameters: Mapping) -> str:
    payload = json.dumps({"backend": dict(backend_identity), "prompt": prompt_digest, "parameters": dict(parameters)},
                         sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:20]


def reason_kind(reason: str) -> str:
    """The kind of a recorded failure: its last attempt's message without details in brackets."""
    last = reason.split(" | ")[-1]
    if last.startswith("attempt ") and "): " in last:
        last = last.split("): ", 1)[1]
    return last.split(" (")[0][:120]


def item_id(qid: str, level: int, k: int) -> str:
    """The corpus id of a generated passage: ``<qid>-L<level>-<k>``."""
    return f"{qid}-L{level}-{k}"


def _derive_seed(seed: int, *parts: object) -> int:
    digest = hashlib.sha1("|".join(map(str, (seed,) + parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big") % (2**31 - 1)


class FatalBackendError(RuntimeError):
    """The backend answered with an error that no retry can fix (bad key, unknown model)."""


@dataclass
class _Job:
    kind: str  # "joint" | "level"
    qid: str
    items: list[ItemKey]
    attempt: int  # 1-based attempt number of the (single) item, or of the joint request


@dataclass
class RunSummary:
    fingerprint: str
    output: Path
    queries: int
    expected: int
    already_finished: int
    done: int = 0
    failed: int = 0
    requests: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    seconds: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def passages_per_second(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens_out / self.seconds if self.seconds else 0.0


def prompt_shingles(prompts: PromptSet) -> frozenset[tuple[str, ...]]:
    """Word 6-grams of the templates' fixed wording (placeholders removed): an answer that
    contains one repeats the instructions instead of writing a passage."""
    text = "\n".join(t for t in (prompts.system, prompts.joint, prompts.level, prompts.grounded) if t)
    fixed = re.sub(r"\{\{[^}]*\}\}", "\n", text)
    return frozenset(g for line in fixed.splitlines() for g in shingles(line))


def references_digest(references: Mapping[str, Reference]) -> str:
    payload = json.dumps(sorted((qid, ref.doc_id, ref.text) for qid, ref in references.items()), ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


class Generator:
    """``references`` (grounded mode): per query, the real passage that is its top level."""

    # The kind of a single-item request (``requests.kind`` in the store); subclasses that
    # generate something other than passages (e.g. queries from documents) name their own.
    item_kind = "level"

    def __init__(self, backend: Backend, prompts: PromptSet, config: GenerationConfig,
                 references: Mapping[str, Reference] | None = None):
        if (config.mode == "grounded") != bool(references):
            raise ValueError("grounded mode needs reference passages (and only grounded mode takes them)")
        if config.mode == "grounded" and not prompts.grounded:
            raise ValueError("grounded mode needs a grounded prompt template")
        self.backend = backend
        self.prompts = prompts
        self.config = config
        self.references = dict(references or {})
        parameters = config.parameters()
        if self.references:
            parameters["references"] = references_digest(self.references)
        self.fingerprint = fingerprint(backend.identity(), prompts.digest(), parameters)
        self.examples = [t for ex in prompts.few_shot for texts in ex.passages.values() for t in texts]
        self.instructions = prompt_shingles(prompts)

    def run_config(self) -> dict:
        """What the store and the manifest record about the run (references: for the export)."""
        config = {"backend": self.backend.identity(), "prompt_hash": self.prompts.digest(),
                  "parameters": self.config.parameters(),
                  "prompts": {"system": self.prompts.system, "joint": self.prompts.joint, "level": self.prompts.level,
                              "few_shot_examples": len(self.prompts.few_shot)}}
        if self.references:
            config["prompts"]["grounded"] = self.prompts.grounded
            config["references"] = {qid: ref.to_dict() for qid, ref in self.references.items()}
        return config

    # -- requests --------------------------------------------------------------------------
    def _request(self, job: _Job, query: str) -> ChatRequest:
        c = self.config
        if job.kind == "joint":
            messages = self.prompts.joint_messages(query, c.levels, c.per_level, c.target_words, c.min_words, c.max_words)
            return ChatRequest(messages, max_tokens=c.max_tokens_joint, temperature=c.temperature, top_p=c.top_p,
                               seed=_derive_seed(c.seed, job.qid, "joint", job.attempt))
        (qid, grade, k), = job.items
        if c.mode == "grounded":
            messages = self.prompts.grounded_messages(query, self.references[qid].prompt_text(c.reference_words), c.level(grade), c.top_grade,
                                                      c.target_words)
        else:
            messages = self.prompts.level_messages(query, c.level(grade), c.target_words, c.min_words, c.max_words)
        return ChatRequest(messages, max_tokens=c.max_tokens_per_passage, temperature=c.temperature, top_p=c.top_p,
                           seed=_derive_seed(c.seed, qid, grade, k, job.attempt))

    # -- the loop --------------------------------------------------------------------------
    def run(self, queries: Mapping[str, str], output: str | Path, *, shard: str | None = None,
            retry_failed: bool = False, progress: bool = True, window: int | None = None) -> RunSummary:
        c = self.config
        output = Path(output)
        store = Store.in_dir(output)
        try:
            store.register_run(self.fingerprint, self.run_config(), dict(queries), shard)
            if retry_failed:
                store.forget_failures(self.fingerprint)
            finished = store.finished_keys(self.fingerprint)
            if self.references:
                missing = [qid for qid in queries if qid not in self.references]
                if missing:
                    raise ValueError(f"grounded mode: {len(missing)} queries have no reference passage "
                                     f"(e.g. {', '.join(missing[:3])})")
            grades = c.generated_grades()
            all_items = [(qid, grade, k) for qid in queries for grade in grades for k in range(c.per_level)]
            pending = [key for key in all_items if key not in finished]
            summary = RunSummary(self.fingerprint, output, len(queries), len(all_items), len(all_items) - len(pending))
            by_query: dict[str, list[ItemKey]] = {}
            for key in pending:
                by_query.setdefault(key[0], []).append(key)
            accepted = store.done_texts(self.fingerprint, by_query)
            for qid in by_query:
                if qid in self.references:  # a near-copy of the reference is no new passage
                    accepted.setdefault(qid, []).insert(0, self.references[qid].text)
            queue: deque[_Job] = deque()
            for qid, keys in by_query.items():
                if c.mode == "joint" and len(keys) > 1:
                    queue.append(_Job("joint", qid, keys, 1))
                else:
                    queue.extend(_Job(self.item_kind, qid, [key], 1) for key in keys)
            reasons: dict[ItemKey, list[str]] = {}
            window = window or max(16, 8 * self.backend.concurrency)
            bar = Progress(len(pending), enabled=progress, desc=f"generate [{self.backend.name}]")
            started = time.perf_counter()
            try:
                while queue:
                    chunk = [queue.popleft() for _ in range(min(window, len(queue)))]
                    # Requests of one kind and level share their prompt prefix (system prompt,
                    # few-shot turns): sent together, backends with a prompt cache reuse it.
                    chunk.sort(key=lambda job: (job.kind != "joint", -job.items[0][1]))
                    requests = [self._request(job, queries[job.qid]) for job in chunk]
                    fatal = None
                    for index, completion in self.backend.generate(requests):
                        job = chunk[index]
                        if completion.fatal:
                            # Items stay pending (not failed): once the key or model is fixed,
                            # the next run generates them without --retry-failed.
                            store.commit(self.fingerprint, RequestRecord(
                                job.qid, job.kind, job.items, 0, 0, completion.seconds, completion.error, None), {}, {})
                            summary.requests += 1
                            fatal = completion
                            break
                        done, failed, retry = self._handle(job, queries[job.qid], completion, accepted, reasons)
                        store.commit(self.fingerprint, RequestRecord(
                            job.qid, job.kind, job.items, completion.tokens_in, completion.tokens_out,
                            completion.seconds, completion.error, completion.text), done, failed)
                        queue.extend(retry)
                        summary.requests += 1
                        summary.done += len(done)
                        summary.failed += len(failed)
                        summary.tokens_in += completion.tokens_in
                        summary.tokens_out += completion.tokens_out
                        for reason, _ in failed.values():
                            last = reason_kind(reason)
                            summary.reasons[last] = summary.reasons.get(last, 0) + 1
                        summary.seconds = time.perf_counter() - started
                        bar.update(len(done), len(failed), completion.tokens_out)
                    if fatal is not None:
                        raise FatalBackendError(
                            f"{self.backend.name} backend: {fatal.error}\nstopped at once: retrying cannot fix this "
                            f"error (check the API key, --base-url and --model); {summary.done} passages were "
                            f"written this run, the others are left for the next one")
            finally:
                summary.seconds = time.perf_counter() - started
                bar.close()
            return summary
        finally:
            store.close()

    @staticmethod
    def _last_grade(found: dict[int, list[str]]) -> int | None:
        """The level written last in a joint answer (the one a token limit cuts off)."""
        return list(found)[-1] if found else None

    def _handle(self, job: _Job, query: str, completion: Completion, accepted: dict[str, list[str]],
                reasons: dict[ItemKey, list[str]]):
        c = self.config
        validator = c.validator
        truncated = completion.finish_reason == "length"
        done: dict[ItemKey, tuple[str, int]] = {}
        rejected: dict[ItemKey, str] = {}

        def accept_or_reject(key: ItemKey, text: str) -> None:
            """Validate against the query's passages accepted so far (duplicates across levels)."""
            problem = validator.check(text, query, accepted.get(job.qid, []), self.examples, self.instructions)
            if problem:
                rejected[key] = problem
            else:
                done[key] = (text, job.attempt)
                accepted.setdefault(job.qid, []).append(text)

        if not completion.ok:
            rejected = {key: f"backend error: {completion.error}" for key in job.items}
        elif job.kind == "joint":
            try:
                found = parse_joint(completion.text, c.levels)
            except ParseError as error:
                rejected = {key: str(error) for key in job.items}
            else:
                for key in job.items:
                    _, grade, k = key
                    texts = found.get(grade, [])
                    if k >= len(texts):
                        rejected[key] = f"no passage for level {grade} in the JSON answer"
                        continue
                    text = clean_passage(texts[k])
                    if truncated and grade == self._last_grade(found):
                        text = trim_to_sentence(text)
                    accept_or_reject(key, text)
        else:
            key = job.items[0]
            text = clean_passage(parse_single(completion.text))
            if truncated:
                text = trim_to_sentence(text)
            accept_or_reject(key, text)
        failed, retry = self._settle(job, rejected, completion.ok, reasons)
        return done, failed, retry

    def _settle(self, job: _Job, rejected: dict[ItemKey, str], answered: bool,
                reasons: dict[ItemKey, list[str]]) -> tuple[dict[ItemKey, tuple[str, int]], list[_Job]]:
        """Record why each rejected item failed this attempt: items out of attempts become
        failures (with the reasons of all their attempts), the others are asked again."""
        c = self.config
        failed: dict[ItemKey, tuple[str, int]] = {}
        remaining: list[ItemKey] = []
        for key, reason in rejected.items():
            history = reasons.setdefault(key, [])
            history.append(f"attempt {job.attempt} ({job.kind}): {reason}")
            if job.attempt >= c.max_attempts:
                failed[key] = (" | ".join(history), job.attempt)
                reasons.pop(key, None)
            else:
                remaining.append(key)
        if not remaining:
            retry: list[_Job] = []
        elif not answered and job.kind == "joint":
            # The backend gave no answer at all: ask the same joint question again.
            retry = [_Job("joint", job.qid, remaining, job.attempt + 1)]
        else:
            retry = [_Job(self.item_kind, job.qid, [key], job.attempt + 1) for key in remaining]
        return failed, retry
