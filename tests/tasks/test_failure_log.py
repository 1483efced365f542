"""rawbg.failure_log: one traceback per failure site per interval, and a count of the repeats."""

import asyncio
import logging

import pytest

from rawbg.tasks.failure_log import FailureLog

logger = logging.getLogger("tests.failure_log")


def failure(message: str) -> ValueError:
    try:
        raise ValueError(message)
    except ValueError as exc:
        return exc


def other_failure(message: str) -> ValueError:
    try:
        raise ValueError(message)  # the same type, from another line
    except ValueError as exc:
        return exc


def records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == logger.name]


async def test_repeats_of_one_site_are_counted_not_each_given_a_traceback(caplog):
    log = FailureLog(logger, interval=60)
    for n in range(1000):
        log.task_failed("send", "POST /x", failure(f"failure {n}"))
    log.flush()
    first, summary = records(caplog)
    assert first.exc_info is not None and str(first.exc_info[1]) == "failure 0"
    assert summary.exc_info is None
    assert summary.getMessage() == (
        "background task send of POST /x failed ... and 999 more like it in the last 60 s"
        " (the last: ValueError('failure 999'))"
    )
    assert len(caplog.text) < 2000  # 1000 tracebacks would be ~500 kB


async def test_each_distinct_site_gets_its_own_traceback(caplog):
    log = FailureLog(logger, interval=60)
    log.task_failed("send", "POST /x", failure("a"))
    log.task_failed("send", "POST /x", other_failure("b"))  # another line
    log.task_failed("send", "POST /y", failure("c"))  # another route
    log.task_failed("mail", "POST /x", failure("d"))  # another task
    log.task_failed("send", "POST /x", KeyError("e"))  # another type
    log.flush()
    assert [str(r.exc_info[1]) for r in records(caplog) if r.exc_info] == [
        "a",
        "b",
        "c",
        "d",
        "'e'",
    ]
    assert len(records(caplog)) == 5  # no repeats, so no counts


async def test_the_count_is_written_when_the_interval_ends_and_a_new_one_logs_a_traceback(caplog):
    log = FailureLog(logger, interval=0.2)
    log.task_failed("send", "POST /x", failure("first"))
    log.task_failed("send", "POST /x", failure("second"))
    log.task_failed("send", "POST /x", failure("third"))
    assert len(records(caplog)) == 1
    async with asyncio.timeout(5):
        while len(records(caplog)) < 2:  # the timer at the end of the interval
            await asyncio.sleep(0.05)
    assert "and 2 more like it" in records(caplog)[1].getMessage()
    log.task_failed("send", "POST /x", failure("fourth"))  # a new interval
    fourth = records(caplog)[2]
    assert fourth.exc_info is not None and str(fourth.exc_info[1]) == "fourth"
    log.flush()
    assert len(records(caplog)) == 3  # no repeats since the fourth: nothing more to say


def test_a_new_event_loop_writes_the_counts_of_the_old_one(caplog):
    log = FailureLog(logger, interval=60)

    async def fail_twice() -> None:
        log.task_failed("send", "POST /x", failure("one"))
        log.task_failed("send", "POST /x", failure("two"))

    asyncio.run(fail_twice())
    assert len(records(caplog)) == 1
    asyncio.run(fail_twice())
    messages = [r.getMessage() for r in records(caplog)]
    assert "and 1 more like it" in messages[1]
    assert records(caplog)[2].exc_info is not None  # the new loop starts a new interval
