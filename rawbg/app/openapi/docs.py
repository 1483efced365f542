"""The HTML of the docs pages: Swagger UI (``/docs``), its OAuth2 redirect page, ReDoc (``/redoc``).

Each page is a small HTML document that loads the viewer's JavaScript and points
it at the OpenAPI document's URL; the browser does the rest. By default the
scripts come from the jsDelivr CDN, at the URLs FastAPI uses; with the
``docs-offline`` extra the app serves them itself (`rawbg.app.openapi.assets`).
The function names and arguments are FastAPI's (``fastapi.openapi.docs``), so
custom docs pages written for FastAPI work unchanged.

Swagger UI's configuration is written as one JSON value per line inside the
``SwaggerUIBundle({...})`` call; every value is JSON-encoded with ``<``, ``>``
and ``&`` escaped, so that no parameter can close the ``<script>`` element.
"""

from __future__ import annotations

import html
import json
from typing import Any

from rawbg.encoders import jsonable_encoder
from rawbg.responses import HTMLResponse

SWAGGER_JS_URL = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"
SWAGGER_CSS_URL = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css"
REDOC_JS_URL = "https://cdn.jsdelivr.net/npm/redoc@2/bundles/redoc.standalone.js"
FAVICON_URL = "https://fastapi.tiangolo.com/img/favicon.png"
REDOC_FONTS_URL = (
    "https://fonts.googleapis.com/css?family=Montserrat:300,400,700|Roboto:300,400,700"
)

#: Swagger UI's options unless ``swagger_ui_parameters`` says otherwise (FastAPI's)
swagger_ui_default_parameters: dict[str, Any] = {
    "dom_id": "#swagger-ui",
    "layout": "BaseLayout",
    "deepLinking": True,
    "showExtensions": True,
    "showCommonExtensions": True,
}


def script_json(value: Any) -> str:
    """`value` as JSON that is safe inside a ``<script>`` element."""
    text = json.dumps(jsonable_encoder(value))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def get_swagger_ui_html(
    *,
    openapi_url: str,
    title: str,
    swagger_js_url: str = SWAGGER_JS_URL,
    swagger_css_url: str = SWAGGER_CSS_URL,
    swagger_favicon_url: str = FAVICON_URL,
    oauth2_redirect_url: str | None = None,
    init_oauth: dict[str, Any] | None = None,
    swagger_ui_parameters: dict[str, Any] | None = None,
) -> HTMLResponse:
    """The Swagger UI page that shows the document at `openapi_url`."""
    parameters = {**swagger_ui_default_parameters, **(swagger_ui_parameters or {})}
    options = [f"url: {script_json(openapi_url)},"]
    options += [f"{script_json(key)}: {script_json(value)}," for key, value in parameters.items()]
    if oauth2_redirect_url:
        redirect = script_json(oauth2_redirect_url)
        options.append(f"oauth2RedirectUrl: window.location.origin + {redirect},")
    options += [
        "presets: [",
        "    SwaggerUIBundle.presets.apis,",
        "    SwaggerUIBundle.SwaggerUIStandalonePreset",
        "],",
    ]
    script = "const ui = SwaggerUIBundle({\n    " + "\n    ".join(options) + "\n})\n"
    if init_oauth:
        script += f"ui.initOAuth({script_json(init_oauth)})\n"
    page = f"""<!DOCTYPE html>
<html>
<head>
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link type="text/css" rel="stylesheet" href="{html.escape(swagger_css_url)}">
<link rel="shortcut icon" href="{html.escape(swagger_favicon_url)}">
<title>{html.escape(title)}</title>
</head>
<body>
<div id="swagger-ui"></div>
<script src="{html.escape(swagger_js_url)}"></script>
<script>
{script}</script>
</body>
</html>
"""
    return HTMLResponse(page)


def get_redoc_html(
    *,
    openapi_url: str,
    title: str,
    redoc_js_url: str = REDOC_JS_URL,
    redoc_favicon_url: str = FAVICON_URL,
    with_google_fonts: bool = True,
) -> HTMLResponse:
    """The ReDoc page that shows the document at `openapi_url`."""
    fonts = f'<link href="{REDOC_FONTS_URL}" rel="stylesheet">\n' if with_google_fonts else ""
    page = f"""<!DOCTYPE html>
<html>
<head>
<title>{html.escape(title)}</title>
<meta charset="utf-8"/>
<meta name="viewport" content="width=device-width, initial-scale=1">
{fonts}<link rel="shortcut icon" href="{html.escape(redoc_favicon_url)}">
<style>
  body {{ margin: 0; padding: 0; }}
</style>
</head>
<body>
<noscript>ReDoc needs JavaScript to show this API's documentation.</noscript>
<redoc spec-url="{html.escape(openapi_url)}"></redoc>
<script src="{html.escape(redoc_js_url)}"></script>
</body>
</html>
"""
    return HTMLResponse(page)


# The page an OAuth2 provider sends the browser back to, in the pop-up Swagger UI
# opened for "Authorize". Swagger UI leaves its state on the opener as
# `swaggerUIRedirectOauth2` (state, redirectUrl, auth, callback, errCb); the page
# reads the answer from the URL (the fragment for the implicit flow, the query
# for the code flows), checks the state, hands the answer back and closes.
_OAUTH2_REDIRECT_SCRIPT = """
"use strict";
function answerFromUrl() {
    var raw = /code|token|error/.test(window.location.hash)
        ? window.location.hash.substring(1)
        : window.location.search.substring(1);
    var answer = {};
    new URLSearchParams(raw.replace("?", "&")).forEach(function (value, key) {
        answer[key] = value;
    });
    return answer;
}
function handBack() {
    var oauth2 = window.opener.swaggerUIRedirectOauth2;
    var answer = answerFromUrl();
    var stateMatches = answer.state === oauth2.state;
    var flow = oauth2.auth.schema.get("flow");
    var codeFlow = ["accessCode", "authorizationCode", "authorization_code"].indexOf(flow) >= 0;
    if (codeFlow && !oauth2.auth.code) {
        if (!stateMatches) {
            oauth2.errCb({
                authId: oauth2.auth.name, source: "auth", level: "warning",
                message: "The state returned by the authorization server differs " +
                    "from the one sent; the authorization may be unsafe."
            });
        }
        if (answer.code) {
            delete oauth2.state;
            oauth2.auth.code = answer.code;
            oauth2.callback({auth: oauth2.auth, redirectUrl: oauth2.redirectUrl});
        } else {
            var why = answer.error
                ? "[" + answer.error + "]: " + (answer.error_description || "no code received") +
                  (answer.error_uri ? " (" + answer.error_uri + ")" : "")
                : "[Authorization failed]: no code received from the authorization server.";
            oauth2.errCb({authId: oauth2.auth.name, source: "auth", level: "error", message: why});
        }
    } else {
        oauth2.callback({
            auth: oauth2.auth, token: answer, isValid: stateMatches, redirectUrl: oauth2.redirectUrl
        });
    }
    window.close();
}
if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", handBack);
} else {
    handBack();
}
"""


def get_swagger_ui_oauth2_redirect_html() -> HTMLResponse:
    """The page an OAuth2 provider redirects to from Swagger UI's "Authorize" pop-up."""
    page = (
        '<!doctype html>\n<html lang="en-US">\n<head>\n'
        "<title>Swagger UI: OAuth2 Redirect</title>\n</head>\n<body>\n"
        f"<script>{_OAUTH2_REDIRECT_SCRIPT}</script>\n</body>\n</html>\n"
    )
    return HTMLResponse(page)
