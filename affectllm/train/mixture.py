"""The multi-task, multi-format training mixture (`data.mixture` in a recipe).

Why: SFT on one prompt format made the model forget every other one (EmoBench letters unparsed, yes/no probes
ignored, a fixed candidate order used as a shortcut). So each sample of each corpus is shown in a format drawn
from the entry's format weights (seeded per sample), with prompts drawn from the canonical prompt or the training
paraphrases in prompts/train/ (disjoint from the eval suite's paraphrases, so prompt-sensitivity results stay
honest):

    closed    one label from the corpus' label set, candidates in a per-example order
    ov        open-vocabulary labels (all gold labels)
    mcq       lettered options (gold + distractors, shuffled) -> {"answer": "B"}
    yesno     "is the emotion X?" balanced between the gold label (yes) and another label (no)
    absent    a question about a modality the sample lacks -> a sentence that says it was not given
    modality  "which inputs were given?" -> a sentence listing given and missing inputs
    va        valence/arousal regression with labels (corpora with ratings, e.g. EmoBank)
    scenario  text only, EmoBench-shaped: a question about a named person, 4-6 lettered choices (compound ones such
              as "Joy & Gratitude" for multi-label posts), then the scenario (MELD: the dialogue's previous lines
              and the speaker's line); the answer is the bare letter, its position uniform

A mixture entry: {corpus, split (default data.split), modalities (default data.modalities), limit, weight,
balance, target (default data.target), align (default true), formats: {name: weight}}. A per-entry `target` lets
one corpus train on labels alone while others keep an explanation. `align: false` keeps an entry's media examples
out of the projector-only steps (`optim.align_steps`), so alignment can be fed closed-set, labels-only answers
(measured: media in every format with explanations left CK+/RAVDESS dev at chance after 200 alignment steps). `weight` scales how many of the entry's examples one epoch holds (2 = each sample
twice, in independently drawn formats; 0.5 = a seeded half), so small corpora can be upweighted against large ones.
`balance: p` (0 < p <= 1) redraws the entry's samples (seeded, with replacement, same count) with probability
proportional to freq(rarest gold label) ** -p: macro-averaged metrics weigh a class of 77 posts (GoEmotions "grief")
as much as one of 14k ("neutral"), and a model that rarely sees a class never answers it.

Closed-set answers of a multi-label sample (GoEmotions) hold all of its gold labels in the label set, which is what
the multi-label metric scores; single-label corpora answer their one label."""
from __future__ import annotations

import random
from pathlib import Path

from ..data import LABEL_SETS, Sample
from ..data.corpora import CORPORA
from ..errors import AffectError, ConfigError
from ..prompts import list_prompts
from ..registry import unknown_name_message
from .examples import Example, load_split, sample_modalities, shuffled_candidates, target_text

FORMATS = ("closed", "ov", "mcq", "yesno", "absent", "modality", "va", "scenario")
ENTRY_KEYS = {"corpus", "split", "modalities", "limit", "weight", "formats", "balance", "target", "align"}
CANONICAL = {"closed": "emotion_closed", "ov": "emotion_ov"}
CANONICAL_SHARE = 0.5  # share of closed/ov examples that use the canonical prompt (what chat and evals send)
MCQ_MAX_OPTIONS = 6
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
SENSE = {"audio": "hear the voice", "image": "see the face", "video": "see the face"}
SCENARIO_CONTEXT_LINES = 3  # previous lines of a MELD dialogue shown before the speaker's line
# Training questions only: EmoBench's own wording ("... ultimately feel in this situation?") is kept for the eval.
SCENARIO_QUESTIONS = ("Which feeling best describes {subject} here?", "How is {subject} most likely feeling?",
                      "Pick the emotion that {subject} has in this scene.",
                      "What does {subject} feel at the end of this?")


