"""Run FastAPI's own tutorial tests against rawbg: how much of FastAPI's tutorial runs unchanged.

    python -m tools.fastapi_compat --fastapi PATH [--chapters all|body,query_params]
                                  [--openapi] [--failures] [--compare]

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
schema (test functions named ``*openapi*``: ``/openapi.json``, ``/docs``,
``/redoc``) are left out unless ``--openapi`` is given. ``--chapters all``
runs every chapter of docs_src that has tests, but those in `NOT_MEASURED`
(each with its reason).

A tutorial file *runs on rawbg* when every test FastAPI has for it passes.
The report gives, per chapter, those files and the tests passed; with
``--failures``, the first line of why each failing test failed.

``--compare`` also runs the same tests on FastAPI itself and records, on both,
every request the tests send through the test client and its answer (status,
body, and the headers an app sets: `IGNORED_HEADERS` are the server's own).
Each answer rawbg gives that differs from FastAPI's is counted per chapter
and, with ``--failures``, shown: a difference is flagged even where FastAPI's
test does not look (a 200 with another body), and even in a test that passes.

What the tests need besides rawbg (FastAPI itself, its test tools
``inline-snapshot`` and ``dirty-equals``, and the libraries the tutorial
files import: SQLModel, pydantic-settings, PyJWT, pwdlib, email-validator,
Jinja2, PyYAML, uvicorn) is the ``compat`` extra: ``pip install -e
'.[compat]'``. With it installed a chapter fails only for what rawbg does
differently, never for a missing library.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rawbg.missing_modules import MISSING

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
    "fastapi.security": "rawbg.security",
    "fastapi.sse": "rawbg.sse",
    "fastapi.staticfiles": "rawbg.staticfiles",
    "fastapi.templating": "rawbg.templating",
    "fastapi.routing": "rawbg.app.routing",
    "fastapi.middleware": "rawbg.middleware",
    "fastapi.middleware.cors": "rawbg.middleware.cors",
    "fastapi.middleware.gzip": "rawbg.middleware.gzip",
    "fastapi.middleware.trustedhost": "rawbg.middleware.trustedhost",
    "fastapi.middleware.httpsredirect": "rawbg.middleware.httpsredirect",
    "fastapi.openapi": "rawbg.openapi",
    "fastapi.openapi.utils": "rawbg.openapi.utils",
    "fastapi.openapi.docs": "rawbg.openapi.docs",
    "starlette": "rawbg",
    "starlette.exceptions": "rawbg.errors",
    "starlette.responses": "rawbg.responses",
    "starlette.requests": "rawbg.requests",
    "starlette.background": "rawbg.background",
    "starlette.status": "rawbg.status",
    "starlette.middleware": "rawbg.middleware",
    "starlette.middleware.cors": "rawbg.middleware.cors",
    "starlette.staticfiles": "rawbg.staticfiles",
    "starlette.templating": "rawbg.templating",
    "starlette.testclient": "rawbg.testclient",
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


# Names FastAPI's tests (not its tutorial) take from fastapi.exceptions:
# FastAPIError, which FastAPI raises for a bad route and for a yield dependency
# that swallowed the handler's exception (rawbg's RouteDefinitionError and
# DependencySwallowedError; a tuple serves pytest.raises and isinstance); and
# the warning class their warning filters name, rawbg's own where it has one (a
# filter that names a class that cannot be imported stops the whole run).
TEST_ONLY_EXCEPTIONS = """
if not hasattr(_target, "FastAPIDeprecationWarning"):

    class FastAPIDeprecationWarning(UserWarning):
        pass


FastAPIError = tuple(
    getattr(_target, name)
    for name in ("RouteDefinitionError", "DependencySwallowedError")
    if hasattr(_target, name)
)
"""


# A pytest plugin, on the path of both runs: it leaves out the OpenAPI tests
# (by the test function's name: a chapter's directory may say "openapi" too,
# test_openapi_callbacks, and its other tests are the tutorial's), and with
# RAWBG_COMPAT_RECORD set it records every request a test client sends and
# its answer, as one JSON line each, for `--compare`.
PLUGIN = """\
\"\"\"pytest plugin of tools/fastapi_compat.py: the tests that run, and what each request got.\"\"\"
import importlib
import json
import os

