"""Tests of ctsurv.preprocess on volumes of known geometry, plus one real LUNG1 patient."""

from __future__ import annotations

import time

import numpy as np
import pytest

from ctsurv.exceptions import CtsurvError, GeometryError, SegmentationError
from ctsurv.preprocess import (
    PREPROCESS_VERSION,
    FoldZScore,
    PreprocessConfig,
    PreprocessedCT,
    fingerprint_ct,
    preprocess_ct,
    resample,
    resample_mask,
)
from ctsurv.types import CTVolume

LUNG_HU, BODY_HU = -850.0, 40.0
# direction rows (z, y, x axes): z runs feet->head (LPS +z), y, x as in DICOM
AXIAL = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


def _world(ct: CTVolume) -> np.ndarray:
    """World LPS (x, y, z) of every voxel, shape (z, y, x, 3), from the documented convention."""
    k, j, i = np.meshgrid(*[np.arange(n) for n in ct.shape], indexing="ij")
    d, s = ct.direction, ct.spacing
    return (np.asarray(ct.origin) + k[..., None] * s[0] * d[0] + j[..., None] * s[1] * d[1]
            + i[..., None] * s[2] * d[2])


def _box_phantom(spacing=(3.0, 1.0, 1.0), shape=(40, 64, 80), z=(10, 30), y=(20, 40), x=(15, 65), pid="BOX"):
    hu = np.full(shape, BODY_HU, np.float32)
    lung = np.zeros(shape, bool)
    lung[z[0]:z[1], y[0]:y[1], x[0]:x[1]] = True
    hu[lung] = LUNG_HU
    ct = CTVolume(hu, spacing, origin=(-40.0, -30.0, -100.0), direction=AXIAL, patient_id=pid)
    return ct, lung


# ----------------------------------------------------------------------------- resampling


