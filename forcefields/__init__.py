"""Drop-in OpenMM ForceField XML files of hybridff (shipped as package data)."""
