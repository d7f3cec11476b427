"""Base models: the project's tiny Llama-style model and its tokenizer, or any local Hugging Face causal LM.

``BASE_MODEL = "workbench-tiny"`` builds the offline default: a byte-level BPE tokenizer trained with
``tokenizers`` on the training corpus (digits split one by one, as in LLaMA, so numbers are copied digit
by digit), wrapped as a :class:`transformers.PreTrainedTokenizerFast` with special tokens, left padding and
a simple chat template, and a small :class:`transformers.LlamaForCausalLM` initialised from a
:class:`transformers.LlamaConfig` (a few million parameters). :func:`workbench.llm.train.build_tiny_base`
pretrains it and saves it with ``save_pretrained``.

Any other ``BASE_MODEL`` is a *local* directory (e.g. a downloaded Mistral-7B or Qwen) loaded with
``AutoModelForCausalLM`` / ``AutoTokenizer``; nothing is ever fetched from the Hub (``import workbench``
sets the offline flags). With CUDA and ``bitsandbytes`` the base can be loaded in 4-bit (QLoRA, Dettmers
et al. 2023); otherwise it runs in full precision (float32) on the CPU, and :func:`device_report` says so.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

import workbench  # noqa: F401  (offline flags before transformers)
from workbench.rlaif.finetune import SYSTEM_PROMPT

TINY = "workbench-tiny"
PAD, BOS, EOS = "<pad>", "<s>", "<|end|>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
SPECIAL_TOKENS = (PAD, BOS, EOS, *ROLE_TOKENS)
#: Jinja chat template of the tiny tokenizer: ``<|role|>content<|end|>`` per message; the generation prompt
#: is ``<|assistant|>``. No newline follows a role token, so a prompt's tokens are always a prefix of the
#: prompt+completion's tokens (special tokens never merge with text).
CHAT_TEMPLATE = ("{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<|end|>{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")
#: Separator of the plain ``prompt + completion`` format (tokenizers without a chat template).
PLAIN_SEPARATOR = "\n### Analysis:\n"


@dataclass(frozen=True)
class TinyConfig:
    """Size of the tiny base model (Llama architecture: RMSNorm, rotary positions, SwiGLU MLP).

    Defaults give ~3.5 M parameters with a ~600-token vocabulary: hidden 256, 4 layers, 4 heads,
    MLP 768, context 512 tokens, tied input/output embeddings.
    """

    vocab_size: int = 1024  # upper bound for the BPE trainer (the corpus may saturate earlier)
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 768
    context: int = 512
    rope_theta: float = 10000.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TaskFormat:
    """How a model is asked for an analysis: the prompt style (:data:`workbench.analysis.analyst.PROMPT_STYLES`)
    and the system message (None: none). Saved in every model folder's ``workbench.json`` (key ``task``) so
    that training, evaluation, the CLI and RLHF ask a model the way it was trained.

    The tiny base is trained without the system message (it carries no information the model can use and
    costs a quarter of each sequence); a general-purpose base keeps it.
    """

    prompt_style: str = "full"
    system: str | None = SYSTEM_PROMPT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, *folders: str | os.PathLike[str] | None) -> "TaskFormat":
        """The format recorded in the first of ``folders`` whose ``workbench.json`` has one (else the default:
        the ``full`` prompt and the system prompt, as before formats were recorded)."""
        for folder in folders:
            if folder is None:
                continue
            meta = Path(folder) / "workbench.json"
            if meta.exists():
                try:
                    task = json.loads(meta.read_text()).get("task")
                except (OSError, ValueError):
                    task = None
                if isinstance(task, dict):
                    return cls(str(task.get("prompt_style", "full")), task.get("system"))
        return cls()


def task_of(model: Any) -> TaskFormat:
    """The task format a model was loaded with (:func:`workbench.llm.train.load_policy` records it), else the
    default."""
    t = getattr(model, "workbench_task", None)
    return t if isinstance(t, TaskFormat) else TaskFormat()


def resolve_system(model: Any, system: Any) -> str | None:
    """``system`` unless it is ``"auto"``: then the system message of the model's task format."""
    return task_of(model).system if system == "auto" else system


# ------------------------------------------------------------------------------------------------
# Tokenizer
# ------------------------------------------------------------------------------------------------
def train_tokenizer(texts: Sequence[str], vocab_size: int = 1024, min_frequency: int = 2) -> Any:
    """Byte-level BPE trained on ``texts`` (Sennrich et al. 2016; GPT-2's byte-level variant), digits split.

    Returns a :class:`transformers.PreTrainedTokenizerFast` with ``<pad>``, ``<s>``, ``<|end|>`` (= EOS) and
    the role tokens as special tokens, left padding (for batched generation) and :data:`CHAT_TEMPLATE`.
    Byte-level: any text round-trips, no unknown token is needed.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tk.train_from_iterator(list(texts) + [SYSTEM_PROMPT], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   extra_special_tokens=list(ROLE_TOKENS), padding_side="left",
                                   chat_template=CHAT_TEMPLATE, model_max_length=TinyConfig.context)


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def format_prompt(tokenizer: Any, prompt: str, system: str | None = SYSTEM_PROMPT) -> str:
    """The text a model is given for ``prompt``: the chat template with a system and a user message and the
    generation prompt when the tokenizer has a template, else ``prompt + PLAIN_SEPARATOR``."""
    if has_chat_template(tokenizer):
        msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
        return tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    return prompt + PLAIN_SEPARATOR


def trl_prompt(tokenizer: Any, prompt: str, system: str | None = SYSTEM_PROMPT) -> Any:
    """The ``prompt`` field of a trl example: conversational messages with a chat template, text otherwise."""
    if has_chat_template(tokenizer):
        return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    return prompt + PLAIN_SEPARATOR


def trl_answer(tokenizer: Any, text: str) -> Any:
    """A completion / chosen / rejected field: an assistant message with a chat template, text otherwise."""
    return [{"role": "assistant", "content": text}] if has_chat_template(tokenizer) else text


# ------------------------------------------------------------------------------------------------
# Models
# ------------------------------------------------------------------------------------------------
def build_tiny_model(tokenizer: Any, cfg: TinyConfig | None = None, seed: int = 0) -> Any:
    """A randomly initialised :class:`transformers.LlamaForCausalLM` sized by ``cfg`` for ``tokenizer``
    (seeded: the same seed gives the same weights)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = cfg or TinyConfig()
    conf = LlamaConfig(vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
                       num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
                       num_key_value_heads=cfg.num_heads, max_position_embeddings=cfg.context,
                       rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
                       tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id, attn_implementation="sdpa")
    torch.manual_seed(seed)
    model = LlamaForCausalLM(conf)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def n_parameters(model: torch.nn.Module, trainable: bool = False) -> int:
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable))


