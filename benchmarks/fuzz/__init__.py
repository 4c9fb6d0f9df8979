"""The fuzz harness (issue 15): hypothesis strategies for hostile specs, expressions and
numeric parameters (``strategies``), a guard that runs one example under a time limit and
sorts its outcome (``outcomes``), and ``python -m benchmarks.fuzz`` for the full run with a
table of outcomes. ``tests/fuzz`` runs a small fixed-seed sample in CI."""
