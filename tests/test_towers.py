"""Feature towers of the `mini` preset: shapes, token counts, padding invariance, pitch/energy/HOG sanity,
save/load and Auto-class round trips; a few checks on real RAVDESS audio when ../shared/data is present."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import affectllm.towers  # noqa: F401  (registers the Auto classes)
from affectllm.errors import ConfigError, MediaError
from affectllm.towers import HOGConfig, HOGVisionEncoder, ProsodyAudioEncoder, ProsodyConfig
from transformers import AutoConfig, AutoModel

SR = 16000
DATA = Path(os.environ.get("AFFECTLLM_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")
RAVDESS = DATA / "speech" / "ravdess"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The towers' ops are small; on a shared 2-core box extra intra-op threads only spin (10x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tone(freq: float, seconds: float = 1.0, amp: float = 0.3) -> torch.Tensor:
    t = torch.arange(int(SR * seconds)) / SR
    return amp * torch.sin(2 * math.pi * freq * t)


@pytest.fixture(scope="module")
def prosody() -> ProsodyAudioEncoder:
    return ProsodyAudioEncoder(ProsodyConfig()).eval()


@pytest.fixture(scope="module")
def hog() -> HOGVisionEncoder:
    return HOGVisionEncoder(HOGConfig()).eval()


# ---- prosody tower ---------------------------------------------------------------------------------------------
def test_prosody_config_sizes():
    cfg = ProsodyConfig()
    assert cfg.hop_length == 320 and cfg.win_length == 400
    assert cfg.num_frame_features == 86 and cfg.hidden_size == 5 * 86
    assert cfg.tokens_per_second == 10
    assert [cfg.num_output_frames(n) for n in (0, 1, 1600, 1601, 64000)] == [0, 1, 1, 2, 40]
    assert ProsodyConfig(include_logmel=False, include_delta2=False, frame_stack=2).hidden_size == 2 * 33
    with pytest.raises(ConfigError):
        ProsodyConfig(f0_min=600.0)
    with pytest.raises(ConfigError):
        ProsodyConfig(norm_mean=[0.0, 1.0])


@pytest.mark.parametrize("n", [1, 319, 320, 1599, 1600, 1601, 7777, 16000, 50001])
def test_prosody_num_output_frames_matches_model(prosody, n):
    g = torch.Generator().manual_seed(n)
    out = prosody(torch.randn(1, n, generator=g) * 0.1).last_hidden_state
    assert out.shape == (1, prosody.config.num_output_frames(n), prosody.config.hidden_size)
    assert prosody.output_lengths(n) == out.shape[1]
    assert torch.isfinite(out).all()


def test_prosody_padded_batch_equals_unpadded(prosody):
    g = torch.Generator().manual_seed(0)
    lengths = [16000, 9_130, 3_201, 700]
    waves = [torch.randn(n, generator=g) * 0.1 + tone(180, n / SR) for n in lengths]
    x = torch.zeros(len(waves), max(lengths))
    mask = torch.zeros_like(x, dtype=torch.long)
    for i, w in enumerate(waves):
        x[i, : len(w)] = w
        mask[i, : len(w)] = 1
    x[1, lengths[1]:] = 5.0  # garbage in the padding must not leak
    batch = prosody(input_values=x, attention_mask=mask).last_hidden_state
    assert torch.equal(prosody.output_lengths(torch.tensor(lengths)),
                       torch.tensor([prosody.config.num_output_frames(n) for n in lengths]))
    for i, w in enumerate(waves):
        single = prosody(w[None]).last_hidden_state[0]
        k = prosody.config.num_output_frames(len(w))
        assert single.shape[0] == k
        torch.testing.assert_close(batch[i, :k], single, atol=1e-4, rtol=1e-4)
        assert (batch[i, k:] == 0).all()


def test_prosody_pitch_of_tone(prosody):
    cues = prosody.summary_cues(tone(220.0, 1.0))
    assert abs(cues["pitch_mean_hz"] - 220.0) / 220.0 < 0.03
    assert cues["voiced_ratio"] > 0.9
    for f in (90.0, 150.0, 400.0):
        assert abs(prosody.summary_cues(tone(f, 0.5))["pitch_mean_hz"] - f) / f < 0.03
    names = prosody.config.frame_feature_names
    raw, n_frames, f0_hz = prosody.frame_features(tone(220.0)[None])
    assert int(n_frames[0]) == 50 and raw.shape == (1, 50, prosody.config.num_frame_features)
    f0 = torch.exp(raw[0, :, names.index("log_f0")])
    assert (abs(f0[2:-2] - 220) / 220 < 0.03).all()
    torch.testing.assert_close(f0, f0_hz[0])
    # the raw hidden state is the same frames, stacked 5 per token
    stacked = prosody(tone(220.0)[None], output_hidden_states=True).hidden_states[0][0]
    assert stacked.shape == (10, prosody.config.hidden_size)
    torch.testing.assert_close(stacked.reshape(50, -1), raw[0])


def test_prosody_unvoiced_noise_and_silence(prosody):
    g = torch.Generator().manual_seed(1)
    cues = prosody.summary_cues(torch.randn(SR, generator=g) * 0.1)
    assert cues["voiced_ratio"] < 0.2
    silent = prosody.summary_cues(torch.zeros(SR))
    assert silent["voiced_ratio"] == 0.0 and silent["pitch_mean_hz"] is None


def test_prosody_energy_ordering(prosody):
    names = prosody.config.frame_feature_names
    quiet, loud = (prosody.frame_features(tone(220.0, amp=a)[None])[0][0] for a in (0.05, 0.5))
    e = names.index("energy_db")
    assert (loud[:, e] > quiet[:, e] + 15).all()  # 20 dB louder
    loud_db, quiet_db = (prosody.summary_cues(tone(220, amp=a))["energy_db_mean"] for a in (0.5, 0.05))
    assert loud_db > quiet_db + 15
    # and in the normalised tower output (same monotone direction once stats are fitted on varied data)
    m = ProsodyAudioEncoder(ProsodyConfig())
    m.fit_normalization([tone(220.0, amp=a) for a in (0.02, 0.1, 0.3)] + [tone(140.0, amp=0.2)])
    d = m.config.num_frame_features
    q, l_ = (m(tone(220.0, amp=a)[None]).last_hidden_state[0].reshape(-1, d)[:, e].mean() for a in (0.05, 0.5))
    assert l_ > q


def test_prosody_input_errors(prosody):
    with pytest.raises(MediaError):
        prosody(torch.zeros(2, 3, 4, 5))
    with pytest.raises(MediaError):
        prosody(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(MediaError):
        prosody.summary_cues(torch.zeros(0))
    with pytest.raises(MediaError):
        prosody.summary_cues(torch.zeros(SR, 2))  # stereo


def test_prosody_save_load_roundtrip_and_auto(tmp_path):
    cfg = AutoConfig.for_model("affect_prosody", frame_stack=4)
    assert isinstance(cfg, ProsodyConfig)
    model = AutoModel.from_config(cfg).eval()
    assert isinstance(model, ProsodyAudioEncoder)
    model.fit_normalization([tone(200.0) + 0.01 * torch.randn(SR), tone(120.0, 0.7, 0.1)])
    x = tone(170.0, 0.9)[None] + 0.01 * torch.randn(1, int(0.9 * SR))
    ref = model(x).last_hidden_state
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, ProsodyAudioEncoder) and loaded.config.hidden_size == 4 * 86
    assert torch.equal(loaded(x).last_hidden_state, ref)
    rebuilt = AutoModel.from_config(AutoConfig.from_pretrained(tmp_path)).eval()  # stats live in the config too
    assert torch.equal(rebuilt(x).last_hidden_state, ref)
    out = loaded(x, output_hidden_states=True)
    assert torch.equal(out.hidden_states[-1], out.last_hidden_state)
    assert loaded.dtype == torch.float32 and next(loaded.parameters()).requires_grad is False


# ---- HOG tower -------------------------------------------------------------------------------------------------
def test_hog_shapes(hog):
    cfg = hog.config
    assert (cfg.num_output_tokens, cfg.hidden_size) == (49, 36)
    out = hog(torch.rand(2, 3, 64, 64), output_hidden_states=True)
    assert out.last_hidden_state.shape == (2, 49, 36)
    assert out.hidden_states[0].shape == (2, 49, 36)
    assert hog.cell_histograms(torch.rand(2, 3, 64, 64)).shape == (2, 64, 9)
    assert torch.equal(out.hidden_states[-1], out.last_hidden_state)
    assert HOGConfig(image_size=48, cell_size=6, extra_features="lbp").hidden_size == 44
    small = HOGVisionEncoder(HOGConfig(image_size=32, extra_features="intensity"))
    assert small(torch.rand(1, 1, 32, 32)).last_hidden_state.shape == (1, 9, 38)
    with pytest.raises(MediaError):
        hog(torch.rand(1, 3, 48, 48))
    with pytest.raises(ConfigError):
        HOGConfig(cell_size=7)
    with pytest.raises(ConfigError):
        HOGConfig(extra_features="sift")


def test_hog_vertical_edge_goes_to_horizontal_gradient_bin(hog):
    img = torch.zeros(1, 3, 64, 64)
    img[..., 29:] = 1.0  # vertical edge: intensity changes along x
    cells = hog.cell_histograms(img)[0]
    mass = cells.sum(0)
    assert mass.argmax() == 0 and mass[0] > 0.99 * mass.sum()
    tokens = hog(img).last_hidden_state[0]
    assert tokens.norm(dim=-1).max() <= 1.0 + 1e-5
    per_bin = tokens.reshape(49, 9, 4).sum((0, 2))  # token dim = bin * 4 + cell
    assert per_bin.argmax() == 0 and per_bin[0] > 0.99 * per_bin.sum()
    # the horizontal edge lands between the two bins around 90 degrees
    mass_h = hog.cell_histograms(img.transpose(-1, -2))[0].sum(0)
    assert mass_h[4] + mass_h[5] > 0.99 * mass_h.sum()


def test_hog_save_load_roundtrip_and_auto(tmp_path):
    cfg = AutoConfig.for_model("affect_hog", extra_features="lbp")
    model = AutoModel.from_config(cfg).eval()
    assert isinstance(model, HOGVisionEncoder)
    x = torch.rand(4, 3, 64, 64)
    model.fit_normalization(x)
    ref = model(pixel_values=x).last_hidden_state
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert torch.equal(loaded(pixel_values=x).last_hidden_state, ref)
    rebuilt = AutoModel.from_config(AutoConfig.from_pretrained(tmp_path)).eval()
    assert torch.equal(rebuilt(pixel_values=x).last_hidden_state, ref)


# ---- real data -------------------------------------------------------------------------------------------------
needs_ravdess = pytest.mark.skipif(not (RAVDESS / "labels.csv").exists(), reason=f"no RAVDESS under {DATA}")


@needs_ravdess
def test_ravdess_flac_runs_through(prosody):
    import soundfile as sf

    wav, sr = sf.read(RAVDESS / "Actor_01" / "03-01-01-01-01-01-01.flac", dtype="float32")
    assert sr == SR and wav.ndim == 1 and len(wav) > SR
    out = prosody(torch.from_numpy(wav)[None]).last_hidden_state
    assert out.shape == (1, prosody.config.num_output_frames(len(wav)), prosody.config.hidden_size)
    assert torch.isfinite(out).all()
    cues = prosody.summary_cues(wav)
    assert 60 < cues["pitch_mean_hz"] < 300 and 0.2 < cues["voiced_ratio"] <= 1.0
    assert 1.0 < cues["speaking_rate_hz"] < 10.0


@needs_ravdess
def test_ravdess_female_pitch_above_male(prosody):
    import soundfile as sf

    def mean_pitch(actor: int) -> float:
        files = sorted((RAVDESS / f"Actor_{actor:02d}").glob("03-01-0[12]-*.flac"))[:3]  # neutral/calm
        return float(np.mean([prosody.summary_cues(sf.read(f, dtype="float32")[0])["pitch_mean_hz"] for f in files]))

    male = [mean_pitch(a) for a in (1, 3)]  # odd actor = male
    female = [mean_pitch(a) for a in (2, 4)]
    assert min(female) > max(male)
    assert np.mean(female) > 1.4 * np.mean(male)
