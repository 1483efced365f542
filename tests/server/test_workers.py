"""``--workers N``, signals, ``--reload`` and ``--uds`` with real processes and real sockets.

docs/server-behavior.md, "Workers and signals": a supervisor binds the
address once, N workers accept from it; a dead worker is replaced; SIGTERM
drains every worker; SIGHUP replaces them one at a time without refusing a
connection; the exit status says whether background work was cancelled.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
from pathlib import Path

import pytest

from rawbg.server.config import EXIT_OK, EXIT_STARTUP_FAILED, EXIT_WORK_CANCELLED
from tests.support.event_loop import CLI_LOOP_ARGS
from tests.support.processes import WAIT, environment, get, post, rawbg_process
from tests.support.wire import RawClient, request_bytes

pytestmark = pytest.mark.slow

# Served as `workers_app:app --app-dir <tmp>`. /pid blocks its worker's event
# loop for `block` seconds (so that concurrent connections spread over the
# workers); /job (blocking likewise) queues a task that appends "<id> <pid>"
# to tasks.txt after `delay` seconds: every acknowledged task must appear
# there exactly once.
WORKERS_APP = """
import asyncio
import os
import time

from rawbg import App, BackgroundTasks

app = App()


@app.get("/pid")
async def pid(block: float = 0.0):
    if block:
        time.sleep(block)
    return {"pid": os.getpid()}


async def append_later(job: str, delay: float) -> None:
    await asyncio.sleep(delay)
    with open("tasks.txt", "a") as out:
        out.write(f"{job} {os.getpid()}\\n")


@app.post("/job/{job}")
async def job(job: str, background_tasks: BackgroundTasks, delay: float = 0.5, block: float = 0):
    if block:
        time.sleep(block)
    background_tasks.add_task(append_later, job, delay)
    return {"job": job, "pid": os.getpid()}
