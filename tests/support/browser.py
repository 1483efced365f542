"""A real headless chromium, driven over the DevTools protocol on a pipe: no extra package.

``chromium --remote-debugging-pipe`` reads DevTools commands from its fd 3 and
writes answers and events to its fd 4, each a JSON object ended by a NUL byte.
`Browser` starts Debian's chromium that way (headless, no sandbox, no GPU, no
background networking), opens one page and offers the three things the docs
tests need: go to a URL, evaluate JavaScript in the page (awaiting a promise),
and take a PNG screenshot. Everything is bounded by a deadline.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import tempfile
import time
from typing import Any

from tests.support.services import require_program

INSTALL = "apt-get install chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--remote-debugging-pipe",
)


def _above_4(fd: int) -> int:
    """`fd` moved to a number above 4."""
    import fcntl

    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 5)
    os.close(fd)
    return moved


class BrowserError(Exception):
    """Raised when chromium answers a command with an error, or not in time."""


class Browser:
    """One headless chromium with one page; use as a context manager."""

    def __init__(self, *, width: int = 1280, height: int = 900, timeout: float = 30.0) -> None:
        self.program = require_program("chromium", install=INSTALL)
        self.width, self.height, self.timeout = width, height, timeout
        self._next_id = 0
        self._buffer = b""
        self._session: str | None = None

    def __enter__(self) -> Browser:
        self._profile = tempfile.TemporaryDirectory(prefix="rawbg-chromium-")
        #: chromium's own messages, for the error when it stops answering
        self._log = tempfile.TemporaryFile()
        to_chromium, self._commands = os.pipe()
        self._answers, from_chromium = os.pipe()
        # above 4, so that putting one at fd 3 cannot overwrite the other
        to_chromium, from_chromium = _above_4(to_chromium), _above_4(from_chromium)
        # bash (dash takes one-digit fds only) puts our ends at fds 3 and 4 for chromium
        script = f'exec "$0" "$@" 3<&{to_chromium} 4>&{from_chromium}'
        self.process = subprocess.Popen(
            ["bash", "-c", script, self.program, *FLAGS, f"--user-data-dir={self._profile.name}"],
            pass_fds=(to_chromium, from_chromium),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        os.close(to_chromium)
        os.close(from_chromium)
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self._session = self.send("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=self.width,
            height=self.height,
            deviceScaleFactor=1,
            mobile=False,
        )
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._commands)
        os.close(self._answers)
        self._log.close()
        self._profile.cleanup()

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command (to the page once attached); its result."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if self._session is not None and not method.startswith("Target."):
            message["sessionId"] = self._session
        try:
            os.write(self._commands, json.dumps(message).encode() + b"\0")
        except BrokenPipeError:
            self.process.wait(timeout=5)
            raise BrowserError(
                f"chromium exited ({self.process.returncode}){self._tail()}"
            ) from None
        deadline = time.monotonic() + self.timeout
        while True:
            answer = self._read(deadline)
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise BrowserError(f"{method}: {answer['error']}")
                result: dict[str, Any] = answer.get("result", {})
                return result

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise BrowserError(f"chromium did not answer in time{self._tail()}")
            chunk = os.read(self._answers, 65536)
            if not chunk:
                raise BrowserError(f"chromium closed its pipe{self._tail()}")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        parsed: dict[str, Any] = json.loads(message)
        return parsed

    def _tail(self) -> str:
        self._log.seek(0)
        lines = self._log.read().decode(errors="replace").strip().splitlines()
        return "; chromium said: " + " | ".join(lines[-5:]) if lines else ""

    def goto(self, url: str) -> None:
        self.send("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        """The value of `expression` in the page (a promise is awaited)."""
        result = self.send(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression[:80]}...: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, *, timeout: float | None = None, every: float = 0.1) -> Any:
        """Evaluate `expression` every `every` seconds until it is truthy; its value."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(every)
        raise BrowserError(f"never true: {expression}")

    def type_into(self, selector: str, text: str) -> None:
        """Focus the element `selector` and type `text`, as a keyboard does."""
        self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        self.send("Input.insertText", text=text)

    def screenshot(self) -> bytes:
        """The page as shown, as a PNG."""
        data = self.send("Page.captureScreenshot", format="png")["data"]
        return base64.b64decode(data)