_RECORD = os.environ.get("RAWBG_COMPAT_RECORD")
_OPENAPI = os.environ.get("RAWBG_COMPAT_OPENAPI") == "1"
_current = {"test": None, "count": 0}


def pytest_collection_modifyitems(config, items):
    if _OPENAPI:
        return
    kept, dropped = [], []
    for item in items:
        name = getattr(item, "originalname", None) or item.name
        (dropped if "openapi" in name.lower() else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def pytest_runtest_setup(item):
    _current["test"] = item.nodeid
    _current["count"] = 0


def _headers(response):
    headers = response.headers
    if hasattr(headers, "multi_items"):  # httpx, under Starlette's TestClient
        pairs = headers.multi_items()
    else:  # rawbg's TestClient: (name, value) as bytes
        pairs = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers.raw]
    return [[str(k).lower(), str(v)] for k, v in pairs]


def _record(method, url, response):
    _current["count"] += 1
    entry = {
        "test": _current["test"],
        "n": _current["count"],
        "method": str(method).upper(),
        "url": str(url),
        "status": response.status_code,
        "headers": _headers(response),
        "body": response.content.decode("latin-1"),
    }
    with open(_RECORD, "a", encoding="utf-8") as out:
        out.write(json.dumps(entry) + "\\n")


def _wrap(cls):
    original = cls.request
    if getattr(original, "_rawbg_recorded", False):  # the same class, under two names
        return

    def request(self, method, url, *args, **kwargs):
        response = original(self, method, url, *args, **kwargs)
        try:
            _record(method, url, response)
        except Exception as exc:  # a test's answer that cannot be recorded is noted, not fatal
            print(f"rawbg compat: could not record {method} {url}: {exc!r}")
        return response

    request._rawbg_recorded = True
    cls.request = request


if _RECORD:
    for _name in ("starlette.testclient", "rawbg.testing.sync_client"):
        try:
            _module = importlib.import_module(_name)
        except ImportError:  # under the shim, starlette is rawbg: no testclient there
            continue
        _wrap(_module.TestClient)
