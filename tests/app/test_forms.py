"""Form(), File(), UploadFile and form models, as a handler sees them (FastAPI's behaviour)."""

import subprocess
import sys
import textwrap
from typing import Annotated

import pydantic
import pytest

from rawbg import App, Depends, File, Form, Request, RouteDefinitionError, UploadFile
from rawbg.testing import serve_app
from tests.support.forms import MULTIPART, URLENCODED, multipart, urlencoded


def missing(*loc: str) -> dict:
    return {"type": "missing", "loc": list(loc), "msg": "Field required", "input": None}


def login_app() -> App:
    app = App()

    @app.post("/login")
    async def login(username: Annotated[str, Form()], password: str = Form()):
        return {"username": username, "password": password}

    @app.post("/flags")
    async def flags(tags: Annotated[list[str], Form()], subscribe: bool = Form(False)):
        return {"tags": tags, "subscribe": subscribe}

    return app


async def test_fields_of_an_urlencoded_body_reach_the_handler():
    async with serve_app(login_app()) as client:
        body = urlencoded([("username", "ada lovelace"), ("password", "s3cr&t=")])
        response = await client.post("/login", content=body, headers={"content-type": URLENCODED})
    assert response.status_code == 200, response.body
    assert response.json() == {"username": "ada lovelace", "password": "s3cr&t="}


async def test_fields_of_a_multipart_body_reach_the_handler():
    async with serve_app(login_app()) as client:
        body = multipart([("username", "ada"), ("password", "x\r\ny")])
        response = await client.post("/login", content=body, headers={"content-type": MULTIPART})
    assert response.json() == {"username": "ada", "password": "x\r\ny"}


async def test_missing_fields_are_fastapis_422_with_body_locations():
    async with serve_app(login_app()) as client:
        body = urlencoded([("username", "ada")])
        one = await client.post("/login", content=body, headers={"content-type": URLENCODED})
        none = await client.post("/login")
    assert one.status_code == 422
    assert one.json() == {"detail": [missing("body", "password")]}
    assert none.json() == {"detail": [missing("body", "username"), missing("body", "password")]}


async def test_a_json_body_sent_to_a_form_route_leaves_every_field_missing():
    async with serve_app(login_app()) as client:
        response = await client.post("/login", json={"username": "ada", "password": "x"})
    assert response.status_code == 422
    assert response.json() == {"detail": [missing("body", "username"), missing("body", "password")]}


async def test_an_empty_value_counts_as_not_sent_and_a_list_takes_every_value():
    async with serve_app(login_app()) as client:
        body = urlencoded([("tags", "a"), ("tags", "b"), ("subscribe", "")])
        sent = await client.post("/flags", content=body, headers={"content-type": URLENCODED})
        checked = urlencoded([("tags", "a"), ("subscribe", "on")])
        on = await client.post("/flags", content=checked, headers={"content-type": URLENCODED})
    assert sent.json() == {"tags": ["a", "b"], "subscribe": False}
    assert on.json() == {"tags": ["a"], "subscribe": True}


def upload_app() -> App:
    app = App()

    @app.post("/upload")
    async def upload(file: UploadFile, note: Annotated[str, Form()] = ""):
        content = await file.read()
        return {
            "filename": file.filename,
            "content_type": file.content_type,
            "size": file.size,
            "content": content.decode(),
            "note": note,
        }

    @app.post("/bytes")
    async def as_bytes(
        file: Annotated[bytes, File()], other: Annotated[bytes | None, File()] = None
    ):
        return {"size": len(file), "other": other is None}

    @app.post("/many")
    async def many(files: list[UploadFile]):
        return [[f.filename, (await f.read()).decode()] for f in files]

    @app.post("/optional")
    async def optional(file: UploadFile | None = None):
        return {"sent": file is not None}

    return app


async def test_an_uploaded_file_is_an_UploadFile_with_its_name_type_size_and_bytes():
    body = multipart(
        [("note", "n"), ("file", "a b.txt", b"hello\r\n--not a boundary", "text/plain")]
    )
    async with serve_app(upload_app()) as client:
        response = await client.post("/upload", content=body, headers={"content-type": MULTIPART})
    assert response.json() == {
        "filename": "a b.txt",
        "content_type": "text/plain",
        "size": 23,  # hello, CRLF, and the 16 bytes after it
        "content": "hello\r\n--not a boundary",
        "note": "n",
    }


