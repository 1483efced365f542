"""rawbg.wire.raw_input without a socket: the scanners give one answer however the bytes are cut."""

from __future__ import annotations

import random
from typing import TypeVar

import pytest

from rawbg.wire.raw_input import (
    MAX_METHOD_LENGTH,
    ChunkedScanner,
    HeadScanner,
    check_head_bytes,
    head_may_be_malformed,
    request_line_problem,
)

Scanner = TypeVar("Scanner", HeadScanner, ChunkedScanner)

HEADS = {
    b"GET / HTTP/1.1\r\nhost: x\r\n\r\n": None,
    b"GET / HTTP/1.1\nhost: x\n\n": None,  # bare LF lines: h11 serves them
    b"GET / HTTP/1.1\r\nx: a\tb \xe9\xff\r\n\r\n": None,
    b"GET / HTTP/1.1\r\nx: a\x01b\r\n\r\n": "control character",
    b"GET / HTTP/1.1\r\nx: a\x7f\r\n\r\n": "control character",
    b"GET / HTTP/1.1\r\nx: a\r\n b\r\n\r\n": "obs-fold",
    b"GET / HTTP/1.1\r\nx: a\r\n\tb\r\n\r\n": "obs-fold",
}


def fed(scanner: Scanner, data: bytes, cuts: list[int]) -> Scanner:
    """`scanner` after `data`, fed in the pieces that `cuts` makes."""
    start = 0
    for cut in [*cuts, len(data)]:
        scanner.feed(data[start:cut])
        start = cut
    return scanner


def scanned(data: bytes, cuts: list[int]) -> HeadScanner:
    return fed(HeadScanner(), data, cuts)


@pytest.mark.parametrize("head", list(HEADS))
def test_a_head_gets_the_same_answer_in_one_piece_in_bytes_and_at_random_cuts(head):
    expected = HEADS[head]
    rng = random.Random(7)
    cutting = [
        [],
        list(range(1, len(head))),
        *(sorted(rng.sample(range(1, len(head)), 5)) for _ in range(20)),
    ]
    for cuts in cutting:
        scanner = scanned(head, cuts)
        if expected is None:
            assert scanner.error is None, (cuts, scanner.error)
            assert scanner.done
        else:
            assert scanner.error is not None and expected in scanner.error, (cuts, scanner.error)
    whole = check_head_bytes(head + b"body \x01 \n there")  # what follows the head is not read
    assert whole is None if expected is None else expected in str(whole)


def test_a_copy_without_the_head_end_cannot_tell():
    assert check_head_bytes(b"GET / HTTP/1.1\r\nhost: x\r\n") is False


@pytest.mark.parametrize(
    "prefix",
    [b"G", b"GET", b"GET ", b"GET /a", b"GET /a ", b"GET /a HTTP/1", b"GET /a HTTP/1.1\r", b"X"],
)
def test_every_beginning_of_a_request_line_may_still_become_one(prefix):
    assert request_line_problem(prefix) is None


@pytest.mark.parametrize(
    "prefix",
    [b"{", b"GE(T", b"GET  /", b"GET /\r\n", b"GET / HTTQ", b"GET / HTTP/1.1x", b"\x9d"],
)
def test_bytes_that_cannot_begin_a_request_line_are_said_so(prefix):
    assert request_line_problem(prefix) is not None


def test_a_method_one_byte_over_the_bound_is_refused():
    assert request_line_problem(b"A" * MAX_METHOD_LENGTH) is None
    assert "method longer" in str(request_line_problem(b"A" * (MAX_METHOD_LENGTH + 1)))


def chunked(data: bytes, cuts: list[int]) -> ChunkedScanner:
    return fed(ChunkedScanner(), data, cuts)


def test_a_chunked_body_ends_where_its_trailer_section_does_however_it_is_cut():
    body = b"3;a=b\r\nabc\r\n10\r\n" + b"x" * 16 + b"\r\n0\r\nt: v\r\n\r\n"
    rng = random.Random(3)
    for cuts in [
        [],
        list(range(1, len(body))),
        *(sorted(rng.sample(range(1, len(body)), 4)) for _ in range(30)),
    ]:
        scanner = chunked(body + b"GET / HTTP/1.1\r\n\x01", cuts)  # the next request is not read
        assert scanner.error is None and scanner.done, (cuts, scanner.error)


def test_chunk_data_that_holds_what_looks_like_a_bad_chunk_line_is_data():
    data = b"x;\x01\r\n" * 10
    body = b"%x\r\n" % len(data) + data + b"\r\n0\r\n\r\n"
    scanner = chunked(body, list(range(1, len(body), 3)))
    assert scanner.error is None and scanner.done


def test_a_chunk_line_longer_than_its_bound_is_refused_before_it_ends():
    scanner = ChunkedScanner()
    scanner.feed(b"5;" + b"a" * 5000)
    assert scanner.error is not None and "longer" in scanner.error


def test_chunk_data_not_followed_by_crlf_is_refused():
    assert chunked(b"5\r\nhelloX\r\n0\r\n\r\n", []).error == "chunk data not followed by CRLF"


def test_the_screen_passes_a_clean_head_and_flags_what_the_exact_check_must_look_at():
    clean = b"GET / HTTP/1.1\r\nhost: x\r\nx: a\tb \xe9\r\n\r\n"
    assert not head_may_be_malformed(clean)
    assert head_may_be_malformed(clean + b"body \x01")  # flagged, and then found fine:
    assert check_head_bytes(clean + b"body \x01") is None
    assert head_may_be_malformed(b"GET / HTTP/1.1\r\nx: a\r\n\tb\r\n\r\n")
    assert head_may_be_malformed(clean + b"x" * 5000)  # too long to screen: looked at
