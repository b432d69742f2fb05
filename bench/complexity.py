"""Complexity table of seed 000's Fig. 3: parameters, GFLOPs per patient at 72 slices of
224 x 224, CPU wall time and peak RSS of one patient's forward pass (2 threads).

Usage::

    python bench/complexity.py [--slices 72] [--size 224] [--threads 2] [--no-timing]

Writes ``bench/results/complexity.json``. FLOPs follow ``ctsurv.complexity`` (FlopCounterMode,
FLOPs = 2 x MACs). Timing: median of 3 forward passes after one warm-up for the 2D
models, a single cold pass for the 3D ones and the ViT MST; the half-frozen rows reuse the
feature-extractor timing (same forward pass). Each model runs in a fresh subprocess per model so that the peak
RSS (``ru_maxrss`` of that process) belongs to that model alone; ``forward_rss_mb`` is the growth
of that peak during the forward passes (the rest is imports and the model's weights).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
HEAVY = ("resnet3d", "densenet3d", "vit-s14")
COLS = ["wall_s", "peak_rss_mb", "forward_rss_mb", "reps"]


def _time_one(name: str, slices: int, size: int, threads: int, reps: int) -> dict:
    """Run in a child process: build the model ``name`` and time its forward pass."""
    import resource

    import torch

    from ctsurv.complexity import default_configs

    torch.set_num_threads(threads)
    cfg = next(c for c in default_configs(n_slices=slices, image_size=size, include=lambda n: n == name))
    model = cfg.model.eval()
    from ctsurv.models3d import Volume3DNet

    if isinstance(model, Volume3DNet):
        args = (torch.rand(1, 1, slices, size, size),)
    else:
        x = torch.rand(1, slices, 1, size, size)
        args = (x, torch.ones(1, slices, dtype=torch.bool))
    base_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # imports + model
    times = []
    warmup = 1 if reps > 1 else 0  # heavy models: a single cold pass
    with torch.no_grad():
        for i in range(reps + warmup):
            t0 = time.perf_counter()
            model(*args)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    times.sort()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"wall_s": times[len(times) // 2], "reps": reps, "peak_rss_mb": peak,
            "forward_rss_mb": peak - base_mb}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=72)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-timing", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--reps", type=int, default=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(_time_one(a.child, a.slices, a.size, a.threads, a.reps)))
        return

    import torch

    from ctsurv.complexity import PAPER_GFLOPS, complexity_table, default_configs

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    df = complexity_table(default_configs(n_slices=a.slices, image_size=a.size))
    count_s = time.perf_counter() - t0
    df["wall_s"], df["peak_rss_mb"], df["forward_rss_mb"], df["reps"] = float("nan"), float("nan"), float("nan"), 0
    if not a.no_timing:
        for i, name in enumerate(df["name"]):
            if "(half-frozen)" in name:  # same forward pass as the feature-extractor row
                j = df.index[df["name"] == name.replace("half-frozen", "feature-extractor")]
                if len(j):
                    df.loc[i, COLS] = df.loc[j[0], COLS]
                    continue
            reps = 1 if any(h in name for h in HEAVY) else 3
            out = subprocess.run([sys.executable, __file__, "--child", name, "--slices", str(a.slices),
                                  "--size", str(a.size), "--threads", str(a.threads), "--reps", str(reps)],
                                 capture_output=True, text=True, check=True)
            res = json.loads(out.stdout.strip().splitlines()[-1])
            df.loc[i, COLS] = [res[c] for c in COLS]
            print(f"  timed {name}: {res['wall_s']:.2f} s, {res['peak_rss_mb']:.0f} MB", flush=True)

    show = df[["name", "params_total", "params_trainable", "gflops", "wall_s", "peak_rss_mb", "forward_rss_mb"]]
    print(f"\nPer patient: {a.slices} slices of {a.size} x {a.size}; FLOPs = 2 x MACs "
          f"(FlopCounterMode); CPU forward on {a.threads} threads")
    print(show.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print(f"\nPaper (seed 001): EfficientNet-B0 + soft attention {PAPER_GFLOPS['efficientnet-b0 + soft attention']}"
          f" GFLOPs, ResNet3D-18 {PAPER_GFLOPS['resnet3d-18']} GFLOPs")
    result = {
        "command": "python bench/complexity.py " + " ".join(sys.argv[1:]),
        "convention": "FLOPs = 2 x MACs, torch.utils.flop_counter.FlopCounterMode; per patient forward",
        "slices": a.slices, "size": a.size, "threads": a.threads,
        "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
        "flop_count_seconds": count_s, "paper_gflops": PAPER_GFLOPS,
        "rows": json.loads(df.to_json(orient="records")),
    }
    out = HERE / "results" / "complexity.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