"""


def write_app(tmp_path: Path) -> tuple[str, ...]:
    (tmp_path / "workers_app.py").write_text(WORKERS_APP)
    return ("workers_app:app", "--app-dir", str(tmp_path), "--port", "0", "--no-access-log")


async def pids_answering(port: int, *, requests: int = 12, block: float = 0.05) -> set[int]:
    """Concurrent requests, each blocking its worker a moment: which pids answered."""
    answers = await asyncio.gather(*(get(port, f"/pid?block={block}") for _ in range(requests)))
    assert all(status == 200 for status, _ in answers), answers
    return {int(re.search(rb"\d+", body).group()) for _, body in answers}  # type: ignore[union-attr]


def worker_pids(lines: list[str]) -> list[int]:
    return [int(re.search(r"started worker (\d+)", line).group(1)) for line in lines]  # type: ignore[union-attr]


async def test_n_workers_serve_one_port_each_in_its_own_process(tmp_path):
    async with rawbg_process(tmp_path, *write_app(tmp_path), "--workers", "3") as server:
        started = worker_pids(await server.wait_for_log("started worker", count=3))
        await server.wait_for_log("worker ready", count=3)
        answered: set[int] = set()
        async with asyncio.timeout(WAIT):  # a loaded machine may starve a worker a while
            while len(answered) < 2:  # more than one process answers on the one port
                answered |= await pids_answering(server.port, requests=18)
        assert answered <= set(started)
        assert server.proc.pid not in answered  # the supervisor serves nothing
        # every log line says which process it comes from
        for pid in started:
            await server.wait_for_log(rf"\[{pid}\] INFO rawbg\.worker: worker ready")
        server.signal(signal.SIGTERM)
        assert await server.exit_status() == EXIT_OK, server.log


async def test_a_worker_killed_with_sigkill_is_replaced_and_the_port_keeps_answering(tmp_path):
    async with rawbg_process(tmp_path, *write_app(tmp_path), "--workers", "2") as server:
        first = worker_pids(await server.wait_for_log("started worker", count=2))
        await server.wait_for_log("worker ready", count=2)
        victim = first[0]
        os.kill(victim, signal.SIGKILL)
        # the port answers all along, from the survivor meanwhile
        for _ in range(10):
            assert (await get(server.port, "/pid"))[0] == 200
        await server.wait_for_log(rf"worker {victim} died \(killed by SIGKILL\)")
        replacement = worker_pids(await server.wait_for_log("started worker", count=3))[2]
        await server.wait_for_log(rf"\[{replacement}\] INFO rawbg\.worker: worker ready")
        answered: set[int] = set()
        async with asyncio.timeout(WAIT):
            while replacement not in answered:
                answered |= await pids_answering(server.port)
        assert victim not in answered
        server.signal(signal.SIGTERM)
        assert await server.exit_status() == EXIT_OK, server.log


async def test_sigterm_drains_every_workers_pending_tasks_each_exactly_once(tmp_path):
    async with rawbg_process(tmp_path, *write_app(tmp_path), "--workers", "2") as server:
        await server.wait_for_log("worker ready", count=2)
        acknowledged_by: dict[str, int] = {}
        async with asyncio.timeout(WAIT):
            # each request blocks its worker a moment, so that both take some;
            # batches until both have (a loaded machine may starve one a while)
            while len(set(acknowledged_by.values())) < 2:
                batch = [str(len(acknowledged_by) + n) for n in range(8)]
                answers = await asyncio.gather(
                    *(post(server.port, f"/job/{job}?delay=2&block=0.02") for job in batch)
                )
                for status, body in answers:
                    assert status == 200
                    answer = json.loads(body)
                    acknowledged_by[answer["job"]] = answer["pid"]
        tasks = tmp_path / "tasks.txt"
        done_at_signal = len(tasks.read_text().splitlines()) if tasks.exists() else 0
        assert done_at_signal < len(acknowledged_by)  # some still pending at the signal
        server.signal(signal.SIGTERM)
        assert await server.exit_status() == EXIT_OK, server.log
    lines = tasks.read_text().splitlines()
    ran = {line.split()[0]: int(line.split()[1]) for line in lines}
    assert len(lines) == len(ran)  # none twice
    assert ran == acknowledged_by  # every acknowledged task, by the worker that took it


async def test_exit_status_is_4_when_a_worker_had_to_cancel_background_work(tmp_path):
    args = (*write_app(tmp_path), "--workers", "2", "--timeout-graceful-shutdown", "0.3")
    async with rawbg_process(tmp_path, *args) as server:
        await server.wait_for_log("worker ready", count=2)
        assert (await post(server.port, "/job/never?delay=60"))[0] == 200
        server.signal(signal.SIGTERM)
        assert await server.exit_status() == EXIT_WORK_CANCELLED, server.log
    assert "cancelled 1 background task(s)" in server.log
    assert re.search(r"worker \d+ stopped \(exit status 4\): background work was lost", server.log)
    assert not (tmp_path / "tasks.txt").exists()


async def test_exit_status_is_4_for_a_single_process_whose_work_timed_out(tmp_path):
    args = (*write_app(tmp_path), "--timeout-graceful-shutdown", "0.3")
    async with rawbg_process(tmp_path, *args) as server:
        assert (await post(server.port, "/job/never?delay=60"))[0] == 200
        server.signal(signal.SIGTERM)
        assert await server.exit_status() == EXIT_WORK_CANCELLED, server.log
    assert "cancelled 1 background task(s)" in server.log


async def steady_load(port: int, stop: asyncio.Event, results: list[object]) -> None:
    """New connection after new connection until `stop`: each result a pid or an error."""
    while not stop.is_set():
        try:
            status, body = await get(port, "/pid")
            match = re.search(rb"\d+", body)
            results.append(int(match.group()) if status == 200 and match else (status, body))
        except (OSError, AssertionError, TimeoutError) as exc:
            results.append(exc)
        await asyncio.sleep(0.005)


async def test_sighup_restarts_every_worker_without_a_refused_connection(tmp_path):
    async with rawbg_process(tmp_path, *write_app(tmp_path), "--workers", "2") as server:
        old = set(worker_pids(await server.wait_for_log("started worker", count=2)))
        await server.wait_for_log("worker ready", count=2)
        stop = asyncio.Event()
        results: list[object] = []
        load = [asyncio.create_task(steady_load(server.port, stop, results)) for _ in range(3)]
        try:
            await asyncio.sleep(0.3)
            before_restart = len(results)
            server.signal(signal.SIGHUP)
            await server.wait_for_log("rolling restart done")
            for pid in old:  # both old workers drained and exited
                await server.wait_for_log(rf"worker {pid} stopped \(exit status 0\)")
            after_restart = len(results)
            await asyncio.sleep(0.3)
        finally:
            stop.set()
            await asyncio.gather(*load)
        errors = [result for result in results if not isinstance(result, int)]
        assert errors == [], errors
        assert after_restart > before_restart  # requests were flowing during the restart
        new = set(worker_pids(await server.wait_for_log("started worker", count=4))) - old
        assert len(new) == 2
        late = set(results[after_restart:])
        assert late and late <= new  # only the new workers answer now
        server.signal(signal.SIGTERM)
        assert await server.exit_status() == EXIT_OK, server.log


async def test_reload_picks_up_an_edited_handler(tmp_path):
    source = tmp_path / "reload_app.py"
    source.write_text(
        'from rawbg import App\napp = App()\n@app.get("/v")\nasync def v():\n    return "one"\n'
    )
    args = ("reload_app:app", "--app-dir", str(tmp_path), "--port", "0", "--reload")
    async with rawbg_process(tmp_path, *args) as server:
        assert await get(server.port, "/v") == (200, b'"one"')
        source.write_text(source.read_text().replace('"one"', '"two"'))
        stat = source.stat()
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
        await server.wait_for_log(r"reload: reload_app\.py changed")
        await server.wait_for_log("rolling restart done")
        # the old worker may take a connection or two until it handles its SIGTERM
        await server.wait_for_log(r"worker \d+ stopped \(exit status 0\)")
        assert await get(server.port, "/v") == (200, b'"two"')
        server.signal(signal.SIGTERM)
        assert await server.exit_status() == EXIT_OK, server.log


async def test_reload_keeps_the_old_worker_when_the_edit_does_not_import(tmp_path):
    source = tmp_path / "reload_app.py"
    source.write_text(
        'from rawbg import App\napp = App()\n@app.get("/v")\nasync def v():\n    return "one"\n'
    )
    args = ("reload_app:app", "--app-dir", str(tmp_path), "--port", "0", "--reload")
    async with rawbg_process(tmp_path, *args) as server:
        source.write_text("this is not python\n")
        stat = source.stat()
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
        await server.wait_for_log("rolling restart abandoned")
        assert await get(server.port, "/v") == (200, b'"one"')


async def uds_get(path: Path, target: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_unix_connection(str(path))
    client = RawClient(reader, writer)
    try:
        await client.send(request_bytes("GET", target))
        response = await client.read_response(timeout=WAIT)
    finally:
        await client.close()
    return response.status_code, response.body


UDS_APP = """
from rawbg import App, Request

