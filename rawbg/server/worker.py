"""The link between a supervisor and one of its workers.

A worker is ``python -m rawbg`` run again with the user's own command line,
plus one environment variable, `LINK_ENV`, that makes it a worker:

* ``listen_fd``: the listening socket the supervisor bound, inherited; the
  worker serves on it instead of binding (`ServerConfig.fd`);
* ``ready_fd``: the write end of a pipe; the worker writes one byte to it once
  it listens, which is how the supervisor knows a replacement is ready before
  it stops the worker it replaces;
* ``supervisor_pid``: the worker drains and exits if its supervisor is gone.

Passing the command line, not a list of options, means a flag added to the
CLI reaches the workers without anyone remembering to forward it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rawbg.server.server import Server

logger = logging.getLogger("rawbg.worker")

LINK_ENV = "RAWBG_WORKER_LINK"
READY = b"r"


@dataclass(frozen=True, slots=True)
class WorkerLink:
    """What a worker received from its supervisor."""

    listen_fd: int
    ready_fd: int
    supervisor_pid: int

    def environ(self) -> dict[str, str]:
        """The environment entry that makes ``python -m rawbg`` a worker."""
        return {LINK_ENV: f"{self.listen_fd},{self.ready_fd},{self.supervisor_pid}"}

    @classmethod
    def take_from_environ(cls) -> WorkerLink | None:
        """The link if this process is a worker; removed from the environment
        so that the app's own child processes do not take it for theirs."""
        value = os.environ.pop(LINK_ENV, None)
        if value is None:
            return None
        try:
            listen_fd, ready_fd, supervisor_pid = (int(part) for part in value.split(","))
        except ValueError:
            raise SystemExit(f"error: malformed {LINK_ENV}={value!r}") from None
        return cls(listen_fd=listen_fd, ready_fd=ready_fd, supervisor_pid=supervisor_pid)

    def announce(self, server: Server) -> None:
        """Tell the supervisor this worker is listening (one byte, then close)."""
        logger.info("worker ready on %s", server.address)
        try:
            os.write(self.ready_fd, READY)
        finally:
            os.close(self.ready_fd)
