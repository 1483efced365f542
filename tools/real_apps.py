"""Run five real FastAPI applications' own test suites on FastAPI and on rawbg.

    python -m tools.real_apps --apps DIR [--only NAME,...] [--cache DIR] [--keep DIR]

The yardstick of issue 27: small public applications nobody on this project
wrote, tried as a migrating user would. Nothing of theirs is in this
repository. DIR holds their checkouts, one directory per repository named
``owner+name`` (``Redevil10+fastapi-jwt``), each a checkout or a bare git
directory (its HEAD is used), or with the bare directory in ``repo/`` as the
session's ``fetch`` tool leaves it (``/work/.mirror``). To make DIR anywhere
else::

    git clone --bare https://github.com/Redevil10/fastapi-jwt DIR/Redevil10+fastapi-jwt

and so on for each repository in `APPS`.

For each app the tool copies its tree into a temporary directory, twice, and
runs the app's own pytest suite on each copy: once on FastAPI as installed,
once with the ``fastapi``/``starlette`` imports answered by rawbg. The second
uses the shim of tools/fastapi_compat.py, put first on the path, which is
what changing only the import lines of the app does (``FastAPI`` is
``rawbg.App``); nothing else in the app is changed. An app that starts its
server with ``uvicorn module:app`` gets ``python -m rawbg module:app`` under
that name (a ``uvicorn`` script first on PATH): the command line is the other
line a user changes.

Each app's requirements (its own files, pinned as the app pins them, or the
packages its README names) are installed in a venv of the tool's own, kept in
``--cache`` (``~/.cache/rawbg-real-apps``) and made again only when they
change. rawbg itself is taken from this checkout (``--rawbg`` names another
copy of the package, to measure a before and after). PyPI must be reachable
the first time.

The report gives, per app, the tests passed on FastAPI and on rawbg, and
each test that passes on FastAPI but not on rawbg with the first line of why;
tests that need ASGI itself (`RealApp.needs_asgi`) are listed apart, with the
reason. The exit status is 1 when a test that passes on FastAPI fails on
rawbg and is not one of those.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from tools.fastapi_compat import junit_cases, write_shim

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class RealApp:
    """One application: where it is, what it needs, how its tests run."""

    name: str
    repo: str
    #: the directory of the app inside the repository ("" for its root)
    subdir: str = ""
    #: the app's requirement files (relative to `subdir`), installed as they are
    requirements: tuple[str, ...] = ()
    #: packages the app names elsewhere (its README) when it has no requirement file
    packages: tuple[str, ...] = ()
    #: what the app's own instructions hand to pytest
    pytest_args: tuple[str, ...] = ()
    #: tests that call the app as an ASGI callable, which rawbg is not: name -> why
    needs_asgi: dict[str, str] = field(default_factory=dict)
    #: the Python version the app is written for ("3.12": PEP 695 generics)
    python: str = "3.11"


APPS = (
    RealApp(
        name="fastapi-jwt",
        repo="Redevil10/fastapi-jwt",
        requirements=("requirements.txt",),
    ),
    RealApp(
        name="todo-fast",
        repo="Alisher007/todo-fast",
        # its README: uv pip install fastapi "uvicorn[standard]" sqlmodel pytest httpx
        packages=("fastapi", "uvicorn[standard]", "sqlmodel", "pytest", "httpx"),
        pytest_args=("tests/",),
    ),
    RealApp(
        name="todo-list",
        repo="tashmulla/todo-list",
        subdir="todo-backend",
        requirements=("requirements.txt",),
    ),
    RealApp(
        name="background-task",
        repo="44ai-labs/fastapi-pytest-background-task",
        requirements=("requirements.txt",),
        # its AsyncClient(app=app) test was written for httpx before 0.28, which took `app=`
        packages=("httpx<0.28",),
        pytest_args=("test.py",),
        needs_asgi={
            "test_async_not_working": "httpx.AsyncClient(app=app) calls the app as an "
            "ASGI callable in the test's own loop",
        },
    ),
    RealApp(
        name="url-shortener",
        repo="fabianfalon/url-shortener",
        requirements=("requirements-tests.txt",),
        # Starlette's TestClient needs httpx, which its requirement files leave out;
        # motor 3.4 imports pymongo internals later pymongo releases removed (the
        # pymongo of the app's time, April 2024)
        packages=("httpx", "pymongo==4.6.3"),
        python="3.12",
    ),
)

#: rawbg's extras the apps need in place of FastAPI's optional dependencies: forms, for
#: python-multipart (whose releases before 0.0.13 take the import name `multipart` from
#: defnull's multipart, which rawbg's forms extra is)
EXTRAS = ("forms",)

UVICORN_SHIM = """\
#!/bin/sh
# tools/real_apps.py: the app's `uvicorn MODULE:APP ...` served by rawbg instead
exec {python} -m rawbg "$@"
"""


def checkout(apps_dir: Path, app: RealApp) -> Path:
    """Where `app`'s repository is in `apps_dir`: a checkout or a bare git directory."""
    owner, name = app.repo.split("/")
    for candidate in (
        apps_dir / f"{owner}+{name}" / "repo",
        apps_dir / f"{owner}+{name}",
        apps_dir / name,
    ):
        if candidate.is_dir():
            return candidate
    raise SystemExit(
        f"no checkout of {app.repo} in {apps_dir}: "
        f"git clone --bare https://github.com/{app.repo} {apps_dir}/{owner}+{name}"
    )


