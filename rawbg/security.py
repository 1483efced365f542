"""Authentication schemes as dependencies: FastAPI's ``fastapi.security``, on rawbg's `Request`.

Each scheme is an object you depend on (``token: Annotated[str, Depends(oauth2_scheme)]``).
Called per request, it reads the credentials where its scheme puts them (the
``Authorization`` header, a named header, query parameter or cookie) and
returns them; without them it raises the scheme's `HTTPException`, which is
FastAPI's answer word for word: 401 ``{"detail": "Not authenticated"}`` with a
``WWW-Authenticate`` header naming the scheme (``Bearer``, ``Basic``,
``Basic realm="..."``, ``APIKey``...). With ``auto_error=False`` it returns
None instead, so that the app may accept other ways in. To answer otherwise
(a 403, as FastAPI did before 0.117), override `make_not_authenticated_error`.

For the OpenAPI document, every scheme has, as in FastAPI, ``scheme_name``
(the key under ``components.securitySchemes``, by default the class name) and
``model``: the Security Scheme Object itself, a JSON-ready dict with only the
fields that are set (``{"type": "http", "scheme": "bearer"}``).
`rawbg.app.dependencies.security_requirements` lists a route's schemes with the
OAuth2 scopes asked of each (``Security(..., scopes=[...])``).

FastAPI makes the credentials pydantic models; here they are frozen
dataclasses with the same fields, so that a plain install needs no pydantic.
`OAuth2PasswordRequestForm` is the one class that reads a form body, through
``Form`` (a urlencoded body as it is; multipart/form-data with the ``forms``
extra).
"""

from __future__ import annotations

import binascii
from base64 import b64decode
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from rawbg.errors import HTTPException
from rawbg.params import Form
from rawbg.requests import Request
from rawbg.status import HTTP_401_UNAUTHORIZED

__all__ = [
    "APIKeyCookie",
    "APIKeyHeader",
    "APIKeyQuery",
    "HTTPAuthorizationCredentials",
    "HTTPBasic",
    "HTTPBasicCredentials",
    "HTTPBearer",
    "HTTPDigest",
    "OAuth2",
    "OAuth2AuthorizationCodeBearer",
    "OAuth2PasswordBearer",
    "OAuth2PasswordRequestForm",
    "OAuth2PasswordRequestFormStrict",
    "OpenIdConnect",
    "SecurityBase",
    "SecurityScopes",
    "get_authorization_scheme_param",
]

NOT_AUTHENTICATED = "Not authenticated"


def get_authorization_scheme_param(authorization_header_value: str | None) -> tuple[str, str]:
    """``"Bearer abc"`` -> ``("Bearer", "abc")``; ``("", "")`` for no header."""
    if not authorization_header_value:
        return "", ""
    scheme, _, param = authorization_header_value.partition(" ")
    return scheme, param.strip()


def _model(**fields: Any) -> dict[str, Any]:
    """An OpenAPI object (a Security Scheme, a flow): the fields that are set."""
    return {name: value for name, value in fields.items() if value is not None}


class SecurityBase:
    """What every scheme has for OpenAPI: its `model` and its `scheme_name`.

    The app's dependency planner recognises a scheme by this class, to list
    it among a route's security requirements.
    """

    model: dict[str, Any]
    scheme_name: str
    auto_error: bool

    def make_not_authenticated_error(self) -> HTTPException:
        """The exception raised when the credentials are missing (or unreadable)."""
        return HTTPException(
            status_code=HTTP_401_UNAUTHORIZED,
            detail=NOT_AUTHENTICATED,
            headers={"WWW-Authenticate": self.authenticate_challenge()},
        )

    def authenticate_challenge(self) -> str:
        """The ``WWW-Authenticate`` value of the 401 (RFC 9110 11.6.1)."""
        raise NotImplementedError

    def _whole_header(self, request: Request) -> str | None:
        """The ``Authorization`` header as sent; missing, the 401 (or None)."""
        authorization: str | None = request.headers.get("authorization")
        if not authorization:
            self._missing()
            return None
        return authorization

    def _missing(self) -> None:
        """No credentials: the 401, or None with ``auto_error=False``."""
        if self.auto_error:
            raise self.make_not_authenticated_error()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(scheme_name={self.scheme_name!r})"