app = App()


@app.get("/who")
async def who(request: Request):
    return {"client": request.client, "scheme": request.scheme}
"""


async def test_uds_serves_over_a_unix_socket_and_removes_it_at_exit(tmp_path):
    (tmp_path / "uds_app.py").write_text(UDS_APP)
    for extra in ((), ("--workers", "2")):
        sock = tmp_path / "rawbg.sock"
        args = ("uds_app:app", "--app-dir", str(tmp_path), "--uds", str(sock), *extra)
        async with rawbg_process(tmp_path, *args) as server:
            assert sock.exists()
            # no peer address on a Unix socket, and loopback trust does not extend to it
            assert await uds_get(sock, "/who") == (200, b'{"client":null,"scheme":"http"}')
            server.signal(signal.SIGTERM)
            assert await server.exit_status() == EXIT_OK, server.log
        assert not sock.exists()


def process_gone(pid: int) -> bool:
    """True once `pid` has exited (a zombie left to an init that does not reap counts)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


async def test_a_worker_drains_and_exits_when_its_supervisor_is_killed(tmp_path):
    async with rawbg_process(tmp_path, *write_app(tmp_path), "--workers", "1") as server:
        worker = worker_pids(await server.wait_for_log("started worker"))[0]
        await server.wait_for_log("worker ready")
        assert (await post(server.port, "/job/orphaned?delay=0.3"))[0] == 200
        server.signal(signal.SIGKILL)
        await server.exit_status()
        async with asyncio.timeout(WAIT):
            while not process_gone(worker):
                await asyncio.sleep(0.1)
    # it drained before exiting: the task it had acknowledged ran
    assert (tmp_path / "tasks.txt").read_text().split()[0] == "orphaned"


async def test_workers_whose_app_start_up_fails_make_the_supervisor_exit_3(tmp_path):
    (tmp_path / "broken_start.py").write_text(
        "from rawbg import App\napp = App()\n\n@app.on_event('startup')\n"
        "def connect():\n    raise ConnectionRefusedError('database down')\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "rawbg",
        "broken_start:app",
        "--app-dir",
        str(tmp_path),
        "--port",
        "0",
        "--workers",
        "2",
        cwd=tmp_path,
        env=environment(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(WAIT):
        out, err = await proc.communicate()
    assert proc.returncode == EXIT_STARTUP_FAILED == 3, err.decode()
    assert b"serving on" not in out
    assert b"error: application start-up failed: startup handler" in err
    assert b"a worker failed to start: stopping" in err


async def test_fd_serves_on_an_inherited_listening_socket(tmp_path):
    # what systemd socket activation does: bind and listen, then hand the fd over
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    fd = listener.fileno()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "rawbg",
        *write_app(tmp_path),
        "--fd",
        str(fd),
        *CLI_LOOP_ARGS,
        cwd=tmp_path,
        env=environment(),
        pass_fds=(fd,),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    listener.close()  # the server's copy is the only one now
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(WAIT):
            line = await proc.stdout.readline()
        assert f"serving on http://127.0.0.1:{port}".encode() in line
        status, body = await get(port, "/pid")
        assert status == 200
        assert str(proc.pid).encode() in body
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(WAIT):
            await proc.communicate()
        assert proc.returncode == EXIT_OK
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()
