"""Gray Level Dependence Matrix (GLDM) voxel maps (not yet implemented)."""

from __future__ import annotations

import numpy as np

from ctsurv.radiomics.voxel._kernel import Kernels

#: PyRadiomics' non-deprecated gldm features, in its order
FEATURES: tuple[str, ...] = ('DependenceEntropy', 'DependenceNonUniformity', 'DependenceNonUniformityNormalized', 'DependenceVariance', 'GrayLevelNonUniformity', 'GrayLevelVariance', 'HighGrayLevelEmphasis', 'LargeDependenceEmphasis', 'LargeDependenceHighGrayLevelEmphasis', 'LargeDependenceLowGrayLevelEmphasis', 'LowGrayLevelEmphasis', 'SmallDependenceEmphasis', 'SmallDependenceHighGrayLevelEmphasis', 'SmallDependenceLowGrayLevelEmphasis')
#: PyRadiomics' deprecated gldm features (computed only when named)
DEPRECATED: tuple[str, ...] = ('DependencePercentage', 'GrayLevelNonUniformityNormalized')


def compute(k: Kernels, names, **settings) -> dict[str, np.ndarray]:
    """``{name: (n,) float64}`` for the ``n`` kernels of ``k``."""
    raise NotImplementedError("gldm voxel maps")
