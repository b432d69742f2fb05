"""Seed 000's Table 6 on a phantom pair: transfer from the demo's phantoms to a shifted scanner.

Usage::

    python bench/transfer.py [--work /tmp/ctsurv-bench-transfer] [--source-patients 240]
                             [--target-patients 100] [--target-seed 7] [--repeats 6]
                             [--freeze PART ...]

Steps, each the ctsurv command a user would type (printed as it runs):

1. ``ctsurv synth`` the source cohort: the demo's phantoms (reference scanner, seed 42, 240
   patients) and ``ctsurv fit`` one saved model on all of them with the demo's configuration
   (seed 000's protocol, augmentation off);
2. ``ctsurv synth --scanner sharp --id-prefix TARGET`` the target cohort: other patients (another
   cohort seed, so other tumours and outcomes: no patient is in both cohorts), imaged on the
   ``sharp`` scanner profile (sharper kernel, 2.25x noise, +30 HU, wider field of view, larger
   patients, 5 mm slices);
3. ``ctsurv transfer-study --from SOURCE_MODEL --config target.yaml --repeats R``: R paired
   scratch / transfer cross-validations on the target (seeds 42 .. 42 + R - 1) and the direct
   external evaluation of the source model on the whole target cohort.

Writes ``bench/results/transfer.json`` (the study's summary and per-repeat table, the commands,
seconds per step, the CPU) and prints the Table 6 Markdown. Cohorts and prepared folders are
kept in ``--work`` and reused (delete it to start over); the study resumes finished runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import yaml

from _machine import cpu_name  # bench/ is the script's folder

HERE = Path(__file__).resolve().parent


def _cpu() -> str:
    return cpu_name(platform.processor() or platform.machine())


def _ctsurv(*args: str) -> tuple[list[str], float]:
    cmd = [str(Path(sys.executable).with_name("ctsurv")), *args]
    print("$ ctsurv " + " ".join(shlex.quote(a) for a in args), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    return ["ctsurv", *args], round(time.perf_counter() - t0, 1)


def _config(path: Path, cohort: Path, prepared: Path) -> Path:
    """The demo's configuration (ctsurv.demo.demo_config) on another cohort, as YAML."""
    values = {"seed": 42, "embed": {"augment": False},
              "data": {"images": str(cohort / "images"), "clinical": str(cohort / "clinical.csv"),
                       "prepared": str(prepared)}}
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="/tmp/ctsurv-bench-transfer")
    ap.add_argument("--source-patients", type=int, default=240)
    ap.add_argument("--target-patients", type=int, default=100)
    ap.add_argument("--target-seed", type=int, default=7, help="cohort seed of the target phantoms")
    ap.add_argument("--scanner", default="sharp")
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--freeze", nargs="+", default=[])
    ap.add_argument("--results", default=str(HERE / "results" / "transfer.json"))
    a = ap.parse_args(argv)

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    steps: list[dict] = []

    def step(name: str, done: Path, *args: str) -> None:
        if done.exists():
            print(f"[bench] {name}: reusing {done}", flush=True)
            steps.append({"step": name, "command": "ctsurv " + " ".join(args), "s": None, "reused": True})
            return
        cmd, s = _ctsurv(*args)
        steps.append({"step": name, "command": " ".join(cmd), "s": s, "reused": False})

    src, tgt = work / "source", work / "target"
    step("synth source", src / "clinical.csv", "synth", "--out", str(src),
         "--n-patients", str(a.source_patients), "--seed", "42", "--no-progress")
    src_cfg = _config(work / "source.yaml", src, work / "source-prepared")
    step("fit source model", work / "source-model" / "model.safetensors", "fit",
         "--config", str(src_cfg), "--out", str(work / "source-model"), "--no-progress")
    step("synth target", tgt / "clinical.csv", "synth", "--out", str(tgt),
         "--n-patients", str(a.target_patients), "--seed", str(a.target_seed),
         "--scanner", a.scanner, "--id-prefix", "TARGET", "--no-progress")
    tgt_cfg = _config(work / "target.yaml", tgt, work / "target-prepared")
    study_dir = work / "t6"
    args = ["transfer-study", "--from", str(work / "source-model"), "--config", str(tgt_cfg),
            "--out", str(study_dir), "--repeats", str(a.repeats), "--no-progress"]
    if a.freeze:
        args += ["--freeze", *a.freeze]
    cmd, s = _ctsurv(*args)
    steps.append({"step": "transfer study", "command": " ".join(cmd), "s": s, "reused": False})

    study = json.loads((study_dir / "transfer_study.json").read_text())
    result = {"bench": "bench/transfer.py", "argv": sys.argv[1:], "cpu": _cpu(),
              "cores": os.cpu_count(), "source_patients": a.source_patients,
              "target_patients": a.target_patients, "target_seed": a.target_seed,
              "scanner": a.scanner, "steps": steps, "study": study,
              "table_md": (study_dir / "table.md").read_text()}
    Path(a.results).parent.mkdir(parents=True, exist_ok=True)
    Path(a.results).write_text(json.dumps(result, indent=2) + "\n")
    print(result["table_md"])
    print("\n| step | s |\n|---|---:|")
    for st in steps:
        print(f"| {st['step']} | {'reused' if st['reused'] else st['s']} |")
    print(f"[bench] wrote {a.results} (CPU: {result['cpu']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
