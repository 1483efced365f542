"""The compiled open-loop generator, benchmarks/loadgen.c: built at first use, never committed.

``generator_path()`` compiles it with the system compiler (``$CC``, else ``cc``) into
benchmarks/results/local/bin/ (ignored by git), under a name carrying a hash of the source
and the command, so that an edited loadgen.c is rebuilt and an unchanged one is not. Two
runs building at once each write their own temporary file and rename it into place.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

SOURCE = Path(__file__).with_name("loadgen.c")
BUILD_DIR = Path(__file__).parent / "results" / "local" / "bin"
FLAGS = ("-O2", "-Wall", "-Wextra")
LIBS = ("-lm",)


class GeneratorUnavailable(RuntimeError):
    """No C compiler, or loadgen.c did not compile: the message says which, and what to do."""


def compiler() -> list[str]:
    """The compiler's command: ``$CC`` (it may carry options), else ``cc``."""
    return shlex.split(os.environ.get("CC", "")) or ["cc"]


def generator_path() -> Path:
    """The built generator, compiling it first if this source has not been built yet."""
    command = compiler()
    if shutil.which(command[0]) is None:
        raise GeneratorUnavailable(
            f"no C compiler ({command[0]!r} is not on PATH) to build {SOURCE.name}: install "
            "one (Debian: apt-get install gcc) or set CC; or run the Python generator "
            "instead with --generator python (it saturates a core at a few thousand req/s)"
        )
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source + " ".join([*command, *FLAGS, *LIBS]).encode()).hexdigest()
    binary = BUILD_DIR / f"loadgen-{digest[:16]}"
    if binary.exists():
        return binary
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=BUILD_DIR, prefix=".loadgen-")
    os.close(handle)
    try:
        built = subprocess.run(
            [*command, *FLAGS, "-o", temporary, str(SOURCE), *LIBS],
            capture_output=True,
            text=True,
            check=False,
        )
        if built.returncode != 0:
            raise GeneratorUnavailable(
                f"{' '.join(command)} could not build {SOURCE}:\n{built.stderr[-2000:]}"
            )
        os.replace(temporary, binary)
        for stale in BUILD_DIR.glob("loadgen-*"):  # builds of older sources
            if stale != binary:
                stale.unlink(missing_ok=True)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return binary
