"""The benchmark scripts (``python -m benchmarks.<name>`` from the repository root) and their results.

A regular package, not a namespace one: torchrl's wheel installs a top-level ``benchmarks`` namespace package
that would otherwise merge with this folder. Not part of the aeon_trl wheel.
"""
