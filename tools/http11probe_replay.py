"""Http11Probe's score for rawbg without .NET: ``python -m tools.http11probe_replay SNAPSHOT``.

Http11Probe (github.com/MDA2AV/Http11Probe) is a public HTTP/1.1 conformance
suite written in C#; this machine has no .NET. SNAPSHOT is a checkout of it.
The tool reads its suite files (``src/Http11Probe/TestCases/Suites/*.cs``) at run
time, so nothing of Http11Probe is kept in this repository, and:

1. takes every test case the suites ``yield return`` and keeps the scored ones
   (``Scored`` not false: 161 at the snapshot of 2026-02);
2. evaluates each case's payload factory, expectation and validator with
   `tools.csharp_subset`, a small interpreter of the C# they are written in
   (a case that uses something outside it is reported, never counted);
3. serves the probe's own app on rawbg (``GET /`` says ``OK``, ``POST /``
   echoes the body, ``/echo`` lists the request's headers, as the probe's
   Python servers do) on a free port of 127.0.0.1, ``--loop`` chosen;
4. runs each case as the probe's runner does (``TestRunner``, ``RawTcpClient``):
   one connection, the payload sent (a sequence case: step by step, with its
   pauses), the response read until its head is in (5 s at most), then 100 ms
   and what has arrived by then, then 50 ms and whether the server has closed;
   the case's verdict from its validator, or from its expected status and
   ``AllowConnectionClose`` as ``ExpectedBehavior.Evaluate`` decides;
5. prints each scored case's verdict and the score: Pass among the scored.

Timing is the probe's: a request that rawbg answers only with the 408 of its
5 s head deadline races the probe's 5 s read timeout, as it does under .NET.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import select
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rawbg import App, PlainTextResponse, Request
from tools.csharp_subset import Env, Headers, Obj, Parser, Unsupported, extent, load_class

READ_TIMEOUT = 5.0  # TestRunOptions.ReadTimeout
BUFFER = 65536  # RawTcpClient's receive buffer


@dataclass
class Case:
    id: str
    scored: bool
    spec: Obj | None  # the TestCase or SequenceTestCase object, once evaluated
    problem: str = ""  # why it could not be evaluated


def read_cases(snapshot: Path) -> list[Case]:
    """Every test case of the snapshot's suites, evaluated as far as the subset allows."""
    suites = snapshot / "src" / "Http11Probe" / "TestCases" / "Suites"
    if not suites.is_dir():
        raise SystemExit(f"error: {suites} is not there: is {snapshot} an Http11Probe checkout?")
    cases = []
    for path in sorted(suites.glob("*.cs")):
        source = path.read_text()
        env = load_class(source)
        for m in re.finditer(r"yield return\s+", source):
            text = source[m.end() : extent(source, m.end(), block=False)]
            found = re.search(r'Id\s*=\s*"([^"]+)"', text)
            case_id = found.group(1) if found else f"{path.stem}@{m.start()}"
            scored = re.search(r"Scored\s*=\s*false", text) is None
            try:
                spec = _evaluate(text, env)
            except (Unsupported, RecursionError, KeyError, IndexError, TypeError) as exc:
                cases.append(Case(case_id, scored, None, f"{type(exc).__name__}: {exc}"))
                continue
            cases.append(Case(case_id, bool(spec.props.get("Scored", True)), spec))
    return cases


def _evaluate(text: str, env: Env) -> Obj:
    from tools.csharp_subset import evaluate

    parser = Parser(text)
    node = parser.expression()
    value = evaluate(node, env)
    if not isinstance(value, Obj):
        raise Unsupported("not an object")
    return value


# -- the probe's app on rawbg -------------------------------------------------------------


def probe_app() -> App:
    app = App()

    async def root(request: Request) -> PlainTextResponse:
        if request.method == "POST":
            return PlainTextResponse(await request.body())
        return PlainTextResponse("OK")

    app.get("/")(root)
    app.post("/")(root)
    app.put("/")(root)
    app.patch("/")(root)
    app.delete("/")(root)

    @app.get("/echo")
    @app.post("/echo")
    async def echo(request: Request) -> PlainTextResponse:
        lines = [f"{name}: {value}" for name, value in request.headers.items()]
        return PlainTextResponse("\n".join(lines) + "\n")

    # every other path too, as the probe's servers answer it (a catch-all route)
    app.get("/{rest:path}")(root)
    app.post("/{rest:path}")(root)
    return app


