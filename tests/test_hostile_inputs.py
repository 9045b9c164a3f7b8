"""Holes found by a hostile-input corpus (issue 14), outside the gateway: a chat with nothing to read, and C-library
chatter on stderr from a corrupt MP3 (with soundfile's misleading "File does not exist" for a file that exists).
The gateway's own cases (deep JSON, lone surrogates) are in test_serve_badrequests.py."""
from __future__ import annotations

import io
import logging
import os

import numpy as np
import pytest
import soundfile as sf

from affectllm.cli import main
from affectllm.errors import ConfigError, MediaError

from conftest import tone

MP3_FRAME_HEADER = bytes([0xFF, 0xFB, 0x90, 0x64])  # MPEG-1 layer III, 128 kbit/s, 44.1 kHz


def garbage(n: int, seed: int = 0) -> bytes:
    return np.random.RandomState(seed).randint(0, 256, n, dtype=np.uint8).tobytes()


@pytest.fixture(scope="module")
def mp3s(tmp_path_factory):
    d = tmp_path_factory.mktemp("mp3")
    (d / "header_then_garbage.mp3").write_bytes(MP3_FRAME_HEADER + garbage(2000))
    (d / "frames_then_garbage.mp3").write_bytes((MP3_FRAME_HEADER + b"\0" * 413) * 3 + garbage(3000, 1))
    buf = io.BytesIO()
    sf.write(buf, tone(1.0), 16000, format="MP3", subtype="MPEG_LAYER_III")
    good = buf.getvalue()
    half = len(good) // 2  # a burst of damage mid-stream: libmpg123 resyncs (and says so) but the file decodes
    (d / "damaged_middle.mp3").write_bytes(good[:half] + garbage(300, 2) + good[half:])
    return d


# ---- chat with nothing to read --------------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [[], ["--text", ""], ["--text", "   \n"]])
def test_cli_chat_without_input_is_a_usage_error(capsys, argv):
    code = main(["chat", "--model", "tiny", "--json", *argv])
    out = capsys.readouterr()
    assert code == 2 and out.out == ""
    assert out.err.startswith("affectllm: error: chat needs something to read") and "--text" in out.err
    assert out.err.count("\n") == 1


def test_pipeline_and_client_chat_refuse_no_input(tiny):
    from affectllm.serve.client import AffectClient

    with pytest.raises(ConfigError, match="nothing to ask about"):
        tiny.chat(max_new_tokens=2)
    with pytest.raises(ConfigError, match="nothing to ask about"):
        tiny.chat(text=" ", audio=[], max_new_tokens=2)
    with AffectClient("http://127.0.0.1:9") as client:  # refused before any request is sent
        with pytest.raises(ConfigError, match="nothing to ask about"):
            client.chat()
    assert tiny.chat(text="hi", max_new_tokens=2).raw is not None


# ---- corrupt MP3: one clear line, no C-library noise ----------------------------------------------------------
@pytest.mark.parametrize("name", ["header_then_garbage.mp3", "frames_then_garbage.mp3"])
def test_corrupt_mp3_is_one_error_and_silent(capfd, mp3s, name):
    from affectllm.media import load_audio

    with pytest.raises(MediaError) as info:
        load_audio(mp3s / name)
    message = str(info.value)
    assert message.startswith(f"{mp3s / name}: ") and message.count("\n") == 0
    assert "does not exist" not in message and "regular file" not in message and "MP3" in message
    assert capfd.readouterr().err == ""


def test_mp3_that_resyncs_decodes_silently(capfd, mp3s):
    from affectllm.media import load_audio

    x = load_audio(mp3s / "damaged_middle.mp3")
    assert x.dtype == np.float32 and x.size > 8000
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("name", ["damaged_middle.mp3", "frames_then_garbage.mp3"])
def test_speech_cues_decode_is_silent_too(capfd, mp3s, name):
    """The training data's cue extractor (data/cues.py) reads audio with soundfile itself: same capture."""
    from affectllm.data.cues import load_audio as cue_audio

    try:
        cue_audio(mp3s / name)
    except MediaError:  # what the PyAV fallback says of garbage; the point here is stderr
        pass
    assert capfd.readouterr().err == ""


def test_cli_chat_on_corrupt_mp3_prints_exactly_one_line(capfd, mp3s):
    code = main(["chat", "--model", "tiny", "--audio", str(mp3s / "frames_then_garbage.mp3"), "--max-new-tokens", "2"])
    err = capfd.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("affectllm: error:") and "Note:" not in err, err


def test_capture_replays_other_writers_and_logs_decoder_noise(capfd, caplog):
    """What another thread writes to stderr during a decode is replayed, not swallowed."""
    from affectllm.cstderr import captured_c_stderr

    with caplog.at_level(logging.DEBUG, logger="affectllm.media"):
        with captured_c_stderr():
            with captured_c_stderr():  # nested / concurrent decodes share one redirection
                os.write(2, b"Note: Trying to resync...\n")
            os.write(2, b"2026-01-01 INFO affectllm.serve request done\n")
    assert capfd.readouterr().err == "2026-01-01 INFO affectllm.serve request done\n"
    assert any("Trying to resync" in r.getMessage() for r in caplog.records)
    os.write(2, b"after\n")  # fd 2 is the real stderr again
    assert capfd.readouterr().err == "after\n"

