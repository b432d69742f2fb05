"""Benchmark: do seed 002's voxel-map channels add signal over the CT alone? (issue 16 item 7)

A phantom cohort with internal tumour heterogeneity (``ctsurv synth --heterogeneity on``: a
necrotic core fraction and a texture length drive the hazard beside volume and position,
:class:`ctsurv.synthetic.SurvivalModel`) is prepared once (tumour-centred slices and the voxel
maps of ``--maps``) and cross-validated with the tumour kind under seed 002's protocol
(``train.protocol: seed002``: Cox head, AdamW lr 1e-4, batch 16, 5 folds, flip / rotation /
scale augmentation), on one fold plan, in arms:

* ``ct``: the CT channel only;
* ``ct+maps``: the CT and the maps as channels;
* with ``--null K``: K label-permuted replicas of the ``ct+maps`` arm (``cv.null_replicas``),
  which must sit at chance.

Beside them, on the same patients: the oracle (Harrell's C of the true linear predictor), the
C of the true volume alone and of the true necrosis + texture terms alone (how much of the
signal lies beyond size), and each run's in-fold linear probe. The result is reported whichever
arm wins.

Usage::

    python bench/tumour_channels.py [--patients 120] [--epochs 40] [--null 1] [--dim 32]
        [--depth 2] [--state 16] [--maps firstorder_Mean,firstorder_Variance,glcm_Correlation] [--work DIR]

Prints a table, then one line of JSON, and writes ``bench/results/tumour_channels.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_name  # noqa: E402

from ctsurv.config import from_dict  # noqa: E402
from ctsurv.metrics import concordance_index  # noqa: E402
from ctsurv.pipeline import run_cv  # noqa: E402
from ctsurv.synthetic import SurvivalModel, write_phantom_cohort  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "tumour_channels.json"


def _c(truth: pd.DataFrame, score) -> float:
    return float(concordance_index(truth["time_months"].to_numpy(float), truth["event"].to_numpy(int),
                                   np.asarray(score, float)))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--patients", type=int, default=120)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--null", type=int, default=1)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--state", type=int, default=16)
    ap.add_argument("--maps", default="firstorder_Mean,firstorder_Variance,glcm_Correlation")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default="bench-work/tumour-channels")
    ap.add_argument("--out", default=str(RESULTS))
    a = ap.parse_args(argv)

    work = Path(a.work)
    model = SurvivalModel(heterogeneity=True)
    t0 = time.perf_counter()
    if not (work / "cohort" / "clinical.csv").is_file():
        write_phantom_cohort(work / "cohort", a.patients, seed=a.seed, model=model, workers=a.threads,
                             progress=True)
    truth = pd.read_csv(work / "cohort" / "truth.csv")
    if len(truth) != a.patients:
        raise SystemExit(f"{work / 'cohort'} holds {len(truth)} patients, not {a.patients}: use another --work")
    t_cohort = time.perf_counter() - t0
    maps = [m.strip() for m in a.maps.split(",") if m.strip()]
    x_vol = (np.log(truth["volume_ml"]) - model.volume_log_mean) / model.volume_log_sd
    # the hazard's two heterogeneity terms (the model's midpoints give 0 for both)
    mid_n, mid_t = np.mean(model.necrosis_range), np.mean(model.texture_range_mm)
    beyond = model.linear_predictor(truth["volume_ml"], truth["z_rel"], truth["necrosis_fraction"],
                                    truth["texture_mm"]) - model.linear_predictor(
        truth["volume_ml"], truth["z_rel"], mid_n, mid_t)
    reference = {"oracle": _c(truth, truth["eta"]), "volume_only": _c(truth, x_vol),
                 "necrosis_texture_only": _c(truth, beyond)}

    rows, runs = [], {}
    for arm, channels in (("ct", ["ct"]), ("ct+maps", ["ct", *maps])):
        cfg = from_dict({
            "seed": 42,
            "data": {"images": str(work / "cohort" / "images"), "clinical": str(work / "cohort" / "clinical.csv"),
                     "prepared": str(work / "prepared"), "tumour_roi": "GTV-1"},
            "model": {"channels": channels, "ssm_dim": a.dim, "ssm_depth": a.depth, "ssm_state": a.state},
            "train": {"protocol": "seed002", "epochs": a.epochs, "threads": a.threads},
            "cv": {"null_replicas": a.null if arm == "ct+maps" else 0}})
        t1 = time.perf_counter()
        m = run_cv(cfg, work / f"run-{arm.replace('+', '-')}", progress=True)
        runs[arm] = {"seconds": round(time.perf_counter() - t1, 1), "metrics": m}
        null = m.get("null") or {}
        rows.append({"arm": arm, "channels": ",".join(channels), "ctd_mean": m.get("ctd_mean"),
                     "ctd_sd": m.get("ctd_std"), "probe_ctd_mean": (m.get("probe") or {}).get("ctd_mean"),
                     "null_ctd_mean": null.get("mean_ctd_fold_mean"), "null_p": null.get("p_value_fold_mean"),
                     "seconds": runs[arm]["seconds"]})
    table = pd.DataFrame(rows)
    print(f"oracle C {reference['oracle']:.3f}; volume only {reference['volume_only']:.3f}; "
          f"necrosis + texture only {reference['necrosis_texture_only']:.3f}")
    print(table.to_string(index=False))
    result = {"command": "python bench/tumour_channels.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "cpu": cpu_name(platform.processor()), "threads": a.threads, "patients": a.patients,
              "seed": a.seed, "epochs": a.epochs, "ssm_dim": a.dim, "ssm_depth": a.depth, "ssm_state": a.state, "maps": maps,
              "cohort_seconds": round(t_cohort, 1), "reference": reference, "arms": rows, "runs": runs}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2, default=float))
    print(json.dumps({"reference": reference, "arms": rows}, default=float))
    return result


if __name__ == "__main__":
    main()
