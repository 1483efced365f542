"""The supervisor's decisions that need no process: backoff, exit descriptions, reload snapshots."""

from __future__ import annotations

import os
import signal

from rawbg.server.config import RESTART_BACKOFF_FIRST, RESTART_BACKOFF_MAX, WORKER_HEALTHY_AFTER
from rawbg.server.reload import changes, snapshot
from rawbg.server.supervisor import Backoff, describe_exit


def test_backoff_doubles_while_workers_die_young_and_resets_after_a_healthy_run():
    backoff = Backoff()
    delays = [backoff.next_delay(uptime=0.5) for _ in range(12)]
    assert delays[:3] == [
        RESTART_BACKOFF_FIRST,
        2 * RESTART_BACKOFF_FIRST,
        4 * RESTART_BACKOFF_FIRST,
    ]
    assert max(delays) == RESTART_BACKOFF_MAX == delays[-1]
    assert backoff.next_delay(uptime=WORKER_HEALTHY_AFTER) == RESTART_BACKOFF_FIRST


def test_exit_descriptions_say_status_or_signal():
    assert describe_exit(0) == "exit status 0"
    assert describe_exit(3) == "exit status 3"
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL"
    assert describe_exit(-200) == "killed by signal 200"


def test_reload_sees_py_files_added_edited_and_removed_and_skips_caches(tmp_path):
    (tmp_path / "main.py").write_text("x = 1\n")
    (tmp_path / "notes.txt").write_text("not code\n")
    for skipped in ("__pycache__", ".venv", "site-packages"):
        (tmp_path / skipped).mkdir()
        (tmp_path / skipped / "cached.py").write_text("")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("")
    before = snapshot(str(tmp_path))
    assert sorted(os.path.relpath(path, tmp_path) for path in before) == [
        "main.py",
        os.path.join("pkg", "mod.py"),
    ]
    assert changes(before, snapshot(str(tmp_path))) == []

    main = tmp_path / "main.py"
    stat = main.stat()
    os.utime(main, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    (tmp_path / "pkg" / "mod.py").unlink()
    (tmp_path / "new.py").write_text("")
    (tmp_path / "__pycache__" / "cached.py").write_text("changed")
    assert changes(before, snapshot(str(tmp_path))) == sorted(
        [str(main), str(tmp_path / "new.py"), str(tmp_path / "pkg" / "mod.py")]
    )
