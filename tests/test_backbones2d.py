"""Seed 000's other 2D backbones: ResNet50, VGG16, AlexNet, ViT-B/16 (ctsurv.embed.nets2d).

Oracles: parameter counts computed by hand from the architectures; torchvision-layout state
dicts whose key names and shapes are written out here from torchvision's model definitions
(resnet.py, vgg.py, alexnet.py, vision_transformer.py) and from timm's ViT, filled with
random tensors and compared against functional re-implementations (F.conv2d, F.batch_norm,
F.multi_head_attention_forward) that share no code with ctsurv.
"""

from __future__ import annotations

import urllib.error

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ctsurv.embed import BACKBONES, EmbedError, TrunkRunner, build_backbone, file_sha256
from ctsurv.embed.backbones import TORCHVISION_URLS
from ctsurv.embed.nets2d import convert_vit_state_dict
from ctsurv.exceptions import ModelMismatchError, WeightsNotFoundError

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
NEW = ("resnet50", "vgg16", "alexnet", "vit-b16")


def _norm(x):  # (N, 1, H, W) in [0, 1] -> ImageNet-normalised RGB
    return (x.expand(-1, 3, -1, -1) - MEAN) / STD


def _slices(n, size, seed=0):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    blob = torch.exp(-((yy - 0.4) ** 2 + (xx - 0.6) ** 2) / 0.05)
    return (0.7 * blob + 0.3 * torch.rand(n, 1, size, size, generator=g)).clamp(0, 1)


# ----------------------------------------------------------------------- synthetic state dicts
class _Filler:
    def __init__(self, seed):
        self.g = torch.Generator().manual_seed(seed)
        self.sd = {}

    def conv(self, name, c_out, c_in, k, bias):
        self.sd[f"{name}.weight"] = torch.randn(c_out, c_in, k, k, generator=self.g) * (2.0 / (c_in * k * k)) ** 0.5
        if bias:
            self.sd[f"{name}.bias"] = 0.05 * torch.randn(c_out, generator=self.g)

    def bn(self, name, c, gamma=1.0):
        g = self.g
        self.sd.update({f"{name}.weight": gamma * (0.5 + 0.5 * torch.rand(c, generator=g)),
                        f"{name}.bias": 0.1 * torch.randn(c, generator=g),
                        f"{name}.running_mean": 0.1 * torch.randn(c, generator=g),
                        f"{name}.running_var": 0.5 + torch.rand(c, generator=g),
                        f"{name}.num_batches_tracked": torch.tensor(0)})

    def linear(self, name, n_out, n_in, scale=1.0):
        self.sd[f"{name}.weight"] = scale * torch.randn(n_out, n_in, generator=self.g) * (1.0 / n_in) ** 0.5
        self.sd[f"{name}.bias"] = 0.05 * torch.randn(n_out, generator=self.g)

    def ln(self, name, d):
        self.sd[f"{name}.weight"] = 1 + 0.1 * torch.randn(d, generator=self.g)
        self.sd[f"{name}.bias"] = 0.1 * torch.randn(d, generator=self.g)


RESNET50_LAYERS = [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]  # planes, blocks, stride


def tv_resnet50_sd(seed=0):
    """torchvision resnet50 keys (conv1, bn1, layerL.B.{conv,bn}{1,2,3}, downsample.{0,1}, fc)."""
    f = _Filler(seed)
    f.conv("conv1", 64, 3, 7, False)
    f.bn("bn1", 64)
    inp = 64
    for li, (planes, n, _) in enumerate(RESNET50_LAYERS, 1):
        for b in range(n):
            p = f"layer{li}.{b}."
            f.conv(p + "conv1", planes, inp, 1, False)
            f.bn(p + "bn1", planes)
            f.conv(p + "conv2", planes, planes, 3, False)
            f.bn(p + "bn2", planes)
            f.conv(p + "conv3", planes * 4, planes, 1, False)
            f.bn(p + "bn3", planes * 4, gamma=0.3)
            if b == 0:
                f.conv(p + "downsample.0", planes * 4, inp, 1, False)
                f.bn(p + "downsample.1", planes * 4)
            inp = planes * 4
    f.linear("fc", 1000, 2048)
    return f.sd


