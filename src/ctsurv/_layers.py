"""The layer map of ctsurv as data (quoted in the :mod:`ctsurv` docstring, enforced by
``tests/test_layers.py``). This module is L0 and imports nothing.

A module may import only modules of its own or a lower layer (function-local and
``if TYPE_CHECKING`` imports included), and imports within one layer must form no cycle.

Each key of :data:`LAYERS` is a dotted module name. It covers that module and, when it is a
package, every module inside it, unless a longer key covers that module more closely
(``ctsurv.radiomics.track`` is L4 although ``ctsurv.radiomics.features`` is L2). The keys in
:data:`EXACT` cover only the module named (the root package, and ``ctsurv.radiomics``
whose ``__init__`` re-exports the L4 ``track`` while its other submodules are L2), so a new
module under them has no layer until it is given one.
"""

LAYERS: dict[str, int] = {
    # L0: leaves. Errors, typed containers, helpers, the run configuration.
    "ctsurv": 0,  # the root package: ``__version__`` only
    "ctsurv._layers": 0,
    "ctsurv.exceptions": 0,
    "ctsurv.types": 0,  # CTVolume, TimeGrid, PatientFeatures
    "ctsurv._util": 0,  # atomic writes, hashes
    "ctsurv._checks": 0,  # the survival-input check
    "ctsurv._browser": 0,  # headless Chromium for report screenshots and the browser test
    "ctsurv.config": 0,  # run configuration dataclasses (imports only exceptions/types)
    "ctsurv.seeds": 0,  # one seed, separate random streams
    "ctsurv.executor": 0,  # where per-patient tasks run: local processes or Ray
    # L1: reading, image processing, cohorts, metrics, statistics, synthetic data.
    "ctsurv.io": 1,
    "ctsurv.discover": 1,  # which image entries are which patient's (headers only)
    "ctsurv.segment": 1,
    "ctsurv.preprocess": 1,
    "ctsurv.cohort": 1,
    "ctsurv.validate": 1,
    "ctsurv.duplicates": 1,  # the same images under two patient IDs
    "ctsurv.metrics": 1,
    "ctsurv.stats": 1,
    "ctsurv.synthetic": 1,
    "ctsurv.dropout": 1,  # dropout masks from a seeded stream (torch only)
    "ctsurv.figstyle": 1,  # the one figure style: palette, rcParams, labels, formats
    "ctsurv.radiomics.voxel": 1,  # vectorised voxel-level radiomics maps (numpy only)
    "ctsurv.tumour_input": 1,
    "ctsurv.cubes": 1,  # tumour-centred 1 mm cubes (seed 003's FM input)  # seed 002's tumour-centred slices with map channels
    # L2: embeddings, networks, training, plots, preparation, evaluation, radiomics parts.
    "ctsurv.embed": 2,
    "ctsurv.models": 2,
    "ctsurv.models3d": 2,
    "ctsurv.ssm": 2,  # state-space (Mamba / Vision Mamba) encoder, plain PyTorch
    "ctsurv.tumour_net": 2,  # seed 002's slice network: standardise, augment, Vision-Mamba
    "ctsurv.train": 2,
    "ctsurv.train_batched": 2,  # every fold at once (imports train)
    "ctsurv.plots": 2,
    "ctsurv.complexity": 2,
    "ctsurv.prepare": 2,
    "ctsurv.evaluate": 2,
    "ctsurv.probe": 2,  # the in-fold linear probe beside every deep model
    "ctsurv.explain": 2,  # Grad-CAM of the risk on the slice kinds' trunk maps
    "ctsurv.radiomics.features": 2,
    "ctsurv.radiomics.calcium": 2,
    "ctsurv.radiomics.foundation": 2,  # FM features of tumour cubes (imports models3d)
    "ctsurv.radiomics.harmonize": 2,
    "ctsurv.radiomics.select": 2,
    "ctsurv.radiomics.models": 2,
    # L3: the registry of model kinds and the scikit-learn-style estimators.
    "ctsurv.build": 3,
    "ctsurv.estimators": 3,
    "ctsurv.transfer": 3,  # transfer learning's sources, checks and frozen parts
    # L4: runs, studies, prediction, the radiomics track.
    "ctsurv.pipeline": 4,
    "ctsurv.study": 4,
    "ctsurv.predict": 4,
    "ctsurv.demo": 4,  # the demo's configuration and summary.json
    "ctsurv.transfer_study": 4,  # seed 000's Table 6: repeated scratch vs transfer runs
    "ctsurv.report": 4,  # the self-contained HTML report of a run folder
    "ctsurv.patient_report": 4,  # per-patient pages of ctsurv predict (uses report's HTML parts)
    "ctsurv.radiomics.track": 4,
    "ctsurv.radiomics": 4,  # the package __init__ re-exports track
    # L5: the command line.
    "ctsurv.cli": 5,
    "ctsurv.__main__": 5,
}

#: keys of :data:`LAYERS` that cover only the module named, not the modules inside it
EXACT: frozenset[str] = frozenset({"ctsurv", "ctsurv.radiomics"})

#: the most lines a module may have before it becomes a subpackage
MAX_LINES = 800


def layer_of(module: str, layers: dict[str, int] | None = None,
             exact: frozenset[str] | None = None) -> int | None:
    """The layer of a dotted module name, or None if no key covers it."""
    layers = LAYERS if layers is None else layers
    exact = EXACT if exact is None else exact
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in layers and (n == len(parts) or key not in exact):
            return layers[key]
    return None
