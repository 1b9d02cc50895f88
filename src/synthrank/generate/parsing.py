"""Tolerant parsing of model output and strict validation of passages.

Parsing accepts what small models actually write: code fences, chatter before and after the
JSON, smart quotes, trailing commas, a JSON object cut off by the token limit, keys written as
``"3"``, ``"level 3"`` or the level's name. It only ever uses :func:`json.loads` (model output
is never evaluated as code). Validation is strict: a passage is rejected with a reason when it
is empty, outside the word bounds, a copy of the query, or a duplicate of another passage of
the same query.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from synthrank.generate.levels import Level

_FENCE = re.compile(r"```[A-Za-z0-9_-]*\s*\n?(.*?)(?:```|$)", re.S)
_SMART = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_WORD = re.compile(r"[A-Za-z0-9]+(?:'[A-Za-z]+)?")


class ParseError(ValueError):
    """The output holds nothing usable; the message is the recorded failure reason."""


# --- JSON extraction ------------------------------------------------------------------------

def _strip_fences(text: str) -> str:
    match = _FENCE.search(text)
    return match.group(1) if match else text


def _outside_strings(text: str, start: int = 0) -> Iterator[tuple[int, str]]:
    """``(index, character)`` for each character of ``text[start:]`` outside JSON string
    literals (quotes count as inside, escapes are honoured); then ``(len(text), "")`` when the
    text ends inside an unterminated string."""
    in_str = esc = False
    for i in range(start, len(text)):
        ch = text[i]
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        else:
            yield i, ch
    if in_str:
        yield len(text), ""


def _balanced_candidates(text: str) -> Iterable[str]:
    """Substrings from each ``{`` to its matching ``}``, string- and escape-aware; an
    unterminated object yields the rest of the text (repaired later)."""
    start = text.find("{")
    while start != -1:
        depth, end = 0, None
        for i, ch in _outside_strings(text, start):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    end = i + 1
                    break
        yield text[start:end] if end else text[start:]
        start = text.find("{", start + 1) if end is None else text.find("{", end)


def _close_partial(fragment: str) -> str:
    """Close an object cut off mid-way: end an open string, drop a dangling key, close brackets."""
    stack: list[str] = []
    open_string = False
    for _, ch in _outside_strings(fragment):
        if not ch:
            open_string = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]" and stack:
            stack.pop()
    out = fragment + ('"' if open_string else "")
    out = re.sub(r',\s*"[^"]*"\s*:?\s*$', "", out)  # a key with no value yet
    out = re.sub(r"[,:]\s*$", "", out)
    return out + "".join(reversed(stack))


# The repair here is hand-written, not the json-repair package (0.64.6, tried in its place for
# _loads/_close_partial): it turns the Python expression ``{3: __import__('os').getcwd()}`` into
# ``{"3": "import__('os').getcwd()"}``, with strict=True too, so an answer that is not JSON
# would become a level-3 passage (test_never_evaluates_code fails; the other parsing tests pass).
def _loads(candidate: str) -> object | None:
    attempts = [candidate, _TRAILING_COMMA.sub(r"\1", candidate)]
    # Newlines inside strings are invalid JSON but common in model output.
    attempts.append(re.sub(r"(?<!\\)\n", " ", attempts[-1]))
    for attempt in attempts:
        try:
            return json.loads(attempt)
        except json.JSONDecodeError:
            continue
    return None


def extract_json_object(text: str) -> tuple[dict | None, bool]:
    """The first JSON object in ``text`` and whether it had to be closed (truncated output)."""
    cleaned = _strip_fences(text.translate(_SMART))
    for source in (cleaned, text.translate(_SMART)):
        for candidate in _balanced_candidates(source):
            obj = _loads(candidate)
            if isinstance(obj, dict):
                return obj, False
            obj = _loads(_close_partial(candidate))
            if isinstance(obj, dict):
                return obj, True
    return None, False


_PAIR = re.compile(r'"([^"\n]{1,40})"\s*:\s*"((?:[^"\\]|\\.)*)"?', re.S)


def _regex_pairs(text: str) -> dict[str, str]:
    """Last resort for JSON too broken to load: ``"key": "value"`` pairs one by one."""
    out = {}
    for key, value in _PAIR.findall(text.translate(_SMART)):
        try:
            value = json.loads(f'"{value}"')
        except json.JSONDecodeError:
            pass
        out.setdefault(key, value)
    return out


def _key_to_grade(key: str, levels: Sequence[Level]) -> int | None:
    k = key.strip().lower()
    by_name = {lv.name.lower(): lv.grade for lv in levels}
    if k in by_name:
        return by_name[k]
    match = re.fullmatch(r"(?:level|grade|relevance|l)?[\s_\-]*(\d+)", k)
    if match:
        return int(match.group(1))
    for name, grade in by_name.items():
        if name in k and not any(other != name and other in k and len(other) > len(name) for other in by_name):
            return grade
    return None


def _as_texts(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        for field in ("passage", "text", "content"):
            if isinstance(value.get(field), str):
                return [value[field]]
        return []
    if isinstance(value, list):
        out: list[str] = []
        for v in value:
            out.extend(_as_texts(v))
        return out
    return []


def parse_joint(text: str, levels: Sequence[Level]) -> dict[int, list[str]]:
    """Passages by grade from a joint answer; raises :class:`ParseError` when there are none."""
    obj, _ = extract_json_object(text)
    found: dict[int, list[str]] = {}
    grades = {lv.grade for lv in levels}

    def add(grade: int | None, texts: list[str]) -> None:
        if grade in grades and texts:
            found.setdefault(grade, []).extend(texts)

    if obj is not None:
        # {"passages": [{"level": 3, "passage": ...}, ...]} or {"3": ..., "2": ...}
        items = obj.get("passages") if isinstance(obj.get("passages"), list) else None
        if items is not None:
            for entry in items:
                if isinstance(entry, dict):
                    raw = entry.get("level", entry.get("grade", entry.get("relevance")))
                    grade = raw if isinstance(raw, int) else _key_to_grade(str(raw), levels) if raw is not None else None
                    add(grade, _as_texts(entry))
        else:
            for key, value in obj.items():
                add(_key_to_grade(str(key), levels), _as_texts(value))
    if not found:
        for key, value in _regex_pairs(text).items():
            add(_key_to_grade(key, levels), [value])
    if not found:
        snippet = " ".join(text.split())[:80]
        raise ParseError(f"no JSON object with level keys in the answer ({snippet!r})" if text.strip() else "empty answer")
    return found


_LABEL = re.compile(r"^\s*(?:here(?:'s| is)[^:\n]*:|passage\s*(?:\d+)?\s*:|sure[^:\n]*:|answer\s*:)\s*", re.I)


def parse_single(text: str) -> str:
    """The passage from a per-level answer: plain text, or JSON with a ``passage``-like field."""
    stripped = text.strip()
    if stripped.startswith("{") or stripped.startswith("```"):
        obj, _ = extract_json_object(stripped)
        if obj is not None:
            texts = _as_texts(obj) or [t for v in obj.values() for t in _as_texts(v)]
            if texts:
                return texts[0].strip()
    stripped = _strip_fences(stripped).strip()
    stripped = _LABEL.sub("", stripped, count=1).strip()
    # Only the first paragraph: later ones are usually commentary.
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", stripped) if p.strip()]
    passage = paragraphs[0] if paragraphs else ""
    if len(passage) >= 2 and passage[0] == passage[-1] and passage[0] in "\"'":
        passage = passage[1:-1].strip()
    return passage


# --- validation -----------------------------------------------------------------------------

def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def normalise(text: str) -> str:
    return " ".join(words(text))


# Small models sometimes answer the task instead of doing it ("Sure! Here is a passage ...").
_CHATTER = re.compile(r"^\W*(sure|certainly|of course|here is|here's|i'm|i am|i will|i'll|i can|as an ai|"
                      r"okay|ok|my apologies|sorry)\b", re.IGNORECASE)
# The labels the built-in prompts put before the query and the reference.
_PROMPT_LABEL = re.compile(r"\b(search query|reference passage)\s*:", re.IGNORECASE)
SHINGLE = 6


def shingles(text: str, n: int = SHINGLE) -> list[tuple[str, ...]]:
    """The word n-grams of ``text`` (lower-cased words): a shared 6-gram is a copied phrase."""
    tokens = words(text)
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def length_problem(n: int, min_words: int, max_words: int) -> str | None:
    """Why ``n`` words are too few or too many, or None."""
    if n < min_words:
        return f"too short ({n} words < {min_words})"
    if n > max_words:
        return f"too long ({n} words > {max_words})"
    return None


@dataclass(frozen=True)
class Validator:
    min_words: int = 30
    max_words: int = 160
    duplicate_jaccard: float = 0.8

    def check(self, passage: str, query: str, others: Iterable[str] = (), examples: Iterable[str] = (),
              instructions: frozenset[tuple[str, ...]] = frozenset()) -> str | None:
        """None when the passage is acceptable, else the reason it is rejected. ``others`` are
        the query's other passages; ``examples`` the few-shot passages shown in the prompt;
        ``instructions`` the word 6-grams of the prompts' own wording (see :func:`shingles`)."""
        text = " ".join(passage.split())
        if not text:
            return "empty passage"
        tokens = words(text)
        n = len(tokens)
        problem = length_problem(n, self.min_words, self.max_words)
        if problem:
            return problem
        if _CHATTER.match(text):
            return "talks to the user instead of writing a passage"
        if instructions and (set(shingles(text)) & instructions or _PROMPT_LABEL.search(text)):
            return "repeats the prompt's instructions"
        q = normalise(query)
        p = " ".join(tokens)
        if p == q or (q and q in p and n <= len(q.split()) + 3):
            return "copy of the query"
        mine = set(tokens)
        for example in examples:
            theirs = set(words(example))
            if theirs and len(mine & theirs) / len(mine | theirs) >= self.duplicate_jaccard:
                return "copy of a few-shot example"
        for other in others:
            theirs = set(words(other))
            if not theirs:
                continue
            if normalise(other) == p:
                return "duplicate of another passage of the query"
            jaccard = len(mine & theirs) / len(mine | theirs)
            if jaccard >= self.duplicate_jaccard:
                return f"near-duplicate of another passage of the query (word overlap {jaccard:.2f})"
        return None


_SENTENCE_END = re.compile(r"[.!?][\"')\]]?(?=\s|$)")


def trim_to_sentence(text: str) -> str:
    """Drop an unfinished last sentence (an answer cut off by the token limit)."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    return text[: ends[-1]].strip() if ends else ""


def clean_passage(text: str) -> str:
    """Collapse whitespace; passages are stored as single paragraphs."""
    return " ".join(text.split())
