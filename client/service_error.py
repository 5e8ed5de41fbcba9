"""An answer from the service that a client run cannot continue after."""

from __future__ import annotations

import httpx

from client.problem_detail import problem_detail


class ServiceError(RuntimeError):
    """The service answered something other than success or a refused file."""

    @classmethod
    def for_response(cls, response: httpx.Response, what: str) -> ServiceError:
        return cls(f"{what}: HTTP {response.status_code}: {problem_detail(response)}")
