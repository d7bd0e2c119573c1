"""Benchmarks of studio-al against small-text and a real Label Studio (see README.md).

The scripts run from the repository root as ``.venv/bin/python benchmarks/<script>.py``;
what they share is in :mod:`benchmarks._common`.
"""
