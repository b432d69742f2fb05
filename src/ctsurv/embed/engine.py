"""Run a frozen trunk over slices: ONNX Runtime (default) or PyTorch eager.

The trunk never changes during training, so it is exported to ONNX once per (backbone,
weights hash, cut point, input mode, image size, code version), written atomically
(:func:`ctsurv._util.atomic_write_bytes`) to ``<cache_dir>/onnx/`` (kept in memory without a
``cache_dir``), checked against PyTorch on a fixed pseudo-random input (two slices, seed 0;
max abs difference <= 1e-4, else :class:`OnnxMismatchError`) each time a runner opens it, and
run by ONNX Runtime on the CPU. ``engine="torch"`` runs the same trunk eagerly in ``channels_last`` memory format.
Both are batched over slices (``batch_size`` default 32).

The check is absolute. For the pooled cut ("feature-extractor", outputs O(1)) typical
differences are 2e-5; for the "last-block" cut (an unbounded pre-activation, |x| up to ~20)
they are ~4e-5 on the check input and can approach 1e-4 on other inputs (relative ~5e-6):
the exporter folds batch norm into the convolutions, which rounds differently. If the check
fails for some weights, ``engine="torch"`` gives the reference values.
"""

from __future__ import annotations

import copy
import io
import os
import warnings
import weakref
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from ctsurv._util import atomic_write_bytes, bytes_sha256
from ctsurv.exceptions import EmbedError, OnnxMismatchError

from .backbones import SliceEncoder

__all__ = ["DEVICES", "ENGINES", "OnnxMismatchError", "TrunkRunner", "check_device", "export_trunk_onnx",
           "get_runner"]

ENGINES: tuple[str, ...] = ("onnx", "torch")
#: where the frozen trunk runs: the CPU, or a CUDA GPU (PyTorch eager only: the ONNX Runtime
#: ctsurv installs is the CPU build)
DEVICES: tuple[str, ...] = ("cpu", "cuda")


def check_device(device: str, engine: str, *, here: bool = True) -> None:
    """Refuse a device this engine (and, with ``here``, this machine) cannot run, with the reason
    (:class:`EmbedError`). A driver whose tasks embed on other nodes passes ``here=False``."""
    if device not in DEVICES:
        raise EmbedError(f"unknown embed.device {device!r}; expected one of {DEVICES}")
    if device == "cuda":
        if engine != "torch":
            raise EmbedError("embed.device 'cuda' runs the trunk in PyTorch: set embed.engine to 'torch' "
                             f"(engine {engine!r} runs on the CPU)")
        if here and not torch.cuda.is_available():
            raise EmbedError(f"embed.device 'cuda': PyTorch {torch.__version__} sees no CUDA device on "
                             f"{os.uname().nodename}; embed on a GPU node or use embed.device 'cpu'")
ONNX_ATOL = 1e-4
#: Bump when the exported graph for the same fingerprint would change.
ENGINE_CODE_VERSION = "1"


def _onnx_name(encoder: SliceEncoder) -> str:
    """File name of the trunk's ONNX export: backbone, cut point, 16 hex digits of the
    fingerprint's SHA-256, engine code version.

    The digest hashes ``repr(sorted(fingerprint.items()))``, not :func:`ctsurv._util.json_hash`'s
    JSON, so that existing exports keep their names.
    """
    fp = encoder.fingerprint()
    digest = bytes_sha256(repr(sorted(fp.items())).encode())[:16]
    cut = encoder.cut_point.replace(":", "_")
    return f"{encoder.backbone}-{cut}-{digest}-v{ENGINE_CODE_VERSION}.onnx"


def export_trunk_onnx(encoder: SliceEncoder, path: str | Path | None = None) -> bytes | Path:
    """Export ``encoder.trunk`` (input ``slices`` (N, 1, H, W), dynamic N) to ONNX.

    Returns the model bytes when ``path`` is None, else writes ``path`` atomically and
    returns it.
    """
    size = encoder.image_size
    buf = io.BytesIO()
    encoder.trunk.eval()
    # The TorchScript exporter (dynamo=False) is used because the torch.export-based one needs
    # onnxscript, which is not a dependency. Its tracer warnings are expected: the static
    # "SAME" padding of Lite0 is baked in for the traced H and W (only N is dynamic), and
    # the runner checks the exported graph against PyTorch before use.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(encoder.trunk, (torch.zeros(2, 1, size, size),), buf, dynamo=False,
                          input_names=["slices"], output_names=["features"], opset_version=17,
                          dynamic_axes={"slices": {0: "n"}, "features": {0: "n"}})
    data = buf.getvalue()
    if path is None:
        return data
    return atomic_write_bytes(path, data)


@contextmanager
def torch_threads(n: int | None):
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


