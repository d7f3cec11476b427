"""What every stage's figures share: :func:`save`, :func:`show`, the colours, the notebook width, UTC times.

Figures are pure functions, tables in and a matplotlib or plotly figure out; each stage keeps its own in
``<stage>/figures.py``, sized for a notebook column (:data:`NOTEBOOK_WIDTH`). PNG (matplotlib, 120 dpi, for
papers) and self-contained HTML (plotly, for sharing) go under ``figures/``; in JupyterLab plotly figures are
shown inline by JupyterLab's own plotly renderer (:func:`show`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench import config

BUY_COLOR, SELL_COLOR, NEUTRAL = "#1a9850", "#d73027", "#4d4d4d"
#: Width (inches) of a figure in a notebook column: JupyterLab shows ~950 px, the inline backend draws at 100 dpi.
NOTEBOOK_WIDTH = 9.5
#: Columns shown as UTC timestamps by :func:`readable_times` (epoch milliseconds in the tables).
TIME_COLUMNS = ("t", "t0", "t1", "time", "market_start", "market_end", "bar_start", "bar_end", "settle_t", "entry_t",
                "exit_t", "first_t", "last_t")


def fit_width(width: float, height: float) -> tuple[float, float]:
    """A ``figsize`` no wider than a notebook column (the height is kept: panels get taller, text stays legible)."""
    return (min(float(width), NOTEBOOK_WIDTH), float(height))


def save(fig: Any, name: str, folder: Path | None = None, close: bool = False) -> Path:
    """Save a matplotlib figure as ``<name>.png`` or a plotly figure as ``<name>.html`` under ``figures/``.

    The HTML is self-contained (plotly.js inside the file: it opens anywhere, with no network and no file
    beside it). ``close=True`` closes a matplotlib figure after saving, so that Jupyter does not display it too
    (for a figure that a widget shows live instead).
    """
    folder = Path(folder or config.paths().figures)
    folder.mkdir(parents=True, exist_ok=True)
    if hasattr(fig, "write_html"):
        path = folder / f"{name}.html"
        fig.write_html(path, include_plotlyjs=True)
    else:
        path = folder / f"{name}.png"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        if close:
            import matplotlib.pyplot as plt

            plt.close(fig)
    return path


def show(fig: Any) -> None:
    """Display a figure inline: plotly through JupyterLab's plotly renderer (a ``application/vnd.plotly.v1+json``
    output, no script tags, so JupyterLab's security policy lets it render), matplotlib as usual."""
    from IPython.display import display

    if hasattr(fig, "write_html"):
        fig.show(renderer="plotly_mimetype")
    else:
        display(fig)


def readable_times(df: pd.DataFrame, columns: tuple[str, ...] = TIME_COLUMNS) -> pd.DataFrame:
    """A copy of ``df`` for display, with epoch-millisecond columns (``t``, ``t1``, ``market_start``...) as UTC
    timestamps. A column is converted only when its values lie in the epoch-ms range (1973-2286)."""
    out = df.copy()
    for c in columns:
        if c in out and pd.api.types.is_numeric_dtype(out[c]) and not pd.api.types.is_bool_dtype(out[c]):
            v = pd.to_numeric(out[c], errors="coerce").astype("float64")
            ok = v.dropna()
            if len(ok) and ok.between(1e11, 1e13).all():
                out[c] = pd.to_datetime(v, unit="ms", utc=True)
    return out


def utc_times(ms: pd.Series | np.ndarray) -> pd.DatetimeIndex:
    return pd.to_datetime(np.asarray(ms, dtype=np.int64), unit="ms", utc=True)
