"""Queries written from documents: the generation step of ``synthrank adapt``.

The LLM reads one document and writes a query that the document answers, in the style of the
collection's users (a phrase such as "a scientific claim" in the prompt, plus optional few-shot
``{"document", "query"}`` examples). It runs on the same loop and store as ``synthrank
generate``: :class:`QueryGenerator` is a :class:`~synthrank.generate.runner.Generator` whose
items are ``(document id, QUERY_GRADE, k)`` -- the k-th query written for a document -- so
every answer is committed as it arrives and a killed run resumes where it stopped.

Answers are parsed leniently (labels, quotes, numbering, a JSON ``query`` field) and validated
strictly: empty, too short or too long queries, queries about the document itself ("the above
document ..."), copies of the document (a whole sentence or most of the query's word trigrams),
copies of a few-shot example and duplicates of another query for the same document are
rejected with the reason, and retried until ``max_attempts``. An answer cut by the token budget
keeps its first complete sentence (``cut_off``), and ``few_shot_per_query`` shows a seeded draw
from a pool of examples rather than all of them.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from synthrank.generate.backends.base import Backend, ChatRequest, Completion
from synthrank.generate.levels import Level
from synthrank.generate.parsing import (
    extract_json_object,
    length_problem,
    normalise,
    words,
)
from synthrank.generate.prompts import few_shot_records, load_template, render
from synthrank.generate.runner import (
    GenerationConfig,
    Generator,
    _derive_seed,
    _Job,
    fingerprint,
)
from synthrank.generate.store import ItemKey

# The document a query is written from is its level-3 (perfectly relevant) passage; the store's
# items for queries carry that grade, so a query item reads "the k-th query for which this
# document is level 3".
QUERY_GRADE = 3
QUERY_LEVEL = Level(QUERY_GRADE, "query", "A query that the document answers.")
DEFAULT_STYLE = "a short search query that this document answers, as a user of this collection would type it"


def query_id(doc_id: str, k: int) -> str:
    """The id of the k-th query written from a document: ``<doc id>-Q<k>``."""
    return f"{doc_id}-Q{k}"


@dataclass(frozen=True)
class QueryExample:
    document: str
    query: str


def load_query_few_shot(source: str | Path | bool | None) -> list[QueryExample]:
    """Few-shot examples ``{"document": ..., "query": ...}`` from a file, the built-in ones (True)
    or none (False / None)."""
    data, where = few_shot_records(source, "query_few_shot.json")
    examples = []
    for i, entry in enumerate(data):
        for name in ("document", "query"):
            if not isinstance(entry, dict) or not isinstance(entry.get(name), str) or not entry[name].strip():
                raise ValueError(f"{where}: example {i}: field '{name}' must be a non-empty string")
        examples.append(QueryExample(entry["document"].strip(), entry["query"].strip()))
    return examples


def truncate_words(text: str, max_words: int) -> str:
    """The first ``max_words`` whitespace-separated words (small models have short contexts)."""
    parts = text.split()
    return " ".join(parts[:max_words]) + (" ..." if len(parts) > max_words else "")


@dataclass
class QueryPromptSet:
    """System prompt, query template and examples; ``digest`` goes into the run's fingerprint."""

    system: str
    query: str
    few_shot: list[QueryExample] = field(default_factory=list)

    @classmethod
    def load(cls, system: str | Path | None = None, query: str | Path | None = None,
             few_shot: str | Path | None | bool = True) -> "QueryPromptSet":
        return cls(load_template(system, "query_system"), load_template(query, "query"),
                   load_query_few_shot(few_shot))

    def digest(self) -> str:
        payload = json.dumps({"system": self.system, "query": self.query,
                              "few_shot": [[e.document, e.query] for e in self.few_shot]},
                             sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]

    def _user(self, document: str, style: str, min_words: int, max_words: int, max_document_words: int) -> str:
        return render(self.query, document=truncate_words(document, max_document_words), style=style,
                      min_words=min_words, max_words=max_words)

    def messages(self, document: str, style: str, min_words: int, max_words: int,
                 max_document_words: int, examples: list[QueryExample] | None = None) -> list[dict]:
        """The chat for one document; ``examples`` (default: all of ``few_shot``) are shown first."""
        messages = [{"role": "system", "content": self.system.strip()}] if self.system.strip() else []
        for example in self.few_shot if examples is None else examples:
            messages.append({"role": "user", "content": self._user(example.document, style, min_words, max_words,
                                                                   max_document_words)})
            messages.append({"role": "assistant", "content": example.query})
        messages.append({"role": "user", "content": self._user(document, style, min_words, max_words,
                                                               max_document_words)})
        return messages


# --- parsing and validation -----------------------------------------------------------------

_QUERY_LABEL = re.compile(
    r"^\s*(?:here(?:'s| is)[^:\n]*:|(?:search\s+)?(?:query|question|claim)\s*(?:\d+)?\s*[:\-]|sure[^:\n]*:|"
    # SmolLM2-135M sometimes opens with the prompt's own "Document:" label (6 of 30 SciFact claims)
    r"document\s*:|"
    r"answer\s*:|\d+\s*[.)]\s+|[-*\u2022]\s+)\s*", re.I)
