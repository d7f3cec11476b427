"""A structural policy model of the trader: a zero-inflated ordered logit with sizes, fitted by maximum likelihood.

The model (one market ``m``, steps ``t``; terms from :mod:`workbench.rules.terms`)::

    score_t = damp_t * (b_edge * edge_t + b_mom * momentum_t + b_inv * inventory_t / 100 + push * exit_t(tp, sl)
                        + sum_j g_j * candidate_jt),       damp_t = late_damp if seconds_left_t < late_window else 1
    P(class <= k | score) = expit(theta_k - score)       over (STRONG_SELL, SELL, HOLD, BUY, STRONG_BUY)
    log size | class = log base + log(1 + conviction * |score|) + [STRONG] log strong_mult + N(0, size_noise^2)

The trader is *active* in a market with probability ``participation`` (otherwise it holds throughout), and never
trades with less than ``stop`` seconds left. The likelihood of a step averages over the draws of the unseen
seconds (simulated maximum likelihood); a market's likelihood mixes active and inactive. The class of a trade is
latent (plain or STRONG), its size is observed: a trade's likelihood sums both classes weighted by the size
density, so misread classes (a large plain trade) do not bias the thresholds. A trade that ends exactly on the
inventory cap is censored (the size it would have had is at least the one seen); a trade towards the cap from
the cap is impossible, so there a HOLD also absorbs the classes towards it.

Estimation: the continuous parameters by maximum likelihood (torch computes the exact gradient and Hessian;
statsmodels' ``GenericLikelihoodModel`` holds the fit, with the sandwich covariance over markets, the unit the
observations are independent in); the change points (take profit, stop loss, late window, stop) by profile
likelihood on grids. Hand-written because no library fits a mixture of ordered logits with change points and a
simulated likelihood; statsmodels' ``OrderedModel`` fits the plain ordered logit (the naive reference).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from workbench.rules.terms import PolicyData

#: The continuous parameters, their null value (the term is absent) and the term group each belongs to.
BASE_PARAMS: tuple[tuple[str, float, str], ...] = (
    ("edge", 0.0, "edge"), ("momentum", 0.0, "momentum"), ("inventory", 0.0, "inventory"),
    ("exit_push", 0.0, "exit"), ("late_damp", 1.0, "late"),
    ("theta_1", -3.0, ""), ("theta_2", -1.5, ""), ("theta_3", 1.5, ""), ("theta_4", 3.0, ""),
    ("participation_logit", 30.0, "activity"),
    ("log_base_size", 3.5, ""), ("size_conviction", 0.0, "conviction"), ("log_strong_mult", 0.7, ""),
    ("log_size_noise", -1.2, ""),
)
START: dict[str, float] = {"edge": 0.1, "momentum": 0.1, "inventory": -0.1, "exit_push": 1.0, "late_damp": 0.7,
                           "participation_logit": 2.0, "size_conviction": 0.2}
LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


@dataclass(frozen=True)
class ChangePoints:
    """The rule card's thresholds: levels per share (price units) and windows (seconds before expiry)."""

    take_profit: float = 0.10
    stop_loss: float = 0.10
    late_window: float = 205.0
    stop: float = 85.0


@dataclass
class Spec:
    """Which term groups are in the model (the rest are fixed at their null value)."""

    candidates: tuple[str, ...] = ()
    dropped: frozenset[str] = frozenset()

    @property
    def names(self) -> list[str]:
        return [n for n, _, _ in BASE_PARAMS] + [f"cand_{c}" for c in self.candidates]

    def group(self, name: str) -> str:
        for n, _, g in BASE_PARAMS:
            if n == name:
                return g
        return name.removeprefix("cand_")

    def free(self) -> np.ndarray:
        return np.array([self.group(n) not in self.dropped for n in self.names])

    def null(self) -> np.ndarray:
        return np.array([v for _, v, _ in BASE_PARAMS] + [0.0] * len(self.candidates))

    def without(self, group: str) -> "Spec":
        return replace(self, dropped=self.dropped | {group})


