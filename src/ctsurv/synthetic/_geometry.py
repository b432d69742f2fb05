"""Geometry primitives of the phantom (private): capsules, ellipses, smooth noise, the tumour.

All coordinates are millimetres on the ``(z, y, x)`` axes of :func:`ctsurv.synthetic.make_phantom`;
``coords`` is the triple of 1-D voxel-centre coordinates of the grid. Every random draw comes
from the ``rng`` passed in, in a fixed order (the phantom's bytes depend on it).
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from ctsurv.exceptions import PhantomError


def _capsule(vol_shape, spacing, coords, p0, p1, radius, *, pad=1.5):
    """Occupancy (0..1) of a capsule p0-p1 (mm, z/y/x) within its bounding box.

    Returns ``(slices, occupancy)`` or ``None`` when the box misses the volume.
    """
    z, y, x = coords
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    lo = np.minimum(p0, p1) - radius - pad * np.asarray(spacing)
    hi = np.maximum(p0, p1) + radius + pad * np.asarray(spacing)
    sl = []
    for ax, c in enumerate((z, y, x)):
        i0 = int(np.searchsorted(c, lo[ax]))
        i1 = int(np.searchsorted(c, hi[ax], side="right"))
        if i1 <= i0:
            return None
        sl.append(slice(i0, i1))
    dz = z[sl[0]][:, None, None] - p0[0]
    dy = y[sl[1]][None, :, None] - p0[1]
    dx = x[sl[2]][None, None, :] - p0[2]
    seg = p1 - p0
    L2 = float(seg @ seg)
    if L2 > 0:
        tt = np.clip((dz * seg[0] + dy * seg[1] + dx * seg[2]) / L2, 0.0, 1.0)
    else:
        tt = 0.0
    d = np.sqrt((dz - tt * seg[0]) ** 2 + (dy - tt * seg[1]) ** 2 + (dx - tt * seg[2]) ** 2)
    w = float(min(spacing[1], spacing[2]))
    occ = np.clip((radius - d) / w + 0.5, 0.0, 1.0) * min(1.0, 2.0 * radius / w)
    return tuple(sl), occ.astype(np.float32)


def _ellipse(Y, X, cy, cx, b, a):
    return ((X - cx) / a) ** 2 + ((Y - cy) / b) ** 2


def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) linear-interpolation weights mapping a coarse grid onto a fine one."""
    t = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0, n_in - 1.0)
    i0 = np.minimum(np.floor(t).astype(int), n_in - 2) if n_in > 1 else np.zeros(n_out, int)
    w = np.zeros((n_out, n_in), np.float32)
    if n_in == 1:
        w[:, 0] = 1.0
        return w
    frac = t - i0
    w[np.arange(n_out), i0] = 1.0 - frac
    w[np.arange(n_out), i0 + 1] += frac
    return w


def _lowfreq(shape, rng, factor=8):
    """Smooth noise of unit-order amplitude: a coarse normal field, linearly upsampled."""
    coarse_shape = tuple(max(2, s // f) for s, f in zip(shape, (2, factor, factor)))
    out = rng.standard_normal(coarse_shape).astype(np.float32)
    for axis, n in enumerate(shape):
        out = np.moveaxis(np.tensordot(_interp_matrix(n, out.shape[axis]), out, axes=([1], [axis])), 0, axis)
    return np.ascontiguousarray(out)


def _tumour_shape(rng, volume_ml, n_dirs=4000):
    """Random lobulated spheroid: returns (R, rotation A, bumps, max radial extent in mm)."""
    n_b = int(rng.integers(3, 6))
    v = rng.standard_normal((n_b, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    amp = rng.uniform(-0.12, 0.3, size=n_b)
    kappa = rng.uniform(3.0, 8.0, size=n_b)
    # axis stretch with unit determinant, random rotation
    s = np.exp(rng.uniform(-0.18, 0.18, size=3))
    s /= np.prod(s) ** (1 / 3)
    q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    A = q @ np.diag(s)  # world offset = A @ canonical offset ; det(A) = +-1

    def g(u):  # radial factor for unit directions u (..., 3)
        return 1.0 + np.tensordot(np.exp(kappa * (u @ v.T - 1.0)), amp, axes=([-1], [0]))

    # Fibonacci sphere: volume = (4 pi / 3) R^3 mean(g^3)
    i = np.arange(n_dirs) + 0.5
    phi = np.arccos(1 - 2 * i / n_dirs)
    th = np.pi * (1 + 5 ** 0.5) * i
    u = np.stack([np.cos(phi), np.sin(phi) * np.cos(th), np.sin(phi) * np.sin(th)], axis=1)
    gu = g(u)
    R = (volume_ml * 1000.0 / (4.0 / 3.0 * np.pi * np.mean(gu ** 3))) ** (1.0 / 3.0)
    ext = R * gu.max() * s.max()
    return R, A, g, ext


def _fit_tumour(lung, coords, sp, tz, R, A, g, ext, rng):
    """Place a tumour centred at height ``tz`` (mm) wholly inside ``lung`` (3-D bool).

    The tumour grown by 1 mm is rasterised around an in-plane voxel centre; a centre (j, i) is
    feasible when no kernel voxel falls outside the lung (an FFT correlation per slice). Returns
    ``(slices, rho, rad, centre)`` with ``rho / rad <= 1`` inside the shape, or raises.
    """
    zc, yc, xc = coords
    nz, ny, nx = lung.shape
    hy, hx = (int(np.ceil((ext + 2.0) / sp[a])) + 1 for a in (1, 2))
    k0 = int(np.searchsorted(zc, tz - ext - 2.0))
    k1 = int(np.searchsorted(zc, tz + ext + 2.0, side="right"))
    if k0 <= 0 or k1 >= nz:
        raise PhantomError("tumour does not fit in the volume in z")
    off = np.stack(np.meshgrid(zc[k0:k1] - tz, np.arange(-hy, hy + 1) * sp[1], np.arange(-hx, hx + 1) * sp[2],
                               indexing="ij"), axis=-1)
    can = off @ np.linalg.inv(A).T  # canonical offsets
    rho = np.linalg.norm(can, axis=-1)
    rad = R * g(can / np.maximum(rho, 1e-9)[..., None])
    kernel = (rho <= rad + 1.0).astype(np.float32)
    outside = ~lung[k0:k1]
    bad = np.zeros((ny, nx))
    for kk in range(k1 - k0):
        if kernel[kk].any():
            bad += signal.fftconvolve(outside[kk].astype(np.float32), kernel[kk, ::-1, ::-1], mode="same")
    ok = bad < 0.5
    ok[:hy] = ok[-hy:] = False
    ok[:, :hx] = ok[:, -hx:] = False
    cand = np.argwhere(ok)
    if cand.size == 0:
        raise PhantomError("tumour does not fit in the lung")
    j, i = cand[rng.integers(cand.shape[0])]
    sl = (slice(k0, k1), slice(j - hy, j + hy + 1), slice(i - hx, i + hx + 1))
    return sl, rho, rad, np.array([tz, yc[j], xc[i]])
