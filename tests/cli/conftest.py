"""Fixtures the command-line tests share with the client's tests."""

from tests.client.conftest import service

__all__ = ["service"]
