"""rawbg.security: each scheme's 401 and WWW-Authenticate as FastAPI answers them,
auto_error=False, Security() scopes, and what OpenAPI reads of the schemes."""

import base64
from typing import Annotated

import pytest

from rawbg import App, Depends, HTTPException, Security
from rawbg.app.dependencies import plan_call, security_requirements
from rawbg.security import (
    APIKeyCookie,
    APIKeyHeader,
    APIKeyQuery,
    HTTPAuthorizationCredentials,
    HTTPBasic,
    HTTPBasicCredentials,
    HTTPBearer,
    HTTPDigest,
    OAuth2AuthorizationCodeBearer,
    OAuth2PasswordBearer,
    OAuth2PasswordRequestForm,
    OAuth2PasswordRequestFormStrict,
    OpenIdConnect,
    SecurityScopes,
)
from rawbg.testing import serve_app
from tests.support.forms import MULTIPART, URLENCODED, multipart, urlencoded

NOT_AUTHENTICATED = b'{"detail":"Not authenticated"}'


def basic(user_and_password: bytes) -> str:
    return "Basic " + base64.b64encode(user_and_password).decode()


def app_depending_on(scheme: object) -> App:
    app = App()

    @app.get("/")
    async def read(credentials: Annotated[object, Depends(scheme)]):
        if isinstance(credentials, HTTPBasicCredentials):
            return [credentials.username, credentials.password]
        if isinstance(credentials, HTTPAuthorizationCredentials):
            return [credentials.scheme, credentials.credentials]
        return credentials

    return app


# (scheme, headers sent, status, body, www-authenticate); the answers are FastAPI 0.165's
CASES = [
    (OAuth2PasswordBearer(tokenUrl="token"), {}, 401, NOT_AUTHENTICATED, "Bearer"),
    (OAuth2PasswordBearer(tokenUrl="token"), {"authorization": "Bearer abc"}, 200, b'"abc"', None),
    (
        OAuth2PasswordBearer(tokenUrl="token"),
        {"authorization": "Basic abc"},
        401,
        NOT_AUTHENTICATED,
        "Bearer",
    ),
    (
        OAuth2AuthorizationCodeBearer(authorizationUrl="a", tokenUrl="t"),
        {"authorization": "bearer xyz"},
        200,
        b'"xyz"',
        None,
    ),
    (HTTPBearer(), {}, 401, NOT_AUTHENTICATED, "Bearer"),
    (HTTPBearer(), {"authorization": "Bearer"}, 401, NOT_AUTHENTICATED, "Bearer"),
    (HTTPBearer(), {"authorization": "Other abc"}, 401, NOT_AUTHENTICATED, "Bearer"),
    (HTTPBearer(), {"authorization": "Bearer abc"}, 200, b'["Bearer","abc"]', None),
    (HTTPDigest(), {}, 401, NOT_AUTHENTICATED, "Digest"),
    (HTTPDigest(), {"authorization": "Digest x=1"}, 200, b'["Digest","x=1"]', None),
    (HTTPBasic(), {}, 401, NOT_AUTHENTICATED, "Basic"),
    (HTTPBasic(realm="simple"), {}, 401, NOT_AUTHENTICATED, 'Basic realm="simple"'),
    (HTTPBasic(), {"authorization": basic(b"ada:se:cret")}, 200, b'["ada","se:cret"]', None),
    (HTTPBasic(), {"authorization": basic(b"no-colon")}, 401, NOT_AUTHENTICATED, "Basic"),
    (HTTPBasic(), {"authorization": "Basic ***"}, 401, NOT_AUTHENTICATED, "Basic"),
    (APIKeyHeader(name="X-Key"), {}, 401, NOT_AUTHENTICATED, "APIKey"),
    (APIKeyHeader(name="X-Key"), {"x-key": "k1"}, 200, b'"k1"', None),
    (APIKeyCookie(name="session"), {"cookie": "session=s1"}, 200, b'"s1"', None),
    (APIKeyCookie(name="session"), {"cookie": "other=s1"}, 401, NOT_AUTHENTICATED, "APIKey"),
    (OpenIdConnect(openIdConnectUrl="/conf"), {}, 401, NOT_AUTHENTICATED, "Bearer"),
    (OpenIdConnect(openIdConnectUrl="/conf"), {"authorization": "x"}, 200, b'"x"', None),
]


@pytest.mark.parametrize(("scheme", "headers", "status", "body", "challenge"), CASES)
async def test_each_scheme_answers_as_fastapi_does(scheme, headers, status, body, challenge):
    async with serve_app(app_depending_on(scheme), in_memory=True) as client:
        response = await client.get("/", headers=headers)
    assert (response.status_code, response.body) == (status, body)
    assert response.headers.get("www-authenticate") == challenge


