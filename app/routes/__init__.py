"""The service's routers, built from settings (limits appear in the OpenAPI docs)."""

from app.routes.health import health_router
from app.routes.items import items_router
from app.routes.search import search_router

__all__ = ["health_router", "items_router", "search_router"]
