"""``rlhf_config.yaml``: the RLHF / process-supervision settings, validated on load.

The file has the guide's keys (``rlhf``, ``process_supervision``, ``rewards``) plus the verifier's
tolerances and ``cpu`` / ``gpu`` override blocks. :func:`load_config` rejects unknown keys and wrong
types with a message naming the key path, and checks that the step weights cover the steps and sum to 1.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from workbench.config import PROJ_ROOT

DEFAULT_CONFIG = PROJ_ROOT / "rlhf_config.yaml"
STEPS = ("technical_analysis", "risk_assessment", "market_context", "signal_generation")


class ConfigError(ValueError):
    """A key, type or value of the configuration is wrong."""


@dataclass(frozen=True)
class RLHFSettings:
    learning_rate: float = 1e-5  # policy learning rate
    reward_learning_rate: float = 1e-4  # reward-model learning rate
    batch_size: int = 4  # prompts per RL step
    reward_epochs: int = 10  # reward-model epochs
    rl_epochs: int = 5  # RL epochs


@dataclass(frozen=True)
class ProcessSupervision:
    steps: tuple[str, ...] = STEPS  # reasoning steps, in order
    step_weights: dict[str, float] = field(default_factory=lambda: {
        "technical_analysis": 0.30, "risk_assessment": 0.25, "market_context": 0.20, "signal_generation": 0.25})


@dataclass(frozen=True)
class StepSpecific:
    mentions_rsi: float = 0.1
    mentions_macd: float = 0.1
    mentions_bollinger: float = 0.1
    mentions_support_resistance: float = 0.1


@dataclass(frozen=True)
class Rewards:
    correct_step: float = 0.5
    incorrect_step: float = -0.2
    high_confidence_correct: float = 0.3
    low_confidence_incorrect: float = 0.1
    profitable_trade: float = 0.5
    losing_trade: float = -0.3
    avoided_loss: float = 0.2
    step_specific: StepSpecific = field(default_factory=StepSpecific)


@dataclass(frozen=True)
class VerifierSettings:
    rsi_tolerance: float = 1.0
    relative_tolerance: float = 0.10
    price_tolerance: float = 0.011
    move_tolerance_pct: float = 0.02
    minutes_tolerance: float = 0.55
    rsi_overbought: float = 70.0
    rsi_oversold: float = 30.0
    bb_narrow: float = 0.0025
    bb_wide: float = 0.0060
    vol_low: float = 0.00035
    vol_high: float = 0.00080
    gap_neutral: float = 0.03
    max_risk_fraction: float = 0.02
    capital: float = 500.0


@dataclass(frozen=True)
class RLConfig:
    """The whole file (after applying an override block, if asked)."""

    rlhf: RLHFSettings = field(default_factory=RLHFSettings)
    process_supervision: ProcessSupervision = field(default_factory=ProcessSupervision)
    rewards: Rewards = field(default_factory=Rewards)
    verifier: VerifierSettings = field(default_factory=VerifierSettings)
    source: str = ""

    def step_weight(self, step: str) -> float:
        return self.process_supervision.step_weights[step]


def _build(cls: type, raw: Any, path: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.name != "source"}
    unknown = set(raw) - names
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {sorted(unknown)}; allowed: {sorted(names)}")
    kwargs = {}
    for key, value in raw.items():
        kwargs[key] = _coerce(hints[key], value, f"{path}.{key}" if path else key)
    return cls(**kwargs)


_YAML11_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


def yaml_number(value: Any) -> Any:
    """``value`` as the number the user meant when PyYAML (YAML 1.1) left ``1e-5`` a string; else unchanged."""
    if isinstance(value, str) and _YAML11_FLOAT.fullmatch(value.strip()):
        return float(value)
    return value


def _coerce(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path)
    if tp is float:
        if isinstance(value, str) and _YAML11_FLOAT.fullmatch(value.strip()):
            # PyYAML reads YAML 1.1, where `1e-5` (no dot) is a string; the user meant the number (issue 18)
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {type(value).__name__} {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{path}: expected a list of strings, got {value!r}")
        return tuple(value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {type(value).__name__}")
        return {str(k): _coerce(float, v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(tp, types.UnionType):  # pragma: no cover - not used by the schema
        raise ConfigError(f"{path}: unsupported type {tp}")
    raise ConfigError(f"{path}: unsupported type {tp}")  # pragma: no cover


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(path: str | os.PathLike[str] | None = None, profile: str | None = None) -> RLConfig:
    """Load and validate ``rlhf_config.yaml``.

    Parameters
    ----------
    path : the YAML file (default: the project's ``rlhf_config.yaml``).
    profile : ``"cpu"`` or ``"gpu"`` to apply that override block, or None.
    """
    p = Path(path) if path is not None else DEFAULT_CONFIG
    if not p.exists():
        raise ConfigError(f"no configuration file {p}")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    overrides = {k: raw.pop(k) for k in ("cpu", "gpu") if k in raw}
    if profile is not None:
        if profile not in ("cpu", "gpu"):
            raise ConfigError(f"profile must be 'cpu' or 'gpu', got {profile!r}")
        raw = _merge(raw, overrides.get(profile) or {})
    for name, block in overrides.items():  # validate the blocks even when not applied
        _build(RLConfig, _merge(raw, block or {}), f"{p.name}:{name}")
    cfg = _build(RLConfig, raw, "")
    ps = cfg.process_supervision
    if set(ps.step_weights) != set(ps.steps):
        raise ConfigError(f"process_supervision.step_weights keys {sorted(ps.step_weights)} must match the steps "
                          f"{list(ps.steps)}")
    if abs(sum(ps.step_weights.values()) - 1.0) > 1e-6:
        raise ConfigError(f"process_supervision.step_weights must sum to 1, got {sum(ps.step_weights.values()):.4f}")
    if any(w < 0 for w in ps.step_weights.values()):
        raise ConfigError("process_supervision.step_weights must be non-negative")
    unknown_steps = set(ps.steps) - set(STEPS)
    if unknown_steps:
        raise ConfigError(f"process_supervision.steps: unknown step(s) {sorted(unknown_steps)}; known: {list(STEPS)}")
    return dataclasses.replace(cfg, source=str(p))
