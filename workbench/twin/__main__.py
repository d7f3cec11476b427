"""``python -m workbench.twin``: see :mod:`workbench.twin.cli`."""

import sys

from workbench.twin.cli import main

sys.exit(main())
