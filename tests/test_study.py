"""Studies: identical folds for every configuration, resuming, tables, chart, complexity."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch

from ctsurv.study import StudyError, load_study, model_complexity, run_study, volume_features

from conftest import TINY_N as N_PATIENTS  # the shared tiny phantom cohort (seed 21)


def _study(cohort, prepared):
    return {
        "name": "tiny",
        "base": {"seed": 11,
                 "data": {"images": str(cohort / "images"), "clinical": str(cohort / "clinical.csv"),
                          "prepared": str(prepared)},
                 "preprocess": {"size": 64},
                 "embed": {"backbone": "efficientnet-lite0", "augment": False},
                 "train": {"epochs": 2, "threads": 1},
                 "cv": {"n_folds": 3, "val_fraction": 0.2}},
        "reference": "soft",
        "configs": [
            {"name": "soft", "kind": "2d", "label": "Lite0 + soft", "paper": "0.584 ± 0.054"},
            {"name": "mean", "kind": "2d", "overrides": {"model": {"aggregator": "mean"}}},
            {"name": "dn3d-random", "kind": "3d",
             "overrides": {"embed": {"backbone": "densenet3d-121", "weights": "random"},
                           "model": {"volume_depth": 16, "volume_size": 64}}},
        ],
        "tables": [{"title": "Aggregators", "configs": ["mean", "soft"]},
                   {"title": "2D vs 3D", "configs": ["dn3d-random", "soft"]}],
        "compare": {"n_permutations": 200, "n_bootstrap": 50},
        "complexity": {"n_slices": 16, "image_size": 64},
    }


@pytest.fixture(scope="module")
def done_study(tmp_path_factory, tiny_cohort):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("study")
    spec = _study(tiny_cohort, root / "prepared")
    table = run_study(spec, root / "out", progress=False)
    return root, spec, table


def test_every_configuration_sees_identical_folds(done_study):
    root, spec, table = done_study
    out = root / "out"
    master = (out / "folds.csv").read_bytes()
    plan = pd.read_csv(out / "folds.csv", dtype={"patient_id": str})
    tests = plan[plan["role"] == "test"]
    assert len(tests) == N_PATIENTS and not tests["patient_id"].duplicated().any()
    for c in spec["configs"]:
        assert (out / c["name"] / "folds.csv").read_bytes() == master
        preds = pd.read_csv(out / c["name"] / "predictions.csv", dtype={"patient_id": str})
        # each patient was predicted by the model of the fold in which the plan tests it
        got = preds.set_index("patient_id")["fold"].sort_index()
        want = tests.set_index("patient_id")["fold"].sort_index()
        pd.testing.assert_series_equal(got, want, check_names=False)
    assert set(table["name"]) == {"soft", "mean", "dn3d-random"}


def test_tables_and_chart(done_study):
    root, spec, table = done_study
    out = root / "out"
    md = (out / "comparison.md").read_text()
    assert "## Aggregators" in md and "## 2D vs 3D" in md
    assert "**Lite0 + soft**" in md and "0.584 ± 0.054" in md and "dn3d-random" in md
    csv = pd.read_csv(out / "comparison.csv")
    assert list(csv["table"]) == ["Aggregators", "Aggregators", "2D vs 3D", "2D vs 3D"]
    assert list(csv["name"]) == ["mean", "soft", "dn3d-random", "soft"]
    ref = table.set_index("name").loc["soft"]
    assert np.isnan(ref["p_vs_reference"])
    others = table[table["name"] != "soft"]
    assert ((others["p_vs_reference"] > 0) & (others["p_vs_reference"] <= 1)).all()
    # the table reproduces each run's own metrics.json
    for _, r in table.iterrows():
        m = json.loads((out / r["name"] / "metrics.json").read_text())
        assert r["ctd_fold_mean"] == pytest.approx(m["ctd_mean"], abs=1e-12, nan_ok=True)
        assert r["n_folds"] == 3 and r["n_patients"] == N_PATIENTS
    assert (out / "bubble.png").stat().st_size > 5000
    # 3D model is costlier than a 2D slice model with the same small input
    assert table.set_index("name").loc["dn3d-random", "params_total"] > ref["params_total"]


def test_finished_configurations_are_not_rerun(done_study):
    root, spec, table = done_study
    out = root / "out"
    files = [out / c["name"] / f for c in spec["configs"]
             for f in ("metrics.json", "predictions.csv", "folds/fold_0.json")]
    before = {f: f.stat().st_mtime_ns for f in files}
    again = run_study(spec, out, progress=False)
    assert {f: f.stat().st_mtime_ns for f in files} == before
    pd.testing.assert_frame_equal(again, table)
    # changing one configuration reruns that one only
    spec2 = copy.deepcopy(spec)
    spec2["configs"][1]["overrides"]["train"] = {"epochs": 1}
    run_study(spec2, out, progress=False)
    assert (out / "mean" / "metrics.json").stat().st_mtime_ns != before[out / "mean" / "metrics.json"]
    for name in ("soft", "dn3d-random"):
        assert (out / name / "metrics.json").stat().st_mtime_ns == before[out / name / "metrics.json"]
    assert len(pd.read_csv(out / "mean" / "history.csv").query("fold == 0")) == 1


def test_complexity_reproducible_and_consistent(done_study):
    root, spec, table = done_study
    st = load_study(spec)
    soft = st.item("soft").config
    a = model_complexity(soft, n_slices=16, image_size=64)
    b = model_complexity(soft, n_slices=16, image_size=64)
    assert a == b
    row = table.set_index("name").loc["soft"]
    assert (a["params_total"], a["params_trainable"]) == (row["params_total"], row["params_trainable"])
    assert a["gflops"] == pytest.approx(row["gflops"], rel=1e-12)
    # independent count: the trainable network the pipeline actually trains on cached features
    from ctsurv.pipeline import build_encoder, model_factory

    enc = build_encoder(soft)
    net = model_factory(soft, enc)()
    assert a["params_trainable"] == sum(p.numel() for p in net.parameters() if p.requires_grad)
    assert a["params_total"] == sum(p.numel() for p in enc.trunk.parameters()) + \
        sum(p.numel() for p in net.parameters())
    # FLOPs grow linearly with the number of slices for a 2D model (encoder cost per slice)
    c = model_complexity(soft, n_slices=32, image_size=64)
    assert c["gflops"] == pytest.approx(2 * a["gflops"], rel=0.01)
    d3 = st.item("dn3d-random").config
    assert model_complexity(d3, n_slices=16, image_size=64) == model_complexity(d3, n_slices=16, image_size=64)


def test_volume_features_cached(done_study):
    root, spec, _ = done_study
    cfg = load_study(spec).item("dn3d-random").config
    ids = ["PHANTOM-001", "PHANTOM-002"]
    _, f1 = volume_features(cfg, root / "prepared", ids, progress=False)
    cache = sorted((root / "prepared" / "volume-cache").glob("*.npy"))
    assert len(cache) == N_PATIENTS  # one per patient, written by the study run
    mtimes = [p.stat().st_mtime_ns for p in cache]
    _, f2 = volume_features(cfg, root / "prepared", ids, progress=False)
    assert [p.stat().st_mtime_ns for p in cache] == mtimes
    for p in ids:
        assert f1[p].features.shape == (1, 1, 1024)  # (views, items, DenseNet3D-121 feature)
        np.testing.assert_array_equal(f1[p].features, f2[p].features)
    assert not np.array_equal(f1[ids[0]].features, f1[ids[1]].features)
    small = cfg.replace(model={"volume_depth": 8})  # DenseNet's transitions halve the depth 3x
    with pytest.raises(StudyError, match="patient PHANTOM-001: densenet3d-121 cannot run on a 8 x 64"):
        volume_features(small, root / "prepared", ids[:1], progress=False)


def test_run_cv_rejects_a_foreign_plan(done_study, tmp_path):
    from ctsurv.exceptions import CtsurvError
    from ctsurv.pipeline import run_cv
    from ctsurv.validate import FoldPlan, stratified_folds

    root, spec, _ = done_study
    cfg = load_study(spec).item("soft").config
    plan = FoldPlan.load(root / "out" / "folds.csv")
    other = stratified_folds(plan.table["patient_id"].unique()[:-1], np.ones(N_PATIENTS - 1),
                             np.ones(N_PATIENTS - 1), n_folds=3)
    with pytest.raises(CtsurvError, match="does not cover the prepared cohort"):
        run_cv(cfg, tmp_path / "run", progress=False, plan=other)
    two = stratified_folds(plan.table["patient_id"].unique(), np.ones(N_PATIENTS), np.ones(N_PATIENTS),
                           n_folds=2)
    with pytest.raises(CtsurvError, match="the fold plan has 2 folds but cv.n_folds is 3"):
        run_cv(cfg, tmp_path / "run", progress=False, plan=two)


@pytest.mark.parametrize("edit, match", [
    (lambda s: s["configs"][1].update(overrides={"cv": {"n_folds": 5}}), "shares the data, seed and folds"),
    (lambda s: s["configs"].append({"name": "soft"}), "listed twice"),
    (lambda s: s.update(reference="nope"), "reference 'nope'"),
    (lambda s: s["tables"][0]["configs"].append("ghost"), r"unknown configuration\(s\) \['ghost'\]"),
    (lambda s: s["configs"][2]["overrides"]["embed"].update(backbone="resnet50"), "not a 3D encoder"),
    (lambda s: s["configs"][0].update(kind="4d"), "kind must be one of"),
    (lambda s: s["configs"][0].update(name="a/b"), "becomes a folder name"),
    (lambda s: s["configs"][1]["overrides"].update(model={"aggregatr": "mean"}),
     r"'mean'.*unknown config key\(s\) model.aggregatr"),
    (lambda s: s.update(extra=1), r"unknown study key\(s\) \['extra'\]"),
])
def test_bad_study_files(tmp_path, edit, match):
    spec = _study(tmp_path, tmp_path / "prepared")
    edit(spec)
    with pytest.raises(StudyError, match=match):
        load_study(spec)


def test_packaged_studies():
    from ctsurv.models3d import VOLUME_ENCODERS

    seed = load_study("seed000")
    assert seed.reference == "b0-soft-fe"
    ref = seed.item("b0-soft-fe").config
    assert (ref.embed.backbone, ref.embed.weights, ref.embed.strategy, ref.model.aggregator) == \
        ("efficientnet-b0", "imagenet", "feature-extractor", "soft")
    assert (ref.train.epochs, ref.cv.n_folds, ref.train.batch_size) == (100, 10, 4)
    titles = [t for t, _ in seed.tables]
    assert [t.split(":")[0] for t in titles] == ["Table 3", "Table 4", "Table 5", "Seed 001 Table 1"]
    table3 = dict(seed.tables)[titles[0]]
    assert sum(seed.item(n).kind == "3d" for n in table3) == 4 and len(table3) == 8
    assert seed.item("b0-mean-fe").paper == "0.570 ± 0.033"
    for it in seed.items:  # random initialisation only where the name says so
        assert (it.config.embed.weights == "random") == ("random" in it.name)
    small = load_study("small")
    assert small.base.cv.n_folds == 3 and small.base.train.epochs == 3 and not small.base.embed.augment
    for it in small.items:  # runs offline: Lite0 ships its weights, everything else is random
        if it.kind == "3d":
            assert it.config.embed.backbone in VOLUME_ENCODERS and it.config.embed.weights == "random"
            assert "random" in it.name
        else:
            assert it.config.embed.backbone == "efficientnet-lite0"
    with pytest.raises(StudyError, match="cannot read study file"):
        load_study("no-such-study.yaml")


def test_cli_parses_study():
    from ctsurv.cli import build_parser

    a = build_parser().parse_args(["study", "--study", "small", "--out", "o", "--images", "i",
                                   "--only", "lite0-mean-fe"])
    assert a.func.__name__ == "_cmd_study" and a.only == ["lite0-mean-fe"] and a.clinical is None
