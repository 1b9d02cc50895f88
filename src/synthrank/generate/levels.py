"""Relevance levels: the graded scale the generator writes passages for.

The default is the TREC Deep Learning scale (3 perfectly relevant, 2 highly relevant,
1 related, 0 irrelevant). Levels are data, not code: a JSON file of
``[{"grade": 3, "name": "...", "description": "...", "grounded": "..."}, ...]`` replaces them
(``grounded``, optional: how to write the level relative to a reference passage, for grounded mode).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Level:
    """One relevance level. ``grounded`` tells the generator how to write this level *relative to
    a reference passage* that perfectly answers the query (grounded mode); empty: ``description``."""

    grade: int
    name: str
    description: str
    grounded: str = ""

    @property
    def grounded_guide(self) -> str:
        return self.grounded or self.description

    def to_dict(self) -> dict:
        return asdict(self)


TREC_DL_LEVELS: tuple[Level, ...] = (
    Level(3, "perfectly relevant",
          "The passage is dedicated to the query and contains the exact answer.",
          "Say what the reference passage says, in other words."),
    Level(2, "highly relevant",
          "The passage answers the query, but the answer is partial, unclear, or buried among other information.",
          "Keep the subject of the reference passage but give only part of its answer, mixed with "
          "other information about the subject."),
    Level(1, "related",
          "The passage is on the topic of the query but does not answer it.",
          "Write about the same general topic as the reference passage, but about another aspect of it, "
          "so that the passage does not answer the query."),
    Level(0, "irrelevant",
          "The passage has nothing to do with the query.",
          "Write about a completely different subject, unrelated to the query and to the reference passage."),
)

_THREE_LEVELS: tuple[Level, ...] = (
    Level(2, "relevant", "The passage answers the query."),
    Level(1, "related", "The passage is on the topic of the query but does not answer it."),
    Level(0, "irrelevant", "The passage has nothing to do with the query."),
)

_TWO_LEVELS: tuple[Level, ...] = (
    Level(1, "relevant", "The passage answers the query."),
    Level(0, "irrelevant", "The passage has nothing to do with the query."),
)


def default_levels(count: int = 4) -> list[Level]:
    """The built-in scales: 4 (TREC DL, the default), 3 or 2 levels, highest grade first."""
    scales = {4: TREC_DL_LEVELS, 3: _THREE_LEVELS, 2: _TWO_LEVELS}
    if count not in scales:
        raise ValueError(f"--levels {count}: built-in scales have 2, 3 or 4 levels; pass --levels-file for others")
    return list(scales[count])


def load_levels(path: str | Path) -> list[Level]:
    """Read levels from a JSON list of ``{"grade", "name", "description"}`` objects."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: malformed JSON ({error.msg})") from None
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{path}: expected a non-empty JSON list of levels")
    levels = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: level {i}: expected an object")
        grade = entry.get("grade")
        if not isinstance(grade, int) or isinstance(grade, bool) or grade < 0:
            raise ValueError(f"{path}: level {i}: 'grade' must be a non-negative integer")
        name = entry.get("name")
        desc = entry.get("description")
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{path}: level {i}: 'name' must be a non-empty string")
        if not isinstance(desc, str) or not desc.strip():
            raise ValueError(f"{path}: level {i}: 'description' must be a non-empty string")
        grounded = entry.get("grounded", "")
        if not isinstance(grounded, str):
            raise ValueError(f"{path}: level {i}: 'grounded' must be a string")
        unknown = sorted(set(entry) - {"grade", "name", "description", "grounded"})
        if unknown:
            raise ValueError(f"{path}: level {i}: unknown field(s) {', '.join(unknown)}; "
                             "known: grade, name, description, grounded")
        levels.append(Level(grade, name.strip(), desc.strip(), grounded.strip()))
    grades = [lv.grade for lv in levels]
    if len(set(grades)) != len(grades):
        raise ValueError(f"{path}: grades must be unique, got {grades}")
    return sorted(levels, key=lambda lv: -lv.grade)
