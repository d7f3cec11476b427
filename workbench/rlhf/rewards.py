"""Reward functions for RL on trading analyses, with the values of ``rlhf_config.yaml``.

* **process**: per step, ``correct_step`` if every claim of the step is true else ``incorrect_step``,
  weighted by the step weights (``process_reward``); or the same with a process reward model's step
  probabilities in place of the verifier's verdicts (``process_reward_from_probs``).
* **outcome**: the realised result of following the analysis' signal on the replayed market:
  ``profitable_trade`` / ``losing_trade``; a HOLD earns ``avoided_loss`` when the trade the facts pointed
  to would have lost.
* **calibration**: ``high_confidence_correct`` for a confident (>= 0.7) winner, ``low_confidence_incorrect``
  for an unconfident (< 0.5) loser.
* **mentions**: the guide's step-specific rewards for mentioning RSI, MACD, Bollinger bands and support /
  resistance. **Guard against reward hacking**: a mention pays only in a step whose claims are all true,
  so stuffing keywords into a false analysis earns nothing (``guarded=False`` gives the naive version
  the notebook uses to show what the guard prevents).

Every function takes analysis texts and their facts (and outcomes where needed) and returns floats, so
the same functions score held-out analyses and serve as trl ``GRPOTrainer`` reward functions.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from workbench.analysis.analyst import implied_direction
from workbench.analysis.facts import Facts
from workbench.analysis.rlconfig import STEPS, RLConfig
from workbench.analysis.verifier import StepVerifier, split_steps

MENTIONS = {"mentions_rsi": (r"\bRSI\b", "technical_analysis"),
            "mentions_macd": (r"\bMACD\b", "technical_analysis"),
            "mentions_bollinger": (r"\bBollinger\b", "technical_analysis"),
            "mentions_support_resistance": (r"\bsupport\b.{0,40}?\bresistance\b|\bresistance\b.{0,40}?\bsupport\b",
                                            "market_context")}  # bounded, not [^.]*: prices have decimal points


@dataclass(frozen=True)
class Scheme:
    """Weights of the reward components (the schemes compared in notebook 07)."""

    process: float = 1.0
    outcome: float = 1.0
    calibration: float = 1.0
    mentions: float = 1.0
    guarded: bool = True

    @classmethod
    def named(cls, name: str) -> "Scheme":
        schemes = {"outcome-only": cls(process=0.0, outcome=1.0, calibration=0.0, mentions=0.0),
                   "process-only": cls(process=1.0, outcome=0.0, calibration=0.0, mentions=1.0),
                   "combined": cls(process=1.0, outcome=1.0, calibration=1.0, mentions=1.0)}
        if name not in schemes:
            raise ValueError(f"unknown scheme {name!r}; known: {sorted(schemes)}")
        return schemes[name]


def process_reward(texts: Sequence[str], facts: Sequence[Facts], cfg: RLConfig) -> np.ndarray:
    """``sum_s w_s * (correct_step if step s is true else incorrect_step)``; a missing step is incorrect."""
    ver = StepVerifier(cfg.verifier)
    r = cfg.rewards
    out = np.empty(len(texts))
    for i, (t, f) in enumerate(zip(texts, facts)):
        ok = ver.verify(t, f).step_ok
        out[i] = sum(cfg.step_weight(s) * (r.correct_step if ok[s] else r.incorrect_step) for s in STEPS)
    return out


def process_reward_from_probs(step_probs: np.ndarray, cfg: RLConfig) -> np.ndarray:
    """Expected process reward under a process reward model's step probabilities ``(n, 4)``."""
    r = cfg.rewards
    p = np.nan_to_num(np.asarray(step_probs, float))
    w = np.array([cfg.step_weight(s) for s in STEPS])
    return (p * r.correct_step + (1 - p) * r.incorrect_step) @ w


