"""The benchmark harness runs end to end: servers start, load flows, results are written.

No timing assertions: only that every open-loop run got answers and no errors.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO

pytestmark = pytest.mark.slow

ROOT = REPO


def test_smoke_run_writes_results_for_both_servers(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--smoke",
            "--servers",
            "rawbg,ceiling",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    results = json.loads((tmp_path / "results.json").read_text())
    open_loop = results["open_loop"]
    assert {row["server"] for row in open_loop} == {"rawbg", "ceiling"}
    for row in open_loop:
        assert row["ok"] > 0, row
        assert row["error_count"] == 0, row
    assert {row["server"] for row in results["peak"]} == {"rawbg", "ceiling", "demo"}
    assert all(row["ok"] > 0 for row in results["peak"])
    assert [row["server"] for row in results["memory"]] == ["rawbg", "rawbg"]
    # the high-load sweep runs at a fraction of a capacity measured in the same run
    assert [(row["server"], row["mode"]) for row in results["capacity"]] == [
        ("rawbg", "keepalive"),
        ("rawbg", "close"),
    ]
    assert all(row["capacity_rps"] > 0 for row in results["capacity"])
    assert {row["mode"] for row in results["high_load"]} == {"keepalive", "close"}
    for row in results["high_load"]:
        assert row["ok"] > 0, row
        assert row["error_count"] == 0, row
    assert results["failures"] == []


async def test_the_instruction_counter_feeds_every_server_real_requests(tmp_path) -> None:
    # The part of `python -m benchmarks.instructions` that runs under valgrind:
    # every protocol answers each fed request with the tutorial's response,
    # and with the journal each request's task was committed first.
    from benchmarks.instructions import JOURNAL_SERVER, feed, protocol_factory

    loop = asyncio.get_running_loop()
    for server in ("ceiling", "rawbg", JOURNAL_SERVER):
        make_protocol = protocol_factory(server, loop, str(tmp_path))
        writes = await feed(make_protocol, 20)
        assert len(writes) == 1, server  # only the last response is kept
        head, _, body = writes[0].partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), (server, head)
        assert body == b'{"message":"Notification sent in the background"}', server
        if server == JOURNAL_SERVER:
            journal = make_protocol.__self__.journal  # type: ignore[attr-defined]
            assert journal.commits == 20  # one connection: one commit per request
            await journal.stop()


async def test_timeline_recording_shows_each_task_after_its_request_was_flushed(tmp_path):
    from benchmarks.timeline import read_spans, record

    trace = tmp_path / "trace.json"
    await record(trace, task_seconds=0.02, clients=2, requests=2)
    names, spans = read_spans(trace)
    requests = sorted((start, end) for tid, name, start, end in spans if name.startswith("POST "))
    tasks = sorted((start, end) for tid, name, start, end in spans if " req " in names[tid])
    assert len(requests) == len(tasks) == 4
    flushed = sorted(end for _, end in requests)
    # the n-th task to start began after at least n responses were flushed
    for n, (start, _) in enumerate(tasks):
        assert start >= flushed[n]


def test_a_failed_load_generator_is_reported_by_its_first_traceback_not_its_last() -> None:
    from benchmarks.loadgen import first_error

    cause = "Traceback (most recent call last):\nOSError: [Errno 24] Too many open files\n"
    noise = "Exception ignored in: <coroutine object Client.send>\nTraceback ...\n" * 200
    reported = first_error("warning: something\n" + cause + noise)
    assert reported.startswith(cause)
    assert len(reported) == 2000
    assert first_error("usage: loadgen [-h]\nerror: bad option\n") == (
        "usage: loadgen [-h]\nerror: bad option\n"
    )


def test_the_upload_benchmark_runs_and_writes_its_figures(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.uploads",
            "--servers",
            "rawbg",
            "--sizes",
            "10M",
            "--count",
            "1",
            "--rounds",
            "1",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads((tmp_path / "uploads.json").read_text())
    (round_,) = figures["rounds"]
    measured = round_["servers"]["rawbg"]["10M"]
    assert measured["uploads"] == 1
    assert measured["MBps"] > 0