"""


def write_plugin(into: Path) -> None:
    into.mkdir(parents=True, exist_ok=True)
    (into / "rawbg_compat_plugin.py").write_text(PLUGIN)


def shim_modules() -> dict[str, str]:
    """`SHIM_MODULES`, and each FastAPI or Starlette module rawbg lacks answered by
    ``rawbg.X``, whose import fails saying what to use instead (rawbg.missing_modules)."""
    modules = dict(SHIM_MODULES)
    for missing in MISSING:
        for framework in ("fastapi", "starlette"):
            modules.setdefault(f"{framework}.{missing.removeprefix('rawbg.')}", missing)
    return modules


def write_shim(into: Path) -> None:
    for name, target in shim_modules().items():
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
TEST_DIRS = {
    "path_operation_configuration": "test_path_operation_configurations",
    "path_operation_advanced_configuration": "test_path_operation_advanced_configurations",
    "app_testing": "test_testing",
    "dependency_testing": "test_testing_dependencies",
}


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
    workdir: Path,
    paths: list[Path],
    chapters: list[str],
    timeout: float,
    *,
    openapi: bool,
    name: str,
    record: Path | None = None,
) -> Path:
    """Run the chapters' tests with `paths` first on the path; return the junit report.

    `paths` holds the plugin (and, for rawbg, the shim before it). With
    `record`, every test client's requests and answers are written there.
    """
    report = workdir / f"junit-{name}.xml"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([*map(str, paths), str(ROOT)]),
        "RAWBG_COMPAT_OPENAPI": "1" if openapi else "0",
        # one hash seed for both runs: a set in a body comes out in the same order
        "PYTHONHASHSEED": "0",
    }
    env.pop("RAWBG_COMPAT_RECORD", None)
    if record is not None:
        env["RAWBG_COMPAT_RECORD"] = str(record)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-p",
            "rawbg_compat_plugin",
            "-q",
            "-o",
            "addopts=",
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
        #: answers rawbg gave that differ from FastAPI's: (test, what differs)
        self.differences: list[tuple[str, str]] = []
        self.compared = 0


Results = dict[str, dict[str, Outcome]]


def new_results() -> Results:
    return collections.defaultdict(lambda: collections.defaultdict(Outcome))


def place(module: str, name: str) -> tuple[str, str]:
    """The chapter and the tutorial file (or test module) a test belongs to.

    `module` is dotted (``tests.test_tutorial.test_<chapter>.test_<file>``), as
    junit's classname; `name` the test's name with its parameters.
    """
    parts = module.removesuffix(".py").replace("/", ".").split(".")
    chapter = parts[2].removeprefix("test_") if len(parts) > 2 else module
    param = name.partition("[")[2].rstrip("]").partition("-")[0]
    key = param if param.startswith("tutorial") else parts[-1]
    return chapter, key


def junit_cases(report: Path) -> list[tuple[str, str, str | None]]:
    """Each test of a pytest junit report that ran: (module, name, first line of why it failed).

    The reason is None for a test that passed; skipped tests are left out. A
    module that could not be imported is one failed test named ``import``.
    """
    cases = []
    for case in ET.parse(report).getroot().iter("testcase"):
        if case.find("skipped") is not None:
            continue
        module = case.get("classname", "")
        name = case.get("name", "")
        if not module:  # a module that failed to import: the whole file fails
            module, name = name, "import"
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        why = None
        if problem is not None:
            message = (problem.get("message") or problem.text or "").strip().splitlines()
            why = message[0] if message else "?"
            if why.endswith(":") and len(message) > 1:  # "AssertionError:", the words below
                why = f"{why} {message[1].strip()}"
            why = why[:160]
        cases.append((module, name, why))
    return cases


def read_report(report: Path, results: Results | None = None) -> Results:
    """chapter -> tutorial file (or test module) -> outcome of its tests."""
    if results is None:
        results = new_results()
    for module, name, why in junit_cases(report):
        chapter, key = place(module, name)
        outcome = results[chapter][key]
        if why is None:
            outcome.passed += 1
        else:
            outcome.failed.append((name, why))
    return results


# -- --compare: the same requests on FastAPI and on rawbg --------------------------

#: headers the server writes, not the app: never compared
IGNORED_HEADERS = frozenset(
    {"date", "server", "content-length", "connection", "keep-alive", "transfer-encoding"}
)
#: headers whose value changes from run to run (a time, a file's mtime): by presence only
VOLATILE_HEADERS = frozenset({"x-process-time", "x-response-time", "last-modified", "etag"})
_EXPIRES = re.compile(r"(?i)(expires=)[^;]*")


def read_answers(path: Path) -> dict[tuple[str, int], dict[str, Any]]:
    """(test node id, request number) -> the recorded request and its answer."""
    answers: dict[tuple[str, int], dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            answers[(entry["test"], entry["n"])] = entry
    return answers


def _comparable_headers(headers: list[list[str]]) -> list[tuple[str, str]]:
    kept = []
    for name, value in headers:
        if name in IGNORED_HEADERS:
            continue
        if name in VOLATILE_HEADERS:
            value = "<varies>"
        elif name == "set-cookie":
            value = _EXPIRES.sub(r"\1<date>", value)
        kept.append((name, value))
    return sorted(kept)


def _body(entry: dict[str, Any]) -> Any:
    raw = entry["body"].encode("latin-1")
    content_type = dict(entry["headers"]).get("content-type", "")
    if "json" in content_type:
        try:
            return json.loads(raw)
        except ValueError:
            pass
    return raw


def difference(fastapi: dict[str, Any], rawbg: dict[str, Any]) -> str | None:
    """What differs between FastAPI's answer and rawbg's to one request, or None."""
    found = []
    if fastapi["status"] != rawbg["status"]:
        found.append(f"status {fastapi['status']} on FastAPI, {rawbg['status']} on rawbg")
    if _body(fastapi) != _body(rawbg):
        found.append(f"body {_short(fastapi['body'])} on FastAPI, {_short(rawbg['body'])} on rawbg")
    theirs, ours = _comparable_headers(fastapi["headers"]), _comparable_headers(rawbg["headers"])
    if theirs != ours:
        only_theirs = sorted(set(theirs) - set(ours))
        only_ours = sorted(set(ours) - set(theirs))
        found.append(f"headers {only_theirs} on FastAPI only, {only_ours} on rawbg only")
    return "; ".join(found) or None


def _short(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:77] + "...")


def compare_answers(fastapi: Path, rawbg: Path, results: Results) -> None:
    """Count each request's answers that differ into `results`."""
    theirs, ours = read_answers(fastapi), read_answers(rawbg)
    for (test, number), expected in theirs.items():
        module, _, name = test.partition("::")
        chapter, key = place(module, name)
        if key not in results.get(chapter, {}):
            continue  # no result of rawbg's for this test: it did not run
        outcome = results[chapter][key]
        got = ours.get((test, number))
        if got is None:
            continue  # the test stopped earlier on rawbg: its failure says why
        outcome.compared += 1
        differs = difference(expected, got)
        if differs is not None:
            request = f"request {number} ({expected['method']} {_path(expected['url'])})"
            outcome.differences.append((name, f"{request}: {differs}"))


