"""The examples in examples/ (FastAPI's background-tasks tutorial) do what the tutorial says."""

import asyncio
import importlib.util
import re
import signal
import sys
from types import ModuleType

from rawbg import App
from rawbg.testing import serve_app
from tests.support import REPO
from tests.support.event_loop import CLI_LOOP_ARGS
from tests.support.wire import RawClient, request_bytes

EXAMPLES = REPO / "examples"


def load_example(name: str) -> ModuleType:
    """Import examples/<name>.py (examples/ is a directory of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert isinstance(module.app, App)
    return module


async def test_001_writes_the_notification_after_the_response(in_tmp_dir):
    app = load_example("background_tasks_001").app
    async with serve_app(app) as client:
        response = await client.post("/send-notification/foo@example.com")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {"message": "Notification sent in the background"}
        await client.wait_for_background()
        log = in_tmp_dir / "log.txt"
        assert log.read_text() == "notification for foo@example.com: some notification"

        # mode "w": a second notification replaces the first
        response = await client.post("/send-notification/bar@example.com")
        assert response.status_code == 200
        await client.wait_for_background()
        assert log.read_text() == "notification for bar@example.com: some notification"


async def test_002_with_a_query_the_dependency_task_runs_before_the_handler_task(in_tmp_dir):
    app = load_example("background_tasks_002").app
    async with serve_app(app) as client:
        response = await client.post("/send-notification/foo@example.com?q=some-query")
        assert response.status_code == 200
        assert response.json() == {"message": "Message sent"}
        await client.wait_for_background()
    assert (in_tmp_dir / "log.txt").read_text() == (
        "found query: some-query\nmessage to foo@example.com\n"
    )


async def test_002_without_a_query_only_the_handler_task_runs(in_tmp_dir):
    app = load_example("background_tasks_002").app
    async with serve_app(app) as client:
        response = await client.post("/send-notification/foo@example.com")
        assert response.status_code == 200
        assert response.json() == {"message": "Message sent"}
        await client.wait_for_background()
    assert (in_tmp_dir / "log.txt").read_text() == "message to foo@example.com\n"


async def test_002_appends_across_requests(in_tmp_dir):
    app = load_example("background_tasks_002").app
    async with serve_app(app) as client:
        for target in (
            "/send-notification/a@example.com?q=first",
            "/send-notification/b@example.com",
            "/send-notification/c@example.com?q=",  # an empty q is falsy: no query line
        ):
            response = await client.post(target)
            assert response.status_code == 200, target
            await client.wait_for_background()
    assert (in_tmp_dir / "log.txt").read_text() == (
        "found query: first\n"
        "message to a@example.com\n"
        "message to b@example.com\n"
        "message to c@example.com\n"
    )


async def test_002_served_by_the_cli_writes_its_log_and_exits_0_on_sigint(in_tmp_dir):
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "rawbg",
        "background_tasks_002:app",
        *CLI_LOOP_ARGS,
        "--app-dir",
        str(EXAMPLES),
        "--port",
        "0",
        "--no-access-log",
        cwd=in_tmp_dir,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(10):
            line = (await process.stdout.readline()).decode()
        match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert match, f"no address in {line!r}"
        port = int(match.group(1))

        client = await RawClient.connect(port)
        try:
            await client.send(
                request_bytes(
                    "POST",
                    "/send-notification/foo@example.com?q=some-query",
                    headers={"content-length": "0", "connection": "close"},
                )
            )
            response = await client.read_response(method=b"POST")
        finally:
            await client.close()
        assert response.status_code == 200
        assert response.body == b'{"message":"Message sent"}'

        # another process: nothing to await, so poll the file, with a deadline
        log = in_tmp_dir / "log.txt"
        expected = "found query: some-query\nmessage to foo@example.com\n"
        async with asyncio.timeout(10):
            while not (log.exists() and log.read_text() == expected):
                await asyncio.sleep(0.02)

        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(10):
            _, stderr = await process.communicate()
        assert process.returncode == 0, stderr.decode()
        assert b"Traceback" not in stderr, stderr.decode()
        assert b"shutdown complete" in stderr
        assert log.read_text() == expected
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
