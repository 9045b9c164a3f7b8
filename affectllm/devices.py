"""Device helpers shared by training and evaluation (evaluation must not import training)."""
from __future__ import annotations

import torch


def to_device(batch: dict, device) -> dict:
    """Tensors and lists of tensors (tower states) to `device`; a no-op on CPU."""
    out = {}
    for k, v in batch.items():
        if torch.is_tensor(v):
            out[k] = v.to(device)
        elif isinstance(v, list) and v and torch.is_tensor(v[0]):
            out[k] = [t.to(device) for t in v]
        else:
            out[k] = v
    return out
