"""Whether a process of this host still runs, and what tells it from a later one with its pid.

The task journal's stores use these to take over, at once, the entries of a
process of this host that is gone, instead of waiting out its lease: a pid
alone does not say that, since pids are reused (a container's PID 1, killed
and restarted, gets its predecessor's pid back). So each owner also records
its process's *start* (`process_start`), which no later process with that
pid shares.
"""

from __future__ import annotations

import functools
import os


def process_alive(pid: int) -> bool:
    """Whether process `pid` of this host is running.

    A zombie is not: it was killed (or exited) and only waits for its parent to
    reap it, which, when the parent was killed too, may take long or never
    happen. ``kill(pid, 0)`` cannot tell; Linux's ``/proc`` can. Elsewhere a
    zombie counts as alive until its lease expires.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and fields[0] == b"Z"


def process_start(pid: int) -> str | None:
    """What tells process `pid` from any other that has or had the same pid.

    ``BOOT:TICKS``: the kernel's boot id, and the process's start time in clock
    ticks since that boot (field 22 of ``/proc/PID/stat``). None where
    ``/proc`` cannot tell (not Linux, or the process is not visible).
    """
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 20:
        return None
    return f"{_boot_id()}:{fields[19].decode('ascii', 'replace')}"


def _stat_fields(pid: int) -> list[bytes] | None:
    """The fields of ``/proc/PID/stat`` from the third (the state) on; None without it.

    The line is "pid (command) state ...", and the command may itself
    contain ")" and spaces: the fields start after the last ")".
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields or None


@functools.cache
def _boot_id() -> str:
    """This boot's id: start times count from the boot, so they repeat after a reboot."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as boot_id:
            return boot_id.read().strip()
    except OSError:
        return ""
