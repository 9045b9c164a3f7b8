"""Measured prosodic cues of a speech recording, so that training explanations cite facts about the actual
audio rather than invented ones. Cues (all on 16 kHz mono):

  duration_s   whole file length          active_s     non-silent length (librosa.effects.split, 35 dB)
  f0_mean_hz   mean pYIN pitch of voiced frames   f0_std_hz   its standard deviation (pitch variability)
  voiced_ratio voiced frames / active frames      rms_db      mean RMS energy of active frames, dBFS
  onset_rate   spectral onsets per active second (a tempo / speaking-rate proxy)

Results are cached as one JSON file per recording under $AFFECTLLM_CACHE/cues (default ~/.cache/affectllm),
keyed by absolute path + mtime + size + CUES_VERSION, so a second pass over a corpus is instant."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ..cstderr import captured_c_stderr
from ..errors import MediaError
from .paths import cache_dir

CUES_VERSION = 1
SR = 16000
FMIN, FMAX = 60.0, 600.0
FRAME, HOP = 1024, 256
TOP_DB = 35.0
MIN_ONSET = 1.0  # onset-strength units (dB-spectral flux); steady tones stay below 0.1, speech peaks at 8-20
CUE_KEYS = ("duration_s", "active_s", "f0_mean_hz", "f0_std_hz", "voiced_ratio", "rms_db", "onset_rate")


def load_audio(path: str | Path, sr: int = SR) -> np.ndarray:
    """Mono float32 at `sr`: soundfile for wav/flac/ogg, PyAV for containers (mp4, m4a, mp3)."""
    path = str(path)
    if not os.path.isfile(path):
        raise MediaError(f"audio file not found: {path}")
    try:
        import soundfile as sf
        with captured_c_stderr():  # libmpg123 prints resync notes on a damaged MP3 to fd 2 (as in media.py)
            y, native = sf.read(path, dtype="float32", always_2d=True)
        y = y.mean(axis=1)
    except Exception:  # not a soundfile format: decode the audio track with PyAV
        y, native = _decode_av(path)
    if y.size == 0:
        raise MediaError(f"audio file is empty: {path}")
    if native != sr:
        import librosa
        y = librosa.resample(y, orig_sr=native, target_sr=sr)
    return np.ascontiguousarray(y, dtype=np.float32)


def _decode_av(path: str) -> tuple[np.ndarray, int]:
    import av
    try:
        with av.open(path) as c:
            if not c.streams.audio:
                raise MediaError(f"no audio track in {path}")
            stream = c.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=stream.rate)
            chunks = [r.to_ndarray().reshape(-1) for f in c.decode(stream) for r in resampler.resample(f)]
            chunks += [r.to_ndarray().reshape(-1) for r in resampler.resample(None)]
            return (np.concatenate(chunks) if chunks else np.zeros(0, np.float32)), stream.rate
    except MediaError:
        raise
    except Exception as e:
        raise MediaError(f"cannot decode audio of {path}: {e}") from None


def compute_speech_cues(y: np.ndarray, sr: int = SR) -> dict:
    """The CUE_KEYS statistics of a mono signal (see module docstring); f0 values are None without voicing."""
    import librosa
    y = np.asarray(y, dtype=np.float32)
    duration = len(y) / sr
    rms = librosa.feature.rms(y=y, frame_length=FRAME, hop_length=HOP)[0]
    rms_db = 20 * np.log10(np.maximum(rms, 1e-10))
    active = rms_db > rms_db.max() - TOP_DB
    intervals = librosa.effects.split(y, top_db=TOP_DB, frame_length=FRAME, hop_length=HOP)
    active_s = float(sum(e - s for s, e in intervals)) / sr
    f0, voiced, _ = librosa.pyin(y, fmin=FMIN, fmax=FMAX, sr=sr, frame_length=FRAME, hop_length=HOP)
    n = min(len(voiced), len(active))
    voiced_f0 = f0[:n][voiced[:n] & active[:n] & np.isfinite(f0[:n])]
    env = librosa.onset.onset_strength(y=y, sr=sr, hop_length=HOP)
    # onset_detect normalises the envelope, so a steady signal would yield noise peaks: require a real rise (dB)
    onsets = librosa.onset.onset_detect(onset_envelope=env, sr=sr, hop_length=HOP) if env.max() >= MIN_ONSET else []
    mean_rms = float(np.mean(rms[active])) if active.any() else 0.0
    return {
        "duration_s": duration,
        "active_s": active_s,
        "f0_mean_hz": float(voiced_f0.mean()) if voiced_f0.size else None,
        "f0_std_hz": float(voiced_f0.std()) if voiced_f0.size else None,
        "voiced_ratio": float(voiced_f0.size / max(int(active[:n].sum()), 1)),
        "rms_db": float(20 * np.log10(max(mean_rms, 1e-10))),
        "onset_rate": float(len(onsets) / active_s) if active_s > 0 else 0.0,
    }


def _cache_path(path: Path) -> Path:
    st = path.stat()
    key = f"{path.resolve()}|{st.st_mtime_ns}|{st.st_size}|v{CUES_VERSION}|{SR}|{FMIN}-{FMAX}"
    digest = hashlib.sha1(key.encode()).hexdigest()
    return cache_dir() / "cues" / digest[:2] / f"{digest}.json"


def speech_cues(path: str | Path, use_cache: bool = True) -> dict:
    """Cues of one recording, from the JSON cache when the file is unchanged; computed (and cached) otherwise."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"audio file not found: {path}")
    cpath = _cache_path(path)
    if use_cache and cpath.is_file():
        try:
            return json.loads(cpath.read_text())["cues"]
        except (ValueError, KeyError):
            pass  # a torn or foreign file: recompute and overwrite
    cues = compute_speech_cues(load_audio(path))
    if use_cache:
        cpath.parent.mkdir(parents=True, exist_ok=True)
        tmp = cpath.with_name(cpath.name + f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"path": str(path.resolve()), "version": CUES_VERSION, "cues": cues}))
        os.replace(tmp, cpath)
    return cues


def baseline_cues(paths: list[str | Path], use_cache: bool = True) -> dict | None:
    """Mean of each cue over reference recordings (e.g. a speaker's neutral utterances); None if no paths."""
    rows = [speech_cues(p, use_cache) for p in paths]
    if not rows:
        return None
    out = {}
    for k in CUE_KEYS:
        vals = [r[k] for r in rows if r.get(k) is not None]
        out[k] = float(np.mean(vals)) if vals else None
    out["n_files"] = len(rows)
    return out
