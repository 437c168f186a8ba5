"""Inputs and outputs: molecules read and validated (:mod:`hybridff.io.molecule`, with the file
formats in :mod:`hybridff.io.formats` and the checks in :mod:`hybridff.io.validation`) and
labelled frames on disk (:mod:`hybridff.io.frames`, extxyz, checked against their molecule by
:mod:`hybridff.io.frame_checks`); atomic file writes and JSON-lines records
(:mod:`hybridff.io.files`)."""
