"""Small helpers shared by the feature towers."""
from __future__ import annotations

import numpy as np
import torch

from ..errors import MediaError


def as_float_batch(values, name: str, ndim: int) -> torch.Tensor:
    """Tensor/array -> float32 tensor with `ndim` dims (a missing batch dim is added; [B, 1, T] audio is squeezed).
    Raises MediaError for the wrong rank or non-finite values."""
    if not isinstance(values, torch.Tensor):
        try:
            values = torch.as_tensor(np.asarray(values, dtype=np.float32))
        except (TypeError, ValueError) as e:
            raise MediaError(f"{name}: cannot convert to a float array ({e})") from e
    x = values.float()
    if x.dim() == ndim - 1:
        x = x.unsqueeze(0)
    if ndim == 2 and x.dim() == 3 and x.shape[1] == 1:
        x = x[:, 0]
    if x.dim() != ndim:
        raise MediaError(f"{name}: expected {ndim} dims (batch first), got shape {tuple(values.shape)}")
    if x.numel() and not bool(torch.isfinite(x).all()):
        raise MediaError(f"{name}: contains NaN or infinite values")
    return x


def lengths_from_mask(mask, x: torch.Tensor) -> torch.Tensor:
    """Valid samples per item from a right-padded [B, T] attention mask (None = all valid)."""
    if mask is None:
        return torch.full((x.shape[0],), x.shape[1], dtype=torch.long, device=x.device)
    mask = torch.as_tensor(mask, device=x.device)
    if mask.shape != x.shape:
        raise MediaError(f"attention_mask shape {tuple(mask.shape)} != input shape {tuple(x.shape)}")
    return (mask != 0).sum(-1).long()


@torch.no_grad()
def copy_param_(param: torch.Tensor, value: torch.Tensor) -> None:
    param.copy_(value.to(device=param.device, dtype=param.dtype))


def stats_to_list(t: torch.Tensor) -> list[float]:
    return [float(v) for v in t.double().cpu().tolist()]


class FrozenFeaturesMixin:
    """Loading replaces parameters with fresh (trainable) ones; the feature towers' affine normalisation stays
    frozen unless a caller explicitly unfreezes it (e.g. the composed model's freeze policy)."""

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        model = super().from_pretrained(*args, **kwargs)
        model.requires_grad_(False)
        return model
