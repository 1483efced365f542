"""Check rawbg as users get it: built, installed from the wheel, imported and served.

Every test and the README's commands use an editable install, which reads the
source tree; a wheel holds only what the build was told to put in it. This
check (run by `.ci/run`) builds the sdist, then the wheel *from the sdist*
(`python -m build` does both, so the sdist must be complete), checks their
metadata with `twine check`, prints the wheel's file list, and installs the
wheel into a fresh virtual environment with no editable install. From a
directory outside the checkout it then:

1. runs ``python -m rawbg --help``;
2. imports every module of the installed package;
3. serves the demo app and answers ``POST /send-notification/...``, whose
   background task writes ``log.txt``.

Usage: ``python -m tools.check_package [--keep DIR]``. Exits non-zero, saying
which step failed, if any does.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Importing every module of the installed package, in the fresh venv; prints
# how many were imported, and fails on the first that does not import.
IMPORT_ALL = """
import importlib, pkgutil, sys
import rawbg
if not rawbg.__file__.startswith(sys.prefix):
    sys.exit(f"rawbg was imported from {rawbg.__file__}, not from the venv {sys.prefix}")
names = ["rawbg"] + [m.name for m in pkgutil.walk_packages(rawbg.__path__, "rawbg.")]
for name in names:
    if name == "rawbg.__main__":
        continue  # running it is step 1
    importlib.import_module(name)
print(f"imported {len(names) - 1} modules from {rawbg.__path__[0]}")
"""

DEMO_PATH = "/send-notification/wheel@example.com"
DEMO_LOG = "notification for wheel@example.com: some notification"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="build and install here, and keep it")
    args = parser.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="rawbg-package-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        check(work)
    except CheckFailed as failure:
        print(f"package check FAILED: {failure}", file=sys.stderr)
        return 1
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print("package check passed")
    return 0


class CheckFailed(Exception):
    """A step of the check did not give what a user needs."""


def check(work: Path) -> None:
    dist = work / "dist"
    source = work / "source"
    step("copy the checkout's files, as a clean clone has them")
    copy_checkout(source)
    uv = uv_command()
    step("build the sdist, then the wheel from the sdist")
    # uv (in .[dev]) makes build's isolated environments in a second or two, pip in ~10 s each
    installer = ["--installer", "uv"] if uv else []
    run([sys.executable, "-m", "build", *installer, "--outdir", str(dist), str(source)], quiet=True)
    [sdist] = dist.glob("rawbg-*.tar.gz")
    [wheel] = dist.glob("rawbg-*.whl")
    step("twine check")
    run([sys.executable, "-m", "twine", "--no-color", "check", "--strict", str(sdist), str(wheel)])
    step(f"the wheel's files ({wheel.name})")
    with zipfile.ZipFile(wheel) as archive:
        files = sorted(archive.namelist())
    for name in files:
        print(f"  {name}")
    missing = missing_from_wheel(files, source)
    if missing:
        raise CheckFailed(f"the wheel lacks files of rawbg/: {', '.join(missing)}")

    step("install the wheel into a fresh venv (no editable install)")
    venv = work / "venv"
    python = str(venv / "bin" / "python")
    if uv:  # the same wheel and h11 from the index, installed in a fraction of pip's time
        run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
        run([*uv, "pip", "install", "-q", "--python", python, str(wheel)])
    else:
        run([sys.executable, "-m", "venv", str(venv)])
        run([python, "-m", "pip", "install", "-q", str(wheel)])
    outside = work / "outside"  # not the checkout: nothing is imported from the source tree
    outside.mkdir()

    step("python -m rawbg --help")
    help_text = run([python, "-m", "rawbg", "--help"], cwd=outside, quiet=True)
    if "usage: python -m rawbg" not in help_text:
        raise CheckFailed("--help printed no usage line")
    print(indent("\n".join(help_text.splitlines()[:3]) + "\n..."))

    step("import every module")
    run([python, "-c", IMPORT_ALL], cwd=outside)

    step("serve the demo and answer POST " + DEMO_PATH)
    serve_demo(python, outside)


def copy_checkout(target: Path) -> None:
    """Copy the files git tracks (and new ones it does not ignore) to `target`.

    Not the working tree as it is: an editable install leaves rawbg.egg-info
    in it, whose file list setuptools would take as package data, hiding a
    package the build itself does not find (it hid rawbg.middleware).
    """
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            destination = target / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)


def missing_from_wheel(files: list[str], source: Path) -> list[str]:
    """The files under rawbg/ in the checkout that the wheel does not hold."""
    wanted = [
        path.relative_to(source).as_posix()
        for path in (source / "rawbg").rglob("*")
        if path.is_file()
    ]
    held = set(files)
    return [name for name in sorted(wanted) if name not in held]


def serve_demo(python: str, cwd: Path) -> None:
    port = free_port()
    log_file = cwd / "log.txt"
    server = subprocess.Popen(
        [python, "-m", "rawbg", "--port", str(port)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_port(port, server)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", DEMO_PATH)
        response = conn.getresponse()
        body = response.read().decode()
        conn.close()
        print(f"  {response.status} {body}")
        if response.status != 200 or "Notification sent in the background" not in body:
            raise CheckFailed(f"the demo answered {response.status} {body!r}")
        deadline = time.monotonic() + 10
        while not (log_file.exists() and log_file.read_text() == DEMO_LOG):
            if time.monotonic() > deadline:
                raise CheckFailed("the demo's background task did not write log.txt")
            time.sleep(0.05)
        print(f"  log.txt: {log_file.read_text()}")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            output, _ = server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            output, _ = server.communicate()
    print(indent(output))
    if server.returncode != 0:
        raise CheckFailed(f"the demo server exited with {server.returncode} on SIGTERM")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, server: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise CheckFailed(f"the demo server exited with {server.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise CheckFailed("the demo server did not listen within 30 s")


def uv_command() -> list[str] | None:
    """How to run uv, if this environment has it (``.[dev]`` does), else None."""
    beside = Path(sys.executable).parent / "uv"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("uv")
    return [found] if found else None


def run(command: list[str], *, cwd: Path | None = None, quiet: bool = False) -> str:
    # the installed package, not the checkout, must answer: no PYTHONPATH leaks in
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise CheckFailed(f"{' '.join(command)} exited with {done.returncode}\n{indent(output)}")
    if not quiet:
        print(indent(output))
    return output


def step(title: str) -> None:
    print(f"== {title}", flush=True)


def indent(text: str) -> str:
    return "\n".join("  " + line for line in text.rstrip().splitlines())


if __name__ == "__main__":
    sys.exit(main())
