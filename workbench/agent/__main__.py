"""``python -m workbench.agent``: see :mod:`workbench.agent.cli`."""

import sys

from workbench.agent.cli import main

sys.exit(main())
