"""What notebook 08 and ``python -m workbench.agent`` share: the inputs from earlier notebooks, the baselines of
the test period, and the metrics file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench import config


def load_inputs(steps_path: str | os.PathLike[str] | None = None, meta_path: str | os.PathLike[str] | None = None,
                quotes: str | os.PathLike[str] | None = None) -> tuple[pd.DataFrame, dict[str, Any], Any]:
    """Notebook 04's step table and ``twin.json`` and notebook 01's quotes (defaults under the work directory);
    one ``FileNotFoundError`` naming the notebook to run when one is missing."""
    from workbench.data import ingest
    from workbench.twin.backtest import QuoteBook

    P = config.paths()
    sp = Path(steps_path) if steps_path else P.processed / "04_twin" / "steps.parquet"
    mp = Path(meta_path) if meta_path else sp.with_name("twin.json")
    qp = Path(quotes) if quotes else P.processed / "01_ingestion"
    for path, what in ((sp, "the step table"), (mp, "the twin's split (twin.json)")):
        if not path.is_file():
            raise FileNotFoundError(f"missing {path} ({what}): run notebook 04 (04_trader_twin) first, or pass it")
    if not qp.exists():
        raise FileNotFoundError(f"missing {qp} (the quotes): run notebook 01 (01_ingestion) first, or pass --quotes")
    return pd.read_parquet(sp), json.loads(mp.read_text()), QuoteBook(ingest.read_or_load_events(qp))


def baseline_policies(setup: Any, seed: int = 0, twin: bool = True, gbm: bool = True) -> dict[str, Any]:
    """Always HOLD, behaviour cloning (logistic regression on the same state, greedy), gradient boosting on the
    state and a short history (LightGBM, greedy: the strongest cheap baseline, ``gbm=True``) and, when
    ``twin.json`` names a checkpoint that exists, the twin at its default target (greedy, its decision rule when
    saved). Every classifier is fitted on the training period only."""
    from workbench.twin import baselines
    from workbench.twin.backtest import ConstantPolicy

    fits = baselines.fit_baselines(setup.data, seed=seed, gbm=gbm)
    out: dict[str, Any] = {"always HOLD": ConstantPolicy(),
                           "BC logistic": baselines.ProbabilityPolicy(fits["BC logistic"], sample=False)}
    if "gradient boosting" in fits:
        out["gradient boosting"] = baselines.ProbabilityPolicy(fits["gradient boosting"], sample=False)
    ckpt = setup.meta.get("checkpoint")
    if twin and ckpt and Path(ckpt).is_file():
        from workbench.twin import TraderInference
        from workbench.twin import study as twin_study

        inf = TraderInference.from_checkpoint(ckpt)
        adj = None
        if "decision_rule" in setup.meta:
            rule = setup.meta["decision_rule"]
            adj = (-float(rule["exponent"]) * np.log(np.asarray(rule["prior"], dtype=np.float64))).astype(np.float32)
        out["twin"] = twin_study.TwinPolicy(inf.model, [float(setup.meta["default_target"])], setup.data.rtg_scale,
                                            horizon=int(setup.meta["window"]), sample=False,
                                            rtg_mode=setup.data.rtg_mode, logit_adjustment=adj)
    return out


def metrics_json(table: pd.DataFrame, pairs: pd.DataFrame, history: pd.DataFrame, extra: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of notebook 08 (test period, intervals over markets)."""
    def row(name: str) -> dict[str, Any]:
        r = table.loc[name]
        return {k: float(r[k]) for k in table.columns}

    return {"test": {name: row(name) for name in table.index},
            "ppo_minus": {name: {k: (bool(v) if isinstance(v, (bool, np.bool_)) else float(v)) for k, v in r.items()}
                          for name, r in pairs.iterrows()},
            "validation_history": history.to_dict("records"), **extra}


def write_metrics(obj: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """``metrics.json`` (atomically, NaN as null)."""
    from workbench import atomic

    def clean(x: Any) -> Any:
        if isinstance(x, dict):
            return {str(k): clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        if isinstance(x, (float, np.floating)):
            return None if not np.isfinite(x) else float(x)
        if isinstance(x, np.integer):
            return int(x)
        return x

    return atomic.write_text(path, json.dumps(clean(obj), indent=2))
