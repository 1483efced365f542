"""schemathesis against a real rawbg: no 500s, and every answer is one the document promises.

``python -m rawbg tests.support.openapi_app:app`` runs in its own process;
schemathesis reads its ``/openapi.json`` over the socket, generates requests
from it (valid ones, and invalid ones that must be refused), and checks each
answer: its status is documented, its content type and body fit the schema,
valid data is accepted and invalid data refused. A few examples per operation
keep it to seconds. The one answer no document promises is FastAPI's 400 for a
body that is not text in any JSON encoding, which the test allows by name.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import REPO
from tests.support.event_loop import CLI_LOOP_ARGS
from tests.support.processes import URL, environment

schemathesis = importlib.import_module("schemathesis")
hypothesis = importlib.import_module("hypothesis")

pytestmark = pytest.mark.slow

EXAMPLES = 25  # per operation: enough to meet every parameter's edges, in seconds


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "rawbg", "tests.support.openapi_app:app", "--port", "0",
         "--no-access-log", *CLI_LOOP_ARGS],
        cwd=REPO,
        env=environment(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        for line in process.stdout:
            match = URL.search(line)
            if match:
                break
        else:
            raise AssertionError(
                f"rawbg did not start: {process.stderr.read() if process.stderr else ''}"
            )
        yield match.group(1)
    finally:
        process.terminate()
        _, errors = process.communicate(timeout=10)
        # a 500 is logged with its traceback: there must be none
        assert not re.search(r"Traceback|ERROR", errors), errors


def operations(url: str) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


MODES = ["positive", "negative"]


@pytest.mark.parametrize("mode", MODES)
def test_every_answer_is_one_the_document_promises(server_url: str, mode: str) -> None:
    generation = schemathesis.GenerationMode(mode)
    checked = []
    for operation in operations(server_url):

        @hypothesis.settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(hypothesis.HealthCheck),
            derandomize=True,
            database=None,
        )
        @hypothesis.given(case=operation.as_strategy(generation_mode=generation))
        def conforms(case: Any) -> None:
            response = case.call(base_url=server_url)
            if response.status_code == 400:
                # a body that is not text in any JSON encoding: FastAPI's 400, undocumented
                # by FastAPI's document too (docs/fastapi-compat.md)
                assert response.json() == {"detail": "There was an error parsing the body"}
                return
            case.validate_response(response)

        conforms()
        checked.append(operation.label)
    assert len(checked) == 7, checked  # every operation of the app was exercised
