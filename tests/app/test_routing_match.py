"""`Router`: (method, path) to an endpoint, without a socket."""

import pytest

from rawbg.app.paths import MethodNotAllowed, NotFound, Router


def make_router() -> Router[str]:
    router: Router[str] = Router()
    router.add("/users/me", ["GET"], "me")
    router.add("/users/{name}", ["GET", "PUT"], "user")
    router.add("/files/{path:path}", ["GET"], "file")
    router.add("/items/", ["POST"], "items")
    return router


def test_a_static_path_is_found_before_a_template_that_also_matches_it():
    router = make_router()
    assert router.match("GET", "/users/me") == ("me", {})
    assert router.match("GET", "/users/ada") == ("user", {"name": "ada"})
    assert router.match("GET", "/files/a/b.txt") == ("file", {"path": "a/b.txt"})


def test_an_unknown_path_is_404_and_a_known_one_with_another_method_405_with_allow():
    router = make_router()
    with pytest.raises(NotFound):
        router.match("GET", "/nowhere")
    with pytest.raises(NotFound):
        router.match("GET", "/users/a/b")  # {name} does not match a slash
    with pytest.raises(MethodNotAllowed) as caught:
        router.match("DELETE", "/users/ada")
    assert caught.value.headers == {"Allow": "GET, HEAD, PUT"}


def test_get_brings_head_until_an_explicit_head_replaces_it():
    router: Router[str] = Router()
    router.add("/r", ["GET"], "get")
    assert router.match("HEAD", "/r") == ("get", {})
    assert router.add("/r", ["HEAD"], "head") == []
    assert router.match("HEAD", "/r") == ("head", {})
    assert router.match("GET", "/r") == ("get", {})


def test_a_duplicate_method_keeps_the_first_endpoint_and_reports_it():
    router: Router[str] = Router()
    assert router.add("/x", ["GET", "POST"], "first") == []
    assert router.add("/x", ["POST", "PUT"], "second") == [("POST", "first")]
    assert router.match("POST", "/x") == ("first", {})
    assert router.match("PUT", "/x") == ("second", {})


def test_has_path_is_true_for_any_method_of_any_matching_route():
    router = make_router()
    assert router.has_path("/items/")
    assert router.has_path("/users/ada")
    assert not router.has_path("/items")
    assert not router.has_path("/users/")


def test_templates_matching_a_fixed_path_for_some_method():
    router = make_router()
    assert router.templates_matching("/users/me", ["GET"]) == ["/users/{name}"]
    assert router.templates_matching("/users/me", ["POST"]) == []
    assert router.templates_matching("/files/a", ["get"]) == ["/files/{path:path}"]
