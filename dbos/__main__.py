"""``python -m dbos``: the same command line as the ``dbos`` script."""

import sys

from ._ops.cli import main

sys.exit(main())