def validate_mixture(mixture, default_split: str) -> None:
    """Parse-time checks: a missing corpus or split, an unknown format or a weight <= 0 is a clear error."""
    if not isinstance(mixture, list) or not mixture:
        raise ConfigError("data.mixture must be a non-empty list of {corpus, formats, weight, ...} entries")
    for i, entry in enumerate(mixture):
        where = f"data.mixture[{i}]"
        if not isinstance(entry, dict) or "corpus" not in entry:
            raise ConfigError(f"{where} must be a mapping with at least 'corpus'")
        unknown = set(entry) - ENTRY_KEYS
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(ENTRY_KEYS)}")
        corpus, split = str(entry["corpus"]), str(entry.get("split", default_split))
        if corpus.endswith(".jsonl"):
            if not Path(corpus).is_file():
                raise ConfigError(f"{where}: manifest '{corpus}' does not exist")
        else:
            if corpus not in CORPORA.names():
                raise ConfigError(f"{where}: " + unknown_name_message("corpus", corpus, CORPORA.names()))
            splits = CORPORA.get(corpus).splits
            if split not in splits:
                raise ConfigError(f"{where}: " + unknown_name_message(f"{corpus} split", split, splits))
        weight = entry.get("weight", 1.0)
        if not isinstance(weight, (int, float)) or weight <= 0:
            raise ConfigError(f"{where}: weight must be > 0, got {weight!r}")
        balance = entry.get("balance", 0)
        if isinstance(balance, bool) or not isinstance(balance, (int, float)) or not 0 <= balance <= 1:
            raise ConfigError(f"{where}: balance must be a number in [0, 1] (0 = off), got {balance!r}")
        if not isinstance(entry.get("align", True), bool):
            raise ConfigError(f"{where}: align must be true or false, got {entry['align']!r}")
        if "target" in entry:
            from .examples import TARGET_STYLES

            if entry["target"] not in TARGET_STYLES:
                raise ConfigError(f"{where}: " + unknown_name_message("target style", str(entry["target"]),
                                                                     TARGET_STYLES))
        formats = entry.get("formats", {"closed": 1.0})
        if not isinstance(formats, dict) or not formats:
            raise ConfigError(f"{where}: formats must be a non-empty mapping of format -> weight")
        for name, w in formats.items():
            if name not in FORMATS:
                raise ConfigError(f"{where}: " + unknown_name_message("format", name, FORMATS))
            if not isinstance(w, (int, float)) or w <= 0:
                raise ConfigError(f"{where}: format '{name}' weight must be > 0, got {w!r}")


def _join(items: list[str], last: str) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + f" {last} " + items[-1]