def test_resample_keeps_field_of_view_and_a_linear_hu_pattern():
    direction = np.array([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # z runs head->feet
    shape, sp = (20, 50, 40), (2.5, 0.7, 0.8)
    base = CTVolume(np.zeros(shape, np.float32), sp, origin=(10.0, -20.0, 55.0), direction=direction, patient_id="R")
    w = _world(base)
    ramp = lambda p: 2.0 * p[..., 0] - 3.0 * p[..., 1] + 5.0 * p[..., 2]  # noqa: E731
    ct = CTVolume(ramp(w).astype(np.float32), sp, base.origin, direction, patient_id="R")
    # linear: exact inside the sampled range; cubic B-spline: exact away from the mirrored edges
    for method, tol, margin in (("linear", 1e-3, 1), ("bspline", 0.05, 4)):
        r = resample(ct, (3.0, 1.0, 1.0), method)
        assert r.shape == (17, 35, 32)  # round(20*2.5/3), round(50*0.7), round(40*0.8)
        assert r.spacing == (3.0, 1.0, 1.0) and np.array_equal(r.direction, direction)
        centre = lambda v: np.asarray(v.origin) + sum(  # noqa: E731
            (n - 1) / 2 * s * v.direction[a] for a, (n, s) in enumerate(zip(v.shape, v.spacing)))
        np.testing.assert_allclose(centre(r), centre(ct), atol=1e-9)
        for n, s, n2, s2 in zip(ct.shape, ct.spacing, r.shape, r.spacing):
            assert abs(n * s - n2 * s2) <= s2 / 2 + 1e-9
        # the linear pattern is reproduced at the new world positions
        wr = _world(r)
        inner = (slice(margin, -margin),) * 3
        np.testing.assert_allclose(r.hu[inner], ramp(wr)[inner], atol=tol, rtol=0)
        assert any("resampled" in n for n in r.notes) and r.patient_id == "R"


def test_resample_linear_matches_simpleitk():
    sitk = pytest.importorskip("SimpleITK")
    rng = np.random.default_rng(0)
    ct = CTVolume(rng.normal(0, 300, (12, 40, 36)).astype(np.float32), (2.0, 0.75, 0.9),
                  origin=(3.0, -7.0, 20.0), direction=AXIAL, patient_id="S")
    r = resample(ct, (3.0, 1.0, 1.0), "linear")
    img = sitk.GetImageFromArray(ct.hu)
    img.SetSpacing(ct.spacing[::-1])
    img.SetOrigin(ct.origin)
    img.SetDirection(np.stack([ct.direction[2], ct.direction[1], ct.direction[0]], axis=1).ravel().tolist())
    f = sitk.ResampleImageFilter()
    f.SetInterpolator(sitk.sitkLinear)
    f.SetOutputSpacing(r.spacing[::-1])
    f.SetOutputOrigin(r.origin)
    f.SetOutputDirection(img.GetDirection())
    f.SetSize(r.shape[::-1])
    ref = sitk.GetArrayFromImage(f.Execute(img))
    inner = (slice(1, -1), slice(1, -1), slice(1, -1))  # sitk pads outside the input, we clamp
    np.testing.assert_allclose(r.hu[inner], ref[inner], atol=1e-2)


def test_resample_nearest_and_masks():
    a = np.arange(4, dtype=np.float32).reshape(1, 1, 4) * np.ones((1, 2, 1), np.float32)
    r = resample(CTVolume(a, (1.0, 1.0, 1.0)), (1.0, 1.0, 0.5), "nearest")
    np.testing.assert_array_equal(r.hu[0, 0], [0, 0, 1, 1, 2, 2, 3, 3])
    m = np.zeros((1, 1, 8), bool)
    m[0, 0, 2:6] = True  # 2 mm voxels of a 1 mm mask: each new voxel averages two old ones
    np.testing.assert_array_equal(resample_mask(m, (1, 1, 1), (1, 1, 2))[0, 0], [False, True, True, False])
    with pytest.raises(CtsurvError, match="patient X: interpolation must be one of"):
        resample(CTVolume(a, (1, 1, 1), patient_id="X"), (1, 1, 1), "cubic")


def test_resample_mask_matches_full_linear_interpolation():
    from scipy import ndimage

    rng = np.random.default_rng(3)
    m = np.zeros((30, 60, 50), bool)
    m[8:20, 10:35, 5:30] = rng.random((12, 25, 25)) < 0.7
    sp, new = (1.5, 0.6, 0.7), (3.0, 1.0, 1.0)
    got = resample_mask(m, sp, new)
    # oracle: trilinear interpolation of the whole mask at the documented source positions
    axes = []
    for n, s, ns in zip(m.shape, sp, new):
        k = int(np.floor(n * s / ns + 0.5))
        axes.append((n - 1) / 2 + (np.arange(k) - (k - 1) / 2) * ns / s)
    grid = np.meshgrid(*axes, indexing="ij")
    ref = ndimage.map_coordinates(m.astype(np.float64), grid, order=1, mode="nearest")
    assert got.shape == ref.shape == (15, 36, 35)
    clear = np.abs(ref - 0.5) > 1e-5  # exact ties at 0.5 may round either way in float32
    assert got.any() and clear.mean() > 0.95 and np.array_equal(got[clear], ref[clear] > 0.5)
    assert not resample_mask(np.zeros_like(m), sp, new).any()


def test_resize_matches_skimage():
    from skimage.transform import resize

    from ctsurv.preprocess import _resize_stack

    rng = np.random.default_rng(4)
    for h, w in ((299, 180), (100, 150)):  # shrink (anti-aliasing) and enlarge
        x = rng.normal(size=(3, h, w)).astype(np.float32)
        got = _resize_stack(x, 224, True, is_mask=False)
        ref = resize(x, (3, 224, 224), order=1, mode="edge", anti_aliasing=True, preserve_range=True)
        np.testing.assert_allclose(got, ref, atol=1e-4)


def test_resample_speed_lung1_size():
    ct = CTVolume(np.zeros((134, 512, 512), np.float32), (3.0, 0.9765625, 0.9765625))
    t0 = time.perf_counter()
    r = resample(ct, (3.0, 1.0, 1.0))
    dt = time.perf_counter() - t0
    assert r.shape == (134, 500, 500)
    assert dt < 3.0, f"resampling took {dt:.2f} s"  # ~0.3 s on one idle core


# ----------------------------------------------------------------------------- the pipeline


def test_box_lung_kept_slices_crop_and_window():
    ct, lung = _box_phantom()
    # two small blobs inside the box area: 104 px > 2% of 64*80 = 102.4 px is kept, 100 px is not
    lung[30, 20:28, 15:28] = True
    lung[31, 20:30, 15:25] = True
    p = preprocess_ct(ct, PreprocessConfig(), lung=lung)
    assert p.resampled_shape == ct.shape  # already at (3, 1, 1) mm
    expected = np.arange(30, 9, -1)  # slices 10..30, most superior (highest z) first
    np.testing.assert_array_equal(p.slice_index, expected)
    np.testing.assert_allclose(p.z_mm, -100.0 + 3.0 * expected)
    np.testing.assert_allclose(p.rel_pos, (39 - expected) / 39)
    np.testing.assert_allclose(p.lung_fraction[1:], 20 * 50 / (64 * 80))
    assert p.lung_fraction[0] == pytest.approx(104 / (64 * 80))
    assert p.crop_box == (20, 40, 15, 65) and p.square_box == (5, 55, 15, 65)
    assert p.slices.shape == (21, 224, 224) and p.slices.dtype == np.float32
    assert p.pixel_mm == pytest.approx((50 / 224, 50 / 224))
    # the lung box fills rows 67..156 of the 224 output (15/50 padding each side): lung HU,
    # windowed; the air padding above and below is exactly 0
    lung_val = (LUNG_HU + 1000) / 1400
    np.testing.assert_allclose(p.slices[1:, 80:140, 20:200], lung_val, atol=1e-6)
    assert np.all(p.slices[:, :60] == 0.0) and np.all(p.slices[:, 164:] == 0.0)
    assert p.masks["lung"][1:, 80:140].all() and not p.masks["lung"][:, :60].any()
    assert p.version == PREPROCESS_VERSION and p.lung_source == "given" and p.n_slices == 21


def test_window_maps_hu_linearly_and_clips():
    ct, lung = _box_phantom()
    hu = ct.hu.copy()
    hu[:, 20:30] = -2000.0  # below the window
    hu[:, 30:35] = -300.0  # middle of (-1000, 400)
    hu[:, 35:40] = 1500.0  # above the window
    p = preprocess_ct(CTVolume(hu, ct.spacing, ct.origin, ct.direction, patient_id="W"),
                      PreprocessConfig(aspect="stretch"), lung=lung)
    # stretch: box rows 20..40 -> 224 rows (11.2 output rows per input row)
    assert p.slices[:, 5:100].max() == 0.0
    np.testing.assert_allclose(p.slices[:, 125:160], 0.5, atol=1e-6)
    assert p.slices[:, 185:].min() == 1.0
    assert 0.0 <= p.slices.min() and p.slices.max() <= 1.0


def test_resampled_box_gives_computable_slices_and_box():
    # 1.5 x 0.5 x 0.5 mm -> 3 x 1 x 1 mm: new voxel j samples old 2j+0.5, so a lung over old
    # slices 10..29 / rows 40..79 / columns 30..129 covers new 5..14 / 20..39 / 15..64
    ct, lung = _box_phantom(spacing=(1.5, 0.5, 0.5), shape=(40, 128, 160), z=(10, 30), y=(40, 80), x=(30, 130))
    p = preprocess_ct(ct, lung=lung)
    assert p.resampled_shape == (20, 64, 80) and p.resampled_spacing == (3.0, 1.0, 1.0)
    np.testing.assert_array_equal(np.sort(p.slice_index), np.arange(5, 15))
    assert p.crop_box == (20, 40, 15, 65)
    # the same lung given on the resampled grid gives the same result
    q = preprocess_ct(ct, lung=resample_mask(lung, ct.spacing, (3, 1, 1)))
    np.testing.assert_array_equal(p.slices, q.slices)


def test_pad_keeps_a_circle_round_stretch_does_not():
    ct, lung = _box_phantom(y=(20, 50), x=(0, 80))  # box 30 x 80
    yy, xx = np.mgrid[:64, :80]
    disc = (yy - 35) ** 2 + (xx - 40) ** 2 <= 12**2
    gtv = np.zeros(ct.shape, bool)
    gtv[15:25] = disc
    extent = lambda m: (np.ptp(np.flatnonzero(m.any(1))) + 1, np.ptp(np.flatnonzero(m.any(0))) + 1)  # noqa: E731
    pad = preprocess_ct(ct, PreprocessConfig(aspect="pad"), lung=lung, extra_masks={"GTV": gtv})
    h, w = extent(pad.masks["GTV"][list(pad.slice_index).index(20)])
    assert abs(h - w) <= 2 and h == pytest.approx(25 * 224 / 80, abs=3)
    st = preprocess_ct(ct, PreprocessConfig(aspect="stretch"), lung=lung, extra_masks={"GTV": gtv})
    h, w = extent(st.masks["GTV"][list(st.slice_index).index(20)])
    assert h / w == pytest.approx(80 / 30, rel=0.1)
    assert pad.fingerprint != st.fingerprint


def test_errors_name_the_patient():
    ct, lung = _box_phantom(pid="P-empty")
    with pytest.raises(SegmentationError, match=r"patient P-empty: no slice has a lung area > 2\.0% of the slice"):
        preprocess_ct(ct, lung=np.zeros_like(lung))
    with pytest.raises(GeometryError, match=r"patient P-empty: mask 'lung' has shape \(3, 3, 3\)"):
        preprocess_ct(ct, lung=np.zeros((3, 3, 3), bool))
    sag = CTVolume(ct.hu, ct.spacing, ct.origin, direction=np.eye(3), patient_id="P-sag")
    with pytest.raises(GeometryError, match="patient P-sag: array axis 0 is not cranio-caudal"):
        preprocess_ct(sag, lung=lung)
    with pytest.raises(CtsurvError, match="reserved for the lung mask"):
        preprocess_ct(ct, lung=lung, extra_masks={"lung": lung})


@pytest.mark.parametrize(
    "kwargs, msg",
    [
        ({"interpolation": "cubic"}, "interpolation must be one of"),
        ({"aspect": "crop"}, "aspect must be one of"),
        ({"window": (400, -1000)}, "low < high"),
        ({"spacing": (3, 1, 0)}, "spacing must be three positive"),
        ({"min_lung_fraction": 1.5}, r"min_lung_fraction must be in \[0, 1\)"),
        ({"size": 3}, "size must be an integer >= 8"),
    ],
)
def test_config_validation(kwargs, msg):
    with pytest.raises(CtsurvError, match=msg):
        PreprocessConfig(**kwargs)


# ----------------------------------------------------------------------------- fingerprints, files


def test_fingerprint_changes_only_with_input_or_config():
    ct, lung = _box_phantom()
    a = preprocess_ct(ct, lung=lung)
    same = CTVolume(ct.hu.copy(), ct.spacing, ct.origin, ct.direction.copy(), patient_id="BOX", notes=("x",))
    assert fingerprint_ct(same) == fingerprint_ct(ct) == a.input_fingerprint
    assert preprocess_ct(same, lung=lung.copy()).fingerprint == a.fingerprint
    hu = ct.hu.copy()
    hu[0, 0, 0] += 1
    changed = {
        "voxel": preprocess_ct(CTVolume(hu, ct.spacing, ct.origin, ct.direction, patient_id="BOX"), lung=lung),
        "spacing": preprocess_ct(CTVolume(ct.hu, (3.0, 1.0, 1.01), ct.origin, ct.direction, patient_id="BOX"), lung=lung),
        "origin": preprocess_ct(CTVolume(ct.hu, ct.spacing, (0, 0, 0), ct.direction, patient_id="BOX"), lung=lung),
        "window": preprocess_ct(ct, PreprocessConfig(window=(-1000, 500)), lung=lung),
        "interp": preprocess_ct(ct, PreprocessConfig(interpolation="bspline"), lung=lung),
        "lung": preprocess_ct(ct, lung=np.roll(lung, 1, axis=2)),
        "extra": preprocess_ct(ct, lung=lung, extra_masks={"GTV": lung}),
    }
    fps = {k: v.fingerprint for k, v in changed.items()}
    assert a.fingerprint not in fps.values() and len(set(fps.values())) == len(fps)
    assert changed["voxel"].input_fingerprint != a.input_fingerprint


def test_save_load_round_trip(tmp_path):
    ct, lung = _box_phantom()
    gtv = np.zeros_like(lung)
    gtv[15:20, 25:30, 30:40] = True
    p = preprocess_ct(ct, lung=lung, extra_masks={"GTV-1/primary": gtv})
    path = p.save(tmp_path / "sub" / "BOX.npz")
    assert sorted(x.name for x in path.parent.iterdir()) == ["BOX.npz"]  # no temporary file left
    q = PreprocessedCT.load(path)
    for name in PreprocessedCT._ARRAYS:
        np.testing.assert_array_equal(getattr(q, name), getattr(p, name))
        assert getattr(q, name).dtype == getattr(p, name).dtype
    for name in PreprocessedCT._META:
        assert getattr(q, name) == getattr(p, name), name
    assert list(q.masks) == ["lung", "GTV-1/primary"]
    np.testing.assert_array_equal(q.masks["GTV-1/primary"], p.masks["GTV-1/primary"])
    assert q.masks["GTV-1/primary"].any()
    np.load(path, allow_pickle=False).close()
    bad = tmp_path / "bad.npz"
    np.savez(bad, slices=np.zeros(3))
    with pytest.raises(CtsurvError, match="not a readable ctsurv preprocessed CT"):
        PreprocessedCT.load(bad)


def test_fold_zscore_uses_training_pixels_only():
    rng = np.random.default_rng(1)
    train = [rng.normal(0.3, 0.1, (5, 8, 8)), rng.normal(0.5, 0.2, (3, 8, 8))]
    z = FoldZScore().fit(train)
    allpix = np.concatenate([t.ravel() for t in train])
    assert z.mean_ == pytest.approx(allpix.mean()) and z.std_ == pytest.approx(allpix.std())
    test = rng.normal(0.9, 0.1, (2, 8, 8))
    np.testing.assert_allclose(z.transform(test), (test - allpix.mean()) / allpix.std(), rtol=1e-5)
    with pytest.raises(CtsurvError, match="before fit"):
        FoldZScore().transform(test)
    with pytest.raises(CtsurvError, match="no training pixels"):
        FoldZScore().fit([])


# ----------------------------------------------------------------------------- integrations


def test_automatic_lung_mask_from_ctsurv_segment():
    from ctsurv import segment
    # chest phantom at 3 x 1 x 1 mm: air, a body ellipse (40 HU) and two lungs (-850 HU)
    nz, ny, nx = 40, 200, 260
    zz, yy, xx = np.mgrid[:nz, :ny, :nx]
    hu = np.full((nz, ny, nx), -1000.0, np.float32)
    hu[((yy - 100) / 90.0) ** 2 + ((xx - 130) / 120.0) ** 2 <= 1] = BODY_HU
    lung = np.zeros(hu.shape, bool)
    for cx in (85, 175):
        lung |= (((yy - 100) / 55.0) ** 2 + ((xx - cx) / 35.0) ** 2 + ((zz - 20) / 14.0) ** 2) <= 1
    hu[lung] = LUNG_HU
    ct = CTVolume(hu, (3.0, 1.0, 1.0), direction=AXIAL, patient_id="PHANTOM")
    auto = preprocess_ct(ct)
    ref = preprocess_ct(ct, lung=lung)
    assert auto.lung_source == "ctsurv.segment" and hasattr(segment, "lung_mask")
    kept_auto, kept_ref = set(auto.slice_index), set(ref.slice_index)
    assert len(kept_auto ^ kept_ref) <= 2
    assert np.abs(np.subtract(auto.crop_box, ref.crop_box)).max() <= 3


@pytest.mark.realdata
def test_lung1_001_with_reference_lungs(lung1_dir):
    from ctsurv import io

    folder = lung1_dir / "LUNG1-001"
    ct = io.read_ct(folder, patient_id="LUNG1-001")
    lung = io.read_rtstruct_mask(folder, ct, "Lung L") | io.read_rtstruct_mask(folder, ct, "Lung R")
    gtv = io.read_rtstruct_mask(folder, ct, "GTV-1")
    t0 = time.perf_counter()
    p = preprocess_ct(ct, lung=lung, extra_masks={"GTV-1": gtv})
    seconds = time.perf_counter() - t0
    # independent count: slices whose reference lung area > 2 % (3 mm slices are kept as they are)
    frac = lung.reshape(lung.shape[0], -1).mean(1)
    n_expected = int((frac > 0.02).sum())
    print(f"\nLUNG1-001: {p.n_slices} slices kept of {ct.shape[0]} (reference count {n_expected}), "
          f"crop box {p.crop_box}, {seconds:.2f} s")
    assert p.resampled_shape == (134, 500, 500)
    assert abs(p.n_slices - n_expected) <= 2
    assert np.all(np.diff(p.z_mm) < 0)  # most superior first
    assert p.masks["GTV-1"].any()  # the tumour lies in the kept slices
    h_mm = (p.crop_box[1] - p.crop_box[0]) * 1.0
    w_mm = (p.crop_box[3] - p.crop_box[2]) * 1.0
    assert 100 < h_mm < 350 and 200 < w_mm < 450  # an adult chest
    assert seconds < 10
