"""Turn corpus samples into training examples: chat messages (media parts + rendered prompt), the target answer
text the prompt asks for, and the columns that rewards and dev metrics need (gold labels, closed-set label)."""
from __future__ import annotations

import json
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ..data import LABEL_SETS, Sample, load_corpus, read_manifest, target_json
from ..errors import AffectError


@dataclass
class Example:
    id: str
    messages: list[dict]
    target: str
    prompt_id: str
    columns: dict = field(default_factory=dict)  # gold_labels, label, label_set, multi_labels, corpus, modalities

    def cache_key(self) -> str:
        """Identity of the encoded example: media files (with size and mtime), prompt, target."""
        media = []
        for m in self.messages:
            for part in m["content"] if isinstance(m["content"], list) else []:
                src = part.get(part["type"]) if part["type"] != "text" else None
                if isinstance(src, str):
                    st = Path(src).stat()
                    media.append([part["type"], src, st.st_size, st.st_mtime_ns])
                elif part["type"] == "text":
                    media.append(["text", part["text"]])
        return json.dumps([self.id, media, self.target, self.prompt_id], sort_keys=True)


def sample_modalities(sample: Sample, wanted: list[str], model_modalities: list[str]) -> list[str]:
    usable = set(wanted) & (set(model_modalities) | {"text"})
    return [m for m in sample.modalities() if m in usable]


TARGET_STYLES = ("full", "short", "labels")


def shape_target(answer_json: str, style: str) -> str:
    """The trained answer: labels always first; "short" keeps the explanation's evidence line and first sentence,
    "labels" drops it (the label is 1-2 of ~40-110 target tokens otherwise, and the loss learns the template)."""
    if style == "full":
        return answer_json
    answer = json.loads(answer_json)
    keep = {"labels": answer["labels"]}
    if style == "short" and answer.get("explanation"):
        keep["explanation"] = _first_sentences(answer["explanation"], 2)
    for key in ("valence", "arousal"):
        if key in answer:
            keep[key] = answer[key]
    return json.dumps(keep, ensure_ascii=False)


def target_text(sample: Sample, used: list[str], style: str, labels: list[str] | None = None,
                with_dimensions: bool = False) -> str:
    """The trained answer of `sample` shown `used`, in `style`; `labels` replaces the gold labels (e.g. the single
    primary label of a closed-set question). The "labels" style builds no explanation (speech cues cost time)."""
    if style == "labels" and not with_dimensions:
        return json.dumps({"labels": labels if labels is not None else list(sample.labels)}, ensure_ascii=False)
    answer = json.loads(target_json(sample, [m for m in used if m in sample.modalities()],
                                    with_dimensions=with_dimensions))
    if labels is not None:
        answer["labels"] = labels
    return shape_target(json.dumps(answer, ensure_ascii=False), style)


def load_split(corpus: str, split: str, data_root: str | None = None, on_missing: str = "skip") -> list[Sample]:
    """Samples of one split of a registered corpus or of a JSONL manifest (rows with missing media skipped-and-counted
    or raising, by `on_missing`)."""
    if corpus.endswith(".jsonl"):
        return [s for s in read_manifest(corpus, root=data_root, on_missing=on_missing) if s.split == split]
    return load_corpus(corpus, split, data_root)


def _first_sentences(text: str, n: int) -> str:
    import re

    parts = re.split(r"(?<=[.!?])\s+(?=[A-Z\"])", text.strip())
    return " ".join(parts[:n])


def shuffled_candidates(candidates: list[str] | None, key: str, seed: int) -> list[str] | None:
    """A per-example order, seeded by (seed, example id): the position of the gold label carries no signal."""
    if not candidates:
        return candidates
    out = list(candidates)
    random.Random(f"{seed}:{key}").shuffle(out)
    return out


def to_example(pipe, sample: Sample, prompt: str, wanted_modalities: list[str], closed_set_prompt: bool = False,
               with_target: bool = True, target_style: str = "full", shuffle: bool = False,
               seed: int = 0) -> Example | None:
    """None when the sample has nothing the model can see (e.g. an image-only sample for an audio-only model)."""
    used = sample_modalities(sample, wanted_modalities, pipe.model.config.modalities)
    if not used:
        return None
    video = sample.video if "video" in used else None
    # A video's own audio track is fed by the processor; a separate audio file of the same clip is not repeated.
    audio = sample.audio if "audio" in used and not (video and pipe.model.config.video_use_audio) else None
    if video and pipe.model.config.video_use_audio and "audio" not in used:
        used.append("audio")
    image = sample.image if "image" in used else None
    text = sample.text if "text" in used else None
    candidates = LABEL_SETS.get(sample.label_set or "") if closed_set_prompt else None
    if shuffle:
        candidates = shuffled_candidates(candidates, sample.id, seed)
    prompt_name = "emotion_closed" if closed_set_prompt and candidates else prompt
    messages, prompt_id = pipe.build_messages(text=text, audio=audio, image=image, video=video, prompt=prompt_name,
                                              candidates=candidates)
    target = ""
    if with_target:
        target = target_text(sample, used, target_style)
    columns = {"gold_labels": list(sample.labels), "label": sample.label, "label_set": sample.label_set,
               "multi_labels": list(sample.multi_labels), "corpus": sample.corpus, "modalities": used,
               "speaker": sample.person, "gender": sample.gender, "language": sample.language}
    return Example(sample.id, messages, target, prompt_id, columns)


def build_examples(pipe, corpora: list[str], split: str, prompt: str, modalities: list[str],
                   limit: int | None = None, seed: int = 0, data_root: str | None = None,
                   closed_set_prompt: bool = False, with_target: bool = True, on_missing: str = "skip",
                   target_style: str = "full", shuffle_candidates: bool = False) -> list[Example]:
    """Examples of every corpus (a registered name, or a JSONL manifest path whose rows with missing media are
    skipped-and-counted or raise, by `on_missing`) for one split; `limit` takes a seeded subset per corpus."""
    out: list[Example] = []
    for corpus in corpora:
        samples = load_split(corpus, split, data_root, on_missing)
        if limit is not None and limit < len(samples):
            samples = random.Random(seed).sample(samples, limit)
        skipped = 0
        for sample in samples:
            try:
                ex = to_example(pipe, sample, prompt, modalities, closed_set_prompt, with_target, target_style,
                                shuffle_candidates, seed)
            except AffectError:
                ex = None
            if ex is None:
                skipped += 1
                continue
            out.append(ex)
        if skipped:
            warnings.warn(f"{corpus}/{split}: skipped {skipped} sample(s) with nothing to learn from for this model",
                          stacklevel=2)
    if not out:
        raise AffectError(f"no usable examples in {corpora} / {split} for a model with modalities "
                          f"{pipe.model.config.modalities} (asked for {modalities})")
    return out
