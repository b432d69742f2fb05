"""Benchmark: ONNX Runtime int8 (dynamic / static QDQ) and bf16 trunks of Lite0 vs fp32.

Encoder: ``ctsurv.build.build_encoder(RunConfig())``, the pipeline's (EfficientNet-Lite0,
packaged ImageNet weights, "feature-extractor" cut: pooled 1280-d feature). The fp32 ONNX graph is ctsurv's own export (``TrunkRunner(engine="onnx")``, which
calls ``export_trunk_onnx`` and checks it against PyTorch); every variant is derived from that
file with ``onnxruntime.quantization`` and run through the same ``TrunkRunner`` batching
(batch 32) with the same session options (``--threads`` intra-op threads, default 2).

Slices (what the encoder sees in the pipeline: 1 channel, 224 x 224, in [0, 1]):
``ctsurv.io.read_ct`` + ``ctsurv.preprocess.preprocess_ct`` (defaults) of the real LUNG1
patients in ``--data`` (default /work/shared/data/lung1). Calibration and evaluation are
patient-disjoint: **calibration** = ``--calib-slices`` (default 64) evenly spaced slices of
LUNG1-001; **evaluation** = ``--eval-slices`` (default 96) slices of LUNG1-002: all of its
slices (67) as preprocessed (view 0), topped up with pipeline augmentation views
(``ctsurv.build.augment_views``, flips/rotations as the trunk cache embeds them) of evenly
spaced LUNG1-002 slices. If the DICOM cannot be read, two phantom patients
(``ctsurv.synthetic.make_phantom``, reference lung masks) preprocessed the same way replace
them (the JSON's ``data`` field says which was used).

Variants, built in the same run (a variant that fails to build or run is recorded with its
error, not a crash):

* ``fp32``: the reference. ``fp32_on_8bit_input`` (accuracy only, a diagnostic): the fp32
  graph on slices rounded to 1/255, i.e. the error of quantising the input alone, a floor
  for every int8 variant whose first layer takes 8-bit input.
* ``int8_dynamic_*``: ``quantize_dynamic`` (Conv -> ConvInteger, activations quantised at run
  time, per-tensor weights), weights QInt8 and, only where that fails, QUInt8.
* ``int8_static_qdq_*``: ``quant_pre_process`` then ``quantize_static`` (QDQ format,
  per-channel weights, MinMax calibration over the calibration slices, ranges computed once and
  shared through ``calibration_cache_path``). U8S8 (activations QUInt8, weights QInt8: the fast
  pair on CPUs with VNNI) first; only if its minimum cosine is below 0.999 (or with
  ``--all-variants``) further variants: S8S8; depthwise convs left fp32; stem and head convs
  left fp32; stem + stages 1-2 (the 112/56 px layers) left fp32. ``--all-variants`` adds
  depthwise + stem + head left fp32, and percentile (99.999) calibration.
  ONNX Runtime's ``WeightBiasQuantization`` graph optimizer re-quantizes (per tensor) the
  fp32 weights of every Conv fed by a DequantizeLinear, silently undoing ``nodes_to_exclude``;
  the int8 sessions switch it off (``disabled_optimizers``), and the depthwise variant is also
  checked with the default optimizers (``*_ort_default``, accuracy only) to show the effect.
* A variant that is less than half as fast as fp32 in its first (accuracy) run is left out of
  the interleaved timing (``not_timed``; its one-run ratio is kept): int8 dynamic on CPU runs
  ConvInteger, several times slower than fp32, and would cost minutes.
* ``bf16``: only where ``/proc/cpuinfo`` lists ``avx512_bf16`` or ``amx_bf16`` (else recorded as
  skipped). ONNX Runtime's CPU provider has no bf16 convolution kernels, so this arm is the
  trunk in PyTorch eager under ``torch.autocast("cpu", torch.bfloat16)`` (oneDNN), channels_last.

Timing: the variants are interleaved within each of ``--reps`` repetitions (after a warm-up),
so load from other processes hits all alike; speed-up = median over repetitions of
``t_fp32 / t_variant``. Agreement: per-slice cosine similarity of each variant's 1280-d
features with fp32's on the evaluation slices (min, 1st percentile, median), max abs diff,
``meets_cosine_0999`` = min cosine >= 0.999. The features are post-ReLU6 averages, all
non-negative, which makes the plain cosine forgiving; ``centred_cosine_min`` (both vectors
minus the fp32 mean feature of the evaluation slices) is reported as a stricter diagnostic.

Usage::

    python bench/embed_quant.py [--threads 2] [--reps 3] [--calib-slices 64] [--eval-slices 96]
                                [--data /work/shared/data/lung1] [--all-variants]

Prints a table and a last line of JSON, and writes ``bench/results/embed_quant.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch

from _machine import cpu_flags, cpu_name  # bench/ is the script's folder
from ctsurv.embed import TrunkRunner

HERE = Path(__file__).resolve().parent
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
COS_TARGET = 0.999


# --------------------------------------------------------------------------- machine
def _cpu_info() -> dict:
    return {"model": cpu_name(platform.processor()), "flags": cpu_flags(FLAGS)}


# --------------------------------------------------------------------------- slices
def _lung1_slices(data: Path) -> tuple[list, str]:
    from ctsurv.io import read_ct
    from ctsurv.preprocess import preprocess_ct

    pres = []
    for pid in ("LUNG1-001", "LUNG1-002"):
        pres.append(preprocess_ct(read_ct(data / pid, patient_id=pid)))
    return pres, f"real LUNG1 CT ({data}): LUNG1-001 calibration, LUNG1-002 evaluation"


def _phantom_slices() -> tuple[list, str]:
    from ctsurv.preprocess import preprocess_ct
    from ctsurv.synthetic import PhantomParams, make_phantom
    from ctsurv.types import CTVolume

    pres = []
    for i in range(2):
        hu, sp, masks = make_phantom(PhantomParams(), rng=np.random.default_rng(100 + i))
        ct = CTVolume(hu=hu, spacing=sp, patient_id=f"PHANTOM-{i}")
        pres.append(preprocess_ct(ct, lung=masks["Lung L"] | masks["Lung R"]))
    return pres, "phantoms (ctsurv.synthetic.make_phantom, seeds 100/101): 0 calibration, 1 evaluation"


def _even(n_have: int, n_want: int) -> np.ndarray:
    return np.unique(np.linspace(0, n_have - 1, min(n_want, n_have)).round().astype(int))


def _make_sets(pres: list, n_calib: int, n_eval: int) -> tuple[np.ndarray, np.ndarray, str]:
    from ctsurv.build import augment_views
    from ctsurv.config import RunConfig
    from ctsurv.embed import apply_view

    calib_src, eval_src = pres[0].slices, pres[1].slices
    calib = calib_src[_even(len(calib_src), n_calib)]
    parts = [eval_src[:n_eval]]
    views = [v for v in augment_views(RunConfig()).views if v.flip or v.angle != 0.0]
    n_left, k = n_eval - len(parts[0]), 0
    while n_left > 0 and views:
        take = min(n_left, len(eval_src))
        parts.append(apply_view(eval_src[_even(len(eval_src), take)], views[k % len(views)]))
        n_left -= len(parts[-1])
        k += 1
    ev = np.concatenate(parts)[:n_eval]
    note = (f"calibration {len(calib)} slices of {pres[0].patient_id}; evaluation "
            f"{min(len(eval_src), n_eval)} slices of {pres[1].patient_id} + "
            f"{len(ev) - min(len(eval_src), n_eval)} augmentation views of its slices")
    return np.ascontiguousarray(calib), np.ascontiguousarray(ev), note


# --------------------------------------------------------------------------- variants
class _Reader:
    """CalibrationDataReader over slices (N, H, W), batches of ``batch``."""

    def __init__(self, slices: np.ndarray, batch: int = 16) -> None:
        self.batches = [np.ascontiguousarray(slices[i:i + batch, None], dtype=np.float32)
                        for i in range(0, len(slices), batch)]
        self.i = 0

    def get_next(self):
        if self.i >= len(self.batches):
            return None
        self.i += 1
        return {"slices": self.batches[self.i - 1]}

    def rewind(self) -> None:
        self.i = 0


def _runner_for(base: TrunkRunner, model_path: Path, disabled: tuple = ()) -> TrunkRunner:
    """ctsurv's fp32 ``TrunkRunner`` (same batching, same session options) with its ONNX
    Runtime session swapped for ``model_path`` (its torch check is fp32-only by design);
    ``disabled``: ONNX Runtime graph optimizers to switch off."""
    r = copy.copy(base)
    opts = base._session.get_session_options()
    r._session = onnxruntime.InferenceSession(str(model_path), sess_options=opts,
                                              providers=["CPUExecutionProvider"],
                                              disabled_optimizers=list(disabled) or None)
    r.onnx_path = model_path
    r.max_abs_diff = None
    return r


class _TorchBf16:
    """The trunk in PyTorch eager, channels_last, under CPU bf16 autocast (oneDNN)."""

    def __init__(self, base_torch: TrunkRunner) -> None:
        self.r = base_torch

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.r(x)


class _Rounded:
    """A runner fed slices rounded to 8 bits (1/255 steps)."""

    def __init__(self, runner) -> None:
        self.r = runner

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.r(np.round(x * 255.0) / np.float32(255.0))


def _conv_names(model_path: Path) -> dict[str, list[str]]:
    """Conv node names of the exported Lite0 trunk, grouped for ``nodes_to_exclude``."""
    from ctsurv.embed.lite0 import LITE0_BLOCKS

    m = onnx.load(str(model_path))
    convs = [n for n in m.graph.node if n.op_type == "Conv"]

    def group(n):
        return next((a.i for a in n.attribute if a.name == "group"), 1)

    # stem + stages 1-2 (112 and 56 px): 1 conv, then 2 per block without expansion, 3 with
    n_early = 1 + sum(r * (3 if e != 1 else 2) for r, _, _, e, _, _ in LITE0_BLOCKS[:2])
    return {"depthwise": [n.name for n in convs if group(n) > 1],
            "first_last": [convs[0].name, convs[-1].name] if convs else [],
            "stages12": [n.name for n in convs[:n_early]], "n_conv": len(convs)}


def _static(pre: Path, out: Path, calib: np.ndarray, cache_dir: Path, *, act, wt, exclude=(),
            method=None):
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static

    extra = {"CalibPercentile": 99.999} if method == "percentile" else {}
    quantize_static(str(pre), str(out), _Reader(calib), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=act, weight_type=wt,
                    nodes_to_exclude=list(exclude) or None,
                    calibrate_method=(CalibrationMethod.Percentile if method == "percentile"
                                      else CalibrationMethod.MinMax),
                    extra_options=extra or None,
                    calibration_cache_path=cache_dir / f"calib-{method or 'minmax'}.json")
    return out


def _features_stats(ref: np.ndarray, got: np.ndarray) -> dict:
    def cos(a, b):
        return np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-30)

    c = cos(ref.astype(np.float64), got.astype(np.float64))
    mu = ref.mean(0, dtype=np.float64)
    cc = cos(ref - mu, got - mu)
    return {"cosine_min": float(c.min()), "cosine_p01": float(np.percentile(c, 1)),
            "cosine_median": float(np.median(c)), "centred_cosine_min": float(cc.min()),
            "centred_cosine_median": float(np.median(cc)),
            "max_abs_diff": float(np.max(np.abs(ref - got))),
            "rel_l2_median": float(np.median(np.linalg.norm(ref - got, axis=1)
                                             / (np.linalg.norm(ref, axis=1) + 1e-30))),
            "meets_cosine_0999": bool(c.min() >= COS_TARGET)}


# --------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--calib-slices", type=int, default=64)
    ap.add_argument("--eval-slices", type=int, default=96)
    ap.add_argument("--data", default="/work/shared/data/lung1")
    ap.add_argument("--all-variants", action="store_true",
                    help="build every static variant even if the first meets the cosine target")
    ap.add_argument("--out", default=str(HERE / "results" / "embed_quant.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from ctsurv.build import build_encoder
    from ctsurv.config import RunConfig

    cpu = _cpu_info()
    try:
        pres, data_label = _lung1_slices(Path(args.data))
    except Exception as exc:  # unreadable / absent data: phantoms
        pres, data_label = _phantom_slices()
        data_label += f" (LUNG1 unreadable: {type(exc).__name__}: {exc})"
    calib, ev, sets_note = _make_sets(pres, args.calib_slices, args.eval_slices)
    print(f"data: {data_label}; {sets_note}", flush=True)

    enc = build_encoder(RunConfig())  # the pipeline's encoder (Lite0, feature-extractor)
    rows: dict[str, dict] = {}
    runners: dict[str, object] = {}

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = TrunkRunner(enc, engine="onnx", cache_dir=tmp, threads=args.threads,
                           batch_size=args.batch_size)
        fp32_path = base.onnx_path
        runners["fp32"] = base
        rows["fp32"] = {"variant": "fp32", "how": "ctsurv export_trunk_onnx (TrunkRunner)",
                        "onnx_check_max_abs_diff": base.max_abs_diff,
                        "model_bytes": fp32_path.stat().st_size}
        t0 = time.perf_counter()
        ref = base(ev)
        t_ref_once = time.perf_counter() - t0

        def add(name: str, how: str, build, *, timed: bool = True) -> dict:
            """Build a variant, run it once on the evaluation slices, record agreement; it joins
            the interleaved timing if ``timed`` and it is at least half as fast as fp32 in
            this one run (a much slower variant is out of the race and would cost minutes)."""
            row = {"variant": name, "how": how}
            rows[name] = row
            t0 = time.perf_counter()
            try:
                runner, path = build()
                row["build_s"] = time.perf_counter() - t0
                if path is not None:
                    row["model_bytes"] = Path(path).stat().st_size
                t0 = time.perf_counter()
                got = runner(ev)
                row["one_run_speedup"] = t_ref_once / (time.perf_counter() - t0)
                row.update(_features_stats(ref, got))
                if timed and row["one_run_speedup"] >= 0.5:
                    runners[name] = runner
                else:
                    row["not_timed"] = ("accuracy check only" if not timed else
                                        f"one run at x{row['one_run_speedup']:.2f} of fp32 "
                                        "(< 0.5): left out of the interleaved timing")
            except Exception as exc:  # recorded, not fatal
                row["error"] = f"{type(exc).__name__}: {exc}".strip()[:600]
                row["traceback_tail"] = traceback.format_exc().strip().splitlines()[-3:]
            status = (row.get("error") or f"cos min {row['cosine_min']:.5f} "
                      f"p01 {row['cosine_p01']:.5f} centred min {row['centred_cosine_min']:.4f}"
                      f" one-run x{row['one_run_speedup']:.2f}")
            print(f"  built {name:36s} {status}", flush=True)
            return row

        add("fp32_on_8bit_input", "diagnostic: fp32 graph, input slices rounded to 1/255",
            lambda: (_Rounded(base), None), timed=False)

        # int8 dynamic (ConvInteger); QUInt8 weights only if QInt8 ones fail
        for wt in (QuantType.QInt8, QuantType.QUInt8):
            tag = "s8" if wt == QuantType.QInt8 else "u8"
            out = tmp / f"dyn_{tag}.onnx"

            def build(out=out, wt=wt):
                quantize_dynamic(str(fp32_path), str(out), weight_type=wt, per_channel=False)
                return _runner_for(base, out), out

            r = add(f"int8_dynamic_w{tag}", f"quantize_dynamic weight_type={wt.name} "
                    "(per-tensor weights)", build)
            if "error" not in r:
                break

        # int8 static QDQ
        pre = tmp / "pre.onnx"
        pre_note = "quant_pre_process"
        try:
            quant_pre_process(str(fp32_path), str(pre))
        except Exception as exc:
            pre, pre_note = fp32_path, f"quant_pre_process failed ({type(exc).__name__}: {exc}); raw export"
        names = _conv_names(pre)
        U8, S8 = QuantType.QUInt8, QuantType.QInt8
        # ORT's WeightBiasQuantization optimizer re-quantizes the fp32 weights of any Conv fed
        # by a DequantizeLinear (per tensor), undoing nodes_to_exclude; it is switched off for
        # the int8 sessions (no effect where every Conv is quantized).
        no_wbq = ("WeightBiasQuantization",)
        static = [
            ("int8_static_qdq_u8s8", dict(act=U8, wt=S8), "all Conv", True),
            ("int8_static_qdq_s8s8", dict(act=S8, wt=S8), "all Conv", True),
            ("int8_static_qdq_u8s8_fp32_depthwise",
             dict(act=U8, wt=S8, exclude=names["depthwise"]),
             f"{len(names['depthwise'])} depthwise Conv left fp32", True),
            ("int8_static_qdq_u8s8_fp32_first_last",
             dict(act=U8, wt=S8, exclude=names["first_last"]), "stem and head Conv left fp32",
             True),
            ("int8_static_qdq_u8s8_fp32_stages12",
             dict(act=U8, wt=S8, exclude=names["stages12"]),
             f"stem + stages 1-2 ({len(names['stages12'])} Conv, 112/56 px) left fp32", True),
            ("int8_static_qdq_u8s8_fp32_dw_first_last",
             dict(act=U8, wt=S8, exclude=names["depthwise"] + names["first_last"]),
             "depthwise, stem and head Conv left fp32", args.all_variants),
            ("int8_static_qdq_u8s8_percentile", dict(act=U8, wt=S8, method="percentile"),
             "all Conv", args.all_variants),
        ]
        for i, (name, kw, what, wanted) in enumerate(static):
            if not wanted or (i and not args.all_variants and any(
                    rows[n].get("meets_cosine_0999") for n in rows if n.startswith("int8_static"))):
                continue
            out = tmp / f"{name}.onnx"

            def build(out=out, kw=kw):
                _static(pre, out, calib, tmp, **kw)
                return _runner_for(base, out, no_wbq), out

            method = "Percentile 99.999" if kw.get("method") else "MinMax"
            add(name, f"{pre_note} + quantize_static QDQ per-channel {method} act="
                f"{kw['act'].name} weight={kw['wt'].name}; {what}; ORT WeightBiasQuantization "
                "off", build)
            if name == "int8_static_qdq_u8s8_fp32_depthwise" and "error" not in rows[name]:
                add(name + "_ort_default", "the same model with ONNX Runtime's default "
                    "optimizers (WeightBiasQuantization on)",
                    lambda out=out: (_runner_for(base, out), out), timed=False)

        # bf16
        if cpu["flags"]["avx512_bf16"] or cpu["flags"]["amx_bf16"]:
            def build():
                return _TorchBf16(TrunkRunner(enc, engine="torch", threads=args.threads,
                                              batch_size=args.batch_size)), None

            add("bf16_torch_autocast", "torch eager channels_last, autocast bf16 (ORT CPU has "
                "no bf16 Conv kernels)", build)
        else:
            rows["bf16"] = {"variant": "bf16", "skipped": "skipped: CPU lacks avx512_bf16/amx_bf16"}
            print("  bf16: skipped: CPU lacks avx512_bf16/amx_bf16", flush=True)

        # timing, interleaved
        for r in runners.values():
            r(ev[: args.batch_size])  # warm-up
        times: dict[str, list[float]] = {n: [] for n in runners}
        for _ in range(args.reps):
            for n, r in runners.items():
                t0 = time.perf_counter()
                r(ev)
                times[n].append(time.perf_counter() - t0)
    for n, ts in times.items():
        ratios = [t_ref / t for t_ref, t in zip(times["fp32"], ts)]
        rows[n].update({"slices_per_s": len(ev) / statistics.median(ts),
                        "speedup_median": statistics.median(ratios),
                        "speedup_per_rep": ratios, "seconds": ts})
    rows["fp32"].update(_features_stats(ref, ref))

    good = [r for r in rows.values() if r.get("meets_cosine_0999") and r["variant"] != "fp32"
            and r.get("speedup_median", 0) > 1.0]
    if good:
        best = max(good, key=lambda r: r["speedup_median"])
        verdict = (f"{best['variant']} meets cosine >= {COS_TARGET} (min {best['cosine_min']:.5f}) "
                   f"and is x{best['speedup_median']:.2f} faster than fp32; other qualifying: "
                   f"{[r['variant'] for r in good if r is not best] or 'none'}")
    else:
        fast = sorted((r for r in rows.values() if r.get("speedup_median", 0) > 1.0
                       and r["variant"] != "fp32"), key=lambda r: -r["cosine_min"])
        verdict = (f"no variant meets cosine >= {COS_TARGET} and is faster; fp32 stays. Faster "
                   "but disagreeing (best cosine first): " + (", ".join(
                       f"{r['variant']} x{r['speedup_median']:.2f} cos min {r['cosine_min']:.4f}"
                       for r in fast) or "none"))
    result = {
        "what": "Lite0 frozen trunk (feature-extractor cut, 1280-d) in ONNX Runtime: int8 "
                "dynamic / static QDQ and bf16 vs fp32, same run, interleaved",
        "threads": args.threads, "batch_size": args.batch_size, "image_size": int(ev.shape[-1]),
        "reps": args.reps, "data": data_label, "sets": sets_note,
        "n_calibration": int(len(calib)), "n_evaluation": int(len(ev)),
        "cosine_target": COS_TARGET, "verdict": verdict,
        "cpu": cpu,
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "load_avg_1m": os.getloadavg()[0]},
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                     "onnx": onnx.__version__},
        "wall_s": time.perf_counter() - t_start,
        "rows": list(rows.values()),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print("\n| variant | slices/s | vs fp32 | cos min | cos p01 | cos median | centred cos min "
          "| max abs diff | cos>=0.999 |\n|---|---|---|---|---|---|---|---|---|")
    for r in rows.values():
        if "cosine_min" in r:
            sps = f"{r['slices_per_s']:.1f}" if "slices_per_s" in r else "-"
            sp = (f"{r['speedup_median']:.2f}" if "speedup_median" in r
                  else f"({r['one_run_speedup']:.2f} one run)")
            print(f"| {r['variant']} | {sps} | {sp} | "
                  f"{r['cosine_min']:.5f} | {r['cosine_p01']:.5f} | {r['cosine_median']:.5f} | "
                  f"{r['centred_cosine_min']:.4f} | {r['max_abs_diff']:.3g} | "
                  f"{r['meets_cosine_0999']} |")
        else:
            print(f"| {r['variant']} | {r.get('skipped') or 'error: ' + r.get('error', '?')[:90]} "
                  "| | | | | | | |")
    flags = ", ".join(f"{k}={'y' if v else 'n'}" for k, v in cpu["flags"].items())
    print(f"cpu: {cpu['model']} ({flags}); onnxruntime {onnxruntime.__version__}; "
          f"threads={args.threads} load_avg_1m={result['machine']['load_avg_1m']:.1f} "
          f"wall {result['wall_s']:.0f} s -> {out}")
    print(f"verdict: {verdict}")
    print(json.dumps({"verdict": verdict, "cpu_flags": cpu["flags"],
                      "rows": [{k: r.get(k) for k in ("variant", "slices_per_s", "speedup_median",
                                                      "cosine_min", "meets_cosine_0999",
                                                      "error", "skipped") if k in r}
                               for r in rows.values()]}))


if __name__ == "__main__":
    main()
