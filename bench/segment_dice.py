"""Dice of ctsurv's built-in lung mask against the clinical RTSTRUCT lungs of real LUNG1 patients.

Reference = union of the ROIs "Lung L" and "Lung R" read by ``ctsurv.io.read_roi_mask`` (from the
RTSTRUCT, or from a DICOM SEG where the patient folder has no RTSTRUCT holding them; names by synonym).
Prints a table (patient, Dice, volumes in mL, seconds) and writes
``bench/results/segment_dice.json``.

Usage::

    python bench/segment_dice.py [--data /work/shared/data/lung1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from ctsurv.io import read_ct, read_roi_mask
from ctsurv.segment import dice, lung_mask

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = Path(os.environ.get("CTSURV_SHARED_DATA", HERE.parents[1] / "shared" / "data")) / "lung1"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--repeats", type=int, default=3, help="timing repeats (the minimum is kept)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "segment_dice.json")
    args = ap.parse_args()

    rows = []
    for folder in sorted(p for p in args.data.iterdir() if p.is_dir()):
        pid = folder.name
        ct = read_ct(folder, patient_id=pid)
        ref = read_roi_mask(folder, ct, "Lung L") | read_roi_mask(folder, ct, "Lung R")
        gtv = read_roi_mask(folder, ct, "GTV-1")
        times = []
        for _ in range(max(1, args.repeats)):
            t0 = time.perf_counter()
            mask = lung_mask(ct)
            times.append(time.perf_counter() - t0)
        ml = float(np.prod(ct.spacing)) / 1000.0
        rows.append(
            {
                "patient": pid,
                "shape": list(ct.shape),
                "dice": round(dice(mask, ref), 4),
                "volume_ours_ml": round(float(mask.sum()) * ml, 1),
                "volume_ref_ml": round(float(ref.sum()) * ml, 1),
                "gtv_fraction_in_ours": round(float((mask & gtv).sum() / gtv.sum()), 3),
                "gtv_fraction_in_ref": round(float((ref & gtv).sum() / gtv.sum()), 3),
                "seconds_min": round(min(times), 3),
                "seconds_all": [round(t, 3) for t in times],
            }
        )

    print(f"{'patient':<11} {'Dice':>7} {'ours mL':>9} {'ref mL':>9} {'GTV in ours':>12} {'seconds':>8}")
    for r in rows:
        print(f"{r['patient']:<11} {r['dice']:>7.4f} {r['volume_ours_ml']:>9.1f} {r['volume_ref_ml']:>9.1f} "
              f"{r['gtv_fraction_in_ours']:>12.3f} {r['seconds_min']:>8.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "method": "threshold (ctsurv.segment.lung_mask defaults)",
        "reference": "RTSTRUCT or SEG 'Lung L' | 'Lung R' via ctsurv.io.read_roi_mask",
        "machine": platform.platform(),
        "rows": rows,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
