"""Seed 003's regions from any provided mask (issue 18 item 3): mediastinal nodes and coronary
arteries found under their clinical synonyms in an RTSTRUCT, or in label images; a user's synonym
file extends the packaged groups (and a conflict is refused); a region a patient lacks is a
recorded failure with the patient kept in the table, never a dropped row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ctsurv.exceptions import RoiError
from ctsurv.io import canonical_roi_name, roi_synonyms

pytest.importorskip("radiomics", reason="extract_features keys its cache by the PyRadiomics version")


def _patient(folder, pid: str, rois: dict, seed: int):
    from ctsurv.io import write_ct_series, write_rtstruct

    rng = np.random.default_rng(seed)
    hu = rng.normal(30.0, 20.0, (6, 40, 40)).astype(np.float32)
    hu[:, 28:34, 28:34] += 300.0  # calcified plaque inside the coronary ROI
    write_ct_series(hu, (3.0, 1.0, 1.0), folder / "ct", pid, uid_seed=seed)
    write_rtstruct(rois, folder / "ct", folder / "rtstruct.dcm", uid_seed=seed)
    return hu


def test_packaged_synonyms_name_nodes_and_coronaries():
    assert canonical_roi_name("GTVn") == canonical_roi_name("Mediastinal lymph nodes") == "Lymph nodes"
    assert canonical_roi_name("coronaries") == canonical_roi_name("Coronary_Artery") == "Coronary arteries"
    assert "GTV-N" in roi_synonyms()["Lymph nodes"]


def test_nodes_and_coronaries_from_rtstruct_synonyms_and_a_missing_region_is_recorded(tmp_path):
    from ctsurv.radiomics import extract_features

    nodes = np.zeros((6, 40, 40), bool)
    nodes[1:5, 8:16, 8:16] = True
    coronary = np.zeros((6, 40, 40), bool)
    coronary[:, 26:36, 26:36] = True
    _patient(tmp_path / "images" / "P1", "P1", {"GTV-N": nodes, "CoronaryArteries": coronary}, 1)
    _patient(tmp_path / "images" / "P2", "P2", {"CoronaryArteries": coronary}, 2)  # no nodes contoured
    out = tmp_path / "regions.csv"
    df = extract_features(tmp_path / "images", out, regions=("Lymph nodes",),
                          calcium_regions=("Coronary arteries",)).set_index("patient_id")
    assert list(df.index) == ["P1", "P2"]  # P2 stays in the table
    assert df.loc["P1", "Lymph nodes:shape_VoxelVolume"] == pytest.approx(nodes.sum() * 3.0, rel=0.05)
    assert np.isnan(df.loc["P2", "Lymph nodes:shape_VoxelVolume"])
    assert (df["Coronary arteries:cac_agatston"] > 0).all()
    manifest = pd.read_csv(tmp_path / "regions.manifest.csv")
    row = manifest[(manifest.patient_id == "P2") & (manifest.region == "Lymph nodes")].iloc[0]
    assert row.status == "failed" and "patient P2: ROI 'Lymph nodes' not found" in row.reason
    assert "CoronaryArteries" in row.reason  # the message lists the ROIs the patient has


def test_regions_from_label_images(tmp_path):
    import SimpleITK as sitk

    from ctsurv.io import read_ct
    from ctsurv.io import to_sitk
    from ctsurv.radiomics import extract_features

    nodes = np.zeros((6, 40, 40), bool)
    nodes[1:5, 8:16, 8:16] = True
    _patient(tmp_path / "images" / "P1", "P1", {"GTV-N": nodes}, 1)
    ct = read_ct(tmp_path / "images" / "P1")
    img = to_sitk(nodes.astype(np.uint8), ct)
    (tmp_path / "labels" / "P1").mkdir(parents=True)
    sitk.WriteImage(img, str(tmp_path / "labels" / "P1" / "mediastinal nodes.nii.gz"))
    from_rt = extract_features(tmp_path / "images", tmp_path / "a.csv", regions=("Lymph nodes",))
    from_label = extract_features(tmp_path / "images", tmp_path / "b.csv", regions=("Lymph nodes",),
                                  labels=tmp_path / "labels")
    pd.testing.assert_frame_equal(from_rt, from_label)


def test_a_user_synonym_file_extends_the_groups_and_refuses_conflicts(tmp_path, monkeypatch):
    from ctsurv.io.seg import SYNONYMS_ENV, synonyms_fingerprint

    user = tmp_path / "synonyms.yaml"
    user.write_text("Lymph nodes:\n  - Stations 4R 7\nPrimary tumor:\n  - Index lesion\n")
    monkeypatch.setenv(SYNONYMS_ENV, str(user))
    assert canonical_roi_name("stations 4r 7") == "Lymph nodes"
    assert canonical_roi_name("Index lesion") == "GTV-1"  # a group named by an alias joins GTV-1
    assert canonical_roi_name("GTVn") == "Lymph nodes"  # the packaged aliases stay
    first = synonyms_fingerprint()
    assert len(first) == 64
    user.write_text("Lymph nodes:\n  - Heart\n")  # Heart is a packaged group of its own
    with pytest.raises(RoiError, match="'Heart' is listed under both 'Heart' and 'Lymph nodes'"):
        canonical_roi_name("x")
    assert synonyms_fingerprint() != first
    monkeypatch.delenv(SYNONYMS_ENV)
    assert canonical_roi_name("stations 4r 7") is None and synonyms_fingerprint() == ""
