"""The trader twin (Decision Transformer): causality, the a_{t-1} shift, HF equivalence, training, checkpoints.

Every test is a tiny real run on the CPU (no mocks); together they take well under a minute.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from workbench.data.simulate import ACTIONS
from workbench.twin import (BEST_CHECKPOINT, InterleavedDecisionTransformer, SequenceDataset, TraderDecisionTransformer,
                            TraderInference, TraderTrainer, balanced_class_weights, hf_state_dict_to_interleaved,
                            interleaved_from_hf, load_checkpoint, make_loader, next_rtg_target, rtg_from_rewards,
                            save_checkpoint, warmup_cosine)

S, A = 6, len(ACTIONS)
TINY = dict(state_dim=S, action_dim=A, d_model=32, n_layers=2, n_heads=4, max_len=16)
VARIANTS = [TraderDecisionTransformer, InterleavedDecisionTransformer]


def _tiny(cls=TraderDecisionTransformer, seed: int = 0, **kw):
    torch.manual_seed(seed)
    return cls(**{**TINY, **kw}).eval()


def _batch(B: int = 3, T: int = 10, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, T, S, generator=g), torch.randn(B, T, generator=g),
            torch.randint(0, A, (B, T), generator=g))


def _run(model, states, rtg, actions, mask=None):
    with torch.no_grad():
        return model(states, rtg, actions, mask)


# ---------------------------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("cls", VARIANTS)
def test_shapes(cls):
    model = _tiny(cls)
    states, rtg, actions = _batch(B=3, T=10)
    out = _run(model, states, rtg, actions, torch.ones(3, 10, dtype=torch.bool))
    assert out["action_logits"].shape == (3, 10, A)
    assert out["rtg_pred"].shape == (3, 10)
    if cls is InterleavedDecisionTransformer:
        assert out["state_pred"].shape == (3, 10, S)
    with pytest.raises(ValueError, match="max_len"):
        model(*_batch(B=1, T=17))


def test_default_architecture():
    model = TraderDecisionTransformer(state_dim=17, action_dim=5).eval()
    cfg = model.config
    assert (cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.dropout, cfg.max_len) == (128, 6, 8, 0.1, 128)
    assert len(model.blocks) == 6 and model.action_encoder.num_embeddings == 6  # 5 classes + START
    out = _run(model, torch.randn(2, 128, 17), torch.randn(2, 128), torch.randint(0, 5, (2, 128)))
    assert out["action_logits"].shape == (2, 128, 5) and out["rtg_pred"].shape == (2, 128)
    longer = TraderDecisionTransformer(state_dim=17, action_dim=5, n_layers=1, max_len=300).eval()
    assert _run(longer, torch.randn(1, 300, 17), torch.randn(1, 300), torch.zeros(1, 300, dtype=torch.long)
                )["action_logits"].shape == (1, 300, 5)


# ---------------------------------------------------------------------------------------------------- causality


@pytest.mark.parametrize("cls", VARIANTS)
@pytest.mark.parametrize("field", ["states", "rtg", "actions"])
def test_causal_mask_future_never_changes_the_past(cls, field):
    model = _tiny(cls)
    states, rtg, actions = _batch(B=2, T=12)
    base = _run(model, states, rtg, actions)
    for t in (0, 4, 9):  # t + 2 < T: a changed a_{t+1} reaches step t + 2 in the shifted model
        x = {"states": states.clone(), "rtg": rtg.clone(), "actions": actions.clone()}
        if field == "actions":
            x["actions"][:, t + 1] = (x["actions"][:, t + 1] + 1) % A
        else:
            x[field][:, t + 1] += 3.0
        out = _run(model, **x)
        for key in ("action_logits", "rtg_pred"):
            torch.testing.assert_close(out[key][:, : t + 1], base[key][:, : t + 1], rtol=0, atol=1e-6)
        # not vacuous: the perturbation reaches later outputs
        assert not torch.allclose(out["action_logits"][:, t + 1:], base["action_logits"][:, t + 1:])


def test_action_shift_a_t_never_reaches_logits_at_t():
    model = _tiny(TraderDecisionTransformer)
    states, rtg, actions = _batch(B=2, T=12)
    base = _run(model, states, rtg, actions)
    for t in range(12):
        changed = actions.clone()
        changed[:, t] = (changed[:, t] + 2) % A  # the target of step t
        out = _run(model, states, rtg, changed)
        for key in ("action_logits", "rtg_pred"):
            torch.testing.assert_close(out[key][:, : t + 1], base[key][:, : t + 1], rtol=0, atol=1e-6)
        if t + 1 < 12:  # ... but a_t is the input of step t + 1
            assert (out["action_logits"][:, t + 1] - base["action_logits"][:, t + 1]).abs().max() > 1e-4


def test_interleaved_a_t_never_reaches_logits_at_t():
    model = _tiny(InterleavedDecisionTransformer)
    states, rtg, actions = _batch(B=2, T=8)
    base = _run(model, states, rtg, actions)
    for t in range(8):
        changed = actions.clone()
        changed[:, t] = (changed[:, t] + 2) % A
        out = _run(model, states, rtg, changed)
        torch.testing.assert_close(out["action_logits"][:, : t + 1], base["action_logits"][:, : t + 1],
                                   rtol=0, atol=1e-6)
        # the a_t token follows s_t: it feeds the next-RTG prediction of step t (as in HF), not the logits
        assert (out["rtg_pred"][:, t] - base["rtg_pred"][:, t]).abs().max() > 1e-6


@pytest.mark.parametrize("cls", VARIANTS)
def test_padding_is_ignored(cls):
    model = _tiny(cls)
    states, rtg, actions = _batch(B=2, T=12)
    left = torch.ones(2, 12, dtype=torch.bool)
    left[:, :4] = False
    base = _run(model, states, rtg, actions, left)
    junk = dict(states=states.clone(), rtg=rtg.clone(), actions=actions.clone())
    junk["states"][:, :4] = 1e3
    junk["rtg"][:, :4] = -1e3
    junk["actions"][:, :4] = -1  # padded actions are never embedded
    out = _run(model, mask=left, **junk)
    for key in ("action_logits", "rtg_pred"):
        assert torch.isfinite(out[key]).all()
        torch.testing.assert_close(out[key][:, 4:], base[key][:, 4:], rtol=0, atol=1e-5)
    # right padding: the valid prefix gives exactly the outputs of the unpadded shorter window
    right = torch.ones(2, 12, dtype=torch.bool)
    right[:, 8:] = False
    short = _run(model, states[:, :8], rtg[:, :8], actions[:, :8])
    padded = _run(model, states, rtg, actions, right)
    torch.testing.assert_close(padded["action_logits"][:, :8], short["action_logits"], rtol=0, atol=1e-5)


def test_first_valid_step_after_left_padding_sees_start():
    model = _tiny(TraderDecisionTransformer)
    states, rtg, actions = _batch(B=1, T=8)
    mask = torch.ones(1, 8, dtype=torch.bool)
    mask[:, :3] = False
    a2 = actions.clone()
    a2[:, 2] = (a2[:, 2] + 1) % A  # the padded step just before the first valid one
    torch.testing.assert_close(_run(model, states, rtg, actions, mask)["action_logits"],
                               _run(model, states, rtg, a2, mask)["action_logits"], rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------------- HF equivalence


@pytest.mark.parametrize("size", [dict(hidden_size=32, n_layer=2, n_head=4),
                                  dict(hidden_size=128, n_layer=6, n_head=8)], ids=["tiny", "design-size"])
def test_interleaved_matches_huggingface_decision_transformer(size):
    from transformers import DecisionTransformerConfig, DecisionTransformerModel

    torch.manual_seed(0)
    cfg = DecisionTransformerConfig(state_dim=S, act_dim=A, max_ep_len=64, action_tanh=False, bos_token_id=None,
                                    eos_token_id=None, **size)
    hf = DecisionTransformerModel(cfg)
    with torch.no_grad():  # HF initialises LayerNorms to (1, 0) and biases to 0: perturb all, so a mis-mapped one shows
        for p in hf.parameters():
            p.add_(0.05 * torch.randn_like(p))
    hf.eval()
    ours = interleaved_from_hf(hf, max_len=32)
    assert not ours.training
    B, T = 3, 20
    states, rtg, actions = _batch(B=B, T=T)
    timesteps = torch.randint(0, 64, (B, T))
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, :5] = 0  # HF pads on the left
    mask[2, :12] = 0
    for m in (None, mask):
        with torch.no_grad():
            ref = hf(states=states, actions=F.one_hot(actions, A).float(), returns_to_go=rtg[..., None],
                     timesteps=timesteps, attention_mask=m, return_dict=True)
            out = ours(states, rtg, actions, m, timesteps=timesteps)
        valid = torch.ones(B, T, dtype=torch.bool) if m is None else m.bool()  # padded steps' outputs are unused
        diffs = {"action": (ref.action_preds - out["action_logits"])[valid].abs().max().item(),
                 "return": (ref.return_preds[..., 0] - out["rtg_pred"])[valid].abs().max().item(),
                 "state": (ref.state_preds - out["state_pred"])[valid].abs().max().item()}
        assert max(diffs.values()) <= 1e-5, diffs
        assert ref.action_preds.abs().max() > 0.1  # not a comparison of zeros


def test_hf_mapping_rejects_unknown_keys():
    model = InterleavedDecisionTransformer(**TINY)
    with pytest.raises(KeyError):
        hf_state_dict_to_interleaved({"encoder.h.0.ln_1.weight": torch.ones(3)}, n_layers=1)
    assert model.embed_action.weight.shape == (A, 32)


# ---------------------------------------------------------------------------------------------------- data


def test_next_rtg_target_and_rtg_from_rewards():
    rtg = torch.tensor([[5.0, 4.0, 2.0, 9.0]])
    mask = torch.tensor([[True, True, True, False]])
    torch.testing.assert_close(next_rtg_target(rtg, mask), torch.tensor([[4.0, 2.0, 0.0, 0.0]]))
    torch.testing.assert_close(next_rtg_target(rtg, None, rewards=torch.tensor([[1.0, 2.0, 0.5, 0.0]])),
                               torch.tensor([[4.0, 2.0, 1.5, 9.0]]))
    np.testing.assert_allclose(rtg_from_rewards(10.0, [1.0, 2.0, 3.0], 3), [[10.0, 9.0, 7.0]])
    np.testing.assert_allclose(rtg_from_rewards([1.0, 2.0], None, 2), [[1.0, 1.0], [2.0, 2.0]])


def test_dataset_loader_and_helpers():
    N, T = 10, 5
    rng = np.random.default_rng(0)
    ds = SequenceDataset(rng.normal(size=(N, T, S)), rng.integers(0, A, (N, T)), rng.normal(size=(N, T)),
                         np.ones((N, T), bool))
    item = ds[3]
    assert set(item) == {"states", "actions", "rtg", "mask"} and item["actions"].dtype == torch.long
    with pytest.raises(ValueError, match="rtg"):
        SequenceDataset(np.zeros((N, T, S)), np.zeros((N, T)), np.zeros((N, T + 1)), np.ones((N, T)))
    order = lambda seed: torch.cat([b["rtg"][:, 0] for b in make_loader(ds, 4, shuffle=True, seed=seed)])  # noqa: E731
    torch.testing.assert_close(order(3), order(3))
    assert not torch.equal(order(3), order(4))
    w = balanced_class_weights([[0, 0, 0, 1]], n_classes=3)
    np.testing.assert_allclose(w, [4 / 9, 4 / 3, 0.0], rtol=1e-6)
    assert warmup_cosine(0, 10, 100) == pytest.approx(0.1) and warmup_cosine(9, 10, 100) == pytest.approx(1.0)
    assert warmup_cosine(100, 10, 100, min_lr_ratio=0.1) == pytest.approx(0.1)


def _synthetic(n: int, T: int = 16, seed: int = 0) -> SequenceDataset:
    """Action = bucket of (s_0 + 0.9 * g), g = +-1 the sequence's return-to-go: learnable, and RTG-dependent."""
    rng = np.random.default_rng(seed)
    states = rng.normal(size=(n, T, S)).astype(np.float32)
    g = rng.choice([-1.0, 1.0], size=(n, 1))
    rtg = np.repeat(g, T, axis=1)
    score = states[..., 0] + 0.9 * rtg
    actions = np.digitize(-score, [-1.2, -0.4, 0.4, 1.2])  # high score -> class 0 (STRONG_BUY)
    mask = np.ones((n, T), bool)
    mask[: n // 4, :3] = False  # some left-padded windows
    return SequenceDataset(states, actions, rtg, mask, rewards=np.zeros((n, T)))


# ---------------------------------------------------------------------------------------------------- training


def test_training_lowers_the_loss_and_learns_the_rtg_dependence(tmp_path):
    torch.manual_seed(0)
    model = TraderDecisionTransformer(**{**TINY, "dropout": 0.0})
    train, val = _synthetic(384, seed=0), _synthetic(128, seed=1)
    trainer = TraderTrainer(model, device="cpu", learning_rate=3e-3, warmup_steps=10, seed=0)
    before = trainer.validate(make_loader(val, 64))
    history = trainer.fit(make_loader(train, 32, shuffle=True, seed=0), make_loader(val, 64), epochs=6, patience=6,
                          checkpoint_dir=tmp_path, normalization={"state_mean": np.zeros(S), "rtg_scale": 1.0})
    assert list(history.columns) == ["epoch", "train_loss", "val_loss", "val_action_ce", "val_accuracy",
                                     "val_macro_f1", "val_rtg_mse", "lr", "seconds"]
    after = trainer.validate(make_loader(val, 64))
    assert after["loss"] < 0.6 * before["loss"], (before["loss"], after["loss"])
    assert after["accuracy"] > 0.6 and after["macro_f1"] > 0.45, after
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    assert after["confusion_matrix"].shape == (A, A) and after["confusion_matrix"].sum() == after["n_steps"]
    assert after["loss"] == pytest.approx(history["val_loss"].min(), rel=1e-5)  # best weights restored
    # steerable: flipping the return-to-go flips the bucket boundary, so accuracy on the true labels drops
    flipped = SequenceDataset(val.states, val.actions, -val.rtg, val.mask, rewards=val.rewards)
    assert trainer.validate(make_loader(flipped, 64))["accuracy"] < after["accuracy"] - 0.15
    ckpt = torch.load(tmp_path / BEST_CHECKPOINT)  # default weights_only=True
    assert ckpt["epoch"] == trainer.best_epoch and ckpt["normalization"]["state_mean"] == [0.0] * S


def test_early_stopping_on_a_non_improving_setup(tmp_path):
    model = _tiny(TraderDecisionTransformer)
    data = _synthetic(64, T=8)
    trainer = TraderTrainer(model, device="cpu", learning_rate=0.0, warmup_steps=1, seed=0)  # weights never move
    history = trainer.fit(make_loader(data, 32), make_loader(data, 32), epochs=50, patience=3, checkpoint_dir=tmp_path)
    assert trainer.stopped_early and len(history) == 1 + 3 and trainer.best_epoch == 1
    assert history["val_loss"].nunique() == 1
    assert torch.load(tmp_path / BEST_CHECKPOINT)["epoch"] == 1


def test_trainer_class_weights_and_interleaved_variant():
    model = _tiny(InterleavedDecisionTransformer)
    data = _synthetic(32, T=8)
    w = balanced_class_weights(data.actions.numpy(), data.mask.numpy())
    trainer = TraderTrainer(model, device="cpu", learning_rate=1e-3, warmup_steps=1, class_weights=w, seed=0)
    history = trainer.fit(make_loader(data, 16), make_loader(data, 16), epochs=2, patience=2)
    assert len(history) == 2 and np.isfinite(history["val_loss"]).all()


# ---------------------------------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("cls", VARIANTS)
def test_checkpoint_roundtrip_gives_identical_predictions(cls, tmp_path):
    model = _tiny(cls)
    norm = {"features": ["a", "b"], "mean": np.arange(S, dtype=np.float64), "std": pd.Series({"a": 1.5}),
            "rtg_scale": np.float32(100.0)}
    path = save_checkpoint(tmp_path / "m" / BEST_CHECKPOINT, model, norm, epoch=3,
                           metrics={"accuracy": 0.5, "confusion_matrix": np.eye(A, dtype=int)})
    assert [p.name for p in path.parent.iterdir()] == [BEST_CHECKPOINT]  # no temporary file left behind
    raw = torch.load(path)  # torch >= 2.6 default: weights_only=True
    assert set(raw["model_state_dict"]) == set(model.state_dict())
    assert raw["normalization"]["mean"] == list(range(S)) and raw["normalization"]["std"] == {"a": 1.5}
    assert raw["config"]["d_model"] == 32 and raw["format_version"] == 1 and raw["epoch"] == 3
    inf = TraderInference(model, device="cpu")
    again = TraderInference.from_checkpoint(path, device="cpu")
    assert type(again.model) is cls and again.normalization["rtg_scale"] == 100.0
    states = np.random.default_rng(0).normal(size=(2, 9, S))
    for kw in (dict(), dict(actions=np.zeros((2, 9), int), rewards=np.ones((2, 9)))):
        a, b = inf.predict(states, 1.5, **kw), again.predict(states, 1.5, **kw)
        sa, sb = inf.model.state_dict(), again.model.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)  # the weights are restored bit for bit
        for key in a:  # outputs are BLAS results: equal up to rounding (discrete ones exactly)
            if np.issubdtype(np.asarray(a[key]).dtype, np.floating):
                np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6)
            else:
                np.testing.assert_array_equal(a[key], b[key])
    reloaded, meta = load_checkpoint(path)
    assert meta["metrics"]["confusion_matrix"][0] == [1, 0, 0, 0, 0] and not reloaded.training


