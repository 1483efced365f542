"""docs/server-behavior.md names every logger rawbg logs to, so an operator can configure each.

Found missing: ``rawbg.lifespan`` (a shutdown handler that raised),
``rawbg.protocol`` (a client that stopped reading, aborted) and
``rawbg.sources`` (a JSON library that failed on a body). Read from the
source, not from a list kept here.
"""

from __future__ import annotations

import re

from tests.support import REPO

ROOT = REPO


def logger_names() -> set[str]:
    names: set[str] = set()
    for module in (ROOT / "rawbg").rglob("*.py"):
        names.update(re.findall(r'getLogger\("(rawbg[\w.]*)"\)', module.read_text()))
    return names


def test_the_logging_section_names_every_logger() -> None:
    text = (ROOT / "docs" / "server-behavior.md").read_text()
    section = text.split("\n## Logging\n", 1)[1].split("\n## ", 1)[0]
    names = logger_names()
    assert "rawbg.access" in names  # the scan finds them
    assert sorted(name for name in names if f"`{name}`" not in section) == []