async def test_an_api_key_in_the_query_string_is_read_by_name():
    async with serve_app(app_depending_on(APIKeyQuery(name="key")), in_memory=True) as client:
        assert (await client.get("/?key=abc")).body == b'"abc"'
        missing = await client.get("/?other=abc")
    assert (missing.status_code, missing.headers.get("www-authenticate")) == (401, "APIKey")


@pytest.mark.parametrize(
    "scheme",
    [
        OAuth2PasswordBearer(tokenUrl="token", auto_error=False),
        HTTPBearer(auto_error=False),
        HTTPBasic(auto_error=False),
        HTTPDigest(auto_error=False),
        APIKeyHeader(name="X-Key", auto_error=False),
        APIKeyCookie(name="k", auto_error=False),
        APIKeyQuery(name="k", auto_error=False),
        OpenIdConnect(openIdConnectUrl="/c", auto_error=False),
    ],
)
async def test_without_auto_error_missing_credentials_are_none(scheme):
    async with serve_app(app_depending_on(scheme), in_memory=True) as client:
        response = await client.get("/")
    assert (response.status_code, response.body) == (200, b"null")


async def test_basic_credentials_that_do_not_decode_are_refused_even_without_auto_error():
    scheme = HTTPBasic(auto_error=False)
    async with serve_app(app_depending_on(scheme), in_memory=True) as client:
        response = await client.get("/", headers={"authorization": basic(b"\xff\xfe")})
    assert (response.status_code, response.headers.get("www-authenticate")) == (401, "Basic")


async def test_a_subclass_may_answer_403_instead():
    class Forbidding(HTTPBearer):
        def make_not_authenticated_error(self) -> HTTPException:
            return HTTPException(status_code=403, detail="Not authenticated")

    async with serve_app(app_depending_on(Forbidding()), in_memory=True) as client:
        response = await client.get("/")
    assert (response.status_code, response.body) == (403, NOT_AUTHENTICATED)
    assert "www-authenticate" not in response.headers


def scoped_app(calls: list[list[str]]) -> App:
    scheme = OAuth2PasswordBearer(tokenUrl="token", scopes={"me": "me", "items": "items"})
    app = App()

    async def current_user(scopes: SecurityScopes, token: Annotated[str, Depends(scheme)]):
        calls.append(scopes.scopes)
        return {"token": token, "scopes": scopes.scope_str}

    async def active_user(user: Annotated[dict, Security(current_user, scopes=["me"])]):
        return user

    @app.get("/items")
    async def items(
        user: Annotated[dict, Security(active_user, scopes=["items", "me"])],
        again: Annotated[dict, Security(active_user, scopes=["items"])],
        plain: Annotated[dict, Depends(current_user)],
    ):
        return [user["scopes"], again["scopes"], plain["scopes"]]

    return app


async def test_security_scopes_gather_every_scope_asked_above_a_dependency():
    calls: list[list[str]] = []
    async with serve_app(scoped_app(calls), in_memory=True) as client:
        response = await client.get("/items", headers={"authorization": "Bearer t"})
    assert response.body == b'["items me","items me",""]'
    # the same dependency asked for the same set of scopes is cached; other scopes are not
    assert calls == [["items", "me"], []]


def test_security_requirements_list_each_scheme_with_the_scopes_asked_of_it():
    calls: list[list[str]] = []
    app = scoped_app(calls)
    endpoint, _ = app.router.match("GET", "/items")
    (requirement,) = security_requirements(endpoint.plan)
    assert requirement.scheme.scheme_name == "OAuth2PasswordBearer"
    assert requirement.scopes == ["items", "me"]
    assert requirement.scheme.model == {
        "type": "oauth2",
        "flows": {"password": {"tokenUrl": "token", "scopes": {"me": "me", "items": "items"}}},
    }


