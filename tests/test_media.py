"""affectllm.media: real clips from ../shared/data (skipped when absent), every format generated here from known
signals (so decoded values can be checked), and one test per kind of bad input."""
from __future__ import annotations

import fractions
import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")
sf = pytest.importorskip("soundfile")
from PIL import Image  # noqa: E402

from affectllm.errors import MediaError  # noqa: E402
from affectllm.media import MediaLimits, VideoClip, detect_kind, load_audio, load_image, load_video  # noqa: E402

DATA = Path(os.environ.get("AFFECTLLM_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")
RAVDESS = "speech/ravdess/Actor_01/03-01-01-01-01-01-01.flac"
MER_MP4 = "av/mer2023/examples/sample_00000000.mp4"
MER_WAV = "av/mer2023/examples/sample_00000000.wav"
CKPLUS = "face/ckplus48/CK+48/happy/S010_006_00000013.png"


def real(rel: str) -> Path:
    p = DATA / rel
    if not p.is_file():
        pytest.skip(f"shared data not present: {p}")
    return p


def tone(freq: float, sr: int, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(sr * seconds)) / sr)).astype(np.float32)


def peak_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * sr / len(x))


def band_energy(x: np.ndarray, sr: int, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / sr)
    return float(spec[(f >= lo) & (f < hi)].sum() / spec.sum())


def write_av_audio(path: Path, x: np.ndarray, sr: int, codec: str) -> Path:
    """Encode mono float `x` with PyAV (the bundled FFmpeg has libmp3lame, aac, libopus)."""
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=sr)
        s.layout = "mono"
        c.start_encoding()
        n = s.codec_context.frame_size or 1024
        for i in range(0, len(x), n):
            fr = av.AudioFrame.from_ndarray(x[None, i:i + n], format="fltp", layout="mono")
            fr.sample_rate, fr.pts = sr, i
            for p in s.encode(fr):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


def square_frame(i: int, w: int = 64, h: int = 48) -> np.ndarray:
    """Frame i: red level 10*i everywhere, a white 8x8 square whose left edge is at x = 2*i."""
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = 10 * i
    img[10:18, 2 * i:2 * i + 8] = 255
    return img


def write_video(path: Path, vcodec: str, acodec: str | None = None, n: int = 20, fps: int = 10,
                options: dict | None = None, gop: int | None = None) -> Path:
    """n frames of `square_frame` at `fps`, plus (optionally) a 440 Hz tone for the clip's duration at 48 kHz.
    A short `gop` gives several keyframes, so the loader's seek-to-keyframe path runs."""
    with av.open(str(path), "w", options=options or {}) as c:
        v = c.add_stream(vcodec, rate=fps)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        v.bit_rate = 1_000_000  # high enough that red levels 10 apart stay distinguishable
        if gop:
            v.codec_context.gop_size = gop
        a = c.add_stream(acodec, rate=48000) if acodec else None
        if a is not None:
            a.layout = "mono"
        c.start_encoding()
        for i in range(n):
            fr = av.VideoFrame.from_ndarray(square_frame(i), format="rgb24")
            fr.pts, fr.time_base = i, fractions.Fraction(1, fps)
            for p in v.encode(fr):
                c.mux(p)
        for p in v.encode(None):
            c.mux(p)
        if a is not None:
            x, k = tone(440, 48000, n / fps, 0.3), a.codec_context.frame_size or 1024
            for i in range(0, len(x), k):
                fr = av.AudioFrame.from_ndarray(x[None, i:i + k], format="fltp", layout="mono")
                fr.sample_rate, fr.pts = 48000, i
                for p in a.encode(fr):
                    c.mux(p)
            for p in a.encode(None):
                c.mux(p)
    return path


