"""Ray as an executor (issue 20 item 1): ``prepare`` on a Ray head started on loopback writes
the local executor's bytes, finishes to the same bytes after its driver is killed half-way, and
redoes only a patient lost with the driver; ``run`` and
``radiomics extract`` go through the CLI on that head; on a local Ray instance, extraction,
a study and a run give the local results exactly; a task's error reaches the caller as itself;
an unknown executor is refused before any work.
Ray is an optional extra: these tests skip, saying so, where it is not installed."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ctsurv.exceptions import CtsurvError

ray = pytest.importorskip("ray", reason="Ray is an optional extra (pip install 'ctsurv[ray]')")


@pytest.fixture(scope="module", autouse=True)
def _no_ray_tokens():
    """Ray 2.60's `ray start` turns on token authentication and a driver process keeps the mode it
    first read; on loopback in tests every Ray instance of this module runs without tokens (a real
    cluster keeps them and gives every node the token: RAY_AUTH_TOKEN or ~/.ray/auth_token)."""
    before = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    yield
    if before is None:
        os.environ.pop("RAY_AUTH_MODE", None)
    else:
        os.environ["RAY_AUTH_MODE"] = before


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance (2 CPUs) for the tests that run on a local instance: ``map_tasks``
    uses an instance the process already has, so these tests start Ray once instead of at every
    stage, and Ray reuses its worker processes between their tasks. Requested only after the
    loopback test, which needs a process without Ray (its commands join their own head)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _bytes(prepared: Path) -> dict[str, str]:
    """sha256 of every artifact file of a prepared folder (the manifest's timings aside; a killed
    writer's uniquely named ``.*.tmp`` temporaries, which nothing reads, are not artifacts)."""
    return {str(f.relative_to(prepared)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted((prepared / "patients").rglob("*"))
            if f.is_file() and not (f.name.startswith(".") and f.name.endswith(".tmp"))}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_commands_join_a_ray_head_on_loopback_through_the_cli(tiny_cohort, tmp_path):
    import pandas as pd

    from ctsurv.cli import main

    ray_bin = Path(sys.executable).with_name("ray")
    if not ray_bin.exists():
        pytest.skip(f"the ray command is not beside {sys.executable}")
    # a process already attached to Ray would run these commands there, not on the head
    assert not ray.is_initialized(), "the loopback test must run before local_ray starts an instance"
    port = _free_port()
    start = subprocess.run([str(ray_bin), "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1",
                            "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats"],
                           capture_output=True, text=True, timeout=180)
    assert start.returncode == 0, start.stderr[-2000:]
    try:
        common = ["prepare", "--images", str(tiny_cohort / "images"), "--clinical", str(tiny_cohort / "clinical.csv"),
                  "--workers", "2", "--no-progress"]
        main([*common, "--out", str(tmp_path / "local")])
        t0 = time.perf_counter()
        main([*common, "--out", str(tmp_path / "cluster"), "--executor", "ray", "--address", f"127.0.0.1:{port}"])
        span = time.perf_counter() - t0
        assert _bytes(tmp_path / "local") == _bytes(tmp_path / "cluster")
        # a driver killed (SIGKILL) half-way, its tasks in flight on the head: the rerun completes
        # to the same bytes, and the killed run left no torn file under a real name
        killed = tmp_path / "killed"
        driver = subprocess.Popen([sys.executable, "-m", "ctsurv.cli", *common, "--out", str(killed), "--executor",
                                   "ray", "--address", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            driver.wait(timeout=0.5 * span + 5)  # its interpreter start-up is not in span
        except subprocess.TimeoutExpired:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
        left = sorted(f.name for f in (killed / "patients").glob("*") if f.is_file()) if killed.exists() else []
        main([*common, "--out", str(killed), "--executor", "ray", "--address", f"127.0.0.1:{port}"])
        assert _bytes(tmp_path / "local") == _bytes(killed), f"the killed driver had left {left}"
        # a driver that died before one patient finished: the next run redoes that one only
        lost = sorted((tmp_path / "cluster" / "patients").glob("*.json"))[0]
        lost.unlink()
        lost.with_suffix(".npz").unlink()
        main([*common, "--out", str(tmp_path / "cluster"), "--executor", "ray", "--address", f"127.0.0.1:{port}"])
        assert _bytes(tmp_path / "local") == _bytes(tmp_path / "cluster")
        redone = pd.read_csv(tmp_path / "cluster" / "manifest.csv").set_index("patient_id")["seconds"]
        assert redone[lost.stem] > 0 and (redone.drop(lost.stem) == 0).all()
        # the other commands on the same head: run (embed + train) and radiomics extract (the
        # study is compared on a local Ray instance below)
        import yaml

        address = ["--executor", "ray", "--address", f"127.0.0.1:{port}"]
        base = {"seed": 11, "data": {"images": str(tiny_cohort / "images"), "clinical": str(tiny_cohort / "clinical.csv"),
                                     "prepared": str(tmp_path / "run-prepared")},
                "preprocess": {"size": 64}, "embed": {"backbone": "efficientnet-lite0", "augment": False},
                "train": {"epochs": 2, "threads": 1}, "cv": {"n_folds": 3, "val_fraction": 0.2}}
        (tmp_path / "run.yaml").write_text(yaml.safe_dump(base))
        main(["run", "--config", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "run"), "--no-progress", *address])
        assert (tmp_path / "run" / "metrics.json").is_file()
        if importlib.util.find_spec("radiomics") is not None:
            main(["radiomics", "extract", str(tiny_cohort / "images"), str(tmp_path / "rad.csv"), "--region", "GTV-1",
                  "--workers", "2", *address])
            assert len(pd.read_csv(tmp_path / "rad.csv")) == 12

    finally:
        subprocess.run([str(ray_bin), "stop", "--force"], capture_output=True, timeout=120)


def test_gpu_embedding_asks_ray_for_a_gpu_and_a_cluster_without_one_is_refused(tmp_path, local_ray):
    """``embed.device: cuda`` on Ray: every embedding task reserves one GPU; a cluster with none
    (this CPU-only local instance) is refused before any task is submitted (Ray would otherwise
    wait for a GPU forever), and a kind that embeds on the CPU is refused at once."""
    import torch

    from ctsurv.build import compute_features
    from ctsurv.config import from_dict
    from ctsurv.exceptions import EmbedError

    cfg = from_dict({"embed": {"engine": "torch", "device": "cuda", "augment": False}, "train": {"threads": 1}})
    with pytest.raises(EmbedError, match="embed.kind '3d' embeds on the CPU"):
        compute_features(cfg.replace(embed={"kind": "3d"}), None, tmp_path, ["P1"], executor="ray")
    with pytest.raises(EmbedError, match="set embed.engine to 'torch'"):
        compute_features(cfg.replace(embed={"engine": "onnx"}), None, tmp_path, ["P1"], executor="ray")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the refusal of a GPU-less cluster is not observable here")
    with pytest.raises(CtsurvError, match="each task needs 1 GPU and the local Ray instance has 0"):
        compute_features(cfg, None, tmp_path, ["P1"], executor="ray")


def test_a_task_error_reaches_the_caller_and_bad_executors_are_refused(local_ray):
    from ctsurv.executor import check_executor, map_tasks

    with pytest.raises(CtsurvError, match="unknown executor 'dask'"):
        list(map_tasks(check_executor, [("local",)], executor="dask"))
    with pytest.raises(CtsurvError, match="unknown executor 'nope'"):  # raised inside a Ray task
        list(map_tasks(check_executor, [("local",), ("nope",)], executor="ray", workers=1))
    assert list(map_tasks(check_executor, [("local",), ("ray",)], executor="ray", workers=1)) == [None, None]
    # attached to one cluster, a task list addressed to another is refused, not run here
    here = ray.get_runtime_context().gcs_address
    host, _, port = here.rpartition(":")
    other = f"{host}:{int(port) + 1}"
    with pytest.raises(CtsurvError, match=f"already attached to the Ray cluster at {here}, not to {other}"):
        list(map_tasks(check_executor, [("local",)], executor="ray", address=other))
    # the attached cluster's own address runs there
    assert list(map_tasks(check_executor, [("local",)], executor="ray", address=here)) == [None]


def test_radiomics_extract_gives_one_table_wherever_the_patients_ran(tiny_cohort, tmp_path, local_ray):
    pytest.importorskip("radiomics", reason="the features come from PyRadiomics")
    import pandas as pd

    from ctsurv.radiomics import extract_features

    kw = {"regions": ("GTV-1", "Heart"), "calcium_regions": ("Lung L",), "classes": ("shape", "firstorder")}
    tables = {}
    for name, run in {"one process": {}, "two processes": {"workers": 2},
                      "ray": {"workers": 2, "executor": "ray"}}.items():
        out = tmp_path / name.replace(" ", "-") / "features.csv"
        tables[name] = (extract_features(tiny_cohort / "images", out, **kw, **run),
                        pd.read_csv(out.with_name("features.manifest.csv")))
    first, manifest = tables["one process"]
    assert len(first) == 12 and (manifest.status == "failed").sum() == 12  # no Heart ROI, each said so
    for name, (table, man) in tables.items():
        pd.testing.assert_frame_equal(table, first, obj=name)
        pd.testing.assert_frame_equal(man, manifest, obj=name)


def test_a_study_on_ray_compares_as_the_sequential_study_does(tiny_cohort, tmp_path, local_ray):
    import pandas as pd

    from ctsurv.study import run_study

    def spec(root):
        return {"name": "tiny",
                "base": {"seed": 11,
                         "data": {"images": str(tiny_cohort / "images"), "clinical": str(tiny_cohort / "clinical.csv"),
                                  "prepared": str(root / "prepared")},
                         "preprocess": {"size": 64}, "embed": {"backbone": "efficientnet-lite0", "augment": False},
                         "train": {"epochs": 2, "threads": 1}, "cv": {"n_folds": 3, "val_fraction": 0.2}},
                "reference": "soft",
                "configs": [{"name": "soft", "kind": "2d"},
                            {"name": "mean", "kind": "2d", "overrides": {"model": {"aggregator": "mean"}}}],
                "tables": [{"title": "Aggregators", "configs": ["mean", "soft"]}],
                "compare": {"n_permutations": 50, "n_bootstrap": 20}}

    sequential = run_study(spec(tmp_path / "a"), tmp_path / "a" / "out", progress=False)
    on_ray = run_study(spec(tmp_path / "b"), tmp_path / "b" / "out", progress=False, executor="ray", workers=2)
    for name in ("soft", "mean"):
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "a" / "out" / name / "predictions.csv"),
                                      pd.read_csv(tmp_path / "b" / "out" / name / "predictions.csv"), obj=name)
    cols = ["name", "ctd_fold_mean", "ctd_pooled", "p_vs_reference"]
    pd.testing.assert_frame_equal(sequential[cols], on_ray[cols])


def test_a_run_embedded_and_trained_on_ray_is_the_local_run(tiny_cohort, tmp_path, local_ray):
    import json

    import pandas as pd

    from conftest import tiny_config
    from ctsurv.pipeline import run_cv

    cfg = tiny_config(tiny_cohort, tmp_path / "prepared", cv={"n_folds": 3, "null_replicas": 3},
                      train={"epochs": 3, "threads": 2})  # 3 folds x 4 arms = 12 models = 2 groups
    run_cv(cfg, tmp_path / "local", progress=False)
    # its own prepared folder: the Ray run embeds every patient in Ray tasks, then trains there
    run_cv(cfg.replace(data={"prepared": str(tmp_path / "ray-prepared")}), tmp_path / "ray", progress=False,
           executor="ray")
    assert any((tmp_path / "ray-prepared" / "trunk-cache").rglob("*.npy"))
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "local" / "predictions.csv"),
                                  pd.read_csv(tmp_path / "ray" / "predictions.csv"))
    a, b = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("local", "ray"))
    assert a["ctd_mean"] == b["ctd_mean"] and a["null"] == b["null"] and a["per_fold"] == b["per_fold"]
