from __future__ import annotations

import json

import pytest

from synthrank.generate.levels import default_levels, load_levels
from synthrank.generate.prompts import PromptSet, builtin_template, load_few_shot, placeholders, render


def test_render_substitutes_and_rejects_unknown_placeholders():
    assert render("Q: {{query}} / {{ n }}", query="x", n=3) == "Q: x / 3"
    with pytest.raises(KeyError, match="qeury"):
        render("{{qeury}}", query="x")


def test_builtin_templates_ship_with_the_package():
    for name in ("system", "joint", "level", "judge", "judge_system"):
        assert builtin_template(name).strip()
    assert {"query", "levels", "json_example"} <= placeholders(builtin_template("joint"))


def test_joint_messages_list_every_level_and_few_shot_turns():
    prompts = PromptSet.load()
    levels = default_levels(4)
    messages = prompts.joint_messages("what is a cat", levels, 1, "60 to 100", 30, 160)
    assert messages[0]["role"] == "system"
    assert [m["role"] for m in messages[1:]] == ["user", "assistant", "user"]
    assert json.loads(messages[2]["content"]).keys() == {"3", "2", "1", "0"}
    last = messages[-1]["content"]
    assert '"what is a cat"' in last
    for lv in levels:
        assert f'"{lv.grade}" ({lv.name})' in last
    assert '{"3": "...", "2": "...", "1": "...", "0": "..."}' in last


def test_per_level_messages_and_overrides(tmp_path):
    level_file = tmp_path / "level.txt"
    level_file.write_text("Q={{query}} L={{level_grade}} {{level_name}}")
    prompts = PromptSet.load(level=level_file, few_shot=False)
    lv = default_levels(4)[1]
    messages = prompts.level_messages("cats", lv, "60", 30, 160)
    assert messages[-1]["content"] == "Q=cats L=2 highly relevant"
    assert len(messages) == 2  # system + user: no few-shot
    assert PromptSet.load(level=level_file).digest() != PromptSet.load().digest()


def test_few_shot_file_and_levels_file(tmp_path):
    shots = tmp_path / "shots.jsonl"
    shots.write_text('{"query": "q", "passages": {"1": "a", "0": ["b", "c"]}}\n')
    examples = load_few_shot(shots)
    assert examples[0].passages == {1: ["a"], 0: ["b", "c"]}
    levels = tmp_path / "levels.json"
    levels.write_text(json.dumps([{"grade": 0, "name": "no", "description": "d0"},
                                  {"grade": 1, "name": "yes", "description": "d1"}]))
    assert [lv.grade for lv in load_levels(levels)] == [1, 0]
    prompts = PromptSet.load(few_shot=shots)
    messages = prompts.joint_messages("x", load_levels(levels), 1, "60", 30, 160)
    assert json.loads(messages[-2]["content"]) == {"1": "a", "0": "b"}
    levels.write_text(json.dumps([{"grade": 1, "name": "a", "description": "x"},
                                  {"grade": 1, "name": "b", "description": "y"}]))
    with pytest.raises(ValueError, match="unique"):
        load_levels(levels)
    with pytest.raises(ValueError, match="2, 3 or 4"):
        default_levels(5)