# ---------------------------------------------------------------------------------------------------- inference


def test_predict_with_target_rtg():
    inf = TraderInference(_tiny(), device="cpu")
    states = np.random.default_rng(1).normal(size=(7, S))
    out = inf.predict(states, 2.0, rewards=np.full(7, 0.5))
    np.testing.assert_allclose(out["rtg"], 2.0 - 0.5 * np.arange(7))
    assert out["action_logits"].shape == (7, A) and out["rtg_pred"].shape == (7,)
    np.testing.assert_allclose(out["action_probs"].sum(-1), 1.0, rtol=1e-5)
    held = inf.predict(states, 2.0)
    np.testing.assert_allclose(held["rtg"], 2.0)
    # own actions fed back: each fed action is the argmax at its step, and the batch path agrees
    np.testing.assert_array_equal(held["actions"], held["predicted_actions"])
    batch = inf.predict(np.stack([states, states]), np.array([2.0, 2.0]))
    np.testing.assert_allclose(batch["action_logits"][1], held["action_logits"], atol=1e-6)
    with pytest.raises(ValueError, match="rollout"):
        inf.predict(np.zeros((17, S)), 1.0)


@pytest.mark.parametrize("cls", VARIANTS)
def test_rollout_feeds_back_its_own_actions(cls):
    inf = TraderInference(_tiny(cls, max_len=8), device="cpu")
    states = np.random.default_rng(2).normal(size=(8, S))
    roll = inf.rollout(states, target_rtg=1.0)
    np.testing.assert_array_equal(roll["actions"], roll["action_logits"].argmax(-1))
    # replaying those actions as the past gives the same logits: the rollout conditioned on its own actions
    replay = inf.predict(states, 1.0, actions=roll["actions"])
    np.testing.assert_allclose(replay["action_logits"], roll["action_logits"], atol=1e-5)
    np.testing.assert_allclose(replay["rtg_pred"], roll["rtg_pred"], atol=1e-5)
    np.testing.assert_array_equal(inf.predict(states, 1.0)["actions"], roll["actions"])
    # longer than the context: a sliding window of max_len steps; realised rewards update the RTG
    long_states = np.random.default_rng(3).normal(size=(20, S))
    rewards = lambda t, a: 0.1 * (a - 2)  # noqa: E731
    roll = inf.rollout(long_states, target_rtg=1.0, reward_fn=rewards)
    np.testing.assert_allclose(roll["rewards"], 0.1 * (roll["actions"] - 2))
    np.testing.assert_allclose(roll["rtg"][1:], 1.0 - np.cumsum(roll["rewards"])[:-1], atol=1e-6)
    assert np.isnan(inf.rollout(long_states, 1.0)["rewards"]).all()
    sampled = [inf.rollout(long_states, 1.0, greedy=False, seed=5)["actions"] for _ in range(2)]
    np.testing.assert_array_equal(*sampled)
