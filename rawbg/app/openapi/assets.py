"""The docs pages with no network: Swagger UI's and ReDoc's files, served by the app.

By default ``/docs`` and ``/redoc`` load their scripts from a CDN, as FastAPI's
do, and show a blank page without one. ``App(offline_docs=True)`` serves them
from the ``docs-offline`` extra instead (``pip install 'rawbg[docs-offline]'``),
which installs `fastapi-offline`_, a package made to carry exactly these files
(``swagger-ui-bundle.js``, ``swagger-ui.css``, ``redoc.standalone.js``,
``favicon.png``). rawbg reads the files from where that package is installed; it
never imports it (importing it would import FastAPI). The pages then point at
``/docs-assets/<file>`` (under the root path), and those routes answer with the
file, cached by the browser for a day.

.. _fastapi-offline: https://pypi.org/project/fastapi-offline/
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from rawbg.errors import HTTPException
from rawbg.responses import FileResponse, Response

ASSETS_PATH = "/docs-assets/"
EXTRA_HINT = "pip install 'rawbg[docs-offline]'"
#: the package that carries the files, and the folder they are in
PACKAGE, FOLDER = "fastapi_offline", "static"
FILES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
#: a day: the files change only with the package
CACHE_CONTROL = "public, max-age=86400"


def find_assets() -> dict[str, str]:
    """Each file's path; `RuntimeError` naming the extra when it is not installed."""
    spec = importlib.util.find_spec(PACKAGE)  # finds the package without running it
    locations = list(spec.submodule_search_locations or ()) if spec is not None else []
    for location in locations:
        folder = Path(location) / FOLDER
        found = {name: str(folder / name) for name in FILES if (folder / name).is_file()}
        if len(found) == len(FILES):
            return found
    raise RuntimeError(
        f"App(offline_docs=True) serves Swagger UI and ReDoc from the docs-offline extra, "
        f"which is not installed (or lacks {', '.join(FILES)}): {EXTRA_HINT}"
    )


def asset_urls(root_path: str) -> dict[str, str]:
    """The pages' keyword arguments that point them at the app's own files."""
    base = root_path + ASSETS_PATH
    return {
        "swagger_js_url": base + "swagger-ui-bundle.js",
        "swagger_css_url": base + "swagger-ui.css",
        "swagger_favicon_url": base + "favicon.png",
        "redoc_js_url": base + "redoc.standalone.js",
        "redoc_favicon_url": base + "favicon.png",
    }


def serve_asset(assets: dict[str, str], name: str) -> Response:
    """The file `name`, or a 404 for any other name."""
    path = assets.get(name)
    if path is None:
        raise HTTPException(404, "Not Found")
    return FileResponse(path, media_type=FILES[name], headers={"cache-control": CACHE_CONTROL})
