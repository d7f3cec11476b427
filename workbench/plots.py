"""What every stage's figures share: :func:`save`, the colours, UTC time axes.

Figures are pure functions, tables in and a matplotlib or plotly figure out; each stage keeps its own in
``<stage>/figures.py``. PNG (matplotlib) for papers, HTML (plotly) for interactive views, both under
``figures/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench import config

BUY_COLOR, SELL_COLOR, NEUTRAL = "#1a9850", "#d73027", "#4d4d4d"


def save(fig: Any, name: str, folder: Path | None = None) -> Path:
    """Save a matplotlib figure as ``<name>.png`` or a plotly figure as ``<name>.html`` under ``figures/``."""
    folder = Path(folder or config.paths().figures)
    folder.mkdir(parents=True, exist_ok=True)
    if hasattr(fig, "write_html"):
        path = folder / f"{name}.html"
        fig.write_html(path, include_plotlyjs="directory")  # one plotly.min.js beside the figures, works offline
    else:
        path = folder / f"{name}.png"
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def utc_times(ms: pd.Series | np.ndarray) -> pd.DatetimeIndex:
    return pd.to_datetime(np.asarray(ms, dtype=np.int64), unit="ms", utc=True)
