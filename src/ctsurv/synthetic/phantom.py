"""Synthetic chest-CT phantoms: the anatomy, the tumour placement and the rendered HU volume.

Anatomy (:func:`make_phantom`)
------------------------------
All geometry is defined in millimetres, so the same patient can be drawn on the small default
grid (48 x 192 x 192 voxels of 5 x 2 x 2 mm) or on a LUNG1-like grid (e.g. 100 x 512 x 512 of
3 x 0.977 x 0.977 mm). Array axes are ``(z, y, x)``; ``z`` grows towards the head, ``y`` towards
the patient's back and ``x`` towards the patient's left (LPS), so "Lung L" lies at large column
indices and the table lies below the body (large row indices). Structures and nominal HU:
outside air -1000; patient table (carbon shells +250, foam core -700) separated from the body by
an air gap; body ellipse with subcutaneous fat (-100) over muscle (+45); ribs (bone arcs, +700)
descending from back to front and a sternum; spine (vertebral body +450 with a +1000 cortex,
discs +90, spinal canal +30, posterior arch +700); mediastinum, heart and descending aorta
(+40); two lungs (-850 with smooth texture and a posterior gravity gradient) that taper at the
apex and sit on diaphragm domes, so that apex and base slices hold little lung, with tapering,
branching vessels (+40, partial volume, clipped to the lungs); a trachea (air) splitting into
two main bronchi that enter the lungs; liver (+55) and a gastric air bubble below the diaphragm;
one tumour (+35, lobulated spheroid, optional spicules, necrotic core above 60 mL) inside one
lung; or, with ``tumour_necrosis`` and ``tumour_texture_mm`` (seed 002's internal heterogeneity),
a necrotic core (+5 HU) of exactly that fraction of the GTV voxels (the innermost ones by the
shape's level set) in viable tissue of +40 HU plus a Gaussian random field of sd 25 HU whose
kernel sd is ``tumour_texture_mm`` (autocorrelation ``exp(-d^2 / (4 l^2))`` at lag ``d`` mm, for
kernels of at least about 0.75 voxel; a sampled kernel of 0.5 voxel is rougher). With
``node_volume_ml`` and ``calcium_mm3`` (seed 003's other regions), mediastinal lymph nodes
(+55 HU in a one-voxel fat halo, -90 HU) of that total volume at 1-3 stations (subcarinal,
right paratracheal, aortopulmonary window), and the coronary arteries (a 3 mm-radius tube
along the heart's atrioventricular ring and anterior interventricular groove, +40 HU as the
heart: a non-contrast CT) holding that volume of calcified plaque (300-800 HU), each from a
spawned stream (masks ``"Lymph nodes"``, ``"Coronary arteries"``). Then an in-plane
point-spread blur, Gaussian noise (``noise_sd``, 20 HU) and rounding to integer HU in the
scanner range [-1024, 3071].

The tumour's volume and position are drawn as in :class:`~ctsurv.synthetic.SurvivalModel`
unless given; its mask (``"GTV"``) has exactly the nominal volume in voxels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ctsurv.exceptions import GeometryError, PhantomError
from ctsurv.synthetic._geometry import _capsule, _ellipse, _fit_tumour, _lowfreq, _tumour_shape
from ctsurv.synthetic.survival import SurvivalModel

__all__ = ["PhantomParams", "PhantomInfo", "make_phantom"]

_HU_MIN, _HU_MAX = -1024.0, 3071.0


@dataclass(frozen=True)
class PhantomParams:
    """Grid and tumour of one phantom. ``None`` tumour fields are drawn from ``rng``.

    Attributes
    ----------
    shape, spacing : (z, y, x) voxels and mm. The in-plane field of view must be >= 330 mm and
        the z extent >= 200 mm (the lungs are about 180-200 mm high).
    tumour_volume_ml : nominal GTV volume; ``tumour_z_rel`` its centre's cranio-caudal position
        (0 = lung base, 1 = apex); ``tumour_side`` ``"L"`` or ``"R"`` (patient side).
        ``tumour_volume_ml`` must lie in [0.2, 400] mL.
    noise_sd : sd of the Gaussian image noise in HU (0 = none).
    psf_sigma_vox : in-plane sd of the Gaussian point-spread blur, voxels (the reconstruction
        kernel's smoothness; 0.5 by default).
    sharpen : unsharp-mask amount after the blur, ``hu + sharpen * (hu - G_1vox * hu)`` in plane (an
        edge-enhancing "sharp" kernel; 0 = none).
    hu_offset : HU added to every voxel before noise and clipping (a scanner's calibration offset).
    body_scale : factor on the patient's drawn body size (1 = the default anatomy).
    n_spicules : thin strands drawn from the tumour surface into the lung (not part of the GTV).
    vessel_depth : branching generations of each lung's vessel tree.
    tumour_necrosis, tumour_texture_mm : the necrotic fraction of the GTV (in [0, 0.9]) and the
        viable tissue's texture length (mm, in [0.5, 20]); given together, or neither (the
        default rendering).
    node_volume_ml, calcium_mm3 : seed 003's other regions: the total volume of the mediastinal
        lymph nodes (mL, in (0, 60]) and of the coronary artery calcium (mm^3, in [0, 5000]);
        given together, or neither (no node or coronary region is drawn).
    """

    shape: tuple[int, int, int] = (48, 192, 192)
    spacing: tuple[float, float, float] = (5.0, 2.0, 2.0)
    tumour_volume_ml: float | None = None
    tumour_z_rel: float | None = None
    tumour_side: str | None = None
    noise_sd: float = 20.0
    n_spicules: int | None = None
    vessel_depth: int = 5
    psf_sigma_vox: float = 0.5
    sharpen: float = 0.0
    hu_offset: float = 0.0
    body_scale: float = 1.0
    tumour_necrosis: float | None = None
    tumour_texture_mm: float | None = None
    node_volume_ml: float | None = None
    calcium_mm3: float | None = None

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or any(int(s) < 8 for s in self.shape):
            raise PhantomError(f"shape must be 3 sizes >= 8 (z, y, x), got {self.shape}")
        if len(self.spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in self.spacing):
            raise GeometryError(f"spacing must be 3 positive mm values (z, y, x), got {self.spacing}")
        fov = [n * s for n, s in zip(self.shape, self.spacing)]
        if fov[1] < 330 or fov[2] < 330 or fov[0] < 200:
            raise GeometryError(
                f"phantom field of view {fov[0]:.0f} x {fov[1]:.0f} x {fov[2]:.0f} mm (z, y, x) too small: "
                "need z >= 200 mm and y, x >= 330 mm"
            )
        if self.tumour_volume_ml is not None and not (0.2 <= self.tumour_volume_ml <= 400):
            raise PhantomError(f"tumour_volume_ml must be in [0.2, 400] mL, got {self.tumour_volume_ml}")
        if self.tumour_z_rel is not None and not (0.0 <= self.tumour_z_rel <= 1.0):
            raise PhantomError(f"tumour_z_rel must be in [0, 1], got {self.tumour_z_rel}")
        if self.tumour_side not in (None, "L", "R"):
            raise PhantomError(f"tumour_side must be 'L', 'R' or None, got {self.tumour_side!r}")
        if self.noise_sd < 0:
            raise PhantomError(f"noise_sd must be >= 0, got {self.noise_sd}")
        if self.psf_sigma_vox < 0 or self.sharpen < 0:
            raise PhantomError(f"psf_sigma_vox and sharpen must be >= 0, got {self.psf_sigma_vox}, {self.sharpen}")
        if not 0.8 <= self.body_scale <= 1.2:
            raise PhantomError(f"body_scale must be in [0.8, 1.2], got {self.body_scale}")
        if (self.tumour_necrosis is None) != (self.tumour_texture_mm is None):
            raise PhantomError("tumour_necrosis and tumour_texture_mm are given together or not at all")
        if self.tumour_necrosis is not None and not (0.0 <= self.tumour_necrosis <= 0.9
                                                     and 0.5 <= self.tumour_texture_mm <= 20.0):
            raise PhantomError(f"tumour_necrosis must be in [0, 0.9] and tumour_texture_mm in [0.5, 20] mm, "
                               f"got {self.tumour_necrosis}, {self.tumour_texture_mm}")
        if (self.node_volume_ml is None) != (self.calcium_mm3 is None):
            raise PhantomError("node_volume_ml and calcium_mm3 are given together or not at all")
        if self.node_volume_ml is not None and not (0 < self.node_volume_ml <= 60 and 0 <= self.calcium_mm3 <= 5000):
            raise PhantomError(f"node_volume_ml must be in (0, 60] mL and calcium_mm3 in [0, 5000] mm^3, "
                               f"got {self.node_volume_ml}, {self.calcium_mm3}")


@dataclass(frozen=True, eq=False)
class PhantomInfo:
    """What :func:`make_phantom` drew (``return_info=True``).

    ``labels`` holds extra anatomy masks (Body, Table, Bone, Airway, Heart, Fat, Muscle, Aorta)
    for tests; ``lung_z_mm`` is the (base, apex) height of the lungs in mm.
    """

    tumour_volume_ml: float
    tumour_z_rel: float
    tumour_side: str
    tumour_centre_mm: tuple[float, float, float]
    lung_z_mm: tuple[float, float]
    labels: dict = field(default_factory=dict)


def _heterogeneous_tumour(gtv: np.ndarray, level: np.ndarray, spacing, fraction: float, length_mm: float,
                          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """HU of a heterogeneous tumour on its box and its necrotic core (see the module docstring).

    ``gtv`` and ``level`` (the shape's level set, lower inside) are the box's; the core is the
    ``round(fraction * n)`` GTV voxels of lowest level; the viable tissue is +40 HU plus 25 HU
    times white noise smoothed by a Gaussian of sd ``length_mm`` and standardised over the GTV.
    """
    sigma = tuple(float(length_mm) / s for s in spacing)
    field = ndimage.gaussian_filter(rng.standard_normal(gtv.shape), sigma=sigma, mode="reflect")
    inside = field[gtv]
    field = (field - inside.mean()) / max(float(inside.std()), 1e-12)
    t_hu = (40.0 + 25.0 * field).astype(np.float32)
    n_core = int(round(float(fraction) * int(gtv.sum())))
    core = np.zeros_like(gtv)
    if n_core:
        lv = np.where(gtv, level, np.inf).ravel()
        core.ravel()[np.argpartition(lv, n_core - 1)[:n_core]] = True
    t_hu[core] = 5.0
    return t_hu, core


def _draw_nodes(allowed: np.ndarray, coords, spacing, stations, volume_ml: float,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Mediastinal lymph nodes of ``volume_ml`` in total (each node to the voxel) and their fat halo.

    The volume is split over 1 (< 1.5 mL), 2 (< 6 mL) or 3 stations (Dirichlet(2) shares); each
    node is the ``round(v / voxel)`` allowed voxels nearest its station under a random
    ellipsoidal metric (axis ratios 0.7-1.3), so nodes follow the mediastinum's free space. The
    halo is one in-plane voxel of fat around them.
    """
    z, y, x = coords
    vox_ml = float(np.prod(spacing)) / 1000.0
    k = 1 if volume_ml < 1.5 else 2 if volume_ml < 6.0 else 3
    shares = rng.dirichlet(np.full(k, 2.0)) if k > 1 else np.ones(1)
    nodes = np.zeros(allowed.shape, bool)
    for share, centre in zip(shares, stations[:k]):
        n = max(1, int(round(volume_ml * share / vox_ml)))
        scale = rng.uniform(0.7, 1.3, size=3)
        free = allowed & ~nodes
        d = (((z[:, None, None] - centre[0]) / scale[0]) ** 2 + ((y[None, :, None] - centre[1]) / scale[1]) ** 2
             + ((x[None, None, :] - centre[2]) / scale[2]) ** 2)
        d = np.where(free, d, np.inf).ravel()
        if n > np.isfinite(d).sum():
            raise PhantomError(f"lymph nodes of {volume_ml:.1f} mL do not fit the phantom mediastinum")
        nodes.ravel()[np.argpartition(d, n - 1)[:n]] = True
    halo = ndimage.binary_dilation(nodes, structure=np.array([[[0, 1, 0], [1, 1, 1], [0, 1, 0]]], bool))
    return nodes, halo & allowed & ~nodes


def _draw_coronaries(shape, coords, spacing, heart, heart3: np.ndarray, calcium_mm3: float,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The coronary arteries' region and the calcified voxels inside it.

    The arteries run just inside the heart's ellipsoid surface (88 % of its semi-axes): the
    atrioventricular ring (right coronary and circumflex) and the anterior descending artery
    from the top of the ring to the apex, as capsules of 3 mm radius (so that 5 mm slices never
    miss them). Calcium is ``max(1, round(calcium_mm3 / voxel))`` voxels of the region (none for
    0), the nearest to 1-4 plaque centres drawn on the arteries.
    """
    (cz, cy, cx), axes = np.asarray(heart[0], float), np.asarray(heart[1], float)

    def on_surface(u):
        u = np.asarray(u, float)
        return np.array([cz, cy, cx]) + 0.88 * axes * u / np.linalg.norm(u)

    ring = [on_surface((0.35, np.sin(p), np.cos(p))) for p in np.linspace(0.0, 2 * np.pi, 25)]
    lad = [on_surface((0.35 - 1.25 * t, -0.95, 0.15 + 0.35 * t)) for t in np.linspace(0.0, 1.0, 9)]
    coronary = np.zeros(shape, bool)
    for path in (ring, lad):
        for p0, p1 in zip(path[:-1], path[1:]):
            res = _capsule(shape, spacing, coords, p0, p1, 3.0)
            if res is not None:
                sl, occ = res
                coronary[sl] |= occ > 0.0
    coronary &= heart3
    plaque = np.zeros(shape, bool)
    if calcium_mm3 > 0:
        n = max(1, int(round(calcium_mm3 / float(np.prod(spacing)))))
        cells = np.argwhere(coronary)
        if n > len(cells):
            raise PhantomError(f"{calcium_mm3:.0f} mm^3 of calcium do not fit the {len(cells)} coronary voxels")
        mm = cells * np.asarray(spacing, float)
        centres = mm[rng.choice(len(cells), size=int(rng.integers(1, 5)), replace=False)]
        d = np.min(((mm[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
        pick = cells[np.argpartition(d, n - 1)[:n]]
        plaque[tuple(pick.T)] = True
    return coronary, plaque


def _coords(params: PhantomParams):
    nz, ny, nx = params.shape
    sz, sy, sx = params.spacing
    z = np.arange(nz) * sz
    y = (np.arange(ny) - (ny - 1) / 2.0) * sy
    x = (np.arange(nx) - (nx - 1) / 2.0) * sx
    return z, y, x


def make_phantom(params: PhantomParams, *, rng: np.random.Generator, return_info: bool = False):
    """Draw one chest-CT phantom with a lung tumour (see the module docstring for the anatomy).

    Parameters
    ----------
    params : PhantomParams
        Grid and tumour. Unspecified tumour fields are drawn from ``rng`` (volume and position
        as in :class:`SurvivalModel`); an unspecified side or position is redrawn when the
        tumour does not fit, a specified one never is.
    rng : numpy.random.Generator
        The only source of randomness.
    return_info : bool
        Also return a :class:`PhantomInfo` with the drawn values and anatomy labels.

    Returns
    -------
    hu : ndarray (z, y, x) float32, integer-valued HU in [-1024, 3071]
    spacing : tuple (z, y, x) mm
    masks : dict with bool arrays ``"GTV"``, ``"Lung L"``, ``"Lung R"`` (lungs include vessels
        and the tumour; the GTV lies inside one lung; the lungs are disjoint)
    info : PhantomInfo, only with ``return_info=True``

    Raises
    ------
    PhantomError
        When the tumour does not fit inside the lung at the requested position.

    Examples
    --------
    >>> hu, spacing, masks = make_phantom(PhantomParams(tumour_volume_ml=20.0), rng=np.random.default_rng(0))
    >>> hu.shape, spacing, round(float(masks["GTV"].sum() * np.prod(spacing) / 1000), 1)
    ((48, 192, 192), (5.0, 2.0, 2.0), 20.0)
    """
    nz, ny, nx = params.shape
    sp = tuple(float(s) for s in params.spacing)
    coords = _coords(params)
    zc, yc, xc = coords
    Y, X = np.meshgrid(yc, xc, indexing="ij")
    Z3 = zc[:, None, None]
    Lz = nz * sp[0]

    # ---- patient-level anatomy draws -------------------------------------------------------
    s = rng.uniform(0.92, 1.06) * params.body_scale
    s_z = rng.uniform(0.93, 1.04)
    A_b, B_b = 155.0 * s, 115.0 * s
    fat = rng.uniform(8.0, 25.0)
    muscle = rng.uniform(10.0, 16.0)
    gap = rng.uniform(6.0, 15.0)
    table_top = 110.0
    yb = table_top - gap - B_b  # body centre y
    A_m, B_m = A_b - fat, B_b - fat
    A_c, B_c = A_m - muscle - 6.0, B_m - muscle - 6.0  # pleural cavity
    H = 190.0 * s_z
    z_base = Lz / 2.0 + 5.0 - H / 2.0
    z_apex = z_base + H
    z_car = z_base + 0.62 * H

    body2 = _ellipse(Y, X, yb, 0.0, B_b, A_b) < 1
    muscle2 = _ellipse(Y, X, yb, 0.0, B_m, A_m) < 1
    cavity2 = _ellipse(Y, X, yb, 0.0, B_c, A_c) < 1
    table2 = (np.abs(X) < 185.0) & (Y >= table_top) & (Y < table_top + 14.0)
    table_shell2 = table2 & ((Y < table_top + 2.0) | (Y >= table_top + 12.0))

    # spine
    r_v = 17.0 * s
    y_v = yb + B_c - 12.0
    vb2 = _ellipse(Y, X, y_v, 0.0, r_v, r_v) < 1
    vb_core2 = _ellipse(Y, X, y_v, 0.0, r_v - 2.5, r_v - 2.5) < 1
    y_canal = y_v + r_v + 8.0
    rr_canal = np.hypot(X, Y - y_canal)
    canal2 = rr_canal < 7.0
    arch2 = (rr_canal >= 7.0) & (rr_canal < 12.0) & (Y > y_canal - 4.0)
    spinous2 = (np.abs(X) < 4.0) & (Y > y_canal + 10.0) & (Y < y_canal + 32.0) & muscle2
    w_m = 20.0 * s
    y_tr = y_v - r_v - 14.0
    aorta2 = np.hypot(X - 30.0 * s, Y - (y_v - 14.0)) < 12.0 * s

    # ---- base image: air, table, fat, muscle, soft-tissue cavity ---------------------------
    tex = _lowfreq((nz, ny, nx), rng)
    slice2 = np.full((ny, nx), -1000.0, np.float32)
    slice2[table2] = -700.0
    slice2[table_shell2] = 250.0
    slice2[body2] = -100.0
    slice2[muscle2] = 45.0
    slice2[cavity2] = 40.0
    hu = np.broadcast_to(slice2, (nz, ny, nx)).copy()
    fat3 = np.broadcast_to(body2 & ~muscle2, (nz, ny, nx))
    hu[fat3] += 10.0 * tex[fat3]

    # ---- lungs -------------------------------------------------------------------------------
    u = (zc - z_base) / H
    f2 = np.where(u < 0.6, 1.0, np.clip(1.0 - ((u - 0.6) / 0.4) ** 2, 0.0, 1.0))
    f2 = f2 * (0.55 + 0.45 * np.clip(u / 0.15, 0.0, 1.0))  # the costophrenic recess narrows
    f2 = np.where((u >= 0) & (u <= 1), f2, 0.0)[:, None, None]
    pleura2 = _ellipse(Y, X, yb, 0.0, B_c - 2.0, A_c - 2.0) < 1
    excl2 = (np.abs(X) < w_m) & (Y < y_v) | (_ellipse(Y, X, y_v, 0.0, r_v + 5, r_v + 5) < 1) \
        | (np.hypot(X - 30.0 * s, Y - (y_v - 14.0)) < 12.0 * s + 3.0)
    heart_xy = _ellipse(Y, X, yb - 0.35 * B_c, 18.0 * s, 48.0 * s, 60.0 * s)
    heart_z = ((zc - (z_base + 0.32 * H)) / (50.0 * s_z)) ** 2
    heart3 = (heart_xy[None] + heart_z[:, None, None]) < 1
    lungs = {}
    dome = {}
    for side, sign, h_d in (("R", -1.0, 40.0), ("L", 1.0, 32.0)):
        e2 = _ellipse(Y, X, yb + 0.03 * B_c, sign * 0.5 * A_c, 0.97 * B_c, 0.56 * A_c)
        dd = np.clip(1.0 - _ellipse(Y, X, yb - 0.1 * B_c, sign * 0.45 * A_c, 0.8 * B_c, 0.45 * A_c), 0.0, 1.0)
        dome[side] = z_base + h_d * s_z * np.sqrt(dd)
        inplane = pleura2 & ~excl2 & ((X * sign) > 0)
        lungs[side] = (e2[None] < f2) & (Z3 > dome[side][None]) & inplane[None] & ~heart3
    lung_any = lungs["L"] | lungs["R"]

    # below the diaphragm: liver (right), soft tissue, gastric bubble (left)
    dome_any = np.where(X < 0, dome["R"], dome["L"])
    abdo3 = (Z3 <= dome_any[None]) & cavity2[None] & ~lung_any
    liver3 = abdo3 & (X < 25.0)[None] & (Z3 > z_base - 80.0)
    hu[liver3] = 55.0
    gas_xy = _ellipse(Y, X, yb - 0.3 * B_c, 0.45 * A_c, 18.0, 25.0)
    gas3 = (gas_xy[None] + ((Z3 - (dome["L"].max() - 28.0)) / 12.0) ** 2 < 1) & abdo3
    hu[gas3] = -1000.0

    lung_hu = -850.0 + 0.25 * (Y - yb)[None] + 15.0 * tex
    hu[lung_any] = lung_hu[lung_any]

    # ---- vessels: branching, tapering tree from each hilum -----------------------------------
    for side, sign in (("R", -1.0), ("L", 1.0)):
        root = np.array([z_car - 25.0, y_tr + 10.0, sign * (w_m + 6.0)])
        trunks = [(0.8, 0.0, 0.6), (0.3, -0.6, 0.6), (0.0, 0.1, 1.0), (-0.7, 0.2, 0.7), (-0.6, 0.6, 0.3),
                  (-0.3, -0.6, 0.5), (0.2, 0.7, 0.5)]
        stack = [(root, np.array([a, b, sign * c]), 4.5, 38.0, 0) for a, b, c in trunks]
        while stack:
            p0, d, r, length, depth = stack.pop()
            d = d / np.linalg.norm(d)
            p1 = p0 + d * length
            res = _capsule(hu.shape, sp, coords, p0, p1, r)
            if res is not None:
                sl, occ = res
                inside = lungs[side][sl]
                sub = hu[sl]
                sub[inside] += (40.0 - sub[inside]) * occ[inside]
            if depth < params.vessel_depth:
                for _ in range(2):
                    nd = d + rng.normal(0.0, 0.55, size=3)
                    stack.append((p1, nd, max(0.7, r * 0.72), length * rng.uniform(0.6, 0.8), depth + 1))

    # ---- airways: trachea and main bronchi ----------------------------------------------------
    airway3 = np.zeros((nz, ny, nx), bool)
    r_tr = 8.0 * s
    segs = [((z_car, y_tr, 0.0), (Lz + 20.0, y_tr, 0.0), r_tr)]
    for sign in (-1.0, 1.0):
        mid = (z_car - 22.0, y_tr + 8.0, sign * (w_m + 16.0))
        segs.append(((z_car, y_tr, 0.0), mid, 5.5 * s))
        segs.append((mid, (z_car - 38.0, y_tr + 14.0, sign * (w_m + 38.0)), 4.0 * s))
    for p0, p1, r in segs:
        for rad, val in ((r + 2.0, 40.0), (r, None)):
            res = _capsule(hu.shape, sp, coords, p0, p1, rad, pad=0.5)
            if res is None:
                continue
            sl, occ = res
            m = occ >= 0.5
            if val is None:
                airway3[sl] |= m
            else:
                hu[sl][m & ~lung_any[sl]] = val
                sub = hu[sl]
                wall = m & lung_any[sl]
                sub[wall] = np.maximum(sub[wall], 40.0 * 0.7 - 850.0 * 0.3)
    hu[airway3] = -1000.0

    # ---- tumour ---------------------------------------------------------------------------------
    pop = SurvivalModel()
    vol_ml = params.tumour_volume_ml
    if vol_ml is None:
        vol_ml = float(pop.sample_covariates(1, rng=rng)[0][0])
    z_rel = params.tumour_z_rel if params.tumour_z_rel is not None else float(rng.uniform(*pop.z_bounds(vol_ml)))
    side = params.tumour_side or ("L" if rng.uniform() < 0.5 else "R")
    R, A, g, ext = _tumour_shape(rng, vol_ml)
    # unspecified side / position are redrawn when the tumour does not fit; specified ones never
    sides = (side,) if params.tumour_side else (side, "R" if side == "L" else "L")
    for attempt in range(1 if params.tumour_z_rel is not None else 20):
        if attempt:
            z_rel = float(rng.uniform(*pop.z_bounds(vol_ml)))
        for side in sides:
            try:
                fit = _fit_tumour(lungs[side] & ~airway3, coords, sp, z_base + z_rel * H, R, A, g, ext, rng)
                break
            except PhantomError:
                fit = None
        if fit is not None:
            break
    if fit is None:
        raise PhantomError(
            f"tumour of {vol_ml:.1f} mL (extent {ext:.0f} mm) does not fit in the {'/'.join(sides)} lung "
            f"at z_rel {z_rel:.2f}"
        )
    sl, rho, rad, centre = fit
    # the n voxels of lowest rho / rad, n = nominal volume / voxel volume: the shape's own level
    # set, shifted by a fraction of a voxel so that the mask volume equals the nominal volume
    level = np.where(lungs[side][sl] & ~airway3[sl], rho / rad, np.inf).ravel()
    n_vox = int(round(vol_ml * 1000.0 / float(np.prod(sp))))
    if n_vox < 1 or n_vox > np.isfinite(level).sum():
        raise PhantomError(f"tumour of {vol_ml:.2f} mL cannot be drawn on voxels of {np.prod(sp):.1f} mm^3")
    pick = np.zeros(level.size, bool)
    pick[np.argpartition(level, n_vox - 1)[:n_vox]] = True
    gtv = np.zeros((nz, ny, nx), bool)
    gtv[sl] = pick.reshape(rho.shape)
    necrosis = None
    if params.tumour_necrosis is None:
        t_hu = 35.0 + 8.0 * tex[sl]
        if vol_ml > 60:
            t_hu = np.where(rho <= 0.45 * rad, 15.0 + 8.0 * tex[sl], t_hu)
    else:
        # a spawned child stream: every later draw of ``rng`` (spicules, noise) stays as it was
        t_hu, core = _heterogeneous_tumour(gtv[sl], level.reshape(rho.shape), sp, params.tumour_necrosis,
                                           params.tumour_texture_mm, rng.spawn(1)[0])
        necrosis = np.zeros_like(gtv)
        necrosis[sl] = core
    hu[sl][gtv[sl]] = t_hu[gtv[sl]]
    n_sp = params.n_spicules if params.n_spicules is not None else int(rng.integers(0, 5))
    for _ in range(n_sp):
        dvec = rng.standard_normal(3)
        dvec /= np.linalg.norm(dvec)
        start = centre + A @ (dvec * R * float(g(dvec)))
        end = start + (A @ dvec) / np.linalg.norm(A @ dvec) * rng.uniform(6.0, 16.0)
        res = _capsule(hu.shape, sp, coords, start, end, 0.9)
        if res is not None:
            ssl, occ = res
            m = lungs[side][ssl] & ~gtv[ssl]
            sub = hu[ssl]
            sub[m] += (35.0 - sub[m]) * occ[m]

    # ---- bones (drawn last outside the lungs) ----------------------------------------------
    bone3 = np.zeros((nz, ny, nx), bool)
    thorax_z = (zc > z_base - 30.0) & (zc < z_apex + 10.0)
    # ribs: ring just outside the cavity, bands descending from back (phi=0) to front (phi=pi)
    ring2 = (_ellipse(Y, X, yb, 0.0, B_c + 1.0, A_c + 1.0) >= 1) & (_ellipse(Y, X, yb, 0.0, B_c + 9.0, A_c + 9.0) < 1)
    phi = np.arctan2(np.abs(X), (Y - yb))  # 0 posterior, pi anterior
    jj, ii = np.nonzero(ring2 & (phi < 2.5) & (np.abs(X) > 14.0))
    pitch, slope = 24.0 * s_z, 26.0
    zrel = (zc[:, None] - z_base + slope * phi[jj, ii][None, :]) / pitch
    rib = (np.abs(zrel - np.round(zrel)) * pitch < 5.0) & thorax_z[:, None]
    kk, pp = np.nonzero(rib)
    bone3[kk, jj[pp], ii[pp]] = True
    sternum2 = (np.abs(X) < 14.0) & (Y < yb - B_c + 2.0) & (Y > yb - B_c - 12.0)
    bone3 |= sternum2[None] & thorax_z[:, None, None]
    disc = ((zc - 7.0) % 27.0 < 5.0)[:, None, None]
    hu[vb2[None] & disc & ~lung_any] = 90.0
    bone3 |= (vb2[None] & ~disc) | (arch2 | spinous2)[None]
    bone3 &= ~lung_any
    hu[bone3] = 700.0 + 60.0 * tex[bone3]
    core3 = np.broadcast_to(vb_core2, bone3.shape) & ~disc & bone3
    hu[core3] = 450.0 + 60.0 * tex[core3]
    cortex3 = np.broadcast_to(vb2 & ~vb_core2, bone3.shape) & ~disc & bone3
    hu[cortex3] = 1000.0
    hu[np.broadcast_to(canal2, hu.shape)] = 30.0

    # ---- seed 003's regions: mediastinal lymph nodes and coronary calcium --------------------
    regions = {}
    if params.node_volume_ml is not None:
        # a spawned child stream: every later draw of ``rng`` (noise) stays as it was
        rrng = rng.spawn(1)[0]
        mediastinum = (cavity2[None] & ~lung_any & ~airway3 & ~heart3 & ~bone3 & ~gtv
                       & ~np.broadcast_to(aorta2 | vb2 | canal2 | arch2, hu.shape)
                       & (Z3 > z_base + 0.35 * H) & (Z3 < z_car + 45.0))
        stations = [(z_car - 16.0, y_tr + 10.0, 0.0), (z_car + 20.0, y_tr, -(r_tr + 10.0)),
                    (z_car + 6.0, y_tr - 6.0, r_tr + 13.0)]
        nodes, halo = _draw_nodes(mediastinum, coords, sp, stations, params.node_volume_ml, rrng)
        hu[halo] = -90.0 + 10.0 * tex[halo]
        hu[nodes] = 55.0 + 8.0 * tex[nodes]
        heart = (z_base + 0.32 * H, yb - 0.35 * B_c, 18.0 * s), (50.0 * s_z, 48.0 * s, 60.0 * s)
        coronary, plaque = _draw_coronaries(hu.shape, coords, sp, heart, heart3, params.calcium_mm3, rrng)
        hu[plaque] = rrng.uniform(300.0, 800.0, size=int(plaque.sum())).astype(np.float32)
        regions = {"Lymph nodes": nodes, "Coronary arteries": coronary}
        region_labels = {"Node halo": halo, "Calcium": plaque}

    # ---- point-spread blur, noise, scanner range ---------------------------------------------------
    psf = (0.0, params.psf_sigma_vox, params.psf_sigma_vox)
    hu = ndimage.gaussian_filter(hu, sigma=psf, mode="nearest")
    if params.sharpen > 0:
        hu += params.sharpen * (hu - ndimage.gaussian_filter(hu, sigma=(0.0, 1.0, 1.0), mode="nearest"))
    if params.hu_offset:
        hu += np.float32(params.hu_offset)
    if params.noise_sd > 0:
        hu += params.noise_sd * rng.standard_normal(hu.shape, dtype=np.float32)
    np.clip(hu, _HU_MIN, _HU_MAX, out=hu)
    np.rint(hu, out=hu)
    masks = {"GTV": gtv, "Lung L": lungs["L"], "Lung R": lungs["R"], **regions}
    if not return_info:
        return hu.astype(np.float32, copy=False), sp, masks
    labels = {
        "Body": np.broadcast_to(body2, hu.shape), "Table": np.broadcast_to(table2, hu.shape),
        "Bone": bone3, "Airway": airway3, "Heart": heart3 & ~lung_any,
        "Fat": fat3, "Muscle": np.broadcast_to(muscle2 & ~cavity2 & ~ring2, hu.shape) & ~bone3,
        "Aorta": np.broadcast_to(aorta2, hu.shape) & thorax_z[:, None, None],
        **({"Necrosis": necrosis} if necrosis is not None else {}),
        **(region_labels if regions else {}),
    }
    info = PhantomInfo(float(vol_ml), float(z_rel), side, tuple(float(c) for c in centre),
                       (float(z_base), float(z_apex)), labels)
    return hu.astype(np.float32, copy=False), sp, masks, info
