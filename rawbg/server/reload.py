"""``--reload``: notice that a ``.py`` file under the app directory changed.

Polling with the standard library only: every `RELOAD_POLL_INTERVAL` the
supervisor takes a `snapshot` (path -> modification time) of the ``.py``
files under the directory and compares it with the last one. A file added,
removed or written counts. Directories that hold no app code (hidden ones,
``__pycache__``, virtual environments' ``site-packages``, ``node_modules``)
are not walked, so that a project with its ``.venv`` inside stays cheap to poll.
"""

from __future__ import annotations

import os

SKIPPED_DIRS = frozenset({"__pycache__", "site-packages", "node_modules"})

Snapshot = dict[str, int]


def snapshot(root: str) -> Snapshot:
    """Path -> st_mtime_ns of every ``.py`` file under `root`."""
    found: Snapshot = {}
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = [d for d in subdirs if not d.startswith(".") and d not in SKIPPED_DIRS]
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                try:
                    found[path] = os.stat(path).st_mtime_ns
                except OSError:  # removed between listing and stat
                    continue
    return found


def changes(before: Snapshot, after: Snapshot) -> list[str]:
    """The files added, removed or modified between two snapshots, sorted."""
    changed = {path for path, mtime in after.items() if before.get(path) != mtime}
    changed.update(path for path in before if path not in after)
    return sorted(changed)
