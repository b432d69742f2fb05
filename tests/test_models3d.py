"""Tests of ctsurv.models3d: volume input, 3D encoders, freezing, weights, MST."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from ctsurv.exceptions import ModelMismatchError, WeightsNotFoundError
from ctsurv.models import SurvivalNet
from ctsurv.models3d import (
    DenseNet3D121,
    MedicalSliceTransformer,
    Model3DError,
    ResNet3D18,
    ViTSliceEncoder,
    Volume3DNet,
    r3d18_from_torchvision,
    volume_input,
)

HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def r3d_fe():
    return ResNet3D18(weights="random", strategy="feature-extractor")


# ----------------------------------------------------------------------------- volume_input
def test_volume_input_resample_shape_and_ends():
    rng = np.random.default_rng(0)
    s = rng.random((10, 32, 32), dtype=np.float32)
    v = volume_input(s, depth=19, size=32)
    assert v.shape == (1, 19, 32, 32) and v.dtype == torch.float32
    # align_corners: first/last slices kept, the middle output slice (z = 4.5) is the mean of 4 and 5
    np.testing.assert_allclose(v[0, 0].numpy(), s[0], atol=1e-6)
    np.testing.assert_allclose(v[0, -1].numpy(), s[-1], atol=1e-6)
    np.testing.assert_allclose(v[0, 9].numpy(), (s[4] + s[5]) / 2, atol=1e-6)


def test_volume_input_pad_keeps_slice_content():
    rng = np.random.default_rng(1)
    s = rng.random((5, 16, 16), dtype=np.float32)
    v = volume_input(s, depth=10, size=16, mode="pad")[0].numpy()
    assert v.shape == (10, 16, 16)
    np.testing.assert_array_equal(v[2:7], s)  # 2 zero slices before, 3 after
    assert not v[:2].any() and not v[7:].any()
    c = volume_input(s, depth=3, size=16, mode="pad")[0].numpy()  # centre crop
    np.testing.assert_array_equal(c, s[1:4])


def test_volume_input_resizes_in_plane_and_keeps_depth_none():
    s = np.full((4, 64, 64), 0.25, dtype=np.float32)
    v = volume_input(s, depth=None, size=32)
    assert v.shape == (1, 4, 32, 32)
    np.testing.assert_allclose(v.numpy(), 0.25, atol=1e-6)


def test_volume_input_errors_name_patient():
    with pytest.raises(Model3DError, match=r"patient LUNG1-001: slices must be in \[0, 1\]"):
        volume_input(np.full((3, 8, 8), 2.0), depth=4, size=8, patient_id="LUNG1-001")
    with pytest.raises(Model3DError, match="expected slices of shape"):
        volume_input(np.zeros((8, 8)))
    with pytest.raises(Model3DError, match="mode must be"):
        volume_input(np.zeros((2, 8, 8)), mode="crop")


# ----------------------------------------------------------------------------- encoders
def test_resnet3d_shapes_and_feature_extractor_freezing(r3d_fe):
    net = Volume3DNet(r3d_fe).eval()
    out = net(torch.rand(2, 1, 8, 32, 32))
    assert out.logits.shape == (2, 26) and out.pooled.shape == (2, 256)
    assert torch.equal(out.weights, torch.ones(2, 1))
    # only Linear(512 -> 256) trains: 512 * 256 + 256
    assert r3d_fe.n_trainable == 512 * 256 + 256
    assert all(not p.requires_grad for p in r3d_fe.trunk.parameters())
    # the r3d_18 backbone without its classifier: 33,371,472 - (512 * 400 + 400)
    assert sum(p.numel() for p in r3d_fe.trunk.parameters()) == 33371472 - 205200 - 2 * 64 * 147
    net.train()
    assert not r3d_fe.trunk.training  # frozen batch norms stay in eval mode


def test_resnet3d_half_frozen():
    enc = ResNet3D18(weights="random", strategy="half-frozen")
    assert enc.cut_point == "after:layer2.1"
    trainable = {n.split(".")[0] for n, p in enc.named_parameters() if p.requires_grad}
    assert trainable == {"head"}
    n_layer34 = sum(p.numel() for m in list(enc.head)[:4] for p in m.parameters())
    assert enc.n_trainable == n_layer34 + 512 * 256 + 256
    feats = enc.frozen_forward(torch.rand(1, 1, 8, 32, 32))
    assert feats.shape == (1, 128, 4, 8, 8) and not feats.requires_grad
    loss = enc.embed_features(feats).sum()
    loss.backward()
    assert all(p.grad is not None for p in enc.head.parameters())


def test_densenet3d_strategies():
    fe = DenseNet3D121(weights="random")
    assert fe.n_trainable == 1024 * 256 + 256
    hf = DenseNet3D121(weights="random", strategy="half-frozen")
    assert hf.cut_point == "after:denseblock3.denselayer11"  # 6 + 12 + 11 = 29 of 58 dense layers
    x = torch.rand(1, 1, 16, 32, 32)
    assert Volume3DNet(fe).eval()(x).logits.shape == (1, 26)
    assert Volume3DNet(hf).eval()(x).logits.shape == (1, 26)


def test_random_weights_only_by_name(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="no pretrained weights named 'imagenet'"):
        DenseNet3D121(weights="imagenet")
    with pytest.raises(WeightsNotFoundError, match="not an existing file"):
        DenseNet3D121(weights=str(tmp_path / "missing.pt"))
    with pytest.raises(TypeError):
        DenseNet3D121()  # no silent default
    with pytest.raises(Model3DError, match="unknown strategy"):
        ResNet3D18(weights="random", strategy="last-block")


@pytest.mark.skipif(HAS_TORCHVISION, reason="torchvision installed: the missing-extra path cannot run")
def test_kinetics_without_torchvision_is_a_clear_error():
    with pytest.raises(WeightsNotFoundError, match=r"torchvision, which is not installed.*torchvision==0.29.1"):
        ResNet3D18()  # default weights="kinetics"


@pytest.mark.skipif(not HAS_TORCHVISION, reason="torchvision not installed (optional: Kinetics weights)")
def test_torchvision_r3d18_file_loads(tmp_path):  # pragma: no cover - needs the optional extra
    from torchvision.models.video import r3d_18

    tv = r3d_18(weights=None).eval()
    torch.save(tv.state_dict(), tmp_path / "tv.pt")
    enc = ResNet3D18(weights=str(tmp_path / "tv.pt"), in_channels_mode="repeat")
    x = torch.rand(1, 1, 8, 32, 32)
    norm = (x.expand(-1, 3, -1, -1, -1) - torch.tensor([0.43216, 0.394666, 0.37645]).view(1, 3, 1, 1, 1)) \
        / torch.tensor([0.22803, 0.22145, 0.216989]).view(1, 3, 1, 1, 1)
    tv.fc = torch.nn.Identity()
    torch.testing.assert_close(enc.frozen_forward(x), tv(norm), rtol=1e-4, atol=1e-4)


def test_r3d18_key_conversion():
    sd = {"stem.0.weight": 1, "stem.1.running_mean": 2, "layer2.0.conv1.0.weight": 3,
          "layer2.0.conv2.1.bias": 4, "layer2.0.downsample.0.weight": 5, "fc.bias": 6}
    assert r3d18_from_torchvision(sd) == {"conv1.weight": 1, "bn1.running_mean": 2,
                                          "layer2.0.conv1.weight": 3, "layer2.0.bn2.bias": 4,
                                          "layer2.0.downsample.0.weight": 5, "fc.bias": 6}


def test_local_file_strict_round_trip(tmp_path, r3d_fe):
    path = tmp_path / "r3d.pt"
    sd = r3d_fe.network_state_dict()
    torch.save(sd, path)
    other = ResNet3D18(weights=str(path), rng=torch.Generator().manual_seed(5))
    x = torch.rand(1, 1, 8, 32, 32)
    torch.testing.assert_close(other.frozen_forward(x), r3d_fe.frozen_forward(x))
    assert not torch.equal(other.head[-1].weight, r3d_fe.head[-1].weight)  # new layer from rng
    bad = dict(sd)
    bad.pop("layer4.1.bn2.running_var")
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(ModelMismatchError, match="1 missing keys"):
        ResNet3D18(weights=str(tmp_path / "bad.pt"))
    bad = dict(sd, extra=torch.zeros(1))
    torch.save(bad, tmp_path / "bad2.pt")
    with pytest.raises(ModelMismatchError, match="1 unexpected keys"):
        ResNet3D18(weights=str(tmp_path / "bad2.pt"))


def test_cached_net_equals_full_forward(r3d_fe):
    net = Volume3DNet(r3d_fe).eval()
    vols = torch.rand(3, 1, 8, 32, 32)
    full = net(vols).logits
    feats = net.frozen_forward(vols)  # what the cache stores, one "slice" per patient
    cached = net.cached_net().eval()
    out = cached(feats[:, None], torch.ones(3, 1, dtype=torch.bool))
    torch.testing.assert_close(out.logits, full)
    assert isinstance(cached, SurvivalNet)
    assert {id(p) for p in cached.parameters() if p.requires_grad} == \
        {id(p) for p in net.parameters() if p.requires_grad}


# ----------------------------------------------------------------------------- MST
def _small_vit_mst():
    enc = ViTSliceEncoder(weights="random", image_size=28, embed_dim=32)
    return MedicalSliceTransformer(enc, embed_dim=32).eval()


def test_mst_padding_invariance():
    mst = _small_vit_mst()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 6, 1, 28, 28, generator=g)
    mask = torch.tensor([[True] * 4 + [False] * 2, [True] * 6])
    out = mst(x, mask)
    x2 = x.clone()
    x2[0, 4:] = torch.rand(2, 1, 28, 28, generator=g) * 5  # garbage in the padded slices
    out2 = mst(x2, mask)
    torch.testing.assert_close(out.logits, out2.logits)
    alone = mst(x[:1, :4], mask[:1, :4])
    torch.testing.assert_close(alone.logits, out.logits[:1], rtol=1e-5, atol=1e-5)
    assert out.weights.shape == (2, 6) and float(out.weights[0, 4:].detach().abs().sum()) == 0.0


def test_mst_strategies_and_cache():
    enc = ViTSliceEncoder(weights="random", image_size=28, embed_dim=32, strategy="half-frozen")
    assert enc.trunk_out_shape == (5, 384)
    frozen = sum(p.numel() for p in enc.trunk.parameters())
    assert all(not p.requires_grad for p in enc.trunk.parameters()) and frozen > 0
    mst = MedicalSliceTransformer(enc, embed_dim=32).eval()
    x = torch.rand(1, 3, 1, 28, 28)
    mask = torch.ones(1, 3, dtype=torch.bool)
    feats = mst.frozen_forward(x[0])
    assert feats.shape == (3, 5, 384)
    torch.testing.assert_close(mst.cached_net().eval()(feats[None], mask).logits, mst(x, mask).logits)
    fe = ViTSliceEncoder(weights="random", image_size=28, embed_dim=32)
    assert fe.n_trainable == 384 * 32 + 32


def test_mst_with_ctsurv_backbone():
    from ctsurv.embed import build_backbone

    enc = build_backbone("efficientnet-lite0", weights="random", image_size=32)
    mst = MedicalSliceTransformer(enc).eval()
    out = mst(torch.rand(1, 3, 1, 32, 32), torch.ones(1, 3, dtype=torch.bool))
    assert out.logits.shape == (1, 26)


def test_vit_weights_file_round_trip(tmp_path):
    enc = ViTSliceEncoder(weights="random", image_size=28, embed_dim=8)
    torch.save(enc.vit.state_dict(), tmp_path / "vit.pt")
    other = ViTSliceEncoder(weights=str(tmp_path / "vit.pt"), image_size=28, embed_dim=8)
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(other.run_trunk(x), enc.run_trunk(x))
    with pytest.raises(WeightsNotFoundError, match="DINOv2 weights are not available offline"):
        ViTSliceEncoder(weights="dinov2")
