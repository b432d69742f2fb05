"""The binary head (``model.head: binary``, seed 004's setting): its loss against scikit-learn,
its targets against the IPCW definition, training that recovers a planted signal and not a
permuted one, oversampling drawn from the training patients with labels only, and runs of the
2d and 3d kinds through the registry.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import log_loss

from conftest import planted_patients, tiny_config
from ctsurv.config import RunConfig, from_dict
from ctsurv.exceptions import CtsurvError
from ctsurv.models import BinaryHead, binary_loss
from ctsurv.stats import binary_auc, ipcw_binary_weights
from ctsurv.train import TrainConfig, binary_targets, predict, train_model


def test_binary_loss_is_sklearns_weighted_log_loss():
    rng = np.random.default_rng(0)
    z = rng.normal(size=40)
    y = (rng.random(40) < 0.4).astype(float)
    w = rng.uniform(0, 3, 40)
    w[:5] = 0.0  # censored before the horizon: no label
    p = 1 / (1 + np.exp(-z))
    ours = binary_loss(torch.tensor(z), torch.tensor(y), torch.tensor(w)).item()
    assert ours == pytest.approx(log_loss(y, p, sample_weight=w), rel=1e-10)
    assert binary_loss(torch.tensor(z), torch.tensor(y)).item() == pytest.approx(log_loss(y, p), rel=1e-10)
    # a batch of unlabelled patients only: loss 0 and zero gradients (nothing to learn from)
    zt = torch.tensor(z[:5], requires_grad=True)
    loss = binary_loss(zt, torch.tensor(y[:5]), torch.zeros(5, dtype=torch.float64))
    loss.backward()
    assert loss.item() == 0.0 and torch.all(zt.grad == 0)
    with pytest.raises(Exception, match="non-negative"):
        binary_loss(torch.tensor(z), torch.tensor(y), -torch.ones(40, dtype=torch.float64))


def test_targets_are_ipcw_labels_with_balanced_classes():
    #          death<24  death>24  cens<24  alive>=24  death<24
    time = np.array([5.0, 30.0, 10.0, 40.0, 20.0, 26.0])
    event = np.array([1, 1, 0, 0, 1, 0])
    t = binary_targets(time, event, time, event, 24.0, class_weight="balanced")
    assert t.label.tolist() == [1, 0, 0, 0, 1, 0]
    np.testing.assert_allclose(t.ipcw, ipcw_binary_weights(time, event, time, event, 24.0))
    assert t.ipcw[2] == 0 and t.weight[2] == 0  # censored at 10 months: unknown at 24
    pos, neg = t.weight[t.label == 1].sum(), t.weight[(t.label == 0) & (t.weight > 0)].sum()
    assert pos == pytest.approx(neg) and pos + neg == pytest.approx(t.ipcw.sum())
    plain = binary_targets(time, event, time, event, 24.0, class_weight="none")
    np.testing.assert_allclose(plain.weight, plain.ipcw)
    with pytest.raises(CtsurvError, match="0 patients died by 3 months"):
        binary_targets(time, event, time, event, 3.0, class_weight="balanced")


_planted = planted_patients


class _Net(torch.nn.Module):
    """Mean over slices -> BinaryHead; records the first feature of every training batch row."""

    def __init__(self, seen=None):
        super().__init__()
        self.head = BinaryHead(64, layers=1, width=16, dropout=0.0)
        self.seen = seen

    def forward(self, x, mask, positions=None):
        w = mask.float() / mask.sum(1, keepdim=True)
        if self.training and self.seen is not None:
            self.seen.extend(x[:, 0, 63].tolist())
        return {"binary_logit": self.head((x * w[..., None]).sum(1)), "weights": w}


def _fit_auc(permute: bool) -> float:
    feats, time, event = _planted(permute=permute)
    tr, va, te = np.arange(0, 70), np.arange(70, 85), np.arange(85, 120)
    res = train_model(_Net, [feats[i] for i in tr], time[tr], event[tr], [feats[i] for i in va],
                      time[va], event[va], TrainConfig(epochs=25, augment=False, lr=3e-3, seed=1))
    assert res.selection == "val_auc"
    surv, _ = predict(res.model, [feats[i] for i in te])
    assert surv.shape == (35, 1) and np.all((surv >= 0) & (surv <= 1))
    t = binary_targets(time[tr], event[tr], time[te], event[te], 24.0)
    return binary_auc(t.label, 1 - surv[:, 0], sample_weight=t.ipcw)


def test_training_recovers_a_planted_signal_and_not_a_permuted_one():
    # the planted log-hazard has sd 1.2: the oracle AUC of death by 24 months is about 0.8
    assert _fit_auc(permute=False) > 0.7
    assert abs(_fit_auc(permute=True) - 0.5) < 0.15


def test_oversampling_draws_each_class_equally_and_never_an_unlabelled_patient():
    feats, time, event = _planted(n=60, seed=3)
    for i, f in enumerate(feats):  # patient index in the last channel, to see who is drawn
        f.features[..., 63] = i
    seen: list[float] = []
    cfg = TrainConfig(epochs=30, augment=False, oversample=True, class_weight="none", seed=2,
                      selection="last")
    train_model(lambda: _Net(seen), feats[:50], time[:50], event[:50], feats[50:], time[50:],
                event[50:], cfg)
    drawn = np.array(seen, dtype=int)
    t = binary_targets(time[:50], event[:50], time[:50], event[:50], 24.0)
    assert drawn.max() < 50  # training patients only
    assert not np.isin(drawn, np.flatnonzero(t.ipcw == 0)).any()  # censored before 24 months
    share = (t.label[drawn] == 1).mean()
    # the labelled training patients are far from balanced (73 % deaths); the draws are not
    assert abs((t.label[t.ipcw > 0] == 1).mean() - 0.5) > 0.15 and abs(share - 0.5) < 0.05, share


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    torch.set_num_threads(1)
    return tmp_path_factory.mktemp("binary-head") / "prepared"


@pytest.mark.parametrize("kind", ["2d", "3d"])
def test_a_binary_run_of_each_kind(kind, tiny_cohort, prepared, tmp_path):
    # the 3d kind as seed 004: a 3D ResNet-18 on tumour-focused crops (GTV-1 box + 10 voxels),
    # at test size
    extra = {"3d": {"embed": {"kind": "3d", "backbone": "resnet3d-18", "weights": "random",
                              "augment": False},
                    "model": {"volume_depth": 16, "volume_size": 64, "head": "binary",
                              "volume_region": "tumour"}},
             "2d": {"model": {"head": "binary"}}}[kind]
    data = {"horizon_months": 12, **({"tumour_roi": "GTV-1"} if kind == "3d" else {})}
    cfg = tiny_config(tiny_cohort, prepared, data=data, cv={"val_fraction": 0.3}, **extra)
    from ctsurv.pipeline import run_cv

    metrics = run_cv(cfg, tmp_path / "run", progress=False)
    preds = pd.read_csv(tmp_path / "run" / "predictions.csv")
    assert [c for c in preds.columns if c.startswith("S_")] == ["S_12"]
    np.testing.assert_allclose(preds["risk"], 1 - preds["S_12"])
    assert metrics["head"] == "binary" and metrics["ctd_mean"] is None
    assert metrics["binary"]["horizon"] == 12.0
    assert "summary" in metrics["binary"] or "validation patients" in metrics["binary"]["undefined"]
    hist = pd.read_csv(tmp_path / "run" / "history.csv")
    assert "train_auc" in hist.columns
    manifest = pd.read_csv(tmp_path / "run" / "manifest.csv")
    cohort = pd.read_csv(tmp_path / "run" / "predictions.csv").set_index("patient_id")
    for _, row in manifest[manifest["status"] == "ok"].iterrows():
        t, e = cohort.loc[row["patient_id"], ["time", "event"]]
        want = "died by 12" if (e == 1 and t <= 12) else ("alive at 12" if t >= 12 else "censored before 12")
        assert row["outcome_at_12m"].startswith(want), (row["patient_id"], t, e, row["outcome_at_12m"])
    # survival tools refuse the run with the reason and the command that does evaluate it
    from ctsurv.report.run import run_report_data

    with pytest.raises(CtsurvError, match="binary-head run .*ctsurv binary RUN"):
        run_report_data(tmp_path / "run")
    if kind == "3d":  # the prepared artifacts carry the tumour mask the crops came from
        from ctsurv.prepare import artifact_path
        from ctsurv.preprocess import PreprocessedCT

        pid = preds["patient_id"].iloc[0]
        pre = PreprocessedCT.load(artifact_path(cfg.data.prepared, pid))
        assert pre.masks["tumour"].any() and pre.masks["tumour"].shape == pre.slices.shape


def test_binary_head_refuses_survival_only_controls(tiny_cohort, tmp_path):
    from ctsurv.pipeline import run_cv

    cfg = tiny_config(tiny_cohort, tmp_path / "prepared", model={"head": "binary"}, cv={"null_replicas": 2})
    with pytest.raises(CtsurvError, match="permute_labels"):
        run_cv(cfg, tmp_path / "run", progress=False)
    with pytest.raises(CtsurvError, match="model.head must be one of"):
        from ctsurv.build import build_head
        build_head(from_dict({"model": {"head": "weibull"}}), 8)
    assert RunConfig().train.class_weight == "balanced"


def test_final_models_refuse_a_binary_head():
    from ctsurv.estimators import SurvivalEstimator

    feats, time, event = _planted(n=12)
    est = SurvivalEstimator(from_dict({"model": {"head": "binary"}}))
    with pytest.raises(CtsurvError, match="ctsurv binary RUN"):
        est.fit(feats, time, event)


def test_tumour_crop_is_the_mask_box_plus_the_margin():
    from ctsurv.models3d import Model3DError, tumour_crop

    slices = np.random.default_rng(0).random((20, 30, 40)).astype(np.float32)
    mask = np.zeros(slices.shape, bool)
    mask[5:8, 10:13, 2:30] = True
    mask[9, 11, 4] = True  # the box spans every voxel of the mask
    crop = tumour_crop(slices, mask, margin=3)
    np.testing.assert_array_equal(crop, slices[2:13, 7:16, 0:33])  # x clipped at the edge (2 - 3 < 0)
    np.testing.assert_array_equal(tumour_crop(slices, mask, margin=0), slices[5:10, 10:13, 2:30])
    with pytest.raises(Model3DError, match="patient P1: the tumour mask is empty"):
        tumour_crop(slices, np.zeros_like(mask), patient_id="P1")
    with pytest.raises(Model3DError, match="does not match"):
        tumour_crop(slices, mask[:5])


def test_tumour_region_without_a_tumour_roi_names_the_patient(tiny_cohort, tmp_path):
    from ctsurv.pipeline import run_cv

    cfg = tiny_config(tiny_cohort, tmp_path / "prepared",
                      embed={"kind": "3d", "backbone": "resnet3d-18", "weights": "random"},
                      model={"volume_depth": 8, "volume_size": 32, "volume_region": "tumour"})
    with pytest.raises(CtsurvError, match=r"patient PHANTOM-\d+: model.volume_region 'tumour' needs"):
        run_cv(cfg, tmp_path / "run", progress=False)


def test_a_patient_without_the_tumour_roi_is_excluded_with_the_reason(tiny_cohort, tmp_path):
    import shutil

    from ctsurv.prepare import prepare_cohort

    images = tmp_path / "images"
    shutil.copytree(tiny_cohort / "images", images)
    victim = sorted(p.name for p in images.iterdir())[0]
    for f in (images / victim).iterdir():
        if not f.name.startswith("CT_"):  # the RTSTRUCT
            f.unlink()
    from ctsurv.preprocess import PreprocessConfig

    manifest = prepare_cohort(images, tiny_cohort / "clinical.csv", tmp_path / "prepared",
                              config=PreprocessConfig(size=64), workers=1, progress=False,
                              tumour_roi="GTV-1")
    row = manifest.set_index("patient_id").loc[victim]
    assert row["status"] == "excluded" and victim in row["reason"], row["reason"]
    assert (manifest["status"] == "ok").sum() == len(manifest) - 1
