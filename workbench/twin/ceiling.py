"""What the data allow: the best any model of the trader could do, on simulated data only (evaluation only).

Two ceilings, both action probabilities per step, scored with the same decision rule as every model
(:mod:`workbench.twin.evaluate`):

* **full**: the hidden policy's own probabilities (the simulator's truth). No model trained on the wallet's
  files can reach it, because the policy decides on inputs the files do not contain.
* **observable**: the policy averaged over what the files do not contain. The trader decides 5 s after a
  one-minute bar closes, on the BTC price *at that second* and on the momentum from the price 60 s earlier;
  the files show bar closes only. The ceiling integrates the policy by Monte Carlo over the unseen seconds
  (the last 6 s after the latest close, and the price 60 s back bridged between the two latest closes),
  and over whether the trader is active in a market (a hidden coin flip, updated by Bayes' rule from the
  trades seen so far in that market). It conditions on the true volatility, which the files do not give
  either, so it is an upper bound of the truly observable ceiling.

Nothing here is ever used for training: it reads ``data/raw/simulator_truth/`` and regenerates the
simulator's one-second price path from its configuration. On real wallets no ceiling exists; the
baselines are the yardstick there.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.special import expit, ndtr

from workbench.data.simulate import _WARMUP_S, ACTIONS, MARKET_SECONDS, SimConfig, simulate_path

HOLD = ACTIONS.index("HOLD")


def _ordered_logit(score: np.ndarray, thresholds: tuple[float, ...]) -> np.ndarray:
    """``(..., 5)`` class probabilities in ``ACTIONS`` order for scores ``(...)`` (vectorised
    :func:`workbench.data.simulate.ordered_logit_probs`)."""
    cdf = expit(np.asarray(thresholds)[None, :] - score.reshape(-1, 1))  # (n, 4) P(class <= k), low to high
    cdf = np.concatenate([np.zeros((len(cdf), 1)), cdf, np.ones((len(cdf), 1))], axis=1)
    return np.diff(cdf, axis=1)[:, ::-1].reshape(*score.shape, len(ACTIONS))


def full_probabilities(decisions: pd.DataFrame, index: pd.DatetimeIndex) -> np.ndarray:
    """The hidden policy's probabilities ``(len(index), 5)`` at each step start; HOLD where it took no decision."""
    return _on_steps(decisions, decisions[[f"p_{a}" for a in ACTIONS]].to_numpy(dtype=np.float64), index)


def _on_steps(decisions: pd.DataFrame, probs: np.ndarray, index: pd.DatetimeIndex) -> np.ndarray:
    t = pd.DatetimeIndex(pd.to_datetime(decisions["t"].to_numpy(), unit="ms", utc=True))
    out = pd.DataFrame(probs, index=t).reindex(index).to_numpy(copy=True)
    missing = np.isnan(out).any(axis=1)
    out[missing] = np.eye(len(ACTIONS))[HOLD]
    return out


