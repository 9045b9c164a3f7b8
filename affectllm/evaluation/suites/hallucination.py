"""`hallucination`: does the model talk about cues it was never given? Four probe types (option ``probe``):

* ``absent`` (modality-absent probes): text only (or audio only) is given and the model is asked about a modality
  that is not there ("What does the speaker's voice sound like?"). Score: `absent_ack_rate`, the share of answers
  that state the modality is missing (`grounding.classify_absent`, a documented keyword rule; version 2: "don't
  know" / "can't tell" without naming the missing medium is `dont_know_rate`, not acknowledgement, and refusals
  to recognise emotions are `refusal_rate` in every probe); `describes_absent_rate`
  is the share that describes the missing modality instead (`parsers.cited_modalities`).
* ``pairs`` (paired yes/no cue probes, in the spirit of EmotionHallucer, built from real metadata): per sample one
  question whose true answer is yes and one whose answer is no — the gold emotion vs another label of the corpus
  (RAVDESS emotion, CK+ expression; calm/neutral are never used against each other), and for RAVDESS the recorded
  intensity (strong vs normal). A pair scores only when both answers are right (`pair_accuracy`); `yes_rate`
  exposes a yes-bias.
* ``conflict``: real samples paired so that two modalities disagree — the text of one corpus (MELD, gold X) with the
  audio or face of another (RAVDESS / CK+, gold Y != X, both mapped into MELD's label set; neutral excluded).
  Reported: how often the mapped answer contains only the text emotion (`text_only_rate`), only the other
  modality's (`other_only_rate`), both, or neither; `single_modality_rate` = one modality decided alone.
* ``grounding``: open-vocabulary answers on inputs with some modalities withheld; an explanation that cites a
  modality family (audio words, visual words, text words) that was not in the input counts as ungrounded
  (`ungrounded_rate`, per family `ungrounded_audio_rate` / `ungrounded_visual_rate` / `ungrounded_text_rate`,
  among answers that explain). Version 3: value-level grounding (`grounding.py`): every pitch/energy/rate/voicing
  number or direction an explanation states about given speech is checked against the prosody tower's measured
  cues; `value_claims_verifiable_rate` and, of those, `value_claims_wrong_rate` (CI over explanations).
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from ...data import LABEL_SETS
from ...errors import ConfigError
from ..inputs import stable_seed
from ..grounding import classify_absent, extract_claims, grounding_scores, is_refusal
from ..metrics import bootstrap_ratio, mean_with_ci, pair_scores
from ..parsers import cited_modalities, ungrounded_modalities
from .base import Suite, filter_samples, load_dataset

PROBES = ("absent", "pairs", "conflict", "grounding")
ASK = {"audio": "What does the speaker's voice sound like, and what does its tone tell you about how they feel?",
       "video": "Describe the speaker's facial expression in the video and what it tells you about how they feel.",
       "image": "Describe the facial expression in the image and what it tells you about how the person feels."}
NEVER_AGAINST = {frozenset({"calm", "neutral"})}
SUBJECT = {"audio": "the emotion in the speaker's voice", "image": "the emotion shown on the face",
           "video": "the emotion shown in the video"}


def other_label(gold: str, labels: list[str], salt: str) -> str:
    pool = [x for x in labels if x != gold and frozenset({x, gold}) not in NEVER_AGAINST]
    return pool[stable_seed("other", salt) % len(pool)]


class HallucinationSuite(Suite):
    name = "hallucination"
    option_keys = Suite.option_keys | {"probe", "ask", "questions", "common_labels"}
    metric_names = ("absent_ack_rate", "pair_accuracy", "single_modality_rate", "ungrounded_rate")

    @classmethod
    def validate(cls, options, where):
        super().validate(options, where)
        if options.get("probe") not in PROBES:
            raise ConfigError(f"{where}: options.probe must be one of {', '.join(PROBES)}")
        for m in options.get("ask") or []:
            if m not in ASK:
                raise ConfigError(f"{where}: options.ask: no probe question for '{m}'; known: {', '.join(ASK)}")

    # ---- items --------------------------------------------------------------------------------------------------
    def items(self, task, samples, ctx):
        probe = task.options["probe"]
        return getattr(self, f"_items_{probe}")(task, samples, ctx)

    def _items_absent(self, task, samples, ctx):
        out = []
        for s in samples:
            given = [m for m in s.modalities() if m in (task.dataset.get("modalities") or s.modalities())]
            for asked in task.options.get("ask", ["audio", "video"]):
                if asked in given or (asked == "audio" and "video" in given):
                    continue
                item = self.make_item(task, s, modalities=given, variant=f"ask:{asked}", prompt="probe_absent_modality",
                                      variables={"question": ASK[asked]}, oracle={"kind": "absent", "asked": asked})
                item.meta["asked"] = asked
                out.append(item)
        return out

    def _items_pairs(self, task, samples, ctx):
        out = []
        given_mod = [m for m in (task.dataset.get("modalities") or []) if m != "text"]
        for s in samples:
            given = [m for m in s.modalities() if m in (task.dataset.get("modalities") or s.modalities())]
            subject = SUBJECT.get((given_mod or given or ["audio"])[0], "the emotion expressed")
            labels = self.candidates(task, s) or []
            qs = []
            if "emotion" in task.options.get("questions", ["emotion"]) and s.label in labels:
                no = other_label(s.label, labels, s.id)
                qs += [("emotion", "yes", f"Is {subject} '{s.label}'?"), ("emotion", "no", f"Is {subject} '{no}'?")]
            intensity = s.meta.get("intensity")
            if "intensity" in task.options.get("questions", []) and intensity in ("normal", "strong"):
                qs += [("intensity", "yes" if intensity == "strong" else "no",
                        "Is the emotion expressed with strong intensity?"),
                       ("intensity", "yes" if intensity == "normal" else "no",
                        "Is the emotion expressed with normal, mild intensity?")]
            for kind, expected, q in qs:
                item = self.make_item(task, s, modalities=given, variant=f"{kind}:{expected}", prompt="probe_yesno",
                                      variables={"question": q}, oracle={"kind": "yesno", "gold": expected})
                item.meta.update(question_kind=kind, expected=expected, question=q)
                out.append(item)
        return out

    def _items_conflict(self, task, samples, ctx):
        pw = task.dataset.get("pair_with")
        if not pw:
            raise ConfigError(f"task '{task.name}': probe 'conflict' needs dataset.pair_with (the text corpus)")
        common = task.options.get("common_labels", "meld")
        mapper = ctx.mapper(common)
        partners = filter_samples(load_dataset(pw, pw["split"], ctx, task), pw.get("filter"))
        partners = [p for p in partners if p.text and mapper.map(p.label or "") not in (None, "neutral")]
        random.Random(stable_seed("partners", task.name)).shuffle(partners)
        other_mod = [m for m in (task.dataset.get("modalities") or []) if m != "text"] or ["audio"]
        out, used = [], 0
        for s in samples:
            y = mapper.map(s.label or "")
            if y in (None, "neutral"):
                continue
            partner = next((p for p in partners[used:] if mapper.map(p.label) != y), None)
            if partner is None:
                break
            used = partners.index(partner) + 1
            x = mapper.map(partner.label)
            item = self.make_item(task, s, modalities=[m for m in s.modalities() if m in other_mod] + ["text"],
                                  text=partner.text, key=f"conflict|{s.id}|{partner.id}", variant="conflict",
                                  gold={**self.gold(s), "text_label": x, "other_label": y, "partner": partner.id},
                                  oracle={"gold": [x if stable_seed("dom", s.id) % 2 else y],
                                          "candidates": LABEL_SETS.get(common) if isinstance(common, str) else common})
            item.meta.update(partner=partner.id, other_modality=other_mod[0])
            out.append(item)
        return out

    def _items_grounding(self, task, samples, ctx):
        return [self.make_item(task, s) for s in samples]

    # ---- records ------------------------------------------------------------------------------------------------
    def record(self, task, item, raw, ctx, response=None):
        out = super().record(task, item, raw, ctx, response)
        probe, sc = task.options["probe"], out["scores"]
        sc["refusal"] = float(is_refusal(raw))
        if probe == "absent":
            kind = classify_absent(raw)
            sc["acknowledges_missing"] = float(kind == "missing")
            sc["dont_know"] = float(kind == "dont_know")
            sc["describes_absent"] = float(bool(cited_modalities(raw) & ({"audio"} if item.meta["asked"] == "audio"
                                                                           else {"visual"})))
        elif probe == "pairs":
            sc["correct"] = float(out["parsed"].get("answer") == item.meta["expected"])
        elif probe == "conflict":
            mapped = ctx.mapper(task.options.get("common_labels", "meld")).map_labels(out["parsed"].get("labels", []))
            t, o = item.gold["text_label"] in mapped, item.gold["other_label"] in mapped
            sc.update(text_only=float(t and not o), other_only=float(o and not t), both=float(t and o),
                      neither=float(not t and not o))
        elif probe == "grounding":
            expl = out["parsed"].get("explanation") or ""
            bad = ungrounded_modalities(expl, item.modalities or [])
            sc.update(has_explanation=float(bool(expl.strip())), ungrounded=float(bool(bad)),
                      ungrounded_audio=float("audio" in bad), ungrounded_visual=float("visual" in bad),
                      ungrounded_text=float("text" in bad))
            audio = item.media.get("audio", item.sample.audio)
            if "audio" in (item.modalities or []) and isinstance(audio, str) and extract_claims(expl):
                out["cues"] = _measured_cues(audio, ctx)
        return out

    # ---- summary ------------------------------------------------------------------------------------------------
    def summarize(self, task, records, ctx):
        base = super().summarize(task, records, ctx)
        m, tables = base["metrics"], base["tables"]
        probe = task.options["probe"]
        col = lambda key, rows=records: np.array([r["scores"].get(key, np.nan) for r in rows], float)  # noqa: E731
        rate = lambda key, values: m.update(mean_with_ci(ctx.bootstrap, values, key))  # noqa: E731
        if probe == "absent" and records:
            rate("absent_ack_rate", col("acknowledges_missing"))
            rate("describes_absent_rate", col("describes_absent"))
            for asked in sorted({r["meta"]["asked"] for r in records}):
                rows = [r for r in records if r["meta"]["asked"] == asked]
                rate(f"ask:{asked}.absent_ack_rate", col("acknowledges_missing", rows))
            rate("dont_know_rate", col("dont_know"))
        elif probe == "pairs":
            all_yes, all_no = [], []
            for kind in sorted({r["meta"]["question_kind"] for r in records}):
                rows = {(r["sample_id"], r["meta"]["expected"]): r for r in records if r["meta"]["question_kind"] == kind}
                ids = sorted({sid for sid, _ in rows if (sid, "yes") in rows and (sid, "no") in rows})
                yes = [rows[(i, "yes")]["parsed"].get("answer") for i in ids]
                no = [rows[(i, "no")]["parsed"].get("answer") for i in ids]
                all_yes += yes
                all_no += no
                tables[kind] = pair_scores(yes, no)
                rate(f"{kind}.pair_accuracy", [a == "yes" and b == "no" for a, b in zip(yes, no)])
            m.update(pair_scores(all_yes, all_no))
            ys = np.array([a == "yes" for a in all_yes], float)
            ns = np.array([a == "no" for a in all_no], float)
            rate("pair_accuracy", ys * ns)
            rate("question_accuracy", (ys + ns) / 2)  # per pair: the share of its two questions answered right
            rate("yes_rate", (ys + np.array([a == "yes" for a in all_no], float)) / 2)
            rate("unparsed_rate", (np.array([a is None for a in all_yes], float)
                                   + np.array([a is None for a in all_no], float)) / 2)
        elif probe == "conflict" and records:
            for k in ("text_only", "other_only", "both", "neither"):
                rate(f"{k}_rate", col(k))
            rate("single_modality_rate", col("text_only") + col("other_only"))
            # text_dominance: text_only / (text_only + other_only), pooled over the decided answers
            m.update(bootstrap_ratio(ctx.bootstrap, col("text_only"), col("text_only") + col("other_only"),
                                     "text_dominance"))
            tables["other_modality"] = records[0]["meta"].get("other_modality")
        elif probe == "grounding" and records:
            has = col("has_explanation") > 0
            rate("explanation_rate", has)
            rows = [r for r, h in zip(records, has) if h]
            if rows:
                for k in ("ungrounded", "ungrounded_audio", "ungrounded_visual", "ungrounded_text"):
                    rate(f"{k}_rate", col(k, rows))
                m.update(_value_grounding(rows, ctx))
        if records:
            rate("refusal_rate", col("refusal"))
            m["n"] = float(len(records))
        return base

    def headline(self, task):
        if task.headline:
            return task.headline
        return {"absent": ["absent_ack_rate", "describes_absent_rate"],
                "pairs": ["pair_accuracy", "question_accuracy", "yes_rate"],
                "conflict": ["text_only_rate", "other_only_rate", "both_rate", "neither_rate", "single_modality_rate"],
                "grounding": ["ungrounded_rate", "value_claims_wrong_rate", "value_claims_verifiable_rate",
                              "ungrounded_audio_rate", "ungrounded_visual_rate", "ungrounded_text_rate",
                              "explanation_rate", "refusal_rate"]}[task.options["probe"]] + super().headline(task)[:2]

    def plots(self, task, summary, records, outdir: Path, ctx):
        from ..report import bar_plot

        m = summary["metrics"]
        keys = [k for k in self.headline(task) if k in m]
        keys += [k for k in m if (k.endswith(".pair_accuracy") or k.startswith("ask:")) and k not in keys]
        return [bar_plot(m, keys, outdir / f"{task.name}_hallucination.png",
                         title=f"{task.name} ({task.options['probe']} probes)")]


SUITE = HallucinationSuite


def _measured_cues(path: str, ctx) -> dict:
    """Prosody-tower cues of one clip (cached per run)."""
    from pathlib import Path as _P

    from ...data.targets import tower_speech_cues

    full = _P(path) if _P(path).is_absolute() else ctx.root() / path
    cache = ctx.cache.setdefault("speech_cues", {})
    if str(full) not in cache:
        try:
            cache[str(full)] = tower_speech_cues(str(full))
        except Exception as e:                  # unreadable audio: nothing to verify against
            cache[str(full)] = {"error": str(e)[:200]}
    return cache[str(full)]


def _value_grounding(rows: list[dict], ctx) -> dict[str, float]:
    """Share of explanations' stated speech values/directions that are verifiable, and of those wrong; directions
    are judged against the median of the clips measured in this task."""
    measured = [r.get("cues") for r in rows if r.get("cues") and "error" not in r["cues"]]
    reference = {k: float(np.median([c[k] for c in measured if c.get(k) is not None]))
                 for k in ("pitch_mean_hz", "energy_db_mean", "speaking_rate_hz")
                 if len([c for c in measured if c.get(k) is not None]) >= 3}
    per = [grounding_scores((r["parsed"].get("explanation") or ""), r.get("cues"), reference) for r in rows]
    claims, verifiable = [p["n_claims"] for p in per], [p["n_verifiable"] for p in per]
    out = {"value_claims": sum(claims), "value_claims_verifiable": sum(verifiable)}
    out.update(mean_with_ci(ctx.bootstrap, claims, "value_claims_per_explanation"))
    # pooled over explanations (each with its own number of claims), CIs from resampling explanations
    out.update(bootstrap_ratio(ctx.bootstrap, verifiable, claims, "value_claims_verifiable_rate"))
    out.update(bootstrap_ratio(ctx.bootstrap, [p["n_wrong"] for p in per], verifiable, "value_claims_wrong_rate"))
    return out
