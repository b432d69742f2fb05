"""The ``ctsurv`` command: parsing only; the work lives in the stage modules."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ctsurv.config import PROTOCOLS
from ctsurv.demo import DEMO_N_PATIENTS, demo_config  # noqa: F401  (re-exported for bench/)
from ctsurv.exceptions import CtsurvError


def _cmd_synth(a) -> None:
    from ctsurv.synthetic import SurvivalModel, scanner_params, write_phantom_cohort

    kw: dict = {}
    if a.heterogeneity != "off":
        kw.update(heterogeneity=True, **({"beta_necrosis": 0.0, "beta_texture": 0.0} if a.heterogeneity == "null" else {}))
    if a.regions != "off":
        kw.update(regions=True, **({"beta_nodes": 0.0, "beta_calcium": 0.0} if a.regions == "null" else {}))
    model = SurvivalModel(**kw)
    info = write_phantom_cohort(a.out, n_patients=a.n_patients, seed=a.seed, workers=a.workers,
                                progress=not a.no_progress, params=scanner_params(a.scanner),
                                id_prefix=a.id_prefix, model=model)
    print(f"[ctsurv] phantom cohort written to {a.out} ({info})")


#: the --labels option of prepare, predict and validate-external
LABELS_HELP = ("label images, DIR/<patient ID>/<region>.nii.gz (or .nrrd, .mha): the tumour region "
               "(--tumour-roi / data.tumour_roi) is read from the file named after it instead of RTSTRUCT/SEG")


def _use_synonyms(a) -> None:
    """``--roi-synonyms FILE``: the user's synonym groups for this process and its workers."""
    if getattr(a, "roi_synonyms", None):
        from ctsurv.io.seg import SYNONYMS_ENV

        if not Path(a.roi_synonyms).is_file():
            raise SystemExit(f"ctsurv: error: --roi-synonyms {a.roi_synonyms}: no such file")
        os.environ[SYNONYMS_ENV] = str(Path(a.roi_synonyms).resolve())


#: the --executor and --address options of prepare and radiomics extract
EXECUTOR_HELP = "where the per-patient tasks run: local processes (default) or Ray (pip install 'ctsurv[ray]')"
ADDRESS_HELP = ("with --executor ray: the cluster to join (e.g. ray://head:10001 or auto); default a local Ray "
                "instance of --workers CPUs")

#: the --roi-synonyms option of prepare and radiomics extract
SYNONYMS_HELP = ("YAML of ROI-name synonym groups ('canonical: [aliases]'), merged with the packaged "
                 "configs/roi_synonyms.yaml (sets $CTSURV_ROI_SYNONYMS)")


def _cmd_prepare(a) -> None:
    from ctsurv.prepare import prepare_cohort, summarize_manifest

    _use_synonyms(a)
    voxel = None
    if a.voxel_maps:
        feats = None if a.voxel_maps.strip() == "all" else [f.strip() for f in a.voxel_maps.split(",") if f.strip()]
        voxel = {"features": feats, "kernel_radius": a.voxel_kernel_radius, "bin_width": a.voxel_bin_width}
    manifest = prepare_cohort(a.images, a.clinical, a.out, workers=a.workers,
                              progress=not a.no_progress, horizon_months=a.horizon,
                              tumour_roi=a.tumour_roi, voxel_maps=voxel, labels=a.labels,
                              executor=a.executor, address=a.address,
                              tumour_input=True if a.tumour_slices else None)
    print(f"[ctsurv] {summarize_manifest(manifest)}; manifest: {Path(a.out) / 'manifest.csv'}")


def _cmd_run(a) -> None:
    from ctsurv.config import load_config
    from ctsurv.pipeline import run_cv

    cfg = load_config(a.config)
    if a.permute_labels:
        cfg = cfg.replace(permute_labels=True)
    cv = {k: v for k, v in (("null_replicas", a.null), ("repeats", a.repeats)) if v is not None}
    if cv:
        cfg = cfg.replace(cv=cv)
    if a.protocol is not None:
        cfg = cfg.replace(train={"protocol": a.protocol})
    out = a.out or Path(a.config).with_suffix("")
    run_cv(cfg, out, progress=not a.no_progress, executor=a.executor, address=a.address)


