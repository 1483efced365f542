"""Run FastAPI's own tutorial tests against rawbg: how much of FastAPI's tutorial runs unchanged.

    python -m tools.fastapi_compat --fastapi PATH [--chapters all|body,query_params]
                                  [--openapi] [--failures]

PATH is a FastAPI source tree: a checkout, a bare git directory (the tree of
its HEAD is used), or FastAPI's sdist unpacked (``pip download fastapi
--no-binary :all: --no-deps``, then ``tar xzf``: it carries docs_src and
tests). Nothing of FastAPI is copied into this repository: the
tool extracts the tutorial sources (``docs_src/<chapter>``) and their tests
(``tests/test_tutorial/test_<chapter>``) into a temporary directory and runs
them there with pytest.

The tutorial files import ``fastapi``; a shim package put first on the path
answers those imports with rawbg's names (``FastAPI`` is ``rawbg.App``, and so
on), which is what changing only the import line of each file does. A name
rawbg lacks fails the import, as it would for a user. Tests of the OpenAPI
schema (``/openapi.json``, ``/docs``, ``/redoc``) are left out unless
``--openapi`` is given. ``--chapters all`` runs every chapter of docs_src
that has tests, but those in `NOT_MEASURED` (each with its reason).

A tutorial file *runs on rawbg* when every test FastAPI has for it passes.
The report gives, per chapter, those files and the tests passed; with
``--failures``, the first line of why each failing test failed.

The tests need ``inline-snapshot`` and ``dirty-equals`` (FastAPI's own test
tools), plus pydantic for the chapters that use models.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The chapters the compatibility work is measured on (issue 10's list).
DEFAULT_CHAPTERS = (
    "path_params",
    "query_params",
    "query_params_str_validations",
    "path_params_numeric_validations",
    "body",
    "body_multiple_params",
    "dataclasses_",
    "dependencies",
    "handling_errors",
    "response_status_code",
    "custom_response",
    "using_request_directly",
    "header_params",
    "cookie_params",
    "background_tasks",
)

# Chapters `--chapters all` leaves out, and why: not a difference between
# rawbg and FastAPI that a user of rawbg would meet.
NOT_MEASURED = {
    "opentelemetry": "FastAPI's own OpenTelemetry integration: its tests need FastAPI's "
    "telemetry test harness (tests/test_telemetry), not part of the tutorial",
}

# fastapi (and the starlette names its tutorial imports) -> rawbg modules.
SHIM_MODULES = {
    "fastapi": "rawbg",
    "fastapi.testclient": "rawbg.testclient",
    "fastapi.responses": "rawbg.responses",
    "fastapi.requests": "rawbg.requests",
    "fastapi.background": "rawbg.background",
    "fastapi.exceptions": "rawbg.errors",
    "fastapi.exception_handlers": "rawbg.exception_handlers",
    "fastapi.encoders": "rawbg.encoders",
    "fastapi.status": "rawbg.status",
    "fastapi.params": "rawbg.params",
    "fastapi.middleware": "rawbg.middleware",
    "fastapi.middleware.cors": "rawbg.middleware.cors",
    "fastapi.middleware.gzip": "rawbg.middleware.gzip",
    "fastapi.middleware.trustedhost": "rawbg.middleware.trustedhost",
    "fastapi.middleware.httpsredirect": "rawbg.middleware.httpsredirect",
    "fastapi.openapi": "rawbg.openapi",
    "fastapi.openapi.utils": "rawbg.openapi.utils",
    "fastapi.openapi.docs": "rawbg.openapi.docs",
    "fastapi.routing": "rawbg.app.routing",
    "starlette": "rawbg",
    "starlette.exceptions": "rawbg.errors",
    "starlette.responses": "rawbg.responses",
    "starlette.requests": "rawbg.requests",
    "starlette.background": "rawbg.background",
    "starlette.status": "rawbg.status",
    "starlette.middleware": "rawbg.middleware",
    "starlette.middleware.cors": "rawbg.middleware.cors",
}
RENAMES = {"FastAPI": "App"}

SHIM_TEMPLATE = '''\
"""Shim: {name} answered from {target} (tools/fastapi_compat.py)."""
import importlib as _importlib

_target = _importlib.import_module({target!r})
_renames = {renames!r}


def __getattr__(name):
    try:
        return getattr(_target, _renames.get(name, name))
    except AttributeError:
        raise AttributeError(f"rawbg has no {{name!r}} (asked for as {name}.{{name}})") from None
'''

# Test-only helpers FastAPI's tests import from fastapi's internals.
COMPAT_SHIM = '''\
"""Shim: what FastAPI's tests read from fastapi._compat."""
import pydantic

