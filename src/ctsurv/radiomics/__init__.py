"""Radiomics and clinical survival track (seed 003; voxel feature maps of seed 002).

masks -> features (PyRadiomics, IBSI settings) -> harmonise (ComBat fit on training rows; RKN)
-> select (near-zero variance, correlation, stability selection, PCA) -> elastic-net Cox tuned
with Optuna in inner CV -> ensembles / consensus / SHAP. Every fitted step sees only the
training rows of its fold.
"""

from ctsurv.radiomics.calcium import (CAC_CATEGORIES, CalciumScore, agatston_score, cac_category,
                                      calcium_covariates)
from ctsurv.radiomics.harmonize import ComBat, rkn_bands, rkn_normalize, rkn_reference
from ctsurv.radiomics.models import ClinicalEncoder, CoxNet, linear_shap, rank_normalize, shap_summary_plot
from ctsurv.radiomics.select import PCA, CorrelationFilter, NearZeroVariance, StabilitySelector, Standardizer
from ctsurv.radiomics.track import (FoldPipeline, TrackConfig, consensus_classification, ensemble_runs, fit_cv,
                                    load_clinical, load_features)


def extract_features(*args, **kwargs):
    """See :func:`ctsurv.radiomics.features.extract_features` (imports PyRadiomics lazily)."""
    from ctsurv.radiomics.features import extract_features as _extract

    return _extract(*args, **kwargs)


def voxel_maps(*args, **kwargs):
    """See :func:`ctsurv.radiomics.voxel.voxel_maps` (seed 002's voxel-level feature maps)."""
    from ctsurv.radiomics.voxel import voxel_maps as _maps

    return _maps(*args, **kwargs)


__all__ = ["CAC_CATEGORIES", "CalciumScore", "agatston_score", "cac_category", "calcium_covariates",
           "ComBat", "rkn_bands", "rkn_normalize", "rkn_reference", "ClinicalEncoder", "CoxNet", "linear_shap",
           "rank_normalize", "shap_summary_plot", "PCA", "CorrelationFilter", "NearZeroVariance",
           "StabilitySelector", "Standardizer", "FoldPipeline", "TrackConfig", "consensus_classification",
           "ensemble_runs", "fit_cv", "load_clinical", "load_features", "extract_features", "voxel_maps"]