def ref_resnet50_features(sd, x):
    def bn(t, name):
        return F.batch_norm(t, sd[f"{name}.running_mean"], sd[f"{name}.running_var"],
                            sd[f"{name}.weight"], sd[f"{name}.bias"], False, 0.0, 1e-5)

    x = F.relu(bn(F.conv2d(x, sd["conv1.weight"], stride=2, padding=3), "bn1"))
    x = F.max_pool2d(x, 3, 2, 1)
    for li, (_, n, stride) in enumerate(RESNET50_LAYERS, 1):
        for b in range(n):
            p = f"layer{li}.{b}."
            s = stride if b == 0 else 1
            y = F.relu(bn(F.conv2d(x, sd[p + "conv1.weight"]), p + "bn1"))
            y = F.relu(bn(F.conv2d(y, sd[p + "conv2.weight"], stride=s, padding=1), p + "bn2"))
            y = bn(F.conv2d(y, sd[p + "conv3.weight"]), p + "bn3")
            if b == 0:
                x = bn(F.conv2d(x, sd[p + "downsample.0.weight"], stride=s), p + "downsample.1")
            x = F.relu(x + y)
    return x.mean((2, 3))


VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def tv_vgg16_sd(seed=0):
    f = _Filler(seed)
    idx, c_in = 0, 3
    for v in VGG16_CFG:
        if v == "M":
            idx += 1
            continue
        f.conv(f"features.{idx}", v, c_in, 3, True)
        idx, c_in = idx + 2, v
    f.linear("classifier.0", 4096, 25088, scale=1.5)
    f.linear("classifier.3", 4096, 4096, scale=1.5)
    f.linear("classifier.6", 1000, 4096)
    return f.sd


def ref_vgg16_features(sd, x):
    idx = 0
    for v in VGG16_CFG:
        if v == "M":
            x, idx = F.max_pool2d(x, 2, 2), idx + 1
        else:
            x = F.relu(F.conv2d(x, sd[f"features.{idx}.weight"], sd[f"features.{idx}.bias"], padding=1))
            idx += 2
    x = F.adaptive_avg_pool2d(x, 7).flatten(1)
    x = F.relu(F.linear(x, sd["classifier.0.weight"], sd["classifier.0.bias"]))
    return F.relu(F.linear(x, sd["classifier.3.weight"], sd["classifier.3.bias"]))


ALEXNET_CONVS = [(0, 64, 3, 11), (3, 192, 64, 5), (6, 384, 192, 3), (8, 256, 384, 3), (10, 256, 256, 3)]


def tv_alexnet_sd(seed=0):
    f = _Filler(seed)
    for idx, c_out, c_in, k in ALEXNET_CONVS:
        f.conv(f"features.{idx}", c_out, c_in, k, True)
    f.linear("classifier.1", 4096, 9216, scale=1.5)
    f.linear("classifier.4", 4096, 4096, scale=1.5)
    f.linear("classifier.6", 1000, 4096)
    return f.sd


def ref_alexnet_features(sd, x):
    def conv(t, i, stride=1, pad=1):
        return F.relu(F.conv2d(t, sd[f"features.{i}.weight"], sd[f"features.{i}.bias"], stride, pad))

    x = F.max_pool2d(conv(x, 0, 4, 2), 3, 2)
    x = F.max_pool2d(conv(x, 3, 1, 2), 3, 2)
    x = F.max_pool2d(conv(conv(conv(x, 6), 8), 10), 3, 2)
    x = F.adaptive_avg_pool2d(x, 6).flatten(1)
    x = F.relu(F.linear(x, sd["classifier.1.weight"], sd["classifier.1.bias"]))
    return F.relu(F.linear(x, sd["classifier.4.weight"], sd["classifier.4.bias"]))