def png_claiming(w: int, h: int) -> bytes:
    """A ~60-byte PNG whose header claims w x h pixels (a decompression bomb's calling card)."""
    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    """Every synthetic file, generated once: a 440 Hz tone at 44.1 kHz (48 kHz for Opus) in each audio format,
    and the moving-square clip in each container, with and without an audio track."""
    d = tmp_path_factory.mktemp("media")
    x = tone(440, 44100)
    out = {}
    for ext, fmt in (("wav", "WAV"), ("flac", "FLAC"), ("ogg", "OGG")):
        sf.write(d / f"tone.{ext}", x, 44100, format=fmt)
        out[ext] = d / f"tone.{ext}"
    out["mp3"] = write_av_audio(d / "tone.mp3", x, 44100, "libmp3lame")
    out["m4a"] = write_av_audio(d / "tone.m4a", x, 44100, "aac")
    out["opus"] = write_av_audio(d / "tone.opus", tone(440, 48000), 48000, "libopus")
    out["audio_only.mp4"] = write_av_audio(d / "audio_only.mp4", x, 44100, "aac")
    for ext, vc, ac in (("mp4", "libx264", "aac"), ("webm", "libvpx", "libopus"), ("mov", "libx264", "aac"),
                        ("mkv", "libx264", "libmp3lame"), ("avi", "mpeg4", "libmp3lame")):
        out[f"av.{ext}"] = write_video(d / f"av.{ext}", vc, ac, gop=4)
    out["silent.mp4"] = write_video(d / "silent.mp4", "libx264")
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)  # incompressible pixels
    Image.fromarray(noise).save(d / "noise.png")
    out["png"] = d / "noise.png"
    out["faststart.mp4"] = write_video(d / "faststart.mp4", "libx264", "aac", options={"movflags": "faststart"})
    return out


# ------------------------------------------------------------------------------------------------ real data
def test_ravdess_flac_is_16k_mono_speech():
    p = real(RAVDESS)
    x = load_audio(p)
    assert x.dtype == np.float32 and x.ndim == 1
    assert 3.0 < len(x) / 16000 < 4.0
    ref, sr = sf.read(p, dtype="float32")  # stored at 16 kHz: decoding must be exact, no resampling
    assert sr == 16000 and np.array_equal(x, ref)
    assert np.sqrt(np.mean(x ** 2)) > 1e-3 and np.abs(x).max() <= 1.0
    half = load_audio(p, sampling_rate=8000)
    assert abs(len(half) - len(x) / 2) <= 1


def test_mer_wav_equals_audio_track_of_its_mp4():
    wav, mp4 = load_audio(real(MER_WAV)), load_audio(real(MER_MP4))
    assert abs(len(wav) - len(mp4)) < 0.02 * 16000  # the wav was extracted from this clip
    n = min(len(wav), len(mp4))
    assert np.corrcoef(wav[:n], mp4[:n])[0, 1] > 0.99


def test_mer_video_frames_timestamps_and_audio():
    p = real(MER_MP4)
    with av.open(str(p)) as c:
        container_s = c.duration / 1e6
        v = c.streams.video[0]
        w, h, fps = v.width, v.height, float(v.average_rate)
    clip = load_video(p, num_frames=8)
    assert isinstance(clip, VideoClip)
    assert clip.frames.shape == (8, h, w, 3) and clip.frames.dtype == np.uint8
    assert clip.fps == pytest.approx(fps) and clip.duration == pytest.approx(container_s, abs=0.05)
    gaps = np.diff(clip.timestamps)
    assert np.all(gaps > 0) and np.ptp(gaps) <= 1 / fps + 1e-6  # uniform up to one frame
    assert clip.timestamps[0] < clip.duration / 8 and clip.timestamps[-1] > clip.duration * 7 / 8 - 1 / fps
    assert len({f.tobytes() for f in clip.frames}) == 8  # eight distinct pictures, not one repeated
    assert clip.sampling_rate == 16000 and clip.audio.dtype == np.float32
    assert abs(len(clip.audio) / 16000 - container_s) < 0.1


def test_ckplus_png_grey_to_rgb():
    p = real(CKPLUS)
    img = load_image(p)
    grey = np.asarray(Image.open(p).convert("L"))
    assert img.shape == (48, 48, 3) and img.dtype == np.uint8
    assert all(np.array_equal(img[..., k], grey) for k in range(3))
    assert load_image(p.read_bytes()).tobytes() == img.tobytes()


