"""Benchmarks, kept outside the package: ``python -m benchmarks.bench critical|...``."""