async def test_a_file_read_as_bytes_and_repeated_files_as_a_list():
    body = multipart([("file", "a", b"12345", "x/y")])
    files = multipart([("files", "one", b"1", "x/y"), ("files", "two", b"22", "x/y")])
    async with serve_app(upload_app()) as client:
        as_bytes = await client.post("/bytes", content=body, headers={"content-type": MULTIPART})
        many = await client.post("/many", content=files, headers={"content-type": MULTIPART})
    assert as_bytes.json() == {"size": 5, "other": True}
    assert many.json() == [["one", "1"], ["two", "22"]]


async def test_a_browsers_empty_file_input_counts_as_not_sent():
    body = multipart([("file", "", b"", "application/octet-stream")])
    async with serve_app(upload_app()) as client:
        optional = await client.post("/optional", content=body, headers={"content-type": MULTIPART})
        required = await client.post("/upload", content=body, headers={"content-type": MULTIPART})
    assert optional.json() == {"sent": False}
    assert required.json() == {"detail": [missing("body", "file")]}


async def test_a_text_field_where_an_UploadFile_is_due_is_fastapis_422():
    body = multipart([("file", "just text")])
    async with serve_app(upload_app()) as client:
        response = await client.post("/upload", content=body, headers={"content-type": MULTIPART})
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {
            "type": "value_error",
            "loc": ["body", "file"],
            "msg": "Value error, Expected UploadFile, received: <class 'str'>",
            "input": "just text",
            "ctx": {"error": {}},
        }
    ]


class Credentials(pydantic.BaseModel):
    username: str
    scopes: list[str] = []
    model_config = {"extra": "forbid"}


async def test_a_form_model_is_filled_from_the_forms_fields_and_refuses_extra_ones():
    app = App()

    @app.post("/token")
    async def token(data: Annotated[Credentials, Form()]):
        return data

    async with serve_app(app) as client:
        good = urlencoded([("username", "ada"), ("scopes", "a"), ("scopes", "b")])
        ok = await client.post("/token", content=good, headers={"content-type": URLENCODED})
        extra = urlencoded([("username", "ada"), ("x", "1")])
        bad = await client.post("/token", content=extra, headers={"content-type": URLENCODED})
    assert ok.json() == {"username": "ada", "scopes": ["a", "b"]}
    assert bad.json()["detail"] == [
        {
            "type": "extra_forbidden",
            "loc": ["body", "x"],
            "msg": "Extra inputs are not permitted",
            "input": "1",
        }
    ]


class PasswordForm:
    """The shape of FastAPI's OAuth2PasswordRequestForm: a class dependency of form fields."""

    def __init__(
        self,
        *,
        grant_type: Annotated[str | None, Form(pattern="^password$")] = None,
        username: Annotated[str, Form()],
        password: Annotated[str, Form()],
        scope: Annotated[str, Form()] = "",
    ):
        self.grant_type, self.username, self.password = grant_type, username, password
        self.scopes = scope.split()


async def test_a_class_dependency_of_form_fields_is_filled_from_the_form():
    app = App()

    @app.post("/token")
    async def token(form: Annotated[PasswordForm, Depends()]):
        return {"user": form.username, "scopes": form.scopes, "grant": form.grant_type}

    async with serve_app(app) as client:
        body = urlencoded([("username", "ada"), ("password", "x"), ("scope", "me items")])
        ok = await client.post("/token", content=body, headers={"content-type": URLENCODED})
        wrong = urlencoded([("username", "a"), ("password", "x"), ("grant_type", "implicit")])
        bad = await client.post("/token", content=wrong, headers={"content-type": URLENCODED})
    assert ok.json() == {"user": "ada", "scopes": ["me", "items"], "grant": None}
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "grant_type"]
    assert bad.json()["detail"][0]["type"] == "string_pattern_mismatch"


async def test_request_form_gives_every_value_and_obeys_starlettes_limit_arguments():
    app = App()

    @app.post("/echo")
    async def echo(request: Request):
        form = await request.form(max_fields=3)
        return {"items": [[k, v] for k, v in form.multi_items()], "last": form["a"]}

    async with serve_app(app) as client:
        body = urlencoded([("a", "1"), ("b", "2"), ("a", "3")])
        ok = await client.post("/echo", content=body, headers={"content-type": URLENCODED})
        over = urlencoded([("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")])
        refused = await client.post("/echo", content=over, headers={"content-type": URLENCODED})
    assert ok.json() == {"items": [["a", "1"], ["b", "2"], ["a", "3"]], "last": "3"}
    assert refused.status_code == 400
    assert refused.json() == {"detail": "too many form fields: the limit is 3"}


