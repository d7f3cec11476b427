"""GRPO on this CPU: generations per second and RL steps per second for the default model of notebook 07.

Usage: python benchmarks/rlhf.py [--models-dir DIR] [--steps 4] [--batch 16]

The model is notebook 06's SFT model when the work directory has one (``models/llm``), else a randomly
initialised model of the same default architecture (``workbench.llm.TinyConfig()``: 4 layers, hidden 256)
with a tokenizer trained on synthetic analyses; its rollouts are forced to the full length, so the timing
is that of the longest analyses. GRPO uses the CPU sizes of ``rlhf_config.yaml`` and notebook 07 (4 prompts
x 4 completions per step, 240 tokens, the process reward of the verifier), run twice on the same prompts: with
trl's own rollouts (``WORKBENCH_FASTGEN=0``, transformers ``generate`` on the peft model, the path before issue
17) and with the fast decoder; the speed-up of the RL step is printed. Also in the same run: generating the same
number of completions alone, so the ratio says how much of an RL step is rollout.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("WORKBENCH_PROGRESS", "0")

import torch  # noqa: E402
from timing import best_of  # noqa: E402

import workbench  # noqa: F401
from workbench import config
from workbench.analysis import load_config
from workbench.llm import GenerationSettings
from workbench.llm import data as D
from workbench.llm import generate, load_policy
from workbench.llm import model as M
from workbench.rlhf.curriculum import curriculum
from workbench.rlhf.grpo import rl_settings, train_grpo
from workbench.rlhf.rewards import GRPOReward
from workbench.rlhf.study import MissingInput, find_sft, rl_pool


def default_model(models_dir: Path, work: Path) -> tuple[str, list[str], str, bool]:
    """``(base, adapters, description, forced_length)``: notebook 06's SFT model, or a random one of its size."""
    try:
        base, adapters = find_sft(models_dir)
        return base, adapters, f"notebook 06's SFT model ({base} + {adapters[0]})", False
    except MissingInput:
        pts = D.synthetic_decision_points(300, seed=0)
        ds = D.build_sft_dataset(pts)
        tok = M.train_tokenizer(D.pretraining_corpus(ds), vocab_size=M.TinyConfig().vocab_size)
        model = M.build_tiny_model(tok, M.TinyConfig(), seed=0)
        M.save_pretrained(model, tok, work / "tiny")
        return str(work / "tiny"), [], "a random model of the default size (no notebook 06 model found)", True


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models-dir", default=None, help="default: the work directory's models/")
    ap.add_argument("--steps", type=int, default=4, help="GRPO steps timed")
    ap.add_argument("--batch", type=int, default=16, help="prompts per generation batch")
    ap.add_argument("--max-new-tokens", type=int, default=240)
    a = ap.parse_args()
    torch.manual_seed(0)
    work = Path(tempfile.mkdtemp(prefix="bench-rlhf-"))
    base, adapters, what, _ = default_model(Path(a.models_dir) if a.models_dir else config.paths().models, work)
    model, tok = load_policy(base, adapters)
    n_par = sum(p.numel() for p in model.parameters())
    print(f"model: {what}; {n_par / 1e6:.2f} M parameters; torch threads {torch.get_num_threads()}")
    pts = D.synthetic_decision_points(400, seed=1)
    pts, _ = D.restyle(pts, None, M.task_of(model).prompt_style)  # ask the model the way it was trained
    prompts = list(pts["prompt"].iloc[: a.batch])
    g = GenerationSettings(max_new_tokens=a.max_new_tokens, batch_size=a.batch, temperature=1.0, top_p=1.0)
    secs, texts = best_of(lambda: generate(model, tok, prompts, g), repeat=2)
    n_tok = sum(min(len(tok(t, add_special_tokens=False)["input_ids"]), a.max_new_tokens) for t in texts)
    print(f"generation: {len(texts)} analyses in {secs:.2f} s = {len(texts) / secs:.2f} analyses/s, "
          f"{n_tok / secs:.0f} new tokens/s (batch {a.batch}, up to {a.max_new_tokens} tokens, mean "
          f"{n_tok / len(texts):.0f})")
    cfg = load_config(profile="cpu")
    s = rl_settings(cfg, "cpu", learning_rate=2e-4, max_steps=a.steps, seed=0)
    per_step = s.prompts_per_step * s.num_generations
    secs_roll, _ = best_of(lambda: generate(model, tok, list(pts["prompt"].iloc[:per_step]),
                                            GenerationSettings(max_new_tokens=s.max_completion_length,
                                                               batch_size=per_step, temperature=s.temperature,
                                                               top_p=1.0)), repeat=1)
    model = None  # free it before training
    rl_prompts = curriculum(rl_pool(pts, 600_000), cfg, n=s.prompts_per_step * a.steps, seed=0)
    per_path = {}
    for env, label in (("0", "trl's rollouts (transformers generate on the peft model: the path before issue 17)"),
                       ("1", "fast rollouts (workbench.llm.fastgen over the effective LoRA weights)")):
        os.environ["WORKBENCH_FASTGEN"] = env
        reward = GRPOReward("process-only", cfg)
        t0 = time.perf_counter()
        res = train_grpo(base, adapters, rl_prompts, reward, s)
        total = time.perf_counter() - t0
        h = res.history
        lengths = h["completions/mean_length"].dropna() if "completions/mean_length" in h else []
        per_path[env] = res.seconds / res.steps
        print(f"GRPO, {label}: {res.steps} RL steps ({s.prompts_per_step} prompts x {s.num_generations} completions, "
              f"up to {s.max_completion_length} tokens, mean "
              f"{float(lengths.mean()) if len(lengths) else float('nan'):.0f}) in {res.seconds:.1f} s = "
              f"{res.steps / res.seconds:.3f} RL steps/s ({res.seconds / res.steps:.1f} s per step; "
              f"{total - res.seconds:.1f} s loading and set-up; fast rollouts {res.info.get('fast_rollouts', 0)})")
    os.environ["WORKBENCH_FASTGEN"] = "1"
    print(f"GRPO step speed-up, fast rollouts vs trl's: {per_path['0'] / per_path['1']:.2f}x (same run, same prompts)")
    print(f"reference: generating one step's {per_step} rollouts alone takes {secs_roll:.2f} s; a fast RL step costs "
          f"{per_path['1'] / secs_roll:.1f}x that (rollouts + reward + KL reference + backward)")
    if os.environ.get("KEEP_BENCH_DIR") is None:
        import shutil

        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
