"""`python -m rawbg` as a user runs it: a real process, real signals, a real socket."""

import asyncio
import contextlib
import gc
import importlib
import json
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from rawbg.server.config import EXIT_WORK_CANCELLED
from rawbg.server.gc_clock import GC_FULL_THRESHOLD
from tests.support import REPO
from tests.support.event_loop import CLI_LOOP_ARGS
from tests.support.processes import get, post

pytestmark = pytest.mark.slow

URL = re.compile(rb"http://127\.0\.0\.1:(\d+)")
WAIT = 10.0  # bound on every wait for the process

FLAGS = [
    "--host",
    "--port",
    "--loop",
    "--log-level",
    "--no-access-log",
    "--max-head-size",
    "--max-body-size",
    "--timeout-keep-alive",
    "--min-body-rate",
    "--limit-concurrency",
    "--max-pending-tasks",
    "--timeout-graceful-shutdown",
    "--app-dir",
    "--trace",
    "--no-serve-on-arrival",
    "--loop-block-warning",
    "--gc-interval",
    "--routes",
    "--openapi",
    "--workers",
    "--reload",
    "--uds",
    "--fd",
    "--proxy-headers",
    "--forwarded-allow-ips",
    "--root-path",
]

# Served with `slow_app:app --app-dir <tmp>`: its task is still pending when the
# test signals the process, and leaves a file behind only if it ran to the end.
SLOW_APP = """
import asyncio
from pathlib import Path

from rawbg import App, BackgroundTasks

app = App()


async def write_later(name: str, delay: float) -> None:
    await asyncio.sleep(delay)
    Path(name).write_text("done")


@app.post("/slow/{name}")
async def slow(name: str, background_tasks: BackgroundTasks, delay: float = 0.5):
    background_tasks.add_task(write_later, name, delay)
    return {"queued": name}
"""


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.pop("PYTHONASYNCIODEBUG", None)
    return env


