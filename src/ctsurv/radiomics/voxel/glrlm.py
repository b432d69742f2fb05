"""Gray Level Run Length Matrix (GLRLM) voxel maps (not yet implemented)."""

from __future__ import annotations

import numpy as np

from ctsurv.radiomics.voxel._kernel import Kernels

#: PyRadiomics' non-deprecated glrlm features, in its order
FEATURES: tuple[str, ...] = ('GrayLevelNonUniformity', 'GrayLevelNonUniformityNormalized', 'GrayLevelVariance', 'HighGrayLevelRunEmphasis', 'LongRunEmphasis', 'LongRunHighGrayLevelEmphasis', 'LongRunLowGrayLevelEmphasis', 'LowGrayLevelRunEmphasis', 'RunEntropy', 'RunLengthNonUniformity', 'RunLengthNonUniformityNormalized', 'RunPercentage', 'RunVariance', 'ShortRunEmphasis', 'ShortRunHighGrayLevelEmphasis', 'ShortRunLowGrayLevelEmphasis')
#: PyRadiomics' deprecated glrlm features (computed only when named)
DEPRECATED: tuple[str, ...] = ()


def compute(k: Kernels, names, **settings) -> dict[str, np.ndarray]:
    """``{name: (n,) float64}`` for the ``n`` kernels of ``k``."""
    raise NotImplementedError("glrlm voxel maps")
