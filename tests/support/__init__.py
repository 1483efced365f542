"""What the tests share: no tests here, only helpers.

* `wire`: a raw-byte client (`RawClient`) and request builders, for tests
  about the wire;
* `processes`: a real ``python -m rawbg`` process, started and stopped;
* `event_loop`: the loop the suite runs on (``RAWBG_TEST_LOOP``);
* `journal_app`: the app of the task-journal crash tests;
* `fuzz`: the seeded request fuzzer.
"""

from pathlib import Path

#: the root of the checkout (where pyproject.toml is)
REPO = Path(__file__).resolve().parents[2]
