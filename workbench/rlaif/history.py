"""Small pieces of the reward-model trainers: the history ``train`` returns, ``load`` on a class or an
instance, and the device choice."""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import torch


class TrainingHistory(dict):
    """What ``train`` returns: the design's dict of per-epoch lists (``history["val_acc"]`` is one value per
    epoch) that also reads as the per-epoch rows (``history[-1]["val_acc"]``, ``history.rows``, ``len(history)``
    epochs, iteration over rows)."""

    def __init__(self, rows: Sequence[dict[str, float]] = ()) -> None:
        self.rows: list[dict[str, float]] = [dict(r) for r in rows]
        keys = list(dict.fromkeys(k for r in self.rows for k in r))
        super().__init__({k: [r.get(k, float("nan")) for r in self.rows] for k in keys})

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, (int, slice)):
            return self.rows[key]
        return super().__getitem__(key)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict[str, float]]:  # type: ignore[override]
        return iter(self.rows)

    def __bool__(self) -> bool:
        return bool(self.rows)


def _device(device: str | None) -> torch.device:
    """``None``: CUDA when available, else CPU; an explicit ``"cuda"`` without a GPU is refused clearly."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but this machine has no CUDA GPU: pass device='cpu' (or None to choose)")
    return dev


class _class_or_instance:
    """``Trainer.load(path)`` builds a new trainer; ``trainer.load(path)`` loads into that trainer (the design's
    ``load(path) -> None`` on an instance) and returns it."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def __get__(self, obj: Any, cls: type) -> Any:
        import functools

        return functools.partial(self.fn, cls if obj is None else obj)
