"""Run the demo's first cross-validation (seed 000's protocol, 10 folds, no repeats) with the code
of an older commit, on this machine, beside the current demo: does a changed demo number come
from the code or from the machine?

The older commit is checked out in a git worktree and imported from there (``PYTHONPATH``); it
reads a copy of the current demo's phantom cohort and prepared folder (it re-prepares and re-embeds
what its own cache keys do not recognise). Both runs' per-fold Ctd are written with the CPU's
name and instruction-set flags.

Usage::

    bash scripts/demo.sh                                    # the current demo, in demo-run/
    python bench/demo_at_commit.py 2afa26f [--demo demo-run] [--out bench/results/demo_at_commit.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _machine import cpu_flags, cpu_name, git_commit  # bench/ is the script's folder

_RUN = """
import json, sys
from pathlib import Path
from ctsurv.demo import demo_config
from ctsurv.pipeline import run_cv
def main():
    root = Path(sys.argv[1])
    cfg, _ = demo_config(root, n_patients=240, epochs=100, permute=False, seed=42)
    run_cv(cfg, root / "run", progress=False)
if __name__ == "__main__":
    main()
"""


def _per_fold(run: Path) -> list[float]:
    return [round(f["ctd"], 6) for f in json.loads((run / "metrics.json").read_text())["per_fold"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("commit")
    ap.add_argument("--demo", default="demo-run")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "demo_at_commit.json"))
    a = ap.parse_args()
    demo = Path(a.demo).resolve()
    repo = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        tree, work = Path(tmp) / "tree", Path(tmp) / "demo"
        subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", str(tree), a.commit],
                       check=True, capture_output=True)
        try:
            for part in ("cohort", "prepared"):
                shutil.copytree(demo / part, work / part, symlinks=True)
            script = Path(tmp) / "run.py"
            script.write_text(_RUN)
            env = {**os.environ, "PYTHONPATH": str(tree / "src")}
            subprocess.run([sys.executable, str(script), str(work)], check=True, env=env)
            old = _per_fold(work / "run")
        finally:
            subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(tree)],
                           capture_output=True)
    new = _per_fold(demo / "run")
    res = {"command": f"python bench/demo_at_commit.py {a.commit} --demo {a.demo}",
           "older_commit": a.commit, "current_commit": git_commit(), "cpu": cpu_name(), "cpu_flags": cpu_flags(),
           "per_fold_ctd_older": old, "per_fold_ctd_current": new,
           "older_mean": sum(old) / len(old), "current_mean": sum(new) / len(new),
           "identical": old == new}
    Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    print(f"{'fold':>4} {a.commit:>10} {'current':>10}")
    for k, (o, n) in enumerate(zip(old, new)):
        print(f"{k:>4} {o:>10.4f} {n:>10.4f}")
    print(json.dumps({k: res[k] for k in ("older_mean", "current_mean", "identical")}))


if __name__ == "__main__":
    main()