@contextlib.contextmanager
def served(loop_name: str) -> Iterator[int]:
    """rawbg serving the probe's app in a thread; yields its port."""
    from rawbg.server.loops import loop_factory
    from rawbg.server.server import serving

    ready = threading.Event()
    stop: list[Any] = []
    port: list[int] = []

    async def main() -> None:
        done = asyncio.Event()
        stop.append((asyncio.get_running_loop(), done))
        async with serving(probe_app(), port=0, access_log=False, loop=loop_name) as server:
            port.append(server.port)
            ready.set()
            await done.wait()

    def run() -> None:
        with asyncio.Runner(loop_factory=loop_factory(loop_name)) as runner:
            runner.run(main())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if not ready.wait(10):
        raise SystemExit("error: rawbg did not start")
    try:
        yield port[0]
    finally:
        loop, done = stop[0]
        loop.call_soon_threadsafe(done.set)
        thread.join(10)


# -- the probe's runner --------------------------------------------------------------------


class Response:
    """``HttpResponse`` as ``ResponseParser.TryParse`` makes it."""

    def __init__(
        self, status: int, reason: str, version: str, headers: Headers, body: str | None, raw: str
    ) -> None:
        self.RawResponse = raw
        self.StatusCode = status
        self.ReasonPhrase = reason
        self.HttpVersion = version
        self.Headers = headers
        self.Body = body
        self.IsEmpty = False


def parse_response(data: bytes) -> Response | None:
    if not data:
        return None
    text = data.decode("ascii", "replace")
    line_end = text.find("\n")
    if line_end < 0:
        return None
    status_line = text[:line_end].rstrip("\r")
    version, space, rest = status_line.partition(" ")
    if not space:
        return None
    code, _, reason = rest.partition(" ")
    try:
        status = int(code)
    except ValueError:
        return None
    headers = Headers()
    pos = line_end + 1
    while pos < len(text):
        nxt = text.find("\n", pos)
        if nxt < 0:
            nxt = len(text)
        line = text[pos:nxt].rstrip("\r")
        if not line:
            break
        colon = line.find(":")
        if colon > 0:
            name, value = line[:colon].strip().lower(), line[colon + 1 :].strip()
            headers[name] = headers[name] + ", " + value if name in headers else value
        pos = nxt + 1
    raw = (
        text
        if len(text) <= 8192
        else text[:8192] + f"\n\n[Truncated — showing 8,192 of {len(text):,} bytes]"
    )
    body = None
    head_end = text.find("\r\n\r\n")
    if head_end >= 0 and head_end + 4 < len(text):
        body = text[head_end + 4 :][:4096]
    return Response(status, reason, version, headers, body, raw)


