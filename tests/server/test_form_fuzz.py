"""The form fuzzer of tests/support/form_fuzz.py, for a few seconds (``RAWBG_FUZZ_SECONDS``).

``python -m tests.support.form_fuzz --seconds 300`` runs it from the command line.
"""

import os

from tests.support import form_fuzz


async def test_broken_forms_get_a_4xx_or_a_close_never_a_500_a_hang_or_a_file_left(tmp_path):
    seconds = float(os.environ.get("RAWBG_FUZZ_SECONDS", "4"))
    seed = int(os.environ.get("RAWBG_FUZZ_SEED", "1"))
    figures, errors, served, left = await form_fuzz.run(seconds=seconds, seed=seed, spool=tmp_path)
    summary = form_fuzz.fuzz.report(figures, errors, served) + f"\nfiles left: {left}"
    assert figures.sent > 30, summary
    assert figures.outcomes["500"] == 0, summary
    assert figures.outcomes["hang"] == 0, summary
    assert figures.outcomes["garbage"] == 0, summary
    assert errors == [], summary
    assert served, summary
    assert left == [], summary
    allowed = {"200", "400", "408", "413", "422", "431"}  # 431: a boundary of 100 KB
    assert set(figures.outcomes) <= allowed | {"closed without a response", "reset"}, summary
    # the hostile shapes were reached: refusals, not only mutations of valid forms
    assert figures.outcomes["400"] > 5, summary
