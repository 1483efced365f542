"""Behind a proxy: X-Forwarded-For / X-Forwarded-Proto count only from trusted peers.

`TrustedProxies` is logic, tested without a socket; what a handler sees as
`request.client`, `request.scheme` and `request.root_path` is tested over a
real socket from 127.0.0.1. docs/server-behavior.md, "Behind a proxy".
"""

from __future__ import annotations

import json

import pytest

from rawbg import App, Request
from rawbg.requests import Address
from rawbg.server.config import ServerConfig
from rawbg.wire.proxy import TrustedProxies, forwarded, parse_hop
from tests.support.wire import RawClient, request_bytes

# -- the logic ---------------------------------------------------------------------


def test_addresses_networks_and_star_are_trusted_as_listed():
    trusted = TrustedProxies("127.0.0.1, 10.0.0.0/8 ,::1")
    assert "127.0.0.1" in trusted
    assert "10.20.30.40" in trusted
    assert "::1" in trusted
    assert "0:0:0:0:0:0:0:1" in trusted  # the same address, written another way
    assert "127.0.0.2" not in trusted
    assert "not-an-ip" not in trusted
    assert "anything" in TrustedProxies("*")


def test_a_unix_socket_peer_is_trusted_only_with_star():
    assert not TrustedProxies("127.0.0.1").trusts_peer(None)
    assert TrustedProxies("*").trusts_peer(None)
    assert TrustedProxies("127.0.0.1").trusts_peer(Address("127.0.0.1", 5000))


def test_a_bad_entry_is_an_error_that_names_it():
    with pytest.raises(ValueError, match=r"'10\.0\.0\.300'"):
        TrustedProxies("127.0.0.1,10.0.0.300")
    with pytest.raises(ValueError, match="'nope'"):
        ServerConfig(forwarded_allow_ips="nope")


def test_the_client_is_the_rightmost_hop_that_is_not_a_trusted_proxy():
    trusted = TrustedProxies("127.0.0.1,10.0.0.0/8")
    # spoofed first hop, then the real client, then two of our proxies
    assert trusted.client_from("6.6.6.6, 203.0.113.7, 10.1.1.1, 127.0.0.1") == ("203.0.113.7", 0)
    # every hop trusted: the left-most one
    assert trusted.client_from("10.0.0.5, 127.0.0.1") == ("10.0.0.5", 0)
    assert TrustedProxies("*").client_from("6.6.6.6, 203.0.113.7") == ("6.6.6.6", 0)
    assert trusted.client_from(" , ") is None


def test_hops_with_ports_and_ipv6():
    assert parse_hop("203.0.113.7:4711") == ("203.0.113.7", 4711)
    assert parse_hop("[2001:db8::1]:4711") == ("2001:db8::1", 4711)
    assert parse_hop("2001:db8::1") == ("2001:db8::1", 0)
    assert parse_hop("203.0.113.7") == ("203.0.113.7", 0)


def test_forwarded_reads_scheme_and_joins_repeated_headers():
    trusted = TrustedProxies("127.0.0.1")
    peer = Address("127.0.0.1", 5000)
    headers = [
        (b"x-forwarded-for", b"6.6.6.6"),
        (b"x-forwarded-proto", b"HTTPS"),
        (b"x-forwarded-for", b"203.0.113.7"),
    ]
    assert forwarded(trusted, headers, peer) == (("203.0.113.7", 0), "https")
    assert forwarded(trusted, [(b"x-forwarded-proto", b"gopher")], peer) == (peer, "http")
    assert forwarded(trusted, [], peer) == (peer, "http")


def test_the_default_trust_comes_from_forwarded_allow_ips_like_uvicorn(monkeypatch):
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    assert ServerConfig().forwarded_allow_ips == "127.0.0.1,::1"
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.0.0.1")
    assert ServerConfig().forwarded_allow_ips == "10.0.0.1"


def test_root_path_must_be_a_path_prefix():
    assert ServerConfig(root_path="/api").root_path == "/api"
    for bad in ("api", "/api/"):
        with pytest.raises(ValueError, match="root_path"):
            ServerConfig(root_path=bad)


# -- on the wire -----------------------------------------------------------------------


def who_app() -> App:
    app = App()

    @app.get("/who")
    async def who(request: Request):
        return {
            "client": list(request.client) if request.client else None,
            "host": request.client.host if request.client else None,
            "scheme": request.scheme,
            "root_path": request.root_path,
            "path": request.path,
        }

    return app


async def ask(port: int, head: bytes) -> dict[str, object]:
    client = await RawClient.connect(port)
    try:
        await client.send(head)
        response = await client.read_response()
    finally:
        await client.close()
    assert response.status_code == 200, response
    answer: dict[str, object] = json.loads(response.body)
    return answer


FORWARDED = {"x-forwarded-for": "203.0.113.7, 127.0.0.1", "x-forwarded-proto": "https"}


async def test_a_trusted_peer_sets_client_and_scheme(serve):
    async with serve(who_app(), forwarded_allow_ips="127.0.0.1") as server:
        answer = await ask(server.port, request_bytes("GET", "/who", headers=FORWARDED))
    assert answer["client"] == ["203.0.113.7", 0]
    assert answer["host"] == "203.0.113.7"
    assert answer["scheme"] == "https"


async def test_an_untrusted_peer_cannot_set_client_or_scheme(serve):
    async with serve(who_app(), forwarded_allow_ips="10.0.0.1") as server:
        answer = await ask(server.port, request_bytes("GET", "/who", headers=FORWARDED))
    client = answer["client"]
    assert isinstance(client, list)
    assert client[0] == "127.0.0.1"
    assert client[1] > 0  # the real peer's port
    assert answer["scheme"] == "http"


async def test_no_proxy_headers_ignores_them_even_from_a_trusted_peer(serve):
    async with serve(who_app(), proxy_headers=False, forwarded_allow_ips="*") as server:
        answer = await ask(server.port, request_bytes("GET", "/who", headers=FORWARDED))
    assert answer["host"] == "127.0.0.1"
    assert answer["scheme"] == "http"


async def test_repeated_forwarded_for_lines_are_one_list(serve):
    head = (
        b"GET /who HTTP/1.1\r\nhost: x\r\nX-Forwarded-For: 6.6.6.6\r\n"
        b"X-Forwarded-For: 198.51.100.9\r\n\r\n"
    )
    async with serve(who_app(), forwarded_allow_ips="127.0.0.1") as server:
        answer = await ask(server.port, head)
    assert answer["host"] == "198.51.100.9"  # the hop our proxy saw, not what the client wrote


async def test_root_path_is_given_to_the_handler_and_routing_uses_the_path_as_received(serve):
    async with serve(who_app(), root_path="/api") as server:
        answer = await ask(server.port, request_bytes("GET", "/who"))
    assert answer["root_path"] == "/api"
    assert answer["path"] == "/who"
