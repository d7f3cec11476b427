"""``python -m workbench.rlhf``: see :mod:`workbench.rlhf.cli`."""

import sys

from workbench.rlhf.cli import main

sys.exit(main())
