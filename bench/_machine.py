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


#: Instruction-set extensions that change which float kernels PyTorch and ONNX Runtime pick
#: (and so the last bits of their results): two "AMD EPYC" machines can differ here.
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")


def cpu_flags(names=ISA_FLAGS) -> dict[str, bool]:
    """Which of ``names`` (:data:`ISA_FLAGS`) the CPU has (all False where ``/proc/cpuinfo`` is
    absent)."""
    info = Path("/proc/cpuinfo")
    flags: set[str] = set()
    if info.exists():
        for line in info.read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    return {f: f in flags for f in names}


def git_commit(default: str = "") -> str:
    """The repository's HEAD commit (short), or ``default`` outside a git checkout."""
    import subprocess

    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return default
    return out.stdout.strip() if out.returncode == 0 else default