def _path(url: str) -> str:
    split = urlsplit(url)
    return split.path + (f"?{split.query}" if split.query else "")


def print_report(results: Results, *, failures: bool, compared: bool) -> tuple[int, int]:
    all_files = all_ok = 0
    header = f"{'chapter':34} {'files ok':>9} {'tests ok':>10}"
    print(header + (f" {'answers differing':>18}" if compared else ""))
    for chapter in sorted(results):
        files = results[chapter]
        ok = sum(1 for outcome in files.values() if not outcome.failed)
        tests = sum(o.passed + len(o.failed) for o in files.values())
        passed = sum(o.passed for o in files.values())
        all_files += len(files)
        all_ok += ok
        line = f"{chapter:34} {ok:>4}/{len(files):<4} {passed:>5}/{tests:<4}"
        if compared:
            differing = sum(len(o.differences) for o in files.values())
            answers = sum(o.compared for o in files.values())
            line += f" {differing:>8}/{answers:<4}"
        print(line)
        if failures:
            for key, outcome in sorted(files.items()):
                for name, message in outcome.failed:
                    print(textwrap.indent(f"{key}: {name}: {message}", "    "))
                for name, message in outcome.differences:
                    print(textwrap.indent(f"{key}: {name}: differs: {message}", "    "))
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
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also run the tests on FastAPI and flag each answer of rawbg's that differs",
    )
    parser.add_argument("--keep", type=Path, help="extract into this directory and keep it")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds for each run")
    args = parser.parse_args(argv)
    fastapi = args.fastapi.resolve()
    if args.chapters == "all":
        chapters = all_chapters(fastapi)
    else:
        chapters = [c.strip() for c in args.chapters.split(",") if c.strip()]
    with tempfile.TemporaryDirectory(prefix="rawbg-compat-") as scratch:
        workdir = args.keep or Path(scratch) / "work"
        workdir.mkdir(parents=True, exist_ok=True)
        shim, plugin = Path(scratch) / "shim", Path(scratch) / "plugin"
        write_shim(shim)
        write_plugin(plugin)
        found = extract(fastapi, chapters, workdir)
        ours = Path(scratch) / "rawbg-answers.jsonl" if args.compare else None
        report = run_tests(
            workdir,
            [shim, plugin],
            found,
            args.timeout,
            openapi=args.openapi,
            name="rawbg",
            record=ours,
        )
        results = read_report(report)
        if ours is not None:
            theirs = Path(scratch) / "fastapi-answers.jsonl"
            reference = run_tests(
                workdir,
                [plugin],
                found,
                args.timeout,
                openapi=args.openapi,
                name="fastapi",
                record=theirs,
            )
            compare_answers(theirs, ours, results)
            failing = read_report(reference)
            broken = sum(len(o.failed) for files in failing.values() for o in files.values())
            if broken:
                print(f"note: {broken} of these tests fail on FastAPI itself", file=sys.stderr)
        print_report(results, failures=args.failures, compared=ours is not None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
