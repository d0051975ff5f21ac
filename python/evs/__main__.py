"""``python -m evs``: the ``evs`` command."""

import sys

from .cli import main

sys.exit(main())
