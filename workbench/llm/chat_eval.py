"""The seed's chat evaluation protocol: five question categories, a fixed question set, automatic checks.

Design document 004 evaluates the chat by technical analysis, signal explanation, market context, strategy and
follow-up questions, scored for relevance and accuracy. Each question of :data:`QUESTIONS` names the facts that
decide its answer; a reply is

* **relevant** when it addresses what was asked (the topic's words, e.g. "RSI" for an RSI question), and
* **accurate** when every fact the question asks for is stated right: the number within the verifier's
  tolerance, the label (overbought / narrow / underpriced ...) equal to the facts', the decision's signal as
  the verifier parses it, the risk limit as configured.

A follow-up question is asked after its category's opening question in the same session, so it checks that the
conversation carries its context ("And is it high?" after a volatility question). Scores are shares over
(decision point x question) with bootstrap intervals over decision points, the independent units.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from workbench import metrics
from workbench.analysis.analyst import _label_bb, _label_gap, _label_rsi, _label_vol
from workbench.analysis.facts import Facts
from workbench.analysis.rlconfig import VerifierSettings
from workbench.analysis.verifier import StepVerifier

CATEGORIES = ("technical analysis", "signal explanation", "market context", "strategy", "follow-up")
_N = r"([+-]?\d+(?:\.\d+)?)"


def _near(text: str, pattern: str, value: float, tol: float) -> bool:
    """Some number after ``pattern`` in ``text`` is within ``tol`` of ``value``."""
    return any(abs(float(m.group(1)) - value) <= tol for m in re.finditer(pattern + r"\D{0,12}?" + _N, text, re.I))


def _word(text: str, word: str) -> bool:
    return bool(re.search(rf"\b{re.escape(word)}\b", text, re.I))


Check = Callable[[str, Facts, dict[str, Any]], bool]


@dataclass(frozen=True)
class Question:
    """A question, its category, the words a relevant answer uses and the fact checks of an accurate one."""

    category: str
    text: str
    topic: tuple[str, ...]
    checks: tuple[Check, ...]
    follows: str | None = None  # the question asked before it in the same session (follow-ups)


V = VerifierSettings()
QUESTIONS: tuple[Question, ...] = (
    Question("technical analysis", "What is the RSI, and is the market overbought or oversold?", ("rsi",),
             (lambda a, f, d: _near(a, r"RSI(?:\(14\))?", f.rsi, V.rsi_tolerance),
              lambda a, f, d: _word(a, _label_rsi(f.rsi, V)))),
    Question("technical analysis", "Is the MACD momentum bullish or bearish?", ("macd",),
             (lambda a, f, d: _word(a, "bullish" if f.macd_bp > 0 else "bearish"),)),
    Question("technical analysis", "How wide are the Bollinger bands?", ("bollinger",),
             (lambda a, f, d: _near(a, r"Bollinger width", f.bb_width_pct, max(0.01, 0.1 * f.bb_width_pct)),
              lambda a, f, d: _word(a, _label_bb(f.bb_width_pct, V)))),
    Question("signal explanation", "Why this signal?", ("signal", "decision", "buy", "sell", "hold"),
             (lambda a, f, d: d.get("signal") is not None and _word(a, d["signal"]),)),
    Question("signal explanation", "How confident is the decision, and how many of its steps are true?",
             ("confiden", "step"),
             (lambda a, f, d: d.get("confidence") is not None and _near(a, r"confidence", d["confidence"], 0.005),
              lambda a, f, d: bool(re.search(rf"\b{d.get('true_steps')} of 4 steps true", a)))),
    Question("market context", "Where does Up trade against its fair value?", ("fair value", "up trades"),
             (lambda a, f, d: _near(a, r"Up trades at", f.up_mid, V.price_tolerance),
              lambda a, f, d: _near(a, r"fair value of", f.fair, 2 * V.price_tolerance),
              lambda a, f, d: _word(a, _label_gap(f.gap, V)))),
    Question("market context", "How much time is left and how far has BTC moved since the open?", ("minutes", "btc"),
             (lambda a, f, d: _near(a, r"", f.minutes_left, V.minutes_tolerance) and _word(a, "minutes"),
              lambda a, f, d: _near(a, r"BTC is (?:up|down)", abs(f.btc_move_pct), V.move_tolerance_pct)
              and _word(a, "up" if f.btc_move_pct >= 0 else "down"))),
    Question("strategy", "What does the risk rule allow for a trade?", ("risk",),
             (lambda a, f, d: bool(re.search(rf"\b{100 * V.max_risk_fraction:.0f}%", a)),
              lambda a, f, d: _near(a, r"of", f.capital, 0.5))),
    Question("strategy", "Where are support and resistance?", ("support", "resistance"),
             (lambda a, f, d: _near(a, r"Support", f.range_low, V.price_tolerance),
              lambda a, f, d: _near(a, r"resistance", f.range_high, V.price_tolerance))),
    Question("follow-up", "And is it high?", ("volatility", "per minute"),
             (lambda a, f, d: _near(a, r"Volatility is", f.vol_pct, max(0.001, 0.1 * f.vol_pct)),
              lambda a, f, d: _word(a, _label_vol(f.vol_pct, V))),
             follows="What is the volatility per minute?"),
    Question("follow-up", "And the resistance?", ("resistance",),
             (lambda a, f, d: _near(a, r"resistance", f.range_high, V.price_tolerance),),
             follows="Where is support?"),
)


def _decision_facts(decision: str | None, f: Facts) -> dict[str, Any]:
    if not decision:
        return {}
    v = StepVerifier().verify(decision, f)
    return {"signal": v.parsed.get("signal"), "confidence": v.parsed.get("confidence"),
            "true_steps": sum(v.step_ok.values())}


def evaluate_chat(make_session: Callable[[Facts, str | None], Any], facts: Sequence[Facts],
                  decisions: Sequence[str | None], questions: Sequence[Question] = QUESTIONS) -> pd.DataFrame:
    """Ask every question about every decision point in a fresh session (a follow-up after its opening
    question); one row per (point, question) with ``relevant``, ``accurate`` and the answer.

    ``make_session(facts, decision)`` returns an object with ``ask(question) -> reply`` (``reply.text``), e.g.
    ``lambda f, d: ChatSession(f, decision=d)``.
    """
    rows = []
    for i, (f, dec) in enumerate(zip(facts, decisions)):
        known = _decision_facts(dec, f)
        for q in questions:
            s = make_session(f, dec)
            if q.follows:
                s.ask(q.follows)
            a = s.ask(q.text).text
            relevant = any(w in a.lower() for w in q.topic)
            accurate = relevant and all(bool(c(a, f, known)) for c in q.checks)
            rows.append({"point": i, "category": q.category, "question": q.text, "answer": a, "relevant": relevant,
                         "accurate": accurate})
    return pd.DataFrame(rows)


def chat_scores(rows: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Relevance and accuracy per category (and overall) with 95 % bootstrap intervals over decision points."""
    out = []
    for cat, g in [*rows.groupby("category", sort=False), ("all", rows)]:
        row: dict[str, Any] = {"category": cat, "questions": int(len(g))}
        for col in ("relevant", "accurate"):
            per_point = g.groupby("point")[col].mean().to_numpy(float)
            m, lo, hi = metrics.bootstrap_ci(per_point, np.mean, n_boot=n_boot, seed=seed)
            row.update({col: m, f"{col}_lo": lo, f"{col}_hi": hi})
        out.append(row)
    return pd.DataFrame(out).set_index("category")