def copy_app(source: Path, app: RealApp, into: Path) -> Path:
    """Copy the repository's tree into `into`; return the app's directory there."""
    into.mkdir(parents=True)
    if (source / "HEAD").is_file() and (source / "objects").is_dir():  # a bare git directory
        archive = subprocess.run(
            ["git", "--git-dir", str(source), "archive", "HEAD"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    else:
        ignore = shutil.ignore_patterns(".git", ".venv", "__pycache__", ".pytest_cache")
        shutil.copytree(source, into, ignore=ignore, dirs_exist_ok=True)
    return into / app.subdir if app.subdir else into


def venv_for(app: RealApp, app_dir: Path, cache: Path, python: str) -> Path:
    """The venv holding `app`'s requirements, made once per set of requirements."""
    key = hashlib.sha256(python.encode())
    for requirement_file in app.requirements:
        key.update((app_dir / requirement_file).read_bytes())
    key.update("\n".join(app.packages).encode())
    venv = cache / f"{app.name}-{key.hexdigest()[:12]}"
    ready = venv / "rawbg-real-apps-ready"
    if ready.exists():
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    print(f"{app.name}: installing its requirements into {venv}", file=sys.stderr)
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    files = [argument for name in app.requirements for argument in ("-r", name)]
    # one resolution for all; from the app's directory, as a file may name another
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *files, *app.packages],
        cwd=app_dir,
        check=True,
    )
    ready.touch()
    return venv


def extras_dir(cache: Path, python: str) -> Path:
    """A directory holding rawbg's `EXTRAS` (pyproject.toml's), put first on the rawbg run's path.

    The app's venv has FastAPI's optional dependencies; a user moving to rawbg
    installs rawbg's extras instead. First on the path, they win over an old
    python-multipart that would take the name ``multipart``.
    """
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = sorted(r for e in EXTRAS for r in project["optional-dependencies"][e])
    key = hashlib.sha256("\n".join([python, *requirements]).encode()).hexdigest()[:12]
    target = cache / f"rawbg-extras-{key}"
    ready = target / "rawbg-real-apps-ready"
    if not ready.exists():
        shutil.rmtree(target, ignore_errors=True)
        pip = [python, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target)]
        subprocess.run([*pip, *requirements], check=True)
        ready.touch()
    return target