async def spawn(cwd: Path, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "rawbg",
        *CLI_LOOP_ARGS,
        *args,
        cwd=cwd,
        env=environment(),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def run_to_exit(cwd: Path, *args: str) -> tuple[int, str, str]:
    """Run `python -m rawbg ARGS` to its end; (status, stdout, stderr)."""
    proc = await spawn(cwd, *args)
    try:
        async with asyncio.timeout(WAIT):
            out, err = await proc.communicate()
    finally:
        await stop(proc)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def stop(proc: asyncio.subprocess.Process) -> None:
    """Make sure the process is gone and its pipes are closed (idempotent)."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    with contextlib.suppress(Exception):
        async with asyncio.timeout(WAIT):
            await proc.communicate()


@contextlib.asynccontextmanager
async def serving_process(cwd: Path, *args: str):
    """Start ``python -m rawbg --port 0 ARGS``; yield (process, port) once it listens."""
    proc = await spawn(cwd, "--port", "0", *args)
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(WAIT):
            while True:
                line = await proc.stdout.readline()
                assert line, "the server exited before printing its URL"
                match = URL.search(line)
                if match:
                    break
        yield proc, int(match.group(1))
    finally:
        await stop(proc)


async def exit_after(proc: asyncio.subprocess.Process, signum: int) -> tuple[int, str]:
    """Send `signum`; wait for the process to exit; (status, all of its stderr)."""
    proc.send_signal(signum)
    async with asyncio.timeout(WAIT):
        _, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def test_help_exits_0_and_lists_every_flag(tmp_path):
    status, out, err = await run_to_exit(tmp_path, "--help")
    assert status == 0, err
    assert out.startswith("usage: python -m rawbg")
    missing = [flag for flag in FLAGS if flag not in out]
    assert missing == []


async def test_help_says_where_each_worker_writes_its_trace_file(tmp_path):
    # with --workers, FILE is not written: each worker writes its own trace.<pid>.json
    status, out, err = await run_to_exit(tmp_path, "--help")
    assert status == 0, err
    assert "FILE.<pid>" in " ".join(out.split()), out


async def test_demo_app_answers_writes_its_notification_and_logs_the_request(tmp_path):
    async with serving_process(tmp_path) as (proc, port):
        status, body = await post(port, "/send-notification/a@b.c")
        assert status == 200
        assert body == b'{"message":"Notification sent in the background"}'
        # a graceful stop finishes the background work before exiting
        code, err = await exit_after(proc, signal.SIGINT)
    assert code == 0, err
    assert (tmp_path / "log.txt").read_text() == "notification for a@b.c: some notification"
    access = [line for line in err.splitlines() if "rawbg.access" in line]
    assert len(access) == 1, err
    assert re.search(
        r'INFO rawbg\.access: 127\.0\.0\.1:\d+ - "POST /send-notification/a@b\.c HTTP/1\.1" '
        r"200 \d+ [\d.]+ms$",
        access[0],
    ), access[0]
    assert "Traceback" not in err


async def test_no_access_log_turns_the_access_log_off(tmp_path):
    async with serving_process(tmp_path, "--no-access-log") as (proc, port):
        status, _ = await post(port, "/send-notification/a@b.c")
        assert status == 200
        code, err = await exit_after(proc, signal.SIGINT)
    assert code == 0, err
    assert "rawbg.access" not in err
    assert "/send-notification" not in err
    assert "shutdown complete" in err  # the rest of the log is still there
    assert (tmp_path / "log.txt").read_text() == "notification for a@b.c: some notification"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_a_signal_exits_0_after_finishing_pending_background_work(tmp_path, signum):
    (tmp_path / "slow_app.py").write_text(SLOW_APP)
    async with serving_process(tmp_path, "slow_app:app", "--app-dir", str(tmp_path)) as (
        proc,
        port,
    ):
        status, body = await post(port, "/slow/done.txt")
        assert (status, body) == (200, b'{"queued":"done.txt"}')
        assert not (tmp_path / "done.txt").exists()  # still pending at the signal
        code, err = await exit_after(proc, signum)
    assert code == 0, err
    assert (tmp_path / "done.txt").read_text() == "done"
    assert "shutdown complete" in err
    assert "Traceback" not in err
    assert "cancelled" not in err


async def test_a_second_signal_cancels_pending_work_at_once_and_exits_4(tmp_path):
    (tmp_path / "slow_app.py").write_text(SLOW_APP)
    async with serving_process(tmp_path, "slow_app:app", "--app-dir", str(tmp_path)) as (
        proc,
        port,
    ):
        status, _ = await post(port, "/slow/never.txt?delay=60")
        assert status == 200
        proc.send_signal(signal.SIGINT)
        assert proc.stderr is not None
        async with asyncio.timeout(WAIT):  # shutdown has begun: it waits for the task
            while b"pending background task" not in await proc.stderr.readline():
                pass
        loop = asyncio.get_running_loop()
        begun = loop.time()
        code, err = await exit_after(proc, signal.SIGINT)
        elapsed = loop.time() - begun
    assert code == EXIT_WORK_CANCELLED == 4, err  # work was lost: a deploy script can tell
    assert elapsed < 5  # not the 30 s graceful timeout
    assert not (tmp_path / "never.txt").exists()
    assert "cancelled 1 background task(s)" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nosuchmodule:app", "cannot import module 'nosuchmodule'"),
        ("rawbg.demo:nosuch", "module 'rawbg.demo' has no attribute 'nosuch'"),
    ],
)
async def test_a_bad_app_spec_exits_nonzero_with_a_one_line_error(tmp_path, spec, message):
    status, out, err = await run_to_exit(tmp_path, spec, "--port", "0")
    assert status != 0
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert message in lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
async def test_the_loop_flag_serves_on_the_named_event_loop(tmp_path, loop):
    importlib.import_module(loop)
    async with serving_process(tmp_path, "--loop", loop) as (proc, port):
        status, _ = await post(port, "/send-notification/a@b.c")
        assert status == 200
        code, err = await exit_after(proc, signal.SIGINT)
    assert code == 0, err
    assert f"rawbg.server: event loop: {loop}\n" in err


async def test_an_unknown_loop_exits_nonzero_with_the_choices(tmp_path):
    status, _, err = await run_to_exit(tmp_path, "--loop", "trio", "--port", "0")
    assert status != 0
    assert "invalid choice: 'trio'" in err
    assert "Traceback" not in err


# Served with `events_app:app`: start-up and shutdown leave lines in events.txt,
# around the line its background task writes.
EVENTS_APP = """
import asyncio
from pathlib import Path

from rawbg import App, BackgroundTasks

app = App()


def note(line: str) -> None:
    with open("events.txt", "a") as file:
        file.write(line + "\\n")


@app.on_event("startup")
async def startup():
    note("startup")


@app.on_event("shutdown")
def shutdown():
    note("shutdown")


async def task() -> None:
    await asyncio.sleep(0.3)
    note("task")


@app.post("/work")
async def work(background_tasks: BackgroundTasks):
    background_tasks.add_task(task)
    return "queued"
"""


async def test_the_server_runs_startup_before_listening_and_shutdown_after_the_tasks(tmp_path):
    (tmp_path / "events_app.py").write_text(EVENTS_APP)
    async with serving_process(tmp_path, "events_app:app") as (proc, port):
        assert (tmp_path / "events.txt").read_text() == "startup\n"  # before the URL was printed
        status, _ = await post(port, "/work")
        assert status == 200
        code, err = await exit_after(proc, signal.SIGTERM)
    assert code == 0, err
    assert (tmp_path / "events.txt").read_text() == "startup\ntask\nshutdown\n"


async def test_a_failing_startup_is_one_line_and_a_nonzero_status(tmp_path):
    (tmp_path / "broken_start.py").write_text(
        "from rawbg import App\napp = App()\n\n@app.on_event('startup')\n"
        "def connect():\n    raise ConnectionRefusedError('database down')\n"
    )
    status, out, err = await run_to_exit(tmp_path, "broken_start:app", "--port", "0")
    assert status == 3
    assert "serving on" not in out
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: application start-up failed: startup handler ")
    assert "broken_start.connect" in lines[0] and "database down" in lines[0]


async def test_a_registration_error_is_one_line_with_the_apps_file_and_line(tmp_path):
    (tmp_path / "bad_route.py").write_text(
        "from rawbg import App\napp = App()\n\n\n@app.get('/items/{item_id}')\n"
        "async def read(item_id: dict):\n    return item_id\n"
    )
    status, _, err = await run_to_exit(tmp_path, "bad_route:app", "--port", "0")
    assert status != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: bad_route.py:5: parameter 'item_id' of bad_route.read")
    assert lines[0].endswith("[route GET /items/{item_id}]")
    assert "Traceback" not in err


async def test_an_error_in_the_apps_own_code_keeps_its_traceback(tmp_path):
    (tmp_path / "own_bug.py").write_text("from rawbg import App\napp = App()\n1 / 0\n")
    status, _, err = await run_to_exit(tmp_path, "own_bug:app", "--port", "0")
    assert status != 0
    assert "Traceback" in err and "ZeroDivisionError" in err


async def test_a_bad_limit_is_named_by_its_flag(tmp_path):
    status, _, err = await run_to_exit(tmp_path, "--max-body-size", "0", "--port", "0")
    assert status != 0
    assert err.strip() == "error: --max-body-size must be positive, got 0"


async def test_a_bad_limit_whose_flag_starts_with_another_fields_name_is_named_once(tmp_path):
    # `loop` is a field too: its name must not be flagged again inside --loop-block-warning
    status, _, err = await run_to_exit(tmp_path, "--loop-block-warning", "-1", "--port", "0")
    assert status != 0
    assert err.strip() == "error: --loop-block-warning must not be negative, got -1.0"


GC_APP = """
import gc

from rawbg import App

app = App()


@app.get("/gc")
async def threshold():
    return {"full": gc.get_threshold()[2]}
"""


@pytest.mark.parametrize(
    ("args", "full"),
    [((), GC_FULL_THRESHOLD), (("--gc-interval", "0"), gc.get_threshold()[2])],
    ids=["gc-clock", "gc-interval-0"],
)
async def test_the_server_starts_its_gc_clock_unless_the_gc_interval_is_0(tmp_path, args, full):
    # the clock raises the full-collection threshold when it starts (rawbg/server/gc_clock.py)
    (tmp_path / "gc_app.py").write_text(GC_APP)
    async with serving_process(tmp_path, "gc_app:app", *args) as (_, port):
        status, body = await get(port, "/gc")
    assert status == 200
    assert body == b'{"full":%d}' % full


async def test_a_negative_gc_interval_is_named_by_its_flag(tmp_path):
    status, _, err = await run_to_exit(tmp_path, "--gc-interval", "-1", "--port", "0")
    assert status != 0
    assert err.strip() == "error: --gc-interval must not be negative, got -1.0"


OPENAPI_APP = """
from pydantic import InstanceOf
from rawbg import App, Body

app = App(title="Shop")


class Opaque:
    pass


@app.get("/items/{item_id}")
async def read_item(item_id: int):
    return {}


if OPAQUE:
    @app.post("/things")
    async def add_thing(thing: InstanceOf[Opaque] = Body()):
        return None
"""


async def test_openapi_writes_the_document_to_stdout_and_exits_0(tmp_path):
    (tmp_path / "shop.py").write_text("OPAQUE = False\n" + OPENAPI_APP)
    status, out, err = await run_to_exit(tmp_path, "shop:app", "--openapi")
    assert status == 0, err
    document = json.loads(out)
    assert document["info"] == {"title": "Shop", "version": "0.1.0"}
    assert list(document["paths"]) == ["/items/{item_id}"]


async def test_openapi_exits_1_naming_the_route_whose_types_cannot_be_described(tmp_path):
    (tmp_path / "shop.py").write_text("OPAQUE = True\n" + OPENAPI_APP)
    status, out, err = await run_to_exit(tmp_path, "shop:app", "--openapi")
    assert status == 1
    assert out == ""
    assert err.startswith(
        "error: route POST /things: the body parameter 'thing' of shop.add_thing ("
    )
    assert "shop.py:" in err
    assert "Traceback" not in err