async def test_form_limits_of_the_app_and_of_a_route_apply_with_400s_that_name_them():
    app = App(form_limits={"max_fields": 2})

    @app.post("/app-limit")
    async def app_limit(a: Annotated[str, Form()]):
        return a

    @app.post("/route-limit", form_limits={"max_part_size": 4})
    async def route_limit(a: Annotated[str, Form()]):
        return a

    async with serve_app(app) as client:
        three = urlencoded([("a", "1"), ("b", "2"), ("c", "3")])
        fields = await client.post(
            "/app-limit", content=three, headers={"content-type": URLENCODED}
        )
        long = multipart([("a", "12345")])
        part = await client.post("/route-limit", content=long, headers={"content-type": MULTIPART})
        short = multipart([("a", "1234")])
        fits = await client.post("/route-limit", content=short, headers={"content-type": MULTIPART})
    assert (fields.status_code, fields.json()) == (
        400,
        {"detail": "too many form fields: the limit is 2"},
    )
    assert (part.status_code, part.json()) == (400, {"detail": "form field 'a' is over 4 bytes"})
    assert fits.json() == "1234"


def test_an_unknown_form_limit_is_an_error_at_registration():
    app = App()
    with pytest.raises(TypeError, match=r"unknown form limit.*max_feilds"):

        @app.post("/x", form_limits={"max_feilds": 1})
        async def handler(a: Annotated[str, Form()]):
            return a


def test_a_route_that_reads_a_json_body_and_a_form_is_an_error_at_registration():
    app = App()
    with pytest.raises(RouteDefinitionError, match="'item' is read from a JSON body and 'a'"):

        @app.post("/x")
        async def handler(item: dict, a: Annotated[str, Form()]):
            return a


def test_without_the_forms_extra_a_form_route_is_an_error_naming_the_extra():
    code = """
        import sys
        sys.modules["multipart"] = None  # as if the forms extra were not installed
        from typing import Annotated
        from rawbg import App, Form, RouteDefinitionError, UploadFile
        app = App()

        @app.post("/plain")
        async def plain(q: str = ""):
            return q

        for annotation in (Annotated[str, Form()], UploadFile):
            try:
                @app.post("/form")
                async def form(a: annotation):
                    return a
            except RouteDefinitionError as exc:
                print(exc)
        """
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2
    for line in lines:
        assert "parameter 'a'" in line
        assert "pip install 'rawbg[forms]'" in line


def test_an_old_python_multipart_in_the_way_is_named_as_the_reason(tmp_path):
    # fastapi-jwt pins python-multipart 0.0.6, FastAPI's form parser: a package named
    # `multipart`, found before defnull's module. Its face, as rawbg meets it:
    shadow = tmp_path / "multipart"
    shadow.mkdir()
    (shadow / "__init__.py").write_text(
        '__version__ = "0.0.6"\n\n\ndef create_form_parser(headers, on_field, on_file):\n'
        "    raise NotImplementedError\n"
    )
    code = """
        import sys
        sys.path.insert(0, sys.argv[1])
        from typing import Annotated
        from rawbg import App, Form, RouteDefinitionError
        try:
            @App().post("/token")
            async def token(username: Annotated[str, Form()]):
                return username
        except RouteDefinitionError as exc:
            print(exc)
        """
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "parameter 'username'" in done.stdout
    assert "python-multipart 0.0.6 (FastAPI's form parser)" in done.stdout
    assert "pip uninstall python-multipart" in done.stdout
    assert "pip install 'rawbg[forms]'" in done.stdout


def part_with_headers(extra: str) -> bytes:
    from tests.support.forms import BOUNDARY

    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="a"\r\n{extra}\r\nv\r\n'
        f"--{BOUNDARY}--\r\n"
    ).encode()


@pytest.mark.parametrize(
    ("extra", "limits", "status"),
    [
        ("X-Long: " + "h" * 900 + "\r\n", {"max_part_header_size": 1024}, 200),
        ("X-Long: " + "h" * 1100 + "\r\n", {"max_part_header_size": 1024}, 400),
        ("".join(f"X-{i}: v\r\n" for i in range(3)), {"max_part_headers": 4}, 200),
        ("".join(f"X-{i}: v\r\n" for i in range(4)), {"max_part_headers": 4}, 400),
    ],
    ids=["header-fits", "header-too-long", "headers-fit", "too-many-headers"],
)
async def test_the_size_and_count_of_part_headers_are_bounded(extra, limits, status):
    app = App()

    @app.post("/a", form_limits=limits)
    async def handler(a: Annotated[str, Form()]):
        return a

    async with serve_app(app) as client:
        response = await client.post(
            "/a", content=part_with_headers(extra), headers={"content-type": MULTIPART}
        )
    assert response.status_code == status, response.body
    if status == 400:
        assert response.json()["detail"] in (
            "a part header line is over 1024 bytes",
            "a part has more than 4 header lines",
        )
