"""The registry of model kinds and the time grid, end to end on the shared tiny phantom cohort.

* every kind (``2d``, ``mst``, ``3d``) goes through ``fit`` -> save -> ``predict`` -> reload,
  and a saved model is refused when its kind, preprocessing or head size do not match;
* any horizon and bin width: runs at 12, 36 and 60 months (and half-month bins) write the
  ``S_*`` columns of their grid, a DeepHit head of ``n_bins + 2`` outputs, and evaluate;
* what was written before the registry still loads: run folders resume (same configuration
  hash, frozen below from the previous release) and models without a recorded kind load.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import TINY_N, tiny_config
from ctsurv.build import KINDS, get_kind, load_model, network_factory
from ctsurv.config import RunConfig, from_dict
from ctsurv.evaluate import evaluate_predictions, read_predictions
from ctsurv.exceptions import CtsurvError, ModelMismatchError
from ctsurv.pipeline import config_hash, run_cv
from ctsurv.predict import fit_final, predict_patients

KIND_SETTINGS = {
    "2d": {},
    "mst": {"embed": {"kind": "mst"}},
    "3d": {"embed": {"kind": "3d", "backbone": "densenet3d-121", "weights": "random"},
           "model": {"volume_depth": 16, "volume_size": 64}},
}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    torch.set_num_threads(1)
    return tmp_path_factory.mktemp("build") / "prepared"


def test_registry_names_every_kind_and_refuses_others():
    assert {"2d", "3d", "mst"} <= set(KINDS)
    assert get_kind("3d").augmentable is False and get_kind("2d").augmentable is True
    with pytest.raises(CtsurvError, match="embed.kind must be one of '2d'"):
        get_kind(from_dict({"embed": {"kind": "4d"}}))


@pytest.mark.parametrize("kind", ["2d", "mst", "3d"])
def test_fit_predict_reload_every_kind(kind, tiny_cohort, prepared, tmp_path):
    cfg = tiny_config(tiny_cohort, prepared, **KIND_SETTINGS[kind])
    model_dir = fit_final(cfg, tmp_path / "model", progress=False)
    meta = json.loads((model_dir / "model.json").read_text())
    assert meta["kind"] == kind and meta["config"]["embed"]["kind"] == kind
    assert 0 <= meta["best_epoch"] < 2

    new = tmp_path / "new"
    new.mkdir()
    for pid in ("PHANTOM-001", "PHANTOM-002"):
        (new / pid).symlink_to(tiny_cohort / "images" / pid)
    first = predict_patients(model_dir, new, tmp_path / "scored1", progress=False)
    assert list(first["patient_id"]) == ["PHANTOM-001", "PHANTOM-002"]
    s = first[[f"S_{m}" for m in range(25)]].to_numpy()
    assert np.all(np.diff(s, axis=1) <= 1e-12) and np.all((s >= 0) & (s <= 1))
    np.testing.assert_allclose(first["risk"], 1.0 - s[:, -1], atol=1e-12)
    top = pd.read_csv(tmp_path / "scored1" / "top_slices.csv")
    assert (len(top) == 0) == (kind == "3d")  # one volume has no slice ranking

    # a reload scores identically
    second = predict_patients(model_dir, new, tmp_path / "scored2", progress=False)
    pd.testing.assert_frame_equal(first, second)

    # mismatches are refused, naming what differs
    bad = json.loads((model_dir / "model.json").read_text())
    bad["kind"] = "mst" if kind != "mst" else "2d"
    (model_dir / "model.json").write_text(json.dumps(bad))
    with pytest.raises(ModelMismatchError, match="kind of the saved model"):
        load_model(model_dir)
    bad["kind"] = kind
    bad["config"]["data"]["horizon_months"] = 36.0  # the saved head has 26 outputs, not 38
    (model_dir / "model.json").write_text(json.dumps(bad))
    with pytest.raises(ModelMismatchError, match="weights do not fit the network"):
        load_model(model_dir)


@pytest.mark.parametrize("horizon,bin_width", [(12.0, 1.0), (36.0, 1.0), (60.0, 1.0), (12.0, 0.5)])
def test_any_horizon_end_to_end(horizon, bin_width, tiny_cohort, prepared, tmp_path):
    cfg = tiny_config(tiny_cohort, prepared, data={"horizon_months": horizon, "bin_width_months": bin_width},
                      train={"epochs": 1})
    grid = cfg.time_grid
    n = int(round(horizon / bin_width))
    want = [f"S_{j * bin_width:g}" for j in range(n + 1)]
    assert grid.columns == want and grid.n_logits == n + 2
    net = network_factory(cfg)()
    assert net.head.num_bins == n + 2

    metrics = run_cv(cfg, tmp_path / "run", progress=False)
    preds = read_predictions(tmp_path / "run")
    assert [c for c in preds.columns if c.startswith("S_")] == want
    assert len(preds) == TINY_N and metrics["horizon_months"] == horizon
    # labels are administratively censored at the horizon
    assert preds["time"].max() <= horizon + 1e-9
    assert (preds.loc[preds["time"] >= horizon, "event"] == 0).all()
    s = preds[want].to_numpy()
    np.testing.assert_allclose(preds["risk"], 1.0 - s[:, -1], atol=1e-12)

    res = evaluate_predictions(preds, tmp_path / "eval", n_bootstrap=20)
    expected = sorted({h for h in (12.0, 24.0, 36.0, 60.0) if h <= horizon} | {horizon})
    assert sorted(float(h) for h in res["t_auc"]) == expected
    assert f"uno_c_tau{horizon:g}" in res


def test_configuration_hash_is_unchanged_for_old_run_folders():
    # Values printed by ctsurv 6177125 (before the time grid and the registry): run folders it
    # wrote must still be recognised, so a rerun resumes instead of retraining.
    assert config_hash(RunConfig()) == "d366ea035e7c55ae"
    cfg = from_dict({"seed": 7, "embed": {"kind": "3d", "backbone": "densenet3d-121"},
                     "data": {"images": "/x", "prepared": "/y"}, "train": {"epochs": 3}})
    assert config_hash(cfg) == "654cef02334b2de3"
    # a new setting away from its default does change the hash
    assert config_hash(cfg.replace(data={"bin_width_months": 0.5})) != "654cef02334b2de3"


def test_model_saved_before_kinds_still_loads(tiny_cohort, prepared, tmp_path):
    cfg = tiny_config(tiny_cohort, prepared, train={"epochs": 1})
    model_dir = fit_final(cfg, tmp_path / "model", progress=False)
    meta = json.loads((model_dir / "model.json").read_text())
    # the previous release's model.json: no "kind", no bin width in the configuration
    del meta["kind"]
    del meta["config"]["data"]["bin_width_months"]
    (model_dir / "model.json").write_text(json.dumps(meta))
    model, loaded, _ = load_model(model_dir)
    assert loaded.embed.kind == "2d" and loaded.time_grid.n_logits == 26
    assert model.head.num_bins == 26
