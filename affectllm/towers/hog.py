"""HOGVisionEncoder: a deterministic histogram-of-oriented-gradients face tower (Dalal & Triggs style), in torch.

grey = 0.299 R + 0.587 G + 0.114 B -> centred gradients (fixed [-1, 0, 1] kernels) -> unsigned orientation in
[0, 180) degrees, soft-binned (linear interpolation between the two nearest of ``num_bins`` bins whose centres are
at k * 180/num_bins; bin 0 = horizontal gradient, i.e. vertical edges) and weighted by magnitude -> sum per
``cell_size`` cell -> overlapping ``block_size`` x ``block_size`` blocks (stride 1 cell), L2-Hys normalised.

One token per block, row-major over the block grid: a 64 px image with 8 px cells gives 8x8 cells and 7x7 = 49
tokens of 2*2*9 = 36 dims (layout: bin-major, ``dim = bin * 4 + cell`` with cells (0,0),(0,1),(1,0),(1,1)).
``extra_features="lbp"`` appends 8 LBP-like dims per token (for each of the 8 neighbour directions, the fraction
of the block's pixels darker than that neighbour); ``"intensity"`` appends the block's mean and std grey level.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from transformers import PretrainedConfig, PreTrainedModel

from ..errors import ConfigError, MediaError
from ._common import FrozenFeaturesMixin, GridTokenNormalization, as_float_batch

_EXTRA_DIMS = {"none": 0, "lbp": 8, "intensity": 2}
_NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))


class HOGConfig(PretrainedConfig):
    r"""Config of the HOG tower; ``hidden_size`` and ``num_output_tokens`` are derived.

    Args:
        image_size: input side S in pixels (the caller resizes). num_channels: 3 (RGB) or 1 (grey).
        cell_size: cell side in pixels (must divide image_size). block_size: cells per block side.
        num_bins: unsigned orientation bins. clip: L2-Hys clipping value. extra_features: "none", "lbp", "intensity".
        norm_mean / norm_std: per-token-dim statistics (None = identity), see ``HOGVisionEncoder.fit_normalization``.
    """

    model_type = "affect_hog"

    image_size: int = 64
    num_channels: int = 3
    cell_size: int = 8
    block_size: int = 2
    num_bins: int = 9
    clip: float = 0.2
    extra_features: str = "none"
    norm_mean: list[float] | None = None
    norm_std: list[float] | None = None

    def __post_init__(self, **kwargs):
        kwargs.pop("hidden_size", None)
        kwargs.pop("num_output_tokens", None)
        super().__post_init__(**kwargs)
        if self.extra_features not in _EXTRA_DIMS:
            raise ConfigError(f"affect_hog: extra_features must be one of {sorted(_EXTRA_DIMS)}, "
                              f"got {self.extra_features!r}")
        if self.num_channels not in (1, 3):
            raise ConfigError(f"affect_hog: num_channels must be 1 or 3, got {self.num_channels}")
        if self.cell_size < 2 or self.image_size % self.cell_size:
            raise ConfigError(f"affect_hog: cell_size {self.cell_size} must divide image_size {self.image_size}")
        if not 1 <= self.block_size <= self.cells_per_side or self.num_bins < 2:
            raise ConfigError(f"affect_hog: block_size {self.block_size} must be in [1, cells per side] "
                              f"and num_bins ({self.num_bins}) >= 2")
        for name in ("norm_mean", "norm_std"):
            value = getattr(self, name)
            if value is not None and len(value) != self.hidden_size:
                raise ConfigError(f"affect_hog: {name} has {len(value)} values, expected {self.hidden_size}")

    @property
    def cells_per_side(self) -> int:
        return self.image_size // self.cell_size

    @property
    def blocks_per_side(self) -> int:
        return self.cells_per_side - self.block_size + 1

    @property
    def hidden_size(self) -> int:
        return self.block_size**2 * self.num_bins + _EXTRA_DIMS[self.extra_features]

    @property
    def num_output_tokens(self) -> int:
        return self.blocks_per_side**2


class HOGVisionEncoder(FrozenFeaturesMixin, GridTokenNormalization, PreTrainedModel):
    config_class = HOGConfig
    base_model_prefix = "hog"
    main_input_name = "pixel_values"
    _no_split_modules: list[str] = []

    def __init__(self, config: HOGConfig):
        super().__init__(config)
        self._init_affine()
        self.post_init()

    def _init_weights(self, module):
        if module is self:
            self._init_affine_weights()

    def _grey(self, pixel_values) -> torch.Tensor:
        c = self.config
        x = as_float_batch(pixel_values, "pixel_values", ndim=4)
        if x.shape[1] not in (1, 3) or x.shape[-2:] != (c.image_size, c.image_size):
            raise MediaError(f"pixel_values: expected [B, 3 or 1, {c.image_size}, {c.image_size}] (resize first), "
                             f"got {tuple(x.shape)}")
        if x.shape[1] == 3:
            x = (x * torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
        return x

    def _features(self, grey: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """grey [B, 1, S, S] -> (cell histograms [B, cells, bins], raw block tokens [B, N, D])."""
        c = self.config
        B, nb, cs, bs = grey.shape[0], c.num_bins, c.cell_size, c.block_size
        kernel = torch.tensor([[-1.0, 0.0, 1.0]], device=grey.device)
        padded = F.pad(grey, (1, 1, 1, 1), mode="replicate")
        gx = F.conv2d(padded[:, :, 1:-1, :], kernel.view(1, 1, 1, 3))
        gy = F.conv2d(padded[:, :, :, 1:-1], kernel.view(1, 1, 3, 1))
        mag = torch.sqrt(gx * gx + gy * gy)
        theta = torch.atan2(gy, gx).remainder(math.pi)  # unsigned orientation in [0, pi)
        pos = theta / (math.pi / nb)
        lo = pos.floor()
        w_hi = pos - lo
        lo = lo.long().remainder(nb)
        votes = torch.zeros(B, nb, c.image_size, c.image_size, device=grey.device)
        votes.scatter_add_(1, lo, mag * (1 - w_hi))
        votes.scatter_add_(1, (lo + 1).remainder(nb), mag * w_hi)
        cells = F.avg_pool2d(votes, cs) * (cs * cs)  # [B, bins, Cy, Cx]
        blocks = F.unfold(cells, bs).transpose(1, 2)  # [B, N, bins*bs*bs], dim = bin*bs*bs + cell
        eps = 1e-3 * bs * cs  # avoids amplifying noise in flat blocks
        blocks = blocks / torch.sqrt(blocks.pow(2).sum(-1, keepdim=True) + eps**2)
        blocks = blocks.clamp(max=c.clip)
        blocks = blocks / torch.sqrt(blocks.pow(2).sum(-1, keepdim=True) + 1e-6)
        if c.extra_features != "none":
            blocks = torch.cat([blocks, self._extra(grey)], -1)
        return cells.flatten(2).transpose(1, 2), blocks

    def _extra(self, grey: torch.Tensor) -> torch.Tensor:
        c = self.config
        span, stride = c.block_size * c.cell_size, c.cell_size
        if c.extra_features == "intensity":
            mean = F.avg_pool2d(grey, span, stride)
            std = (F.avg_pool2d(grey * grey, span, stride) - mean * mean).clamp_min(0).sqrt()
            return torch.cat([mean, std], 1).flatten(2).transpose(1, 2)
        padded = F.pad(grey, (1, 1, 1, 1), mode="replicate")
        S = c.image_size
        bits = [(padded[:, :, 1 + dy: 1 + dy + S, 1 + dx: 1 + dx + S] > grey).float() for dy, dx in _NEIGHBOURS]
        bits = torch.cat(bits, 1)
        return F.avg_pool2d(bits, span, stride).flatten(2).transpose(1, 2)

    @torch.no_grad()
    def cell_histograms(self, pixel_values) -> torch.Tensor:
        """Magnitude-weighted orientation histograms per cell, [B, cells (row-major), num_bins], unnormalised."""
        return self._features(self._grey(pixel_values).to(self.feature_scale.device))[0]

    def _raw_tokens(self, pixel_values) -> torch.Tensor:
        return self._features(self._grey(pixel_values).to(self.feature_scale.device))[1]