_QUOTES = "\"'`\u201c\u201d\u2018\u2019"
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


def parse_query(text: str) -> str:
    """The query in an answer: a JSON ``query`` field, else the first non-empty line without
    labels ("Query:", "Here is ...:", numbering) and surrounding quotes."""
    stripped = text.strip()
    if stripped.startswith("{") or stripped.startswith("```"):
        obj, _ = extract_json_object(stripped)
        if obj is not None:
            for name in ("query", "question", "claim", "text"):
                if isinstance(obj.get(name), str):
                    return " ".join(obj[name].split())
    stripped = stripped.replace("```", "\n")
    lines = [line.strip() for line in stripped.splitlines() if line.strip()]
    for line in lines:
        line = _QUERY_LABEL.sub("", line, count=1).strip().strip(_QUOTES).strip()
        if line:
            return " ".join(line.split())
    return ""


# Answers that talk about the document ("The above document provides ...", "What is the answer
# to this article?") instead of asking for its content: small models write many.
_META = re.compile(r"\b(?:the|this|that|above|given|following)\s+(?:document|article|text|passage|abstract)\b", re.I)


# Question openings such as "what is the" may be shared with an example without copying its content.
_FUNCTION_WORDS = frozenset(
    "a an the of in on at to for from by with and or is are was were be been do does did can could should "
    "would will what which who whom whose when where why how many much is it its this that these those".split())


def _trigrams(tokens: list[str]) -> set[tuple[str, ...]]:
    return {tuple(tokens[i:i + 3]) for i in range(len(tokens) - 2)}


@dataclass(frozen=True)
class QueryValidator:
    min_words: int = 3
    max_words: int = 32
    # A query sharing at least this share of its word trigrams with the document is a copy of it.
    max_copied_trigrams: float = 0.8
    duplicate_jaccard: float = 0.8
    example_jaccard: float = 0.5

    def check(self, query: str, document: str, others: Iterable[str] = (), examples: Iterable[str] = ()) -> str | None:
        """None when the query is acceptable, else why it is rejected. ``others``: the queries
        already accepted for this document; ``examples``: the few-shot queries of the prompt."""
        tokens = words(query)
        n = len(tokens)
        if n == 0:
            return "empty query"
        problem = length_problem(n, self.min_words, self.max_words)
        if problem:
            return problem
        if _META.search(query):
            return "talks about the document, not its content"
        flat = " ".join(tokens)
        sentences = {normalise(s) for s in _SENTENCE.split(document)} | {normalise(document)}
        if flat in sentences:
            return "copied a sentence of the document"
        if n >= 3:
            grams = _trigrams(tokens)
            copied = len(grams & _trigrams(words(document))) / len(grams)
            if copied >= self.max_copied_trigrams:
                return f"copied from the document ({copied:.0%} of its word trigrams)"
        mine = set(tokens)
        document_grams = _trigrams(words(document))
        for example in examples:  # small models reuse the example's wording for any document
            theirs = set(words(example))
            if theirs and len(mine & theirs) / len(mine | theirs) >= self.example_jaccard:
                return "copy of a few-shot example"
            # A phrase of the example that the document does not contain is carried over from the
            # prompt, not taken from the document (SmolLM2-135M put the example's "high caffeine
            # intake before bed" into claims about glioblastoma and obesity).
            borrowed = {gram for gram in _trigrams(tokens) & _trigrams(words(example)) - document_grams
                        if not set(gram) <= _FUNCTION_WORDS}
            if borrowed:
                return "borrows the few-shot example's wording: " + " ".join(sorted(borrowed)[0])
        for other in others:
            theirs = set(words(other))
            if theirs and len(mine & theirs) / len(mine | theirs) >= self.duplicate_jaccard:
                return "duplicate of another query for the document"
        return None


CUT_OFF_RULES = ("first-sentence", "reject")


def first_sentence(text: str) -> str | None:
    """The first sentence of a one-line answer that goes on after it, else None."""
    parts = _SENTENCE.split(text.strip(), maxsplit=1)
    return parts[0] if len(parts) == 2 and parts[1].strip() and parts[0][-1:] in ".!?" else None


# --- the generator --------------------------------------------------------------------------

