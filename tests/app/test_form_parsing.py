"""rawbg.forms on its own: a body cut into pieces anywhere parses as the whole body does."""

import asyncio
from urllib.parse import urlencode

import pytest
from hypothesis import given, settings, strategies as st

from rawbg.forms import DEFAULT_LIMITS, FormError, FormLimits, parse_form
from rawbg.uploads import UploadFile
from tests.support.forms import MULTIPART, URLENCODED, multipart

names = st.sampled_from(["a", "b", "name", "x y", "é"])
texts = st.text(alphabet="ab &=%+;é\r\n-", max_size=40)


def cut(body: bytes, points: list[int]) -> list[bytes]:
    edges = sorted({min(p, len(body)) for p in points})
    return [body[a:b] for a, b in zip([0, *edges], [*edges, len(body)], strict=True)]


def parse(content_type: str, chunks: list[bytes], limits: FormLimits = DEFAULT_LIMITS):
    async def pieces():
        for chunk in chunks:
            yield chunk

    async def run():
        form = await parse_form(content_type, pieces(), limits)
        items = []
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                items.append((name, value.filename, await value.read()))
            else:
                items.append((name, value))
        await form.close()
        return items

    return asyncio.run(run())


@settings(max_examples=150, deadline=None)
@given(
    fields=st.lists(st.tuples(names, texts), max_size=8),
    points=st.lists(st.integers(0, 400), max_size=6),
)
def test_an_urlencoded_body_cut_anywhere_gives_the_same_fields(fields, points):
    body = urlencode(fields).encode()
    assert parse(URLENCODED, cut(body, points)) == fields


@settings(max_examples=150, deadline=None)
@given(
    fields=st.lists(st.tuples(names, texts), max_size=4),
    files=st.lists(st.tuples(names, st.binary(max_size=300)), max_size=3),
    points=st.lists(st.integers(0, 2000), max_size=8),
)
def test_a_multipart_body_cut_anywhere_gives_the_same_fields_and_files(fields, files, points):
    parts = [*fields, *((name, f"f{i}.bin", data, "x/y") for i, (name, data) in enumerate(files))]
    body = multipart(parts)
    expected = [*fields, *((name, f"f{i}.bin", data) for i, (name, data) in enumerate(files))]
    assert parse(MULTIPART, cut(body, points)) == expected


def test_a_body_of_another_media_type_is_an_empty_form_and_is_not_read():
    assert parse("application/json", [b'{"a": 1}']) == []
    assert parse("", [b"a=1"]) == []


@pytest.mark.parametrize(
    ("content_type", "body", "detail"),
    [
        ("multipart/form-data", b"--x\r\n", "multipart/form-data without a boundary"),
        ("multipart/form-data; boundary=" + "b" * 201, b"", "unusable multipart boundary"),
        (MULTIPART, b"preamble\r\n" + multipart([("a", "1")]), "does not open with its boundary"),
        (MULTIPART, multipart([("a", "1")])[:-20], "malformed multipart body"),
        (URLENCODED, b"a=" + b"x" * 70, "form field 'a' is over 64 bytes"),
        (URLENCODED, b"&".join([b"a=1"] * 5), "too many form fields: the limit is 4"),
    ],
    ids=["no-boundary", "huge-boundary", "preamble", "cut-short", "field-size", "field-count"],
)
def test_a_body_that_is_not_the_form_it_claims_is_a_400_naming_why(content_type, body, detail):
    with pytest.raises(FormError) as raised:
        parse(content_type, [body], FormLimits(max_part_size=64, max_fields=4))
    assert raised.value.status_code == 400
    assert detail in raised.value.detail