class TrunkRunner:
    """Evaluate a frozen trunk on slices ``(N, H, W)`` in [0, 1], batch by batch.

    Parameters
    ----------
    encoder : SliceEncoder
    engine : {"onnx", "torch"}
        ONNX Runtime (CPU) or PyTorch eager with ``channels_last``.
    cache_dir : path, optional
        Where the ONNX export lives (``<cache_dir>/onnx``); without it the export stays in
        memory for this runner's lifetime.
    threads : int, optional
        Intra-op threads (ONNX Runtime session / ``torch.set_num_threads`` during calls);
        default all cores for ONNX Runtime and torch's current setting for torch.
    batch_size : int
        Slices per forward pass (default 32).
    device : {"cpu", "cuda"}
        Where the trunk runs (:func:`check_device`); ``"cuda"`` needs ``engine="torch"`` and a
        CUDA device. Outputs come back to the CPU as float32. A GPU's float kernels differ from
        the CPU's in the last bits, as the two engines do (see :data:`ONNX_ATOL`).
    """

    def __init__(self, encoder: SliceEncoder, *, engine: str = "onnx",
                 cache_dir: str | Path | None = None, threads: int | None = None,
                 batch_size: int = 32, device: str = "cpu") -> None:
        if engine not in ENGINES:
            raise EmbedError(f"unknown engine {engine!r}; expected one of {ENGINES}")
        check_device(device, engine)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise EmbedError(f"batch_size must be a positive integer, got {batch_size!r}")
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise EmbedError(f"threads must be a positive integer or None, got {threads!r}")
        self.trunk_out_shape = encoder.trunk_out_shape  # no reference to the encoder is kept,
        self.engine = engine                            # so get_runner's memo can release it
        self.threads = threads
        self.batch_size = batch_size
        self.device = device
        self.onnx_path: Path | None = None
        self.max_abs_diff: float | None = None
        if engine == "onnx":
            self._open_onnx(encoder, cache_dir)
        else:
            self._trunk = copy.deepcopy(encoder.trunk).eval().to(device=device, memory_format=torch.channels_last)

    def _open_onnx(self, encoder: SliceEncoder, cache_dir: str | Path | None) -> None:
        if cache_dir is None:
            model: bytes | str = export_trunk_onnx(encoder)
        else:
            path = Path(cache_dir) / "onnx" / _onnx_name(encoder)
            if not path.is_file():
                export_trunk_onnx(encoder, path)
            self.onnx_path = path
            model = str(path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads or os.cpu_count() or 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(model, sess_options=opts,
                                             providers=["CPUExecutionProvider"])
        self.max_abs_diff = self._check_against_torch(encoder)

    def _check_against_torch(self, encoder: SliceEncoder) -> float:
        size = encoder.image_size
        x = np.random.default_rng(0).random((2, 1, size, size), dtype=np.float32)
        ref = encoder.run_trunk(torch.from_numpy(x)).numpy()
        got = self._session.run(["features"], {"slices": x})[0]
        diff = float(np.max(np.abs(ref - got)))
        if not diff <= ONNX_ATOL:
            raise OnnxMismatchError(
                f"{encoder.backbone} ({encoder.cut_point}): ONNX Runtime output differs "
                f"from PyTorch by {diff:.3g} > {ONNX_ATOL:g} (file {self.onnx_path}); delete it "
                "to re-export, or use engine='torch'")
        return diff

    def __call__(self, slices: np.ndarray) -> np.ndarray:
        """Trunk outputs ``(N, *trunk_out_shape)`` float32 for slices ``(N, H, W)``."""
        n = slices.shape[0]
        out = np.empty((n, *self.trunk_out_shape), dtype=np.float32)
        for start in range(0, n, self.batch_size):
            batch = np.ascontiguousarray(slices[start:start + self.batch_size, None],
                                         dtype=np.float32)
            if self.engine == "onnx":
                out[start:start + len(batch)] = self._session.run(["features"],
                                                                  {"slices": batch})[0]
            else:
                with torch_threads(self.threads), torch.inference_mode():
                    x = torch.from_numpy(batch).to(self.device).contiguous(memory_format=torch.channels_last)
                    out[start:start + len(batch)] = self._trunk(x).float().cpu().numpy()
        return out


_RUNNERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def get_runner(encoder: SliceEncoder, *, engine: str = "onnx",
               cache_dir: str | Path | None = None, threads: int | None = None,
               batch_size: int = 32, device: str = "cpu") -> TrunkRunner:
    """A :class:`TrunkRunner` memoised per encoder and settings (no re-export per patient)."""
    per_encoder = _RUNNERS.setdefault(encoder, {})
    key = (engine, None if cache_dir is None else str(Path(cache_dir).resolve()), threads,
           batch_size, device)
    if key not in per_encoder:
        per_encoder[key] = TrunkRunner(encoder, engine=engine, cache_dir=cache_dir,
                                       threads=threads, batch_size=batch_size, device=device)
    return per_encoder[key]
