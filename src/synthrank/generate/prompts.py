"""Prompt templates: text files shipped in ``synthrank/generate/prompts/``, overridable by path.

Templates use ``{{name}}`` placeholders. Rendering is plain substitution (no code runs in a
template); a placeholder with no value is an error, so a typo in an override fails loudly
instead of sending ``{{qeury}}`` to the model.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from synthrank.data.config_files import read_json_records
from synthrank.generate.levels import Level

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")

BUILTIN_TEMPLATES = ("system", "joint", "level", "grounded", "judge", "judge_system", "query", "query_system")


def builtin_template(name: str) -> str:
    """The text of a template shipped with the package (``system``, ``joint``, ``level``, ...)."""
    if name not in BUILTIN_TEMPLATES:
        raise KeyError(f"no built-in template {name!r}; known: {', '.join(BUILTIN_TEMPLATES)}")
    return prompt_resource(f"{name}.txt")


def prompt_resource(filename: str) -> str:
    """The text of a file shipped in ``synthrank/generate/prompts/`` (templates, few-shot examples)."""
    return resources.files("synthrank.generate").joinpath("prompts").joinpath(filename).read_text(encoding="utf-8")


def load_template(path_or_name: str | Path | None, default: str) -> str:
    """A template from a file path, or the built-in ``default`` when ``path_or_name`` is None."""
    if path_or_name is None:
        return builtin_template(default)
    path = Path(path_or_name)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: prompt template not found")
    return path.read_text(encoding="utf-8")


def placeholders(template: str) -> set[str]:
    return set(_PLACEHOLDER.findall(template))


def render(template: str, **values: object) -> str:
    """Substitute ``{{name}}`` placeholders; unknown placeholders raise ``KeyError``."""
    missing = placeholders(template) - values.keys()
    if missing:
        raise KeyError(f"prompt template has placeholders with no value: {', '.join(sorted(missing))}")
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template).strip()


@dataclass(frozen=True)
class FewShotExample:
    query: str
    passages: dict[int, list[str]]


def few_shot_records(source: str | Path | bool | None, builtin: str) -> tuple[list, str]:
    """The records of a few-shot file (a JSON list, or JSONL) and the name its errors give.
    ``source``: a path; True for the file ``builtin`` shipped in generate/prompts; False or None
    for no examples."""
    if source is True:
        data, where = json.loads(prompt_resource(builtin)), f"built-in {builtin}"
    elif source is False or source is None:
        data, where = [], "no few-shot examples"
    else:
        data, where = read_json_records(source, "few-shot examples"), str(source)
    if not isinstance(data, list):
        raise ValueError(f"{where}: expected a list of examples")
    return data, where


def load_few_shot(source: str | Path | bool | None) -> list[FewShotExample]:
    """Few-shot examples ``{"query": ..., "passages": {"3": "..." | [...]}}`` from a file, the
    built-in ones (True) or none (False / None)."""
    data, where = few_shot_records(source, "few_shot.json")
    examples = []
    for i, entry in enumerate(data):
        if not isinstance(entry, dict) or not isinstance(entry.get("query"), str) or not isinstance(entry.get("passages"), dict):
            raise ValueError(f"{where}: example {i}: expected {{'query': str, 'passages': {{grade: text}}}}")
        passages: dict[int, list[str]] = {}
        for key, value in entry["passages"].items():
            texts = [value] if isinstance(value, str) else value
            if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                raise ValueError(f"{where}: example {i}: passages for level {key} must be text or a list of texts")
            passages[int(key)] = texts
        examples.append(FewShotExample(entry["query"], passages))
    return examples


@dataclass
class PromptSet:
    """The templates and examples of one generation run; ``digest`` goes into the fingerprint."""

    system: str
    joint: str
    level: str
    few_shot: list[FewShotExample] = field(default_factory=list)
    grounded: str = ""

    @classmethod
    def load(cls, system: str | Path | None = None, joint: str | Path | None = None,
             level: str | Path | None = None, few_shot: str | Path | None | bool = True,
             grounded: str | Path | bool | None = None) -> "PromptSet":
        """``grounded``: None (no grounded template: the mode is off), True (the built-in one) or a path."""
        return cls(load_template(system, "system"), load_template(joint, "joint"),
                   load_template(level, "level"), load_few_shot(few_shot),
                   "" if grounded in (None, False) else load_template(None if grounded is True else grounded, "grounded"))

    def digest(self) -> str:
        contents = {"system": self.system, "joint": self.joint, "level": self.level,
                    "few_shot": [[e.query, sorted(e.passages.items())] for e in self.few_shot]}
        if self.grounded:  # only in the digest when set, so ungrounded fingerprints stay as they were
            contents["grounded"] = self.grounded
        payload = json.dumps(contents, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]

    # -- rendering -----------------------------------------------------------------------
    @staticmethod
    def _levels_block(levels: list[Level]) -> str:
        return "\n".join(f'- "{lv.grade}" ({lv.name}): {lv.description}' for lv in levels)

    @staticmethod
    def _json_example(levels: list[Level], per_level: int) -> str:
        if per_level == 1:
            body = ", ".join(f'"{lv.grade}": "..."' for lv in levels)
        else:
            body = ", ".join(f'"{lv.grade}": [' + ", ".join(['"..."'] * per_level) + "]" for lv in levels)
        return "{" + body + "}"

    def _joint_user(self, query: str, levels: list[Level], per_level: int, target_words: str,
                    min_words: int, max_words: int) -> str:
        return render(
            self.joint, query=query, levels=self._levels_block(levels), num_passages=len(levels) * per_level,
            per_level=per_level, target_words=target_words, min_words=min_words, max_words=max_words,
            value_kind="the passages" if per_level == 1 else f"lists of {per_level} passages",
            json_example=self._json_example(levels, per_level),
        )

    def joint_messages(self, query: str, levels: list[Level], per_level: int, target_words: str,
                       min_words: int, max_words: int) -> list[dict]:
        messages = [{"role": "system", "content": self.system.strip()}] if self.system.strip() else []
        for ex in self.few_shot:
            if not all(lv.grade in ex.passages for lv in levels):
                continue
            answer = {str(lv.grade): (ex.passages[lv.grade][0] if per_level == 1 else ex.passages[lv.grade][:per_level])
                      for lv in levels}
            messages.append({"role": "user", "content": self._joint_user(ex.query, levels, per_level, target_words, min_words, max_words)})
            messages.append({"role": "assistant", "content": json.dumps(answer, ensure_ascii=False)})
        messages.append({"role": "user", "content": self._joint_user(query, levels, per_level, target_words, min_words, max_words)})
        return messages

    def _level_user(self, query: str, level: Level, target_words: str, min_words: int, max_words: int) -> str:
        return render(self.level, query=query, level_grade=level.grade, level_name=level.name,
                      level_description=level.description, target_words=target_words,
                      min_words=min_words, max_words=max_words)

    def level_messages(self, query: str, level: Level, target_words: str, min_words: int, max_words: int) -> list[dict]:
        messages = [{"role": "system", "content": self.system.strip()}] if self.system.strip() else []
        for ex in self.few_shot:
            if level.grade in ex.passages:
                messages.append({"role": "user", "content": self._level_user(ex.query, level, target_words, min_words, max_words)})
                messages.append({"role": "assistant", "content": ex.passages[level.grade][0]})
        messages.append({"role": "user", "content": self._level_user(query, level, target_words, min_words, max_words)})
        return messages

    def _grounded_user(self, query: str, reference: str, level: Level, target_words: str) -> str:
        return render(self.grounded, query=query, reference=reference, level_grade=level.grade,
                      level_name=level.name, level_description=level.description,
                      grounded_guide=level.grounded_guide, target_words=target_words)

    def grounded_messages(self, query: str, reference: str, level: Level, top_grade: int,
                          target_words: str) -> list[dict]:
        """Grounded mode: write ``level`` relative to ``reference``, a real passage at the top level.
        A few-shot example shows its own top-level passage as the reference and its passage at
        ``level`` as the answer (examples without both are skipped)."""
        messages = [{"role": "system", "content": self.system.strip()}] if self.system.strip() else []
        for ex in self.few_shot:
            if level.grade in ex.passages and top_grade in ex.passages:
                user = self._grounded_user(ex.query, ex.passages[top_grade][0], level, target_words)
                messages.append({"role": "user", "content": user})
                messages.append({"role": "assistant", "content": ex.passages[level.grade][0]})
        messages.append({"role": "user", "content": self._grounded_user(query, reference, level, target_words)})
        return messages
