"""The middleware of FastAPI's advanced-middleware chapter, over a real socket."""

import gzip

from rawbg import App, PlainTextResponse
from rawbg.middleware.gzip import GZipMiddleware
from rawbg.middleware.httpsredirect import HTTPSRedirectMiddleware
from rawbg.middleware.trustedhost import TrustedHostMiddleware
from rawbg.testing import serve_app


def hello_app() -> App:
    app = App()

    @app.get("/")
    async def main():
        return {"message": "Hello World"}

    @app.get("/large")
    async def large():
        return PlainTextResponse("x" * 4000)

    return app


async def test_https_redirect_sends_plain_http_to_the_same_url_over_https():
    app = hello_app()
    app.add_middleware(HTTPSRedirectMiddleware)
    async with serve_app(app) as client:
        response = await client.get("/large?x=1", headers={"host": "example.com:80"})
        assert (response.status_code, response.headers["location"]) == (
            307,
            "https://example.com/large?x=1",
        )
        response = await client.get("/", headers={"host": "example.com:8080"})
        assert response.headers["location"] == "https://example.com:8080/"


async def test_trusted_host_allows_listed_names_and_subdomains_and_refuses_others():
    app = hello_app()
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=["example.com", "*.example.com"])
    async with serve_app(app) as client:
        for host in ("example.com", "api.example.com:8000"):
            assert (await client.get("/", headers={"host": host})).status_code == 200, host
        response = await client.get("/", headers={"host": "invalidhost"})
        assert (response.status_code, response.text) == (400, "Invalid host header")
        response = await client.get("/", headers={"host": "evilexample.com"})
        assert response.status_code == 400


async def test_trusted_host_redirects_to_www_when_only_www_is_allowed():
    app = hello_app()
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=["www.example.com"])
    async with serve_app(app) as client:
        response = await client.get("/?a=b", headers={"host": "example.com"})
    assert (response.status_code, response.headers["location"]) == (
        307,
        "http://www.example.com/?a=b",
    )


async def test_gzip_compresses_large_bodies_for_clients_that_accept_it():
    app = hello_app()
    app.add_middleware(GZipMiddleware, minimum_size=1000, compresslevel=5)
    async with serve_app(app) as client:
        response = await client.get("/large", headers={"accept-encoding": "gzip, br"})
        assert response.headers["content-encoding"] == "gzip"
        assert response.headers["vary"] == "Accept-Encoding"
        assert int(response.headers["content-length"]) == len(response.body) < 4000
        assert gzip.decompress(response.body) == b"x" * 4000
        response = await client.get("/large")
        assert "content-encoding" not in response.headers
        assert response.body == b"x" * 4000
        response = await client.get("/", headers={"accept-encoding": "gzip"})
        assert "content-encoding" not in response.headers  # under minimum_size
