"""``python -m rawbg``: see `rawbg.cli`."""

import sys

from .cli import main

sys.exit(main())
