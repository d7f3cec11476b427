"""Twin checkpoints: tensors and plain Python types only, so ``torch.load(path)`` works with torch's default
``weights_only=True``; written atomically, with the normalisation statistics and the metrics.
"""

from __future__ import annotations

import os
from dataclasses import asdict, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from workbench import atomic
from workbench.twin.interleaved import _MODEL_CLASSES
from workbench.twin.model import InterleavedDTConfig, TraderDecisionTransformer, TraderDTConfig

#: Version of the checkpoint layout written by :func:`save_checkpoint`.
CHECKPOINT_FORMAT_VERSION = 1
#: File name of the best checkpoint written by :meth:`TraderTrainer.fit`.
BEST_CHECKPOINT = "best_model.pt"


def _plain(obj: Any) -> Any:
    """Convert to types ``torch.load(weights_only=True)`` accepts: tensors, dict, list, str, numbers, None."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (pd.Series, pd.Index)):
        return _plain(obj.to_dict() if isinstance(obj, pd.Series) else obj.tolist())
    if isinstance(obj, pd.DataFrame):
        return {str(c): _plain(obj[c]) for c in obj.columns}
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    raise TypeError(f"cannot store {type(obj).__name__} in a weights_only checkpoint")


def _unwrap(model: nn.Module) -> nn.Module:
    while hasattr(model, "module") and isinstance(model.module, nn.Module):  # DDP / DataParallel
        model = model.module
    return getattr(model, "_orig_mod", model)  # torch.compile


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, normalization: Mapping[str, Any] | None = None,
                    epoch: int | None = None, metrics: Mapping[str, Any] | None = None,
                    extra: Mapping[str, Any] | None = None) -> Path:
    """Write a checkpoint atomically (temporary file in the same folder, then ``os.replace``).

    Parameters
    ----------
    path : path-like
        Destination, e.g. ``config.paths().models / "trader_twin" / "best_model.pt"``.
    model : TraderDecisionTransformer or InterleavedDecisionTransformer
        Possibly wrapped (DDP, ``torch.compile``); the bare module is saved.
    normalization : mapping, optional
        Anything the caller needs to reproduce the inputs, e.g. feature means/stds fitted on the
        training period and the RTG scale. NumPy and pandas values are converted to lists/dicts.
    epoch, metrics, extra : optional
        Stored as given (converted to plain types).

    Returns
    -------
    Path
        The written file. Keys: ``format_version``, ``model_class``, ``config`` (the model's kwargs),
        ``model_state_dict``, ``normalization``, ``epoch``, ``metrics``, ``extra``, ``torch_version``,
        ``created_utc``. Every value is a tensor or plain Python type, so ``torch.load(path)`` works
        with the default ``weights_only=True``.
    """
    bare = _unwrap(model)
    name = type(bare).__name__
    if name not in _MODEL_CLASSES:
        raise TypeError(f"cannot checkpoint a {name}")
    ckpt = {
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "model_class": name,
        "config": asdict(bare.config),
        "model_state_dict": {k: v.detach().cpu().clone() for k, v in bare.state_dict().items()},
        "normalization": _plain(dict(normalization or {})),
        "epoch": epoch,
        "metrics": _plain(dict(metrics or {})),
        "extra": _plain(dict(extra or {})),
        "torch_version": str(torch.__version__),
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    path = atomic.write_file(path, lambda p: torch.save(ckpt, p), fsync=True)
    return path


def load_checkpoint(path: str | os.PathLike[str], device: str | torch.device | None = "cpu"
                    ) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of a checkpoint (``weights_only=True``), in eval mode on ``device``.

    Returns
    -------
    (model, checkpoint)
        The model and the full checkpoint dict (``normalization``, ``metrics``, ...).
    """
    ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    version = ckpt.get("format_version")
    if version != CHECKPOINT_FORMAT_VERSION:
        raise ValueError(f"checkpoint format {version!r}; this code reads {CHECKPOINT_FORMAT_VERSION}")
    cls = _MODEL_CLASSES[ckpt["model_class"]]
    known = {f.name for f in fields(TraderDTConfig if cls is TraderDecisionTransformer else InterleavedDTConfig)}
    model = cls(**{k: v for k, v in ckpt["config"].items() if k in known})
    model.load_state_dict(ckpt["model_state_dict"], strict=True)
    return model.to(_resolve_device(device)).eval(), ckpt


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
