"""Study: seed 002's design on phantoms: pre-train on a source cohort, fine-tune on a small target
with the stem and early blocks frozen, test on an external cohort (issue 16 item 8).

Three phantom cohorts with internal tumour heterogeneity (``ctsurv synth --heterogeneity on``,
the same hazard in all three) and no patient in common:

* **source** (``--source N``, reference scanner): ``ctsurv fit`` of the tumour kind under
  ``train.protocol: seed002`` (the pre-trained model);
* **target** (``--target N``, the ``sharp`` scanner profile: other noise, kernel, calibration
  and pixel size): ``ctsurv transfer-study --freeze stem early-blocks`` (``--repeats`` paired
  5-fold runs from scratch and fine-tuned from the source, with the source's direct evaluation
  on the target), then a final model of each kind on the whole target;
* **external** (``--external N``, the ``smooth`` profile): ``ctsurv validate-external`` of the
  source model, the target's scratch model and its fine-tuned model, unchanged.

Usage::

    python bench/seed002_design.py [--source 120] [--target 48] [--external 48] [--repeats 2]
        [--epochs 40] [--dim 32] [--depth 2] [--state 8] [--maps firstorder_Mean,...] [--work DIR]

Prints the table and writes ``bench/results/seed002_design.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_name  # noqa: E402

from ctsurv.config import from_dict  # noqa: E402
from ctsurv.predict import fit_final, validate_external  # noqa: E402
from ctsurv.synthetic import SurvivalModel, scanner_params, write_phantom_cohort  # noqa: E402
from ctsurv.transfer import finetune_config  # noqa: E402
from ctsurv.transfer_study import transfer_study  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "seed002_design.json"
FREEZE = ("stem", "early-blocks")


def _config(cohort: Path, prepared: Path, a, seed: int = 42):
    return from_dict({
        "seed": seed,
        "data": {"images": str(cohort / "images"), "clinical": str(cohort / "clinical.csv"),
                 "prepared": str(prepared), "tumour_roi": "GTV-1"},
        "model": {"channels": ["ct", *a.maps], "ssm_dim": a.dim, "ssm_depth": a.depth, "ssm_state": a.state},
        "train": {"protocol": "seed002", "epochs": a.epochs, "threads": a.threads}})


def _f(v, spec: str = ".3f") -> str:
    return "n/a" if v is None else format(float(v), spec)


def _p(h: dict) -> str:
    if h["logrank_p"] is None and h.get("n_high") is not None:
        return f"none: {h['n_high']} high / {h['n_low']} low at the cut"
    return _f(h["logrank_p"], ".3g")


def _headline(res: dict) -> dict:
    ev = res["evaluation"]
    c, ctd = ev.get("cindex") or {}, ev.get("ctd") or {}
    return {"n": res["n_patients"], "cindex": c.get("value"), "cindex_ci": [c.get("ci_low"), c.get("ci_high")],
            "ctd": ctd.get("value"), "ctd_ci": [ctd.get("ci_low"), ctd.get("ci_high")],
            "logrank_p": (ev.get("risk_groups") or {}).get("logrank_p"),
            # no p when every patient falls on one side of the model's training-median cut
            "n_high": (ev.get("risk_groups") or {}).get("n_high"),
            "n_low": (ev.get("risk_groups") or {}).get("n_low")}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", type=int, default=120)
    ap.add_argument("--target", type=int, default=48)
    ap.add_argument("--external", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--state", type=int, default=8)
    ap.add_argument("--maps", default="firstorder_Mean,firstorder_Variance,glcm_Correlation")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default="bench-work/seed002-design")
    ap.add_argument("--out", default=str(RESULTS))
    a = ap.parse_args(argv)
    a.maps = [m.strip() for m in a.maps.split(",") if m.strip()]
    work = Path(a.work)
    model = SurvivalModel(heterogeneity=True)
    t0 = time.perf_counter()
    cohorts = {}
    for name, n, seed, scanner, prefix in (("source", a.source, 21, "reference", "SRC"),
                                            ("target", a.target, 22, "sharp", "TGT"),
                                            ("external", a.external, 23, "smooth", "EXT")):
        root = work / name
        if not (root / "clinical.csv").is_file():
            write_phantom_cohort(root, n, seed=seed, model=model, params=scanner_params(scanner),
                                 id_prefix=prefix, workers=a.threads, progress=True)
        cohorts[name] = root
    src_cfg = _config(cohorts["source"], work / "source-prepared", a)
    tgt_cfg = _config(cohorts["target"], work / "target-prepared", a)
    source_model = work / "source-model"
    if not (source_model / "model.json").is_file():
        fit_final(src_cfg, source_model)
    study = transfer_study(tgt_cfg, source_model, work / "transfer-study", repeats=a.repeats, freeze=FREEZE)
    finals = {"scratch": (tgt_cfg, work / "target-scratch-model"),
              "fine-tuned": (finetune_config(tgt_cfg, source_model, freeze=FREEZE), work / "target-finetuned-model")}
    for cfg, path in finals.values():
        if not (path / "model.json").is_file():
            fit_final(cfg, path)
    ext = cohorts["external"]
    external = {}
    for name, path in (("source only", source_model), ("target from scratch", finals["scratch"][1]),
                       ("target fine-tuned", finals["fine-tuned"][1])):
        res = validate_external(path, ext / "images", ext / "clinical.csv",
                                work / "external" / name.replace(" ", "-"), progress=True)
        external[name] = _headline(res)
    seconds = round(time.perf_counter() - t0, 1)
    result = {"command": "python bench/seed002_design.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "cpu": cpu_name(platform.processor()), "threads": a.threads, "seconds": seconds,
              "sizes": {"source": a.source, "target": a.target, "external": a.external},
              "scanners": {"source": "reference", "target": "sharp", "external": "smooth"},
              "epochs": a.epochs, "ssm_dim": a.dim, "ssm_depth": a.depth, "ssm_state": a.state, "maps": a.maps,
              "freeze": list(FREEZE), "transfer_study": study, "external": external}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2, default=float))
    print(Path(work / "transfer-study" / "table.md").read_text())
    print("| model | external C-index (95 % CI) | external Ctd (95 % CI) | log-rank p (training-median cut) |")
    print("|---|---|---|---|")
    for name, h in external.items():
        print(f"| {name} | {_f(h['cindex'])} ({_f(h['cindex_ci'][0])}-{_f(h['cindex_ci'][1])}) | "
              f"{_f(h['ctd'])} ({_f(h['ctd_ci'][0])}-{_f(h['ctd_ci'][1])}) | {_p(h)} |")
    return result


if __name__ == "__main__":
    main()
