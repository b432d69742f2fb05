"""Voxel maps as artifacts of ``ctsurv prepare`` (issue 15 item 6): computed once per patient
on the native CT inside the tumour region, equal to :func:`voxel_maps` on the same inputs, and
reused (not recomputed) by a second prepare."""

from __future__ import annotations

import numpy as np
import pytest

from ctsurv.exceptions import CtsurvError


def test_prepare_writes_and_reuses_voxel_maps(tmp_path):
    from ctsurv.io import read_ct, read_roi_mask
    from ctsurv.prepare import prepare_cohort, voxel_maps_path
    from ctsurv.radiomics.voxel import voxel_maps
    from ctsurv.radiomics.voxel.cache import load_maps
    from ctsurv.synthetic import write_phantom_cohort

    write_phantom_cohort(tmp_path / "c", n_patients=2, seed=5)
    images, out = tmp_path / "c" / "images", tmp_path / "prep"
    settings = {"features": ["firstorder_Mean", "firstorder_Entropy"], "kernel_radius": 1}
    with pytest.raises(CtsurvError, match="give tumour_roi"):
        prepare_cohort(images, tmp_path / "c" / "clinical.csv", out, voxel_maps=settings, workers=1)
    man = prepare_cohort(images, tmp_path / "c" / "clinical.csv", out, tumour_roi="GTV-1",
                         voxel_maps=settings, workers=1, progress=False)
    assert (man.status == "ok").sum() == 2
    pid = man.patient_id.iloc[0]
    path = voxel_maps_path(out, pid)
    vm = load_maps(path)
    ct = read_ct(images / pid)
    mask = read_roi_mask(images / pid, ct, "GTV-1")
    direct, names = voxel_maps(ct, mask, **settings)
    assert vm.names == tuple(names)
    np.testing.assert_array_equal(vm.full(), direct)
    mtime = path.stat().st_mtime_ns
    again = prepare_cohort(images, tmp_path / "c" / "clinical.csv", out, tumour_roi="GTV-1",
                           voxel_maps=settings, workers=1, progress=False)
    assert (again.seconds == 0).all() and path.stat().st_mtime_ns == mtime
    # the command line: 'ctsurv prepare --voxel-maps' with another bin width recomputes
    from ctsurv.cli import main

    main(["prepare", "--images", str(images), "--clinical", str(tmp_path / "c" / "clinical.csv"), "--out", str(out),
          "--workers", "1", "--tumour-roi", "GTV-1", "--voxel-maps", "firstorder_Mean,firstorder_Entropy",
          "--voxel-bin-width", "10", "--no-progress"])
    assert path.stat().st_mtime_ns != mtime and load_maps(path).settings["bin_width"] == 10.0