class Client:
    """``RawTcpClient``: its reads and its check of whether the server closed."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, data: bytes) -> None:
        self.sock.settimeout(None)
        self.sock.sendall(data)

    def read_response(self) -> tuple[bytes, str]:
        data = bytearray()
        deadline = time.monotonic() + READ_TIMEOUT
        try:
            while len(data) < BUFFER:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return bytes(data), "TimedOut"
                self.sock.settimeout(remaining)
                try:
                    piece = self.sock.recv(BUFFER - len(data))
                except TimeoutError:
                    return bytes(data), "TimedOut"
                if not piece:
                    return bytes(data), "ClosedByServer"
                data += piece
                if b"\r\n\r\n" in data:
                    break
            time.sleep(0.1)
            while len(data) < BUFFER and self._readable():
                self.sock.settimeout(0.5)
                piece = self.sock.recv(BUFFER - len(data))
                if not piece:
                    break
                data += piece
            return bytes(data), "Open"
        except OSError:
            return bytes(data), "ClosedByServer"

    def _readable(self) -> bool:
        return bool(select.select([self.sock], [], [], 0)[0])

    def connection_state(self) -> str:
        try:
            if self._readable():
                return "ClosedByServer" if self.sock.recv(1, socket.MSG_PEEK) == b"" else "Open"
            return "Open"
        except OSError:
            return "ClosedByServer"

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def context(port: int) -> Obj:
    """``TestContext``: what a payload factory reads (the Host header's value)."""
    return Obj(
        "TestContext", {"Host": "127.0.0.1", "Port": port, "HostHeader": f"127.0.0.1:{port}"}
    )


def expected_verdict(expected: Obj, response: Response | None, state: str) -> str:
    """``ExpectedBehavior.Evaluate``."""
    props = expected.props
    validator = props.get("CustomValidator")
    if validator is not None:
        return str(validator(response, state))
    if (
        props.get("ExpectedConnectionState") is not None
        and state == props["ExpectedConnectionState"]
    ):
        return "Pass"
    allow_close = bool(props.get("AllowConnectionClose", False))
    if allow_close and state == "ClosedByServer" and response is None:
        return "Pass"
    if response is None:
        return "Pass" if allow_close else "Fail"
    status = props.get("ExpectedStatus")
    if status is not None and status[0] <= response.StatusCode <= status[1]:
        return "Pass"
    return "Fail"


def run_single(spec: Obj, port: int) -> str:
    client = Client(port)
    try:
        try:
            client.send(bytes(spec.props["PayloadFactory"](context(port))))
        except OSError:
            return "Error"
        data, state = client.read_response()
        response = parse_response(data)
        if state == "Open":
            time.sleep(0.05)
            state = client.connection_state()
        return expected_verdict(spec.props["Expected"], response, state)
    finally:
        client.close()


def run_sequence(spec: Obj, port: int) -> str:
    client = Client(port)
    ctx = context(port)
    results: list[Obj] = []
    state = "Open"
    try:
        for step in spec.props["Steps"]:
            props = step.props
            label = props.get("Label", "")
            if state != "Open":
                results.append(
                    Obj(
                        "StepResult",
                        {
                            "Label": label,
                            "Executed": False,
                            "Response": None,
                            "ConnectionState": state,
                        },
                    )
                )
                continue
            if props.get("SendPartsFactory") is not None:
                parts = [
                    (p.props["PayloadFactory"], p.props.get("DelayAfter", 0.0))
                    for p in props["SendPartsFactory"](ctx)
                ]
            elif props.get("DynamicPayloadFactory") is not None:
                dynamic = props["DynamicPayloadFactory"]
                parts = [(lambda ctx, d=dynamic: d(ctx, results), 0.0)]
            else:
                parts = [(props["PayloadFactory"], 0.0)]
            for factory, delay in parts:
                try:
                    client.send(bytes(factory(ctx)))
                except OSError:
                    state = "ClosedByServer"
                    break
                if delay:
                    time.sleep(delay)
                    if client.connection_state() != "Open":
                        state = "ClosedByServer"
                        break
            data, state = client.read_response()
            response = parse_response(data)
            if state == "Open":
                time.sleep(0.05)
                state = client.connection_state()
            results.append(
                Obj(
                    "StepResult",
                    {
                        "Label": label,
                        "Executed": True,
                        "Response": response,
                        "ConnectionState": state,
                    },
                )
            )
        return str(spec.props["Validator"](results))
    finally:
        client.close()


def run_case(case: Case, port: int) -> str:
    assert case.spec is not None
    try:
        if case.spec.type == "SequenceTestCase":
            return run_sequence(case.spec, port)
        return run_single(case.spec, port)
    except (Unsupported, KeyError, TypeError, AttributeError, IndexError) as exc:
        case.problem = f"{type(exc).__name__}: {exc}"
        return "Not evaluated"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.http11probe_replay",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("snapshot", type=Path, help="a checkout of Http11Probe")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--only", action="append", default=[], help="run only this case id")
    parser.add_argument("--failures", action="store_true", help="print only what did not pass")
    args = parser.parse_args(argv)
    cases = [c for c in read_cases(args.snapshot) if c.scored]
    if args.only:
        cases = [c for c in cases if c.id in args.only]
    verdicts: dict[str, int] = {}
    with served(args.loop) as port:
        for case in cases:
            verdict = "Not evaluated" if case.spec is None else run_case(case, port)
            verdicts[verdict] = verdicts.get(verdict, 0) + 1
            if not args.failures or verdict != "Pass":
                note = f"  ({case.problem})" if case.problem else ""
                print(f"{verdict:14} {case.id}{note}", flush=True)
    summary = ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items()))
    # the probe's site ranks servers by pass + warn (docs/static/probe/render.js)
    score = verdicts.get("Pass", 0) + verdicts.get("Warn", 0)
    print(f"\nscore (pass + warn, as the probe's site counts): {score} of {len(cases)} ({summary})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
