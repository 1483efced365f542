"""What a handler reads from `request`: client, cookies, url, params, state, the app."""

from typing import Annotated

import pytest

from rawbg import App, Depends, Request
from rawbg.datastructures import URL, State
from rawbg.requests import Address, Headers, parse_cookie_header
from rawbg.testing import serve_app
from tests.support.wire import RawClient, request_bytes


async def test_request_client_is_the_peers_host_and_port():
    app = App()

    @app.get("/items/{item_id}")
    def read_root(item_id: str, request: Request):
        client_host = request.client.host
        return {"client_host": client_host, "item_id": item_id, "port": request.client.port}

    async with serve_app(app) as client:
        raw = await RawClient.connect(client.port)
        local_port = raw.writer.get_extra_info("sockname")[1]
        await raw.send(request_bytes("GET", "/items/foo"))
        response = await raw.read_response()
        await raw.close()
    assert response.body == (b'{"client_host":"127.0.0.1","item_id":"foo","port":%d}' % local_port)


async def test_request_url_is_built_from_the_host_header_path_and_query():
    app = App()

    @app.get("/{path:path}")
    def show(request: Request):
        url = request.url
        return {
            "url": str(url),
            "scheme": url.scheme,
            "netloc": url.netloc,
            "path": url.path,
            "query": url.query,
            "decoded_path": request.path,
            "base_url": str(request.base_url),
            "path_params": request.path_params,
            "q": request.query_params.getlist("q"),
        }

    async with serve_app(app) as client:
        response = await client.get("/a%20b/c?q=1&q=2", headers={"host": "example.com:8080"})
    assert response.json() == {
        "url": "http://example.com:8080/a%20b/c?q=1&q=2",
        "scheme": "http",
        "netloc": "example.com:8080",
        "path": "/a%20b/c",
        "query": "q=1&q=2",
        "decoded_path": "/a b/c",
        "base_url": "http://example.com:8080/",
        "path_params": {"path": "a b/c"},
        "q": ["1", "2"],
    }


async def test_an_http_10_request_without_host_gets_localhost_in_its_url():
    app = App()

    @app.get("/")
    def show(request: Request):
        return str(request.url)

    async with serve_app(app) as client:
        raw = await RawClient.connect(client.port)
        await raw.send(b"GET /?x=1 HTTP/1.0\r\n\r\n")
        data = await raw.read_all()
        await raw.close()
    assert data.endswith(b'"http://localhost/?x=1"')


async def test_request_cookies_come_from_every_cookie_header():
    app = App()

    @app.get("/")
    def show(request: Request):
        return request.cookies

    async with serve_app(app) as client:
        raw = await RawClient.connect(client.port)
        await raw.send(
            request_bytes(
                "GET", "/", headers={"cookie": 'session=abc; theme="dark mode"; broken; =x'}
            )
        )
        response = await raw.read_response()
        await raw.close()
    assert response.body == b'{"session":"abc","theme":"dark mode"}'


def test_cookie_parsing_keeps_values_as_sent_and_the_last_of_a_name():
    assert parse_cookie_header(["a=1; b=%20x", "a=2;c=="]) == {"a": "2", "b": "%20x", "c": "="}
    assert parse_cookie_header([]) == {}


async def test_request_state_is_per_request_and_app_state_is_shared():
    app = App()
    app.state.greeting = "hello"

    async def authenticate(request: Request) -> None:
        request.state.user = request.query_params.get("user", "anonymous")

    @app.get("/")
    def show(request: Request, _: Annotated[None, Depends(authenticate)]):
        assert request.app is app
        request.app.state.calls = getattr(request.app.state, "calls", 0) + 1
        return f"{request.app.state.greeting} {request.state.user} {request.app.state.calls}"

    @app.get("/fresh")
    def fresh(request: Request):
        return hasattr(request.state, "user")

    async with serve_app(app) as client:
        assert (await client.get("/?user=ada")).json() == "hello ada 1"
        assert (await client.get("/")).json() == "hello anonymous 2"
        assert (await client.get("/fresh")).json() is False


def test_state_says_which_attribute_nobody_set():
    state = State(db="x")
    assert state.db == "x"
    with pytest.raises(AttributeError, match="no attribute 'user' \\(nothing set it\\)"):
        _ = state.user
    assert repr(state) == "State(db='x')"


def test_url_parts_and_replace():
    url = URL("https://example.com:8443/a/b?x=1#top")
    assert (url.scheme, url.hostname, url.port, url.path, url.query, url.fragment) == (
        "https",
        "example.com",
        8443,
        "/a/b",
        "x=1",
        "top",
    )
    assert url.is_secure
    assert url == "https://example.com:8443/a/b?x=1#top"
    assert str(url.replace(path="/c", query="")) == "https://example.com:8443/c#top"
    with pytest.raises(TypeError, match="unknown parts: host"):
        url.replace(host="x")


def test_a_plain_tuple_client_becomes_an_address():
    from rawbg.requests import Request as PlainRequest

    request = PlainRequest(method="GET", target="/", headers=Headers([]), client=("10.0.0.1", 5))
    assert request.client == Address("10.0.0.1", 5)
    assert (request.client.host, request.client.port) == ("10.0.0.1", 5)
