"""A user's own corpus, made up on the spot: tones as WAV (one pitch per emotion and speaker, so no two files share
bytes), simple drawn faces as PNG (the mouth curve carries the expression), laid out as people have them: a
CREMA-D-like `AudioWAV/<actor>_<sentence>_<EMO>_XX.wav` folder with a CSV written from its metadata, and a folder
per label of face images. No third-party data is shipped or read."""
from __future__ import annotations

from pathlib import Path

import numpy as np

CODES = {"ANG": "angry", "HAP": "happy", "SAD": "sad", "NEU": "neutral"}
LABELS_YAML = """name: crema
labels:
  - {name: angry, synonyms: [ANG, mad], lexicon: anger}
  - {name: happy, synonyms: [HAP], lexicon: joy}
  - {name: sad, synonyms: [SAD], lexicon: sadness}
  - {name: neutral, synonyms: [NEU]}
"""
CSV_HEADER = "path,label,speaker,gender,text"


def write_tone(path: Path, freq: float, seconds: float = 0.4, sr: int = 16000) -> Path:
    import soundfile as sf

    t = np.arange(int(seconds * sr)) / sr
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr, subtype="PCM_16")
    return path


def write_face(path: Path, mood: str, seed: int = 0, size: int = 48) -> Path:
    """A grey face: head ellipse, two eyes, a mouth that smiles (happy), droops (sad), is flat (neutral) or is
    open under slanted brows (angry); `seed` shifts it by a pixel or two so files differ."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    dx, dy = (int(v) for v in rng.integers(-2, 3, 2))
    im = Image.new("L", (size, size), 30)
    d = ImageDraw.Draw(im)
    d.ellipse([6 + dx, 4 + dy, 42 + dx, 44 + dy], fill=180)
    for x in (16, 30):
        d.ellipse([x + dx, 16 + dy, x + 4 + dx, 20 + dy], fill=20)
    box = [16 + dx, 28 + dy, 32 + dx, 38 + dy]
    if mood == "happy":
        d.arc(box, 0, 180, fill=20, width=2)
    elif mood == "sad":
        d.arc([16 + dx, 32 + dy, 32 + dx, 42 + dy], 180, 360, fill=20, width=2)
    elif mood == "angry":
        d.line([14 + dx, 12 + dy, 21 + dx, 15 + dy], fill=20, width=2)
        d.line([27 + dx, 15 + dy, 34 + dx, 12 + dy], fill=20, width=2)
        d.ellipse([20 + dx, 31 + dy, 28 + dx, 37 + dy], fill=20)
    else:
        d.line([17 + dx, 34 + dy, 31 + dx, 34 + dy], fill=20, width=2)
    im.putpixel((0, 0), seed % 256)                   # no two seeds give the same bytes
    im.putpixel((1, 0), seed // 256 % 256)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path


def crema_like(root: Path, speakers: range = range(1001, 1009), codes: tuple[str, ...] = tuple(CODES),
               with_labels_yaml: bool = True) -> Path:
    """root/AudioWAV/<actor>_DFA_<EMO>_XX.wav + root/clips.csv (path,label,speaker,gender,text) [+ labels.yaml].
    Odd actors are male, even female. Returns the CSV path."""
    rows = [CSV_HEADER]
    for spk in speakers:
        for j, code in enumerate(codes):
            rel = f"AudioWAV/{spk}_DFA_{code}_XX.wav"
            write_tone(root / rel, 140.0 + 45.0 * j + 3.0 * (spk - speakers[0]))
            rows.append(f"{rel},{code},{spk},{'male' if spk % 2 else 'female'},Don't forget a jacket.")
    (root / "clips.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    if with_labels_yaml:
        (root / "labels.yaml").write_text(LABELS_YAML, encoding="utf-8")
    return root / "clips.csv"


def faces_like(root: Path, per_label: int = 3, moods: tuple[str, ...] = ("angry", "happy", "sad", "neutral")) -> Path:
    """root/<mood>/face_<i>.png for each mood. Returns root."""
    for k, mood in enumerate(moods):
        for i in range(per_label):
            write_face(root / mood / f"face_{i:02d}.png", mood, seed=100 * k + i)
    return root
