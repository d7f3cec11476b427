"""``python -m workbench.llm``: see :mod:`workbench.llm.cli`."""

import sys

from workbench.llm.cli import main

sys.exit(main())
