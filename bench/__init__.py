"""Measurement tools: benchmarks, load tests and service evaluation, each run as
``python -m bench.<tool>``."""