@dataclass
class QueryConfig(GenerationConfig):
    """GenerationConfig for queries: ``per_level`` is queries per document, the word bounds and
    token budget apply to a query, and the document is cut to ``max_document_words``."""

    levels: list[Level] = field(default_factory=lambda: [QUERY_LEVEL])
    mode: str = "per-level"
    max_tokens_per_passage: int = 64
    min_words: int = 3
    max_words: int = 32
    max_attempts: int = 3
    style: str = DEFAULT_STYLE
    max_document_words: int = 256
    max_copied_trigrams: float = 0.8
    # Examples shown per request, drawn from the few-shot file for each document and attempt
    # (None: all of them). With one fixed example SmolLM2-135M opened 45 % of its SciFact claims
    # with that example's first word ("High ..."); a pool of varied examples spreads that pull.
    few_shot_per_query: int | None = None
    # An answer that runs past the token budget on one line: "first-sentence" keeps its first
    # complete sentence when it has one (the small model often writes a good claim, then goes on
    # summarising), "reject" retries it.
    cut_off: str = "first-sentence"

    def __post_init__(self) -> None:
        super().__post_init__()
        if [lv.grade for lv in self.levels] != [QUERY_GRADE] or self.mode != "per-level":
            raise ValueError("query generation has one item kind: levels=[QUERY_LEVEL], mode='per-level'")
        if not self.style.strip():
            raise ValueError("style must be a non-empty phrase, e.g. 'a short search query'")
        if self.max_document_words < 1:
            raise ValueError("max_document_words must be >= 1")
        if not 0 < self.max_copied_trigrams <= 1:
            raise ValueError("max_copied_trigrams must be in (0, 1]")
        if self.few_shot_per_query is not None and self.few_shot_per_query < 1:
            raise ValueError("few_shot_per_query must be >= 1 (or None for all examples)")
        if self.cut_off not in CUT_OFF_RULES:
            raise ValueError(f"cut_off must be one of {', '.join(CUT_OFF_RULES)}, not {self.cut_off!r}")

    def parameters(self) -> dict:
        params = super().parameters()
        # The behaviour of earlier versions keeps their fingerprint, so their stores resume.
        if params["few_shot_per_query"] is None:  # all examples
            params.pop("few_shot_per_query")
        if params["cut_off"] == "reject":
            params.pop("cut_off")
        return params

    @property
    def query_validator(self) -> QueryValidator:
        return QueryValidator(self.min_words, self.max_words, self.max_copied_trigrams)


class QueryGenerator(Generator):
    """Writes ``per_level`` queries for each document of the mapping given to :meth:`run`
    (``{document id: title + text}``), with the store, resume and retries of ``generate``."""

    item_kind = "query"

    def __init__(self, backend: Backend, prompts: QueryPromptSet, config: QueryConfig):
        self.backend = backend
        self.prompts = prompts
        self.config = config
        self.references = {}  # the loop's grounded-mode hook: queries are never grounded
        self.fingerprint = fingerprint(backend.identity(), prompts.digest(), {"task": "queries", **config.parameters()})
        self.examples = [example.query for example in prompts.few_shot]

    def run_config(self) -> dict:
        return {"backend": self.backend.identity(), "prompt_hash": self.prompts.digest(), "task": "queries",
                "parameters": self.config.parameters(),
                "prompts": {"system": self.prompts.system, "query": self.prompts.query,
                            "few_shot_examples": len(self.prompts.few_shot)}}

    def _examples_for(self, doc_id: str, k: int, attempt: int) -> list[QueryExample] | None:
        pool, n = self.prompts.few_shot, self.config.few_shot_per_query
        if n is None or n >= len(pool):
            return None
        # Drawn per attempt too, so that a retry after copying an example sees another one.
        rng = random.Random(_derive_seed(self.config.seed, doc_id, "few-shot", k, attempt))
        return rng.sample(pool, n)

    def _request(self, job: _Job, document: str) -> ChatRequest:
        c = self.config
        (doc_id, grade, k), = job.items
        messages = self.prompts.messages(document, c.style, c.min_words, c.max_words, c.max_document_words,
                                         self._examples_for(doc_id, k, job.attempt))
        return ChatRequest(messages, max_tokens=c.max_tokens_per_passage, temperature=c.temperature, top_p=c.top_p,
                           seed=_derive_seed(c.seed, doc_id, "query", k, job.attempt))

    def _handle(self, job: _Job, document: str, completion: Completion, accepted: dict[str, list[str]],
                reasons: dict[ItemKey, list[str]]):
        key = job.items[0]
        done: dict[ItemKey, tuple[str, int]] = {}
        rejected: dict[ItemKey, str] = {}
        if not completion.ok:
            rejected[key] = f"backend error: {completion.error}"
        else:
            query = parse_query(completion.text)
            problem = None
            # With no stop sequence, "length" means the token budget ran out; a one-line answer
            # was then cut mid-query (a longer answer's first line is complete) unless it holds
            # a complete first sentence and the rule keeps that.
            if completion.finish_reason == "length" and "\n" not in completion.text.strip():
                sentence = first_sentence(query) if self.config.cut_off == "first-sentence" else None
                if sentence is None:
                    problem = "cut off by the token limit"
                else:
                    query = sentence
            if problem is None:
                problem = self.config.query_validator.check(query, document, accepted.get(job.qid, []), self.examples)
            if problem:
                rejected[key] = problem
            else:
                done[key] = (query, job.attempt)
                accepted.setdefault(job.qid, []).append(query)
        failed, retry = self._settle(job, rejected, completion.ok, reasons)
        return done, failed, retry
