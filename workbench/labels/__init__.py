"""Stage 3, labeling: triple-barrier labels and CUSUM events (AFML ch. 3), labels of the trader's own trades, the
exit barriers fitted to them, optimal trading rules on OU paths (AFML ch. 13); the slider UI is `labels.ui`.
"""

from __future__ import annotations

from workbench.labels.barriers import (BARRIERS, LabelingError, ReturnKind, VerticalLabel, add_vertical_barrier,
                                       cusum_filter, daily_vol, triple_barrier)
from workbench.labels.exits import (DEFAULT_HOLDING_GRID, DEFAULT_PT_GRID, DEFAULT_SL_GRID, ExitFit, barrier_pnl,
                                    exit_steps, fit_exit_barriers)
from workbench.labels.ou import OU_GRID, ou_barrier_grid, ou_exit_pnl, ou_optimum, ou_paths
from workbench.labels.trades import fill_entries, label_trades, market_paths, round_trips

__all__ = ["BARRIERS", "LabelingError", "ReturnKind", "VerticalLabel", "add_vertical_barrier", "cusum_filter",
    "daily_vol", "triple_barrier", "fill_entries", "label_trades", "market_paths", "round_trips",
    "DEFAULT_HOLDING_GRID", "DEFAULT_PT_GRID", "DEFAULT_SL_GRID", "ExitFit", "barrier_pnl", "exit_steps",
    "fit_exit_barriers", "OU_GRID", "ou_barrier_grid", "ou_exit_pnl", "ou_optimum", "ou_paths"]
