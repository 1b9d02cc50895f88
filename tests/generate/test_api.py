from __future__ import annotations

from synthrank.generate.api import resolve_mode

from .fakes import ScriptedBackend


def test_auto_mode_is_per_level_only_for_the_bundled_model():
    other = ScriptedBackend()
    bundled = ScriptedBackend()
    bundled.bundled = True
    assert resolve_mode("auto", bundled) == "per-level"
    assert resolve_mode("auto", other) == "joint"
    assert resolve_mode("joint", bundled) == "joint"
    assert resolve_mode("per-level", other) == "per-level"
