"""Per-patient reports of ``ctsurv predict`` (:mod:`ctsurv.patient_report`), checked against the
prediction files, the saved model's metadata and the prepared slices.

The pages come from a real ``predict`` run (``tiny_scored`` in conftest: a final model of the
shared 12-patient phantom cohort scores three of its patients).
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import TINY_SCORED
from ctsurv.patient_report import risk_percentile, safe_folder_name, write_patient_reports
from ctsurv.train import dropout_passes
from ctsurv.types import PatientFeatures

class Links(HTMLParser):
    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.tags, self.ids, self._stack, self.data = [], {}, [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag not in ("img", "meta", "br"):
            self._stack.append(a.get("id"))

    def handle_endtag(self, tag):
        if self._stack:
            self._stack.pop()

    def handle_data(self, data):
        self.data.append(data)
        for i in self._stack:
            if i:
                self.ids[i] = self.ids.get(i, "") + data


def _record(out, pid):
    return json.loads((out / "patients" / safe_folder_name(pid) / "patient.json").read_text())


def test_every_patient_has_a_page_whose_numbers_are_the_predictions(tiny_scored):
    model_dir, out, preds = tiny_scored
    meta = json.loads((model_dir / "model.json").read_text())
    cols = [c for c in preds.columns if c.startswith("S_")]
    top = pd.read_csv(out / "top_slices.csv")
    for row in preds.itertuples(index=False):
        rec = _record(out, row.patient_id)
        s = preds.loc[preds.patient_id == row.patient_id, cols].to_numpy(float)[0]
        np.testing.assert_allclose(rec["curve"]["survival"], s, atol=1e-12)
        assert rec["risk"] == pytest.approx(1.0 - s[-1], abs=1e-12)
        # the tier is the comparison with the model's stored training median
        assert rec["risk_tier"] == ("high" if rec["risk"] > meta["train_risk_median"] else "low")
        q = np.asarray(meta["train_risk_quantiles"])
        assert q.size == 21 and np.all(np.diff(q) >= 0)
        below = np.flatnonzero(q <= rec["risk"])
        if below.size and below[-1] < 20:  # between the 5k-th and 5(k+1)-th percentiles
            assert 5 * below[-1] <= rec["risk_percentile"] <= 5 * (below[-1] + 1)
        mine = top[top.patient_id == row.patient_id].drop(columns="patient_id")
        assert [t["slice"] for t in rec["top_slices"]] == mine["slice"].tolist()
        lo, hi = np.asarray(rec["curve"]["band_low"]), np.asarray(rec["curve"]["band_high"])
        assert np.all(lo <= hi + 1e-12) and np.any(hi - lo > 1e-6)  # dropout moves the curve
        assert rec["band"]["n_passes"] == 12 and "Monte Carlo dropout" in rec["band"]["method"]
        assert "not a confidence interval" in rec["band"]["method"]
        assert rec["grad_cam"].startswith("Grad-CAM of the risk")  # the 2d kind's pooled Lite0 trunk
        page = (out / "patients" / safe_folder_name(row.patient_id) / "report.html").read_text()
        p = Links(page)
        assert p.ids["survival-at-horizon"] == f"{s[-1]:.3f}"
        assert p.ids["risk-tier"] == rec["risk_tier"]
        assert "not a basis for a treatment decision" in p.ids["plain-language"]
        assert f"higher than {rec['risk_percentile']:.0f}% of them" in p.ids["plain-language"]
        srcs = [a.get("src", "") for t, a in p.tags if t == "img"]
        assert len(srcs) == 2 and all(x.startswith("data:image/png;base64,") for x in srcs)
        assert not any(t in ("script", "link") for t, _ in p.tags)
        assert not re.search(r"(?:src|href)=\"(?:https?:)?//", page)
        for f in ("curve.png", "slices.png", "curve.svg"):
            assert (out / "patients" / safe_folder_name(row.patient_id) / f).is_file(), f


def test_index_lists_patients_by_risk_with_working_links(tiny_scored):
    _, out, preds = tiny_scored
    p = Links((out / "index.html").read_text())
    rows = [a["data-patient"] for t, a in p.tags if t == "tr" and "data-patient" in a]
    assert rows == preds.sort_values("risk", ascending=False)["patient_id"].tolist()
    hrefs = [a["href"] for t, a in p.tags if t == "a"]
    assert len(hrefs) == len(TINY_SCORED)
    for h in hrefs:
        assert not h.startswith(("http", "/")) and (out / h).is_file()


def test_risk_percentile_interpolates_the_training_quantiles():
    q = np.linspace(0.2, 0.8, 21)  # training risks uniform on [0.2, 0.8]
    assert risk_percentile(0.5, q) == pytest.approx(50.0)
    assert risk_percentile(0.35, q) == pytest.approx(25.0)
    assert risk_percentile(0.1, q) == 0.0 and risk_percentile(0.9, q) == 100.0
    assert risk_percentile(0.5, []) is None


def test_dropout_passes_vary_reproducibly_and_leave_the_global_generator_alone():
    from ctsurv.config import from_dict
    from ctsurv.build import get_kind, network_factory

    cfg = from_dict({"seed": 1})
    net = network_factory(cfg, get_kind(cfg).build_encoder(cfg))()
    rng = np.random.default_rng(0)
    pats = [PatientFeatures(f"P{i}", rng.normal(size=(1, 6, 1280)).astype(np.float32),
                            np.linspace(0, 1, 6, dtype=np.float32)) for i in range(3)]
    state = torch.get_rng_state()
    a = dropout_passes(net, pats, n_passes=5, seed=3)
    assert torch.equal(state, torch.get_rng_state())
    b = dropout_passes(net, pats, n_passes=5, seed=3)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (5, 3, 25) and not np.allclose(a[0], a[1])
    assert not net.training  # back in eval mode
    for m in net.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    assert dropout_passes(net, pats, n_passes=5, seed=3) is None


def test_odd_and_colliding_ids_get_distinct_safe_folders(tmp_path):
    base = {"horizon": 24.0, "risk": 0.5, "survival_at_horizon": 0.5, "risk_tier": None,
            "train_risk_median": None, "risk_percentile": None, "n_train": None,
            "calibration": "x", "band": {"method": "none", "n_passes": 0, "quantiles": [0.05, 0.95]},
            "model": {"dir": "m", "kind": "3d"}, "grad_cam": "n/a", "top_slices": [],
            "slices_caption": "", "slices_note": "no slices", "ctsurv_version": "0"}
    times = np.arange(25.0)
    curve = {"times": times.tolist(), "survival": np.linspace(1, 0.5, 25).tolist(),
             "band_low": None, "band_high": None}
    ids = ["../A/B", "A B", "a_b"]  # all three map to A_B / a_b before de-duplication
    recs = [{**base, "patient_id": pid, "curve": curve} for pid in ids]
    index = write_patient_reports(tmp_path, recs, {}, times, model_dir="m")
    folders = sorted(d.name for d in (tmp_path / "patients").iterdir())
    assert len(folders) == 3 and len({f.lower() for f in folders}) == 3
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", f) and not f.startswith(".") for f in folders)
    got = {json.loads((tmp_path / "patients" / f / "patient.json").read_text())["patient_id"] for f in folders}
    assert got == set(ids)
    assert all(pid in Links(index.read_text()).ids["patients"] for pid in ids)
