"""A GPT-2-style decoder (Radford et al. 2019), laid out as Karpathy's nanoGPT.

    transformer.wte (token embedding) + transformer.wpe (position embedding) -> transformer.drop
    transformer.h.<i>: pre-LN blocks   x ← x + attn(ln_1(x)),   x ← x + mlp(ln_2(x))
    transformer.ln_f -> lm_head (its weight is wte's: tied)

``attn``: ``c_attn`` = Linear(d, 3d) gives queries, keys and values, causal scaled dot-product
attention over ``n_head`` heads, ``c_proj`` = Linear(d, d); ``mlp``: ``c_fc`` = Linear(d, 4d), GELU
(GPT-2's tanh approximation), ``c_proj`` = Linear(4d, d). Weights as GPT-2: N(0, 0.02²) for Linear
layers and embeddings, N(0, (0.02/√(2·n_layer))²) for the two ``c_proj`` of every block (the
residual projections), biases zero, LayerNorm γ = 1, β = 0; all from ``generator``. The model
computes the same function as Hugging Face's ``GPT2LMHeadModel`` with the same weights
(:func:`from_hf_state_dict` converts one), whose Conv1D layers store their weights transposed.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import nonnegative, positive_int, probability

__all__ = ["CausalSelfAttention", "MLP", "Block", "GPT", "gpt", "gpt_parameter_count", "from_hf_state_dict"]


class CausalSelfAttention(nn.Module):
    """Causal multi-head self-attention: c_attn = Linear(d, 3d), attention, c_proj = Linear(d, d)."""

    def __init__(self, n_embd: int, n_head: int, bias: bool, dropout: float):
        super().__init__()
        self.n_head, self.dropout = n_head, dropout
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.c_attn(x).split(d, dim=2)
        q, k, v = (z.view(b, t, self.n_head, d // self.n_head).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).reshape(b, t, d)))


class MLP(nn.Module):
    """c_fc = Linear(d, 4d) -> GELU (tanh approximation) -> c_proj = Linear(4d, d) -> dropout."""

    def __init__(self, n_embd: int, bias: bool, dropout: float):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
        self.gelu = nn.GELU(approximate="tanh")
        self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, n_embd: int, n_head: int, bias: bool, dropout: float):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, bias=bias)
        self.attn = CausalSelfAttention(n_embd, n_head, bias, dropout)
        self.ln_2 = nn.LayerNorm(n_embd, bias=bias)
        self.mlp = MLP(n_embd, bias, dropout)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Token and position embeddings -> blocks -> ln_f -> lm_head (tied to wte). ``forward(idx)``
    returns the logits [B, T, vocab]; with ``targets`` [B, T] also the mean cross-entropy."""

    def __init__(self, vocab_size: int, block_size: int, n_layer: int, n_head: int, n_embd: int, bias: bool,
                 dropout: float):
        super().__init__()
        self.block_size = block_size
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab_size, n_embd),
            wpe=nn.Embedding(block_size, n_embd),
            drop=nn.Dropout(dropout),
            h=nn.ModuleList([Block(n_embd, n_head, bias, dropout) for _ in range(n_layer)]),
            ln_f=nn.LayerNorm(n_embd, bias=bias),
        ))
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight

    def forward(self, idx, targets=None):
        b, t = idx.shape
        if t > self.block_size:
            raise ValueError(f"sequence of length {t} is longer than the block size {self.block_size}")
        pos = torch.arange(t, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        if targets is None:
            return logits
        return logits, F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def gpt(n_layer: int = 12, n_head: int = 12, n_embd: int = 768, vocab_size: int = 50257, block_size: int = 1024,
        bias: bool = True, dropout: float = 0.0, generator: torch.Generator | None = None) -> GPT:
    """A GPT-2-style decoder (defaults: GPT-2 small, 124,439,808 parameters) with weights from
    ``generator`` (see the module docstring). Parameters: :func:`gpt_parameter_count`."""
    for name, value in (("n_layer", n_layer), ("n_head", n_head), ("n_embd", n_embd), ("vocab_size", vocab_size),
                        ("block_size", block_size)):
        positive_int(name, value)
    if n_embd % n_head:
        raise ValueError(f"n_embd ({n_embd}) must be divisible by n_head ({n_head})")
    nonnegative("dropout", dropout)
    probability("dropout", dropout)
    model = GPT(vocab_size, block_size, n_layer, n_head, n_embd, bias, dropout)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * n_layer), generator=generator)
            elif p.dim() == 2:
                nn.init.normal_(p, 0.0, 0.02, generator=generator)
            elif "ln_" in name and name.endswith("weight"):
                nn.init.ones_(p)
            else:
                nn.init.zeros_(p)
    return model


def gpt_parameter_count(n_layer: int = 12, n_embd: int = 768, vocab_size: int = 50257, block_size: int = 1024,
                        bias: bool = True) -> int:
    """Parameters of :func:`gpt` (the tied lm_head counted once): V·d + T·d for the embeddings, per
    block 12·d² weights plus 13·d biases and LayerNorm parameters (9·d biases, 4·d LayerNorm with
    ``bias``; 4·d → 2·d without), and the final LayerNorm (2·d, or d without bias)."""
    d = n_embd
    per_block = 12 * d * d + (13 * d if bias else 2 * d)
    return vocab_size * d + block_size * d + n_layer * per_block + (2 * d if bias else d)


def from_hf_state_dict(state: dict) -> dict:
    """A Hugging Face ``GPT2LMHeadModel`` state dict renamed and transposed for :class:`GPT`: the
    Conv1D weights ``c_attn``, ``c_proj``, ``c_fc`` are stored [n_in, n_out] there and [n_out, n_in]
    in ``nn.Linear``; attention bias buffers are dropped."""
    out = {}
    for name, value in state.items():
        if name.endswith(".attn.bias") or name.endswith(".attn.masked_bias"):
            continue
        if any(name.endswith(f"{layer}.weight") for layer in ("c_attn", "c_proj", "c_fc")):
            value = value.t()
        out[name] = value
    return out
