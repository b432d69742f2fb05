"""Synthetic chest-CT phantoms and a phantom cohort with a known survival signal.

The phantom cohort is ctsurv's embedded default (``ctsurv demo``) and the test bed of every
stage: real DICOM (CT series + RTSTRUCT) with a LUNG1-format clinical table, small enough that
the whole pipeline runs on 2 CPU cores, carrying a *planted* survival signal whose truth
(``truth.csv``) is written beside it for tests. The pipeline never reads ``truth.csv``.

Modules (each imports only the ones before it):

- :mod:`~ctsurv.synthetic.survival`: the Weibull proportional-hazards model of the signal
  (:class:`SurvivalModel`), hazard-only cohorts (:func:`simulate_survival`) and the oracle
  C-index.
- :mod:`~ctsurv.synthetic.phantom`: the chest anatomy, tumour placement and HU volume
  (:class:`PhantomParams`, :func:`make_phantom`).
- :mod:`~ctsurv.synthetic.cohort`: a whole cohort on disk (:func:`write_phantom_cohort`).
"""

from ctsurv.exceptions import PhantomError
from ctsurv.synthetic.cohort import (
    DAYS_PER_MONTH,
    LUNG1_COLUMNS,
    SCANNERS,
    CohortInfo,
    _place_patient,
    _t_stage,
    scanner_params,
    write_phantom_cohort,
)
from ctsurv.synthetic.phantom import PhantomInfo, PhantomParams, make_phantom
from ctsurv.synthetic.survival import (
    TRUTH_COLUMNS,
    SurvivalModel,
    harrell_cindex,
    oracle_cindex,
    simulate_survival,
)

__all__ = [
    "PhantomError", "PhantomParams", "PhantomInfo", "SurvivalModel", "CohortInfo", "make_phantom",
    "simulate_survival", "oracle_cindex", "harrell_cindex", "write_phantom_cohort", "LUNG1_COLUMNS",
    "TRUTH_COLUMNS", "SCANNERS", "scanner_params",
]