def mention_reward(texts: Sequence[str], facts: Sequence[Facts], cfg: RLConfig, guarded: bool = True,
                   held_out: Sequence[str] = ()) -> np.ndarray:
    """The guide's step-specific keyword rewards; ``guarded``: only in steps whose claims are all true (the
    ``held_out`` claims ignored, as the process reward ignores them)."""
    ver = StepVerifier(cfg.verifier)
    table = cfg.rewards.step_specific
    out = np.zeros(len(texts))
    for i, (t, f) in enumerate(zip(texts, facts)):
        steps = split_steps(t)
        ok = step_ok_without(ver.verify(t, f), held_out) if guarded else dict.fromkeys(STEPS, True)
        for name, (pattern, step) in MENTIONS.items():
            if ok.get(step, False) and re.search(pattern, steps.get(step, ""), re.I):
                out[i] += getattr(table, name)
    return out


def outcome_reward(signals: Sequence[str | None], returns: Sequence[float], alternative_returns: Sequence[float],
                   cfg: RLConfig) -> np.ndarray:
    """``profitable_trade`` / ``losing_trade`` for a trade by the sign of its return; for a HOLD,
    ``avoided_loss`` if the alternative trade (the one the facts pointed to) lost, else 0. An unparseable
    analysis (no signal) gets ``losing_trade``."""
    r = cfg.rewards
    out = np.zeros(len(signals))
    for i, (s, ret, alt) in enumerate(zip(signals, returns, alternative_returns)):
        if s is None:
            out[i] = r.losing_trade
        elif s == "HOLD":
            out[i] = r.avoided_loss if np.isfinite(alt) and alt < 0 else 0.0
        elif np.isfinite(ret):
            out[i] = r.profitable_trade if ret > 0 else (r.losing_trade if ret < 0 else 0.0)
    return out


def calibration_reward(signals: Sequence[str | None], confidences: Sequence[float | None], returns: Sequence[float],
                       cfg: RLConfig) -> np.ndarray:
    """``high_confidence_correct`` for confidence >= 0.7 on a winning trade, ``low_confidence_incorrect`` for
    confidence < 0.5 on a losing one, 0 otherwise (HOLDs and unparseable analyses included)."""
    r = cfg.rewards
    out = np.zeros(len(signals))
    for i, (s, c, ret) in enumerate(zip(signals, confidences, returns)):
        if s in (None, "HOLD") or c is None or not np.isfinite(ret):
            continue
        if c >= 0.7 and ret > 0:
            out[i] = r.high_confidence_correct
        elif c < 0.5 and ret < 0:
            out[i] = r.low_confidence_incorrect
    return out


@dataclass
class Scored:
    """All components for a batch of analyses (arrays of length n) and the parsed decisions."""

    process: np.ndarray
    outcome: np.ndarray
    calibration: np.ndarray
    mentions: np.ndarray
    naive_mentions: np.ndarray
    signals: list[str | None]
    confidences: list[float | None]
    returns: np.ndarray
    true_step_share: np.ndarray
    self_consistent: np.ndarray

    def total(self, scheme: Scheme) -> np.ndarray:
        m = self.mentions if scheme.guarded else self.naive_mentions
        return scheme.process * self.process + scheme.outcome * self.outcome + scheme.calibration * self.calibration \
            + scheme.mentions * m


OutcomeFn = Callable[[str, Facts, dict[str, Any]], tuple[float, float]]


#: Verifier claims the process reward does not see: notebook 07 evaluates them as a held-out target (a scheme
#: that "wins" on them did not win by construction, as it would on the claims it was rewarded for).
HELD_OUT_CLAIMS = ("rsi_label", "bb_label", "vol_label")


def step_ok_without(v: Any, held_out: Sequence[str] = HELD_OUT_CLAIMS) -> dict[str, bool]:
    """A verification's step verdicts ignoring the ``held_out`` claims. (A missing step always fails a required,
    non-held-out claim: ``rsi_present``, ``vol_present``, ``btc_move_present``, ``signal_present``.)"""
    return {s: all(c.ok for c in v.claims if c.step == s and c.name not in held_out) for s in STEPS}


