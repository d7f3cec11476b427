"""Trading-research workbench: learn a trader's behaviour from their trades.

Importing the package sets the Hugging Face offline flags (before any ``transformers`` import), so
no model id can trigger a download. Modules: ``config``, ``simulate``, ``ingest``, ``ledger``,
``chain``, ``fetch``, ``plots``.
"""

from workbench.config import set_offline as _set_offline

_set_offline()

__version__ = "0.1.0"
