"""One seed, separate random streams: every random choice of a run derives from ``RunConfig.seed``.

Each use draws from its own stream, ``SeedSequence([seed, TAG, stream id, *index])``:

================  =========================================================================
``folds``         outer fold assignment and inner validation split of repeat ``r``
``labels``        the label permutation of ``permute_labels`` (the honesty control)
``null``          the label permutation of null replica ``j`` (``cv.null_replicas``)
``models``        the seed of the model of (repeat ``r``, fold ``k``[, null replica ``j``])
``holdout``       the validation hold-out of a final model (``ctsurv fit``, the estimators)
``table1``        the Monte Carlo Fisher-Freeman-Halton tests of ``ctsurv table1``
``voxel_screen``  the inner 5-fold split of the voxel-map screen of outer fold ``k``
================  =========================================================================

A model's seed is split again by :func:`model_streams` into its initialisation (torch), batch
order and augmentation draws (numpy) and dropout masks (:class:`ctsurv.dropout.MaskStream`), so
no two of them share a generator state. The entropy ``[seed, TAG, ...]`` differs from
``SeedSequence(seed)`` and all its children, which the phantom generator
(:mod:`ctsurv.synthetic`) uses per patient: a demo seeding both with the same number gets
independent phantoms and folds.
"""

from __future__ import annotations

import numpy as np

__all__ = ["STREAMS", "stream", "rng", "int_seed", "model_streams"]

#: tag mixed into every stream's entropy ("ctsv")
TAG = 0x63747376
STREAMS = {"folds": 1, "labels": 2, "null": 3, "models": 4, "holdout": 5, "table1": 6,
           "voxel_screen": 7}
_MODEL_PARTS = {"init": 0, "batches": 1, "dropout": 2}


def stream(seed: int, name: str, *index: int) -> np.random.SeedSequence:
    """The ``SeedSequence`` of stream ``name`` (see the module table) and ``index``."""
    if name not in STREAMS:
        raise KeyError(f"unknown random stream {name!r}; known: {sorted(STREAMS)}")
    return np.random.SeedSequence([int(seed), TAG, STREAMS[name], *(int(i) for i in index)])


def rng(seed: int, name: str, *index: int) -> np.random.Generator:
    """A numpy generator on stream ``name``."""
    return np.random.default_rng(stream(seed, name, *index))


def int_seed(seed: int, name: str, *index: int) -> int:
    """A 32-bit integer seed drawn from stream ``name`` (e.g. a model's seed)."""
    return int(stream(seed, name, *index).generate_state(1)[0])


def model_streams(model_seed: int) -> dict[str, int]:
    """``{"init", "batches", "dropout"}`` integer seeds of one model, from its seed."""
    return {part: int(np.random.SeedSequence([int(model_seed), TAG, 100 + i]).generate_state(1)[0])
            for part, i in _MODEL_PARTS.items()}
