"""Stage 2, features: fractional differencing (AFML ch. 5), Yang-Zhang volatility and causal technical indicators.
"""

from __future__ import annotations

from workbench.features.assets import AssetFeatures, asset_features, volatility_by_asset
from workbench.features.fracdiff import MinDResult, adf_point, ffd, ffd_weights, min_d, summary_table
from workbench.features.indicators import bollinger, ema, macd, ohlcv, price_features, rsi, sma, volume_zscore
from workbench.features.volatility import close_to_close, score_volatility, yang_zhang, yz_k

__all__ = ["AssetFeatures", "asset_features", "volatility_by_asset", "MinDResult", "adf_point", "ffd", "ffd_weights", "min_d", "summary_table", "close_to_close",
    "score_volatility", "yang_zhang", "yz_k", "bollinger", "ema", "macd", "ohlcv", "price_features", "rsi", "sma",
    "volume_zscore"]
