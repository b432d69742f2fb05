"""Neighbouring Gray Tone Difference Matrix (NGTDM) voxel maps (not yet implemented)."""

from __future__ import annotations

import numpy as np

from ctsurv.radiomics.voxel._kernel import Kernels

#: PyRadiomics' non-deprecated ngtdm features, in its order
FEATURES: tuple[str, ...] = ('Busyness', 'Coarseness', 'Complexity', 'Contrast', 'Strength')
#: PyRadiomics' deprecated ngtdm features (computed only when named)
DEPRECATED: tuple[str, ...] = ()


def compute(k: Kernels, names, **settings) -> dict[str, np.ndarray]:
    """``{name: (n,) float64}`` for the ``n`` kernels of ``k``."""
    raise NotImplementedError("ngtdm voxel maps")