class MixtureBuilder:
    """Turns samples into examples of the drawn formats (one builder per training run)."""

    def __init__(self, pipe, target_style: str, seed: int):
        self.pipe, self.style, self.seed = pipe, target_style, seed
        self.model_modalities = set(pipe.model.config.modalities) | {"text"}
        self.paraphrases = {f: list_prompts(f"train/{f}_") for f in FORMATS}
        self.dialogues: dict = {}  # (corpus, dialogue id) -> [(utterance id, speaker, text)], for scenario context
        self.indexed: set = set()  # (corpus, split) already in self.dialogues

    def _prompt(self, fmt: str, rng: random.Random) -> str:
        if fmt in CANONICAL and rng.random() < CANONICAL_SHARE:
            return CANONICAL[fmt]
        names = self.paraphrases[fmt]
        if not names:
            raise AffectError(f"no training prompts prompts/train/{fmt}_*.jinja")
        return rng.choice(names)

    def _messages(self, sample: Sample, used: list[str], prompt: str, **variables) -> tuple[list[dict], str]:
        cfg = self.pipe.model.config
        video = sample.video if "video" in used else None
        audio = sample.audio if "audio" in used and not (video and cfg.video_use_audio) else None
        return self.pipe.build_messages(text=sample.text if "text" in used else None, audio=audio,
                                        image=sample.image if "image" in used else None, video=video, prompt=prompt,
                                        candidates=variables.pop("candidates", None), variables=variables)

    def build(self, sample: Sample, fmt: str, wanted: list[str], rng: random.Random) -> Example | None:
        used = sample_modalities(sample, wanted, list(self.model_modalities))
        if not used:
            return None
        cfg = self.pipe.model.config
        if "video" in used and cfg.video_use_audio and "audio" not in used:
            used.append("audio")
        space = LABEL_SETS.get(sample.label_set or "") or []
        gold = sample.label or (sample.labels[0] if sample.labels else None)
        prompt = self._prompt(fmt, rng)
        if fmt in ("closed", "mcq", "yesno", "scenario") and (not space or gold not in space):
            return None
        if fmt == "closed":
            cands = shuffled_candidates(space, f"{sample.id}:{rng.random()}", self.seed)
            messages, pid = self._messages(sample, used, prompt, candidates=cands)
            target = target_text(sample, used, self.style, labels=closed_answer(sample, space, gold))
        elif fmt == "ov":
            if not sample.labels:
                return None
            messages, pid = self._messages(sample, used, prompt)
            target = target_text(sample, used, self.style)
        elif fmt == "mcq":
            others = [c for c in space if c not in set(sample.labels) | {gold}]
            options = [gold] + rng.sample(others, min(len(others), MCQ_MAX_OPTIONS - 1))
            rng.shuffle(options)
            messages, pid = self._messages(sample, used, prompt, options=options)
            target = f'{{"answer": "{LETTERS[options.index(gold)]}"}}'
        elif fmt == "yesno":
            yes = rng.random() < 0.5
            others = [c for c in space if c not in set(sample.labels) | {gold}]
            if not yes and not others:
                return None
            label = gold if yes else rng.choice(others)
            messages, pid = self._messages(sample, used, prompt, label=label)
            target = "yes" if yes else "no"
        elif fmt == "absent":
            missing = self._missing(used)
            candidates = [m for m in ("audio", "image", "video") if m in missing and m in self.model_modalities
                          and not (m == "video" and "image" in used)]
            if not candidates:
                return None
            absent = rng.choice(candidates)
            messages, pid = self._messages(sample, used, prompt, absent=absent)
            target = f"No {absent} was provided, so I cannot {SENSE[absent]}; I only have the {_join(used, 'and')}."
        elif fmt == "modality":
            messages, pid = self._messages(sample, used, prompt)
            missing = self._missing(used)
            tail = f"no {_join(missing, 'or')} was provided." if missing else "nothing is missing."
            target = f"I was given the {_join(used, 'and')}; {tail}"
        elif fmt == "scenario":
            if used != ["text"] or not sample.text:
                return None
            subject, scene = self._scene(sample)
            golds = closed_answer(sample, space, gold)[:2]
            others = [c for c in space if c not in set(sample.labels) | {gold}]
            n_options = min(rng.randint(4, MCQ_MAX_OPTIONS), 1 + len(others) // len(golds))
            options, seen = [" & ".join(g.capitalize() for g in golds)], set()
            while len(options) < n_options:
                option = " & ".join(sorted((c.capitalize() for c in rng.sample(others, len(golds))), key=str.lower))
                if option not in seen:
                    seen.add(option)
                    options.append(option)
            gold_option = options[0]
            rng.shuffle(options)
            messages, pid = self.pipe.build_messages(text=scene, prompt=prompt, variables={
                "question": rng.choice(SCENARIO_QUESTIONS).format(subject=subject), "choices": options})
            target = LETTERS[options.index(gold_option)]
        else:  # va
            if sample.valence is None or sample.arousal is None:
                return None
            messages, pid = self._messages(sample, used, prompt)
            # the va answer keeps its explanation key even in the "labels" style (parse's format check needs it)
            target = target_text(sample, used, "short" if self.style == "labels" else self.style,
                                 with_dimensions=True)
        columns = {"gold_labels": list(sample.labels), "label": sample.label, "label_set": sample.label_set,
                   "multi_labels": list(sample.multi_labels), "corpus": sample.corpus, "modalities": used,
                   "speaker": sample.person, "gender": sample.gender, "language": sample.language, "format": fmt}
        return Example(f"{sample.id}#{fmt}", messages, target, pid, columns)

    def _scene(self, sample: Sample) -> tuple[str, str]:
        """(who the question is about, the scenario text): a MELD line with the lines before it, else a post."""
        dialogue = self.dialogues.get((sample.corpus, sample.meta.get("dialogue_id")))
        if sample.speaker and dialogue:
            here = sample.meta.get("utterance_id")
            before = [f"{who}: {said}" for u, who, said in dialogue if u < here][-SCENARIO_CONTEXT_LINES:]
            return sample.speaker, "\n".join(before + [f"{sample.speaker}: {sample.text}"])
        if sample.speaker:
            return sample.speaker, f'{sample.speaker} says: "{sample.text}"'
        return "the writer", f'Someone wrote this online: "{sample.text}"'

    def index_dialogues(self, samples: list[Sample]) -> None:
        """Remember each dialogue's lines (MELD meta: dialogue_id, utterance_id) for scenario context; a split that
        two scenario entries read is indexed once (its lines would otherwise repeat in the context)."""
        key = {(s.corpus, s.split) for s in samples}
        if key <= self.indexed:
            return
        self.indexed |= key
        for s in samples:
            if s.speaker and s.text and "dialogue_id" in s.meta and "utterance_id" in s.meta:
                self.dialogues.setdefault((s.corpus, s.meta["dialogue_id"]), []).append(
                    (s.meta["utterance_id"], s.speaker, s.text))
        for lines in self.dialogues.values():
            lines.sort()

    @staticmethod
    def _missing(used: list[str]) -> list[str]:
        have = set(used) | ({"audio", "image"} if "video" in used else set())
        return [m for m in ("audio", "image", "video", "text") if m not in have]


def closed_answer(sample: Sample, space: list[str], gold: str) -> list[str]:
    """All in-set gold labels of a multi-label sample (in the label set's order), else the one gold label."""
    multi = [c for c in space if c in set(sample.multi_labels)]
    return multi if len(multi) > 1 else [gold]


def balanced_draw(samples: list[Sample], power: float, seed) -> list[Sample]:
    """`len(samples)` draws with replacement, each sample weighted by freq(its rarest gold label) ** -power."""
    from collections import Counter

    freq = Counter(label for s in samples for label in (s.labels or [s.label]))
    weights = [min(freq[label] for label in (s.labels or [s.label])) ** -power for s in samples]
    return random.Random(seed).choices(samples, weights, k=len(samples))


def build_mixture(pipe, mixture: list[dict], default_split: str, default_modalities: list[str], target_style: str,
                  seed: int = 0, data_root=None, on_missing: str = "skip") -> list[Example]:
    """Every entry's examples, formats drawn per (sample, repeat) with a seeded RNG; returns one flat list
    (the loop's BatchPlan shuffles it per epoch)."""
    validate_mixture(mixture, default_split)
    builder = MixtureBuilder(pipe, target_style, seed)
    out: list[Example] = []
    for i, entry in enumerate(mixture):
        split = str(entry.get("split", default_split))
        samples = load_split(str(entry["corpus"]), split, data_root, on_missing)
        if "scenario" in entry.get("formats", {}):
            builder.index_dialogues(samples)  # the whole split, before `limit`: context lines need their dialogue
        limit = entry.get("limit")
        if limit is not None and limit < len(samples):
            samples = random.Random(seed).sample(samples, int(limit))
        if entry.get("balance"):
            samples = balanced_draw(samples, float(entry["balance"]), f"{seed}:{i}:balance")
        builder.style = str(entry.get("target", target_style))
        formats = entry.get("formats", {"closed": 1.0})
        names, weights = list(formats), [float(w) for w in formats.values()]
        weight = float(entry.get("weight", 1.0))
        n_full, frac = int(weight), weight - int(weight)
        made = 0
        for r in range(max(1, n_full + (1 if frac else 0))):
            pool = samples
            if r == n_full and frac:  # the fractional repeat takes a seeded share of the samples
                pool = random.Random(f"{seed}:{i}:{r}").sample(samples, max(1, round(frac * len(samples))))
            copies: dict[str, int] = {}
            for s in pool:
                k = copies[s.id] = copies.get(s.id, -1) + 1  # a balanced draw repeats samples: each copy its own
                rng = random.Random(f"{seed}:{i}:{r}:{s.id}" + (f":{k}" if k else ""))
                fmt = rng.choices(names, weights)[0]
                try:
                    ex = builder.build(s, fmt, list(entry.get("modalities") or default_modalities), rng)
                except AffectError:
                    ex = None
                if ex is None and fmt != names[0]:  # a format the sample cannot take: fall back to the first
                    ex = builder.build(s, names[0], list(entry.get("modalities") or default_modalities), rng)
                if ex is not None:
                    ex.id = f"{ex.id}#r{r}" + (f"c{k}" if k else "")
                    ex.columns["align"] = bool(entry.get("align", True))
                    out.append(ex)
                    made += 1
        if not made:
            raise AffectError(f"data.mixture[{i}] ({entry['corpus']}/{split}) gave no usable examples for a model "
                              f"with modalities {sorted(builder.model_modalities)}")
    return out
