"""The learned local correction E_ML: descriptors, model, model file, OpenMM backends.

- :mod:`hybridff.ml.descriptors`: element-aware radial/angular symmetry functions
- :mod:`hybridff.ml.model`: per-element networks and the K-member ensemble
- :mod:`hybridff.ml.analytic`: the ensemble's inference form with hand-derived forces (MD)
- :mod:`hybridff.ml.painn`: the equivariant message-passing alternative (``--architecture painn``)
- :mod:`hybridff.ml.modelfile`: one TorchScript file with its metadata
- :mod:`hybridff.ml.backend`: :func:`~hybridff.ml.backend.add_ml_correction` (TorchForce or
  PythonForce)

Submodules import torch; this package itself does not.
"""

#: Floating-point precisions the correction's network can run in during MD (OpenMM-ML's names)
PRECISIONS = ("single", "double")
#: The default: float32, like the forces of OpenMM's CPU platform and of its mixed-precision
#: GPU runs (the energy's constant shift stays float64); ``"double"`` runs the stored model
DEFAULT_PRECISION = "single"
#: What runs recorded before the precision was an option ran in (their run.json has no entry)
RECORDED_BEFORE_PRECISION = "double"