# -- API keys -----------------------------------------------------------------------

APIKeyIn = Literal["query", "header", "cookie"]


class APIKeyBase(SecurityBase):
    """A key the client sends under a name, in one place (the subclass's `location`)."""

    location: ClassVar[APIKeyIn]

    def __init__(
        self,
        *,
        name: str,
        scheme_name: str | None = None,
        description: str | None = None,
        auto_error: bool = True,
    ) -> None:
        self.name = name
        self.model = _model(
            type="apiKey", description=description, **{"in": self.location}, name=name
        )
        self.scheme_name = scheme_name or type(self).__name__
        self.auto_error = auto_error

    def authenticate_challenge(self) -> str:
        return "APIKey"

    def check_api_key(self, api_key: str | None) -> str | None:
        if not api_key:
            self._missing()
            return None
        return api_key


class APIKeyQuery(APIKeyBase):
    """``APIKeyQuery(name="api_key")``: the key from the query string."""

    location = "query"

    async def __call__(self, request: Request) -> str | None:
        return self.check_api_key(request.query_params.get(self.name))


class APIKeyHeader(APIKeyBase):
    """``APIKeyHeader(name="X-API-Key")``: the key from a request header."""

    location = "header"

    async def __call__(self, request: Request) -> str | None:
        return self.check_api_key(request.headers.get(self.name))


class APIKeyCookie(APIKeyBase):
    """``APIKeyCookie(name="session")``: the key from a cookie."""

    location = "cookie"

    async def __call__(self, request: Request) -> str | None:
        return self.check_api_key(request.cookies.get(self.name))


# -- HTTP authentication (RFC 9110 11) ----------------------------------------------


@dataclass(frozen=True, slots=True)
class HTTPBasicCredentials:
    """What `HTTPBasic` returns: the user name and password of ``Authorization: Basic``."""

    username: str
    password: str


@dataclass(frozen=True, slots=True)
class HTTPAuthorizationCredentials:
    """What `HTTPBearer` and `HTTPDigest` return: the scheme as sent, and what follows it."""

    scheme: str
    credentials: str


class HTTPBase(SecurityBase):
    """Any ``Authorization: <scheme> <credentials>``; the subclasses check the scheme."""

    #: the scheme the header must name (case-insensitively); None: any
    required_scheme: ClassVar[str | None] = None

    def __init__(
        self,
        *,
        scheme: str,
        scheme_name: str | None = None,
        description: str | None = None,
        auto_error: bool = True,
    ) -> None:
        self.scheme = scheme
        self.model = _model(type="http", description=description, scheme=scheme)
        self.scheme_name = scheme_name or type(self).__name__
        self.auto_error = auto_error

    def authenticate_challenge(self) -> str:
        return self.scheme.title()

    def make_authenticate_headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": self.authenticate_challenge()}

    def _credentials(self, request: Request, wanted: str | None) -> HTTPAuthorizationCredentials:
        """The header's scheme and credentials; missing, or another scheme, is the 401."""
        authorization = request.headers.get("authorization")
        scheme, credentials = get_authorization_scheme_param(authorization)
        if not (scheme and credentials) or (wanted is not None and scheme.lower() != wanted):
            raise self.make_not_authenticated_error()
        return HTTPAuthorizationCredentials(scheme=scheme, credentials=credentials)

    async def __call__(self, request: Request) -> HTTPAuthorizationCredentials | None:
        try:
            return self._credentials(request, self.required_scheme)
        except HTTPException:
            if self.auto_error:
                raise
            return None