@dataclass
class DeviceReport:
    """Where and how a model runs."""

    device: str  # "cuda" or "cpu"
    quantized_4bit: bool
    dtype: str
    note: str


def device_report(load_in_4bit: bool = True) -> DeviceReport:
    """CUDA + bitsandbytes: the base can load in 4-bit (NF4, bf16 compute); else full precision on CPU."""
    cuda = torch.cuda.is_available()
    bnb = importlib.util.find_spec("bitsandbytes") is not None
    if cuda and bnb and load_in_4bit:
        return DeviceReport("cuda", True, "nf4 weights, bfloat16 compute", "CUDA and bitsandbytes found: 4-bit base (QLoRA)")
    if cuda:
        why = "4-bit not requested" if not load_in_4bit else "bitsandbytes not installed"
        return DeviceReport("cuda", False, "float32", f"CUDA found, {why}: full precision on the GPU")
    return DeviceReport("cpu", False, "float32", "no CUDA: full precision (float32) on CPU")


def load_base(path: str | os.PathLike[str], load_in_4bit: bool = True) -> tuple[Any, Any, DeviceReport]:
    """Load a local causal LM directory and its tokenizer (never a Hub id).

    Returns ``(model, tokenizer, report)``. The tokenizer gets a pad token (EOS when it has none) and left
    padding. With CUDA and bitsandbytes and ``load_in_4bit``, the weights load in 4-bit NF4 with
    ``BitsAndBytesConfig``.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    p = Path(path)
    _quiet_progress()
    if not (p / "config.json").exists():
        raise FileNotFoundError(f"{p} is not a local model directory (no config.json); BASE_MODEL must be "
                                f"'{TINY}' or a folder with a downloaded model (nothing is fetched from the Hub)")
    rep = device_report(load_in_4bit)
    kwargs: dict[str, Any] = {"local_files_only": True}
    if rep.quantized_4bit:
        from transformers import BitsAndBytesConfig

        kwargs.update(quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                             bnb_4bit_compute_dtype=torch.bfloat16,
                                                             bnb_4bit_use_double_quant=True), device_map={"": 0})
    else:
        kwargs["dtype"] = torch.float32
    model = AutoModelForCausalLM.from_pretrained(p, **kwargs)
    if rep.device == "cuda" and not rep.quantized_4bit:
        model = model.to("cuda")
    tok = AutoTokenizer.from_pretrained(p, local_files_only=True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok, rep


def _quiet_progress() -> None:
    """No weight-loading / shard-writing bars when ``WORKBENCH_PROGRESS=0``."""
    from transformers.utils import logging as hf_logging

    from workbench import config

    if not config.progress_enabled():
        hf_logging.disable_progress_bar()


def save_pretrained(model: Any, tokenizer: Any, folder: str | os.PathLike[str], extra: dict[str, Any] | None = None) -> Path:
    """``save_pretrained`` of model and tokenizer into ``folder`` via a temporary folder renamed into place
    (a crash never leaves a half-written model); ``extra`` goes to ``workbench.json``."""
    from workbench import atomic

    _quiet_progress()

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if extra is not None:
            (tmp / "workbench.json").write_text(json.dumps(extra, indent=2, default=str))

    return atomic.replace_folder(folder, write)


@torch.no_grad()
def logits_of(model: Any, tokenizer: Any, texts: Sequence[str]) -> torch.Tensor:
    """Logits ``(B, T, V)`` of ``texts`` (left-padded batch), model in eval mode."""
    model.eval()
    enc = tokenizer(list(texts), return_tensors="pt", padding=True).to(model.device)
    return model(**enc).logits.float().cpu()


def reload_check(model: Any, tokenizer: Any, folder: str | os.PathLike[str], texts: Sequence[str]) -> float:
    """Reload ``folder`` and return the largest absolute logit difference to ``model`` on ``texts``
    (0.0 when the saved model is identical)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet_progress()
    m2 = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
    t2 = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    if t2(list(texts))["input_ids"] != tokenizer(list(texts))["input_ids"]:
        return float("inf")
    return float((logits_of(model, tokenizer, texts) - logits_of(m2, t2, texts)).abs().max())
