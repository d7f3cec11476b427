"""A reward-model lifecycle (design document 001, "Best practices"): versions, promotion by an A/B, rollback.

Every trained reward model is registered with a version tag (``rm-<n>``), the time window of its training
data, its metrics and its parent. The registry keeps the ``keep`` most recent versions (and always the current
one and the one a rollback would restore). A new version becomes current only if it beats the current one
on the latest held-out pairs: both score the same pairs, and the difference in pair accuracy (the share of
pairs whose chosen decision scores higher) gets a bootstrap interval over decision points (a point's pairs
share its market state, so they are resampled together). Without an interval above 0 the current model stays
and the report says why. :meth:`RewardModelRegistry.rollback` restores the previous current model exactly
(the same file, so the same scores).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from workbench import atomic
from workbench.rlaif.reward import RewardModelTrainer, TextEncoder
from workbench.rlaif.store import PreferencePair

REGISTRY_FILE = "registry.json"


@dataclass
class PromotionReport:
    """The A/B of a candidate against the current model on the same held-out pairs."""

    candidate: str
    current: str | None
    promoted: bool
    reason: str
    candidate_accuracy: float
    current_accuracy: float
    difference: float  # candidate minus current pair accuracy
    ci_low: float
    ci_high: float
    pairs: int
    units: int  # decision points resampled

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def pair_correct(trainer: RewardModelTrainer, pairs: Sequence[PreferencePair]) -> np.ndarray:
    """``(n,)`` 1.0 where the trainer scores the chosen side above the rejected one."""
    return (trainer.score([p.chosen for p in pairs]) > trainer.score([p.rejected for p in pairs])).astype(float)


def _units(pairs: Sequence[PreferencePair]) -> np.ndarray:
    """The independent unit of each pair: its decision point (else the chosen decision's market and time)."""
    keys = [p.chosen.metadata.get("decision_point") if p.chosen.metadata.get("decision_point") is not None
            else f"{p.chosen.symbol}|{p.chosen.time}" for p in pairs]
    _, inv = np.unique(np.asarray([str(k) for k in keys]), return_inverse=True)
    return inv


def ab_test(a: RewardModelTrainer, b: RewardModelTrainer, pairs: Sequence[PreferencePair], n_boot: int = 1000,
            seed: int = 0) -> tuple[float, float, float, float, float, int]:
    """Pair accuracy of ``a`` and of ``b`` on the same pairs, and ``a - b`` with a 95 % bootstrap interval over
    decision points: ``(acc_a, acc_b, diff, low, high, units)``."""
    if not pairs:
        raise ValueError("no held-out pairs to compare on")
    ca, cb = pair_correct(a, pairs), pair_correct(b, pairs)
    unit = _units(pairs)
    k = int(unit.max()) + 1
    da = np.bincount(unit, weights=ca, minlength=k)
    db = np.bincount(unit, weights=cb, minlength=k)
    n = np.bincount(unit, minlength=k).astype(float)
    idx = np.random.default_rng(seed).integers(0, k, size=(n_boot, k))
    diff_boot = (da[idx].sum(1) - db[idx].sum(1)) / n[idx].sum(1)
    lo, hi = np.quantile(diff_boot, [0.025, 0.975])
    return float(ca.mean()), float(cb.mean()), float(ca.mean() - cb.mean()), float(lo), float(hi), k


class RewardModelRegistry:
    """Versions of a reward model in one folder (``registry.json`` and one checkpoint per version).

    Parameters
    ----------
    folder : where the checkpoints and ``registry.json`` live (created).
    keep : most recent versions kept on disk (at least 3; the current and the rollback target are always kept).
    """

    def __init__(self, folder: str | os.PathLike[str], keep: int = 3) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.keep = max(3, int(keep))
        path = self.folder / REGISTRY_FILE
        self.state: dict[str, Any] = (json.loads(path.read_text()) if path.is_file()
                                      else {"current": None, "previous": [], "versions": {}, "log": []})

    # ---- bookkeeping -------------------------------------------------------------------------------
    def _save(self) -> None:
        atomic.write_text(self.folder / REGISTRY_FILE, json.dumps(self.state, indent=2, default=float))

    @property
    def current(self) -> str | None:
        return self.state["current"]

    def versions(self) -> list[str]:
        """Version tags on disk, oldest first."""
        return sorted(self.state["versions"], key=lambda v: int(v.split("-")[1]))

    def info(self, version: str) -> dict[str, Any]:
        return dict(self.state["versions"][version])

    def register(self, trainer: RewardModelTrainer, data_window: tuple[int, int], metrics: dict[str, float] | None = None,
                 parent: str | None = None) -> str:
        """Save a trained model as the next version (not yet current); returns its tag. ``data_window`` is the
        (first, last) decision time of its training pairs (UTC ms); ``parent`` defaults to the current version."""
        n = max([int(v.split("-")[1]) for v in self.state["versions"]] + [0]) + 1
        tag = f"rm-{n}"
        trainer.save(self.folder / f"{tag}.pt", version=tag)
        self.state["versions"][tag] = {"file": f"{tag}.pt", "data_window": [int(data_window[0]), int(data_window[1])],
                                       "metrics": dict(metrics or {}), "parent": parent if parent else self.current,
                                       "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self._prune()
        self._save()
        return tag

    def load(self, version: str | None = None, text_encoder: TextEncoder | None = None) -> RewardModelTrainer:
        """The trainer of ``version`` (default: the current one)."""
        tag = version or self.current
        if tag is None:
            raise ValueError("no current reward model yet: register one and promote it")
        if tag not in self.state["versions"]:
            raise KeyError(f"{tag}: not in the registry (kept: {self.versions()})")
        return RewardModelTrainer.load(self.folder / self.state["versions"][tag]["file"], text_encoder)

    # ---- lifecycle ---------------------------------------------------------------------------------
    def promote(self, version: str, held_out: Sequence[PreferencePair], text_encoder: TextEncoder | None = None,
                n_boot: int = 1000, seed: int = 0) -> PromotionReport:
        """Make ``version`` current if it beats the current model on ``held_out`` (interval above 0)."""
        cand = self.load(version, text_encoder)
        if self.current is None:
            acc = float(pair_correct(cand, held_out).mean()) if held_out else float("nan")
            rep = PromotionReport(version, None, True, "first version: nothing to compare with", acc, float("nan"),
                                  float("nan"), float("nan"), float("nan"), len(held_out), 0)
        else:
            cur = self.load(self.current, cand.encoder)
            a, b, d, lo, hi, k = ab_test(cand, cur, held_out, n_boot, seed)
            ok = lo > 0
            reason = (f"beats {self.current} on {len(held_out)} held-out pairs: accuracy {a:.3f} vs {b:.3f}, difference "
                      f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]" if ok else
                      f"kept {self.current}: {version}'s accuracy {a:.3f} vs {b:.3f}, difference {d:+.3f} "
                      f"[{lo:+.3f}, {hi:+.3f}] over {k} decision points; the interval is not above 0")
            rep = PromotionReport(version, self.current, ok, reason, a, b, d, lo, hi, len(held_out), k)
        if rep.promoted:
            if self.current is not None:
                self.state["previous"].append(self.current)
            self.state["current"] = version
        self.state["log"].append({"event": "promote", **rep.as_dict()})
        self._prune()
        self._save()
        return rep

    def rollback(self) -> str:
        """Make the previously current version current again; returns it."""
        if not self.state["previous"]:
            raise ValueError("nothing to roll back to: no earlier current version")
        back = self.state["previous"].pop()
        self.state["log"].append({"event": "rollback", "from": self.current, "to": back})
        self.state["current"] = back
        self._save()
        return back

    def _prune(self) -> None:
        """Delete all but the ``keep`` most recent versions, never the current one or a rollback target."""
        protected = {self.current, *self.state["previous"][-self.keep:]}
        for tag in self.versions()[:-self.keep]:
            if tag not in protected:
                (self.folder / self.state["versions"][tag]["file"]).unlink(missing_ok=True)
                del self.state["versions"][tag]
        self.state["previous"] = [t for t in self.state["previous"] if t in self.state["versions"]]