def tv_vit_b16_sd(seed=0):
    """torchvision vit_b_16 keys."""
    f = _Filler(seed)
    f.conv("conv_proj", 768, 3, 16, True)
    f.sd["class_token"] = 0.5 * torch.randn(1, 1, 768, generator=f.g)
    f.sd["encoder.pos_embedding"] = 0.5 * torch.randn(1, 197, 768, generator=f.g)
    for i in range(12):
        p = f"encoder.layers.encoder_layer_{i}."
        f.ln(p + "ln_1", 768)
        f.sd[p + "self_attention.in_proj_weight"] = torch.randn(2304, 768, generator=f.g) * 768 ** -0.5
        f.sd[p + "self_attention.in_proj_bias"] = 0.05 * torch.randn(2304, generator=f.g)
        f.linear(p + "self_attention.out_proj", 768, 768, scale=0.5)
        f.ln(p + "ln_2", 768)
        f.linear(p + "mlp.0", 3072, 768)
        f.linear(p + "mlp.3", 768, 3072, scale=0.5)
    f.ln("encoder.ln", 768)
    f.linear("heads.head", 1000, 768)
    return f.sd


def tv_to_timm_vit(sd):
    """The same tensors under timm's VisionTransformer names (patch_embed.proj, cls_token,
    pos_embed, blocks.i.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}, norm, head)."""
    out = {"patch_embed.proj.weight": sd["conv_proj.weight"],
           "patch_embed.proj.bias": sd["conv_proj.bias"],
           "cls_token": sd["class_token"], "pos_embed": sd["encoder.pos_embedding"],
           "norm.weight": sd["encoder.ln.weight"], "norm.bias": sd["encoder.ln.bias"],
           "head.weight": sd["heads.head.weight"], "head.bias": sd["heads.head.bias"]}
    for i in range(12):
        p = f"encoder.layers.encoder_layer_{i}."
        names = {"norm1": "ln_1", "norm2": "ln_2", "attn.proj": "self_attention.out_proj",
                 "mlp.fc1": "mlp.0", "mlp.fc2": "mlp.3"}
        for timm_name, tv_name in names.items():
            for t in ("weight", "bias"):
                out[f"blocks.{i}.{timm_name}.{t}"] = sd[f"{p}{tv_name}.{t}"]
        out[f"blocks.{i}.attn.qkv.weight"] = sd[p + "self_attention.in_proj_weight"]
        out[f"blocks.{i}.attn.qkv.bias"] = sd[p + "self_attention.in_proj_bias"]
    return out


def ref_vit_features(sd, x):
    x = F.conv2d(x, sd["conv_proj.weight"], sd["conv_proj.bias"], stride=16).flatten(2).transpose(1, 2)
    x = torch.cat([sd["class_token"].expand(len(x), -1, -1), x], 1) + sd["encoder.pos_embedding"]
    for i in range(12):
        p = f"encoder.layers.encoder_layer_{i}."
        y = F.layer_norm(x, (768,), sd[p + "ln_1.weight"], sd[p + "ln_1.bias"], 1e-6).transpose(0, 1)
        a, _ = F.multi_head_attention_forward(
            y, y, y, 768, 12, sd[p + "self_attention.in_proj_weight"],
            sd[p + "self_attention.in_proj_bias"], None, None, False, 0.0,
            sd[p + "self_attention.out_proj.weight"], sd[p + "self_attention.out_proj.bias"],
            training=False, need_weights=False)
        x = x + a.transpose(0, 1)
        y = F.layer_norm(x, (768,), sd[p + "ln_2.weight"], sd[p + "ln_2.bias"], 1e-6)
        y = F.linear(F.gelu(F.linear(y, sd[p + "mlp.0.weight"], sd[p + "mlp.0.bias"])),
                     sd[p + "mlp.3.weight"], sd[p + "mlp.3.bias"])
        x = x + y
    return F.layer_norm(x, (768,), sd["encoder.ln.weight"], sd["encoder.ln.bias"], 1e-6)[:, 0]


