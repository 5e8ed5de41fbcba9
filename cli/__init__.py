"""The ``centroid-retrieval`` command line (serve, train, evaluate, export, enroll-folder)."""

from cli.main import build_parser, main

__all__ = ["build_parser", "main"]