def run_suite(
    app: RealApp,
    app_dir: Path,
    venv: Path,
    *,
    rawbg: Path | None,
    scratch: Path,
    timeout: float,
    extras: Path | None = None,
) -> dict[str, str | None]:
    """Run the app's tests in `app_dir`: test id -> None if passed, else the first line of why."""
    report = scratch / "junit.xml"
    path = [str(app_dir)]
    bin_path = [str(venv / "bin")]
    if rawbg is not None:
        shim, rawbg_only, bin_dir = scratch / "shim", scratch / "rawbg", scratch / "bin"
        write_shim(shim)
        # rawbg's package alone: this checkout's tests/ and tools/ would shadow the app's
        rawbg_only.mkdir()
        (rawbg_only / "rawbg").symlink_to(rawbg)
        bin_dir.mkdir()
        uvicorn = bin_dir / "uvicorn"
        uvicorn.write_text(UVICORN_SHIM.format(python=venv / "bin" / "python"))
        uvicorn.chmod(0o755)
        path = [str(shim), str(rawbg_only), *([str(extras)] if extras else []), *path]
        bin_path.insert(0, str(bin_dir))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(path),
        "PATH": os.pathsep.join([*bin_path, os.environ.get("PATH", "")]),
        "PYTHONHASHSEED": "0",
    }
    env.pop("VIRTUAL_ENV", None)
    command = [
        str(venv / "bin" / "python"),
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-q",
        f"--junitxml={report}",
        *app.pytest_args,
    ]
    try:
        done = subprocess.run(
            command, cwd=app_dir, env=env, timeout=timeout, capture_output=True, text=True
        )
    except subprocess.TimeoutExpired:
        return {"(the whole suite)": f"did not finish in {timeout:.0f} s"}
    cases = junit_cases(report) if report.exists() else []
    if not cases and done.returncode != 0:  # pytest stopped before any test (a conftest failed)
        return {"(the whole suite)": first_error(done.stdout + done.stderr, done.returncode)}
    return {f"{module}::{name}": why for module, name, why in cases}


def first_error(output: str, status: int) -> str:
    """The line of pytest's output that says why nothing ran (``E   ImportError: ...``)."""
    lines = [line.strip() for line in output.splitlines()]
    errors = [line.removeprefix("E").strip() for line in lines if line.startswith("E ")]
    if errors:
        return errors[-1]
    return next((line for line in reversed(lines) if line), f"pytest exited with {status}")


def python_for(version: str, default: str) -> str:
    """A Python of `version`: `default` when it is one, else pyenv's newest, else on PATH."""
    if (
        f"{sys.version_info.major}.{sys.version_info.minor}" == version
        and default == sys.executable
    ):
        return default
    found = sorted(
        (Path.home() / ".pyenv" / "versions").glob(f"{version}.*/bin/python{version}"),
        key=lambda path: [int(part) for part in path.parts[-3].split(".") if part.isdigit()],
    )
    if found:
        return str(found[-1])
    on_path = shutil.which(f"python{version}")
    if on_path is None:
        raise SystemExit(f"no Python {version}: install it (pyenv install {version}) or on PATH")
    return on_path


@dataclass
class Comparison:
    app: RealApp
    fastapi: dict[str, str | None]
    rawbg: dict[str, str | None]

    def passed(self, results: dict[str, str | None]) -> int:
        return sum(1 for why in results.values() if why is None)

    def lost(self) -> list[tuple[str, str, str | None]]:
        """Tests that pass on FastAPI and not on rawbg: (test, why, the ASGI reason or None)."""
        lost = []
        for test, why in sorted(self.fastapi.items()):
            if why is not None:
                continue
            ours = self.rawbg.get(test, "did not run on rawbg")
            if ours is None:
                continue
            name = test.rpartition("::")[2].partition("[")[0]
            lost.append((test, ours, self.app.needs_asgi.get(name)))
        return lost

    def gained(self) -> list[str]:
        """Tests that pass on rawbg and fail on FastAPI."""
        return sorted(
            test
            for test, why in self.rawbg.items()
            if why is None and self.fastapi.get(test) is not None
        )


