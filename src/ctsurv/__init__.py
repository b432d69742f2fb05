"""ctsurv: overall-survival prediction for NSCLC from pretreatment CT.

Layers
------
Each module imports only modules of its own or a lower layer (function-local and
``if TYPE_CHECKING`` imports included), and imports within one layer form no cycle (a
package's ``__init__`` importing its submodules is fine; a submodule importing names from its
own package's ``__init__`` is an edge back to it). The map is data in
:data:`ctsurv._layers.LAYERS` and ``tests/test_layers.py`` enforces it, together with at most
800 lines per module::

    L0  exceptions  types (CTVolume, TimeGrid, PatientFeatures)  _util (atomic writes, hashes)
        _checks (the survival-input check)  config (run configuration dataclasses; imports only
        exceptions and types)  _layers (this map)  seeds (random streams)  executor (local processes or Ray)
        ctsurv (this package: __version__)
    L1  io/  discover (image entries -> patients)  segment  preprocess  cohort  validate  metrics/  stats/
        synthetic/  dropout  radiomics.voxel/  tumour_input  cubes (tumour-centred 1 mm cubes)
    L2  embed/ (backbones -> engine -> cache <- augment)  models  models3d  ssm  tumour_net  train  train_batched  plots
        complexity  prepare  evaluate  radiomics.{features, foundation, calcium, harmonize, select, models}
    L3  build (the registry of model kinds)  estimators (scikit-learn-style estimators)
        transfer (transfer learning's sources, checks and frozen parts)
    L4  pipeline  study  transfer_study  predict  demo  report  radiomics.track  radiomics (its __init__ re-exports track)
    L5  cli  (__main__ if one is added)

A new module has no layer until it is added to :data:`ctsurv._layers.LAYERS`, and the test
fails naming it.
"""

__version__ = "0.1.0"