def _cmd_demo(a) -> None:
    import pandas as pd

    from ctsurv.demo import demo_summary
    from ctsurv.pipeline import headline, run_cv
    from ctsurv.synthetic import write_phantom_cohort

    out = Path(a.out)
    cfg, cohort = demo_config(out, n_patients=a.n_patients, epochs=a.epochs,
                              permute=a.permute_labels, seed=a.seed, repeats=a.repeats, null=a.null)
    clinical = cohort / "clinical.csv"
    n_written = len(pd.read_csv(clinical)) if clinical.exists() else 0
    if n_written != a.n_patients:
        print(f"[ctsurv] demo: generating {a.n_patients} phantom patients in {cohort}")
        write_phantom_cohort(cohort, n_patients=a.n_patients, seed=a.seed, workers=2,
                             progress=not a.no_progress)
    print("[ctsurv] demo: seed 000's protocol with augmentation off (see README, 'The demo'); "
          f"{a.repeats} fold assignment(s), {a.null} null replica(s)")
    run_dir = out / ("run-permuted" if a.permute_labels else "run")
    metrics = run_cv(cfg, run_dir, progress=not a.no_progress)
    summary = demo_summary(run_dir, cohort, out / "prepared", horizon=cfg.data.horizon_months)
    print(f"[ctsurv] demo finished in {metrics['seconds']:.0f} s. {headline(metrics)}")
    k = summary["km"]
    print(f"[ctsurv]   risk groups (training-median split): log-rank chi2 {k['logrank_chi2']:.1f}, "
          f"p {k['logrank_p']:.1e}; attention peaks at relative position "
          f"{summary['attention']['peak_bin_centre']:.3f}, tumours at {summary['tumour']['rel_pos_mean']:.3f}")
    print(f"[ctsurv]   summary: {run_dir / 'summary.json'}; metrics: {run_dir / 'metrics.json'}; "
          f"predictions: {run_dir / 'predictions.csv'}; figures: {run_dir / 'figures'}")
    from ctsurv.report import write_run_report

    report = write_run_report(run_dir, out / "report.html")
    print(f"[ctsurv] demo report (open in a browser): {report.resolve()}")


def _cmd_fit(a) -> None:
    from ctsurv.config import load_config
    from ctsurv.predict import fit_final

    path = fit_final(load_config(a.config), a.out, progress=not a.no_progress)
    print(f"[ctsurv] model saved to {path}")


def _cmd_finetune(a) -> None:
    from ctsurv.config import load_config
    from ctsurv.pipeline import run_cv
    from ctsurv.transfer import finetune_config

    cfg = finetune_config(load_config(a.config), getattr(a, "from"), freeze=a.freeze or (), lr=a.lr,
                          epochs=a.epochs, selection=a.selection, adopt_settings=a.adopt_source_settings)
    run_cv(cfg, a.out, progress=not a.no_progress)


def _cmd_transfer_study(a) -> None:
    from ctsurv.config import load_config
    from ctsurv.transfer_study import transfer_study

    transfer_study(load_config(a.config), getattr(a, "from"), a.out, repeats=a.repeats,
                   freeze=a.freeze or (), lr=a.lr, epochs=a.epochs,
                   adopt_settings=a.adopt_source_settings, external=not a.no_external,
                   progress=not a.no_progress)
    print((Path(a.out) / "table.md").read_text())
    print(f"[ctsurv] tables: {Path(a.out) / 'table.md'}, {Path(a.out) / 'table.csv'}")


def _cmd_explain(a) -> None:
    from ctsurv.predict import explain_run

    explain_run(a.run, a.out, patients=a.patients, top_k=a.top_k, progress=not a.no_progress)


