"""Fast batched decoding for Llama-architecture causal LMs, with optional grounding on the facts.

Why a hand-written decoder: on a CPU, ``transformers``' ``generate`` spends most of each step in Python
(logits processors, stopping criteria, cache bookkeeping, per-layer module dispatch) -- for a few-million-
parameter model the arithmetic is a small part of it (profiled in ``benchmarks/llm.py``: a manual loop over the
HF forward with its ``DynamicCache`` is only 1.2x faster than ``generate``). :class:`FastDecoder` reads the *same
weights* once, fuses Q/K/V and gate/up into one matrix each, preallocates a static KV cache for the whole batch
and runs prefill + one-token steps with ``scaled_dot_product_attention`` and a padding mask; sampling
(temperature, nucleus top-p) is done with tensors. Its logits equal the HF model's within float tolerance
(``tests/test_llm_fastgen.py``). Models that are not Llama-architecture (or are quantised / wrapped) fall
back to ``generate`` (:func:`supports`).

**Grounding** (:class:`Grounder`): when the text written so far ends with a phrase after which the analysis
restates a fact ("RSI(14) is", "fair value of", "Support", ...), the next tokens are *forced* to the fact's
value as the analyst formats it, with the unit and punctuation that follow it; numbers derived from the
model's own earlier numbers (the risk in USDC and its share of capital, the size and stop loss of step 4
restated from step 2) are forced from those.
Labels (overbought, underpriced, within...), the signal, the confidence and the take profit stay the
model's. Only rows whose last token can end a trigger (a precomputed boolean table over the vocabulary) are
inspected as text, so the per-step Python work is a few rows at most.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from workbench.analysis.facts import Facts


# ------------------------------------------------------------------------------------------------
# Grounding
# ------------------------------------------------------------------------------------------------
def _num(pattern: str, s: str) -> float | None:
    m = re.search(pattern, s)
    return float(m.group(1)) if m else None


_N = r"([+-]?\d+(?:\.\d+)?)"


def _last_step(text: str) -> str:
    """Text of the step being written (after the last ``Step k -``)."""
    i = text.rfind("Step ")
    return text[i:] if i >= 0 else text


def _step2(text: str) -> dict[str, float] | None:
    """Side, size, entry and stop of the sized trade the model wrote in step 2, if any."""
    m = re.search(r"(Buying|Selling)\s+" + _N + r"\s+shares[^.]*?at\s+" + _N + r"\s+with a stop at\s+" + _N, text)
    if not m:
        return None
    return {"buy": float(m.group(1) == "Buying"), "size": float(m.group(2)), "entry": float(m.group(3)),
            "stop": float(m.group(4))}


def _value_rules(f: Facts) -> list[tuple[re.Pattern[str], Callable[[str], str | None]]]:
    """``(trigger at the end of the text, value given the text so far)`` pairs for one decision point.

    Values are formatted as :class:`workbench.analysis.Analyst` writes them, each with its leading space."""
    gap_c = f"{abs(f.fair - f.up_mid) * 100:.0f}"

    def entry(text: str) -> str | None:
        side = re.search(r"(Buying|Selling)\s+\d+\s+shares of Up at$", text)
        if not side:
            return None
        return f" {f.up_ask if side.group(1) == 'Buying' else f.up_bid:.2f} with a stop at"

    def risk(text: str) -> str | None:
        t = _step2(_last_step(text))
        return None if t is None else f" {t['size'] * abs(t['entry'] - t['stop']):.2f} USDC,"

    def risk_share(text: str) -> str | None:
        r = _num(r"risks\s+" + _N + r"\s+USDC,$", text)
        return None if r is None or f.capital <= 0 else f" {100 * r / f.capital:.1f}% of capital,"

    def size(text: str) -> str | None:
        step = _last_step(text)
        if re.search(r"\bHOLD\b", step):
            return " 0 shares,"
        t = _step2(text)
        return None if t is None else f" {t['size']:.0f} shares,"

    def stop(text: str) -> str | None:
        step = _last_step(text)
        if re.search(r"\bHOLD\b", step):
            return f" {round(f.up_mid, 2):.2f},"
        t = _step2(text)
        return None if t is None else f" {t['stop']:.2f},"

    # each number carries the unit and punctuation the analyst writes right after it: a sampled continuation
    # could otherwise run a digit into the forced number ("by 1" + "1 cents") or drop its unit and derail the
    # sentence ("risks 1.32" + "% since the market opened"), which lost whole steps in notebook 06's evaluation
    move = f" {'up' if f.btc_move_pct >= 0 else 'down'} {abs(f.btc_move_pct):.2f}% since the market opened,"
    const = {r"RSI\(14\) is": f" {f.rsi:.1f},", r"MACD histogram is": f" {f.macd_bp:+.1f} bp of price,",
             r"Bollinger width is": f" {f.bb_width_pct:.2f}%,", r"Volatility is": f" {f.vol_pct:.3f}% per minute,",
             r"BTC is": move, r"market opened,": f" {f.minutes_left:.1f} minutes left.",
             r"Up trades at": f" {f.up_mid:.2f} against a fair value of", r"fair value of": f" {f.fair:.2f},",
             r"priced by": f" {gap_c} cents.", r"Support": f" {f.range_low:.2f}, resistance",
             r"resistance": f" {f.range_high:.2f}."}
    rules: list[tuple[re.Pattern[str], Callable[[str], str | None]]] = [
        (re.compile(k + "$"), (lambda v: (lambda _t: v))(v)) for k, v in const.items()]
    rules += [(re.compile(r"shares of Up at$"), entry), (re.compile(r"risks$"), risk),
              (re.compile(r"USDC,$"), risk_share), (re.compile(r"size$"), size), (re.compile(r"stop loss$"), stop)]
    return rules


#: Last characters of the trigger phrases (a token that ends in none of them cannot end a trigger).
_TRIGGER_ENDS = set("sftey,")


class Grounder:
    """Forces the numbers that restate a fact (or the model's own earlier numbers) during decoding.

    Parameters
    ----------
    tokenizer : the model's tokenizer (values are tokenised with it, without special tokens).
    facts : one :class:`Facts` per row of the batch, in order.
    """

    def __init__(self, tokenizer: Any, facts: Sequence[Facts]) -> None:
        self.tok = tokenizer
        self.rules = [_value_rules(f) for f in facts]
        self.fired: list[set[int]] = [set() for _ in facts]  # each rule fires at most once per row
        self.forced_tokens = 0

    def candidate_table(self, vocab_size: int) -> torch.Tensor:
        """``(vocab,)`` bool: tokens whose text can end a trigger phrase."""
        out = torch.zeros(vocab_size, dtype=torch.bool)
        for i in range(min(vocab_size, len(self.tok))):
            s = self.tok.decode([i]).rstrip(" ")
            out[i] = bool(s) and s[-1] in _TRIGGER_ENDS
        return out

    def forced(self, row: int, text: str) -> list[int] | None:
        """Token ids to force next for ``row`` given its text so far, or None."""
        trail = text.endswith(" ")
        t = text.rstrip(" ")
        for k, (pat, value) in enumerate(self.rules[row]):
            if k in self.fired[row] or not pat.search(t):
                continue
            v = value(t)
            if v is None:
                continue
            self.fired[row].add(k)
            ids = self.tok(v[1:] if trail else v, add_special_tokens=False)["input_ids"]
            self.forced_tokens += len(ids)
            return list(ids)
        return None


class GroundingProcessor:
    """The :class:`Grounder` as a ``transformers`` ``LogitsProcessor`` (for models :class:`FastDecoder` cannot
    run): a forced token gets all the probability mass.

    Parameters
    ----------
    grounder : the batch's grounder.
    tokenizer : decodes the generated ids.
    prompt_len : length of the (padded) prompt in tokens; generated text starts after it.
    """

    def __init__(self, grounder: Grounder, tokenizer: Any, prompt_len: int) -> None:
        self.g, self.tok, self.k = grounder, tokenizer, prompt_len
        self.queues: list[list[int]] | None = None
        self.cand: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.queues is None:
            self.queues = [[] for _ in range(input_ids.shape[0])]
            self.cand = self.g.candidate_table(scores.shape[-1])
        assert self.cand is not None
        if input_ids.shape[1] > self.k:
            last = input_ids[:, -1].clamp(0, self.cand.numel() - 1).cpu()
            for r in torch.nonzero(self.cand[last]).flatten().tolist():
                if not self.queues[r]:
                    f = self.g.forced(r, self.tok.decode(input_ids[r, self.k:].tolist(), skip_special_tokens=True))
                    if f:
                        self.queues[r] = f
        for r, q in enumerate(self.queues):
            if q:
                t = q.pop(0)
                scores[r] = float("-inf")
                scores[r, t] = 0.0
        return scores


# ------------------------------------------------------------------------------------------------
# The decoder
# ------------------------------------------------------------------------------------------------
def _unwrap(model: Any) -> Any:
    """The transformers model inside a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _linear(mod: Any) -> torch.nn.Linear | None:
    """The ``nn.Linear`` holding the layer's base weight: the layer itself or a peft LoRA layer's base layer
    (None for anything else)."""
    if type(mod) is torch.nn.Linear:
        return mod
    base = getattr(mod, "base_layer", None)
    if type(base) is torch.nn.Linear and hasattr(mod, "lora_A") and not getattr(mod, "fan_in_fan_out", False):
        return base
    return None


def effective_weight(mod: Any) -> torch.Tensor:
    """``(out, in)`` weight the layer applies at inference: ``W``, plus ``scaling x B A`` for each active LoRA
    adapter not merged into ``W`` (Hu et al. 2021; dropout is off at inference). A new tensor for LoRA layers,
    so the trainable model is never modified."""
    lin = _linear(mod)
    if lin is None:
        raise TypeError(f"not a linear layer: {type(mod).__name__}")
    w = lin.weight.detach()
    if lin is mod or getattr(mod, "merged", False) or getattr(mod, "disable_adapters", False):
        return w
    out = w.clone()
    for name in getattr(mod, "active_adapters", []):
        if name in mod.lora_A:
            a, b = mod.lora_A[name].weight.detach(), mod.lora_B[name].weight.detach()
            out += mod.scaling[name] * (b @ a).to(out.dtype)
    return out


def supports(model: Any) -> bool:
    """Whether :class:`FastDecoder` can run ``model``: an unquantised Llama causal LM, plain or with peft LoRA
    adapters (read as their effective weights, :func:`effective_weight`)."""
    m = _unwrap(model)
    cfg = getattr(m, "config", None)
    if cfg is None or getattr(cfg, "model_type", None) != "llama" or not hasattr(m, "model"):
        return False
    if getattr(m, "is_quantized", False) or getattr(cfg, "quantization_config", None) is not None:
        return False
    try:
        lin = m.model.layers[0].self_attn.q_proj
    except AttributeError:
        return False
    return _linear(lin) is not None and getattr(cfg, "hidden_act", "silu") == "silu"


def merged_decoder(model: Any, linear_dtype: torch.dtype = torch.float32) -> "FastDecoder":
    """A :class:`FastDecoder` over ``model``'s current effective weights (LoRA adapters added to copies of the base
    weights, :func:`effective_weight`; the trainable model is not touched)."""
    return FastDecoder(model, linear_dtype, copy=True)


@dataclass
class _Layer:
    ln1: torch.Tensor
    qkv: torch.Tensor
    o: torch.Tensor
    ln2: torch.Tensor
    gate_up: torch.Tensor
    down: torch.Tensor


class FastDecoder:
    """Prefill + incremental decoding over a Llama model's weights (read once; the model is not modified).

    Parameters
    ----------
    model : a :class:`transformers.LlamaForCausalLM` (see :func:`supports`).
    linear_dtype : dtype of the projection and MLP weights. ``torch.float32`` (default) reproduces the model's
        logits; ``torch.bfloat16`` is reduced-precision inference (about 2.5x faster matmuls on CPUs with
        AVX-512 BF16, slower elsewhere): norms, attention and the KV cache stay float32, logits are float32.
    """

    def __init__(self, model: Any, linear_dtype: torch.dtype = torch.float32, copy: bool = False) -> None:
        if not supports(model):
            raise TypeError("FastDecoder needs a Llama causal LM (adapters merged); use transformers' generate for "
                            "this model")
        model = _unwrap(model)
        cfg = model.config
        m = model.model
        self.model = model

        def w(mod: Any) -> torch.Tensor:
            t = effective_weight(mod)
            shared = t.data_ptr() == _linear(mod).weight.data_ptr()  # type: ignore[union-attr]
            return t.clone() if copy and shared else t

        self.n_heads = cfg.num_attention_heads
        self.n_kv = getattr(cfg, "num_key_value_heads", None) or self.n_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.n_heads
        self.eps = float(cfg.rms_norm_eps)
        self.scale = self.head_dim ** -0.5
        self.max_pos = int(cfg.max_position_embeddings)
        self.embed = m.embed_tokens.weight.detach().clone() if copy else m.embed_tokens.weight.detach()
        self.norm = m.norm.weight.detach().clone() if copy else m.norm.weight.detach()
        self.lm_head = w(model.lm_head) if _linear(model.lm_head) is not None else self.embed
        self.rotary = m.rotary_emb
        self.linear_dtype = linear_dtype
        ld = linear_dtype
        self.lm_head = self.lm_head.to(ld)
        self.layers = []
        for L in m.layers:
            a, p = L.self_attn, L.mlp
            self.layers.append(_Layer(
                L.input_layernorm.weight.detach().clone(),
                torch.cat([w(a.q_proj), w(a.k_proj), w(a.v_proj)]).to(ld),
                w(a.o_proj).to(ld), L.post_attention_layernorm.weight.detach().clone(),
                torch.cat([w(p.gate_proj), w(p.up_proj)]).to(ld), w(p.down_proj).to(ld)))
        self.bias_free = all(getattr(_linear(getattr(L.self_attn, n)), "bias", None) is None
                             for L in m.layers for n in ("q_proj", "k_proj", "v_proj", "o_proj"))
        if not self.bias_free:
            raise TypeError("FastDecoder supports bias-free attention projections only")

    def _lin(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        if w.dtype == x.dtype:
            return F.linear(x, w)
        return F.linear(x.to(w.dtype), w).to(x.dtype)

    def _rms(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * w

    @staticmethod
    def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        h = x.shape[-1] // 2
        rot = torch.cat([-x[..., h:], x[..., :h]], dim=-1)
        return x * cos + rot * sin

    def forward(self, ids: torch.Tensor, pos: torch.Tensor, cache_k: list[torch.Tensor], cache_v: list[torch.Tensor],
                start: int, key_mask: torch.Tensor, last_only: bool = True) -> torch.Tensor:
        """Logits ``(B, V)`` of the last position (``(B, T, V)`` of all when not ``last_only``) for tokens ``ids`` ``(B, T)`` at positions ``pos`` ``(B, T)``, written into
        the cache at slots ``start .. start+T``; ``key_mask`` ``(B, 1, T, start+T)`` bool (True: attend)."""
        B, T = ids.shape
        x = F.embedding(ids, self.embed)
        cos, sin = self.rotary(x, pos)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        H, KV, D = self.n_heads, self.n_kv, self.head_dim
        end = start + T
        for li, L in enumerate(self.layers):
            h = self._rms(x, L.ln1)
            qkv = self._lin(h, L.qkv)
            q, k, v = qkv.split([H * D, KV * D, KV * D], dim=-1)
            q = self._rotate(q.view(B, T, H, D).transpose(1, 2), cos, sin)
            k = self._rotate(k.view(B, T, KV, D).transpose(1, 2), cos, sin)
            cache_k[li][:, :, start:end] = k
            cache_v[li][:, :, start:end] = v.view(B, T, KV, D).transpose(1, 2)
            kk, vv = cache_k[li][:, :, :end], cache_v[li][:, :, :end]
            if KV != H:
                kk, vv = kk.repeat_interleave(H // KV, 1), vv.repeat_interleave(H // KV, 1)
            if T == 1:  # one query per row: two batched matmuls beat SDPA's masked path by ~10x on CPU
                sc = torch.matmul(q, kk.transpose(-1, -2)) * self.scale
                att = torch.matmul(torch.softmax(sc.masked_fill(~key_mask, float("-inf")), -1), vv)
            else:
                att = F.scaled_dot_product_attention(q, kk, vv, attn_mask=key_mask)
            x = x + self._lin(att.transpose(1, 2).reshape(B, T, H * D), L.o)
            h = self._rms(x, L.ln2)
            g, u = self._lin(h, L.gate_up).chunk(2, dim=-1)
            x = x + self._lin(F.silu(g) * u, L.down)
        return self._lin(self._rms(x[:, -1] if last_only else x, self.norm), self.lm_head).float()

    @torch.no_grad()
    def prefill_logits(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """All-position logits ``(B, T, V)`` of left-padded ``ids`` with attention ``mask`` (for tests)."""
        ck, cv = self._cache(*ids.shape)
        return self._prefill(ids, mask, ck, cv, last_only=False)[0]

    def _cache(self, B: int, T: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        dt = torch.float32
        shape = (B, self.n_kv, T, self.head_dim)
        return ([torch.zeros(shape, dtype=dt) for _ in self.layers], [torch.zeros(shape, dtype=dt) for _ in self.layers])

    def _prefill(self, ids: torch.Tensor, mask: torch.Tensor, ck: list[torch.Tensor],
                 cv: list[torch.Tensor], last_only: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        B, T = ids.shape
        valid = mask.bool()
        pos = (valid.long().cumsum(1) - 1).clamp(min=0)
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        key_mask = causal[None] & valid[:, None, :]
        key_mask = key_mask | torch.eye(T, dtype=torch.bool)[None]  # padded queries attend to themselves (no NaN)
        return self.forward(ids, pos, ck, cv, 0, key_mask[:, None], last_only), pos[:, -1]

    @torch.no_grad()
    def generate(self, ids: torch.Tensor, mask: torch.Tensor, max_new_tokens: int, eos_id: int, pad_id: int,
                 greedy: bool = False, temperature: float = 1.0, top_p: float = 1.0,
                 generator: torch.Generator | None = None, grounder: Grounder | None = None,
                 decode: Callable[[list[int]], str] | None = None) -> torch.Tensor:
        """New token ids ``(B, <= max_new_tokens)`` after left-padded prompts ``ids`` ``(B, T)``.

        Finished rows (EOS written) get ``pad_id``; decoding stops when every row has finished. ``grounder``
        (with ``decode``: token ids -> text) forces fact values after their trigger phrases.
        """
        B, T = ids.shape
        n_new = max(0, min(max_new_tokens, self.max_pos - T))
        ck, cv = self._cache(B, T + n_new)
        logits, last_pos = self._prefill(ids, mask, ck, cv)
        valid = torch.zeros(B, T + n_new, dtype=torch.bool)
        valid[:, :T] = mask.bool()
        out = torch.full((B, n_new), pad_id, dtype=torch.long)
        done = torch.zeros(B, dtype=torch.bool)
        queues: list[list[int]] = [[] for _ in range(B)]
        cand = grounder.candidate_table(logits.shape[-1]) if grounder is not None else None
        for t in range(n_new):
            nxt = self._pick(logits, greedy, temperature, top_p, generator)
            if grounder is not None:
                for r in range(B):
                    if queues[r] and not done[r]:
                        nxt[r] = queues[r].pop(0)
            nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
            out[:, t] = nxt
            done = done | (nxt == eos_id)
            if grounder is not None and cand is not None and decode is not None:
                live = (~done) & cand[nxt.clamp(0, cand.numel() - 1)]
                for r in torch.nonzero(live).flatten().tolist():
                    if not queues[r]:
                        f = grounder.forced(r, decode(out[r, : t + 1].tolist()))
                        if f:
                            queues[r] = f
            if bool(done.all()) or t == n_new - 1:
                return out[:, : t + 1]
            valid[:, T + t] = True
            last_pos = last_pos + 1
            km = valid[:, None, None, : T + t + 1]
            logits = self.forward(nxt[:, None], last_pos[:, None], ck, cv, T + t, km)
        return out

    @staticmethod
    def _pick(logits: torch.Tensor, greedy: bool, temperature: float, top_p: float,
              generator: torch.Generator | None) -> torch.Tensor:
        """Greedy or nucleus sampling (Holtzman et al. 2020) from ``(B, V)`` logits."""
        logits = logits.float()
        if greedy:
            return logits.argmax(-1)
        probs = torch.softmax(logits / max(temperature, 1e-6), -1)
        if top_p >= 1.0:
            sp, si = probs, None
        else:
            # nucleus over the top 64 tokens when they hold top_p of the mass (exact: the nucleus is inside
            # them), a full sort for the other rows; a full sort per step cost more than the model's MLPs
            k = min(64, probs.shape[-1])
            sp, si = probs.topk(k, -1)
            short = sp.sum(-1) < top_p
            if bool(short.any()):
                full_p, full_i = probs.sort(-1, descending=True)
                sp = torch.cat([sp, torch.zeros(sp.shape[0], probs.shape[-1] - k)], -1)
                si = torch.cat([si, torch.zeros(si.shape[0], probs.shape[-1] - k, dtype=si.dtype)], -1)
                sp[short], si[short] = full_p[short], full_i[short]
            cum = sp.cumsum(-1)
            sp = sp.masked_fill(cum - sp > top_p, 0.0)  # keep the smallest prefix whose mass reaches top_p
        cum = sp.cumsum(-1)
        u = torch.rand(sp.shape[0], 1, generator=generator) * cum[:, -1:]
        pick = torch.searchsorted(cum, u, right=True).clamp(max=sp.shape[-1] - 1)
        return pick.squeeze(-1) if si is None else si.gather(-1, pick).squeeze(-1)
