"""ProsodyAudioEncoder: a deterministic, CPU-cheap audio tower of classical prosodic/spectral features.

Per 20 ms frame (25 ms window, centred at ``i*hop + hop/2``) it measures, in torch and fully vectorised:
log-mel (40), MFCC (13) with deltas and delta-deltas, log energy (dBFS) and its delta, pitch (YIN: log F0, voiced flag,
periodicity), spectral centroid and zero-crossing rate. ``frame_stack`` adjacent frames are concatenated into one
token (default 5 -> 10 tokens/s) and an affine per-feature normalisation with fixed statistics is applied first
(``fit_normalization``). Tokens of padded positions are zeros; ``config.num_output_frames(num_samples)`` gives the
exact number of tokens a clip yields without running the model.
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput

from ..errors import ConfigError, MediaError
from ._common import FrozenFeaturesMixin, as_float_batch, copy_param_, lengths_from_mask, stats_to_list
from ._dsp import delta, stack_frames, summarise_cues, yin

_BASE_FEATURES = ("energy_db", "delta_energy_db", "log_f0", "voiced", "periodicity", "centroid_khz", "zcr")


class ProsodyConfig(PretrainedConfig):
    r"""Config of the prosody tower. ``hidden_size`` (= frame_stack * number of per-frame features) is derived.

    Args:
        sampling_rate: expected input rate (the processor resamples). win_ms / hop_ms: analysis window and hop.
        n_fft, n_mels, fmin, fmax: log-mel front end (HTK mel, fmax None = Nyquist). n_mfcc: cepstra kept (incl. c0).
        include_logmel: put the log-mel bands into the frame vector (MFCC/prosody always are).
        include_delta2: add delta-delta MFCC.
        f0_min, f0_max: pitch search range in Hz. yin_threshold: YIN dip threshold; voicing_threshold: maximal
        CMNDF dip for a voiced frame. silence_db: absolute energy floor (dBFS) and relative_silence_db: range below
        the clip's loudest frame under which frames are never voiced.
        frame_stack: frames concatenated per output token. norm_mean / norm_std: per-frame-feature statistics
        (None = identity), filled by ``ProsodyAudioEncoder.fit_normalization``.
    """

    model_type = "affect_prosody"

    sampling_rate: int = 16000
    win_ms: float = 25.0
    hop_ms: float = 20.0
    n_fft: int = 512
    n_mels: int = 40
    fmin: float = 20.0
    fmax: float | None = None
    n_mfcc: int = 13
    include_logmel: bool = True
    include_delta2: bool = True
    f0_min: float = 60.0
    f0_max: float = 500.0
    yin_threshold: float = 0.15
    voicing_threshold: float = 0.35
    silence_db: float = -60.0
    relative_silence_db: float = 40.0
    frame_stack: int = 5
    norm_mean: list[float] | None = None
    norm_std: list[float] | None = None

    def __post_init__(self, **kwargs):
        kwargs.pop("hidden_size", None)  # derived; present in saved configs
        super().__post_init__(**kwargs)
        if self.sampling_rate <= 0 or self.hop_length < 1 or self.win_length < self.hop_length:
            raise ConfigError(f"affect_prosody: need sampling_rate > 0 and win_ms >= hop_ms > 0, got "
                              f"{self.sampling_rate}, {self.win_ms}, {self.hop_ms}")
        if self.n_fft < self.win_length:
            raise ConfigError(f"affect_prosody: n_fft {self.n_fft} < window {self.win_length} samples")
        if not 0 < self.f0_min < self.f0_max < self.sampling_rate / 4:
            raise ConfigError(f"affect_prosody: bad pitch range f0_min={self.f0_min}, f0_max={self.f0_max}")
        if self.frame_stack < 1 or self.n_mfcc < 1 or self.n_mels < self.n_mfcc:
            raise ConfigError("affect_prosody: need frame_stack >= 1 and n_mels >= n_mfcc >= 1")
        for name in ("norm_mean", "norm_std"):
            value = getattr(self, name)
            if value is not None and len(value) != self.num_frame_features:
                raise ConfigError(f"affect_prosody: {name} has {len(value)} values, expected {self.num_frame_features}")

    # ---- derived sizes ---------------------------------------------------------------------------------------
    @property
    def hop_length(self) -> int:
        return int(round(self.sampling_rate * self.hop_ms / 1000))

    @property
    def win_length(self) -> int:
        return int(round(self.sampling_rate * self.win_ms / 1000))

    @property
    def frame_feature_names(self) -> list[str]:
        names = [f"logmel_{i}" for i in range(self.n_mels)] if self.include_logmel else []
        names += [f"mfcc_{i}" for i in range(self.n_mfcc)] + [f"delta_mfcc_{i}" for i in range(self.n_mfcc)]
        names += [f"delta2_mfcc_{i}" for i in range(self.n_mfcc)] if self.include_delta2 else []
        return names + list(_BASE_FEATURES)

    @property
    def num_frame_features(self) -> int:
        cepstra = (3 if self.include_delta2 else 2) * self.n_mfcc
        return (self.n_mels if self.include_logmel else 0) + cepstra + len(_BASE_FEATURES)

    @property
    def hidden_size(self) -> int:
        return self.frame_stack * self.num_frame_features

    @property
    def tokens_per_second(self) -> float:
        return self.sampling_rate / (self.hop_length * self.frame_stack)

    def num_feature_frames(self, num_samples: int) -> int:
        """50 Hz analysis frames of a clip: one per started hop."""
        return -(-int(num_samples) // self.hop_length)

    def num_output_frames(self, num_samples: int) -> int:
        """Tokens (stacked frames) the tower emits for a clip of ``num_samples`` samples: ceil(frames / stack)."""
        return -(-self.num_feature_frames(num_samples) // self.frame_stack)


class ProsodyAudioEncoder(FrozenFeaturesMixin, PreTrainedModel):
    config_class = ProsodyConfig
    base_model_prefix = "prosody"
    main_input_name = "input_values"
    _no_split_modules: list[str] = []

    def __init__(self, config: ProsodyConfig):
        super().__init__(config)
        d = config.num_frame_features
        # Frozen affine normalisation z = (f - shift) * scale; parameters so the model has a dtype/device and the
        # composed model's freeze policy may unfreeze them.
        self.feature_shift = nn.Parameter(torch.zeros(d), requires_grad=False)
        self.feature_scale = nn.Parameter(torch.ones(d), requires_grad=False)
        self._consts: dict = {}
        self.post_init()

    def _init_weights(self, module):
        if module is self:
            mean, std = self.config.norm_mean, self.config.norm_std
            d = self.config.num_frame_features
            copy_param_(self.feature_shift, torch.tensor(mean, dtype=torch.float64).float() if mean else torch.zeros(d))
            scale = (1.0 / torch.tensor(std, dtype=torch.float64).clamp_min(1e-6)).float() if std else torch.ones(d)
            copy_param_(self.feature_scale, scale)

    # ---- constants (recomputed, never saved) -----------------------------------------------------------------
    def _constants(self, device: torch.device) -> dict:
        key = str(device)
        if key not in self._consts:
            from transformers.audio_utils import mel_filter_bank

            c = self.config
            mel = mel_filter_bank(num_frequency_bins=c.n_fft // 2 + 1, num_mel_filters=c.n_mels, min_frequency=c.fmin,
                                  max_frequency=c.fmax or c.sampling_rate / 2, sampling_rate=c.sampling_rate,
                                  norm="slaney", mel_scale="htk")
            n = np.arange(c.n_mels)
            dct = np.cos(np.pi / c.n_mels * (n[:, None] + 0.5) * np.arange(c.n_mfcc)[None, :]) * np.sqrt(2 / c.n_mels)
            dct[:, 0] /= np.sqrt(2)  # orthonormal DCT-II
            self._consts[key] = {
                "mel": torch.tensor(mel, dtype=torch.float32, device=device),
                "dct": torch.tensor(dct, dtype=torch.float32, device=device),
                "window": torch.hann_window(c.win_length, periodic=False, device=device),
                "freqs": torch.fft.rfftfreq(c.n_fft, 1.0 / c.sampling_rate).to(device),
            }
        return self._consts[key]

    # ---- per-frame measurements ------------------------------------------------------------------------------
    def _frame_features(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """x [B, T] float32 (zero beyond lengths). Returns raw features [B, N, d], frames per item [B], F0 Hz [B, N]."""
        c = self.config
        k = self._constants(x.device)
        hop, win = c.hop_length, c.win_length
        tau_min = max(2, int(math.floor(c.sampling_rate / c.f0_max)))
        tau_max = int(math.ceil(c.sampling_rate / c.f0_min))
        B, T = x.shape
        N = c.num_feature_frames(T)
        n_frames = (lengths + hop - 1) // hop
        plen = win + tau_max + 2  # pitch frame: integration window + lags (+1 for interpolation)
        left = max(win, plen) // 2 + hop
        xp = F.pad(x, (left, left + plen + hop))
        centre0 = left + hop // 2  # padded index of frame 0's centre
        spec_frames = xp[:, centre0 - win // 2:].unfold(-1, win, hop)[:, :N]  # [B, N, win]
        pitch_frames = xp[:, centre0 - plen // 2:].unfold(-1, plen, hop)[:, :N]  # [B, N, plen]

        # spectral
        spec = torch.fft.rfft(spec_frames * k["window"], n=c.n_fft)
        power = spec.real.square() + spec.imag.square()  # [B, N, n_fft/2+1]
        logmel = torch.log(power @ k["mel"] + 1e-8)
        mfcc = logmel @ k["dct"]
        energy_db = 10 * torch.log10(spec_frames.pow(2).mean(-1) + 1e-10)
        centroid = (power * k["freqs"]).sum(-1) / (power.sum(-1) + 1e-10) / 1000.0
        zcr = ((spec_frames[..., 1:] * spec_frames[..., :-1]) < 0).float().mean(-1)

        # pitch: YIN on frames of integration window + lags
        f0, cmndf_min = yin(pitch_frames, win, tau_min, tau_max, c.yin_threshold, c.sampling_rate)
        periodicity = (1 - cmndf_min).clamp(0, 1)

        valid = torch.arange(N, device=x.device)[None, :] < n_frames[:, None]
        loudest = energy_db.masked_fill(~valid, -1e9).amax(-1, keepdim=True)
        loud_enough = (energy_db > c.silence_db) & (energy_db > loudest - c.relative_silence_db)
        voiced = (cmndf_min < c.voicing_threshold) & loud_enough & valid
        log_f0 = torch.where(voiced, torch.log(f0), torch.zeros_like(f0))
        f0 = torch.where(voiced, f0, torch.zeros_like(f0))

        deltas = delta(torch.cat([mfcc, energy_db.unsqueeze(-1)], -1), n_frames)
        d_mfcc, d_energy = deltas[..., :-1], deltas[..., -1:]
        parts = ([logmel] if c.include_logmel else []) + [mfcc, d_mfcc]
        parts += [delta(d_mfcc, n_frames)] if c.include_delta2 else []
        parts += [energy_db.unsqueeze(-1), d_energy]
        parts += [t.unsqueeze(-1) for t in (log_f0, voiced.float(), periodicity, centroid, zcr)]
        feats = torch.cat(parts, -1) * valid.unsqueeze(-1)
        return feats, n_frames, f0

    def _voiced_column(self) -> tuple[int, int]:
        names = self.config.frame_feature_names
        return names.index("log_f0"), names.index("voiced")

    # ---- forward -----------------------------------------------------------------------------------------------
    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool | None = None, return_dict: bool | None = None, **kwargs):
        """input_values [B, T] (or [T]) mono waveform at config.sampling_rate; attention_mask [B, T], right-padded.
        Returns last_hidden_state [B, ceil(ceil(T/hop)/frame_stack), hidden_size]; padded tokens are zero.
        hidden_states (if asked): (raw stacked features, normalised tokens), both [B, tokens, hidden_size] so any
        layer index keeps the token count; [-1] == last_hidden_state. A token's dims are frame-major:
        token[:, j*d:(j+1)*d] is frame j of the stack (d = num_frame_features, names in frame_feature_names);
        see ``frame_features`` for the unstacked 50 Hz frames and the F0 in Hz."""
        c = self.config
        output_hidden_states = c.output_hidden_states if output_hidden_states is None else output_hidden_states
        return_dict = c.return_dict if return_dict is None else return_dict
        raw, n_frames, _ = self.frame_features(input_values, attention_mask)
        norm = (raw - self.feature_shift.float()) * self.feature_scale.float()
        i_f0, i_v = self._voiced_column()
        norm[..., i_f0] = norm[..., i_f0] * raw[..., i_v]  # unvoiced frames carry no pitch value
        valid = torch.arange(raw.shape[1], device=raw.device)[None, :] < n_frames[:, None]
        norm = norm * valid.unsqueeze(-1)
        tokens = stack_frames(norm, n_frames, c.frame_stack)
        dtype = self.feature_scale.dtype
        hidden = None
        if output_hidden_states:
            hidden = (stack_frames(raw, n_frames, c.frame_stack).to(dtype), tokens.to(dtype))
        tokens = tokens.to(dtype)
        if not return_dict:
            return (tokens, hidden) if hidden is not None else (tokens,)
        return BaseModelOutput(last_hidden_state=tokens, hidden_states=hidden)

    @torch.no_grad()
    def frame_features(self, input_values, attention_mask=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Unnormalised 50 Hz frame features before stacking: ([B, N, num_frame_features] (zeros past each item's
        frames), frames per item [B], F0 in Hz [B, N] (0 = unvoiced))."""
        x = as_float_batch(input_values, "input_values", ndim=2).to(self.feature_scale.device)
        lengths = lengths_from_mask(attention_mask, x)
        x = x * (torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None])
        return self._frame_features(x, lengths)

    def output_lengths(self, num_samples):
        """Tokens for a clip of ``num_samples`` samples (int -> int; a tensor of lengths -> tensor)."""
        if isinstance(num_samples, torch.Tensor):
            frames = (num_samples + self.config.hop_length - 1) // self.config.hop_length
            return (frames + self.config.frame_stack - 1) // self.config.frame_stack
        return self.config.num_output_frames(num_samples)

    # ---- normalisation statistics ------------------------------------------------------------------------------
    @torch.no_grad()
    def fit_normalization(self, waveforms: Iterable, batch_size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean/std of every per-frame feature over a dataset of 1-D waveforms (at config.sampling_rate).
        log_f0 statistics use voiced frames only (identity if none is voiced). Stores them in the parameters and
        in config.norm_mean/norm_std (so save_pretrained and from_config both keep them). Returns (mean, std)."""
        d = self.config.num_frame_features
        i_f0, i_v = self._voiced_column()
        s1, s2 = torch.zeros(d, dtype=torch.float64), torch.zeros(d, dtype=torch.float64)
        count = torch.zeros(d, dtype=torch.float64)
        batch: list[torch.Tensor] = []

        def flush():
            lengths = torch.tensor([len(w) for w in batch])
            x = torch.zeros(len(batch), int(lengths.max()))
            for i, w in enumerate(batch):
                x[i, : len(w)] = w
            device = self.feature_scale.device
            raw, n_frames, _ = self._frame_features(x.to(device), lengths.to(device))
            raw = raw.double().cpu()
            valid = (torch.arange(raw.shape[1])[None, :] < n_frames.cpu()[:, None]).double().unsqueeze(-1)
            w = valid.expand_as(raw).clone()
            w[..., i_f0] = w[..., i_f0] * raw[..., i_v]
            s1.add_((raw * w).sum((0, 1)))
            s2.add_((raw.pow(2) * w).sum((0, 1)))
            count.add_(w.sum((0, 1)))
            batch.clear()

        for wav in waveforms:
            w = _mono(wav).cpu()
            if w.numel() == 0:
                continue
            batch.append(w)
            if len(batch) >= batch_size:
                flush()
        if batch:
            flush()
        if float(count.max()) < 1:
            raise MediaError("fit_normalization needs at least one non-empty waveform")
        seen = count > 0  # log_f0 of a dataset without voiced frames keeps the identity
        mean = torch.where(seen, s1 / count.clamp_min(1), torch.zeros_like(s1))
        var = s2 / count.clamp_min(1) - mean.pow(2)
        std = torch.where(seen, var.clamp_min(0).sqrt().clamp_min(1e-4), torch.ones_like(s1))
        self.config.norm_mean, self.config.norm_std = stats_to_list(mean), stats_to_list(std)
        copy_param_(self.feature_shift, mean.float())
        copy_param_(self.feature_scale, (1.0 / std).float())
        return mean.float(), std.float()

    # ---- interpretable cues ------------------------------------------------------------------------------------
    @torch.no_grad()
    def summary_cues(self, waveform, sampling_rate: int | None = None) -> dict:
        """Interpretable clip-level numbers for grounded explanations (None where undefined, e.g. no voiced frame):
        duration_s, active_s (frames within relative_silence_db of the loudest), pitch_mean_hz, pitch_std_hz,
        pitch_range_semitones (5th-95th percentile), voiced_ratio (voiced / active frames), energy_db_mean,
        energy_db_std (active frames, dBFS), speaking_rate_hz (energy peaks of voiced stretches per active
        second, a syllable-rate proxy), spectral_centroid_hz (active frames)."""
        c = self.config
        w = _mono(waveform)
        if sampling_rate is not None and int(sampling_rate) != c.sampling_rate:
            from scipy.signal import resample_poly

            g = math.gcd(int(sampling_rate), c.sampling_rate)
            w = torch.from_numpy(resample_poly(w.cpu().numpy(), c.sampling_rate // g, int(sampling_rate) // g)).float()
        if w.numel() == 0:
            raise MediaError("summary_cues: empty waveform")
        device = self.feature_scale.device
        raw, _, f0 = self._frame_features(w[None].to(device), torch.tensor([w.numel()], device=device))
        return summarise_cues(raw[0], f0[0], c, w.numel())


def _mono(waveform) -> torch.Tensor:
    x = as_float_batch(waveform, "waveform", ndim=2)
    if x.shape[0] != 1:
        raise MediaError(f"expected one mono 1-D waveform, got shape {tuple(x.shape)} (mix channels down first)")
    return x[0]
