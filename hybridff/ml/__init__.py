"""The learned local correction E_ML: descriptors, model, model file, OpenMM backends.

- :mod:`hybridff.ml.descriptors`: element-aware radial/angular symmetry functions
- :mod:`hybridff.ml.model`: per-element networks and the K-member ensemble
- :mod:`hybridff.ml.painn`: the equivariant message-passing alternative (``--architecture painn``)
- :mod:`hybridff.ml.modelfile`: one TorchScript file with its metadata
- :mod:`hybridff.ml.backend`: :func:`~hybridff.ml.backend.add_ml_correction` (TorchForce or
  PythonForce)

Submodules import torch; this package itself does not.
"""