def score(texts: Sequence[str], facts: Sequence[Facts], cfg: RLConfig, outcome_fn: OutcomeFn | None = None,
          extras: Sequence[dict[str, Any]] | None = None, held_out: Sequence[str] = HELD_OUT_CLAIMS) -> Scored:
    """Every reward component of each analysis. The process reward ignores the ``held_out`` claims.

    ``outcome_fn(text, facts, extra) -> (return of following the analysis' signal, return of the
    alternative trade)``; without it, outcome and calibration rewards are 0 (returns NaN).
    """
    ver = StepVerifier(cfg.verifier)
    extras = extras or [{} for _ in texts]
    verdicts = [ver.verify(t, f) for t, f in zip(texts, facts)]
    signals = [v.parsed.get("signal") for v in verdicts]
    confs = [v.parsed.get("confidence") for v in verdicts]
    rets, alts = np.full(len(texts), np.nan), np.full(len(texts), np.nan)
    if outcome_fn is not None:
        for i, (t, f, e) in enumerate(zip(texts, facts, extras)):
            rets[i], alts[i] = outcome_fn(t, f, e)
    r = cfg.rewards
    oks = [step_ok_without(v, held_out) for v in verdicts]
    process = np.array([sum(cfg.step_weight(s) * (r.correct_step if ok[s] else r.incorrect_step) for s in STEPS)
                        for ok in oks])
    return Scored(process=process, outcome=outcome_reward(signals, rets, alts, cfg),
                  calibration=calibration_reward(signals, confs, rets, cfg),
                  mentions=mention_reward(texts, facts, cfg, guarded=True, held_out=held_out),
                  naive_mentions=mention_reward(texts, facts, cfg, guarded=False), signals=signals, confidences=confs,
                  returns=rets, true_step_share=np.array([v.true_step_share for v in verdicts]),
                  self_consistent=np.array([v.self_consistent for v in verdicts]))


def alternative_signal(f: Facts, cfg: RLConfig) -> str:
    """The trade the facts point to (used to credit a HOLD that avoided its loss)."""
    return "BUY" if implied_direction(f, cfg.verifier) >= 0 else "SELL"


def facts_column(values: Sequence[Any]) -> list[Facts]:
    """Facts from a dataset column of JSON strings or dicts (as trl passes extra columns)."""
    return [Facts(**(json.loads(v) if isinstance(v, str) else v)) for v in values]


# ------------------------------------------------------------------------------------------------
# Added for notebook 07: format, process from a process reward model, outcome from the replay
# ------------------------------------------------------------------------------------------------
def format_reward(texts: Sequence[str]) -> np.ndarray:
    """Share of the four steps present (``Step k - ...``), step 4 counting only with a parseable signal and
    confidence: in [0, 1], shape ``(n,)``. The "format reward" of GRPO recipes (DeepSeek-R1): it says
    nothing about truth, only whether the analysis is complete."""
    out = np.zeros(len(texts))
    for i, t in enumerate(texts):
        steps = split_steps(t)
        s4 = steps.get("signal_generation", "")
        ok4 = bool(re.search(r"\b(BUY|SELL|HOLD)\b", s4)) and bool(re.search(r"confidence\s*[+-]?\d", s4, re.I))
        out[i] = (sum(s in steps for s in STEPS[:3]) + ok4) / 4
    return out


def prm_step_probs(texts: Sequence[str], facts: Sequence[Facts], prm: Any) -> np.ndarray:
    """``(n, 4)`` probabilities that each step is correct, from notebook 05's process reward model
    (:class:`workbench.rlaif.ProcessRewardTrainer`); a missing step is scored as an empty step."""
    from workbench.analysis.facts import STEP_TITLES

    if not len(texts):
        return np.zeros((0, len(STEPS)))
    rows = []
    for t in texts:
        st = split_steps(t)
        rows.append([f"Step {i} - {STEP_TITLES[s]}: {st.get(s, '')}" for i, s in enumerate(STEPS, 1)])
    return np.asarray(prm.step_probs(rows, [f.numeric() for f in facts]), float)


def prm_process_reward(texts: Sequence[str], facts: Sequence[Facts], prm: Any, cfg: RLConfig) -> np.ndarray:
    """Process reward with the process reward model's step probabilities in place of the verifier's verdicts,
    weighted per step (:func:`process_reward_from_probs`)."""
    return process_reward_from_probs(prm_step_probs(texts, facts, prm), cfg)


