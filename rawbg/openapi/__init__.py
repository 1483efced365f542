"""OpenAPI under FastAPI's module names: `rawbg.openapi.utils` and `rawbg.openapi.docs`.

``from fastapi.openapi.utils import get_openapi`` becomes
``from rawbg.openapi.utils import get_openapi``. The code lives in
`rawbg.app.openapi`.
"""
