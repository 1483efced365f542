"""OpenAPI: the document of an app's routes, and the docs pages that show it.

Nothing here runs at registration or per request: the document is built on its
first request (or by ``python -m rawbg APP --openapi``) and kept.

* `settings`: the App's OpenAPI options (``title``, ``docs_url``, ...),
  ``app.openapi()``, and the routes of the docs pages.
* `document`: ``get_openapi``, from the routes' plans to the document.
* `fields`, `pydantic_schemas`, `own_schemas`: the JSON Schema of each value,
  by pydantic when it is installed, else by rawbg's own generator.
* `callbacks`: routes recorded by an `APIRouter` (callbacks, webhooks), described.
* `docs`: the HTML of Swagger UI, its OAuth2 redirect page and ReDoc.
* `assets`: the pages' scripts served by the app (``App(offline_docs=True)``).

The public face is `rawbg.openapi.utils` and `rawbg.openapi.docs`, FastAPI's paths.
"""