PYDANTIC_VERSION_MINOR_TUPLE = tuple(int(x) for x in pydantic.VERSION.split(".")[:2])
'''


# Names FastAPI's tests (not its tutorial) take from fastapi.exceptions: a
# warning class named in their warning filters, and FastAPIError, which FastAPI
# raises for a bad route and for a yield dependency that swallowed the
# handler's exception (rawbg's RouteDefinitionError and
# DependencySwallowedError; a tuple serves pytest.raises and isinstance).
TEST_ONLY_EXCEPTIONS = """
class FastAPIDeprecationWarning(DeprecationWarning):
    pass


FastAPIError = tuple(
    getattr(_target, name)
    for name in ("RouteDefinitionError", "DependencySwallowedError")
    if hasattr(_target, name)
)
"""


def write_shim(into: Path) -> None:
    for name, target in SHIM_MODULES.items():
        parts = name.split(".")
        package = into.joinpath(*parts)
        package.mkdir(parents=True, exist_ok=True)
        source = SHIM_TEMPLATE.format(name=name, target=target, renames=RENAMES)
        if name == "fastapi.exceptions":
            source += TEST_ONLY_EXCEPTIONS
        (package / "__init__.py").write_text(source)
    (into / "fastapi" / "_compat.py").write_text(COMPAT_SHIM)


def extract(fastapi: Path, chapters: list[str], into: Path) -> list[str]:
    """Copy the chapters' sources and tests out of `fastapi`; return the chapters found."""
    wanted = ["tests/__init__.py", "tests/utils.py", "tests/test_tutorial/__init__.py"]
    found = []
    for chapter in chapters:
        pair = [f"docs_src/{chapter}", f"tests/test_tutorial/{test_dir(chapter)}"]
        if all(_exists(fastapi, path) for path in pair):
            wanted += pair
            found.append(chapter)
        else:
            print(f"note: no chapter {chapter!r} in {fastapi}", file=sys.stderr)
    if (fastapi / "docs_src").is_dir():
        for path in wanted:
            _copy_tree(fastapi / path, into / path)
    else:
        archive = subprocess.run(
            ["git", "--git-dir", str(fastapi), "archive", "HEAD", *wanted],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    (into / "docs_src" / "__init__.py").touch()
    return found


# Chapters whose tests directory is not named after them.
TEST_DIRS = {"path_operation_configuration": "test_path_operation_configurations"}


def test_dir(chapter: str) -> str:
    """FastAPI's tests for docs_src/dataclasses_ live in test_dataclasses."""
    return TEST_DIRS.get(chapter, f"test_{chapter.rstrip('_')}")


def _exists(fastapi: Path, path: str) -> bool:
    if (fastapi / "docs_src").is_dir():
        return (fastapi / path).exists()
    listed = subprocess.run(
        ["git", "--git-dir", str(fastapi), "ls-tree", "HEAD", path],
        capture_output=True,
        text=True,
    )
    return bool(listed.stdout.strip())


def _copy_tree(source: Path, target: Path) -> None:
    if source.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
        return
    for path in source.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            _copy_tree(path, target / path.relative_to(source))


def all_chapters(fastapi: Path) -> list[str]:
    """Every chapter of docs_src that has a tests directory, but those not measured."""
    if (fastapi / "docs_src").is_dir():
        names = sorted(path.name for path in (fastapi / "docs_src").iterdir() if path.is_dir())
    else:
        listed = subprocess.run(
            ["git", "--git-dir", str(fastapi), "ls-tree", "--name-only", "HEAD", "docs_src/"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        names = sorted(name.removeprefix("docs_src/") for name in listed)
    for name, why in NOT_MEASURED.items():
        if name in names:
            print(f"note: chapter {name!r} not measured: {why}", file=sys.stderr)
    return [
        name
        for name in names
        if name not in NOT_MEASURED and _exists(fastapi, f"tests/test_tutorial/{test_dir(name)}")
    ]


def run_tests(
    workdir: Path, shim: Path, chapters: list[str], timeout: float, *, openapi: bool
) -> Path:
    report = workdir / "junit.xml"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shim), str(ROOT)])}
    selection = [] if openapi else ["-k", "not openapi"]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            "-o",
            "addopts=",
            *selection,
            "--continue-on-collection-errors",
            f"--junitxml={report}",
            *[f"tests/test_tutorial/{test_dir(chapter)}" for chapter in chapters],
        ],
        cwd=workdir,
        env=env,
        timeout=timeout,
        capture_output=True,
        text=True,
    )
    if not report.exists():  # pytest stopped before running anything (a conftest failed)
        raise SystemExit(f"pytest wrote no report:\n{(done.stdout + done.stderr)[-3000:]}")
    return report


class Outcome:
    def __init__(self) -> None:
        self.passed = 0
        self.failed: list[tuple[str, str]] = []


def read_report(report: Path) -> dict[str, dict[str, Outcome]]:
    """chapter -> tutorial file (or test module) -> outcome of its tests."""
    results: dict[str, dict[str, Outcome]] = collections.defaultdict(
        lambda: collections.defaultdict(Outcome)
    )
    for case in ET.parse(report).getroot().iter("testcase"):
        if case.find("skipped") is not None:
            continue
        module = case.get("classname", "")
        name = case.get("name", "")
        if not module:  # a module that failed to import: the whole file fails
            module, name = name, "import"
        parts = module.removesuffix(".py").replace("/", ".").split(".")
        # tests.test_tutorial.test_<chapter>.test_<file>
        chapter = parts[2].removeprefix("test_") if len(parts) > 2 else module
        param = name.partition("[")[2].rstrip("]").partition("-")[0]
        key = param if param.startswith("tutorial") else parts[-1]
        outcome = results[chapter][key]
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        if problem is None:
            outcome.passed += 1
        else:
            message = (problem.get("message") or problem.text or "").strip().splitlines()
            outcome.failed.append((name, message[0][:160] if message else "?"))
    return results


def print_report(results: dict[str, dict[str, Outcome]], *, failures: bool) -> tuple[int, int]:
    all_files = all_ok = 0
    print(f"{'chapter':34} {'files ok':>9} {'tests ok':>10}")
    for chapter in sorted(results):
        files = results[chapter]
        ok = sum(1 for outcome in files.values() if not outcome.failed)
        tests = sum(o.passed + len(o.failed) for o in files.values())
        passed = sum(o.passed for o in files.values())
        all_files += len(files)
        all_ok += ok
        print(f"{chapter:34} {ok:>4}/{len(files):<4} {passed:>5}/{tests:<4}")
        if failures:
            for key, outcome in sorted(files.items()):
                for name, message in outcome.failed:
                    print(textwrap.indent(f"{key}: {name}: {message}", "    "))
    print(f"{'total':34} {all_ok:>4}/{all_files:<4}")
    return all_ok, all_files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fastapi", type=Path, required=True, help="a FastAPI checkout or git dir")
    parser.add_argument(
        "--chapters",
        default=",".join(DEFAULT_CHAPTERS),
        help="comma-separated chapter names, or 'all' (default: the chapters of issue 10)",
    )
    parser.add_argument("--openapi", action="store_true", help="also run the OpenAPI tests")
    parser.add_argument("--failures", action="store_true", help="say why each failing test failed")
    parser.add_argument("--keep", type=Path, help="extract into this directory and keep it")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds for the whole run")
    args = parser.parse_args(argv)
    fastapi = args.fastapi.resolve()
    if args.chapters == "all":
        chapters = all_chapters(fastapi)
    else:
        chapters = [c.strip() for c in args.chapters.split(",") if c.strip()]
    with tempfile.TemporaryDirectory(prefix="rawbg-compat-") as scratch:
        workdir = args.keep or Path(scratch) / "work"
        workdir.mkdir(parents=True, exist_ok=True)
        shim = Path(scratch) / "shim"
        write_shim(shim)
        found = extract(fastapi, chapters, workdir)
        report = run_tests(workdir, shim, found, args.timeout, openapi=args.openapi)
        print_report(read_report(report), failures=args.failures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
