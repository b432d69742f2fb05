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
