"""Seed 002's slice network (ctsurv.tumour_net): the augmentation's geometry recovered from
its output (a linear ramp stays linear under an affine map, so a least-squares fit reads the
angle, scale and flip back), the same transform on every channel, the in-fold input
standardisation, and the shape contract."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ctsurv.exceptions import ModelInputError
from ctsurv.tumour_net import augment_slices

H = 48


def _coords():
    c = (torch.arange(H, dtype=torch.float64) + 0.5) / H * 2 - 1  # pixel centres, align_corners=False
    y, x = torch.meshgrid(c, c, indexing="ij")
    return x, y


def _fit(out, x, y, inner):
    a = np.stack([x[inner].numpy(), y[inner].numpy(), np.ones(int(inner.sum()))], 1)
    coef, res, *_ = np.linalg.lstsq(a, out[inner].numpy(), rcond=None)
    return coef, float(np.abs(a @ coef - out[inner].numpy()).max())


def test_flip_alone_is_an_exact_mirror():
    x = torch.randn(3, 2, H, H, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    out = augment_slices(x, g, max_rotation_deg=0.0, scale=(1.0, 1.0), flip_p=1.0)
    torch.testing.assert_close(out, torch.flip(x, dims=[3]), atol=1e-12, rtol=0)
    out = augment_slices(x, g, max_rotation_deg=0.0, scale=(1.0, 1.0), flip_p=0.0)
    torch.testing.assert_close(out, x, atol=1e-12, rtol=0)


def test_angles_scales_and_flips_recovered_from_a_ramp_are_in_the_stated_ranges():
    x, y = _coords()
    ramp_x, ramp_y = x.clone(), y.clone()
    n = 300
    img = torch.stack([ramp_x, ramp_y])[None].repeat(n, 1, 1, 1)  # channel 0: x, channel 1: y
    out = augment_slices(img, torch.Generator().manual_seed(1))
    inner = (x ** 2 + y ** 2) < 0.3 ** 2  # samples that stay inside the input at any scale >= 0.8
    angles, scales, flips = [], [], []
    for k in range(n):
        (a, b, c0), err_x = _fit(out[k, 0], x, y, inner)
        (d, e, c1), err_y = _fit(out[k, 1], x, y, inner)
        assert err_x < 1e-5 and err_y < 1e-5 and abs(c0) < 1e-5 and abs(c1) < 1e-5
        m = np.array([[a, b], [d, e]])  # input coords = m @ output coords
        det = np.linalg.det(m)
        s = 1 / math.sqrt(abs(det))
        flips.append(det < 0)
        # undo the flip (input x negated) and read the rotation
        r = m * s
        if det < 0:
            r[0] *= -1
        angles.append(math.degrees(math.atan2(r[1, 0], r[0, 0])))
        scales.append(s)
        np.testing.assert_allclose(r @ r.T, np.eye(2), atol=1e-5)  # a rotation: same transform on both channels
    angles, scales = np.array(angles), np.array(scales)
    assert np.abs(angles).max() <= 60.0 + 1e-6 and np.abs(angles).max() > 50.0
    assert scales.min() >= 0.8 - 1e-6 and scales.max() <= 1.2 + 1e-6 and np.ptp(scales) > 0.3
    assert 0.4 < np.mean(flips) < 0.6


def test_bad_shape_is_refused():
    with pytest.raises(ModelInputError, match=r"expects \(N, C, H, W\)"):
        augment_slices(torch.zeros(2, H, H), torch.Generator())


def test_slice_net_standardises_with_training_batches_only_and_checks_shapes():
    pytest.importorskip("ctsurv.ssm")
    from ctsurv.tumour_net import TumourSliceNet

    torch.manual_seed(0)
    net = TumourSliceNet(2, 32, dim=16, depth=1, patch_size=8, d_state=4, seed=3)
    assert net(torch.randn(5, 2, 32, 32)).shape == (5, 16)
    train = torch.randn(40, 2, 32, 32) * torch.tensor([3.0, 0.5]).view(1, 2, 1, 1) + torch.tensor([10.0, -2.0]).view(1, 2, 1, 1)
    net = TumourSliceNet(2, 32, dim=16, depth=1, patch_size=8, d_state=4, seed=3).train()
    for chunk in train.split(10):
        net(chunk)
    np.testing.assert_allclose(net.norm.running_mean.numpy(), train.mean(dim=(0, 2, 3)).numpy(), atol=1e-4)
    net.eval()
    before = net.norm.running_mean.clone()
    with torch.no_grad():
        net(torch.randn(7, 2, 32, 32) + 100.0)  # evaluation never moves the statistics
    torch.testing.assert_close(net.norm.running_mean, before)
    with pytest.raises(ModelInputError, match=r"expects \(N, 2, 32, 32\)"):
        net(torch.zeros(1, 3, 32, 32))