def _cmd_predict(a) -> None:
    from ctsurv.predict import predict_patients

    preds = predict_patients(a.model, a.images, a.out, top_k=a.top_k, progress=not a.no_progress,
                             report=not a.no_report, n_passes=a.passes, labels=a.labels)
    print(f"[ctsurv] scored {len(preds)} patients; see {Path(a.out) / 'predictions.csv'}"
          + ("" if a.no_report else f" and {Path(a.out) / 'index.html'}"))


def _cmd_validate_external(a) -> None:
    from ctsurv.predict import validate_external

    res = validate_external(a.model, a.images, a.clinical, a.out,
                            calibration_subset=a.calibration_subset, n_bootstrap=a.bootstrap,
                            seed=a.seed, progress=not a.no_progress, labels=a.labels)
    ev = res["evaluation"]
    ctd = (ev.get("ctd") or {}).get("value")
    words = f"Ctd {ctd:.3f}" if ctd is not None else "Ctd undefined"
    if ev.get("mean_predicted_survival") is not None:
        words += (f"; {ev['calibration_horizon']}-month survival: mean predicted "
                  f"{ev['mean_predicted_survival']:.3f} vs Kaplan-Meier {ev['km_survival']:.3f}")
    print(f"[ctsurv] external validation on {res.get('n_evaluated', res['n_patients'])} patients: "
          f"{words}; see {Path(a.out) / 'validation.json'}")


def _cmd_evaluate(a) -> None:
    from ctsurv.evaluate import evaluate_predictions

    evaluate_predictions(a.predictions, a.out, horizons=a.horizons, n_bootstrap=a.bootstrap,
                         seed=a.seed, implausible_above=a.implausible_above)
    print(f"[ctsurv] evaluation written to {a.out}")


def _cmd_table1(a) -> None:
    import pandas as pd

    from ctsurv._util import atomic_to_csv, atomic_write_text
    from ctsurv.exceptions import CohortError
    from ctsurv.seeds import rng
    from ctsurv.stats.table1 import table1, table1_markdown

    try:
        data = pd.read_csv(a.clinical)
    except (OSError, ValueError) as exc:
        raise CohortError(f"cannot read the clinical table {a.clinical}: {exc}") from exc
    table = table1(data, a.groups, variables=a.variables, categorical=a.categorical or (),
                   continuous=a.continuous or (), max_levels=a.max_levels, n_resamples=a.resamples,
                   rng=rng(a.seed, "table1"))
    out = Path(a.out)
    atomic_to_csv(out / "table1.csv", table, index=False)
    markdown = table1_markdown(table, title=f"Table 1 by {a.groups}")
    atomic_write_text(out / "table1.md", markdown)
    print(markdown)
    print(f"[ctsurv] {out / 'table1.md'} and {out / 'table1.csv'}")


def _cmd_report(a) -> None:
    from ctsurv.report import write_run_report

    path = write_run_report(a.run, a.out)
    print(f"[ctsurv] report of {a.run} written to {path} ({path.stat().st_size / 1024:.0f} KiB)")
    if a.screenshot:
        from ctsurv._browser import open_in_chromium

        seen = open_in_chromium(path, screenshot=a.screenshot, full_page=a.full_page)
        errors = [t for kind, t in seen["console"] if kind == "error"] + seen["page_errors"]
        print(f"[ctsurv] screenshot (headless Chromium) written to {a.screenshot}"
              + (f"; the page logged {len(errors)} error(s): {errors[:3]}" if errors else ""))


def _cmd_binary(a) -> None:
    from ctsurv.evaluate.binary import binary_evaluation

    res = binary_evaluation(a.run, a.out, horizon=a.horizon, threshold=a.threshold,
                            target=a.target, calibration=a.calibration, weighting=a.weighting,
                            implausible_above=a.implausible_above)
    sm = res["summary"]

    def f(m):
        v = sm[m]
        if v["mean"] is None:
            return f"{m} undefined"
        iv = f" [{v['low']:.3f}, {v['high']:.3f}]" if v["low"] is not None else ""
        return f"{m} {v['mean']:.3f}{iv}"

    print(f"[ctsurv] death by {res['horizon']:g} months ({res['weighting']} weights, "
          f"{res['calibration']} calibration, {res['threshold_rule']} threshold on each fold's "
          f"validation patients), mean over {res['n_folds']} folds with "
          f"{100 * res['level']:.0f}% intervals: "
          + "; ".join(f(m) for m in ("auc", "sensitivity", "specificity", "f1", "brier"))
          + f"; see {Path(a.out or a.run) / 'binary.json'}")
    if res["plausibility"]["warning"]:
        print("[ctsurv] WARNING: " + res["plausibility"]["warning"])


