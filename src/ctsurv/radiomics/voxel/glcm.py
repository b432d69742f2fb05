"""Gray Level Co-occurrence Matrix (GLCM) voxel maps (not yet implemented)."""

from __future__ import annotations

import numpy as np

from ctsurv.radiomics.voxel._kernel import Kernels

#: PyRadiomics' non-deprecated glcm features, in its order
FEATURES: tuple[str, ...] = ('Autocorrelation', 'ClusterProminence', 'ClusterShade', 'ClusterTendency', 'Contrast', 'Correlation', 'DifferenceAverage', 'DifferenceEntropy', 'DifferenceVariance', 'Id', 'Idm', 'Idmn', 'Idn', 'Imc1', 'Imc2', 'InverseVariance', 'JointAverage', 'JointEnergy', 'JointEntropy', 'MCC', 'MaximumProbability', 'SumAverage', 'SumEntropy', 'SumSquares')
#: PyRadiomics' deprecated glcm features (computed only when named)
DEPRECATED: tuple[str, ...] = ('Dissimilarity', 'Homogeneity1', 'Homogeneity2', 'SumVariance')


def compute(k: Kernels, names, **settings) -> dict[str, np.ndarray]:
    """``{name: (n,) float64}`` for the ``n`` kernels of ``k``."""
    raise NotImplementedError("glcm voxel maps")
