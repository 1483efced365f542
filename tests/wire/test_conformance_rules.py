"""rawbg.conformance and rawbg.requests.decode_json without a socket: the rules themselves."""

import json

import h11
import pytest

from rawbg.errors import HeadTooLarge, MalformedRequest, UnsupportedTransferCoding
from rawbg.requests import MAX_JSON_DEPTH, InvalidJSON, decode_json, nesting_depth
from rawbg.wire.conformance import check_host, parse_error_rejection, transfer_coding_rejection


def head_with(*fields: str) -> bytes:
    lines = "".join(f"{field}\r\n" for field in fields)
    return f"POST / HTTP/1.1\r\nHost: a\r\n{lines}\r\n5\r\nhello\r\n0\r\n\r\n".encode()


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        (["Transfer-Encoding: gzip"], 501),
        (["transfer-encoding: GZip ; level=1"], 501),
        (["Transfer-Encoding: gzip, chunked"], 501),
        (["Transfer-Encoding: chunked, gzip"], 400),
        (["Transfer-Encoding: gzip, identity"], 400),
        (["Transfer-Encoding: chunked, chunked"], 400),
        (["Transfer-Encoding: gzip, chunked, chunked"], 400),
        (["Transfer-Encoding:"], 400),
        (["Transfer-Encoding: ,"], 400),
        (["Transfer-Encoding: gz ip"], 400),
        (["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"], 400),
        (["Content-Length: 5", "Transfer-Encoding: gzip"], 400),
    ],
)
def test_transfer_coding_rejection_tells_400_from_501(fields, status):
    assert transfer_coding_rejection(head_with(*fields)).status_code == status


def test_a_head_copied_before_its_end_is_a_400():
    partial = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gz"
    assert transfer_coding_rejection(partial).status_code == 400


def test_only_h11_protocol_errors_keep_h11s_status_hint():
    assert isinstance(parse_error_rejection(ValueError("4300 digits"), b""), MalformedRequest)
    too_large = h11.RemoteProtocolError("too big", error_status_hint=431)
    assert isinstance(parse_error_rejection(too_large, b""), HeadTooLarge)
    coding = h11.RemoteProtocolError("Only chunked", error_status_hint=501)
    rejection = parse_error_rejection(coding, head_with("Transfer-Encoding: br"))
    assert isinstance(rejection, UnsupportedTransferCoding)
    assert "br" in rejection.message


@pytest.mark.parametrize(
    "host", [b"example.com", b"a.b:1", b"[::ffff:1.2.3.4]:0", b"[V7.x:y]", b"%41"]
)
def test_valid_hosts_pass(host):
    check_host(host)
    check_host(host)  # the second time from the remembered set


@pytest.mark.parametrize(
    "host",
    [b"a b", b"a\tb", b"u@h", b"h/p", b"h?q", b"h#f", b"a,b", b"[1::2::3]", b"[]", b"%4", b""],
)
def test_invalid_hosts_are_malformed(host):
    with pytest.raises(MalformedRequest):
        check_host(host)


def test_json_nested_exactly_to_the_bound_is_accepted_and_one_more_level_refused():
    at_bound = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    assert nesting_depth(decode_json(at_bound), stop_above=MAX_JSON_DEPTH) == MAX_JSON_DEPTH
    with pytest.raises(InvalidJSON, match="nested more than 256"):
        decode_json(b"[" + at_bound + b"]")
    with pytest.raises(InvalidJSON, match="nested more than 256"):
        decode_json(b'{"a":' * (MAX_JSON_DEPTH + 1) + b"1" + b"}" * (MAX_JSON_DEPTH + 1))


def test_json_bound_holds_for_utf16_bodies_and_ignores_brackets_in_strings():
    deep = ("[" * 300 + "]" * 300).encode("utf-16")
    with pytest.raises(InvalidJSON, match="nested"):
        decode_json(deep)
    wide = json.dumps(["[" * 1000, {"k": "{" * 1000}]).encode("utf-16-le")
    assert decode_json(wide)[1] == {"k": "{" * 1000}


def test_json_that_is_not_json_is_invalid_json_with_the_reason():
    with pytest.raises(InvalidJSON, match="Expecting value"):
        decode_json(b"[1,")
    with pytest.raises(InvalidJSON):
        decode_json(b"\xff\xfe\x00")
    assert nesting_depth(decode_json(b"3"), stop_above=MAX_JSON_DEPTH) == 0
