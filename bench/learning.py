"""Benchmark: does the reference method learn at my cohort size? Oracle, probe and model per
hazard family and cohort size, with label-permuted controls.

Families share the demo's phantom images (``demo-run``: generated, prepared and embedded when
absent, as ``bench/train.py`` does) and redraw every patient's outcome from its true tumour
volume and position (``truth.csv``) with another Weibull proportional-hazards model
(:class:`ctsurv.synthetic.survival.SurvivalModel`, ``beta_volume`` / ``beta_position``):

========== ============ ============== ===================================================
family     beta_volume  beta_position  what drives survival
========== ============ ============== ===================================================
demo       2.0          0.5            the demo generator's own hazard (strong, size-led)
size       1.0          0              tumour size only, half the demo's strength
position   0            1.0            cranio-caudal position only
size+pos   1.0          0.5            both, weaker than the demo
null       0            0              nothing: every method must sit at chance
========== ============ ============== ===================================================

Not covered yet (the issue asks for them): other chest anatomies, an internal-texture driver,
and 415 patients (the demo has 240 phantoms).

For each family and size ``n`` (the first ``n`` demo patients), on one stratified 10-fold plan
(seed 42, 10 % of each fold's training patients for validation):

* ``oracle``: Harrell's C of the true linear predictor on the outcomes censored at 24 months;
* ``probe``: the run's in-fold linear probe (:func:`ctsurv.probe.probe_cv`: mean-pooled
  features, standardisation, PCA 10, ridge Cox with inner-CV penalty), mean fold Ctd;
* ``paper``: seed 000's protocol as ``ctsurv run`` trains it (the batched trainer, 100 epochs,
  selection on validation Ctd; augmentation off as in the demo), mean fold Ctd (Antolini), the
  kept models' mean training Ctd, and how many folds had fewer than 100 validation pairs;
* ``--variants JSON``: candidate protocols trained on the same folds, e.g.
  ``'{"shallow": {"model": {"shared_layers": 1, "cs_layers": 1}, "train": {"epochs": 50}}}'``
  (sections and keys of the run configuration);
* ``--permuted``: the same with labels permuted across patients (a control: must be ~0.5).

Usage::

    python bench/learning.py [--families demo,size,position,size+pos,null] [--sizes 100,150,240]
                             [--epochs 100] [--permuted] [--demo demo-run]

Prints a table, then one line of JSON, and writes ``bench/results/learning.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from _machine import cpu_name  # bench/ is the script's folder
from ctsurv.build import compute_features, get_kind, network_factory
from ctsurv.demo import DEMO_N_PATIENTS, demo_config
from ctsurv.metrics import concordance_index, concordance_td
from ctsurv.pipeline import cohort_arrays, prepare_step
from ctsurv.probe import pool_features, probe_cv
from ctsurv.seeds import int_seed
from ctsurv.synthetic import write_phantom_cohort
from ctsurv.synthetic.survival import SurvivalModel
from ctsurv.train import TrainConfig, learning_diagnostics, predict
from ctsurv.train_batched import CohortTensors, Replica, train_replicas
from ctsurv.validate import stratified_folds

FAMILIES = {"demo": (2.0, 0.5), "size": (1.0, 0.0), "position": (0.0, 1.0), "size+pos": (1.0, 0.5),
            "null": (0.0, 0.0)}
HORIZON = 24.0


def family_outcomes(name: str, truth: pd.DataFrame, seed: int = 7):
    """Redrawn ``(time, event, eta)`` of every patient under family ``name``."""
    bv, bz = FAMILIES[name]
    model = SurvivalModel(beta_volume=bv, beta_position=bz)
    eta = model.linear_predictor(truth["volume_ml"].to_numpy(), truth["z_rel"].to_numpy())
    o = model.sample_outcomes(eta, rng=np.random.default_rng([seed, list(FAMILIES).index(name)]))
    return o["time_months"], o["event"], eta


def one_setting(cfg, encoder, patients, ids, time_, event, *, seed: int, variants=None) -> dict:
    """Probe, paper protocol and variants on one 10-fold plan of these patients and labels."""
    plan = stratified_folds(ids, time_, event, n_folds=cfg.cv.n_folds, val_fraction=cfg.cv.val_fraction,
                            horizon=HORIZON, seed=seed)
    pos = {p: i for i, p in enumerate(ids)}
    sel = [{r: np.array([pos[p] for p in plan.patients(k, r)]) for r in ("train", "val", "test")}
           for k in range(cfg.cv.n_folds)]
    grid = cfg.time_grid
    folds = [(np.r_[s["train"], s["val"]], s["test"]) for s in sel]
    probe = probe_cv(pool_features(patients), time_, event, folds, times=grid.times, inner_folds=5,
                     seed=int_seed(seed, "models", 0, 0, 0))
    replicas = [Replica(s["train"], time_[s["train"]], event[s["train"]], s["val"], time_[s["val"]],
                        event[s["val"]], int_seed(seed, "models", 0, k)) for k, s in enumerate(sel)]
    cohort = CohortTensors.from_features(patients)
    out = {"probe": float(np.nanmean(probe["ctd"])), "probe_sd": float(np.nanstd(probe["ctd"], ddof=1))}
    for name, vcfg in [("paper", cfg), *((n, cfg.replace(**v)) for n, v in (variants or {}).items())]:
        t0 = time.perf_counter()
        results = train_replicas(network_factory(vcfg, encoder), cohort,
                                 replicas, TrainConfig.from_run(vcfg, seed=0))
        train_s = time.perf_counter() - t0
        ctd, diag = [], []
        for s, res in zip(sel, results):
            surv, _ = predict(res.model, [patients[i] for i in s["test"]])
            ctd.append(float(concordance_td(time_[s["test"]], event[s["test"]], surv, grid.times)))
            diag.append(learning_diagnostics(res, time_[s["val"]], event[s["val"]]))
        train_ctd = [d["train_ctd_kept"] for d in diag if d["train_ctd_kept"] is not None]
        out.update({name: float(np.mean(ctd)), f"{name}_sd": float(np.std(ctd, ddof=1)),
                    f"{name}_per_fold": ctd, f"{name}_train_ctd_kept": float(np.mean(train_ctd)),
                    f"{name}_kept_epochs": [d["kept_epoch"] for d in diag],
                    f"{name}_folds_few_val_pairs": sum("few_validation_pairs" in d["flags"] for d in diag),
                    f"{name}_train_s": round(train_s, 1)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--sizes", default="100,150,240")
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--permuted", action="store_true", help="also train on permuted labels")
    ap.add_argument("--variants", default="{}", help="JSON: name -> run-configuration sections")
    ap.add_argument("--demo", default="demo-run")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "learning.json"))
    a = ap.parse_args()
    families = a.families.split(",")
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise SystemExit(f"unknown families {unknown}; known: {list(FAMILIES)}")
    sizes = [int(s) for s in a.sizes.split(",")]
    variants = json.loads(a.variants)

    root = Path(a.demo)
    cfg, cohort_dir = demo_config(root, n_patients=DEMO_N_PATIENTS, epochs=a.epochs, permute=False, seed=42)
    if not (cohort_dir / "clinical.csv").exists():
        print(f"generating the demo's {DEMO_N_PATIENTS} phantom patients in {cohort_dir}")
        write_phantom_cohort(cohort_dir, n_patients=DEMO_N_PATIENTS, seed=42, workers=2)
    _, prepared = prepare_step(cfg, root, progress=True)
    ids, _, _ = cohort_arrays(cfg, prepared)
    if max(sizes) > len(ids):
        raise SystemExit(f"{root} has {len(ids)} prepared patients, fewer than {max(sizes)}")
    encoder = get_kind(cfg).build_encoder(cfg)
    feats = compute_features(cfg, encoder, prepared, ids, progress=True)
    truth = pd.read_csv(cohort_dir / "truth.csv", dtype={"PatientID": str}).set_index("PatientID").loc[ids]

    rows = []
    print(f"{'family':<10} {'n':>4} {'deaths<24m':>10} {'oracle':>7} {'probe':>7} {'paper':>13} "
          f"{'train Ctd':>9} {'permuted':>9}" + "".join(f" {v:>13}" for v in variants))
    for fam in families:
        t_all, e_all, eta_all = family_outcomes(fam, truth)
        for n in sizes:
            t, e, eta = t_all[:n], e_all[:n], eta_all[:n]
            patients = [feats[p] for p in ids[:n]]
            t24, e24 = np.minimum(t, HORIZON), e * (t <= HORIZON)
            row = {"family": fam, "n": n, "beta_volume": FAMILIES[fam][0], "beta_position": FAMILIES[fam][1],
                   "deaths_24m": int(e24.sum()), "oracle_c": float(concordance_index(t24, e24, eta))}
            row.update(one_setting(cfg, encoder, patients, ids[:n], t, e, seed=cfg.seed, variants=variants))
            if a.permuted:
                perm = np.random.default_rng([cfg.seed, n, 1]).permutation(n)
                p = one_setting(cfg, encoder, patients, ids[:n], t[perm], e[perm], seed=cfg.seed)
                row.update(permuted_probe=p["probe"], permuted_paper=p["paper"])
            rows.append(row)
            perm_txt = f"{row['permuted_paper']:9.3f}" if "permuted_paper" in row else f"{'-':>9}"
            print(f"{fam:<10} {n:>4} {row['deaths_24m']:>10} {row['oracle_c']:7.3f} {row['probe']:7.3f} "
                  f"{row['paper']:6.3f} ± {row['paper_sd']:.3f} {row['paper_train_ctd_kept']:9.3f} {perm_txt}"
                  + "".join(f" {row[v]:6.3f} ± {row[v + '_sd']:.3f}" for v in variants), flush=True)
    res = {"command": "python bench/learning.py " + shlex.join(sys.argv[1:]), "cpu": cpu_name(),
           "what": "oracle C, in-fold linear probe and seed 000's protocol (mean fold Ctd, 10 folds) per "
                   "hazard family and cohort size on the demo's phantom images",
           "epochs": a.epochs, "folds": cfg.cv.n_folds, "variants": variants, "rows": rows,
           "machine": {"platform": platform.platform(), "cpu_count": __import__("os").cpu_count()},
           "torch": torch.__version__}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps([{k: r[k] for k in ("family", "n", "oracle_c", "probe", "paper", *variants)} for r in rows]))


if __name__ == "__main__":
    main()
