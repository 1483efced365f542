"""``get_openapi``: the OpenAPI document of routes, for a custom ``app.openapi`` (FastAPI's)."""

from rawbg.app.openapi.document import get_openapi

__all__ = ["get_openapi"]
