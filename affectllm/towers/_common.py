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


class GridTokenNormalization:
    """The frozen per-dim affine z = (raw - shift) * scale of an image tower's grid tokens (identity until
    `fit_normalization` sees a training split; stored in the config, so it travels with the tower). A tower using it
    calls `_init_affine()` in `__init__`, `_init_affine_weights()` from `_init_weights`, and provides
    `_raw_tokens(pixel_values) -> [B, N, hidden]`."""

    def _init_affine(self) -> None:
        d = self.config.hidden_size  # parameters (not buffers) so the tower has a dtype/device even when stateless
        self.feature_shift = torch.nn.Parameter(torch.zeros(d), requires_grad=False)
        self.feature_scale = torch.nn.Parameter(torch.ones(d), requires_grad=False)

    def _init_affine_weights(self) -> None:
        mean, std, d = self.config.norm_mean, self.config.norm_std, self.config.hidden_size
        copy_param_(self.feature_shift, torch.tensor(mean, dtype=torch.float64).float() if mean else torch.zeros(d))
        scale = (1.0 / torch.tensor(std, dtype=torch.float64).clamp_min(1e-6)).float() if std else torch.ones(d)
        copy_param_(self.feature_scale, scale)

    def _normalise(self, raw: torch.Tensor) -> torch.Tensor:
        return ((raw.float() - self.feature_shift.float()) * self.feature_scale.float()).to(self.feature_scale.dtype)

    def forward(self, pixel_values: torch.Tensor, output_hidden_states: bool | None = None,
                return_dict: bool | None = None, **kwargs):
        """pixel_values [B, 3, S, S] RGB in [0, 1] (or grey [B, 1, S, S]) -> last_hidden_state
        [B, num_output_tokens, hidden_size]; hidden_states (if asked): (raw tokens, normalised tokens), same shape;
        [-1] == last_hidden_state."""
        from transformers.modeling_outputs import BaseModelOutput

        c = self.config
        output_hidden_states = c.output_hidden_states if output_hidden_states is None else output_hidden_states
        return_dict = c.return_dict if return_dict is None else return_dict
        raw = self._raw_tokens(pixel_values)
        tokens = self._normalise(raw)
        hidden = (raw.to(tokens.dtype), tokens) if output_hidden_states else None
        if not return_dict:
            return (tokens, hidden) if hidden is not None else (tokens,)
        return BaseModelOutput(last_hidden_state=tokens, hidden_states=hidden)

    @torch.no_grad()
    def fit_normalization(self, pixel_values, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-dim mean/std of the raw tokens over a set of images ([N, C, S, S]); stored in the parameters and in
        config.norm_mean/norm_std. Returns (mean, std)."""
        d = self.config.hidden_size
        s1, s2, n = torch.zeros(d, dtype=torch.float64), torch.zeros(d, dtype=torch.float64), 0
        for i in range(0, len(pixel_values), batch_size):
            raw = self._raw_tokens(pixel_values[i: i + batch_size]).double().cpu().reshape(-1, d)
            s1, s2, n = s1 + raw.sum(0), s2 + raw.pow(2).sum(0), n + raw.shape[0]
        if n == 0:
            raise MediaError("fit_normalization needs at least one image")
        mean = s1 / n
        std = (s2 / n - mean.pow(2)).clamp_min(0).sqrt().clamp_min(1e-4)
        self.config.norm_mean, self.config.norm_std = stats_to_list(mean), stats_to_list(std)
        copy_param_(self.feature_shift, mean.float())
        copy_param_(self.feature_scale, (1.0 / std).float())
        return mean.float(), std.float()