def _cmd_compare(a) -> None:
    from ctsurv.evaluate import compare_runs

    table = compare_runs(a.runs, a.out, reference=a.reference, n_permutations=a.permutations,
                         n_bootstrap=a.bootstrap, seed=a.seed)
    print(table.to_string(index=False))


def _cmd_study(a) -> None:
    from ctsurv.study import run_study

    data = {k: v for k, v in (("images", a.images), ("clinical", a.clinical),
                              ("prepared", a.prepared)) if v}
    table = run_study(a.study, a.out, progress=not a.no_progress,
                      overrides={"data": data} if data else None, only=a.only, executor=a.executor,
                      workers=a.workers, address=a.address)
    print(table[["name", "kind", "ctd_fold_mean", "ctd_fold_std", "ctd_pooled", "p_vs_reference",
                 "params_trainable", "gflops"]].to_string(index=False))
    print(f"[ctsurv] tables: {Path(a.out) / 'comparison.md'}; chart: {Path(a.out) / 'bubble.png'}")


def _cmd_rad_extract(a) -> None:
    from ctsurv.radiomics import extract_features

    _use_synonyms(a)
    fm = tuple(a.fm_region or ())
    regions = tuple(a.region) if a.region else (() if (fm or a.fm_seeds) else ("GTV-1",))
    df = extract_features(a.images, a.out_csv, regions=regions, cache_dir=a.cache_dir,
                          patients=a.patients, calcium_regions=tuple(a.calcium_region or ()),
                          fm_regions=fm, fm_weights=a.fm_weights, fm_encoder=a.fm_encoder,
                          cube_mm=a.cube_mm, labels=a.labels, fm_seeds=a.fm_seeds, workers=a.workers,
                          executor=a.executor, address=a.address)
    print(f"[ctsurv] {len(df)} patients x {df.shape[1] - 1} features written to {a.out_csv}")


def _cmd_rad_fit(a) -> None:
    from ctsurv.radiomics.track import fit_cv

    fit_cv(a.features or None, a.clinical, a.out, model=a.model, n_folds=a.folds, seed=a.seed,
           n_trials=a.trials, batch_col=a.batch_col, corr_threshold=a.corr_threshold,
           pca_components=tuple(a.pca or ()))
    print(f"[ctsurv] radiomics run written to {a.out}; evaluate with "
          f"`ctsurv evaluate --predictions {Path(a.out) / 'predictions.csv'} --out ...`")


def _cmd_rad_ensemble(a) -> None:
    from ctsurv.radiomics.track import ensemble_runs

    ensemble_runs(a.runs, a.out)
    print(f"[ctsurv] ensemble written to {a.out}")


def _cmd_rad_consensus(a) -> None:
    from ctsurv.radiomics.track import consensus_classification

    table = consensus_classification(a.runs, horizons=tuple(a.horizons))
    print(table.to_string(index=False))
    if a.out:
        table.to_csv(a.out, index=False)