def print_report(comparisons: list[Comparison]) -> int:
    """The per-app table and what rawbg lost; the number of tests lost that need no ASGI."""
    print(f"{'app':18} {'passed on FastAPI':>18} {'passed on rawbg':>16}")
    total_fastapi = total_rawbg = unexplained = 0
    for comparison in comparisons:
        theirs, ours = comparison.passed(comparison.fastapi), comparison.passed(comparison.rawbg)
        total_fastapi, total_rawbg = total_fastapi + theirs, total_rawbg + ours
        ran = max(len(comparison.fastapi), len(comparison.rawbg))
        print(f"{comparison.app.name:18} {theirs:>11} of {ran:<4} {ours:>9} of {ran:<4}")
        lost = comparison.lost()
        unexplained += sum(1 for _, _, asgi in lost if asgi is None)
        whole = comparison.rawbg.get("(the whole suite)")
        if whole is not None:  # one reason for every test: said once
            print(f"    no test ran on rawbg: {whole}")
            lost = [entry for entry in lost if entry[2] is not None]
        for test, why, asgi in lost:
            reason = why if asgi is None else f"needs ASGI: {asgi}"
            print(textwrap.indent(f"{test}: {reason}", "    "))
        for test in comparison.gained():
            print(
                textwrap.indent(
                    f"{test}: passes on rawbg only ({comparison.fastapi[test]})", "    "
                )
            )
    print(f"{'total':18} {total_fastapi:>11}      {total_rawbg:>9}")
    return unexplained


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apps", type=Path, required=True, help="the directory of checkouts")
    parser.add_argument("--only", help="comma-separated app names (default: all)")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path.home() / ".cache" / "rawbg-real-apps",
        help="where the apps' venvs are kept",
    )
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="the Python of the venvs of apps written for its version (others: pyenv's)",
    )
    parser.add_argument(
        "--rawbg",
        type=Path,
        default=ROOT / "rawbg",
        help="the rawbg package to try (default: this checkout's; another commit's, for a "
        "before/after: git worktree add /tmp/before COMMIT, then /tmp/before/rawbg)",
    )
    parser.add_argument("--keep", type=Path, help="copy the apps into this directory and keep it")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds for each suite")
    args = parser.parse_args(argv)
    apps = APPS
    if args.only:
        wanted = {name.strip() for name in args.only.split(",")}
        unknown = wanted - {app.name for app in APPS}
        if unknown:
            parser.error(f"unknown apps {sorted(unknown)}; known: {[a.name for a in APPS]}")
        apps = tuple(app for app in APPS if app.name in wanted)
    comparisons = []
    with tempfile.TemporaryDirectory(prefix="rawbg-real-apps-") as temporary:
        scratch = args.keep.resolve() if args.keep else Path(temporary)
        for app in apps:
            source = checkout(args.apps.resolve(), app)
            runs: dict[str, dict[str, str | None]] = {}
            for framework in ("fastapi", "rawbg"):
                where = scratch / app.name / framework
                app_dir = copy_app(source, app, where / "app")
                python = python_for(app.python, args.python)
                venv = venv_for(app, app_dir, args.cache.resolve(), python)
                runs[framework] = run_suite(
                    app,
                    app_dir,
                    venv,
                    rawbg=args.rawbg.resolve() if framework == "rawbg" else None,
                    extras=extras_dir(args.cache.resolve(), python),
                    scratch=where,
                    timeout=args.timeout,
                )
            comparisons.append(Comparison(app, runs["fastapi"], runs["rawbg"]))
    return 1 if print_report(comparisons) else 0


if __name__ == "__main__":
    sys.exit(main())
