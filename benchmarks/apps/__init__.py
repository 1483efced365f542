"""The benchmarked apps: one endpoint, one background task of ``BENCH_TASK_SECONDS``."""

import os

TASK_SECONDS_ENV = "BENCH_TASK_SECONDS"
MESSAGE = {"message": "Notification sent in the background"}


def task_seconds() -> float:
    """How long each background task sleeps, from the environment (default 0)."""
    return float(os.environ.get(TASK_SECONDS_ENV, "0"))