def standard_responders(facts: Sequence[Facts], model: Any = None, tokenizer: Any = None,
                        generation: Any = None) -> dict[str, Callable[[Facts, str | None], Any]]:
    """The protocol's rows: the facts responder; the same fed the *next* point's facts (the trivial rule: relevant
    answers with wrong numbers); and, given a model, the language model answering on its own."""
    from workbench.llm.chat import ChatSession

    nxt = {id(f): facts[(i + 1) % len(facts)] for i, f in enumerate(facts)}
    out: dict[str, Callable[[Facts, str | None], Any]] = {
        "facts responder": lambda f, d: ChatSession(f, decision=d),
        "facts responder, another point's facts": lambda f, d: ChatSession(nxt[id(f)], decision=d)}
    if model is not None and tokenizer is not None:
        out["language model"] = lambda f, d: ChatSession(f, decision=d, model=model, tokenizer=tokenizer,
                                                         responder="model", generation=generation)
    return out


def chat_study(facts: Sequence[Facts], decisions: Sequence[str | None], responders: dict[str, Any],
               n_boot: int = 1000, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every responder through :func:`evaluate_chat`: ``(table of scores by responder and category, rows)``."""
    rows = pd.concat([evaluate_chat(make, facts, decisions).assign(responder=name) for name, make in responders.items()],
                     ignore_index=True)
    table = pd.concat({name: chat_scores(g, n_boot, seed) for name, g in rows.groupby("responder", sort=False)})
    return table, rows


def cache_study(facts: Sequence[Facts], decisions: Sequence[str | None],
                make_session: Callable[[Facts, str | None, Any], Any] | None = None, rounds: int = 2,
                questions: Sequence[Question] = QUESTIONS, max_entries: int = 4096) -> pd.DataFrame:
    """The protocol's questions asked ``rounds`` times about the same points through one shared answer cache;
    from the second round on each question is re-typed (upper case, doubled spaces, no question mark), as a
    second user would. One row per round: asks, hits, hit rate, mean milliseconds per answer, and whether every
    cached answer equals the answer computed afresh (``same_answers``).

    ``make_session(facts, decision, cache)`` returns a chat session using ``cache`` (default: the facts responder).
    """
    import time

    from workbench.llm.cache import AnswerCache
    from workbench.llm.chat import ChatSession

    if make_session is None:
        def make_session(f: Facts, d: str | None, c: Any) -> Any:
            return ChatSession(f, decision=d, cache=c)

    cache = AnswerCache(max_entries=max_entries)
    first: dict[tuple[int, str], str] = {}
    rows = []
    for r in range(rounds):
        h0, n, same, t0 = cache.hits, 0, True, time.perf_counter()
        for i, (f, dec) in enumerate(zip(facts, decisions)):
            for q in questions:
                text = q.text if r == 0 else "  ".join(q.text.upper().rstrip("?").split())
                s = make_session(f, dec, cache)
                if q.follows:
                    s.ask(q.follows if r == 0 else q.follows.upper())
                    n += 1
                a = s.ask(text).text
                n += 1
                if r == 0:
                    first[(i, q.text)] = a
                else:
                    same &= a == first[(i, q.text)]
        rows.append({"round": r + 1, "asks": n, "hits": cache.hits - h0, "hit_rate": (cache.hits - h0) / max(n, 1),
                     "ms_per_answer": 1000 * (time.perf_counter() - t0) / max(n, 1), "same_answers": bool(same)})
    return pd.DataFrame(rows)


def model_sessions(model: Any, tokenizer: Any, generation: Any = None) -> Callable[[Facts, str | None, Any], Any]:
    """A ``make_session`` for :func:`cache_study`: the language model answering, through the given cache."""
    from workbench.llm.chat import ChatSession

    def make(f: Facts, d: str | None, c: Any) -> Any:
        return ChatSession(f, decision=d, model=model, tokenizer=tokenizer, responder="model", generation=generation,
                           cache=c)

    return make