@pytest.fixture(scope="module")
def resnet_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "resnet50-synthetic.pth"
    torch.save(tv_resnet50_sd(), path)
    return path


# ----------------------------------------------------------------------- tests
def _conv(c_in, c_out, k, bias=True):
    return c_in * c_out * k * k + (c_out if bias else 0)


def _bottleneck(c_in, planes, down):
    n = _conv(c_in, planes, 1, False) + _conv(planes, planes, 3, False) + _conv(planes, 4 * planes, 1, False)
    n += 2 * (planes + planes + 4 * planes)  # three batch norms (weight + bias)
    return n + (_conv(c_in, 4 * planes, 1, False) + 2 * 4 * planes if down else 0)


def test_trainable_parameter_counts_match_hand_counts():
    lin = {d: d * 256 + 256 for d in (2048, 4096, 768)}
    # ResNet50: 16 bottlenecks; last-block = layer4.2; half-frozen trains layer3.1.. onwards
    b3, b4_0, b4 = _bottleneck(1024, 256, False), _bottleneck(1024, 512, True), _bottleneck(2048, 512, False)
    # VGG16 13 convs (3x3, bias); fc6 25088->4096, fc7 4096->4096
    chans = [3, 64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    vconv = [_conv(a, b, 3) for a, b in zip(chans[:-1], chans[1:])]
    vfc = (25088 * 4096 + 4096) + (4096 * 4096 + 4096)
    aconv = [_conv(3, 64, 11), _conv(64, 192, 5), _conv(192, 384, 3), _conv(384, 256, 3), _conv(256, 256, 3)]
    afc = (9216 * 4096 + 4096) + (4096 * 4096 + 4096)
    vit_layer = 2 * 2 * 768 + (2304 * 768 + 2304) + (768 * 768 + 768) + (768 * 3072 + 3072) + (3072 * 768 + 768)
    expected = {
        ("resnet50", "feature-extractor"): lin[2048],
        ("resnet50", "last-block"): b4 + lin[2048],
        ("resnet50", "half-frozen"): 5 * b3 + b4_0 + 2 * b4 + lin[2048],
        ("vgg16", "feature-extractor"): lin[4096],
        ("vgg16", "last-block"): vconv[-1] + vfc + lin[4096],
        ("vgg16", "half-frozen"): sum(vconv[6:]) + vfc + lin[4096],
        ("alexnet", "feature-extractor"): lin[4096],
        ("alexnet", "last-block"): aconv[-1] + afc + lin[4096],
        ("alexnet", "half-frozen"): sum(aconv[2:]) + afc + lin[4096],
        ("vit-b16", "feature-extractor"): lin[768],
        ("vit-b16", "last-block"): vit_layer + 2 * 768 + lin[768],
        ("vit-b16", "half-frozen"): 6 * vit_layer + 2 * 768 + lin[768],
    }
    # the same numbers as stated in the backbones module docstring
    assert [BACKBONES[n].feature_dim for n in NEW] == [2048, 4096, 4096, 768]
    assert [expected[(n, s)] for n in NEW for s in ("feature-extractor", "last-block", "half-frozen")] == [
        524_544, 4_987_136, 21_075_200, 1_048_832, 122_954_496, 134_163_968,
        1_048_832, 56_173_056, 57_721_984, 196_864, 7_286_272, 42_725_632]
    totals = {"resnet50": 25_557_032, "vgg16": 138_357_544, "alexnet": 61_100_840, "vit-b16": 86_567_656}
    cuts = {("resnet50", "last-block"): ("after:layer4.1", (2048, 2, 2)),
            ("vit-b16", "half-frozen"): ("after:encoder_layer_5", (17, 768)),
            ("vgg16", "half-frozen"): ("after:conv6", (256, 16, 16))}
    for (name, strategy), n_train in expected.items():
        enc = build_backbone(name, weights="random", strategy=strategy, image_size=64)
        assert enc.n_trainable == n_train, (name, strategy)
        if strategy == "feature-extractor":  # pooled penultimate feature, (B, S, 256) out
            assert enc.trunk_out_shape == (BACKBONES[name].feature_dim,)
            out = enc(_slices(6, 64).reshape(2, 3, 1, 64, 64))
            assert out.shape == (2, 3, 256) and torch.isfinite(out).all()
        if (name, strategy) in cuts:
            assert (enc.cut_point, enc.trunk_out_shape) == cuts[(name, strategy)]
        n_trunk = sum(p.numel() for p in enc.trunk.parameters())
        assert all(not p.requires_grad for p in enc.trunk.parameters())
        # trunk + head = torchvision's total - replaced last layer + new 256-d layer
        d = BACKBONES[name].feature_dim
        assert n_trunk + n_train == totals[name] - (d * 1000 + 1000) + lin[d], name
        del enc


def test_resnet50_torchvision_file_loads_strictly_and_matches_reference(resnet_file):
    sd = torch.load(resnet_file, weights_only=True)
    x = _slices(3, 64)
    ref = ref_resnet50_features(sd, _norm(x))
    for strategy in ("feature-extractor", "last-block"):
        enc = build_backbone("resnet50", weights=resnet_file, strategy=strategy, image_size=64)
        enc.eval()
        got = enc.head[:-2](enc.run_trunk(x))  # pretrained stages of the head, then pooled
        assert ref.abs().max() > 0.1
        torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name, make_sd, ref", [("alexnet", tv_alexnet_sd, ref_alexnet_features),
                                                ("vgg16", tv_vgg16_sd, ref_vgg16_features)])