class _Inputs:
    """The policy's inputs per decision that the ceiling needs (from the truth table and the price path)."""

    def __init__(self, decisions: pd.DataFrame, cfg: SimConfig) -> None:
        self.tp = tp = cfg.trader
        price, self.sigma_path, _ = simulate_path(cfg)
        self.logp = np.log(price)
        d = decisions.sort_values("t", kind="stable").reset_index(drop=True)
        self.d = d
        t_s = d["t"].to_numpy(np.int64) // 1000
        self.i = (t_s - (cfg.start_unix - _WARMUP_S)).astype(np.int64)  # the decision second in the path
        self.left = d["time_left_s"].to_numpy(np.float64)
        self.p0 = self.logp[self.i - (MARKET_SECONDS - self.left).astype(np.int64)]  # the market's open
        self.sig = self.sigma_path[self.i]  # true volatility (not in the files: see the module docstring)
        self.mid = d["mid"].to_numpy(np.float64)
        push = np.where(d["exit_flag"].to_numpy(bool), np.sign(d["inventory"].to_numpy(np.float64)) * tp.exit_push,
                        0.0)
        self.base = -tp.beta_inventory * d["inv_ratio"].to_numpy(np.float64) - push  # observable part of the score
        self.damp = np.where(self.left < tp.late_window_s, tp.late_damp, 1.0)

    def probs(self, sl: slice, now: np.ndarray, back: np.ndarray) -> np.ndarray:
        """Policy probabilities ``(n, draws, 5)`` for log prices ``now`` (decision second) and ``back`` (60 s
        earlier), each ``(n, draws)``, for the decisions in ``sl`` (the simulator's score, vectorised)."""
        tp, s_ = self.tp, self.sig[sl, None]
        fair = ndtr((now - self.p0[sl, None]) / (s_ * np.sqrt(self.left[sl, None])))
        score = (tp.beta_edge * (fair - self.mid[sl, None]) / 0.02
                 + tp.beta_momentum * (now - back) / (s_ * math.sqrt(60.0)) + self.base[sl, None]) * self.damp[sl, None]
        return _ordered_logit(score, tp.thresholds)


def policy_given_prices(decisions: pd.DataFrame, cfg: SimConfig) -> np.ndarray:
    """The policy's probabilities recomputed from the true prices, for active markets (a check of the score:
    they equal the truth table's ``p_*``). ``(n_decisions, 5)`` in time order."""
    x = _Inputs(decisions, cfg)
    sl = slice(0, len(x.d))
    return x.probs(sl, x.logp[x.i][:, None], x.logp[x.i - 60][:, None])[:, 0]


def observable_probabilities(decisions: pd.DataFrame, cfg: SimConfig, index: pd.DatetimeIndex, *, n_mc: int = 256,
                             seed: int = 0, chunk: int = 4096) -> np.ndarray:
    """The policy averaged over what the wallet's files do not show (see the module docstring).

    Parameters
    ----------
    decisions : the simulator's decision table (truth), one row per decision.
    cfg : the simulation's configuration (``simulate.load_sim_config``).
    index : step starts (UTC) to return probabilities for.
    n_mc : Monte Carlo draws per decision.

    Returns
    -------
    ndarray (len(index), 5), rows summing to 1.
    """
    x = _Inputs(decisions, cfg)
    c1, c0 = x.logp[x.i - 6], x.logp[x.i - 66]  # the last two bar closes (seconds 59 of the two last minutes)
    rng = np.random.default_rng(seed)
    pol = np.empty((len(x.d), len(ACTIONS)))
    for lo in range(0, len(x.d), chunk):
        sl = slice(lo, min(lo + chunk, len(x.d)))
        n = sl.stop - sl.start
        z1, z2 = rng.standard_normal((n, n_mc)), rng.standard_normal((n, n_mc))
        s_ = x.sig[sl, None]
        now = c1[sl, None] + s_ * math.sqrt(6.0) * z1  # 6 s of moves after the latest close
        back = c0[sl, None] + 0.1 * (c1 - c0)[sl, None] + s_ * math.sqrt(6.0 * 54.0 / 60.0) * z2  # bridged, 60 s back
        pol[sl] = x.probs(sl, now, back).mean(axis=1)
    # whether the trader is active in a market: prior `participation`, updated by the trades seen so far
    tp, d = x.tp, x.d
    out = np.empty_like(pol)
    traded = d["n_fills"].to_numpy() > 0
    slugs = d["slug"].to_numpy(dtype=object)
    post = tp.participation
    for k in range(len(d)):  # sequential by nature: each market's posterior depends on its earlier steps
        if k == 0 or slugs[k] != slugs[k - 1]:
            post = tp.participation
        out[k] = post * pol[k]
        out[k, HOLD] += 1 - post
        if traded[k]:
            post = 1.0
        else:
            hold = post * pol[k, HOLD]
            post = hold / (hold + 1 - post)
    return _on_steps(d, out, index)
