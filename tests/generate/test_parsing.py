from __future__ import annotations

import json

import pytest

from synthrank.generate.levels import default_levels
from synthrank.generate.parsing import (
    ParseError, Validator, extract_json_object, parse_joint, parse_single, trim_to_sentence,
)

LEVELS = default_levels(4)
LONG = " ".join(f"word{i}" for i in range(40))


def test_plain_json():
    text = json.dumps({"3": "a", "2": "b", "1": "c", "0": "d"})
    assert parse_joint(text, LEVELS) == {3: ["a"], 2: ["b"], 1: ["c"], 0: ["d"]}


def test_code_fence_and_chatter():
    text = 'Sure! Here is the JSON you asked for:\n```json\n{"3": "x", "0": "y"}\n```\nHope this helps.'
    assert parse_joint(text, LEVELS) == {3: ["x"], 0: ["y"]}


def test_chatter_without_fence_and_braces_in_strings():
    text = 'Answer: {"3": "uses {braces} and \\"quotes\\"", "2": "ok"} trailing words'
    assert parse_joint(text, LEVELS) == {3: ['uses {braces} and "quotes"'], 2: ["ok"]}


def test_trailing_comma_smart_quotes_and_newlines():
    text = '{\u201c3\u201d: \u201cline one\nline two\u201d, "2": "b",}'
    out = parse_joint(text, LEVELS)
    assert out[2] == ["b"] and out[3][0].startswith("line one")


def test_truncated_json_is_closed():
    text = '{"3": "complete passage", "2": "cut off in the mid'
    obj, repaired = extract_json_object(text)
    assert repaired and obj["3"] == "complete passage" and obj["2"] == "cut off in the mid"


def test_level_names_and_prefixed_keys():
    text = json.dumps({"level 3": "a", "Highly relevant": "b", "related": "c", "L0": "d"})
    assert parse_joint(text, LEVELS) == {3: ["a"], 2: ["b"], 1: ["c"], 0: ["d"]}


def test_list_of_objects_and_lists_per_level():
    text = json.dumps({"passages": [{"level": 3, "passage": "a"}, {"level": "0", "text": "b"}]})
    assert parse_joint(text, LEVELS) == {3: ["a"], 0: ["b"]}
    assert parse_joint(json.dumps({"3": ["a", "b"]}), LEVELS) == {3: ["a", "b"]}


def test_unknown_grades_are_ignored_and_nothing_usable_raises():
    with pytest.raises(ParseError, match="no JSON object"):
        parse_joint('{"7": "x"}', LEVELS)
    with pytest.raises(ParseError, match="empty answer"):
        parse_joint("   ", LEVELS)
    with pytest.raises(ParseError):
        parse_joint("I cannot do that.", LEVELS)


def test_never_evaluates_code():
    # A Python literal that eval() would accept but JSON does not must not be parsed as one.
    with pytest.raises(ParseError):
        parse_joint("{3: __import__('os').getcwd()}", LEVELS)


def test_parse_single_strips_labels_quotes_fences_and_commentary():
    assert parse_single('Here is the passage:\n"A passage."') == "A passage."
    assert parse_single("```\nInside fence.\n```") == "Inside fence."
    assert parse_single("First paragraph.\n\nI hope this helps!") == "First paragraph."
    assert parse_single('{"passage": "From JSON."}') == "From JSON."


def test_trim_to_sentence():
    assert trim_to_sentence("One. Two is cut") == "One."
    assert trim_to_sentence("no sentence end") == ""


def test_validator_rules():
    v = Validator(min_words=30, max_words=60)
    assert v.check("", "q") == "empty passage"
    assert v.check("short one", "q").startswith("too short")
    assert v.check(" ".join(["w"] * 61), "q").startswith("too long")
    assert v.check(LONG, "q") is None
    query = " ".join(f"word{i}" for i in range(29)) + " word29"
    assert Validator(min_words=5).check(query + " extra", query) == "copy of the query"
    assert v.check(LONG, "q", [LONG]).startswith("duplicate")
    near = LONG.replace("word39", "other")
    assert "near-duplicate" in v.check(near, "q", [LONG])
    assert v.check(LONG, "q", [" ".join(f"x{i}" for i in range(40))]) is None


def test_copies_of_few_shot_examples_are_rejected():
    from synthrank.generate.prompts import load_few_shot

    example = load_few_shot(True)[0].passages[0][0]
    assert Validator().check(example, "q", [], [example]) == "copy of a few-shot example"
    assert Validator().check(example, "q", [], []) is None


def test_reason_kind():
    from synthrank.generate.runner import reason_kind

    assert reason_kind("attempt 1 (joint): no JSON | attempt 2 (level): too short (3 words < 30)") == "too short"
    assert reason_kind("attempt 1 (level): backend error: HTTP 500: x") == "backend error: HTTP 500: x"


def test_answers_about_the_task_are_rejected() -> None:
    from synthrank.generate.parsing import Validator, shingles
    from synthrank.generate.prompts import PromptSet
    from synthrank.generate.runner import prompt_shingles

    instructions = prompt_shingles(PromptSet.load(grounded=True))
    body = " ".join(["Volcanic islands form when magma rises through the ocean floor and cools."] * 3)
    check = Validator().check
    assert check(body, "volcanoes", instructions=instructions) is None
    assert check("I'm ready to help. " + body, "volcanoes", instructions=instructions) == \
        "talks to the user instead of writing a passage"
    echo = "A new passage of 60 to 100 words, a single paragraph written like a paragraph from a web page. " + body
    assert check(echo, "volcanoes", instructions=instructions) == "repeats the prompt's instructions"
    label = 'Search query: "volcanoes" Reference passage: "Islands." ' + body
    assert check(label, "volcanoes", instructions=instructions) == "repeats the prompt's instructions"
    assert len(shingles("one two three four five six seven")) == 2
