"""Grad-CAM of the predicted risk (:mod:`ctsurv.explain`) against the closed form.

With a global average pool between the trunk's last map ``A`` (C x h x w) and the slice's
feature ``f = mean_hw A``, ``dy/dA_c = (dy/df_c) / (h w)`` at every position, so Grad-CAM's
channel weights are the gradient of the risk with respect to the cached feature row, divided by
``h w``. The test computes that gradient by autograd on the network alone (cached features in,
no trunk) and builds the expected map from it; ``grad_cam`` goes through the trunk's map and
the pool instead.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ctsurv.build import get_kind, network_factory
from ctsurv.config import from_dict
from ctsurv.exceptions import CtsurvError
from ctsurv.explain import grad_cam, grad_cam_supported
from ctsurv.models import survival
from ctsurv.types import PatientFeatures

SIZE = 64


@pytest.fixture(scope="module")
def model_and_encoder():
    torch.manual_seed(0)
    cfg = from_dict({"seed": 3, "preprocess": {"size": SIZE}, "embed": {"augment": False}})
    encoder = get_kind(cfg).build_encoder(cfg)
    net = network_factory(cfg, encoder)()
    return net.eval(), encoder


def _patient(encoder, n=6, seed=1):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    slices = []
    for i in range(n):  # a bright disc at a different place on every slice, over noise
        cy, cx = rng.integers(16, 48, size=2)
        img = 0.2 + 0.05 * rng.normal(size=(SIZE, SIZE))
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < (6 + i) ** 2] = 0.8
        slices.append(np.clip(img, 0, 1))
    slices = np.asarray(slices, dtype=np.float32)
    with torch.no_grad():
        feats = encoder.run_trunk(torch.from_numpy(slices)[:, None]).numpy()
    return PatientFeatures("P1", feats[None], np.linspace(0, 1, n, dtype=np.float32)), slices


def test_grad_cam_is_the_closed_form_through_the_pool(model_and_encoder):
    net, encoder = model_and_encoder
    patient, slices = _patient(encoder)
    idx = [4, 1, 2]
    got = grad_cam(net, encoder, patient, slices, idx)
    assert got.shape == (3, SIZE, SIZE) and got.dtype == np.float32

    f = torch.from_numpy(patient.features[0]).clone().requires_grad_(True)
    out = net(f[None], torch.ones(1, len(slices), dtype=torch.bool), torch.from_numpy(patient.rel_pos)[None])
    (g,) = torch.autograd.grad(1.0 - survival(out["logits"])[0, -1], f)
    assert g.abs().sum() > 0
    with torch.no_grad():
        maps = encoder.trunk[:-1](torch.from_numpy(slices[idx])[:, None])
    expected = F.relu((g[idx][:, :, None, None] * maps).sum(1, keepdim=True))
    expected = F.interpolate(expected, size=(SIZE, SIZE), mode="bilinear", align_corners=False)[:, 0]
    top = expected.flatten(1).amax(1)
    expected = torch.where(top[:, None, None] > 0, expected / top.clamp_min(1e-12)[:, None, None], expected)
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-4)
    assert np.all(got >= 0) and np.all(got <= 1 + 1e-6)
    # explaining a slice does not depend on which other slices are explained with it
    np.testing.assert_allclose(grad_cam(net, encoder, patient, slices, [1])[0], got[1], atol=1e-5)


def test_grad_cam_refuses_what_it_cannot_explain(model_and_encoder):
    net, encoder = model_and_encoder
    patient, slices = _patient(encoder)
    with pytest.raises(CtsurvError, match="patient P1: 5 slices but features of 6"):
        grad_cam(net, encoder, patient, slices[:5], [0])
    cfg3 = from_dict({"embed": {"kind": "3d", "backbone": "densenet3d-121", "weights": "random"},
                      "model": {"volume_depth": 16, "volume_size": 64}})
    ok, why = grad_cam_supported(get_kind(cfg3).build_encoder(cfg3))
    assert not ok and "2D slice trunk" in why
    cut = from_dict({"preprocess": {"size": SIZE}, "embed": {"strategy": "last-block"}})
    ok, why = grad_cam_supported(get_kind(cut).build_encoder(cut))
    assert not ok and "before its global pool" in why
    with pytest.raises(CtsurvError, match="Grad-CAM is not available"):
        grad_cam(net, get_kind(cut).build_encoder(cut), patient, slices, [0])