class HTTPBasic(HTTPBase):
    """``Authorization: Basic base64(user:password)``, as `HTTPBasicCredentials`.

    Credentials that are not base64 of ``user:password`` are a 401 even with
    ``auto_error=False``, as in FastAPI: the client did try this scheme.
    """

    def __init__(
        self,
        *,
        scheme_name: str | None = None,
        realm: str | None = None,
        description: str | None = None,
        auto_error: bool = True,
    ) -> None:
        super().__init__(
            scheme="basic", scheme_name=scheme_name, description=description, auto_error=auto_error
        )
        self.realm = realm

    def authenticate_challenge(self) -> str:
        return f'Basic realm="{self.realm}"' if self.realm else "Basic"

    async def __call__(self, request: Request) -> HTTPBasicCredentials | None:  # type: ignore[override]
        authorization = request.headers.get("authorization")
        scheme, param = get_authorization_scheme_param(authorization)
        if not authorization or scheme.lower() != "basic":
            self._missing()
            return None
        try:
            data = b64decode(param, validate=False).decode("ascii")
        except (ValueError, UnicodeDecodeError, binascii.Error) as exc:
            raise self.make_not_authenticated_error() from exc
        username, separator, password = data.partition(":")
        if not separator:
            raise self.make_not_authenticated_error()
        return HTTPBasicCredentials(username=username, password=password)


class HTTPBearer(HTTPBase):
    """``Authorization: Bearer <token>``, as `HTTPAuthorizationCredentials`."""

    required_scheme = "bearer"

    def __init__(
        self,
        *,
        bearerFormat: str | None = None,  # camelCase: FastAPI's (and OpenAPI's) name
        scheme_name: str | None = None,
        description: str | None = None,
        auto_error: bool = True,
    ) -> None:
        super().__init__(
            scheme="bearer", scheme_name=scheme_name, description=description, auto_error=auto_error
        )
        self.model = _model(
            type="http", description=description, scheme="bearer", bearerFormat=bearerFormat
        )


class HTTPDigest(HTTPBase):
    """``Authorization: Digest ...`` as `HTTPAuthorizationCredentials`; the app checks it."""

    required_scheme = "digest"

    def __init__(
        self,
        *,
        scheme_name: str | None = None,
        description: str | None = None,
        auto_error: bool = True,
    ) -> None:
        super().__init__(
            scheme="digest", scheme_name=scheme_name, description=description, auto_error=auto_error
        )


# -- OAuth2 and OpenID Connect --------------------------------------------------------


class OAuth2(SecurityBase):
    """An OAuth2 scheme with the `flows` given (OpenAPI's OAuth Flows Object).

    Called, it returns the whole ``Authorization`` header; the bearer classes
    below return only the token.
    """

    def __init__(
        self,
        *,
        flows: dict[str, dict[str, Any]] | None = None,
        scheme_name: str | None = None,
        description: str | None = None,
        auto_error: bool = True,
    ) -> None:
        self.model = _model(type="oauth2", description=description, flows=dict(flows or {}))
        self.scheme_name = scheme_name or type(self).__name__
        self.auto_error = auto_error

    def authenticate_challenge(self) -> str:
        return "Bearer"

    async def __call__(self, request: Request) -> str | None:
        return self._whole_header(request)

    def _bearer_token(self, request: Request) -> str | None:
        scheme, param = get_authorization_scheme_param(request.headers.get("authorization"))
        if scheme.lower() != "bearer":
            self._missing()
            return None
        return param


class OAuth2PasswordBearer(OAuth2):
    """The token of ``Authorization: Bearer <token>``, got from `tokenUrl` by the password flow."""

    def __init__(
        self,
        tokenUrl: str,  # camelCase: FastAPI's (and OpenAPI's) name
        scheme_name: str | None = None,
        scopes: dict[str, str] | None = None,
        description: str | None = None,
        auto_error: bool = True,
        refreshUrl: str | None = None,
    ) -> None:
        flow = _model(tokenUrl=tokenUrl, refreshUrl=refreshUrl, scopes=dict(scopes or {}))
        super().__init__(
            flows={"password": flow},
            scheme_name=scheme_name,
            description=description,
            auto_error=auto_error,
        )

    async def __call__(self, request: Request) -> str | None:
        return self._bearer_token(request)


