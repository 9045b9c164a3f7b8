"""Safe media decoding: audio, images and video into plain numpy arrays, with limits and clear errors.

Everything a user hands us (a path, bytes from an HTTP request, a file object) passes through here before a
tower sees it. So this module checks size, duration and pixel limits from headers *before* decoding (and again
while decoding, in case the headers lie), and turns every decoder failure (soundfile, PyAV, PIL) into one
`MediaError` that names the file and the problem, chained to the library error.
Decoders: soundfile (bundled libsndfile) for wav/flac/ogg/mp3; PyAV (bundled FFmpeg) for everything else and as
the fallback; PIL for images. Heavy libraries are imported lazily so `import affectllm.media` stays cheap."""
from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from math import gcd
from pathlib import Path
from typing import Any

import numpy as np

from .errors import MediaError

__all__ = ["MediaLimits", "VideoClip", "load_audio", "load_image", "load_video", "detect_kind"]

_EXT = {  # extension -> (kind, format); the format picks the decoder
    **{e: ("audio", e[1:]) for e in (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac", ".opus")},
    ".oga": ("audio", "ogg"), ".weba": ("audio", "webm"),
    **{e: ("video", e[1:]) for e in (".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v")},
    **{e: ("image", e[1:]) for e in (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")},
}
_MAGIC = (  # (offset, bytes, kind, format): first match wins; RIFF, ftyp and MPEG sync are handled in _sniff
    (0, b"fLaC", "audio", "flac"), (0, b"OggS", "audio", "ogg"), (0, b"ID3", "audio", "mp3"),
    (0, b"\x89PNG\r\n\x1a\n", "image", "png"), (0, b"\xff\xd8\xff", "image", "jpeg"), (0, b"GIF8", "image", "gif"),
    (0, b"II*\x00", "image", "tiff"), (0, b"MM\x00*", "image", "tiff"), (0, b"\x1aE\xdf\xa3", "video", "mkv"),
    (4, b"moov", "video", "mp4"), (4, b"mdat", "video", "mp4"), (4, b"wide", "video", "mp4"),
)
_RIFF = {b"WAVE": ("audio", "wav"), b"AVI ": ("video", "avi"), b"WEBP": ("image", "webp")}
_SOUNDFILE_FORMATS = {"wav", "flac", "ogg", "mp3"}
_CONTAINERS = {"mp4", "mkv", "ogg"}  # magic bytes alone cannot tell audio-only from video for these


@dataclass(frozen=True)
class MediaLimits:
    """Upper bounds that protect a server from hostile or accidental huge inputs."""

    max_file_bytes: int = 200 * 1024 * 1024
    max_audio_seconds: float = 60.0
    max_video_seconds: float = 120.0  # also bounds a video's own audio track
    max_frames: int = 64  # most frames one `load_video` call may return
    max_pixels: int = 4096 * 4096  # per image or video frame
    min_audio_samples: int = 1


@dataclass
class VideoClip:
    """Uniformly sampled frames of a clip plus its (resampled, mono) audio track, if it has one."""

    frames: np.ndarray  # uint8 [N, H, W, 3] RGB
    timestamps: np.ndarray  # float64 [N], seconds from the first frame
    fps: float
    duration: float  # seconds
    audio: np.ndarray | None  # float32 [S] at `sampling_rate`; None without an audio stream (or with_audio=False)
    sampling_rate: int | None


@dataclass
class _Source:
    """A resolved input: a display name for messages plus either a path or the bytes themselves."""

    name: str
    path: Path | None
    data: bytes | None

    def open(self) -> Any:  # a fresh handle each time: decoders consume file objects
        return str(self.path) if self.path is not None else io.BytesIO(self.data)

    def head(self, n: int = 64) -> bytes:
        if self.data is not None:
            return self.data[:n]
        with open(self.path, "rb") as f:
            return f.read(n)

    @property
    def ext(self) -> str:
        return Path(self.name).suffix.lower()


def _is_tensor(x: Any) -> bool:
    """A torch tensor, recognised without importing torch (file objects also have `detach`)."""
    return hasattr(x, "detach") and hasattr(x, "numpy")


def _reason(e: BaseException) -> str:
    """One line from a library exception (FFmpeg errors carry `strerror`, others a message)."""
    return " ".join(str(getattr(e, "strerror", None) or str(e) or type(e).__name__).split())


def _resolve(src: Any, limits: MediaLimits) -> _Source:
    """Check existence, emptiness and byte size; read file objects into memory (bounded by the limit)."""
    cap = f"over the limit max_file_bytes ({limits.max_file_bytes} bytes)"
    if isinstance(src, (str, os.PathLike)):
        p = Path(src)
        if not p.exists():
            raise MediaError(f"{p}: file not found")
        if not p.is_file():
            raise MediaError(f"{p}: not a regular file")
        size = p.stat().st_size
        if size == 0:
            raise MediaError(f"{p}: empty file (0 bytes)")
        if size > limits.max_file_bytes:
            raise MediaError(f"{p}: file is {size} bytes, {cap}")
        return _Source(str(p), p, None)
    if isinstance(src, (bytes, bytearray, memoryview)):
        data, name = bytes(src), "<bytes>"
    elif hasattr(src, "read"):
        name = str(getattr(src, "name", None) or "<stream>")
        data = src.read(limits.max_file_bytes + 1)
        if not isinstance(data, (bytes, bytearray)):
            raise MediaError(f"{name}: file object must be opened in binary mode")
    else:
        raise MediaError(f"unsupported media source {type(src).__name__} (expected a path, bytes or a file object)")
    if not data:
        raise MediaError(f"{name}: empty input (0 bytes)")
    if len(data) > limits.max_file_bytes:
        raise MediaError(f"{name}: input is {cap}")
    return _Source(name, None, bytes(data))


def _sniff(head: bytes) -> tuple[str, str] | None:
    """(kind, format) from magic bytes, or None when the bytes match nothing we decode."""
    if head[:4] == b"RIFF" and head[8:12] in _RIFF:
        return _RIFF[head[8:12]]
    if head[4:8] == b"ftyp":  # ISO media: the brand separates .m4a from video
        return ("audio", "m4a") if head[8:12] in (b"M4A ", b"M4B ", b"M4P ", b"F4A ") else ("video", "mp4")
    for offset, magic, kind, fmt in _MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return kind, fmt
    if len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:  # MPEG audio frame sync
        return ("audio", "aac") if head[1] & 0xF6 == 0xF0 else ("audio", "mp3")  # layer bits 00: ADTS AAC
    if head[:2] == b"BM":
        return "image", "bmp"
    return None


def _classify(source: _Source) -> tuple[str, str]:
    """Kind and format from content and extension: content wins, except that a generic container (mp4/mkv/ogg)
    keeps the kind its extension claims (an .m4a with an `isom` brand is still audio)."""
    by_ext, by_magic = _EXT.get(source.ext), _sniff(source.head())
    if by_magic and by_ext and by_magic[1] in _CONTAINERS:
        return by_ext[0], by_magic[1]
    if by_magic or by_ext:
        return by_magic or by_ext
    what = f"extension '{source.ext}'" if source.ext else "content (no known magic bytes)"
    raise MediaError(f"{source.name}: unsupported format: {what}; supported extensions: {', '.join(sorted(_EXT))}")


def detect_kind(path_or_bytes: str | os.PathLike | bytes) -> str:
    """'audio', 'image' or 'video', from magic bytes and the extension (see `_classify`)."""
    return _classify(_resolve(path_or_bytes, MediaLimits(max_file_bytes=1 << 62)))[0]


def _require_kind(source: _Source, wanted: tuple[str, ...], loader: str) -> str:
    kind, fmt = _classify(source)
    if kind not in wanted:
        hint = "no video stream: " if wanted == ("video",) and kind == "audio" else ""
        raise MediaError(f"{source.name}: {hint}unsupported format for {loader}: "
                         f"this is {kind} ({fmt}), not {'/'.join(wanted)}")
    return fmt


def _too_long(name: str, seconds: float, limit: float, what: str) -> MediaError:
    return MediaError(f"{name}: duration {seconds:.1f} s is over the limit {what} ({limit:g} s)")


# ----------------------------------------------------------------------------------------------------- audio
def _riff_truncated(source: _Source) -> bool:
    """True when a WAV's `data` chunk claims more bytes than the file holds: libsndfile silently reads the
    prefix, so a cut-off upload would otherwise pass as a shorter clip."""
    head = source.head(1 << 16)
    total = len(source.data) if source.data is not None else source.path.stat().st_size
    pos = 12
    while pos + 8 <= len(head):
        cid, size = head[pos:pos + 4], int.from_bytes(head[pos + 4:pos + 8], "little")
        if cid == b"data":
            return size not in (0, 0xFFFFFFFF) and pos + 8 + size > total  # 0/-1: length unknown (streamed)
        pos += 8 + size + (size & 1)
    return False


def _decode_soundfile(source: _Source, max_seconds: float, limit_name: str) -> tuple[np.ndarray, int]:
    import soundfile as sf

    from .cstderr import captured_c_stderr

    with captured_c_stderr(), sf.SoundFile(source.open()) as f:  # libmpg123 prints resync notes to fd 2
        sr, declared, container = f.samplerate, f.frames, f.format
        if declared > 0 and declared / sr > max_seconds:
            raise _too_long(source.name, declared / sr, max_seconds, limit_name)
        cap = int(max_seconds * sr) + 1
        x = f.read(frames=cap, dtype="float32", always_2d=True)
    if len(x) >= cap:
        raise _too_long(source.name, len(x) / sr, max_seconds, limit_name)
    if container == "WAV" and _riff_truncated(source):
        raise MediaError(f"{source.name}: truncated WAV file (data chunk is cut off)")
    if container in ("MP3", "MPEG") and declared > 0 and len(x) < declared - max(0.05 * declared, 4 * 1152):
        raise MediaError(f"{source.name}: truncated MP3 ({len(x) / sr:.2f} s decoded, "
                         f"header says {declared / sr:.2f} s)")
    return x.T, sr


# libsndfile's generic messages, as said about a file that exists and was read: what they mean there
_SF_MISLEADING = {"file does not exist or is not a regular file": "no valid {fmt} stream found",
                  "unspecified internal error": "the {fmt} decoder failed on the data",
                  "supported file format but file is malformed": "malformed {fmt} data"}


def _sf_reason(e: BaseException, fmt: str) -> str:
    """soundfile's message without its "Error opening '<path>': " prefix (the name leads our line already) and with
    libsndfile's misleading generic texts replaced (it says "does not exist" of a corrupt MP3 that exists)."""
    text = re.sub(r"^Error opening .*?: ", "", _reason(e)).removeprefix("Error : ").rstrip(".")
    for needle, meaning in _SF_MISLEADING.items():
        if needle in text.lower():
            return meaning.format(fmt=fmt.upper())
    return text


def _av_open(source: _Source):
    import av

    try:
        return av.open(source.open(), metadata_errors="ignore")
    except Exception as e:
        raise MediaError(f"{source.name}: cannot open media container (corrupt, truncated or unsupported): "
                         f"{_reason(e)}") from e


def _header_seconds(container, stream) -> float | None:
    """The stream's declared duration; the container's only when this stream is all it holds."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration and len(container.streams) == 1:
        return container.duration / 1e6
    return None


def _decode_av_audio(source: _Source, max_seconds: float, limit_name: str) -> tuple[np.ndarray, int]:
    """All samples of the first audio stream as float32 [C, S] at the native rate."""
    import av

    with _av_open(source) as c:
        if not c.streams.audio:
            raise MediaError(f"{source.name}: no audio stream in the file")
        st = c.streams.audio[0]
        header = _header_seconds(c, st)
        declared = header or (c.duration / 1e6 if c.duration else None)
        if declared and declared > max_seconds:
            raise _too_long(source.name, declared, max_seconds, limit_name)
        resampler = av.AudioResampler(format="fltp")  # planar float32, native layout and rate
        chunks, n, sr = [], 0, st.rate
        try:
            for frame in c.decode(st):
                for out in resampler.resample(frame):
                    sr, n = out.sample_rate, n + out.samples
                    chunks.append(out.to_ndarray())
                if sr and n / sr > max_seconds + 1.0:
                    raise _too_long(source.name, n / sr, max_seconds, limit_name)
            chunks += [o.to_ndarray() for o in resampler.resample(None)]
        except MediaError:
            raise
        except Exception as e:
            raise MediaError(f"{source.name}: corrupt or truncated audio stream: {_reason(e)}") from e
    x = np.concatenate(chunks, axis=1) if chunks else np.zeros((1, 0), np.float32)
    if header and x.shape[1] and x.shape[1] / sr < header - max(0.25, 0.1 * header):
        raise MediaError(f"{source.name}: truncated audio ({x.shape[1] / sr:.2f} s decoded, "
                         f"header says {header:.2f} s)")
    return x, sr


def _decode_audio_file(source: _Source, fmt: str, max_seconds: float, limit_name: str) -> tuple[np.ndarray, int]:
    """soundfile for the formats libsndfile knows; PyAV otherwise and whenever soundfile fails."""
    sf_error = None
    if fmt in _SOUNDFILE_FORMATS:
        try:
            return _decode_soundfile(source, max_seconds, limit_name)
        except MediaError:
            raise
        except Exception as e:  # libsndfile rejects it: let FFmpeg try before giving up
            sf_error = e
    try:
        x, sr = _decode_av_audio(source, max_seconds, limit_name)
        if sf_error is None or x.shape[1]:
            return x, sr
        av_error = "no audio decoded"
    except MediaError as e:
        if sf_error is None:
            raise
        av_error = str(e).removeprefix(f"{source.name}: ")
    raise MediaError(f"{source.name}: cannot decode audio (corrupt, truncated or unsupported): "
                     f"soundfile: {_sf_reason(sf_error, fmt)}; PyAV: {av_error}") from sf_error


def _array_audio(arr: Any) -> np.ndarray:
    """An in-memory signal as float32 [C, S]; integers are scaled to [-1, 1]. A 2-D array's shorter axis is taken
    as channels, so both [C, S] and [S, C] work."""
    if _is_tensor(arr):
        arr = arr.detach().cpu()
        arr = (arr.float() if arr.is_floating_point() else arr).numpy()
    x = np.asarray(arr)
    if x.ndim not in (1, 2):
        raise MediaError(f"<array>: audio array must be 1-D or 2-D, got shape {x.shape}")
    x = x[None, :] if x.ndim == 1 else (x if x.shape[0] <= x.shape[1] else x.T)
    if np.issubdtype(x.dtype, np.integer):  # int16 -> x / 32768, uint8 -> (x - 128) / 128
        info = np.iinfo(x.dtype)
        half = (int(info.max) + 1) / 2 if info.min == 0 else -float(info.min)
        x = (x.astype(np.float64) - (half if info.min == 0 else 0.0)) / half
    elif not np.issubdtype(x.dtype, np.floating):
        raise MediaError(f"<array>: audio array has unsupported dtype {x.dtype}")
    return x.astype(np.float32, copy=False)


def _resample(x: np.ndarray, sr: int, target: int) -> np.ndarray:
    """Polyphase resampling (anti-aliased, exact for 44.1k/48k -> 16k); FFT resampling only for awkward ratios
    such as 16001 -> 16000, whose polyphase filter would be enormous."""
    if sr == target:
        return x
    from scipy.signal import resample, resample_poly  # here, not above: importing scipy.signal takes ~1 s

    g = gcd(int(sr), int(target))
    up, down = target // g, sr // g
    if max(up, down) <= 4096:
        return resample_poly(x, up, down, axis=-1)
    return resample(x, int(round(x.shape[-1] * target / sr)), axis=-1)


def _finish_audio(x: np.ndarray, sr: int, name: str, target: int, mono: bool, limits: MediaLimits,
                  max_seconds: float, limit_name: str) -> np.ndarray:
    """Validate decoded samples, then mix down and resample."""
    if x.shape[-1] == 0:
        raise MediaError(f"{name}: contains no audio samples (zero-length audio)")
    if x.shape[-1] < limits.min_audio_samples:
        raise MediaError(f"{name}: only {x.shape[-1]} audio samples, fewer than min_audio_samples "
                         f"({limits.min_audio_samples})")
    if not np.isfinite(x).all():
        raise MediaError(f"{name}: audio contains non-finite samples (NaN or inf)")
    if x.shape[-1] / sr > max_seconds:
        raise _too_long(name, x.shape[-1] / sr, max_seconds, limit_name)
    return np.ascontiguousarray(_resample(x.mean(axis=0) if mono else x, sr, target), dtype=np.float32)


def load_audio(src: Any, sampling_rate: int = 16000, limits: MediaLimits | None = None,
               mono: bool = True) -> np.ndarray:
    """Decode `src` (path, bytes, binary file object, array/tensor, or `(array, source_rate)`) to float32 at
    `sampling_rate`: [S] when `mono`, else [C, S]. A bare array is taken to be at `sampling_rate` already.
    Video files give their audio track."""
    limits = limits or MediaLimits()
    if not (isinstance(sampling_rate, (int, np.integer)) and sampling_rate > 0):
        raise MediaError(f"sampling_rate must be a positive integer, got {sampling_rate!r}")
    rest = (sampling_rate, mono, limits, limits.max_audio_seconds, "max_audio_seconds")
    if isinstance(src, tuple) and len(src) == 2:
        arr, sr = src
        if not (isinstance(sr, (int, np.integer)) and sr > 0):
            raise MediaError(f"<array>: source sampling rate must be a positive integer, got {sr!r}")
        return _finish_audio(_array_audio(arr), int(sr), "<array>", *rest)
    if isinstance(src, np.ndarray) or _is_tensor(src):
        return _finish_audio(_array_audio(src), sampling_rate, "<array>", *rest)
    source = _resolve(src, limits)
    fmt = _require_kind(source, ("audio", "video"), "load_audio")
    x, sr = _decode_audio_file(source, fmt, limits.max_audio_seconds, "max_audio_seconds")
    return _finish_audio(x, sr, source.name, *rest)


# ----------------------------------------------------------------------------------------------------- image
def _check_pixels(name: str, w: int, h: int, limits: MediaLimits) -> None:
    if w <= 0 or h <= 0:
        raise MediaError(f"{name}: image has zero size ({w}x{h})")
    if w * h > limits.max_pixels:
        raise MediaError(f"{name}: image too large: {w}x{h} = {w * h} pixels, over the limit max_pixels "
                         f"({limits.max_pixels})")


def _pil_to_rgb(im) -> np.ndarray:
    """RGB uint8 from any PIL mode: alpha is composited over white (transparent pixels often hide junk colours),
    16-bit grey is scaled down rather than clipped."""
    from PIL import Image

    if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        a = np.asarray(im, dtype=np.float64)
        a = a / 257.0 if im.mode != "F" and a.max(initial=0) > 255 else a
        return np.repeat(np.clip(np.rint(a), 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return np.array(im.convert("RGB"), dtype=np.uint8)


def _array_image(arr: Any, limits: MediaLimits) -> np.ndarray:
    """[H, W], [H, W, C] or [C, H, W] with C in 1/3/4; floats with max <= 1 are taken as [0, 1] intensities."""
    a = np.asarray(arr.detach().cpu().numpy() if _is_tensor(arr) else arr)
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[2] not in (1, 3, 4):
        a = a.transpose(1, 2, 0)
    a = a[..., None] if a.ndim == 2 else a
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise MediaError(f"<array>: image array must be [H, W], [H, W, C] or [C, H, W] with C in 1/3/4, got {a.shape}")
    _check_pixels("<array>", a.shape[1], a.shape[0], limits)
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise MediaError("<array>: image contains non-finite values")
        a = np.rint(a * 255.0 if a.max(initial=0) <= 1.0 else a)
    a = np.clip(a, 0, 255).astype(np.uint8)
    if a.shape[2] == 4:
        alpha = a[..., 3:4] / 255.0
        a = np.rint(a[..., :3] * alpha + 255.0 * (1 - alpha)).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a)


def load_image(src: Any, limits: MediaLimits | None = None) -> np.ndarray:
    """Decode `src` (path, bytes, file object, PIL image or array) to RGB uint8 [H, W, 3]. The pixel limit is
    checked from the header before the pixels are decoded (a 60-byte PNG can claim 100k x 100k)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    limits = limits or MediaLimits()
    if isinstance(src, Image.Image):
        _check_pixels("<PIL image>", *src.size, limits)
        return _pil_to_rgb(src)
    if isinstance(src, np.ndarray) or _is_tensor(src):
        return _array_image(src, limits)
    source = _resolve(src, limits)
    _require_kind(source, ("image",), "load_image")
    try:
        im = Image.open(source.open())
    except Image.DecompressionBombError as e:
        raise MediaError(f"{source.name}: image too large (header claims too many pixels): {_reason(e)}") from e
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise MediaError(f"{source.name}: cannot decode image (corrupt or unsupported): {_reason(e)}") from e
    with im:
        _check_pixels(source.name, *im.size, limits)
        try:
            im.load()
        except Exception as e:
            raise MediaError(f"{source.name}: corrupt or truncated image: {_reason(e)}") from e
        try:
            im = ImageOps.exif_transpose(im)  # phone photos store their rotation in EXIF
        except Exception:
            pass  # a malformed EXIF block is no reason to reject pixels that decoded fine
        return _pil_to_rgb(im)


# ----------------------------------------------------------------------------------------------------- video
def _pick(times: np.ndarray, n: int, span: float) -> np.ndarray:
    """Indices of the frames nearest the centres of `n` equal segments of the clip: uniform in time (which
    differs from uniform in frame index under a variable frame rate), strictly increasing, never repeated."""
    targets = (np.arange(n) + 0.5) * span / n + times[0]
    right = np.clip(np.searchsorted(times, targets), 1, len(times) - 1)
    left = right - 1
    idx = np.where(targets - times[left] <= times[right] - targets + 1e-9, left, right)
    for i in range(1, n):  # distinct and in range; feasible because n <= len(times)
        idx[i] = max(idx[i], idx[i - 1] + 1)
    return np.minimum(idx, np.arange(len(times) - n, len(times)))  # min of two increasing runs stays increasing


def load_video(src: Any, num_frames: int = 8, limits: MediaLimits | None = None, with_audio: bool = True,
               sampling_rate: int = 16000) -> VideoClip:
    """Decode `num_frames` frames sampled uniformly over the clip (all of them if it has fewer) plus its audio.

    Demuxing first (no decoding) gives every frame's timestamp and keyframe, the true frame count and a truncation
    check; decoding then touches only the GOPs that hold chosen frames and converts only those frames to RGB."""
    limits = limits or MediaLimits()
    if not 1 <= num_frames <= limits.max_frames:
        raise MediaError(f"num_frames={num_frames} must be between 1 and max_frames ({limits.max_frames})")
    source = _resolve(src, limits)
    _require_kind(source, ("video",), "load_video")
    with _av_open(source) as c:
        if not c.streams.video:
            raise MediaError(f"{source.name}: no video stream in the file (audio-only or empty container)")
        v = c.streams.video[0]
        _check_pixels(source.name, v.codec_context.width, v.codec_context.height, limits)
        declared = _header_seconds(c, v) or (c.duration / 1e6 if c.duration else None)
        if declared and declared > limits.max_video_seconds:
            raise _too_long(source.name, declared, limits.max_video_seconds, "max_video_seconds")
        rate = v.average_rate or v.guessed_rate
        keys, keyframes, end, frame_s = [], [], 0.0, 1 / float(rate) if rate else 0.0
        try:
            for p in c.demux():
                t = p.pts if p.pts is not None else p.dts
                if p.size == 0 or t is None or p.time_base is None:
                    continue
                is_video = p.stream.index == v.index
                length = float(p.duration * p.time_base) if p.duration else frame_s if is_video else 0.0
                end = max(end, float(t * p.time_base) + length)
                keys += [t] if is_video else []
                keyframes += [t] if is_video and p.is_keyframe else []
                if end > limits.max_video_seconds + 1.0:  # the header had no duration, or lied
                    raise _too_long(source.name, end, limits.max_video_seconds, "max_video_seconds")
        except MediaError:
            raise
        except Exception as e:
            raise MediaError(f"{source.name}: corrupt or truncated video: {_reason(e)}") from e
        if not keys:
            raise MediaError(f"{source.name}: video stream has no frames")
        total = c.duration / 1e6 if c.duration else None
        if total and end < total - max(0.2, 0.1 * total):
            raise MediaError(f"{source.name}: truncated video (data ends at {end:.2f} s, header says {total:.2f} s)")
        tb = float(v.time_base)
        keys = np.unique(np.asarray(keys, dtype=np.int64))
        times = (keys - keys[0]) * tb
        fps = float(rate) if rate else (len(keys) - 1) / max(times[-1], 1e-9)
        span = times[-1] + (1.0 / fps if fps > 0 else 0.0)
        duration = float(v.duration * tb) if v.duration else span
        has_audio = bool(c.streams.audio)
    chosen = keys[_pick(times, num_frames, span)] if num_frames < len(keys) else keys
    frames = _decode_chosen(source, chosen, np.unique(np.asarray(keyframes or keys[:1], dtype=np.int64)))
    audio = None
    if with_audio and has_audio:
        x, sr = _decode_audio_file(source, "av", limits.max_video_seconds, "max_video_seconds")
        audio = _finish_audio(x, sr, source.name, sampling_rate, True, limits, limits.max_video_seconds,
                              "max_video_seconds")
    return VideoClip(frames=frames, timestamps=(chosen - keys[0]) * tb, fps=fps, duration=duration, audio=audio,
                     sampling_rate=sampling_rate if audio is not None else None)


def _decode_chosen(source: _Source, chosen: np.ndarray, keyframes: np.ndarray) -> np.ndarray:
    """Decode only what the chosen frames need: seek to the keyframe before a chosen frame when that keyframe
    lies ahead of the decoder (a 2-minute clip with 1-s GOPs then decodes ~8 GOPs, not 3000 frames), and convert
    to RGB only the frame at (or nearest) each chosen pts."""
    out: list[np.ndarray] = []
    size: dict[str, int] = {}  # every frame is scaled to the first one's size (resolution may change mid-stream)
    with _av_open(source) as c:
        v = c.streams.video[0]
        v.thread_type = "AUTO"
        frames, pos, last = c.decode(v), int(keyframes[0]), None
        try:
            for t in chosen:
                kf = int(keyframes[max(np.searchsorted(keyframes, t, side="right") - 1, 0)])
                if kf > pos:
                    c.seek(kf, stream=v, backward=True)  # also flushes the decoder
                    frames, last = c.decode(v), None
                for f in frames:
                    if f.pts is None:
                        continue
                    pos = max(pos, f.pts)
                    if f.pts >= t:
                        nearer_prev = last is not None and t - last.pts < f.pts - t
                        out.append(_rgb(last if nearer_prev else f, size))
                        last = f
                        break
                    last = f
                else:  # stream ended before t: the last decoded frame is the nearest one
                    if last is None:
                        break
                    out.append(_rgb(last, size))
        except Exception as e:
            raise MediaError(f"{source.name}: corrupt or truncated video stream: {_reason(e)}") from e
    if not out:
        raise MediaError(f"{source.name}: video stream has no decodable frames")
    out += [out[-1]] * (len(chosen) - len(out))  # the decoder gave fewer frames than the index listed
    return np.stack(out)


def _rgb(frame, size: dict[str, int]) -> np.ndarray:
    if not size:
        size.update(width=frame.width, height=frame.height)
    return frame.to_ndarray(format="rgb24", **size)
