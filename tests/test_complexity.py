"""Tests of ctsurv.complexity: parameter counts and FLOP counting."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ctsurv.complexity import (
    ComplexityError,
    complexity_table,
    count_params,
    gflops,
    slice_model_config,
    volume_model_config,
)
from ctsurv.models import DeepHit, SurvivalNet, make_aggregator


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_count_params_total_and_trainable():
    m = nn.Sequential(nn.Linear(10, 5), nn.Linear(5, 2))
    m[0].weight.requires_grad_(False)
    assert count_params(m) == (10 * 5 + 5 + 5 * 2 + 2, 5 + 5 * 2 + 2)
    shared = nn.Linear(3, 3)
    assert count_params(nn.Sequential(shared, shared)) == (12, 12)  # counted once
    with pytest.raises(ComplexityError, match="expected an nn.Module"):
        count_params("resnet")


def test_gflops_closed_form_conv_and_linear():
    # Conv2d 3 -> 8, 3x3, 16x16 output: 2 * 8*16*16 * 3*3*3 FLOPs (bias not counted)
    conv = nn.Conv2d(3, 8, 3, padding=1)
    assert gflops(conv, torch.zeros(1, 3, 16, 16)) * 1e9 == pytest.approx(2 * 8 * 256 * 27)
    lin = nn.Linear(100, 7)
    assert gflops(lin, torch.zeros(4, 100), device="meta") * 1e9 == pytest.approx(2 * 4 * 100 * 7)
    conv3 = nn.Conv3d(1, 4, 3, padding=1)
    assert gflops(conv3, torch.zeros(1, 1, 5, 6, 7), device="meta") * 1e9 == pytest.approx(2 * 4 * 210 * 27)


def test_gflops_counts_attention_on_cpu_like_meta():
    # fused inference paths (MHA fast path, CPU flash SDPA) would hide the matmuls
    layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
    x = torch.zeros(2, 10, 32)
    cpu, meta = gflops(layer, x), gflops(layer, x, device="meta")
    expect = 2 * 2 * 10 * (32 * 96 + 32 * 32 + 2 * 32 * 64) + 2 * 2 * 2 * 10 * 10 * 32
    assert cpu * 1e9 == pytest.approx(expect) and meta * 1e9 == pytest.approx(expect)


def test_gflops_bad_device():
    with pytest.raises(ComplexityError, match="device must be"):
        gflops(nn.Linear(2, 2), torch.zeros(1, 2), device="cuda")


def _b0_encoder(size: int):
    from ctsurv.embed import build_backbone

    return build_backbone("efficientnet-b0", weights="random", in_channels_mode="sum", image_size=size)


def test_2d_flops_reproducible_linear_in_slices_and_match_full_model():
    enc = _b0_encoder(64)
    agg, head = make_aggregator("soft", 256), DeepHit(256)
    g = {s: complexity_table([slice_model_config("b0", enc, agg, head, n_slices=s, image_size=64)])
         for s in (36, 72)}
    again = complexity_table([slice_model_config("b0", enc, agg, head, n_slices=72, image_size=64)])
    assert again.loc[0, "gflops"] == g[72].loc[0, "gflops"]  # exactly reproducible
    assert g[72].loc[0, "gflops"] / g[36].loc[0, "gflops"] == pytest.approx(2.0, rel=0.01)
    # the split count (encoder on meta + tail on CPU) equals the whole SurvivalNet on CPU
    net = SurvivalNet(enc, agg, head)
    full = gflops(net, (torch.rand(1, 8, 1, 64, 64), torch.ones(1, 8, dtype=torch.bool)))
    split = complexity_table([slice_model_config("b0", enc, agg, head, n_slices=8, image_size=64)])
    assert split.loc[0, "gflops"] == pytest.approx(full, rel=1e-9)
    assert split.loc[0, "params_total"] == count_params(net)[0]


def test_b0_full_size_matches_paper_on_meta():
    # seed 001: 54.3 GFLOPs for EfficientNet-B0 + soft attention at 72 slices of 224 x 224
    enc = _b0_encoder(224)
    g = gflops(enc, torch.zeros(72, 1, 224, 224), device="meta")
    assert g == pytest.approx(54.3, rel=0.005)


def test_resnet3d_flops_at_paper_size_on_meta():
    from ctsurv.models3d import ResNet3D18, Volume3DNet

    rgb = ResNet3D18(weights="random", in_channels_mode="repeat")
    # torchvision's r3d_18 on (3, 16, 112, 112) is 40.70 GMACs = 81.4 GFLOPs
    assert gflops(rgb, torch.zeros(1, 1, 16, 112, 112), device="meta") == pytest.approx(81.4, rel=0.001)
    net = Volume3DNet(ResNet3D18(weights="random"))  # one-channel stem, as ASCENT
    row = complexity_table([volume_model_config("r3d", net)]).iloc[0]
    assert row["gflops"] == pytest.approx(1431.1, rel=1e-3)
    assert row["params_trainable"] == 512 * 256 + 256 + count_params(net.head)[1]