class OAuth2AuthorizationCodeBearer(OAuth2):
    """The bearer token of the authorization code flow (`authorizationUrl`, then `tokenUrl`)."""

    def __init__(
        self,
        authorizationUrl: str,  # camelCase: FastAPI's (and OpenAPI's) name
        tokenUrl: str,
        refreshUrl: str | None = None,
        scheme_name: str | None = None,
        scopes: dict[str, str] | None = None,
        description: str | None = None,
        auto_error: bool = True,
    ) -> None:
        flow = _model(
            authorizationUrl=authorizationUrl,
            tokenUrl=tokenUrl,
            refreshUrl=refreshUrl,
            scopes=dict(scopes or {}),
        )
        super().__init__(
            flows={"authorizationCode": flow},
            scheme_name=scheme_name,
            description=description,
            auto_error=auto_error,
        )

    async def __call__(self, request: Request) -> str | None:
        return self._bearer_token(request)


class OAuth2PasswordRequestForm:
    """The password flow's token request (RFC 6749 4.3.2), from a form body.

    ``form: Annotated[OAuth2PasswordRequestForm, Depends()]`` gives
    ``username``, ``password``, ``scopes`` (the ``scope`` field split on
    spaces), ``grant_type`` (``password`` when sent), ``client_id`` and
    ``client_secret``; a missing field is FastAPI's 422.
    """

    def __init__(
        self,
        *,
        grant_type: Annotated[str | None, Form(pattern="^password$")] = None,
        username: Annotated[str, Form()],
        password: Annotated[str, Form(json_schema_extra={"format": "password"})],
        scope: Annotated[str, Form()] = "",
        client_id: Annotated[str | None, Form()] = None,
        client_secret: Annotated[str | None, Form(json_schema_extra={"format": "password"})] = None,
    ) -> None:
        self.grant_type = grant_type
        self.username = username
        self.password = password
        self.scopes = scope.split()
        self.client_id = client_id
        self.client_secret = client_secret


class OAuth2PasswordRequestFormStrict(OAuth2PasswordRequestForm):
    """`OAuth2PasswordRequestForm` with ``grant_type=password`` required, as the RFC says."""

    def __init__(
        self,
        grant_type: Annotated[str, Form(pattern="^password$")],
        username: Annotated[str, Form()],
        password: Annotated[str, Form()],
        scope: Annotated[str, Form()] = "",
        client_id: Annotated[str | None, Form()] = None,
        client_secret: Annotated[str | None, Form()] = None,
    ) -> None:
        super().__init__(
            grant_type=grant_type,
            username=username,
            password=password,
            scope=scope,
            client_id=client_id,
            client_secret=client_secret,
        )


class OpenIdConnect(SecurityBase):
    """OpenID Connect discovery at `openIdConnectUrl`; returns the ``Authorization`` header."""

    def __init__(
        self,
        *,
        openIdConnectUrl: str,  # camelCase: FastAPI's (and OpenAPI's) name
        scheme_name: str | None = None,
        description: str | None = None,
        auto_error: bool = True,
    ) -> None:
        self.model = _model(
            type="openIdConnect", description=description, openIdConnectUrl=openIdConnectUrl
        )
        self.scheme_name = scheme_name or type(self).__name__
        self.auto_error = auto_error

    def authenticate_challenge(self) -> str:
        return "Bearer"

    async def __call__(self, request: Request) -> str | None:
        return self._whole_header(request)


class SecurityScopes:
    """The OAuth2 scopes asked of a dependency, by every ``Security(..., scopes=)`` above it.

    A dependency declares a parameter of this type to get them (FastAPI's
    name and shape): ``scopes`` in the order first asked, and ``scope_str``,
    them joined by spaces, as ``WWW-Authenticate: Bearer scope="..."`` wants.
    """

    def __init__(self, scopes: list[str] | None = None) -> None:
        self.scopes: list[str] = scopes or []
        self.scope_str: str = " ".join(self.scopes)

    def __repr__(self) -> str:
        return f"SecurityScopes({self.scopes!r})"
