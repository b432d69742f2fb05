"""Foundation-model (FM) features of tumour-centred cubes (seed 003; FMCIB, Pai et al. 2024).

Seed 003's best single model is FMCIB's 4096 deep features of a 50 mm cube around the tumour,
with the clinical covariates (C-index 0.7616). Here:

1. :func:`ctsurv.cubes.tumour_cubes` samples the cube (1 mm isotropic, LPS-aligned, air
   padding) around the centroid of each lesion of the region (the largest lesion's features
   enter the patient's row; every lesion is reported);
2. the cube is scaled as FMCIB scales it (:func:`ctsurv.models3d.fmcib_scale`);
3. a frozen 3D encoder of the registry (:data:`ctsurv.models3d.VOLUME_ENCODERS`, default
   ``fmcib-resnet50`` with its published weights from a local file) gives the pooled feature
   vector, columns ``fm_0000`` ... ``fm_4095``.

The features are then a feature table like the handcrafted ones: ``ctsurv radiomics fit``
fits ComBat (``--batch-col``), the selection, PCA (``--pca``) and the elastic-net Cox model
inside each training fold.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ctsurv.cubes import TumourCube, tumour_cubes
from ctsurv.exceptions import RadiomicsError
from ctsurv.types import CTVolume

__all__ = ["FM_ENCODER", "load_fm_encoder", "fm_features", "fm_region_features", "weights_identity"]

#: the default FM encoder: FMCIB's 3D ResNet-50 (widen factor 2)
FM_ENCODER = "fmcib-resnet50"


def load_fm_encoder(weights: str | Path, name: str = FM_ENCODER):
    """A frozen 3D encoder of the registry with ``weights`` (a local file, or ``"random"`` by
    name only); :class:`~ctsurv.exceptions.WeightsNotFoundError` tells where to put the file."""
    from ctsurv.models3d import build_volume_encoder

    enc = build_volume_encoder(name, weights=str(weights))
    enc.eval()
    return enc


def weights_identity(weights: str | Path | None) -> str:
    """Cheap identity of a weights file for caches: resolved name, size and modification time."""
    if weights is None:
        return ""
    p = Path(weights)
    if not p.is_file():
        return str(weights)
    st = p.stat()
    return f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def fm_features(cubes: Sequence[TumourCube], encoder, *, batch_size: int = 2) -> np.ndarray:
    """Pooled features ``(len(cubes), encoder.feature_dim)`` float32 of cubes of one size."""
    import torch

    from ctsurv.models3d import fmcib_scale

    if not cubes:
        raise RadiomicsError("fm_features: no cubes given")
    if len({c.hu.shape for c in cubes}) != 1:
        raise RadiomicsError(f"fm_features: cubes of different sizes {sorted({c.hu.shape for c in cubes})}")
    out = []
    with torch.inference_mode():
        for i in range(0, len(cubes), batch_size):
            x = np.stack([fmcib_scale(c.hu) for c in cubes[i:i + batch_size]])[:, None]
            out.append(encoder.frozen_forward(torch.from_numpy(x)).reshape(len(x), -1).numpy())
    return np.concatenate(out).astype(np.float32)


def fm_region_features(ct: CTVolume, mask: np.ndarray | None, encoder, *, size_mm: float = 50.0,
                       seed_points=None, coords: str = "LPS",
                       patient_id: str | None = None) -> tuple[dict[str, float], list[dict]]:
    """FM features of the largest lesion of ``mask`` (or of the first of ``seed_points``, in
    ``coords``, when ``mask`` is None) and a record per lesion or seed point.

    Returns ``({"fm_0000": ..., ...}, [{"lesion", "n_voxels", "centre_lps", "outside_fraction"}])``.
    """
    cubes = tumour_cubes(ct, mask, seed_points=seed_points, coords=coords, sizes_mm=(size_mm,),
                         patient_id=patient_id)
    feats = fm_features(cubes[:1], encoder)[0]
    width = max(4, len(str(len(feats) - 1)))
    lesions = [{"lesion": c.lesion, "n_voxels": c.n_voxels, "centre_lps": list(c.centre_lps),
                "outside_fraction": c.outside_fraction} for c in cubes]
    return {f"fm_{i:0{width}d}": float(v) for i, v in enumerate(feats)}, lesions
