"""Crash safety (issue 20 item 3): ``ctsurv prepare`` and ``ctsurv run`` (which embeds and trains)
are killed with SIGKILL at five random points each and restarted; the finished artifacts and
metrics equal those of an uninterrupted run, and no partial file is read as complete (a killed
writer can leave only a uniquely named ``.tmp`` file, which nothing reads)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

KILLS = 5


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ctsurv.cli", *args, "--no-progress"]


def _run_to_end(cmd: list[str], timeout: float = 900) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    return time.perf_counter() - t0


def _kill_and_resume(cmd: list[str], span: float, rng: np.random.Generator) -> list[float]:
    """Start ``cmd`` and SIGKILL it after a random delay, ``KILLS`` times, then let it finish.
    Returns the delays. Each restart resumes from what the killed runs left."""
    delays = sorted(float(d) for d in rng.uniform(0.15 * span, 0.95 * span, size=KILLS))
    for delay in delays:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the whole group: prepare's workers too
            proc.wait()
    _run_to_end(cmd)
    return delays


def _artifacts(prepared: Path) -> dict:
    from ctsurv.preprocess import PreprocessedCT

    return {f.stem: PreprocessedCT.load(f) for f in sorted((prepared / "patients").glob("*.npz"))
            if f.name.count(".") == 1}


def test_prepare_killed_five_times_resumes_to_the_same_artifacts(tiny_cohort, tmp_path):
    args = ["prepare", "--images", str(tiny_cohort / "images"), "--clinical", str(tiny_cohort / "clinical.csv"),
            "--workers", "2"]
    span = _run_to_end(_cli(*args, "--out", str(tmp_path / "whole")))
    _kill_and_resume(_cli(*args, "--out", str(tmp_path / "killed")), span, np.random.default_rng(1))
    whole, killed = _artifacts(tmp_path / "whole"), _artifacts(tmp_path / "killed")
    assert sorted(whole) == sorted(killed) and len(whole) == 12
    for pid, pre in whole.items():
        assert killed[pid].fingerprint == pre.fingerprint
        np.testing.assert_array_equal(killed[pid].slices, pre.slices)
        np.testing.assert_array_equal(killed[pid].masks["lung"], pre.masks["lung"])
    a = pd.read_csv(tmp_path / "whole" / "manifest.csv").drop(columns=["seconds"])
    b = pd.read_csv(tmp_path / "killed" / "manifest.csv").drop(columns=["seconds"])
    pd.testing.assert_frame_equal(a, b)


def test_run_killed_five_times_resumes_to_the_same_metrics(tiny_cohort, tmp_path):
    def config(name: str) -> Path:
        values = {"seed": 11,
                  "data": {"images": str(tiny_cohort / "images"), "clinical": str(tiny_cohort / "clinical.csv"),
                           "prepared": str(tmp_path / f"{name}-prepared")},
                  "preprocess": {"size": 64},
                  "embed": {"backbone": "efficientnet-lite0", "augment": False},
                  "train": {"epochs": 6, "threads": 1},
                  "cv": {"n_folds": 3, "val_fraction": 0.2}}
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(values))
        return path

    span = _run_to_end(_cli("run", "--config", str(config("whole")), "--out", str(tmp_path / "whole")))
    _kill_and_resume(_cli("run", "--config", str(config("killed")), "--out", str(tmp_path / "killed")), span,
                     np.random.default_rng(2))
    a = pd.read_csv(tmp_path / "whole" / "predictions.csv")
    b = pd.read_csv(tmp_path / "killed" / "predictions.csv")
    pd.testing.assert_frame_equal(a, b)
    ma = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    mb = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    for key in ("ctd_mean", "ctd_pooled", "per_fold", "learning"):
        assert ma[key] == mb[key], key
    # a killed writer leaves at most uniquely named temporaries, never a torn file under a real name
    for path in (tmp_path / "killed").rglob("*"):
        if path.is_file() and not path.name.endswith(".tmp") and path.suffix == ".json":
            json.loads(path.read_text())