def test_classic_torchvision_layouts_match_reference(name, make_sd, ref, tmp_path):
    sd = make_sd()
    path = tmp_path / f"{name}.pth"
    torch.save(sd, path)
    enc = build_backbone(name, weights=path, image_size=64)  # fc7 feature, pool 2x2->7x7 / 1x1->6x6
    x = _slices(2, 64)
    expected = ref(sd, _norm(x))
    assert expected.abs().max() > 0.05
    # float32 through 5-13 convolutions and 2 dense layers: the engine's and the reference's
    # kernels sum in different orders (they differ by ~2e-5 on AMD EPYC), a wrong layout by O(0.1)
    torch.testing.assert_close(enc.run_trunk(x), expected, atol=1e-4, rtol=1e-4)


def test_vit_timm_and_torchvision_layouts_match_reference(tmp_path):
    sd = tv_vit_b16_sd()
    legacy = {k.replace(".mlp.0.", ".mlp.linear_1.").replace(".mlp.3.", ".mlp.linear_2."): v
              for k, v in sd.items()}  # torchvision < 0.14 names
    assert sum(".mlp.linear_1." in k for k in legacy) == 24
    assert set(convert_vit_state_dict(legacy)) == set(sd)
    timm = tv_to_timm_vit(sd)
    assert set(convert_vit_state_dict(timm)) == set(sd)
    torch.save(timm, tmp_path / "vit-timm.pth")
    enc = build_backbone("vit-b16", weights=tmp_path / "vit-timm.pth", image_size=224)
    x = _slices(1, 224)
    expected = ref_vit_features(sd, _norm(x))
    assert expected.abs().max() > 0.1
    torch.testing.assert_close(enc.run_trunk(x), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", NEW)
def test_imagenet_offline_raises_helpful_error(name, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # empty hub cache
    calls = []

    def no_network(url, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    fname = TORCHVISION_URLS[name].rsplit("/", 1)[-1]
    with pytest.raises(WeightsNotFoundError,
                       match=rf"{name}: ImageNet weights are not available offline.*download\.pytorch"
                             rf"\.org/models/{fname}.*weights='/path/to/{fname}'"):
        build_backbone(name, weights="imagenet", image_size=64)
    assert calls == [TORCHVISION_URLS[name]]


def test_imagenet_uses_hub_cache_file_when_present(monkeypatch, tmp_path, resnet_file):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    ckpt = tmp_path / "hub" / "checkpoints" / "resnet50-0676ba61.pth"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(resnet_file.read_bytes())
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url",
                        lambda *a, **k: pytest.fail("download attempted"))
    enc = build_backbone("resnet50", weights="imagenet", image_size=64)
    assert enc.weights == "imagenet" and enc.weights_sha256 == file_sha256(resnet_file)


def test_random_only_by_name_and_bad_inputs(tmp_path, resnet_file):
    enc = build_backbone("alexnet", weights="random", image_size=64)
    assert enc.weights == "random" and enc.weights_sha256.startswith("random-init-seed-")
    for name in NEW:
        for bad in ("", "pretrained", "none", str(tmp_path / "missing.pth")):
            with pytest.raises(WeightsNotFoundError, match="neither 'imagenet', 'random' nor an existing file"):
                build_backbone(name, weights=bad, image_size=64)
    with pytest.raises(ModelMismatchError, match=r"alexnet: weights file .* does not match.*missing keys"):
        build_backbone("alexnet", weights=resnet_file, image_size=64)
    with pytest.raises(EmbedError, match="alexnet needs image_size >= 64, got 32"):
        build_backbone("alexnet", weights="random", image_size=32)
    assert "medvit-small" not in BACKBONES


def test_frozen_trunk_stays_frozen_and_in_eval_after_a_head_step(resnet_file):
    enc = build_backbone("resnet50", weights=resnet_file, strategy="last-block", image_size=64)
    trunk_before = {k: v.clone() for k, v in enc.trunk.state_dict().items()}
    head_before = {k: v.clone() for k, v in enc.head.state_dict().items()}
    enc.train()
    assert not enc.trunk.training and enc.head.training
    assert all(not m.training for m in enc.trunk.modules())
    assert all(not p.requires_grad for p in enc.trunk.parameters())
    opt = torch.optim.SGD([p for p in enc.parameters() if p.requires_grad], lr=0.1)
    enc(_slices(4, 64)).pow(2).mean().backward()
    opt.step()
    assert all(p.grad is None for p in enc.trunk.parameters())
    for k, v in enc.trunk.state_dict().items():  # weights and BN running statistics
        assert torch.equal(v, trunk_before[k]), k
    assert any(not torch.equal(v, head_before[k]) for k, v in enc.head.state_dict().items()
               if v.is_floating_point())


def test_sum_mode_gives_one_channel_first_conv():
    rep = build_backbone("alexnet", weights="random", image_size=64)
    enc = build_backbone("alexnet", weights="random", image_size=64, in_channels_mode="sum")
    conv_rep = next(m for m in rep.trunk.modules() if isinstance(m, torch.nn.Conv2d))
    conv_sum = next(m for m in enc.trunk.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv_sum.in_channels == 1 and conv_sum.weight.shape[1] == 1
    torch.testing.assert_close(conv_sum.weight, conv_rep.weight.sum(1, keepdim=True))
    # sum mode: one channel normalised with the mean of the ImageNet means and stds
    x = _slices(2, 64)
    mean, std = MEAN.mean(), STD.mean()
    with torch.no_grad():
        first = F.conv2d((x - mean) / std, conv_sum.weight, conv_sum.bias, 4, 2)
    torch.testing.assert_close(enc.trunk[1].mods[0](enc.trunk[0](x)), first)


@pytest.mark.parametrize("name, strategy, weights", [
    ("resnet50", "feature-extractor", "file"),
    ("alexnet", "feature-extractor", "random"), ("vit-b16", "half-frozen", "random")])
def test_onnx_matches_torch(name, strategy, weights, resnet_file):
    enc = build_backbone(name, weights=resnet_file if weights == "file" else "random",
                         strategy=strategy, image_size=64)
    onnx_runner = TrunkRunner(enc, engine="onnx", threads=1)
    torch_runner = TrunkRunner(enc, engine="torch", threads=1)
    x = _slices(3, 64, seed=1)[:, 0].numpy()
    a, b = onnx_runner(x), torch_runner(x)
    assert onnx_runner.max_abs_diff <= 1e-4
    assert np.abs(b).max() > 0.01
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)
