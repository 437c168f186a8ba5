"""Inputs and outputs: molecules read and validated (:mod:`hybridff.io.molecule`, with the file
formats in :mod:`hybridff.io.formats` and the checks in :mod:`hybridff.io.validation`)."""
