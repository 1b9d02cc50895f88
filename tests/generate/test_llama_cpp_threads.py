"""The llama-cpp backend's default thread count (no model needed)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from synthrank.generate.backends import llama_cpp


@pytest.mark.parametrize("cores, busy, threads", [
    (2, 0.0, 2), (2, 0.9, 1), (2, 2.0, 1), (1, 0.0, 1), (4, 1.2, 3), (16, 0.0, 8), (16, 10.0, 6),
])
def test_default_threads_are_the_cores_nothing_else_keeps_busy(monkeypatch, cores, busy, threads):
    monkeypatch.setattr(llama_cpp.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert llama_cpp.default_threads(busy) == threads


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/stat")
def test_a_spinning_process_counts_as_a_busy_core():
    spinner = subprocess.Popen(["timeout", "20", sys.executable, "-c", "while True: pass"])
    try:
        busy = llama_cpp.busy_cores(0.5)
    finally:
        spinner.terminate()
        spinner.wait()
    assert busy >= 0.7
