"""``python -m zenmon``: the ``zenmon`` command (see :mod:`zenmon.cli`)."""

import sys

from .cli import main

sys.exit(main())
