"""Decision Transformer training throughput: our models versus Hugging Face's, on this CPU, in one run.

Usage: python benchmarks/dt.py [--batch 32] [--seq 128] [--steps 5] [--warmup 1] [--threads N]

Times full training steps (forward, loss, backward, gradient clipping, AdamW step) at equal width and
depth (d_model 128, 6 layers, 8 heads) and batch size on random windows of ``--seq`` steps:

* ``TraderDecisionTransformer`` (ours, one token per step: T tokens),
* ``InterleavedDecisionTransformer`` (ours, the paper's layout: 3T tokens),
* ``transformers.DecisionTransformerModel`` (3T tokens; fed one-hot actions, its action outputs used
  as logits).

The loss is the trainer's, ``CE(actions) + 0.1 * MSE(next RTG)``, for all three, in the same plain loop,
so the numbers compare the models, not the loops. Dropout is on (training mode) in all three. After
``--warmup`` discarded steps each, the models' steps are timed in alternation and the median seconds per
step is reported, so a varying load from other processes affects all three alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F

import workbench  # noqa: F401  (sets the Hugging Face offline flags before transformers is imported)
from workbench.twin import InterleavedDecisionTransformer, TraderDecisionTransformer, next_rtg_target

STATE_DIM, N_ACTIONS = 17, 5


Forward = Callable[[dict[str, torch.Tensor]], tuple[torch.Tensor, torch.Tensor]]  # batch -> (logits, rtg_pred)


def training_step(model: torch.nn.Module, forward: Forward, batch: dict[str, torch.Tensor]) -> Callable[[], None]:
    """One full training step of ``model`` (forward, loss, backward, clipping, AdamW), as a closure."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    target = next_rtg_target(batch["rtg"], batch["mask"])

    def step() -> None:
        logits, rtg_pred = forward(batch)  # (B, T, A), (B, T)
        loss = F.cross_entropy(logits.reshape(-1, N_ACTIONS), batch["actions"].reshape(-1)) + 0.1 * F.mse_loss(
            rtg_pred, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return step


def time_round_robin(steps: dict[str, Callable[[], None]], n: int, warmup: int) -> dict[str, float]:
    """Median seconds per step of each closure, timed in alternation (A, B, C, A, B, C, ...).

    Alternating spreads any change in the machine's load (other processes) over all models alike, so
    the ratios stay meaningful on a shared CPU; the median drops isolated spikes.
    """
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(n):
        for name, step in steps.items():
            t0 = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128, help="steps per window (HF and interleaved: 3x tokens)")
    ap.add_argument("--steps", type=int, default=5, help="timed training steps per model")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import DecisionTransformerConfig, DecisionTransformerModel

    B, T = args.batch, args.seq
    g = torch.Generator().manual_seed(0)
    batch = {"states": torch.randn(B, T, STATE_DIM, generator=g), "rtg": torch.randn(B, T, generator=g),
             "actions": torch.randint(0, N_ACTIONS, (B, T), generator=g), "mask": torch.ones(B, T, dtype=torch.bool)}
    width = dict(d_model=128, n_layers=6, n_heads=8, dropout=0.1, max_len=T)

    torch.manual_seed(0)
    ours = TraderDecisionTransformer(state_dim=STATE_DIM, action_dim=N_ACTIONS, **width)
    inter = InterleavedDecisionTransformer(state_dim=STATE_DIM, action_dim=N_ACTIONS, max_ep_len=T, **width)
    hf_cfg = DecisionTransformerConfig(state_dim=STATE_DIM, act_dim=N_ACTIONS, hidden_size=128, n_layer=6, n_head=8,
                                       max_ep_len=T, action_tanh=False, resid_pdrop=0.1, embd_pdrop=0.1,
                                       attn_pdrop=0.1, bos_token_id=None, eos_token_id=None)
    hf = DecisionTransformerModel(hf_cfg)
    onehot = F.one_hot(batch["actions"], N_ACTIONS).float()
    timesteps = torch.arange(T).expand(B, T)

    def fwd_ours(m: torch.nn.Module) -> Forward:
        def f(b: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
            out = m(b["states"], b["rtg"], b["actions"], b["mask"])
            return out["action_logits"], out["rtg_pred"]
        return f

    def fwd_hf(b: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        out = hf(states=b["states"], actions=onehot, returns_to_go=b["rtg"][..., None], timesteps=timesteps,
                 attention_mask=b["mask"].long(), return_dict=True)
        return out.action_preds, out.return_preds[..., 0]

    hf_unused = hf.encoder.wte.weight.numel() + (hf_cfg.n_positions - 1) * hf_cfg.hidden_size
    rows = [
        ("ours: TraderDecisionTransformer", ours, fwd_ours(ours), T, sum(p.numel() for p in ours.parameters()), 0),
        ("ours: InterleavedDecisionTransformer", inter, fwd_ours(inter), 3 * T,
         sum(p.numel() for p in inter.parameters()), 0),
        ("HF transformers.DecisionTransformerModel", hf, fwd_hf, 3 * T, sum(p.numel() for p in hf.parameters()),
         hf_unused),
    ]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {B}, {T} steps per window, "
          f"d_model 128, 6 layers, 8 heads; {args.warmup} warm-up + {args.steps} timed training steps each "
          f"(round robin, median)")
    print(f"{'model':<42}{'tokens':>7}{'params':>11}{'(unused)':>10}{'s/step':>9}{'steps/s':>9}")
    sec = time_round_robin({name: training_step(model, fwd, batch) for name, model, fwd, *_ in rows}, args.steps,
                           args.warmup)
    speed = {}
    for name, model, fwd, tokens, n_params, unused in rows:
        speed[name] = 1.0 / sec[name]
        print(f"{name:<42}{tokens:>7}{n_params:>11,}{unused:>10,}{sec[name]:>9.3f}{speed[name]:>9.2f}")
    hf_speed = speed[rows[2][0]]
    print(f"ratio TraderDecisionTransformer / HF: {speed[rows[0][0]] / hf_speed:.2f}x the training steps per second")
    print(f"ratio InterleavedDecisionTransformer / HF (same architecture): {speed[rows[1][0]] / hf_speed:.2f}x")
    print("(unused) = HF parameters its forward never reads: the GPT-2 token embedding and position rows >= 1")


if __name__ == "__main__":
    main()
