"""Projectors (the trainable adapters) that map tower features into the LLM's embedding space, by name.

LLaVA's builder in spirit: a projector is picked from a registry; `resampler` gives every item a fixed token
budget (learned queries cross-attending to the tower tokens), which bounds the LLM context for long clips."""
from __future__ import annotations

import torch
from torch import nn

from .registry import Registry

PROJECTORS = Registry("projector")


@PROJECTORS.register("linear")
class LinearProjector(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, **_: object):
        super().__init__()
        self.proj = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.proj(x)


@PROJECTORS.register("mlp2x_gelu")
class MLPProjector(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, **_: object):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, out_dim)
        self.act = nn.GELU()
        self.linear_2 = nn.Linear(out_dim, out_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(x)))


@PROJECTORS.register("resampler")
class ResamplerProjector(nn.Module):
    """Perceiver-style: `num_queries` learned queries attend over the item's tokens (one block + MLP)."""

    def __init__(self, in_dim: int, out_dim: int, num_queries: int = 16, num_heads: int = 4, **_: object):
        super().__init__()
        if out_dim % num_heads:
            num_heads = 1
        self.num_queries = num_queries
        self.input_proj = nn.Linear(in_dim, out_dim)
        self.queries = nn.Parameter(torch.randn(num_queries, out_dim) * out_dim**-0.5)
        self.norm_kv = nn.LayerNorm(out_dim)
        self.norm_q = nn.LayerNorm(out_dim)
        self.attn = nn.MultiheadAttention(out_dim, num_heads, batch_first=True)
        self.mlp = nn.Sequential(nn.LayerNorm(out_dim), nn.Linear(out_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: [B, T, in_dim]; mask: [B, T] True for real tokens. Returns [B, num_queries, out_dim]."""
        kv = self.norm_kv(self.input_proj(x))
        q = self.norm_q(self.queries).unsqueeze(0).expand(x.shape[0], -1, -1)
        pad = None if mask is None else ~mask.bool()
        out, _ = self.attn(q, kv, kv, key_padding_mask=pad, need_weights=False)
        out = out + q
        return out + self.mlp(out)


def build_projector(kind: str, in_dim: int, out_dim: int, num_queries: int = 16, num_heads: int = 4) -> nn.Module:
    return PROJECTORS.get(kind)(in_dim, out_dim, num_queries=num_queries, num_heads=num_heads)
