"""The tumour kind (seed 002, issue 16): ``ctsurv run`` trains tumour-centred CT + voxel-map
slices through the Vision-Mamba encoder with a Cox head, from DICOM + RTSTRUCT on phantoms;
the model saves and loads through the registry; configuration errors name the fix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import tiny_config

from ctsurv.exceptions import CtsurvError

pytest.importorskip("ctsurv.ssm")

TUMOUR = {"embed": {"kind": "tumour", "augment": True},
          "model": {"head": "cox", "channels": ["ct", "firstorder_Mean"], "ssm_dim": 16, "ssm_depth": 1,
                    "ssm_patch": 16, "ssm_state": 4, "shared_layers": 1, "shared_width": 16},
          "data": {"tumour_roi": "GTV-1"}, "train": {"batch_size": 4}}


def test_a_cox_run_of_the_tumour_kind(tiny_cohort, tmp_path):
    torch.set_num_threads(1)
    from ctsurv.build import build_encoder, compute_features, load_model, network_factory, save_model
    from ctsurv.pipeline import run_cv

    cfg = tiny_config(tiny_cohort, tmp_path / "prepared", **TUMOUR)
    metrics = run_cv(cfg, tmp_path / "run", progress=False)
    preds = pd.read_csv(tmp_path / "run" / "predictions.csv")
    assert len(preds) == len(pd.read_csv(tiny_cohort / "clinical.csv"))
    assert np.isfinite(preds["risk"]).all() and metrics["ctd_mean"] is not None
    s = preds[[c for c in preds.columns if c.startswith("S_")]].to_numpy()
    assert np.all(np.diff(s, axis=1) <= 1e-9) and s.min() >= 0 and s.max() <= 1
    # the features: (1 view, S slices, 2 channels, 64, 64), the map channel zero outside the tumour
    enc = build_encoder(cfg)
    pid = preds["patient_id"].iloc[0]
    f = compute_features(cfg, enc, cfg.data.prepared, [pid], progress=False)[pid]
    assert f.features.shape[0] == 1 and f.features.shape[2:] == (2, 64, 64)
    assert (f.features[0, :, 1] != 0).any() and np.isfinite(f.features).all()
    # save / load through the registry: the same network, the same outputs
    torch.manual_seed(0)
    net = network_factory(cfg, enc)().eval()
    save_model(tmp_path / "model", net, cfg, enc)
    loaded, cfg2, _ = load_model(tmp_path / "model")
    x = torch.from_numpy(np.asarray(f.features)).float()  # view axis as the batch: (1, S, C, H, W)
    mask = torch.ones(x.shape[:2], dtype=torch.bool)
    with torch.no_grad():
        a, b = net(x, mask), loaded.eval()(x, mask)
    assert a.log_hazard is not None and a.log_hazard.shape == (1,)
    torch.testing.assert_close(a.log_hazard, b.log_hazard)
    torch.testing.assert_close(a.cumhaz, b.cumhaz)
    assert cfg2.model.channels == ("ct", "firstorder_Mean")
    # ctsurv explain: Grad-CAM of test patients by their own fold model; its attention weights
    # are the ones the run recorded for those patients when it scored them
    from ctsurv.predict import explain_run

    att = pd.read_csv(tmp_path / "run" / "attention.csv", dtype={"patient_id": str})
    folds = pd.read_csv(tmp_path / "run" / "folds.csv", dtype={"patient_id": str})
    test = folds[folds["role"] == "test"].groupby("fold")["patient_id"].first()
    chosen = [test.iloc[0], test.iloc[1]]
    table = explain_run(tmp_path / "run", patients=chosen, top_k=2, progress=False)
    assert sorted(table["patient_id"].unique()) == sorted(chosen)
    for row in table.itertuples(index=False):
        assert row.fold == int(test[test == row.patient_id].index[0])
        rec = att[(att["patient_id"] == row.patient_id) & (att["slice"] == row.slice)]
        assert len(rec) == 1 and row.weight == pytest.approx(float(rec["weight"].iloc[0]), abs=1e-6)
        assert row.cam_max in (0.0, pytest.approx(1.0))
        assert (tmp_path / "run" / "gradcam" / row.file).stat().st_size > 0
    with pytest.raises(CtsurvError, match="not test patients of this run"):
        explain_run(tmp_path / "run", patients=["NOBODY"], progress=False)


def test_tumour_kind_configuration_errors(tiny_cohort, tmp_path):
    from ctsurv.build import build_encoder, tumour_prepare_settings

    no_roi = tiny_config(tiny_cohort, tmp_path / "p", **{**TUMOUR, "data": {}})
    with pytest.raises(CtsurvError, match="needs the tumour region: set data.tumour_roi"):
        tumour_prepare_settings(no_roi)
    for bad, msg in [(["firstorder_Mean"], "must start with 'ct'"), (["ct", "glcm_Nope"], "unknown voxel feature"),
                     (["ct", "firstorder_Mean", "firstorder_Mean"], "lists a channel twice")]:
        cfg = tiny_config(tiny_cohort, tmp_path / "p", **{**TUMOUR, "model": {**TUMOUR["model"], "channels": bad}})
        with pytest.raises(CtsurvError, match=msg):
            build_encoder(cfg)
    ok = tiny_config(tiny_cohort, tmp_path / "p", **TUMOUR)
    assert tumour_prepare_settings(ok) == {"tumour_input": True, "voxel_maps": {"features": ["firstorder_Mean"]}}


def _tumour_network(cfg):
    from ctsurv.build import build_encoder, network_factory

    enc = build_encoder(cfg)
    torch.manual_seed(3)
    net = network_factory(cfg, enc)().eval()
    net.head.baseline_cumhaz.copy_(torch.linspace(0.01, 0.8, net.head.baseline_cumhaz.numel()))
    return net, enc


def test_grad_cam_of_the_tumour_kind_is_the_closed_form_on_its_token_map(tiny_cohort, tmp_path):
    """Independent of the hook: the token map from ``forward_tokens``, the risk rebuilt from the
    mean over tokens by hand, and the Grad-CAM sum written out cell by cell (row-major cells)."""
    from ctsurv.explain import grad_cam, grad_cam_supported
    from ctsurv.types import PatientFeatures

    cfg = tiny_config(tiny_cohort, tmp_path / "p", **TUMOUR)
    net, enc = _tumour_network(cfg)
    assert grad_cam_supported(enc, net) == (True, "")
    assert not grad_cam_supported(enc)[0]  # without the network it is not recognised as explainable
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 2, 64, 64, generator=g)
    pos = torch.linspace(0, 1, 5)
    patient = PatientFeatures("P1", x[None].numpy(), pos.numpy())
    vim = net.embedding.encoder
    gh, gw = vim.grid
    tokens = vim.forward_tokens(net.embedding.norm(x)).detach().requires_grad_(True)  # (S, gh*gw, d)
    pooled, _ = net.aggregator(tokens.mean(dim=1)[None], torch.ones(1, 5, dtype=torch.bool), pos[None])
    lp = net.head(pooled).reshape(())
    risk = 1.0 - torch.exp(-net.head.baseline_cumhaz[-1] * torch.exp(lp))  # Cox: S = exp(-H0 e^lp)
    (grad,) = torch.autograd.grad(risk, tokens)
    idx = [4, 1]
    expect = np.zeros((len(idx), gh, gw))
    for k, s in enumerate(idx):
        alpha = grad[s].mean(dim=0)  # (d,)
        for i in range(gh):
            for j in range(gw):
                expect[k, i, j] = max(0.0, float((alpha * tokens[s, i * gw + j]).sum()))
        if expect[k].max() > 0:
            expect[k] /= expect[k].max()
    cam = grad_cam(net, enc, patient, None, idx, out_size=gh)  # no upsampling: the cells themselves
    assert cam.shape == (2, gh, gw) and cam.dtype == np.float32
    np.testing.assert_allclose(cam, expect, atol=1e-5)
    full = grad_cam(net, enc, patient, None, idx)
    assert full.shape == (2, 64, 64) and full.max() <= 1.0 + 1e-6 and full.min() >= 0
    with pytest.raises(CtsurvError, match="slice index out of range"):
        grad_cam(net, enc, patient, None, [5])


def test_predict_draws_grad_cam_on_the_tumour_slices(tiny_cohort, tmp_path):
    """``ctsurv predict`` with a saved tumour model prepares what the kind needs, ranks the
    tumour-centred slices and draws their Grad-CAM beneath the CT in every patient's page."""
    import json
    import shutil

    from ctsurv.build import save_model
    from ctsurv.predict import predict_patients
    from ctsurv.prepare import tumour_slices_path
    from ctsurv.tumour_input import load_tumour_slices

    torch.set_num_threads(1)
    cfg = tiny_config(tiny_cohort, tmp_path / "p", **TUMOUR)
    net, enc = _tumour_network(cfg)
    save_model(tmp_path / "model", net, cfg, enc)
    images = tmp_path / "images"
    for pid in ("PHANTOM-001", "PHANTOM-002"):
        shutil.copytree(tiny_cohort / "images" / pid, images / pid)
    out = tmp_path / "scored"
    preds = predict_patients(tmp_path / "model", images, out, top_k=3, progress=False, n_passes=2)
    assert sorted(preds["patient_id"]) == ["PHANTOM-001", "PHANTOM-002"]
    top = pd.read_csv(out / "top_slices.csv")
    for pid in preds["patient_id"]:
        t, _ = load_tumour_slices(tumour_slices_path(out / "prepared", pid))
        rows = top[top["patient_id"] == pid]
        assert 1 <= len(rows) <= 3 and rows["slice"].max() < len(t.z_mm)
        np.testing.assert_allclose(rows["z_mm"], t.z_mm[rows["slice"]])  # the tumour slices' positions
        rec = json.loads((out / "patients" / pid / "patient.json").read_text())
        assert rec["grad_cam"].startswith("Grad-CAM of the risk on the Vision-Mamba encoder")
        assert rec["files"]["slices"] == "slices.png" and (out / "patients" / pid / "slices.png").stat().st_size > 0
