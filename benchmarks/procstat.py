"""What Linux's /proc says about a process (CPU time, resident memory) and about CPU contention."""

from __future__ import annotations

import os
import time
from pathlib import Path


def _stat_fields(pid: int) -> list[str]:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()  # after "pid (comm)": field 3 onwards


def process_tree(pid: int) -> list[int]:
    """`pid` and every live descendant: granian serves from a worker process of its own."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int(_stat_fields(int(entry.name))[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += children.get(current, [])
    return tree


def cpu_seconds(pid: int) -> float:
    """User + system CPU time process `pid` and its live descendants have used so far."""
    ticks = 0
    for member in process_tree(pid):
        try:
            fields = _stat_fields(member)
        except OSError:  # ended meanwhile
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def run_delay_seconds(pid: int) -> float:
    """Time the threads of `pid` and its live descendants were runnable but not running.

    From each thread's /proc/PID/task/TID/schedstat (its second number, in ns):
    the CPU wait of this process alone, whatever else the machine runs.
    """
    total = 0
    for member in process_tree(pid):
        try:
            threads = list(Path(f"/proc/{member}/task").iterdir())
        except OSError:
            continue
        for thread in threads:
            try:
                total += int((thread / "schedstat").read_text().split()[1])
            except (OSError, IndexError, ValueError):
                continue
    return total / 1e9


def steal_seconds() -> float | None:
    """CPU time the hypervisor took from this machine's CPUs since boot (/proc/stat), summed."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def rss_bytes(pid: int) -> int:
    """Resident set size (VmRSS) of process `pid` and its live descendants."""
    total = 0
    for member in process_tree(pid):
        try:
            lines = Path(f"/proc/{member}/status").read_text().splitlines()
        except OSError:
            continue
        total += next((int(x.split()[1]) * 1024 for x in lines if x.startswith("VmRSS:")), 0)
    if total == 0:
        raise LookupError(f"no VmRSS for process {pid}")
    return total


def cpu_wait_seconds() -> float | None:
    """Time during which some runnable task waited for a CPU, since boot (PSI "some" total).

    Its growth over a run, divided by the run's duration, says how much of the
    run the machine was short of CPU: our server and client compete for the
    two cores with each other and with anything else running. None without PSI.
    """
    try:
        first_line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    total = first_line.rsplit("total=", 1)[1]
    return int(total) / 1e6


def wait_for_quiet(max_wait_pct: float, patience: float) -> float | None:
    """Wait (at most `patience` s) for a second whose CPU wait (%) is under `max_wait_pct`.

    Returns the CPU wait (%) of the last second sampled, or None without PSI.
    On a shared machine a run started in the middle of someone else's burst
    measures the burst; waiting for a quiet second first costs little.
    """
    deadline = time.monotonic() + patience
    while True:
        before = cpu_wait_seconds()
        time.sleep(1)
        after = cpu_wait_seconds()
        if before is None or after is None:
            return None
        waiting = 100 * (after - before)
        if waiting < max_wait_pct or time.monotonic() >= deadline:
            return waiting
