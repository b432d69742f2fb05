"""Tumour-centred cubes (ctsurv.cubes) and foundation-model features (ctsurv.radiomics.foundation).

Cubes: a HU field linear in world position is reproduced exactly on the LPS-aligned grid of an
oblique-stored CT (flipped axis, anisotropic voxels); lesion centres are the component centroids,
largest first; RAS seed points are converted; the padded fraction has its closed form; bad input
is refused naming the patient. FM features: FMCIB's architecture with a weights file the test
writes (random, and named so) gives the same 4096 features as MONAI's network built directly;
missing and mismatching weights say what is wrong; ``extract_features`` runs them from DICOM +
RTSTRUCT and caches them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ctsurv.cubes import tumour_cubes, world_to_index
from ctsurv.exceptions import CtsurvError, ModelMismatchError, WeightsNotFoundError
from ctsurv.types import CTVolume

A, B = np.array([1.5, -2.0, 0.75]), 40.0  # HU = A . (x, y, z)_LPS + B


def _oblique_ct(shape=(40, 70, 80)) -> CTVolume:
    """A CT stored with its y axis running anterior (P decreasing), 2 x 0.9 x 0.8 mm voxels."""
    spacing = (2.0, 0.9, 0.8)
    direction = np.array([[0.0, 0.0, 1.0], [0.0, -1.0, 0.0], [1.0, 0.0, 0.0]])  # rows: z, y, x axes
    origin = (-30.0, 40.0, -20.0)
    z, y, x = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    idx = np.stack([z, y, x], -1).astype(float)
    world = np.asarray(origin) + idx @ (direction * np.asarray(spacing)[:, None])
    return CTVolume(hu=(world @ A + B).astype(np.float32), spacing=spacing, origin=origin,
                    direction=direction, patient_id="P7")


def test_linear_field_is_reproduced_on_the_lps_grid():
    ct = _oblique_ct()
    mask = np.zeros(ct.hu.shape, bool)
    mask[15:25, 25:45, 30:50] = True
    (cube,) = tumour_cubes(ct, mask, sizes_mm=(20.0,))
    assert cube.hu.shape == (20, 20, 20) and cube.outside_fraction == 0.0 and cube.source == "mask"
    assert cube.n_voxels == mask.sum() and cube.lesion == 0
    # the centre is the centroid of the box, in world coordinates
    centroid_idx = np.argwhere(mask).mean(0)
    np.testing.assert_allclose(world_to_index(ct, np.array(cube.centre_lps)), centroid_idx, atol=1e-9)
    off = np.arange(20) - 9.5
    z, y, x = np.meshgrid(off, off, off, indexing="ij")
    expect = (np.stack([x, y, z], -1) + np.array(cube.centre_lps)) @ A + B
    np.testing.assert_allclose(cube.hu, expect, atol=2e-3)
    # array axes (z, y, x) follow S, P, L: one step along x adds A_x mm-HU
    np.testing.assert_allclose(np.diff(cube.hu, axis=2), A[0], atol=2e-3)
    np.testing.assert_allclose(np.diff(cube.hu, axis=1), A[1], atol=2e-3)
    np.testing.assert_allclose(np.diff(cube.hu, axis=0), A[2], atol=2e-3)


def test_one_cube_per_lesion_largest_first_and_every_size():
    ct = _oblique_ct()
    mask = np.zeros(ct.hu.shape, bool)
    mask[5:9, 10:14, 10:14] = True  # 64 voxels
    mask[20:30, 40:50, 50:60] = True  # 1000 voxels, apart from the first
    cubes = tumour_cubes(ct, mask, sizes_mm=(10.0, 16.0))
    assert [(c.lesion, c.size_mm, c.hu.shape[0], c.n_voxels) for c in cubes] == [
        (0, 10.0, 10, 1000), (0, 16.0, 16, 1000), (1, 10.0, 10, 64), (1, 16.0, 16, 64)]
    np.testing.assert_allclose(world_to_index(ct, np.array(cubes[2].centre_lps)), [6.5, 11.5, 11.5], atol=1e-9)
    assert len(tumour_cubes(ct, mask, sizes_mm=(10.0,), min_voxels=100)) == 1


def test_seed_points_in_ras_and_the_padded_fraction():
    ct = CTVolume(hu=np.full((60, 60, 60), 100.0, np.float32), spacing=(1.0, 1.0, 1.0), patient_id="P8")
    (lps,) = tumour_cubes(ct, seed_points=[(10.5, 30.0, 30.0)], sizes_mm=(50.0,))
    (ras,) = tumour_cubes(ct, seed_points=[(-10.5, -30.0, 30.0)], coords="RAS", sizes_mm=(50.0,))
    np.testing.assert_array_equal(lps.hu, ras.hu)
    assert lps.centre_lps == ras.centre_lps == (10.5, 30.0, 30.0) and lps.n_voxels is None
    # x = 10.5 + (i - 24.5) = i - 14: columns i < 14 lie outside; y and z stay inside
    assert lps.outside_fraction == pytest.approx(14 / 50)
    assert (lps.hu[:, :, :14] == -1024.0).all() and (lps.hu[:, :, 14:] == 100.0).all()


def test_bad_cube_input_names_the_patient():
    ct = _oblique_ct()
    with pytest.raises(CtsurvError, match="patient P7: .*outside the CT volume"):
        tumour_cubes(ct, seed_points=[(0.0, 0.0, 500.0)])
    with pytest.raises(CtsurvError, match="patient P7: the region mask is empty"):
        tumour_cubes(ct, np.zeros(ct.hu.shape, bool))
    with pytest.raises(CtsurvError, match="patient P7: region mask has shape"):
        tumour_cubes(ct, np.ones((2, 2, 2), bool))
    with pytest.raises(CtsurvError, match="exactly one"):
        tumour_cubes(ct)
    with pytest.raises(CtsurvError, match="coords must be"):
        tumour_cubes(ct, seed_points=[(0, 0, 0)], coords="RAI")


# ----------------------------------------------------------------------------- FM features
def _monai_fmcib():
    from monai.networks.nets import resnet50

    return resnet50(spatial_dims=3, n_input_channels=1, widen_factor=2, conv1_t_stride=2,
                    feed_forward=False, bias_downsample=True, shortcut_type="B").eval()


@pytest.fixture(scope="module")
def random_fmcib_file(tmp_path_factory):
    """FMCIB's architecture with random weights, saved as the published checkpoint is laid out
    ({"trunk_state_dict": ...}); the file name says it is random."""
    torch.manual_seed(3)
    net = _monai_fmcib()
    path = tmp_path_factory.mktemp("weights") / "RANDOM-fmcib-weights-for-tests.torch"
    torch.save({"trunk_state_dict": net.state_dict()}, path)
    return path, net


def test_fmcib_features_equal_monai_network_with_the_same_weights(random_fmcib_file):
    from ctsurv.models3d import FMCIBResNet50, fmcib_scale
    from ctsurv.radiomics.foundation import fm_features, load_fm_encoder

    path, net = random_fmcib_file
    enc = load_fm_encoder(path)
    assert isinstance(enc, FMCIBResNet50) and enc.weights == str(path)
    ct = CTVolume(hu=np.random.default_rng(0).normal(0, 300, (60, 60, 60)).astype(np.float32),
                  spacing=(1.0, 1.0, 1.0), patient_id="P9")
    cubes = tumour_cubes(ct, seed_points=[(30.0, 30.0, 30.0), (25.0, 35.0, 28.0)], sizes_mm=(50.0,))
    got = fm_features(cubes, enc)
    assert got.shape == (2, 4096)
    with torch.no_grad():
        x = torch.from_numpy(np.stack([fmcib_scale(c.hu) for c in cubes])[:, None])
        expect = net(x).numpy()
    np.testing.assert_allclose(got, expect, rtol=1e-4, atol=1e-5)
    assert np.abs(got[0] - got[1]).max() > 1e-3  # different cubes, different features
    # FMCIB's scaling: [-1024, 3072] HU -> [0, 1], clipped
    np.testing.assert_allclose(fmcib_scale(np.array([-2000.0, -1024.0, 1024.0, 3072.0, 5000.0])),
                               [0.0, 0.0, 0.5, 1.0, 1.0])


def test_fmcib_weights_missing_or_mismatching_say_what_is_wrong(tmp_path):
    from ctsurv.models3d import FMCIBResNet50
    from ctsurv.radiomics.foundation import load_fm_encoder

    with pytest.raises(WeightsNotFoundError, match="never downloaded.*zenodo.org/records/10528450"):
        load_fm_encoder("fmcib")
    with pytest.raises(WeightsNotFoundError, match="not an existing file"):
        load_fm_encoder(tmp_path / "absent.torch")
    bad = tmp_path / "narrow.torch"  # a ResNet-50 without the widen factor: 64 stem filters
    torch.save({"trunk_state_dict": {"conv1.weight": torch.zeros(64, 1, 7, 7, 7)}}, bad)
    with pytest.raises(ModelMismatchError, match=r"first shape mismatch 'conv1.weight': file \(64, 1, 7, 7, 7\), "
                                                 r"network \(128, 1, 7, 7, 7\)"):
        load_fm_encoder(bad)
    # a Lightning checkpoint's names lose their model.backbone. prefix
    sd = {"state_dict": {"model.backbone.conv1.weight": torch.ones(1), "model.head.w": torch.ones(1)}}
    assert sorted(FMCIBResNet50._convert(None, sd)) == ["conv1.weight", "model.head.w"]


def test_radiomics_extract_runs_every_region_with_fm_features_and_caches_them(tmp_path, random_fmcib_file):
    """``ctsurv radiomics extract`` on DICOM + RTSTRUCT phantoms with nodes and coronary arteries:
    tumour texture, node texture, coronary calcium, FM features of the GTV's cube and of a seed
    point given in RAS at the GTV's centroid (the same cube, so the same features); a rerun is
    served from the cache."""
    from ctsurv.cli import main
    from ctsurv.cubes import tumour_cubes
    from ctsurv.io import read_ct, read_roi_mask
    from ctsurv.radiomics.foundation import fm_region_features, load_fm_encoder
    from ctsurv.synthetic import SurvivalModel, write_phantom_cohort

    pytest.importorskip("radiomics", reason="the texture regions come from PyRadiomics")
    path, _ = random_fmcib_file
    write_phantom_cohort(tmp_path / "c", n_patients=2, seed=4, model=SurvivalModel(regions=True))
    images = tmp_path / "c" / "images"
    pids = sorted(p.name for p in images.iterdir())
    seeds = []
    for pid in pids:
        ct = read_ct(images / pid)
        x, y, z = tumour_cubes(ct, read_roi_mask(images / pid, ct, "GTV-1"), sizes_mm=(50.0,))[0].centre_lps
        seeds.append({"patient_id": pid, "x": -x, "y": -y, "z": z, "space": "RAS"})
    pd.DataFrame(seeds[:1]).to_csv(tmp_path / "seeds.csv", index=False)  # the second patient has none
    out = tmp_path / "all.csv"
    argv = ["radiomics", "extract", str(images), str(out), "--region", "GTV-1", "--region", "Lymph nodes",
            "--calcium-region", "Coronary arteries", "--fm-region", "GTV-1", "--fm-weights", str(path),
            "--fm-seeds", str(tmp_path / "seeds.csv")]
    main(argv)
    df = pd.read_csv(out, dtype={"patient_id": str}).set_index("patient_id")
    fm = [c for c in df.columns if c.startswith("GTV-1:fm_")]
    assert len(fm) == 4096 and fm[0] == "GTV-1:fm_0000" and fm[-1] == "GTV-1:fm_4095"
    assert df.filter(like="GTV-1:glcm_").shape[1] > 10 and df.filter(like="Lymph nodes:shape_").shape[1] > 10
    assert df["Coronary arteries:cac_agatston"].notna().all()
    seed_cols = [c.replace("GTV-1:", "seed:") for c in fm]
    np.testing.assert_allclose(df.loc[pids[0], seed_cols].to_numpy(float), df.loc[pids[0], fm].to_numpy(float),
                               rtol=1e-5, atol=1e-6)
    assert df.loc[pids[1], seed_cols].isna().all()
    manifest = pd.read_csv(tmp_path / "all.manifest.csv", dtype={"patient_id": str})
    assert manifest[manifest.region == "GTV-1"].reason.fillna("").str.contains("1 lesion").sum() == 2
    miss = manifest[(manifest.patient_id == pids[1]) & (manifest.region == "seed")].iloc[0]
    assert miss.status == "failed" and "no seed point" in miss.reason
    ct = read_ct(images / pids[0])
    direct, _ = fm_region_features(ct, read_roi_mask(images / pids[0], ct, "GTV-1"), load_fm_encoder(path))
    np.testing.assert_allclose(df.loc[pids[0], fm].to_numpy(float), list(direct.values()), rtol=1e-5, atol=1e-6)
    main(argv)
    again = pd.read_csv(tmp_path / "all.manifest.csv")
    assert set(again.status) == {"cached", "failed"}
    pd.testing.assert_frame_equal(pd.read_csv(out, dtype={"patient_id": str}).set_index("patient_id"), df)
