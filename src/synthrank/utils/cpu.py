"""What CPU this is: its model name and the feature flags that decide how fast it runs."""

from __future__ import annotations

import re
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
# The flags every speed figure is stated with: AVX2-only CPUs compute bf16 in software, and
# ggml and torch pick their kernels by these.
SPEED_FLAGS = frozenset({"avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile"})
# Environment that caps every kernel library torch uses on CPU (ATen, oneDNN, MKL, fbgemm's int8
# kernels) at AVX2: an AVX-512 machine then computes as an AVX2-only CPU would, up to caches and
# memory. The benchmarks' --emulate-avx2 sets it for the processes they time.
AVX2_ONLY_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
                 "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2"}


def _cpuinfo_field(name: str, cpuinfo: Path) -> str | None:
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    match = re.search(rf"^{name}\s*:(.*)$", text, flags=re.M)
    return match.group(1).strip() if match else None


def cpu_flags(cpuinfo: Path = CPUINFO) -> set[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo is not there: not Linux)."""
    field = _cpuinfo_field("flags", cpuinfo)
    return set(field.split()) if field else set()


def speed_flags(cpuinfo: Path = CPUINFO) -> list[str]:
    """The flags that decide speed, sorted, for benchmark reports and manifests."""
    return sorted(cpu_flags(cpuinfo) & SPEED_FLAGS)


def cpu_model(cpuinfo: Path = CPUINFO) -> str | None:
    """The CPU's model name, e.g. "AMD EPYC 7B13" (None where it cannot be read)."""
    return _cpuinfo_field("model name", cpuinfo)