def _add_radiomics(sub) -> None:
    r = sub.add_parser("radiomics", help="handcrafted radiomics + clinical Cox track (seed 003)")
    rs = r.add_subparsers(dest="radiomics_command", required=True)
    s = rs.add_parser("extract", help="images + RTSTRUCT masks -> feature table (PyRadiomics)")
    s.add_argument("images")
    s.add_argument("out_csv")
    s.add_argument("--region", action="append", default=None,
                   help="RTSTRUCT ROI name or 'lungs' (repeatable; default GTV-1, none when --fm-region is given)")
    s.add_argument("--calcium-region", action="append", default=None,
                   help="ROI scored for coronary calcium (Agatston, volume, mass; repeatable)")
    s.add_argument("--fm-region", action="append", default=None,
                   help="region whose tumour-centred cube gives foundation-model features (repeatable)")
    s.add_argument("--fm-weights", help="weights file of the FM encoder (FMCIB's model_weights.torch); "
                   "'random' only to test the plumbing")
    s.add_argument("--fm-encoder", default="fmcib-resnet50", help="3D encoder of the registry for --fm-region")
    s.add_argument("--cube-mm", type=float, default=50.0, help="edge of the FM cube, mm (1 mm isotropic)")
    s.add_argument("--fm-seeds", metavar="CSV", help="seed points for FM cubes instead of a mask: patient_id, "
                   "x, y, z (mm) and optional space (LPS, default, or RAS); columns seed:fm_*")
    s.add_argument("--labels", metavar="DIR", help=LABELS_HELP)
    s.add_argument("--roi-synonyms", metavar="FILE", help=SYNONYMS_HELP)
    s.add_argument("--cache-dir")
    s.add_argument("--patients", nargs="+")
    s.add_argument("--workers", type=int, default=1, help="patients in parallel (processes, or Ray CPUs)")
    s.add_argument("--executor", choices=("local", "ray"), default="local", help=EXECUTOR_HELP)
    s.add_argument("--address", help=ADDRESS_HELP)
    s.set_defaults(func=_cmd_rad_extract)
    s = rs.add_parser("fit", help="feature table(s) + cohort -> cross-validated Cox run folder")
    s.add_argument("features", nargs="*", help="feature CSV(s), joined on patient ID")
    s.add_argument("--clinical", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--model", choices=["radiomics", "stage", "clinical", "fusion"], default="radiomics")
    s.add_argument("--folds", type=int, default=10)
    s.add_argument("--seed", type=int, default=42)
    s.add_argument("--trials", type=int, default=30, help="Optuna trials of the inner CV")
    s.add_argument("--batch-col", help="column of the cohort table for ComBat harmonisation")
    s.add_argument("--corr-threshold", type=float)
    s.add_argument("--pca", type=int, nargs="+", help="candidate numbers of PCA components")
    s.set_defaults(func=_cmd_rad_fit)
    s = rs.add_parser("ensemble", help="average risk scores of runs on identical folds")
    s.add_argument("runs", nargs="+")
    s.add_argument("--out", required=True)
    s.set_defaults(func=_cmd_rad_ensemble)
    s = rs.add_parser("consensus", help="consensus classification at horizons (Youden on training)")
    s.add_argument("runs", nargs="+")
    s.add_argument("--horizons", type=float, nargs="+", default=[24.0, 60.0])
    s.add_argument("--out", help="CSV to write the table to")
    s.set_defaults(func=_cmd_rad_consensus)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ctsurv", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="write a phantom cohort (DICOM + RTSTRUCT + clinical CSV)")
    s.add_argument("--out", required=True)
    s.add_argument("--n-patients", type=int, default=DEMO_N_PATIENTS)
    s.add_argument("--seed", type=int, default=42)
    s.add_argument("--workers", type=int, default=2, help="processes writing patients (same bytes)")
    s.add_argument("--scanner", default="reference",
                   help="scanner profile of the image chain (ctsurv.synthetic.SCANNERS: reference, "
                        "sharp, smooth); the tumour biology and hazard are the same under each")
    s.add_argument("--id-prefix", default="PHANTOM",
                   help="patient ID prefix (another prefix: a cohort sharing no patient with the demo's)")
    s.add_argument("--heterogeneity", choices=("off", "on", "null"), default="off",
                   help="tumour interiors with a necrotic core fraction and a texture length (seed 002): "
                        "'on' puts both in the hazard (ctsurv.synthetic.SurvivalModel), 'null' draws "
                        "them into the images only")
    s.add_argument("--regions", choices=("off", "on", "null"), default="off",
                   help="mediastinal lymph nodes and coronary artery calcium (seed 003), with RTSTRUCT ROIs "
                        "'Lymph nodes' and 'Coronary arteries': 'on' puts their burden in the hazard, "
                        "'null' draws them into the images only")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=_cmd_synth)

    s = sub.add_parser("prepare", help="ingest + preprocess a cohort, with a manifest")
    s.add_argument("--images", required=True, help="one entry per patient, named by patient ID")
    s.add_argument("--clinical", help="LUNG1-format clinical CSV")
    s.add_argument("--out", required=True)
    s.add_argument("--workers", type=int, default=2)
    s.add_argument("--horizon", type=float, default=24.0, help="administrative censoring, months")
    s.add_argument("--tumour-roi", help="also carry this region (RTSTRUCT/SEG, e.g. GTV-1) onto the "
                   "prepared grid, for tumour-focused 3D crops (model.volume_region: tumour)")
    s.add_argument("--labels", metavar="DIR", help=LABELS_HELP)
    s.add_argument("--roi-synonyms", metavar="FILE", help=SYNONYMS_HELP)
    s.add_argument("--executor", choices=("local", "ray"), default="local", help=EXECUTOR_HELP)
    s.add_argument("--address", help=ADDRESS_HELP)
    s.add_argument("--voxel-maps", metavar="FEATURES", help="also compute voxel-level radiomics maps in "
                   "the tumour region: 'all', or comma-separated classes / class_Feature names (seed 002)")
    s.add_argument("--voxel-kernel-radius", type=int, default=1, help="kernel radius of the voxel maps")
    s.add_argument("--voxel-bin-width", type=float, default=25.0, help="HU bin width of the voxel maps")
    s.add_argument("--tumour-slices", action="store_true", help="also write seed 002's tumour-centred "
                   "slices (5 x 1 x 1 mm, 64 x 64 mm box, window 30/250 HU, z-scored) of the tumour region")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=_cmd_prepare)

    s = sub.add_parser("run", help="cross-validated run from a YAML config")
    s.add_argument("--config", required=True)
    s.add_argument("--out")
    s.add_argument("--permute-labels", action="store_true",
                   help="honesty control: shuffle (time, event) across patients; expect Ctd ~ 0.5")
    s.add_argument("--null", type=int, metavar="K",
                   help="add K label-permuted replicas (the permutation null; cv.null_replicas)")
    s.add_argument("--repeats", type=int, metavar="R",
                   help="repeated cross-validation with R fold assignments (cv.repeats)")
    s.add_argument("--protocol", choices=sorted(PROTOCOLS),
                   help="a named training protocol (train.protocol; default: the config's, 'paper')")
    s.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="where the replica groups train: threads here (default) or one Ray task per group")
    s.add_argument("--address", help=ADDRESS_HELP)
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=_cmd_run)

    s = sub.add_parser("demo", help="the main job on the embedded phantom cohort")
    s.add_argument("--out", default="demo-run")
    s.add_argument("--n-patients", type=int, default=DEMO_N_PATIENTS)
    s.add_argument("--epochs", type=int, default=None, help="default: 100 (seed 000)")
    s.add_argument("--seed", type=int, default=42)
    s.add_argument("--permute-labels", action="store_true")
    s.add_argument("--repeats", type=int, default=3,
                   help="fold assignments (repeated CV; default 3: one 240-patient CV moves by "
                        "more than its digits suggest)")
    s.add_argument("--null", type=int, default=0, help="label-permuted null replicas")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=_cmd_demo)

    s = sub.add_parser("fit", help="train a final model on a whole cohort and save it")
    s.add_argument("--config", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=_cmd_fit)

    s = sub.add_parser("finetune", help="cross-validation on a target cohort, each fold starting "
                                        "from a source model (transfer learning)")
    s.add_argument("--from", required=True, metavar="MODEL_OR_RUN",
                   help="a saved model folder (every fold starts from it) or a run folder (fold k "
                        "starts from its fold k model)")
    s.add_argument("--config", required=True, help="the target cohort's run configuration")
    s.add_argument("--out", required=True)
    s.add_argument("--freeze", nargs="+", metavar="PART",
                   help="parts kept at the source's values: backbone-head, aggregator, "
                        "deephit-shared, early-blocks, stem (ctsurv.transfer.FREEZE_PARTS; seed 002: "
                        "--freeze stem early-blocks)")
    s.add_argument("--lr", type=float, help="fine-tuning learning rate (default: the config's train.lr)")
    s.add_argument("--epochs", type=int, help="fine-tuning epochs (default: the config's train.epochs)")
    s.add_argument("--selection", choices=["val_ctd", "val_loss", "last"],
                   help="epoch selection (default: the config's train.selection)")
    s.add_argument("--adopt-source-settings", action="store_true",
                   help="prepare and train the target with the source's preprocessing and network "
                        "settings instead of refusing a difference")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=_cmd_finetune)

    s = sub.add_parser("transfer-study", help="seed 000's Table 6: repeated scratch vs transfer runs "
                                              "on a target cohort, Wilcoxon signed-rank, direct external")
    s.add_argument("--from", required=True, metavar="MODEL_OR_RUN")
    s.add_argument("--config", required=True, help="the target cohort's run configuration")
    s.add_argument("--out", required=True)
    s.add_argument("--repeats", type=int, default=6, help="repeated runs (seeds seed .. seed + R - 1)")
    s.add_argument("--freeze", nargs="+", metavar="PART")
    s.add_argument("--lr", type=float)
    s.add_argument("--epochs", type=int)
    s.add_argument("--adopt-source-settings", action="store_true")
    s.add_argument("--no-external", action="store_true",
                   help="skip the direct external evaluation of a saved-model source")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=_cmd_transfer_study)

    s = sub.add_parser("predict", help="score new patients with a saved model")
    s.add_argument("--model", required=True)
    s.add_argument("--images", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--top-k", type=int, default=5)
    s.add_argument("--no-report", action="store_true", help="skip the per-patient pages and index.html")
    s.add_argument("--passes", type=int, default=30,
                   help="Monte Carlo dropout passes for the band of each patient's curve")
    s.add_argument("--labels", metavar="DIR", help=LABELS_HELP)
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=_cmd_predict)

    s = sub.add_parser("explain", help="Grad-CAM of a run's test patients, each by its own fold model")
    s.add_argument("run", help="a finished run folder (ctsurv run)")
    s.add_argument("--out", help="figures and gradcam.csv (default: RUN/gradcam)")
    s.add_argument("--patients", nargs="+", metavar="ID", help="only these test patients")
    s.add_argument("--top-k", type=int, default=3, help="slices per patient, by attention weight")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=_cmd_explain)

    s = sub.add_parser("validate-external",
                       help="evaluate a saved model, unchanged, on an external cohort")
    s.add_argument("--model", required=True)
    s.add_argument("--images", required=True)
    s.add_argument("--clinical", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--calibration-subset", default=None,
                   help="CSV with a patient_id column: refit the baseline survival on these "
                        "patients only and evaluate both versions on the others")
    s.add_argument("--bootstrap", type=int, default=1000)
    s.add_argument("--seed", type=int, default=42)
    s.add_argument("--labels", metavar="DIR", help=LABELS_HELP)
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=_cmd_validate_external)

    s = sub.add_parser("evaluate", help="metrics and figures from a predictions.csv")
    s.add_argument("--predictions", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--horizons", type=float, nargs="+", default=None,
                   help="months (default: 12, 24, 36, 60 up to the predictions' horizon, and the horizon)")
    s.add_argument("--bootstrap", type=int, default=1000)
    s.add_argument("--seed", type=int, default=42)
    s.add_argument("--implausible-above", type=float, default=0.95,
                   help="flag a C-index, Ctd or t-AUC above this as implausible for the task (audit for leakage)")
    s.set_defaults(func=_cmd_evaluate)

    s = sub.add_parser("table1", help="cohort characteristics by group with a test per variable (seed 002)")
    s.add_argument("--clinical", required=True, help="CSV, one row per patient")
    s.add_argument("--groups", required=True, help="the grouping column (e.g. cohort, sex, stage)")
    s.add_argument("--out", required=True, help="folder for table1.md and table1.csv")
    s.add_argument("--variables", nargs="+", default=None,
                   help="columns to describe (default: all but the groups and identifier columns)")
    s.add_argument("--categorical", nargs="+", help="treat these columns as categorical")
    s.add_argument("--continuous", nargs="+", help="treat these columns as continuous")
    s.add_argument("--max-levels", type=int, default=10,
                   help="a numeric column with at most this many values is categorical")
    s.add_argument("--resamples", type=int, default=10000,
                   help="tables drawn by the Monte Carlo Fisher-Freeman-Halton test")
    s.add_argument("--seed", type=int, default=42)
    s.set_defaults(func=_cmd_table1)

    s = sub.add_parser("report", help="one self-contained HTML report of a run or study folder")
    s.add_argument("run", help="run folder (metrics.json, predictions.csv, ...) or study folder (study.yaml)")
    s.add_argument("--out", required=True, help="HTML file to write")
    s.add_argument("--screenshot", metavar="PNG",
                   help="also render the page in headless Chromium and save a screenshot (the first "
                        "1200 x 900 pixels; needs playwright and Debian's chromium)")
    s.add_argument("--full-page", action="store_true", help="screenshot the whole page")
    s.set_defaults(func=_cmd_report)

    s = sub.add_parser("binary", help="a run as a classifier of death by a horizon (seed 004's "
                                      "setting): IPCW labels, threshold and calibration from "
                                      "validation patients, metrics per fold")
    s.add_argument("run", help="run folder (predictions.csv, predictions_val.csv, folds.csv)")
    s.add_argument("--out", help="folder for binary.json and the tables (default: the run folder)")
    s.add_argument("--horizon", type=float, default=24.0, help="months (a point of the run's grid)")
    s.add_argument("--threshold", default="youden", choices=("youden", "f1", "sensitivity"))
    s.add_argument("--target", type=float, help="sensitivity to reach with --threshold sensitivity")
    s.add_argument("--calibration", default="platt", choices=("platt", "isotonic", "none"))
    s.add_argument("--weighting", default="ipcw", choices=("ipcw", "exclude"),
                   help="censored-before-horizon patients: IPCW weights from each fold's training "
                        "patients (default) or excluded")
    s.add_argument("--implausible-above", type=float, default=0.95,
                   help="flag a mean fold AUC above this as implausible for the task (audit for leakage)")
    s.set_defaults(func=_cmd_binary)

    s = sub.add_parser("compare", help="compare runs on identical patients")
    s.add_argument("runs", nargs="+", help="run folders (each with predictions.csv)")
    s.add_argument("--out", required=True)
    s.add_argument("--reference", help="run folder to test the others against (default: first)")
    s.add_argument("--permutations", type=int, default=5000)
    s.add_argument("--bootstrap", type=int, default=1000)
    s.add_argument("--seed", type=int, default=42)
    s.set_defaults(func=_cmd_compare)

    s = sub.add_parser("study", help="run configurations on identical folds and compare them")
    s.add_argument("--study", required=True,
                   help="study YAML, or a packaged study: 'seed000' (Tables 3-5) or 'small'")
    s.add_argument("--out", required=True)
    s.add_argument("--images", help="overrides base.data.images of the study")
    s.add_argument("--clinical", help="overrides base.data.clinical of the study")
    s.add_argument("--prepared", help="prepared cohort folder shared by every configuration")
    s.add_argument("--only", nargs="+", help="run only these configurations (and the reference)")
    s.add_argument("--workers", type=int, default=1, help="configurations in parallel (processes, or Ray CPUs)")
    s.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="where configurations run: this process / local processes (default) or Ray tasks")
    s.add_argument("--address", help=ADDRESS_HELP)
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=_cmd_study)
    _add_radiomics(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except CtsurvError as exc:
        print(f"ctsurv {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
