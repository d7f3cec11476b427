"""Market commentary with checkable claims, and its verifier (the :class:`workbench.analysis.StepVerifier`
style: every claim is parsed and checked against facts computed from the data, claim by claim).

A commentary summarises the last ``window`` minutes of one-minute BTC closes in a few sentences::

    BTC rose 0.42% over the last 60 minutes, from 97310.52 to 97719.10 at 14:30 UTC.
    Volatility is 0.050% per minute, above its 24-hour median of 0.041%.
    The largest one-minute move was -0.31% at 14:07 UTC.

Definitions (all from closes at or before the commentary's time: no look-ahead): the move is the simple
return from the close ``window`` minutes earlier; volatility is the standard deviation of the window's
one-minute log returns (close to close, percent per minute); its 24-hour median is the median of that
rolling quantity over the preceding 24 hours; the largest move is the one-minute simple return of largest
absolute size in the window, stamped with its bar's time.

:func:`write_commentary` asks a language model when one is given and keeps its text only when the
verifier finds every claim true; otherwise it writes the template (and says so).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

_NUM = r"([+-]?\d+(?:\.\d+)?)"


@dataclass(frozen=True)
class CommentaryFacts:
    """What the commentary may claim, computed from the closes up to ``end``."""

    end: str  # ISO UTC time of the last close used
    window_minutes: int
    start_price: float
    end_price: float
    change_pct: float  # simple return over the window, percent
    vol_pct: float  # std of one-minute log returns in the window, percent per minute
    vol_median_pct: float  # median of the rolling window volatility over the preceding 24 h
    max_move_pct: float  # largest one-minute simple return (signed), percent
    max_move_time: str  # HH:MM UTC of that minute's close
    flat_threshold_pct: float = 0.02  # |change| below this is "flat"
    vol_same_band: float = 0.05  # |vol / median - 1| below this is "at" the median

    @property
    def direction(self) -> str:
        return "was flat" if abs(self.change_pct) < self.flat_threshold_pct else ("rose" if self.change_pct > 0 else "fell")

    @property
    def vol_word(self) -> str:
        if not np.isfinite(self.vol_median_pct) or self.vol_median_pct <= 0:
            return "n/a"
        r = self.vol_pct / self.vol_median_pct - 1
        return "at" if abs(r) < self.vol_same_band else ("above" if r > 0 else "below")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def closes_from(data: pd.Series | pd.DataFrame) -> pd.Series:
    """One-minute closes from a Series of closes, a feature table with ``log_close`` (notebook 02), an OHLCV
    table (``close``) or a step table (``btc_close``); the index must be a UTC DatetimeIndex."""
    if isinstance(data, pd.Series):
        s = data.astype(float)
    elif "log_close" in data:
        s = np.exp(data["log_close"].astype(float))
    elif "close" in data:
        s = data["close"].astype(float)
    elif "btc_close" in data:  # a step table (notebook 04, the pipeline): the underlying's close at each step
        s = data["btc_close"].astype(float)
    else:
        raise ValueError("need a Series of closes or a table with 'log_close', 'close' or 'btc_close'")
    if not isinstance(s.index, pd.DatetimeIndex):
        raise ValueError("closes need a DatetimeIndex (UTC)")
    return s.dropna().sort_index()


def commentary_facts(data: pd.Series | pd.DataFrame, at: Any = None, window_minutes: int = 60,
                     baseline_hours: float = 24.0) -> CommentaryFacts:
    """Facts of the ``window_minutes`` ending at ``at`` (default: the last close), from closes at or before it."""
    s = closes_from(data)
    if at is not None:
        t = pd.Timestamp(at)
        t = t.tz_localize("UTC") if t.tzinfo is None and s.index.tz is not None else t
        s = s[s.index <= t]
    if len(s) < window_minutes + 1:
        raise ValueError(f"need at least {window_minutes + 1} closes before {at}, have {len(s)}")
    w = s.iloc[-(window_minutes + 1):]
    r = np.log(w).diff().dropna()
    logret = np.log(s).diff()
    roll = logret.rolling(window_minutes, min_periods=window_minutes).std()
    end = s.index[-1]
    base = roll[(roll.index > end - pd.Timedelta(hours=baseline_hours)) & (roll.index <= end)].dropna()
    j = int(np.argmax(np.abs(r.to_numpy())))
    return CommentaryFacts(end=end.isoformat(), window_minutes=int(window_minutes), start_price=float(w.iloc[0]),
                           end_price=float(w.iloc[-1]), change_pct=float(100 * (w.iloc[-1] / w.iloc[0] - 1)),
                           vol_pct=float(100 * r.std(ddof=1)), vol_median_pct=float(100 * base.median()) if len(base) else np.nan,
                           max_move_pct=float(100 * np.expm1(r.iloc[j])), max_move_time=r.index[j].strftime("%H:%M"))


def template_commentary(f: CommentaryFacts) -> str:
    """The commentary of ``f`` from the template (every claim true by construction)."""
    end = pd.Timestamp(f.end).strftime("%H:%M")
    move = (f"BTC was flat ({f.change_pct:+.2f}%)" if f.direction == "was flat"
            else f"BTC {f.direction} {abs(f.change_pct):.2f}%")
    out = [f"{move} over the last {f.window_minutes} minutes, from {f.start_price:.2f} to {f.end_price:.2f} at {end} UTC."]
    if f.vol_word == "n/a":
        out.append(f"Volatility is {f.vol_pct:.3f}% per minute.")
    else:
        med = f"its 24-hour median of {f.vol_median_pct:.3f}%"
        out.append(f"Volatility is {f.vol_pct:.3f}% per minute, {f.vol_word} {med}.")
    out.append(f"The largest one-minute move was {f.max_move_pct:+.2f}% at {f.max_move_time} UTC.")
    return " ".join(out)


#: The system message a commentary is asked with (generation and multi-task training alike).
COMMENTARY_SYSTEM = "You write short market commentaries with only the numbers given."
#: The instruction closing :func:`commentary_prompt`; multi-task training varies it (:mod:`workbench.llm.multitask`).
COMMENTARY_INSTRUCTION = "Write a three-sentence market commentary using only these numbers."


def commentary_prompt(f: CommentaryFacts) -> str:
    """The numbers a language model gets to write the commentary."""
    return (f"BTC closes over the last {f.window_minutes} minutes to {pd.Timestamp(f.end).strftime('%H:%M')} UTC: "
            f"from {f.start_price:.2f} to {f.end_price:.2f} ({f.change_pct:+.2f}%). One-minute volatility "
            f"{f.vol_pct:.3f}% (24-hour median {f.vol_median_pct:.3f}%). Largest one-minute move {f.max_move_pct:+.2f}% "
            f"at {f.max_move_time} UTC. {COMMENTARY_INSTRUCTION}")


@dataclass
class CommentaryClaim:
    name: str
    ok: bool
    detail: str


@dataclass
class CommentaryVerification:
    """Claim-level verdicts of a commentary."""

    claims: list[CommentaryClaim] = field(default_factory=list)

    @property
    def well_formed(self) -> bool:
        """The core claim (the move over the window) is present."""
        return any(c.name in ("move_direction", "move_value") for c in self.claims) and not any(
            c.name == "move_present" for c in self.claims)

    @property
    def true_share(self) -> float:
        return float(np.mean([c.ok for c in self.claims])) if self.claims else 0.0

    @property
    def all_true(self) -> bool:
        return bool(self.claims) and all(c.ok for c in self.claims)

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(c) for c in self.claims], columns=["name", "ok", "detail"])


@dataclass(frozen=True)
class CommentaryVerifier:
    """Checks each claim of a commentary against :class:`CommentaryFacts`.

    Tolerances: moves within ``pct_tol`` percentage points (0.01, the printed precision), prices within
    ``price_rel_tol`` relative, volatility within ``vol_rel_tol`` relative, times exact (HH:MM).
    A missing move claim is a failure; other claims are checked only when present.
    """

    pct_tol: float = 0.011
    price_rel_tol: float = 1e-4
    vol_rel_tol: float = 0.05

    def verify(self, text: str, f: CommentaryFacts) -> CommentaryVerification:
        cl: list[CommentaryClaim] = []

        def add(name: str, ok: bool, detail: str) -> None:
            cl.append(CommentaryClaim(name, bool(ok), detail))

        m = re.search(r"BTC (rose|fell|was flat)\s*\(?\s*" + _NUM + r"?%?\)?\s*over the last (\d+) minutes", text, re.I)
        if not m:
            add("move_present", False, "no 'BTC rose/fell/was flat ... over the last N minutes'")
        else:
            word = m.group(1).lower()
            add("move_direction", word == f.direction, f"'{word}' with {f.change_pct:+.3f}%")
            if m.group(2) is not None:
                val = float(m.group(2))
                signed = abs(val) if word == "rose" else (-abs(val) if word == "fell" else val)
                add("move_value", abs(signed - f.change_pct) <= self.pct_tol, f"{signed:+.2f}% vs {f.change_pct:+.3f}%")
            add("window", int(m.group(3)) == f.window_minutes, f"{m.group(3)} vs {f.window_minutes} minutes")
        px = re.search(r"from\s+" + _NUM + r"\s+to\s+" + _NUM, text.replace(",", ""))
        if px:
            a, b = float(px.group(1)), float(px.group(2))
            add("prices", abs(a / f.start_price - 1) <= self.price_rel_tol and abs(b / f.end_price - 1) <= self.price_rel_tol,
                f"{a}-{b} vs {f.start_price:.2f}-{f.end_price:.2f}")
        end = re.search(r"to\s+[\d.,]+\s+at\s+(\d\d:\d\d)\s*UTC", text)
        if end:
            add("end_time", end.group(1) == pd.Timestamp(f.end).strftime("%H:%M"), f"{end.group(1)}")
        v = re.search(r"Volatility is\s+" + _NUM + r"% per minute", text, re.I)
        if v:
            val = float(v.group(1))
            add("vol_value", abs(val - f.vol_pct) <= max(1e-3, self.vol_rel_tol * f.vol_pct), f"{val}% vs {f.vol_pct:.4f}%")
        vm = re.search(r"(above|below|at) its 24-hour median(?: of\s+" + _NUM + r"%)?", text, re.I)
        if vm:
            add("vol_vs_median", vm.group(1).lower() == f.vol_word, f"'{vm.group(1)}' ({f.vol_pct:.4f}% vs median "
                f"{f.vol_median_pct:.4f}%)")
            if vm.group(2) is not None:
                med = float(vm.group(2))
                add("vol_median_value", abs(med - f.vol_median_pct) <= max(1e-3, self.vol_rel_tol * f.vol_median_pct),
                    f"{med}% vs {f.vol_median_pct:.4f}%")
        mm = re.search(r"largest one-minute move was\s+" + _NUM + r"% at (\d\d:\d\d)", text, re.I)
        if mm:
            val = float(mm.group(1))
            add("max_move_value", abs(val - f.max_move_pct) <= self.pct_tol, f"{val:+.2f}% vs {f.max_move_pct:+.3f}%")
            add("max_move_time", mm.group(2) == f.max_move_time, f"{mm.group(2)} vs {f.max_move_time}")
        return CommentaryVerification(cl)


@dataclass
class Commentary:
    """A commentary, who wrote it, its facts and its verification (and the model's rejected text, if any)."""

    text: str
    source: str  # "model" or "template"
    facts: CommentaryFacts
    verification: CommentaryVerification
    model_text: str | None = None
    model_verification: CommentaryVerification | None = None


def write_commentary(data: pd.Series | pd.DataFrame, at: Any = None, window_minutes: int = 60, model: Any = None,
                     tokenizer: Any = None, generation: Any = None, verifier: CommentaryVerifier | None = None) -> Commentary:
    """Commentary of the last ``window_minutes`` to ``at``: the model's when given one and every claim it
    makes is true (and it is well formed), else the template's."""
    ver = verifier or CommentaryVerifier()
    f = commentary_facts(data, at, window_minutes)
    model_text, mv = None, None
    if model is not None and tokenizer is not None:
        from workbench.llm.evaluate import GenerationSettings, generate

        g = generation or GenerationSettings(max_new_tokens=120)
        model_text = generate(model, tokenizer, [commentary_prompt(f)], g,
                              system=COMMENTARY_SYSTEM)[0]
        mv = ver.verify(model_text, f)
        if mv.well_formed and mv.all_true:
            return Commentary(model_text, "model", f, mv, model_text, mv)
    text = template_commentary(f)
    return Commentary(text, "template", f, ver.verify(text, f), model_text, mv)


def commentary_or_none(data: pd.Series | pd.DataFrame | None, at: Any = None, window_minutes: int = 60, model: Any = None,
                       tokenizer: Any = None, generation: Any = None) -> Commentary | None:
    """:func:`write_commentary`, or None when there is no market data (or too little before ``at``)."""
    if data is None:
        return None
    try:
        return write_commentary(data, at, window_minutes, model, tokenizer, generation)
    except ValueError:
        return None


def describe_commentary(c: Commentary | None) -> str:
    """Who wrote the commentary, its text, and (when the model's attempt was rejected) why."""
    if c is None:
        return "no market data (notebook 02's features) before this time: commentary skipped"
    lines = [f"[{c.source}] {c.text}",
             f"{sum(x.ok for x in c.verification.claims)}/{len(c.verification.claims)} claims true"]
    if c.model_text is not None and c.source != "model" and c.model_verification is not None:
        mv = c.model_verification
        lines.append(f"the model's attempt was rejected ({sum(x.ok for x in mv.claims)}/{len(mv.claims)} claims true, "
                     f"{'well' if mv.well_formed else 'not well'} formed): {c.model_text[:160]!r}")
    return "\n".join(lines)
