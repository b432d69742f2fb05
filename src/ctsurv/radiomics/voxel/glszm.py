"""Gray Level Size Zone Matrix (GLSZM) voxel maps (not yet implemented)."""

from __future__ import annotations

import numpy as np

from ctsurv.radiomics.voxel._kernel import Kernels

#: PyRadiomics' non-deprecated glszm features, in its order
FEATURES: tuple[str, ...] = ('GrayLevelNonUniformity', 'GrayLevelNonUniformityNormalized', 'GrayLevelVariance', 'HighGrayLevelZoneEmphasis', 'LargeAreaEmphasis', 'LargeAreaHighGrayLevelEmphasis', 'LargeAreaLowGrayLevelEmphasis', 'LowGrayLevelZoneEmphasis', 'SizeZoneNonUniformity', 'SizeZoneNonUniformityNormalized', 'SmallAreaEmphasis', 'SmallAreaHighGrayLevelEmphasis', 'SmallAreaLowGrayLevelEmphasis', 'ZoneEntropy', 'ZonePercentage', 'ZoneVariance')
#: PyRadiomics' deprecated glszm features (computed only when named)
DEPRECATED: tuple[str, ...] = ()


def compute(k: Kernels, names, **settings) -> dict[str, np.ndarray]:
    """``{name: (n,) float64}`` for the ``n`` kernels of ``k``."""
    raise NotImplementedError("glszm voxel maps")
