"""A seeded fuzzer of form parsing through the server, over real sockets.

``python -m tests.support.form_fuzz --seconds 120 --seed 1`` serves form routes in
this process (fields, files, ``request.form()``) and sends them, from several
clients at once, multipart and urlencoded bodies that are broken on purpose:
valid forms mutated byte by byte (tests/support/fuzz.py's mutations), and the
shapes a parser must survive, each built at a random size: a malformed or
absurd boundary, an endless preamble, huge and numerous part headers, no
closing boundary, the boundary cut across reads, parts past every form limit,
non-UTF-8 headers, LF-only lines. The Content-Length is the body's, or (at
random) one that does not match it.

It fails on a 500, any error logged by rawbg, a connection neither answered
nor closed in time (a hang), a temporary file left in the upload directory,
or a normal form not served at the end. The suite runs it for a few seconds
(tests/server/test_form_fuzz.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from rawbg import App, Form, Request, UploadFile, serving
from tests.support import fuzz
from tests.support.forms import temp_files

KiB = 1024
MiB = 1024 * KiB
BOUNDARY = b"fuzzB0undary"

#: the routes' body limit: room for a large hostile body, small enough to stay fast
MAX_BODY = 4 * MiB
#: small form limits, so that going past them is cheap to reach
LIMITS = {"max_fields": 20, "max_files": 4, "max_part_size": 64 * KiB}


def fuzz_form_app() -> App:
    app = App()

    @app.post("/login", max_body_size=MAX_BODY, form_limits=LIMITS)
    async def login(username: Annotated[str, Form()], tags: Annotated[list[str], Form()] = []):  # noqa: B006
        return {"username": username, "tags": len(tags)}

    @app.post("/upload", max_body_size=MAX_BODY, form_limits=LIMITS)
    async def upload(files: list[UploadFile], note: Annotated[str, Form()] = ""):
        return {"sizes": [f.size for f in files], "note": len(note)}

    @app.post("/raw", max_body_size=MAX_BODY)
    async def raw(request: Request):
        form = await request.form(max_fields=20, max_files=4, max_part_size=64 * KiB)
        return {"fields": len(form.multi_items())}

    return app


def part(name: bytes, value: bytes, filename: bytes | None = None, headers: bytes = b"") -> bytes:
    disposition = b'form-data; name="' + name + b'"'
    if filename is not None:
        disposition += b'; filename="' + filename + b'"'
    return b"Content-Disposition: " + disposition + b"\r\n" + headers + b"\r\n" + value


def body_of(parts: list[bytes], boundary: bytes = BOUNDARY, close: bool = True) -> bytes:
    out = b"".join(b"--" + boundary + b"\r\n" + p + b"\r\n" for p in parts)
    return out + (b"--" + boundary + b"--\r\n" if close else b"")


def valid_form(rng: random.Random) -> tuple[bytes, bytes]:
    parts = [part(b"username", b"ada"), part(b"note", b"n" * rng.randint(0, 300))]
    for index in range(rng.randint(0, 3)):
        content = rng.randbytes(rng.randint(0, 4000))
        parts.append(part(b"files", content, b"f%d.bin" % index, b"Content-Type: x/y\r\n"))
    return body_of(parts), b"multipart/form-data; boundary=" + BOUNDARY


# Each makes (body, content type) of one hostile shape, at a size the rng picks.
def endless_preamble(rng: random.Random) -> tuple[bytes, bytes]:
    junk = rng.choice([b"A", b"\r\n", b"-", b"--fuzzB0und"]) * rng.randint(1, 3 * MiB)
    return junk + body_of([part(b"username", b"x")]), b"multipart/form-data; boundary=" + BOUNDARY


def huge_header_line(rng: random.Random) -> tuple[bytes, bytes]:
    header = b"X-Big: " + b"h" * rng.randint(8 * KiB, 1 * MiB) + b"\r\n"
    return body_of(
        [part(b"username", b"x", headers=header)]
    ), b"multipart/form-data; boundary=" + BOUNDARY


def many_headers(rng: random.Random) -> tuple[bytes, bytes]:
    headers = b"".join(b"X-%d: v\r\n" % i for i in range(rng.randint(9, 20000)))
    return body_of(
        [part(b"username", b"x", headers=headers)]
    ), b"multipart/form-data; boundary=" + BOUNDARY


def bad_boundary(rng: random.Random) -> tuple[bytes, bytes]:
    boundary = rng.choice(
        [b"", b'""', b"a" * rng.randint(71, 100_000), b"\xff\xfe", b"x\r\ny", b";", b" "]
    )
    body = body_of([part(b"username", b"x")], boundary=boundary or b"z")
    return body, b"multipart/form-data; boundary=" + boundary


def no_closing_boundary(rng: random.Random) -> tuple[bytes, bytes]:
    parts = [part(b"username", b"x"), part(b"files", rng.randbytes(rng.randint(0, 200_000)), b"f")]
    return body_of(parts, close=False), b"multipart/form-data; boundary=" + BOUNDARY


def over_the_limits(rng: random.Random) -> tuple[bytes, bytes]:
    shape = rng.randrange(3)
    if shape == 0:  # too many fields
        parts = [part(b"tags", b"t") for _ in range(rng.randint(21, 5000))]
    elif shape == 1:  # too many files
        parts = [part(b"files", b"f", b"f%d" % i) for i in range(rng.randint(5, 500))]
    else:  # a field larger than max_part_size
        parts = [part(b"username", b"u" * rng.randint(64 * KiB + 1, 3 * MiB))]
    return body_of(parts), b"multipart/form-data; boundary=" + BOUNDARY


def odd_encoding(rng: random.Random) -> tuple[bytes, bytes]:
    choice = rng.randrange(4)
    if choice == 0:  # LF-only lines
        body = body_of([part(b"username", b"x")]).replace(b"\r\n", b"\n")
    elif choice == 1:  # a header that is not UTF-8
        body = body_of([part(b"user\xffname", b"x", headers=b"X-\xfe: \xff\r\n")])
    elif choice == 2:  # no Content-Disposition
        body = b"--" + BOUNDARY + b"\r\nX-A: b\r\n\r\nvalue\r\n--" + BOUNDARY + b"--\r\n"
    else:  # the boundary inside the data, with one byte changed
        body = body_of([part(b"username", b"x\r\n--fuzzB0undarY--\r\n")])
    return body, b"multipart/form-data; boundary=" + BOUNDARY


def urlencoded(rng: random.Random) -> tuple[bytes, bytes]:
    fields = [b"username=%d" % rng.randrange(10**6)]
    fields += [b"tags=" + b"%FF" * rng.randint(0, 50) for _ in range(rng.randint(0, 30))]
    if rng.random() < 0.2:
        fields.append(b"username=" + b"x" * rng.randint(64 * KiB, 2 * MiB))
    return b"&".join(fields), b"application/x-www-form-urlencoded"


SHAPES: list[Callable[[random.Random], tuple[bytes, bytes]]] = [
    valid_form,
    endless_preamble,
    huge_header_line,
    many_headers,
    bad_boundary,
    no_closing_boundary,
    over_the_limits,
    odd_encoding,
    urlencoded,
]


def request(rng: random.Random) -> bytes:
    shape = rng.choice(SHAPES)
    body, content_type = shape(rng)
    if rng.random() < 0.4:  # and the usual mutations on top
        body = fuzz.mutate(rng, body)
    length = len(body)
    if rng.random() < 0.1:  # a Content-Length that lies
        length = max(0, length + rng.randint(-100, 100))
    path = rng.choice([b"/login", b"/upload", b"/raw"])
    head = (
        b"POST " + path + b" HTTP/1.1\r\nHost: a\r\nContent-Type: " + content_type + b"\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % length
    )
    return head + body


async def fuzz_forms(port: int, *, seconds: float, seed: int, clients: int = 6) -> fuzz.Figures:
    figures = fuzz.Figures()
    deadline = time.monotonic() + seconds

    async def client(number: int) -> None:
        rng = random.Random(seed * 1000 + number)
        while time.monotonic() < deadline:
            data = request(rng)
            figures.sent += 1
            try:
                outcome = await fuzz.one_request(port, data)
            except TimeoutError:
                outcome = "hang"
                figures.hangs.append(data[:300])
            figures.outcomes[outcome] += 1

    await asyncio.gather(*(client(n) for n in range(clients)))
    return figures


async def still_takes_a_form(port: int) -> bool:
    body, content_type = valid_form(random.Random(0))
    head = b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Type: %s\r\n" % content_type
    data = head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body
    return await fuzz.one_request(port, data) == "200"


async def run(
    *, seconds: float, seed: int, spool: Path | None = None
) -> tuple[fuzz.Figures, list[logging.LogRecord], bool, list[str]]:
    """Fuzz the form routes for `seconds`; the figures, rawbg's error records, whether a
    normal form was served at the end, and the temporary files left (in `spool`)."""
    errors = fuzz.ErrorRecords()
    rawbg_logger = logging.getLogger("rawbg")
    rawbg_logger.addHandler(errors)
    with contextlib.ExitStack() as stack:
        directory = spool or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        saved, tempfile.tempdir = tempfile.tempdir, str(directory)
        try:
            async with serving(
                fuzz_form_app(), port=0, access_log=False, timeout_keep_alive=fuzz.KEEP_ALIVE
            ) as server:
                figures = await fuzz_forms(server.port, seconds=seconds, seed=seed)
                served = await still_takes_a_form(server.port)
                await server.wait_background_idle()
            left = temp_files(directory)
        finally:
            tempfile.tempdir = saved
            rawbg_logger.removeHandler(errors)
    return figures, errors.records, served, left


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    figures, errors, served, left = asyncio.run(run(seconds=args.seconds, seed=args.seed))
    print(fuzz.report(figures, errors, served))
    print(f"temporary files left: {len(left)}")
    bad = figures.outcomes["500"] + figures.outcomes["hang"] + figures.outcomes["garbage"]
    return 1 if bad or errors or not served or left else 0


if __name__ == "__main__":
    raise SystemExit(main())