class ReplayOutcome:
    """``OutcomeFn`` for :func:`score`: the realised return of following an analysis' signal on a price source.

    The parsed signal, size, stop and take profit become a :class:`workbench.rlaif.TradingDecision` entered at
    the facts' ask (BUY) or bid (SELL) (``workbench.llm.decision_from_analysis``), closed by
    :func:`workbench.rlaif.evaluate` at the stop, the target, the market's expiry or after ``max_hold_ms``.
    For a HOLD, the alternative return is that of the analyst's trade in the direction the facts point to
    (:func:`alternative_signal`), so :func:`outcome_reward` can credit an avoided loss. Returns are per
    share in Up-price units; NaN while the position is still open (or without a source). Results are cached
    by (market, time, signal, stop, take profit): the same decision is replayed once.

    Parameters
    ----------
    source : a price source (``quotes``, ``expiry``, ``now``), e.g. :class:`workbench.rlaif.ReplayPriceSource`.
    cfg : the configuration (its verifier settings parse the analyses and size the alternative trade).
    max_hold_ms : longest hold in milliseconds.
    """

    def __init__(self, source: Any, cfg: RLConfig, max_hold_ms: int = 10 * 60_000) -> None:
        self.source, self.cfg, self.max_hold_ms = source, cfg, int(max_hold_ms)
        self._ver = StepVerifier(cfg.verifier)
        self._cache: dict[tuple[Any, ...], float] = {}

    def _replay(self, parsed: dict[str, Any], f: Facts, t_ms: int) -> float:
        from workbench.llm import decision_from_analysis
        from workbench.rlaif import evaluate

        key = (f.market, t_ms, parsed.get("signal"), parsed.get("stop"), parsed.get("take_profit"))
        if key not in self._cache:
            d = decision_from_analysis(parsed, f, t_ms, "", "rlhf")
            out = evaluate(d, self.source, self.max_hold_ms)[0] if d is not None and self.source is not None else None
            self._cache[key] = float(out.ret) if out is not None else float("nan")
        return self._cache[key]

    def __call__(self, text: str, f: Facts, extra: dict[str, Any]) -> tuple[float, float]:
        t_ms = int(extra["time"]) if extra.get("time") is not None else int(pd_time_ms(f.time))
        parsed = self._ver.verify(text, f).parsed
        sig = parsed.get("signal")
        if sig is None:
            return float("nan"), float("nan")
        ret = self._replay(parsed, f, t_ms) if sig != "HOLD" else 0.0
        alt = float("nan")
        if sig == "HOLD":
            from workbench.analysis.analyst import Analyst

            p = Analyst(self.cfg.verifier).decide(f, alternative_signal(f, self.cfg))
            alt = self._replay({"signal": p.signal, "confidence": p.confidence, "size": p.size, "stop": p.stop,
                                "take_profit": p.take_profit}, f, t_ms)
        return ret, alt


