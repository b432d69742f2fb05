"""Benchmark: slices per second of the frozen trunk, ONNX Runtime fp32 vs PyTorch eager.

For each backbone (EfficientNet-Lite0 with its packaged ImageNet weights, EfficientNet-B0)
and the "feature-extractor" cut (the full trunk up to the pooled 1280-d feature), times
``TrunkRunner`` with engine "onnx" and "torch" (channels_last) on the same slices,
``--threads`` intra-op threads (default 2), batch 32, 224x224. Engines are interleaved within
each repetition so that load from other processes hits both alike; the reported ratio is the
median over repetitions of the per-repetition ratio.

EfficientNet-B0's ImageNet weights are not available offline: pass ``--b0-weights FILE`` or
the benchmark uses random weights whose batch-norm statistics are calibrated on noise
(same compute; uncalibrated random weights drive activations to ~1e-13 and possibly into
denormals, which would distort timings).

Seed 000's other backbones (``--backbones resnet50,vgg16,alexnet,vit-b16`` or ``all``) run with
random weights (same compute as ImageNet weights; their files cannot be downloaded offline).

Usage::

    python bench/embed.py [--threads 2] [--slices 96] [--reps 3] [--b0-weights FILE]
                          [--backbones efficientnet-lite0,efficientnet-b0]

Prints a table and writes ``bench/results/embed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from torch import nn

from ctsurv.embed import BACKBONES, TrunkRunner, build_backbone

HERE = Path(__file__).resolve().parent


def _calibrated_b0_file(folder: Path) -> Path:
    from monai.networks.nets import EfficientNetBN

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        m = EfficientNetBN("efficientnet-b0", pretrained=False, spatial_dims=2, in_channels=3,
                           num_classes=1000)
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.reset_running_stats()
                mod.momentum = None
        m.train()
        with torch.no_grad():
            m((torch.rand(8, 3, 224, 224) - 0.45) / 0.225)
    path = folder / "b0-calibrated-random.pth"
    torch.save(m.state_dict(), path)
    return path


def _slices(n: int, size: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.empty((n, size, size), np.float32)
    for i in range(n):
        cy, cx = rng.uniform(0.3, 0.7, 2)
        out[i] = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.05) + 0.1 * rng.random((size, size))
    return np.clip(out / out.max(), 0, 1).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--slices", type=int, default=96)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--b0-weights", default=None)
    ap.add_argument("--backbones", default="efficientnet-lite0,efficientnet-b0",
                    help="comma-separated registry names, or 'all'")
    ap.add_argument("--out", default=str(HERE / "results" / "embed.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    x = _slices(args.slices, args.size)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        names = (list(BACKBONES) if args.backbones == "all"
                 else [n.strip() for n in args.backbones.split(",") if n.strip()])
        configs = []
        for name in names:
            if name == "efficientnet-lite0":
                configs.append((name, "imagenet", "imagenet (packaged)"))
            elif name == "efficientnet-b0":
                configs.append((name, args.b0_weights or _calibrated_b0_file(Path(tmp)),
                                "local file" if args.b0_weights else "random, BN-calibrated"))
            else:
                configs.append((name, "random", "random"))
        for name, weights, weights_label in configs:
            enc = build_backbone(name, weights=weights, image_size=args.size)
            runners = {e: TrunkRunner(enc, engine=e, cache_dir=tmp, threads=args.threads,
                                      batch_size=args.batch_size) for e in ("onnx", "torch")}
            for r in runners.values():  # warm-up
                r(x[: args.batch_size])
            times: dict[str, list[float]] = {"onnx": [], "torch": []}
            for _ in range(args.reps):
                for eng, r in runners.items():
                    t0 = time.perf_counter()
                    r(x)
                    times[eng].append(time.perf_counter() - t0)
            ratios = [t_t / t_o for t_o, t_t in zip(times["onnx"], times["torch"])]
            row = {"backbone": name, "weights": weights_label, "cut_point": enc.cut_point,
                   "onnx_slices_per_s": args.slices / statistics.median(times["onnx"]),
                   "torch_slices_per_s": args.slices / statistics.median(times["torch"]),
                   "speedup_median": statistics.median(ratios),
                   "speedup_per_rep": ratios, "seconds": times,
                   "onnx_check_max_abs_diff": runners["onnx"].max_abs_diff}
            rows.append(row)
            print(f"{name:20s} onnx {row['onnx_slices_per_s']:7.1f}  torch "
                  f"{row['torch_slices_per_s']:7.1f} slices/s  speedup x{row['speedup_median']:.2f}"
                  f"  (per rep: {', '.join(f'{v:.2f}' for v in ratios)})", flush=True)

    result = {
        "what": "frozen trunk (feature-extractor cut) throughput, ONNX Runtime fp32 vs torch "
                "eager channels_last",
        "threads": args.threads, "batch_size": args.batch_size, "image_size": args.size,
        "n_slices": args.slices, "reps": args.reps,
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpu_count": os.cpu_count(), "load_avg_1m": os.getloadavg()[0]},
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"\n| backbone | weights | ORT slices/s | torch slices/s | ORT/torch |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['backbone']} | {r['weights']} | {r['onnx_slices_per_s']:.1f} | "
              f"{r['torch_slices_per_s']:.1f} | {r['speedup_median']:.2f} |")
    print(f"threads={args.threads} batch={args.batch_size} size={args.size} "
          f"load_avg_1m={result['machine']['load_avg_1m']:.1f} -> {out}")


if __name__ == "__main__":
    main()
