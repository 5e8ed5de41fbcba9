"""The service's routers, built from settings (limits appear in the OpenAPI docs)."""

from app.routes.admin import admin_router
from app.routes.health import health_router
from app.routes.image_quarantine import image_quarantine_router
from app.routes.images import images_router
from app.routes.items import items_router
from app.routes.migration import migration_router
from app.routes.neighbours import neighbours_router
from app.routes.quality import quality_router
from app.routes.search import search_router
from app.routes.suspects import suspects_router

__all__ = [
    "admin_router",
    "health_router",
    "image_quarantine_router",
    "images_router",
    "items_router",
    "migration_router",
    "neighbours_router",
    "quality_router",
    "search_router",
    "suspects_router",
]
