"""CORSMiddleware over a real socket: preflight answers and labelled simple responses."""

import asyncio

from rawbg import App
from rawbg.middleware.cors import CORSMiddleware
from rawbg.testing import serve_app

ORIGIN = "https://front.example"


def cors_app(calls: list[str] | None = None, **options) -> App:
    app = App()

    @app.get("/")
    async def main():
        if calls is not None:
            calls.append("handler")
        return {"message": "Hello World"}

    app.add_middleware(CORSMiddleware, **options)
    return app


def preflight(method: str = "GET", headers: str | None = None, origin: str = ORIGIN):
    fields = {"origin": origin, "access-control-request-method": method}
    if headers is not None:
        fields["access-control-request-headers"] = headers
    return fields


async def test_fastapis_tutorial_preflight_simple_and_non_cors_requests():
    calls: list[str] = []
    app = cors_app(
        calls,
        allow_origins=[ORIGIN, "http://localhost"],
        allow_credentials=True,
        allow_methods=["*"],
        allow_headers=["*"],
    )
    async with serve_app(app) as client:
        response = await client.request("OPTIONS", "/", headers=preflight(headers="X-Example"))
        assert (response.status_code, response.text) == (200, "OK")
        assert response.headers["access-control-allow-origin"] == ORIGIN
        assert response.headers["access-control-allow-headers"] == "X-Example"
        assert response.headers["access-control-allow-credentials"] == "true"
        assert "PATCH" in response.headers["access-control-allow-methods"]
        assert calls == []  # a preflight is answered by the middleware, never routed

        response = await client.get("/", headers={"origin": ORIGIN})
        assert response.json() == {"message": "Hello World"}
        assert response.headers["access-control-allow-origin"] == ORIGIN
        assert response.headers["vary"] == "Origin"

        response = await client.get("/")
        assert response.json() == {"message": "Hello World"}
        assert "access-control-allow-origin" not in response.headers


async def test_a_preflight_names_everything_it_refuses_with_400():
    app = cors_app(allow_origins=[ORIGIN], allow_methods=["GET"], allow_headers=["X-Token"])
    async with serve_app(app) as client:
        response = await client.request(
            "OPTIONS", "/", headers=preflight("PUT", "X-Other", origin="https://evil.example")
        )
        assert (response.status_code, response.text) == (
            400,
            "Disallowed CORS origin, method, headers",
        )
        assert "access-control-allow-origin" not in response.headers
        response = await client.request("OPTIONS", "/", headers=preflight("GET", "x-token"))
        assert response.status_code == 200
        assert response.headers["access-control-allow-headers"] == (
            "Accept, Accept-Language, Content-Language, Content-Type, X-Token"
        )
        assert response.headers["access-control-max-age"] == "600"
        assert response.headers["vary"].startswith("Origin, Access-Control-Request-Method")


async def test_an_origin_regex_and_the_wildcard_with_and_without_credentials():
    app = cors_app(allow_origin_regex=r"https://.*\.example\.org", expose_headers=["X-Total"])
    async with serve_app(app) as client:
        response = await client.get("/", headers={"origin": "https://a.example.org"})
        assert response.headers["access-control-allow-origin"] == "https://a.example.org"
        assert response.headers["access-control-expose-headers"] == "X-Total"
        response = await client.get("/", headers={"origin": "https://a.example.org.evil"})
        assert "access-control-allow-origin" not in response.headers
        assert response.headers["vary"] == "Origin"

    async with serve_app(cors_app(allow_origins=["*"])) as client:
        response = await client.get("/", headers={"origin": ORIGIN})
        assert response.headers["access-control-allow-origin"] == "*"
        response = await client.request("OPTIONS", "/", headers=preflight())
        assert response.headers["access-control-allow-origin"] == "*"

    async with serve_app(cors_app(allow_origins=["*"], allow_credentials=True)) as client:
        response = await client.get("/", headers={"origin": ORIGIN})
        assert response.headers["access-control-allow-origin"] == ORIGIN
        response = await client.request("OPTIONS", "/", headers=preflight())
        assert response.headers["access-control-allow-origin"] == ORIGIN


async def test_an_options_request_without_a_requested_method_is_routed_as_usual():
    calls: list[str] = []
    async with serve_app(cors_app(calls, allow_origins=[ORIGIN])) as client:
        response = await client.request("OPTIONS", "/", headers={"origin": ORIGIN})
    assert response.status_code == 405  # no OPTIONS route: not a preflight, so the app answers
    assert response.headers["access-control-allow-origin"] == ORIGIN


# Starlette 1.10's CORSMiddleware gives the answers below: rawbg matches them.


async def test_allow_methods_star_allows_query_as_starlette_does():
    async with serve_app(cors_app(allow_origins=[ORIGIN], allow_methods=["*"])) as client:
        response = await client.request("OPTIONS", "/", headers=preflight("QUERY"))
    assert (response.status_code, response.text) == (200, "OK")
    assert response.headers["access-control-allow-methods"] == (
        "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT, QUERY"
    )


async def test_a_preflight_varies_with_the_private_network_request_and_refuses_it_unless_allowed():
    asks_private = {**preflight(), "access-control-request-private-network": "true"}
    async with serve_app(cors_app(allow_origins=[ORIGIN])) as client:
        response = await client.request("OPTIONS", "/", headers=preflight())
        assert response.headers["vary"] == (
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers, "
            "Access-Control-Request-Private-Network"
        )
        response = await client.request("OPTIONS", "/", headers=asks_private)
        assert (response.status_code, response.text) == (400, "Disallowed CORS private-network")
        assert "access-control-allow-private-network" not in response.headers
    async with serve_app(cors_app(allow_origins=[ORIGIN], allow_private_network=True)) as client:
        response = await client.request("OPTIONS", "/", headers=asks_private)
    assert (response.status_code, response.text) == (200, "OK")
    assert response.headers["access-control-allow-private-network"] == "true"


async def test_a_response_to_a_request_without_origin_varies_with_origin():
    async with serve_app(cors_app(allow_origins=[ORIGIN])) as client:
        response = await client.get("/")
    assert response.json() == {"message": "Hello World"}
    assert response.headers["vary"] == "Origin"
    assert "access-control-allow-origin" not in response.headers


async def test_the_cors_header_names_go_out_in_lower_case_as_starlettes():
    app = cors_app(allow_origins=[ORIGIN], allow_credentials=True, expose_headers=["X-Total"])
    async with serve_app(app) as client:
        assert client.port is not None
        heads = []
        for request in (
            b"OPTIONS / HTTP/1.1\r\nhost: x\r\norigin: " + ORIGIN.encode() + b"\r\n"
            b"access-control-request-method: GET\r\nconnection: close\r\n\r\n",
            b"GET / HTTP/1.1\r\nhost: x\r\norigin: " + ORIGIN.encode() + b"\r\n"
            b"connection: close\r\n\r\n",
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
            writer.write(request)
            heads.append((await reader.read()).partition(b"\r\n\r\n")[0])
            writer.close()
            await writer.wait_closed()
    names = [{line.partition(b":")[0] for line in head.split(b"\r\n")[1:]} for head in heads]
    assert {b"access-control-allow-origin", b"access-control-allow-methods", b"vary"} <= names[0]
    assert {b"access-control-allow-origin", b"access-control-expose-headers", b"vary"} <= names[1]
    assert not [
        name
        for name in names[0] | names[1]
        if name.lower().startswith(b"access-") and name != name.lower()
    ]
