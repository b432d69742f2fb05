"""Duplicate and near-duplicate image series across patient IDs (the same patient twice).

A patient who appears under two IDs (a re-export, a merged archive, a test copy of a training
scan) is the quietest leakage there is: once one copy trains and the other tests, the model is
scored on an image it has seen. :func:`ctsurv.prepare.prepare_cohort` runs
:func:`find_duplicates` over its prepared patients and writes every pair into
``duplicates.csv`` and the manifest's ``duplicate_of`` column; a run refuses to put the two
patients of a pair into different folds (:func:`check_duplicate_split`) unless
``cv.allow_duplicates`` says they are distinct people.

Two tests, on the prepared slices (so on what the model sees):

* **exact**: the SHA-256 of the preprocessed slices (:func:`image_sha256`) is the same: the
  same pixels under another ID, whatever the file names, UIDs or origin;
* **near**: the Pearson correlation of two *signatures* is above :data:`NEAR_DUPLICATE_R`. A
  signature (:func:`image_signature`) is the slice stack averaged down to
  :data:`SIGNATURE_SHAPE` voxels (PyTorch's adaptive average pooling, computed with cumulative
  sums), centred and scaled to unit norm. Measured on the demo's phantoms (which share one
  anatomy, so they are the hard case): distinct patients reach r = 0.994 (240 patients) and
  0.993 (100 on the sharp scanner); a copy with Gaussian noise of sd 0.1 (on the [0, 1] scale)
  gives 0.999 and a copy with one slice fewer 0.998, hence the bound 0.997. A copy shifted by
  three pixels (0.98) or cropped by three slices (0.99) is not caught: that needs registration,
  which this check does not attempt.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ctsurv._util import atomic_save_npy, atomic_write_text
from ctsurv.exceptions import CohortError

__all__ = ["NEAR_DUPLICATE_R", "SIGNATURE_SHAPE", "DUPLICATE_COLUMNS", "image_sha256", "image_signature",
           "find_duplicates", "write_signature", "duplicate_of", "duplicate_pairs", "check_duplicate_split", "adaptive_mean"]

#: correlation of two signatures above which two patients are reported as near-duplicates
NEAR_DUPLICATE_R = 0.997
#: (slices, rows, columns) of a signature
SIGNATURE_SHAPE = (16, 32, 32)
#: columns of ``duplicates.csv``
DUPLICATE_COLUMNS = ["patient_a", "patient_b", "kind", "r"]


def image_sha256(slices: np.ndarray) -> str:
    """SHA-256 of a patient's preprocessed slices (float32 bytes and shape)."""
    a = np.ascontiguousarray(np.asarray(slices, dtype=np.float32))
    h = hashlib.sha256(f"ctsurv.slices.v1{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def adaptive_mean(a: np.ndarray, shape) -> np.ndarray:
    """Adaptive average pooling of ``a`` to ``shape`` (bin ``i`` of ``k`` over ``n`` covers
    ``floor(i n / k) .. ceil((i + 1) n / k)``, as ``torch.nn.functional.adaptive_avg_pool*d``)."""
    out = np.asarray(a, dtype=np.float64)
    if out.ndim != len(shape):
        raise ValueError(f"adaptive_mean: {out.ndim}-d array, {len(shape)}-d shape")
    for axis, k in enumerate(shape):
        n = out.shape[axis]
        i = np.arange(int(k))
        start, end = (i * n) // k, -((-(i + 1) * n) // k)
        cs = np.cumsum(out, axis=axis)
        zero = np.zeros_like(np.take(cs, [0], axis=axis))
        cs = np.concatenate([zero, cs], axis=axis)
        width = (end - start).reshape([-1 if d == axis else 1 for d in range(out.ndim)])
        out = (np.take(cs, end, axis=axis) - np.take(cs, start, axis=axis)) / width
    return out


def image_signature(slices: np.ndarray) -> np.ndarray:
    """The near-duplicate signature of a slice stack ``(S, H, W)``: :data:`SIGNATURE_SHAPE`
    block means, centred, unit norm, float32 (a constant stack gives zeros)."""
    v = adaptive_mean(slices, SIGNATURE_SHAPE).ravel()
    v = v - v.mean()
    norm = np.linalg.norm(v)
    return (v / norm if norm > 0 else v).astype(np.float32)


def write_signature(artifact: str | Path, slices: np.ndarray) -> tuple[np.ndarray, str]:
    """Compute a patient's signature and slice hash and keep them beside its artifact
    (``<id>.sig.npy``, ``<id>.sha256``); the preparation worker calls it while the slices are
    in memory."""
    artifact = Path(artifact)
    sig, sha = image_signature(slices), image_sha256(slices)
    atomic_save_npy(artifact.with_suffix(".sig.npy"), sig)
    atomic_write_text(artifact.with_suffix(".sha256"), sha + "\n")
    return sig, sha


def _signature(artifact: Path) -> tuple[np.ndarray, str]:
    """A prepared patient's signature and slice hash: read from beside the artifact, or
    computed from it (an artifact prepared before signatures existed, or newer than them)."""
    sig_path, sha_path = artifact.with_suffix(".sig.npy"), artifact.with_suffix(".sha256")
    fresh = sig_path.is_file() and sha_path.is_file() and sig_path.stat().st_mtime >= artifact.stat().st_mtime
    if fresh:
        return np.load(sig_path, allow_pickle=False), sha_path.read_text().strip()
    from ctsurv.preprocess import PreprocessedCT

    return write_signature(artifact, PreprocessedCT.load(artifact).slices)


def find_duplicates(artifacts: Mapping[str, Path], *, near_r: float = NEAR_DUPLICATE_R) -> pd.DataFrame:
    """Every pair of prepared patients (``patient_id -> artifact path``, as
    :func:`ctsurv.prepare.artifact_path` gives it) with identical (``exact``) or near-identical
    (``near``) images (module docstring): a DataFrame of :data:`DUPLICATE_COLUMNS`,
    ``patient_a < patient_b``, sorted."""
    ids = sorted(str(p) for p in artifacts)
    if len(ids) < 2:
        return pd.DataFrame(columns=DUPLICATE_COLUMNS)
    sigs, shas = zip(*(_signature(Path(artifacts[p])) for p in ids))
    S = np.stack(sigs).astype(np.float64)
    C = S @ S.T
    rows = []
    for i in range(len(ids)):
        for j in np.flatnonzero(C[i, i + 1:] > near_r) + i + 1:
            rows.append({"patient_a": ids[i], "patient_b": ids[j], "kind": "near", "r": float(C[i, j])})
    by_sha: dict[str, list[str]] = {}
    for p, h in zip(ids, shas):
        by_sha.setdefault(h, []).append(p)
    exact = {(a, b) for group in by_sha.values() for k, a in enumerate(group) for b in group[k + 1:]}
    for r in rows:
        if (r["patient_a"], r["patient_b"]) in exact:
            r["kind"] = "exact"
    seen = {(r["patient_a"], r["patient_b"]) for r in rows}
    rows += [{"patient_a": a, "patient_b": b, "kind": "exact", "r": 1.0} for a, b in sorted(exact - seen)]
    return pd.DataFrame(rows, columns=DUPLICATE_COLUMNS).sort_values(["patient_a", "patient_b"],
                                                                     ignore_index=True)


def duplicate_of(pairs: pd.DataFrame, patient_ids) -> dict[str, str]:
    """The manifest's ``duplicate_of`` text of each patient: ``OTHER (exact)`` or ``OTHER (near,
    r = 0.998)``, joined by ``; `` (empty when none)."""
    out = {str(p): [] for p in patient_ids}
    for r in pairs.itertuples(index=False):
        what = "exact" if r.kind == "exact" else f"near, r = {r.r:.4f}"
        out.setdefault(r.patient_a, []).append(f"{r.patient_b} ({what})")
        out.setdefault(r.patient_b, []).append(f"{r.patient_a} ({what})")
    return {p: "; ".join(v) for p, v in out.items()}


def duplicate_pairs(prepared: str | Path) -> pd.DataFrame:
    """The pairs of a prepared folder's ``duplicates.csv`` (empty when it has none: an older
    prepared folder is checked when it is prepared again)."""
    path = Path(prepared) / "duplicates.csv"
    if not path.is_file():
        return pd.DataFrame(columns=DUPLICATE_COLUMNS)
    return pd.read_csv(path, dtype={"patient_a": str, "patient_b": str})


def check_duplicate_split(pairs: pd.DataFrame, fold_of: dict[str, int], *, allow: bool = False) -> list[str]:
    """Refuse a fold plan that puts the two patients of a duplicate pair into different test
    folds (:class:`~ctsurv.exceptions.CohortError` naming the pairs); with ``allow`` return the
    pairs as notes instead. Pairs with a patient outside the plan are ignored."""
    split = [f"{r.patient_a} (fold {fold_of[r.patient_a]}) and {r.patient_b} (fold {fold_of[r.patient_b]}): {r.kind}"
             + ("" if r.kind == "exact" else f", r = {r.r:.4f}")
             for r in pairs.itertuples(index=False)
             if r.patient_a in fold_of and r.patient_b in fold_of and fold_of[r.patient_a] != fold_of[r.patient_b]]
    if split and not allow:
        raise CohortError(
            f"{len(split)} pair(s) of patients with duplicate images would be split across folds, so "
            f"one copy would train and the other test: {'; '.join(split[:5])}"
            + ("; ..." if len(split) > 5 else "")
            + ". Remove one patient of each pair, or set cv.allow_duplicates: true if they are "
            "distinct people (see duplicates.csv of the prepared folder)")
    return split
