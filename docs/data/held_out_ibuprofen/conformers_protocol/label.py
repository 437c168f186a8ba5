"""The training frames of the issue's protocol: 30 other ETKDG conformers of ibuprofen (seed 5;
the test set's 10 are seed 4), MM-relaxed, 10 frames each displaced by 0.06 Angstrom per
coordinate, GFN2-xTB. Run from this folder: python label.py"""
from hybridff.training.workflow import label

label("CC(C)Cc1ccc(cc1)C(C)C(=O)O", "train.xyz", 300, "xtb", sampler="conformers",
      sampler_options={"n_conformers": 30}, seed=5, temperature=500.0)
