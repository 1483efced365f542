"""The RFC 9112 rules on a request head that h11 leaves to the server.

h11 parses the request line and the header fields and enforces the framing
rules it needs itself. What it lets through, or refuses without saying why, is
decided here, and docs/server-behavior.md ("Malformed requests") lists the
answers:

* **Version.** h11 accepts any ``HTTP/d.d``. A major version other than 1 gets
  505. A 1.x minor version above 1 is served as 1.1 (RFC 9112 2.3: a recipient
  treats a higher minor version as the highest one it implements), so it must
  carry a Host field as 1.1 must, which h11 checks only for exactly 1.1.
* **Host.** h11 counts Host fields (none on 1.1, or two: 400) but does not look
  at the value. RFC 9112 3.2 asks for a 400 on an invalid one: the value must
  be ``uri-host [ ":" port ]`` of RFC 3986 (`check_host`).
* **Targets and methods.** The asterisk form is for ``OPTIONS`` only (RFC 9112
  3.2.4): another method gets 400, and ``OPTIONS *`` is answered by the server
  itself (`asterisk_options_response`). ``CONNECT`` asks for a tunnel, which an
  origin server like rawbg does not provide: 501.
* **Transfer-Encoding.** h11 accepts exactly one field whose value is
  ``chunked`` and refuses everything else with the same error (hint 501). The
  RFC answer depends on the value (`transfer_coding_rejection`): a list whose
  last coding is not one ``chunked`` cannot be framed (RFC 9112 6.3): 400 and
  close; a well-formed coding rawbg does not implement: 501 (RFC 9112 6.1).
"""

from __future__ import annotations

import ipaddress
import re

import h11

from rawbg.errors import (
    HeadTooLarge,
    MalformedRequest,
    MethodNotImplemented,
    RequestRejected,
    UnsupportedTransferCoding,
    VersionNotSupported,
)
from rawbg.responses import Response
from rawbg.wire.raw_input import request_line_problem

# Host header values remembered as valid, so that the RFC 3986 check costs a set
# lookup for the few values a server sees over and over; 64 covers a server's
# names, ports and addresses many times, and the set is emptied when full.
MAX_REMEMBERED_HOSTS = 64

# RFC 3986 3.2.2. A comma is a sub-delim, so `a,b` is a syntactically valid
# reg-name, but no DNS name holds one, and it is what two Host fields look like
# once combined: refused.
_REG_NAME = rb"(?:[A-Za-z0-9\-._~!$&'()*+;=]|%[0-9A-Fa-f]{2})*"
_IP_LITERAL = rb"\[(?:(?P<ipv6>[0-9A-Fa-f:.]+)|[vV][0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+)\]"
_HOST = re.compile(rb"(?:" + _IP_LITERAL + rb"|" + _REG_NAME + rb")(?::[0-9]*)?")

# RFC 9110 5.6.2
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

#: Host values already found valid. Clients send the same few values over and
#: over, so a set lookup replaces the regex for nearly every request.
_valid_hosts: set[bytes] = set()


def check_host(value: bytes) -> None:
    """Raise `MalformedRequest` unless `value` is ``uri-host [":" port]`` (RFC 3986).

    An empty value is refused too. RFC 9112 3.2 has a client send one when
    the target URI has no authority, which an origin-form target (all rawbg
    serves) always has, so an empty Host names no server: 400.
    """
    if value in _valid_hosts:
        return
    match = _HOST.fullmatch(value) if value else None
    valid = match is not None
    if match is not None and match["ipv6"] is not None:
        try:
            ipaddress.IPv6Address(match["ipv6"].decode("ascii"))
        except ValueError:
            valid = False
    if not valid:
        raise MalformedRequest(f"invalid Host header {value[:100]!r}")
    if len(_valid_hosts) >= MAX_REMEMBERED_HOSTS:
        _valid_hosts.clear()
    _valid_hosts.add(value)


