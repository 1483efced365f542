"""The seeded fuzzer of tests/support/fuzz.py, for a few seconds (``RAWBG_FUZZ_SECONDS``: longer).

``python -m tests.support.fuzz --seconds 300`` runs it from the command line and prints the figures.
"""

import os

from tests.support import fuzz


async def test_mutated_requests_get_a_refusal_or_a_close_never_a_500_a_hang_or_an_error():
    seconds = float(os.environ.get("RAWBG_FUZZ_SECONDS", "3"))
    figures, errors, served = await fuzz.run(
        seconds=seconds, seed=int(os.environ.get("RAWBG_FUZZ_SEED", "1"))
    )
    summary = fuzz.report(figures, errors, served)
    assert figures.sent > 100, summary
    assert figures.outcomes["500"] == 0, summary
    assert figures.outcomes["hang"] == 0, summary
    assert figures.outcomes["garbage"] == 0, summary
    assert errors == [], summary
    assert served, summary
    # every outcome is a status rawbg answers with, or a close
    allowed = {"200", "400", "404", "405", "408", "413", "422", "431", "501", "505"}
    assert set(figures.outcomes) <= allowed | {"closed without a response", "reset"}, summary