def pd_time_ms(iso: str) -> int:
    """UTC epoch milliseconds of an ISO time (the ``time`` field of :class:`Facts`)."""
    import pandas as pd

    return int(pd.Timestamp(iso).value // 1_000_000)


def completion_text(completion: Any) -> str:
    """The text of a trl completion: a string, or conversational messages (the assistant's contents joined)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return str(completion.get("content", ""))
    return "".join(str(m.get("content", "")) for m in completion if isinstance(m, dict))


class GRPOReward:
    """A reward scheme as a trl ``GRPOTrainer`` reward function: ``f(prompts, completions, **kwargs) -> list[float]``.

    trl passes the dataset's other columns in ``kwargs``: ``facts`` (JSON of :class:`Facts`, required) and
    ``time`` (epoch ms, optional: taken from the facts otherwise). The reward of a completion is
    ``Scored.total(scheme)`` (:func:`score`): process (verifier, or the process reward model with
    ``process="prm"``), outcome and calibration (from ``outcome_fn``, e.g. :class:`ReplayOutcome`), guarded
    mentions; plus ``format_weight x`` :func:`format_reward`.

    Every call appends one row per completion to :attr:`records` (the trainer's step, each component, the
    verifier's per-step verdicts) for the diagnostics, and reports the components' means to the trainer
    (``log_metric``) so they appear in its logs next to ``reward``.

    Parameters
    ----------
    scheme : a :class:`Scheme` or its name (``outcome-only``, ``process-only``, ``combined``).
    cfg : the configuration.
    outcome_fn : needed when the scheme weights outcome or calibration (else those are 0).
    process : ``"verifier"`` (step labels, as the human labels of Lightman et al. 2023) or ``"prm"``.
    prm : a :class:`workbench.rlaif.ProcessRewardTrainer` (``process="prm"``).
    format_weight : weight of the format reward (0 by default: the schemes as in ``rlhf_config.yaml``).
    name : the name trl logs (``rewards/<name>/mean``); default from the scheme.
    """

    def __init__(self, scheme: Scheme | str, cfg: RLConfig, outcome_fn: OutcomeFn | None = None, process: str = "verifier",
                 prm: Any = None, format_weight: float = 0.0, name: str | None = None) -> None:
        if process not in ("verifier", "prm"):
            raise ValueError(f"process must be 'verifier' or 'prm', got {process!r}")
        if process == "prm" and prm is None:
            raise ValueError("process='prm' needs a process reward model (prm=...)")
        self.scheme_name = scheme if isinstance(scheme, str) else "custom"
        self.scheme = Scheme.named(scheme) if isinstance(scheme, str) else scheme
        self.cfg, self.outcome_fn, self.process, self.prm = cfg, outcome_fn, process, prm
        self.format_weight = float(format_weight)
        self.__name__ = name or self.scheme_name.replace("-", "_")
        self.records: list[dict[str, Any]] = []
        self.calls = 0

    def score_texts(self, texts: Sequence[str], facts: Sequence[Facts], times: Sequence[Any] | None = None
                    ) -> tuple[np.ndarray, Scored]:
        """``(rewards (n,), components)`` of analyses of the given facts (outside a trainer too)."""
        sch = self.scheme
        need_outcome = self.outcome_fn is not None and (sch.outcome != 0 or sch.calibration != 0)
        extras = [{"time": t} for t in (times if times is not None else [None] * len(texts))]
        s = score(texts, facts, self.cfg, self.outcome_fn if need_outcome else None, extras)
        if self.process == "prm" and sch.process != 0:
            s.process = prm_process_reward(texts, facts, self.prm, self.cfg)
        total = s.total(sch)
        if self.format_weight:
            total = total + self.format_weight * format_reward(texts)
        return total, s

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
        if "facts" not in kwargs:
            raise KeyError("the GRPO dataset needs a 'facts' column (JSON of workbench.analysis.Facts)")
        texts = [completion_text(c) for c in completions]
        facts = facts_column(kwargs["facts"])
        total, s = self.score_texts(texts, facts, kwargs.get("time"))
        state = kwargs.get("trainer_state")
        step = int(getattr(state, "global_step", self.calls)) if state is not None else self.calls
        ver = StepVerifier(self.cfg.verifier)
        for i, (t, f) in enumerate(zip(texts, facts)):
            ok = ver.verify(t, f).step_ok
            self.records.append({"call": self.calls, "step": step, "reward": float(total[i]),
                                 "process": float(s.process[i]), "outcome": float(s.outcome[i]),
                                 "calibration": float(s.calibration[i]), "mentions": float(s.mentions[i]),
                                 "true_step_share": float(s.true_step_share[i]),
                                 "self_consistent": bool(s.self_consistent[i]), "signal": s.signals[i],
                                 "return": float(s.returns[i]), **{f"ok_{k}": bool(ok[k]) for k in STEPS},
                                 "text": t})
        log = kwargs.get("log_metric")
        if callable(log):
            for k in ("process", "outcome", "calibration", "true_step_share"):
                log(f"components/{k}", float(np.mean(getattr(s, k))))
        self.calls += 1
        return [float(x) for x in total]


def grpo_reward_functions(cfg: RLConfig, outcome_fn: OutcomeFn | None = None, process: str = "verifier",
                          prm: Any = None, schemes: Sequence[str] = ("outcome-only", "process-only", "combined"),
                          format_weight: float = 0.0) -> dict[str, GRPOReward]:
    """One trl reward function per scheme (name -> :class:`GRPOReward`)."""
    return {s: GRPOReward(s, cfg, outcome_fn, process, prm, format_weight) for s in schemes}
