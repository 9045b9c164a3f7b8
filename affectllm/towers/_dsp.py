"""Vectorised signal-processing pieces of the prosody tower (pitch, deltas, stacking, clip-level cues)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def yin(pitch_frames: torch.Tensor, win: int, tau_min: int, tau_max: int, threshold: float,
        sampling_rate: int) -> tuple[torch.Tensor, torch.Tensor]:
    """YIN (de Cheveigne & Kawahara 2002) on frames [..., win + tau_max + 2]: difference function by FFT
    cross-correlation and cumulative energies, cumulative-mean normalisation (CMNDF), the minimum of the first run
    of lags under ``threshold`` (global minimum if none), parabolic interpolation.
    Returns (F0 in Hz, CMNDF at the chosen lag: near 0 = strongly periodic)."""
    m = 1 << (pitch_frames.shape[-1] - 1).bit_length()  # no circular wrap for lags <= tau_max + 1
    spectrum = torch.fft.rfft(pitch_frames[..., :win], n=m).conj_physical() * torch.fft.rfft(pitch_frames, n=m)
    corr = torch.fft.irfft(spectrum, n=m)[..., : tau_max + 2]  # sum_j x_j x_{j+tau}, j < win
    sq = F.pad(pitch_frames.pow(2).cumsum(-1), (1, 0))
    lags = torch.arange(tau_max + 2, device=pitch_frames.device)
    e_lag = sq[..., win: win + tau_max + 2] - sq[..., : tau_max + 2]
    diff = (sq[..., win:win + 1] + e_lag - 2 * corr).clamp_min(0)  # d(tau), d(0) = 0
    cum = diff[..., 1:].cumsum(-1)
    cmndf = torch.ones_like(diff)
    cmndf[..., 1:] = diff[..., 1:] * lags[1:] / cum.clamp_min(1e-12)
    search = cmndf[..., tau_min: tau_max + 1]
    below = search < threshold
    pos = torch.arange(search.shape[-1], device=pitch_frames.device)
    never = torch.full_like(below[..., 0], 10**6, dtype=torch.long)
    first = torch.where(below.any(-1), below.float().argmax(-1), never)
    started = pos >= first.unsqueeze(-1)
    region = started & ((~below & started).cumsum(-1) == 0)  # the first run of lags under the threshold
    best = torch.where(region.any(-1), search.masked_fill(~region, float("inf")).argmin(-1), search.argmin(-1))
    tau = best + tau_min
    y0, y1, y2 = (cmndf.gather(-1, (tau + o).unsqueeze(-1)).squeeze(-1) for o in (-1, 0, 1))
    curv = y0 - 2 * y1 + y2
    shift = torch.where(curv > 1e-9, 0.5 * (y0 - y2) / curv.clamp_min(1e-9), torch.zeros_like(curv)).clamp(-1, 1)
    f0 = sampling_rate / (tau.float() + shift)
    return f0, y1


def delta(feats: torch.Tensor, n_frames: torch.Tensor, width: int = 2) -> torch.Tensor:
    """Regression deltas over time, edges replicated at each item's own last frame (padding-independent)."""
    B, N, d = feats.shape
    idx = torch.arange(-width, N + width, device=feats.device)[None, :]
    idx = torch.minimum(idx.clamp_min(0), (n_frames - 1).clamp_min(0)[:, None])
    ext = feats.gather(1, idx.unsqueeze(-1).expand(B, N + 2 * width, d))  # [B, N + 2w, d], edges replicated
    out = sum(n * (ext[:, width + n: width + n + N] - ext[:, width - n: width - n + N]) for n in range(1, width + 1))
    return out / (2 * sum(n * n for n in range(1, width + 1)))


def stack_frames(feats: torch.Tensor, n_frames: torch.Tensor, stack: int) -> torch.Tensor:
    """[B, N, d] -> [B, ceil(N/stack), stack*d]; a token's missing frames repeat the item's last frame;
    tokens past an item's own ceil(n/stack) are zero."""
    B, N, d = feats.shape
    M = -(-N // stack)
    idx = torch.arange(M * stack, device=feats.device)[None, :]
    idx = torch.minimum(idx, (n_frames - 1).clamp_min(0)[:, None])
    tokens = feats.gather(1, idx.unsqueeze(-1).expand(B, M * stack, d)).reshape(B, M, stack * d)
    n_tokens = (n_frames + stack - 1) // stack
    return tokens * (torch.arange(M, device=feats.device)[None, :] < n_tokens[:, None]).unsqueeze(-1)


def summarise_cues(raw: torch.Tensor, f0: torch.Tensor, c, num_samples: int) -> dict:
    """Clip-level cues from one clip's raw frame features [N, d] and F0 [N] (see ProsodyAudioEncoder.summary_cues)."""
    names = c.frame_feature_names
    raw, f0 = raw.double().cpu(), f0.double().cpu()
    energy = raw[:, names.index("energy_db")]
    voiced = raw[:, names.index("voiced")] > 0.5
    active = energy > max(float(energy.max()) - c.relative_silence_db, c.silence_db)
    hop_s = c.hop_length / c.sampling_rate
    out: dict = {"duration_s": num_samples / c.sampling_rate, "active_s": float(active.sum()) * hop_s}
    pitch = f0[voiced]
    out["pitch_mean_hz"] = float(pitch.mean()) if len(pitch) else None
    out["pitch_std_hz"] = float(pitch.std(unbiased=False)) if len(pitch) else None
    if len(pitch) >= 2:
        lo, hi = torch.quantile(pitch, torch.tensor([0.05, 0.95], dtype=pitch.dtype))
        out["pitch_range_semitones"] = float(12 * torch.log2(hi / lo))
    else:
        out["pitch_range_semitones"] = None
    n_active = int(active.sum())
    out["voiced_ratio"] = float(voiced.sum()) / n_active if n_active else 0.0
    out["energy_db_mean"] = float(energy[active].mean()) if n_active else None
    out["energy_db_std"] = float(energy[active].std(unbiased=False)) if n_active else None
    # syllable-rate proxy: energy peaks within voiced stretches that rise and fall >= 3 dB (hysteresis)
    smooth = F.avg_pool1d(energy[None, None].float(), 3, 1, 1, count_include_pad=False)[0, 0].tolist()
    peaks, lo, hi, rising, inside = 0, 0.0, 0.0, False, False
    for e, v in zip(smooth, voiced.tolist()):
        if not v:
            peaks, inside = peaks + (inside and rising), False
        elif not inside:  # a voiced onset is a rise
            inside, rising, hi = True, True, e
        elif rising:
            hi = max(hi, e)
            if e < hi - 3.0:
                peaks, lo, rising = peaks + 1, e, False
        else:
            lo = min(lo, e)
            if e > lo + 3.0:
                rising, hi = True, e
    peaks += inside and rising
    out["speaking_rate_hz"] = peaks / out["active_s"] if n_active else 0.0
    out["spectral_centroid_hz"] = float(raw[active, names.index("centroid_khz")].mean() * 1000) if n_active else None
    return out
