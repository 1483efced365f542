"""``python -m rawbg``: see `rawbg.cli`."""

import sys

from rawbg.cli import main

sys.exit(main())