@pytest.mark.parametrize(
    ("scheme", "model"),
    [
        (HTTPBasic(), {"type": "http", "scheme": "basic"}),
        (
            HTTPBearer(bearerFormat="JWT", description="d"),
            {"type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "d"},
        ),
        (APIKeyHeader(name="X-Key"), {"type": "apiKey", "in": "header", "name": "X-Key"}),
        (
            OAuth2AuthorizationCodeBearer(authorizationUrl="a", tokenUrl="t", refreshUrl="r"),
            {
                "type": "oauth2",
                "flows": {
                    "authorizationCode": {
                        "authorizationUrl": "a",
                        "tokenUrl": "t",
                        "refreshUrl": "r",
                        "scopes": {},
                    }
                },
            },
        ),
        (OpenIdConnect(openIdConnectUrl="/c"), {"type": "openIdConnect", "openIdConnectUrl": "/c"}),
    ],
)
def test_each_scheme_model_is_its_openapi_security_scheme_object(scheme, model):
    async def handler(credentials: Annotated[object, Depends(scheme)]):
        return None

    plan = plan_call(handler, path_params=frozenset())
    (requirement,) = security_requirements(plan)
    assert (requirement.scheme.model, requirement.scopes) == (model, [])
    assert requirement.scheme.scheme_name == type(scheme).__name__


async def test_route_dependencies_may_be_security_with_scopes():
    scheme = APIKeyHeader(name="X-Key", scheme_name="key")
    seen: list[list[str]] = []
    app = App()

    async def check(scopes: SecurityScopes, key: Annotated[str, Depends(scheme)]):
        seen.append(scopes.scopes)

    @app.get("/", dependencies=[Security(check, scopes=["admin"])])
    async def root():
        return "ok"

    endpoint, _ = app.router.match("GET", "/")
    assert [(r.scheme.scheme_name, r.scopes) for r in security_requirements(endpoint.plan)] == [
        ("key", ["admin"])
    ]
    async with serve_app(app, in_memory=True) as client:
        assert (await client.get("/")).status_code == 401
        assert (await client.get("/", headers={"x-key": "k"})).body == b'"ok"'
    assert seen == [["admin"]]


def missing(field: str) -> dict:
    return {"type": "missing", "loc": ["body", field], "msg": "Field required", "input": None}


def password_form_app() -> App:
    app = App()

    def fields(form: OAuth2PasswordRequestForm) -> dict:
        return {
            "grant_type": form.grant_type,
            "username": form.username,
            "password": form.password,
            "scopes": form.scopes,
            "client_id": form.client_id,
            "client_secret": form.client_secret,
        }

    @app.post("/token")
    async def token(form: Annotated[OAuth2PasswordRequestForm, Depends()]):
        return fields(form)

    @app.post("/strict")
    def strict(form: OAuth2PasswordRequestFormStrict = Depends()):  # the old default form
        return fields(form)

    return app


async def test_the_password_form_gives_its_fields_with_the_scope_split_on_spaces():
    async with serve_app(password_form_app()) as client:
        sent = [("username", "ada"), ("password", "s3cret"), ("scope", "items:read  me")]
        plain = await client.post(
            "/token", content=urlencoded(sent), headers={"content-type": URLENCODED}
        )
        full = [*sent, ("grant_type", "password"), ("client_id", "c"), ("client_secret", "k")]
        parts = await client.post(
            "/token", content=multipart(full), headers={"content-type": MULTIPART}
        )
    assert plain.json() == {
        "grant_type": None,
        "username": "ada",
        "password": "s3cret",
        "scopes": ["items:read", "me"],
        "client_id": None,
        "client_secret": None,
    }
    assert parts.json() == {
        "grant_type": "password",
        "username": "ada",
        "password": "s3cret",
        "scopes": ["items:read", "me"],
        "client_id": "c",
        "client_secret": "k",
    }


async def test_the_password_forms_refuse_what_fastapi_refuses_with_its_422():
    user = [("username", "ada"), ("password", "s3cret")]
    async with serve_app(password_form_app()) as client:
        empty = await client.post("/token")
        other = await client.post(
            "/token",
            content=urlencoded([*user, ("grant_type", "client_credentials")]),
            headers={"content-type": URLENCODED},
        )
        strict_empty = await client.post("/strict")
        strict_no_grant = await client.post(
            "/strict", content=urlencoded(user), headers={"content-type": URLENCODED}
        )
        strict_ok = await client.post(
            "/strict",
            content=urlencoded([*user, ("grant_type", "password")]),
            headers={"content-type": URLENCODED},
        )
    assert empty.status_code == 422
    assert empty.json() == {"detail": [missing("username"), missing("password")]}
    assert other.json() == {
        "detail": [
            {
                "type": "string_pattern_mismatch",
                "loc": ["body", "grant_type"],
                "msg": "String should match pattern '^password$'",
                "input": "client_credentials",
                "ctx": {"pattern": "^password$"},
            }
        ]
    }
    assert strict_empty.json() == {
        "detail": [missing("grant_type"), missing("username"), missing("password")]
    }
    assert strict_no_grant.json() == {"detail": [missing("grant_type")]}
    assert (strict_ok.status_code, strict_ok.json()["grant_type"]) == (200, "password")