# ------------------------------------------------------------------------------------------ generated audio
@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg", "mp3", "m4a", "opus", "av.webm", "av.mkv"])
def test_each_audio_format_decodes_the_tone(media, fmt):
    x = load_audio(media[fmt])
    seconds = 2.0 if fmt.startswith("av.") else 1.0
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) / 16000 - seconds) < 0.06  # codec priming/padding only
    assert abs(peak_hz(x, 16000) - 440) < 3
    mid = x[len(x) // 4: 3 * len(x) // 4]
    amp = 0.3 if fmt.startswith("av.") else 0.5
    assert np.sqrt(np.mean(mid ** 2)) == pytest.approx(amp / np.sqrt(2), rel=0.1)


def test_resampling_removes_content_above_the_new_nyquist(tmp_path):
    sig = tone(440, 44100) + tone(12000, 44100)  # 12 kHz would alias to 4 kHz without a low-pass
    sf.write(tmp_path / "mix.wav", sig / 2, 44100, subtype="FLOAT")
    x = load_audio(tmp_path / "mix.wav")
    assert len(x) == 16000
    assert band_energy(x, 16000, 3500, 4500) < 1e-3 and band_energy(x, 16000, 400, 480) > 0.95


def test_stereo_mono_mix_and_channel_first(tmp_path):
    st = np.stack([tone(440, 16000), tone(1000, 16000)], axis=1)
    sf.write(tmp_path / "st.wav", st, 16000)
    both = load_audio(tmp_path / "st.wav", mono=False)
    assert both.shape == (2, 16000)
    assert abs(peak_hz(both[0], 16000) - 440) < 2 and abs(peak_hz(both[1], 16000) - 1000) < 2
    mono = load_audio(tmp_path / "st.wav")
    assert np.allclose(mono, both.mean(axis=0), atol=1e-6)


def test_in_memory_sources(media):
    ref = load_audio(media["flac"])
    assert np.array_equal(load_audio(media["flac"].read_bytes()), ref)
    with open(media["flac"], "rb") as f:
        assert np.array_equal(load_audio(f), ref)
    assert np.array_equal(load_audio(str(media["flac"])), ref)
    raw, sr = sf.read(media["flac"], dtype="float32")
    assert np.allclose(load_audio((raw, sr)), ref, atol=1e-6)
    pcm = (np.full(44100, 0.5) * 32768).astype(np.int16)
    assert np.allclose(load_audio((pcm, 44100))[100:-100], 0.5, atol=1e-3)  # int16 scaled to [-1, 1]
    assert np.array_equal(load_audio(np.ones(800, np.float32)), np.ones(800, np.float32))  # assumed 16 kHz


def test_torch_tensor_source():
    torch = pytest.importorskip("torch")
    x = torch.from_numpy(tone(440, 32000))
    y = load_audio((x, 32000))
    assert len(y) == 16000 and abs(peak_hz(y, 16000) - 440) < 2


# ------------------------------------------------------------------------------------------ generated video
@pytest.mark.parametrize("ext", ["mp4", "webm", "mov", "mkv", "avi"])
def test_video_containers_frames_and_audio(media, ext):
    with av.open(str(media[f"av.{ext}"])) as c:
        assert sum(p.is_keyframe for p in c.demux(video=0)) >= 4  # frames lie in different GOPs: seeks happen
    clip = load_video(media[f"av.{ext}"], num_frames=5)
    assert clip.frames.shape == (5, 48, 64, 3) and clip.fps == pytest.approx(10)
    tol = 0.101 if ext == "avi" else 0.051  # PyAV's AVI muxer leaves a one-frame pts gap after frame 0
    assert np.allclose(clip.timestamps, [0.2, 0.6, 1.0, 1.4, 1.8], atol=tol)
    shown = []
    for frame, t in zip(clip.frames, clip.timestamps):
        red = float(np.median(frame[30:, :, 0]))
        i = int(round(red / 10))  # the red level says which source frame this is
        assert abs(red - 10 * i) < 4 and abs(i / 10 - t) <= tol
        cols = np.where(frame[10:18, :, 1].mean(axis=0) > 128)[0]  # the white square, seen in green
        assert abs(cols.mean() - (2 * i + 3.5)) < 1.5
        shown.append(i)
    assert set(np.diff(shown)) <= {3, 4, 5}  # spread over the whole clip, every 4th frame
    assert clip.sampling_rate == 16000 and abs(len(clip.audio) / 16000 - 2.0) < 0.06
    assert abs(peak_hz(clip.audio, 16000) - 440) < 3


def test_video_without_audio_track_and_with_audio_off(media):
    assert load_video(media["silent.mp4"]).audio is None
    clip = load_video(media["av.mp4"], with_audio=False)
    assert clip.audio is None and clip.sampling_rate is None and len(clip.frames) == 8


def test_video_fewer_frames_than_requested_returns_all(media):
    clip = load_video(media["av.webm"], num_frames=30)
    assert len(clip.frames) == 20 and np.allclose(clip.timestamps, np.arange(20) / 10)
    assert abs(clip.duration - 2.0) < 0.02
    from_bytes = load_video(media["av.webm"].read_bytes(), num_frames=30)  # container found by magic bytes
    assert np.array_equal(from_bytes.frames, clip.frames) and np.allclose(from_bytes.audio, clip.audio)


def test_detect_kind_by_extension_and_magic(media):
    for key, kind in (("wav", "audio"), ("mp3", "audio"), ("m4a", "audio"), ("opus", "audio"), ("av.mp4", "video"),
                      ("av.webm", "video"), ("av.avi", "video"), ("av.mov", "video")):
        assert detect_kind(media[key]) == kind, key
    for key, kind in (("wav", "audio"), ("flac", "audio"), ("ogg", "audio"), ("mp3", "audio"), ("av.mkv", "video"),
                      ("av.avi", "video"), ("av.mp4", "video")):
        assert detect_kind(media[key].read_bytes()) == kind, key  # no name: magic bytes only
    png = io.BytesIO()
    Image.new("RGB", (4, 4)).save(png, "PNG")
    assert detect_kind(png.getvalue()) == "image"
    with pytest.raises(MediaError, match="unsupported format"):
        detect_kind(b"just some text, not media")


# ------------------------------------------------------------------------------------------ image modes
def test_image_modes_become_rgb():
    rgba = Image.new("RGBA", (6, 4), (255, 0, 0, 255))
    rgba.putpixel((0, 0), (0, 0, 255, 0))  # fully transparent: composited over white
    out = load_image(rgba)
    assert out.shape == (4, 6, 3) and tuple(out[0, 0]) == (255, 255, 255) and tuple(out[1, 1]) == (255, 0, 0)
    pal = Image.new("RGB", (4, 4), (10, 200, 30)).convert("P", palette=Image.Palette.ADAPTIVE)
    assert tuple(load_image(pal)[2, 2]) == (10, 200, 30)
    deep = Image.fromarray(np.full((3, 3), 65535, np.uint16))  # 16-bit grey: scaled, not clipped
    assert load_image(deep).min() == 255
    buf = io.BytesIO()
    Image.new("L", (5, 7), 77).save(buf, "JPEG", quality=95)
    assert np.abs(load_image(buf.getvalue()).astype(int) - 77).max() <= 2
    chw = np.zeros((3, 8, 10), np.float32)
    chw[1] = 1.0
    assert load_image(chw).shape == (8, 10, 3) and tuple(load_image(chw)[0, 0]) == (0, 255, 0)


# ------------------------------------------------------------------------------------------ bad inputs
def raises(fn, *patterns: str, name: str | None = None) -> MediaError:
    with pytest.raises(MediaError) as ei:
        fn()
    msg = str(ei.value)
    for p in patterns:
        assert p in msg, (p, msg)
    if name:
        assert name in msg, (name, msg)
    return ei.value


@pytest.mark.parametrize("loader,ext", [(load_audio, "wav"), (load_image, "png"), (load_video, "mp4")])
def test_missing_and_empty_files(tmp_path, loader, ext):
    raises(lambda: loader(tmp_path / f"nope.{ext}"), "file not found", name=f"nope.{ext}")
    (tmp_path / f"empty.{ext}").write_bytes(b"")
    raises(lambda: loader(tmp_path / f"empty.{ext}"), "empty file (0 bytes)", name=f"empty.{ext}")
    raises(lambda: loader(b""), "empty input")


@pytest.mark.parametrize("loader,ext", [(load_audio, "wav"), (load_audio, "mp3"), (load_video, "mp4"),
                                        (load_image, "png")])
def test_garbage_bytes_with_a_media_name(tmp_path, loader, ext):
    p = tmp_path / f"garbage.{ext}"
    p.write_bytes(bytes(range(32, 127)) * 40)  # printable ASCII: no magic bytes, no MPEG sync words
    e = raises(lambda: loader(p), name="garbage." + ext)
    assert "cannot" in str(e) and ("corrupt" in str(e) or "unsupported" in str(e))
    assert e.__cause__ is not None  # the library error is chained, not lost and not leaked


def test_truncated_audio(tmp_path, media):
    cut = tmp_path / "cut.wav"
    cut.write_bytes(media["wav"].read_bytes()[:30000])  # header says 1 s; libsndfile alone would return 0.34 s
    raises(lambda: load_audio(cut), "truncated WAV", name="cut.wav")
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(media["mp3"].read_bytes()[: media["mp3"].stat().st_size // 2])
    raises(lambda: load_audio(cut), "truncated MP3", name="cut.mp3")
    cut = tmp_path / "cut.m4a"
    cut.write_bytes(media["m4a"].read_bytes()[: media["m4a"].stat().st_size // 2])
    raises(lambda: load_audio(cut), "cannot open media container", name="cut.m4a")
    cut = tmp_path / "cut.flac"
    cut.write_bytes(media["flac"].read_bytes()[: media["flac"].stat().st_size // 2])
    raises(lambda: load_audio(cut), "cannot decode audio", "lost sync", name="cut.flac")


def test_truncated_real_files(tmp_path):
    flac, mp4, png = real(RAVDESS).read_bytes(), real(MER_MP4).read_bytes(), real(CKPLUS).read_bytes()
    (tmp_path / "cut.flac").write_bytes(flac[: len(flac) // 2])
    raises(lambda: load_audio(tmp_path / "cut.flac"), "cannot decode audio", "lost sync", name="cut.flac")
    (tmp_path / "cut.mp4").write_bytes(mp4[: len(mp4) * 2 // 3])  # its index (moov) is at the end
    raises(lambda: load_video(tmp_path / "cut.mp4"), "cannot open media container", name="cut.mp4")
    (tmp_path / "cut.png").write_bytes(png[: len(png) // 2])
    raises(lambda: load_image(tmp_path / "cut.png"), "truncated", name="cut.png")


def test_truncated_video(tmp_path, media):
    for key in ("faststart.mp4", "av.webm", "av.avi"):
        cut = tmp_path / f"cut_{key}"
        cut.write_bytes(media[key].read_bytes()[: media[key].stat().st_size // 2])
        raises(lambda: load_video(cut), "truncated video", name=cut.name)
    cut = tmp_path / "cut_index_at_end.mp4"  # PyAV writes the moov index last: a cut file cannot even be opened
    cut.write_bytes(media["av.mp4"].read_bytes()[: media["av.mp4"].stat().st_size // 2])
    raises(lambda: load_video(cut), "cannot open media container", name=cut.name)


def test_truncated_image(tmp_path, media):
    (tmp_path / "cut.png").write_bytes(media["png"].read_bytes()[: media["png"].stat().st_size // 2])
    raises(lambda: load_image(tmp_path / "cut.png"), "truncated", name="cut.png")


def test_unsupported_format(tmp_path, media):
    (tmp_path / "notes.xyz").write_bytes(b"hello")
    raises(lambda: load_audio(tmp_path / "notes.xyz"), "unsupported format", "'.xyz'")
    raises(lambda: load_image(media["wav"]), "unsupported format for load_image", "audio")
    raises(lambda: load_audio(media["png"]), "unsupported format for load_audio", "image")
    raises(lambda: load_video(media["m4a"]), "no video stream")


def test_zero_sample_audio(tmp_path):
    sf.write(tmp_path / "zero.wav", np.zeros(0, np.float32), 16000)
    raises(lambda: load_audio(tmp_path / "zero.wav"), "no audio samples", name="zero.wav")
    raises(lambda: load_audio(np.zeros(0, np.float32)), "no audio samples")
    raises(lambda: load_audio(np.zeros(10, np.float32), limits=MediaLimits(min_audio_samples=100)), "min_audio_samples")


def test_video_without_video_stream_or_frames(tmp_path, media):
    raises(lambda: load_video(media["audio_only.mp4"]), "no video stream", name="audio_only.mp4")
    p = tmp_path / "noframes.avi"  # a declared video stream that never received a frame, beside real audio
    with av.open(str(p), "w") as c:
        v = c.add_stream("mpeg4", rate=10)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        a = c.add_stream("libmp3lame", rate=44100)
        a.layout = "mono"
        c.start_encoding()
        fr = av.AudioFrame.from_ndarray(tone(440, 44100)[None, :1152], format="fltp", layout="mono")
        fr.sample_rate, fr.pts = 44100, 0
        for pkt in [*a.encode(fr), *a.encode(None)]:
            c.mux(pkt)
    raises(lambda: load_video(p), "video stream has no frames", name=p.name)
    raises(lambda: load_audio(media["silent.mp4"]), "no audio stream", name="silent.mp4")


def test_image_too_large_checked_from_header(media):
    raises(lambda: load_image(png_claiming(5000, 5000)), "image too large", "5000x5000")  # 60 bytes, 25 Mpx claimed
    raises(lambda: load_image(png_claiming(100_000, 100_000)), "image too large")
    raises(lambda: load_image(media["png"], limits=MediaLimits(max_pixels=1000)), "64x64", "max_pixels")
    raises(lambda: load_image(np.zeros((40, 40, 3), np.uint8), limits=MediaLimits(max_pixels=1000)), "max_pixels")


def test_video_too_large_frames(media):
    raises(lambda: load_video(media["av.mp4"], limits=MediaLimits(max_pixels=100)), "64x48", "max_pixels")


def test_duration_over_limit(media):
    short = MediaLimits(max_audio_seconds=0.5, max_video_seconds=1.0)
    for key in ("flac", "mp3", "m4a", "opus"):
        raises(lambda: load_audio(media[key], limits=short), "over the limit max_audio_seconds", name=media[key].name)
    raises(lambda: load_audio((np.zeros(16000), 16000), limits=short), "max_audio_seconds")
    for key in ("av.mp4", "av.webm"):
        raises(lambda: load_video(media[key], limits=short), "duration 2.0 s", "max_video_seconds")
    # a video's audio track is bounded by the video limit, not the (shorter) audio one
    assert load_video(media["av.mp4"], limits=MediaLimits(max_audio_seconds=0.5)).audio is not None


def test_file_bytes_over_limit(media):
    tiny = MediaLimits(max_file_bytes=1000)
    raises(lambda: load_audio(media["wav"], limits=tiny), "over the limit max_file_bytes", name="tone.wav")
    raises(lambda: load_image(media["wav"].read_bytes(), limits=tiny), "max_file_bytes")
    with open(media["av.mp4"], "rb") as f:
        raises(lambda: load_video(f, limits=tiny), "max_file_bytes")


def test_non_finite_samples(tmp_path):
    x = tone(440, 16000)
    x[100] = np.nan
    sf.write(tmp_path / "nan.wav", x, 16000, subtype="FLOAT")
    raises(lambda: load_audio(tmp_path / "nan.wav"), "non-finite", name="nan.wav")
    raises(lambda: load_audio(np.array([0.0, np.inf])), "non-finite")


def test_num_frames_bounds(media):
    raises(lambda: load_video(media["av.mp4"], num_frames=65), "max_frames")
    raises(lambda: load_video(media["av.mp4"], num_frames=0), "num_frames")
    assert len(load_video(media["av.mp4"], num_frames=3, limits=MediaLimits(max_frames=3)).frames) == 3

