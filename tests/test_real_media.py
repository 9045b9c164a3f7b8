"""Real media from ../shared/data decode and run through `tiny` (default suite) and `mini` (slow): RAVDESS flac,
the MER2023 wav and mp4 (frames and audio track), a CK+ png. Skipped cleanly when the data kit is absent."""
from __future__ import annotations

import pytest
import torch

from conftest import data_path


def real_media() -> dict:
    return {
        "flac": data_path("speech", "ravdess", "Actor_01", "03-01-05-01-01-01-01.flac"),
        "wav": data_path("av", "mer2023", "examples", "sample_00000000.wav"),
        "mp4": data_path("av", "mer2023", "examples", "sample_00000338.mp4"),
        "png": next(data_path("face", "ckplus48", "CK+48", "happy").glob("*.png")),
    }


def check_pipeline(pipe):
    m = real_media()
    cfg = pipe.model.config
    conv = [{"role": "user", "content": [{"type": "video", "video": str(m["mp4"])},
                                         {"type": "image", "image": str(m["png"])},
                                         {"type": "audio", "audio": str(m["flac"])},
                                         {"type": "audio", "audio": str(m["wav"])},
                                         {"type": "text", "text": "What emotions are expressed?"}]}]
    batch = pipe.processor(conv)
    assert batch["video_frames"].tolist() == [cfg.video_num_frames]
    # video audio track + flac + wav
    assert batch["audio_lengths"].shape[0] == 3
    seconds = (batch["audio_lengths"].float() / cfg.audio_sampling_rate()).tolist()
    assert all(1.0 < s < 30.0 for s in seconds)
    expected = sum(cfg.audio_num_tokens(int(n)) for n in batch["audio_lengths"])
    assert int((batch["input_ids"] == cfg.audio_token_id).sum()) == expected
    with torch.no_grad():
        logits = pipe.model(**batch).logits
        new = pipe.model.generate(**batch, max_new_tokens=3, pad_token_id=pipe.processor.tokenizer.pad_token_id)
    assert torch.isfinite(logits.float()).all() and new.shape == (1, 3)


def test_real_media_through_tiny(tiny):
    check_pipeline(tiny)


@pytest.mark.slow
def test_real_media_through_mini():
    from affectllm.api import load

    check_pipeline(load("mini", dtype="float32"))