class Tensors:
    """The parameter-free arrays of a :class:`PolicyData` and change points, as float64 torch tensors.

    Only the modelled steps are kept, flattened and split by what was observed (HOLD, buy, sell), so that each
    step computes only the class probabilities and size densities its likelihood needs."""

    def __init__(self, d: PolicyData, cp: ChangePoints, candidates: tuple[str, ...]) -> None:
        forced = d.seconds_left < cp.stop  # the trader no longer decides
        present = d.index >= 0
        model = d.ok & ~forced
        mi, ki = np.nonzero(model)
        self.n_markets = d.n_markets
        exit_ = d.exit_term(cp.take_profit, cp.stop_loss)
        after = np.abs(d.inventory + d.direction * d.size)
        self.groups: dict[str, dict[str, torch.Tensor]] = {}
        for name, sel in (("hold", d.direction[mi, ki] == 0), ("buy", d.direction[mi, ki] > 0),
                          ("sell", d.direction[mi, ki] < 0)):
            m, k = mi[sel], ki[sel]
            t = lambda a, m=m, k=k: torch.as_tensor(np.ascontiguousarray(a[m, k], dtype=np.float64))  # noqa: E731
            g = {"market": torch.as_tensor(m), "edge": t(d.edge), "mom": t(d.momentum), "w": t(d.weights),
                 "inv": t(d.inventory / 100.0), "exit": t(exit_),
                 "late": torch.as_tensor(d.seconds_left[m, k] < cp.late_window),
                 "extras": [t(d.extras[c]) for c in candidates]}
            if name == "hold":
                g["cap_long"] = torch.as_tensor(d.inventory[m, k] >= d.cap - 0.5)
                g["cap_short"] = torch.as_tensor(d.inventory[m, k] <= -d.cap + 0.5)
            else:
                g["logq"] = torch.as_tensor(np.log(d.size[m, k]))
                g["cens"] = torch.as_tensor(np.abs(after[m, k] - d.cap) < 0.5)
            self.groups[name] = g
        self.all_hold = torch.as_tensor(((d.direction == 0) | ~present).all(axis=1))
        #: a trade inside the stop window makes this stop impossible (likelihood 0)
        self.feasible = not bool((forced & present & (d.direction != 0)).any())


def market_loglik(params: torch.Tensor, T: Tensors, names: list[str]) -> torch.Tensor:
    """``(M,)`` log-likelihood of each market under ``params`` (ordered as ``names``)."""
    p = dict(zip(names, params))
    cand = [n for n in names if n.startswith("cand_")]
    one = torch.ones((), dtype=torch.float64)
    sn = torch.exp(p["log_size_noise"])
    conviction = torch.clamp(p["size_conviction"], min=-0.02)
    ll_active = torch.zeros(T.n_markets, dtype=torch.float64)
    for name, g in T.groups.items():
        if not len(g["market"]):
            continue
        lin = p["inventory"] * g["inv"] + p["exit_push"] * g["exit"]
        for c, x in zip(cand, g["extras"]):
            lin = lin + p[c] * x
        s = (p["edge"] * g["edge"] + p["momentum"] * g["mom"] + lin[:, None]) * torch.where(g["late"], p["late_damp"], one)[:, None]
        if name == "hold":
            c2, c3 = torch.sigmoid(p["theta_2"] - s), torch.sigmoid(p["theta_3"] - s)
            lik = c3 - c2
            lik = lik + torch.where(g["cap_long"][:, None], 1 - c3, 0.0) + torch.where(g["cap_short"][:, None], c2, 0.0)
        else:
            if name == "buy":
                hi, lo = torch.sigmoid(p["theta_4"] - s), torch.sigmoid(p["theta_3"] - s)
                p_plain, p_strong = hi - lo, 1 - hi
            else:
                lo, hi = torch.sigmoid(p["theta_1"] - s), torch.sigmoid(p["theta_2"] - s)
                p_plain, p_strong = hi - lo, lo
            mu = p["log_base_size"] + torch.log1p(conviction * s.abs())
            logq, cens = g["logq"][:, None], g["cens"][:, None]
            z_plain = (logq - mu) / sn
            z_strong = z_plain - p["log_strong_mult"] / sn
            dens = lambda z: torch.exp(-0.5 * z * z - LOG_SQRT_2PI) / sn  # noqa: E731
            f_plain = torch.where(cens, torch.special.ndtr(-z_plain), dens(z_plain))
            f_strong = torch.where(cens, torch.special.ndtr(-z_strong), dens(z_strong))
            lik = p_plain * f_plain + p_strong * f_strong
        ll = torch.log(torch.clamp((lik * g["w"]).sum(-1), min=1e-300))
        ll_active = ll_active.index_add(0, g["market"], ll)
    pi_logit = p["participation_logit"]
    log_pi, log_1m = torch.nn.functional.logsigmoid(pi_logit), torch.nn.functional.logsigmoid(-pi_logit)
    active = log_pi + ll_active
    return torch.where(T.all_hold, torch.logaddexp(active, log_1m.expand_as(active)), active)


