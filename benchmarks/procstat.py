"""What Linux's /proc says about a process (CPU time, resident memory) and about CPU contention."""

from __future__ import annotations

import os
from pathlib import Path


def cpu_seconds(pid: int) -> float:
    """User + system CPU time process `pid` has used so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)"
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """Resident set size (VmRSS): the memory process `pid` holds in RAM."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise LookupError(f"no VmRSS for process {pid}")


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
