"""Concurrency and a full disk (issue 20 item 4): two processes sharing one prepared cohort and one
trunk cache never see or leave a torn artifact, and a full disk (ENOSPC, simulated where the
bytes reach the disk) stops ``prepare`` with a clear error naming the file, leaves nothing partial,
and a rerun completes to the same artifacts as an uninterrupted run."""

from __future__ import annotations

import errno
import multiprocessing as mp
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ctsurv.exceptions import DiskFullError


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from ctsurv.synthetic import write_phantom_cohort

    root = tmp_path_factory.mktemp("cohort")
    write_phantom_cohort(root, n_patients=3, seed=8)
    return root


def _artifacts(prepared: Path) -> dict[str, tuple[str, np.ndarray]]:
    from ctsurv.preprocess import PreprocessedCT

    out = {}
    for f in sorted((prepared / "patients").glob("*.npz")):
        if f.name.count(".") == 1:  # the main artifact, not a voxel-map or tumour-slice sidecar
            pre = PreprocessedCT.load(f)
            out[f.stem] = (pre.fingerprint, pre.slices)
    return out


def _no_temporaries(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*.tmp")]


def test_a_full_disk_stops_prepare_with_the_reason_and_a_rerun_completes(cohort, tmp_path, monkeypatch):
    import ctsurv._util as util
    from ctsurv.prepare import prepare_cohort

    reference = prepare_cohort(cohort / "images", cohort / "clinical.csv", tmp_path / "ref", workers=1,
                               progress=False)
    calls = {"n": 0}
    real_fsync = os.fsync

    def fsync(fd):  # the fifth write finds the disk full
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(util.os, "fsync", fsync)
    out = tmp_path / "full"
    with pytest.raises(DiskFullError, match=r"no space left on the device writing .*\(No space left on device\); "
                                            "nothing partial was kept"):
        prepare_cohort(cohort / "images", cohort / "clinical.csv", out, workers=1, progress=False)
    assert not _no_temporaries(out)
    written = _artifacts(out)  # what was written before the disk filled is whole
    finished = [pid for pid in written if (out / "patients" / f"{pid}.json").exists()]
    assert 0 < len(finished) < 3
    monkeypatch.setattr(util.os, "fsync", real_fsync)
    again = prepare_cohort(cohort / "images", cohort / "clinical.csv", out, workers=1, progress=False)
    assert (again.status == "ok").all() and (again.set_index("patient_id").loc[finished, "seconds"] == 0).all()
    ref, got = _artifacts(tmp_path / "ref"), _artifacts(out)
    assert sorted(ref) == sorted(got) == sorted(reference.patient_id)
    for pid in ref:
        assert ref[pid][0] == got[pid][0]
        np.testing.assert_array_equal(ref[pid][1], got[pid][1])


def test_the_cli_reports_a_full_disk_without_a_traceback(cohort, tmp_path):
    code = ("import errno, os, sys; import ctsurv._util as u; real = os.fsync\n"
            "def full(fd): raise OSError(errno.ENOSPC, 'No space left on device')\n"
            "u.os.fsync = full\n"
            "from ctsurv.cli import main\n"
            f"sys.exit(main(['prepare', '--images', {str(cohort / 'images')!r}, '--clinical', "
            f"{str(cohort / 'clinical.csv')!r}, '--out', {str(tmp_path / 'p')!r}, '--workers', '1', '--no-progress']))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    assert "no space left on the device writing" in res.stderr and "Traceback" not in res.stderr


def test_two_processes_preparing_one_cohort_leave_whole_artifacts(cohort, tmp_path):
    from ctsurv.prepare import prepare_cohort

    out = tmp_path / "shared"
    cmd = [sys.executable, "-m", "ctsurv.cli", "prepare", "--images", str(cohort / "images"), "--clinical",
           str(cohort / "clinical.csv"), "--out", str(out), "--workers", "1", "--no-progress"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [r[1][-2000:] for r in results]
    assert not _no_temporaries(out)
    ref = prepare_cohort(cohort / "images", cohort / "clinical.csv", tmp_path / "ref", workers=1, progress=False)
    want, got = _artifacts(tmp_path / "ref"), _artifacts(out)
    assert sorted(got) == sorted(want) == sorted(ref.patient_id)
    for pid in want:
        assert want[pid][0] == got[pid][0]
        np.testing.assert_array_equal(want[pid][1], got[pid][1])
    # a third run reuses what the two wrote
    third = prepare_cohort(cohort / "images", cohort / "clinical.csv", out, workers=1, progress=False)
    assert (third.seconds == 0).all()


def _hammer_cache(root: str, seed: int, n: int, queue) -> None:
    """Write and read one cache entry ``n`` times; report any array that is neither absent nor whole."""
    from ctsurv.embed.cache import TrunkCache

    cache = TrunkCache(root)
    parts = {"preprocess": "p", "backbone": "b", "slices": "s"}
    value = np.full((64, 1280), float(seed), np.float32)
    torn = 0
    for i in range(n):
        if i % 2 == seed % 2:
            cache.save(parts, value)
        got = cache.load(parts, (64, 1280))
        if got is not None and not (np.all(got == got.flat[0]) and got.flat[0] in (1.0, 2.0)):
            torn += 1
    queue.put(torn)


def test_two_processes_sharing_a_trunk_cache_never_read_a_torn_entry(tmp_path):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_hammer_cache, args=(str(tmp_path), s, 150, queue)) for s in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0, 0]
    assert [queue.get(timeout=10), queue.get(timeout=10)] == [0, 0]
    assert not _no_temporaries(tmp_path)
