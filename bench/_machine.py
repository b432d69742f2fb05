"""The machine a benchmark ran on, for its results file (benchmarks report the CPU they ran on)."""

from __future__ import annotations

from pathlib import Path


def cpu_name(default: str = "") -> str:
    """The ``model name`` of ``/proc/cpuinfo``, or ``default`` where there is none."""
    info = Path("/proc/cpuinfo")
    if info.exists():
        for line in info.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return default
