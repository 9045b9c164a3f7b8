"""The CLI on `tiny`: answers for each modality, and every kind of bad input ends in one clear error line
(exit code 2), never a traceback."""
from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from affectllm.cli import main

from conftest import picture, tone


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    sf.write(d / "ok.wav", tone(1.0), 16000)
    Image.fromarray(picture()).save(d / "ok.png")
    (d / "empty.wav").write_bytes(b"")
    (d / "garbage.mp4").write_bytes(b"\x00\x01garbage" * 100)
    good = (d / "ok.wav").read_bytes()
    (d / "truncated.wav").write_bytes(good[: len(good) // 3])
    sf.write(d / "zero.wav", np.zeros(0, dtype=np.float32), 16000)
    (d / "notes.txt").write_text("hello")
    sf.write(d / "long.wav", np.zeros(16000 * 40, dtype=np.float32), 16000)
    # a tiny PNG whose header claims 5000 x 5000 pixels (over the 4096 x 4096 default limit)
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 5000, 5000, 8, 2, 0, 0, 0)
    (d / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10))
                                 + chunk(b"IEND", b""))
    return d


def test_ls_lists_presets_and_prompts(capsys):
    code, out, _ = run(capsys, "ls")
    assert code == 0 and "tiny" in out and "mini" in out and "emotion_ov@" in out


def test_console_fast_exit_keeps_piped_output_and_exit_code(media):
    """The console script ends `chat` with os._exit; its piped (block-buffered) output must still arrive whole, and
    an error must still exit 2."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # a pipe is block-buffered by default

    def console(*argv: str) -> subprocess.CompletedProcess:
        code = f"import sys; sys.argv = ['affectllm', *{list(argv)!r}]; from affectllm.cli import console; console()"
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)

    ok = console("chat", "--model", "tiny", "--text", "hi", "--max-new-tokens", "4", "--json")
    assert ok.returncode == 0, ok.stderr
    assert "labels" in json.loads(ok.stdout)["prediction"]
    bad = console("chat", "--model", "tiny", "--audio", str(media / "empty.wav"))
    assert bad.returncode == 2 and "empty" in bad.stderr


def test_chat_json_on_tiny(capsys, media):
    code, out, _ = run(capsys, "chat", "--model", "tiny", "--audio", str(media / "ok.wav"), "--image",
                       str(media / "ok.png"), "--text", "hi", "--max-new-tokens", "4", "--json")
    assert code == 0
    result = json.loads(out)
    assert set(result) == {"raw", "prediction", "prompt", "timings", "label_probability"}
    assert result["prompt"].startswith("emotion_ov@") and "labels" in result["prediction"]


@pytest.mark.parametrize("flag,name,message", [
    ("--audio", "empty.wav", "empty"),
    ("--audio", "truncated.wav", "truncated"),
    ("--video", "garbage.mp4", "garbage.mp4"),
    ("--audio", "zero.wav", "zero-length"),
    ("--audio", "notes.txt", "notes.txt"),
    ("--audio", "long.wav", "30"),
    ("--image", "huge.png", "pixels"),
    ("--audio", "missing.wav", "missing.wav"),
])
def test_bad_media_is_one_clear_error(capsys, media, flag, name, message):
    code, out, err = run(capsys, "chat", "--model", "tiny", flag, str(media / name), "--max-new-tokens", "2")
    assert code == 2
    assert err.startswith("affectllm: error:") and message in err and "Traceback" not in err


def test_unknown_names_and_missing_weights(capsys, tmp_path, monkeypatch):
    code, _, err = run(capsys, "chat", "--model", "tinyy", "--text", "x")
    assert code == 2 and "did you mean 'tiny'" in err
    code, _, err = run(capsys, "chat", "--model", "tiny", "--text", "x", "--prompt", "emotion_o")
    assert code == 2 and "did you mean 'emotion_ov'" in err
    monkeypatch.setenv("AFFECTLLM_QWEN2_5_7B", str(tmp_path / "nope"))
    code, _, err = run(capsys, "chat", "--model", "qwen2.5-7b_whisper-large-v3_siglip-so400m", "--text", "x")
    assert code == 2 and "never downloads" in err
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text("{}")
    code, _, err = run(capsys, "chat", "--model", str(tmp_path / "ckpt"), "--text", "x")
    assert code == 2 and "missing" in err and "model.safetensors" in err
