"""One self-contained HTML report per run or study folder (``ctsurv report FOLDER --out report.html``).

The report reads a run folder as :func:`ctsurv.pipeline.run_cv` writes it and shows, in order:
the headline (mean per-fold Ctd with its interval over folds, the pooled Ctd as secondary,
repeats, the permutation null, the linear probe and learning warnings); the cohort and its
manifest (counts by status, every entry that is not ``ok`` with its reason); a per-fold table;
calibration (raw and recalibrated, per horizon); the figures (KM by risk group with numbers at
risk, t-AUC over time, calibration, decision curve, attention by relative slice position, Ctd
per fold); and the resolved configuration, software versions and data fingerprints.

Data and rendering are separate: :func:`run_report_data` returns plain data (tables as
DataFrames, numbers, figure PNG bytes) and :func:`render_run_report` turns it into HTML;
:func:`write_run_report` does both and writes the file atomically.

The HTML file stands alone: CSS inline, figures as ``data:image/png;base64`` images, no
script, font or link to anything else; every string from the run folder is escaped. Figures
come from the run's ``figures/`` when there; missing ones are drawn with :mod:`ctsurv.plots`
from the run files (t-AUC and decision curve with
:func:`ctsurv.evaluate.evaluate_predictions` into a temporary folder). A missing optional file
(``attention.csv`` of a 3D run, ``manifest.csv``, ``folds.csv``, the probe of an older run)
gives a section saying so; a folder without ``metrics.json`` or ``predictions.csv`` is an
error.

A study folder (``study.yaml``, of :func:`ctsurv.study.run_study`) gets a study report
(:func:`study_report_data`, :func:`render_study_report`): comparison.csv, each configuration's
status (finished, failed with its error, not finished, not run) and headline.

Modules: :mod:`ctsurv.report.run` (run folders), :mod:`ctsurv.report.study` (study folders),
:mod:`ctsurv.report.html` (the CSS, escaping, tables and page frame every report uses, the
per-patient pages of :mod:`ctsurv.patient_report` included).
"""

from __future__ import annotations

from pathlib import Path

from ctsurv._util import atomic_write_text
from ctsurv.report.run import FIGURES, PNG_SIGNATURE, REQUIRED_FILES, render_run_report, run_report_data
from ctsurv.report.study import render_study_report, study_report_data

__all__ = ["run_report_data", "render_run_report", "write_run_report", "study_report_data",
           "render_study_report", "REQUIRED_FILES", "PNG_SIGNATURE", "FIGURES"]


def write_run_report(run_dir: str | Path, out_html: str | Path, **kwargs) -> Path:
    """Write the report of ``run_dir`` to ``out_html`` atomically; returns the path. A folder with
    study.yaml gets the study report, any other the run report (``kwargs``: :func:`run_report_data`)."""
    if (Path(run_dir) / "study.yaml").is_file():
        return atomic_write_text(out_html, render_study_report(study_report_data(run_dir, **kwargs)))
    return atomic_write_text(out_html, render_run_report(run_report_data(run_dir, **kwargs)))