@dataclass
class Fit:
    """One maximum-likelihood fit at fixed change points."""

    params: dict[str, float]
    loglik: float
    n_free: int
    n_markets: int
    change_points: ChangePoints
    spec: Spec
    converged: bool = True
    cov: np.ndarray | None = None  # sandwich covariance of the free parameters (names in ``free_names``)
    free_names: list[str] = field(default_factory=list)

    @property
    def bic(self) -> float:
        return -2 * self.loglik + self.n_free * math.log(max(self.n_markets, 2))

    @property
    def aic(self) -> float:
        return -2 * self.loglik + 2 * self.n_free

    def se(self, name: str) -> float:
        if self.cov is None or name not in self.free_names:
            return float("nan")
        i = self.free_names.index(name)
        return float(math.sqrt(max(self.cov[i, i], 0.0)))


def _objective(T: Tensors, spec: Spec, x_fixed: np.ndarray, free: np.ndarray):
    names = spec.names
    base = torch.as_tensor(x_fixed, dtype=torch.float64)
    idx = torch.as_tensor(np.flatnonzero(free))

    def full(theta: torch.Tensor) -> torch.Tensor:
        return base.index_put((idx,), theta)

    def ll_markets(theta: torch.Tensor) -> torch.Tensor:
        return market_loglik(full(theta), T, names)

    return ll_markets


def fit(d: PolicyData, cp: ChangePoints, spec: Spec, *, start: dict[str, float] | None = None, max_iter: int = 300,
        covariance: bool = False) -> Fit:
    """Maximum likelihood at fixed change points (torch L-BFGS; with ``covariance`` the statsmodels sandwich)."""
    T = Tensors(d, cp, spec.candidates)
    names = spec.names
    if not T.feasible:
        return Fit({}, -math.inf, 0, d.n_markets, cp, spec, converged=False)
    x0 = spec.null()
    free = spec.free()
    for i, n in enumerate(names):
        if free[i]:
            x0[i] = (start or {}).get(n, START.get(n, x0[i]))
    ll_markets = _objective(T, spec, x0, free)
    theta = torch.tensor(x0[free], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([theta], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-12,
                            history_size=30, line_search_fn="strong_wolfe")
    scale = 1.0 / max(d.n_markets, 1)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = -ll_markets(theta).sum() * scale
        loss.backward()
        return loss

    opt.step(closure)
    loss = closure()  # the mean log-likelihood per market and its gradient at the end point
    ll = -float(loss.detach()) / scale
    grad = float(theta.grad.abs().max()) if theta.grad is not None else math.inf
    x = x0.copy()
    x[free] = theta.detach().numpy()
    out = Fit(dict(zip(names, map(float, x))), ll, int(free.sum()), d.n_markets, cp, spec,
              converged=math.isfinite(ll) and grad < 1e-3, free_names=[n for n, f in zip(names, free) if f])
    if covariance:
        out.cov = sandwich(ll_markets, theta.detach())
    return out


def sandwich(ll_markets: Any, theta: torch.Tensor) -> np.ndarray:
    """The sandwich covariance ``H^-1 (sum_m g_m g_m') H^-1`` over markets, through statsmodels'
    ``GenericLikelihoodModel`` (exact torch derivatives supplied as ``score_obs`` and ``hessian``)."""
    from statsmodels.base.model import GenericLikelihoodModel

    def ll_np(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return ll_markets(torch.as_tensor(x, dtype=torch.float64)).numpy()

    def jac(x: np.ndarray) -> np.ndarray:
        return torch.func.jacfwd(ll_markets)(torch.as_tensor(x, dtype=torch.float64)).numpy()

    def grad(x: np.ndarray) -> np.ndarray:
        t = torch.as_tensor(x, dtype=torch.float64).clone().requires_grad_(True)
        ll_markets(t).sum().backward()
        return t.grad.numpy()

    def hess(x: np.ndarray, h: float = 1e-5) -> np.ndarray:  # central differences of the exact gradient
        cols = [(grad(x + h * e) - grad(x - h * e)) / (2 * h) for e in np.eye(len(x))]
        H = np.column_stack(cols)
        return 0.5 * (H + H.T)

    class _Policy(GenericLikelihoodModel):
        def loglikeobs(self, params: np.ndarray) -> np.ndarray:
            return ll_np(params)

        def score_obs(self, params: np.ndarray) -> np.ndarray:
            return jac(params)

        def score(self, params: np.ndarray) -> np.ndarray:
            return jac(params).sum(0)

        def hessian(self, params: np.ndarray) -> np.ndarray:
            return hess(params)

    import warnings

    x = theta.numpy()
    n = len(ll_np(x))
    with warnings.catch_warnings():  # statsmodels notes that the generic model has no formula degrees of freedom
        warnings.simplefilter("ignore")
        mod = _Policy(np.zeros(n), np.ones((n, len(x))))
        res = mod.fit(start_params=x, method="newton", maxiter=0, disp=0, cov_type="HC0", warn_convergence=False)
    return np.asarray(res.cov_params())