def check_request_line(
    method: bytes, target: bytes, http_version: bytes, *, has_host: bool
) -> None:
    """The request-line rules h11 does not apply (see the module docstring).

    Called only for the rare shapes (not HTTP/1.1, the asterisk form, CONNECT),
    which the connection tests for first.
    """
    if not http_version.startswith(b"1."):
        raise VersionNotSupported(f"HTTP/{http_version.decode('ascii')} is not supported")
    if http_version > b"1.1" and not has_host:
        raise MalformedRequest(f"HTTP/{http_version.decode('ascii')} request without Host")
    if method == b"CONNECT":
        raise MethodNotImplemented("CONNECT is not supported: rawbg is not a proxy")
    if target == b"*" and method != b"OPTIONS":
        raise MalformedRequest(f"the target * is only allowed with OPTIONS, not {method!r}")


def asterisk_options_response(methods: list[str]) -> Response:
    """The server's answer to ``OPTIONS *``: 200, what it serves in ``Allow``, no body."""
    allowed = sorted({*methods, "OPTIONS"})
    return Response(b"", headers={"allow": ", ".join(allowed)})


def parse_error_rejection(exc: Exception, head: bytes) -> RequestRejected:
    """The single translation of an exception from h11's parser into our refusal.

    h11 suggests a status with each `h11.RemoteProtocolError`: 400 for bad
    syntax, 431 for a head that outgrew its buffer, 501 for any
    Transfer-Encoding but ``chunked``. That last one needs the raw `head` to
    tell a coding rawbg lacks (501) from a value that cannot frame a body
    (400). Any other exception h11 lets out while parsing (a ``ValueError``
    from an integer conversion, in h11 before 0.16) is still the client's
    malformed input: 400, never an internal error.
    """
    if not isinstance(exc, h11.RemoteProtocolError):
        return MalformedRequest(f"malformed request ({type(exc).__name__} in the parser)")
    status = exc.error_status_hint
    if status == HeadTooLarge.status_code:
        # a request line that never was one (a 100 KB method) is malformed, not too large
        problem = request_line_problem(head)
        if problem is not None:
            return MalformedRequest(problem)
        return HeadTooLarge("request head too large")
    if status == UnsupportedTransferCoding.status_code:
        return transfer_coding_rejection(head)
    return MalformedRequest(str(exc) or "malformed request", status)


def transfer_coding_rejection(head: bytes) -> RequestRejected:
    """Why h11 refused the Transfer-Encoding of the raw request `head`.

    h11 refuses any Transfer-Encoding but one ``chunked`` field with one error,
    and says nothing of the value; the answer depends on it, so the head is
    read again here (only on this error path).
    """
    head = head.lstrip(b"\r\n")
    end = re.search(rb"\n\r?\n", head)
    if end is None:  # the copy was taken before the head was complete
        return MalformedRequest("unsupported Transfer-Encoding")
    values: list[bytes] = []
    content_length = False
    for line in head[: end.start()].split(b"\n")[1:]:
        line = line.rstrip(b"\r")
        name, _, value = line.partition(b":")
        name = name.lower()
        if name == b"transfer-encoding":
            values.append(value.strip(b" \t"))
        elif name == b"content-length":
            content_length = True
    if not values:  # h11 saw one we did not: refuse, as h11 did, but as malformed
        return MalformedRequest("unsupported Transfer-Encoding")
    if len(values) > 1:
        return MalformedRequest("more than one Transfer-Encoding field")
    if content_length:
        return MalformedRequest("both Content-Length and Transfer-Encoding")
    codings = [
        element.partition(b";")[0].strip(b" \t").lower() for element in values[0].split(b",")
    ]
    if not all(_TOKEN.fullmatch(coding) for coding in codings):
        return MalformedRequest(f"malformed Transfer-Encoding {values[0][:100]!r}")
    if len(codings) > 1 and (codings[-1] != b"chunked" or codings.count(b"chunked") > 1):
        return MalformedRequest("chunked is not the last and only chunked transfer coding")
    unknown = ", ".join(c.decode("ascii") for c in codings if c != b"chunked")
    if not unknown:
        return MalformedRequest("unsupported Transfer-Encoding")
    return UnsupportedTransferCoding(f"transfer coding {unknown} is not implemented")
