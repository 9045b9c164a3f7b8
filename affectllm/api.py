"""The chat prompt API: `pipe = affectllm.load("mini"); pipe.chat(text=..., audio=..., video=...)`.

`load` takes a preset name or a saved checkpoint folder; `chat` renders a prompt from prompts/ by name, runs the
model greedily by default, and returns the raw text with the parsed structured answer (scoring.parse)."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import ConfigError
from .prompts import get_prompt

REQUIRED_CHECKPOINT_FILES = ("config.json",)
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


@dataclass
class ChatResult:
    raw: str
    prediction: Any
    prompt: str
    timings: dict = field(default_factory=dict)
    label_probability: float | None = None  # the model's probability of its first label's tokens, when asked for

    def to_dict(self) -> dict:
        pred = self.prediction
        return {"raw": self.raw, "prediction": asdict(pred) if hasattr(pred, "__dataclass_fields__") else pred,
                "prompt": self.prompt, "timings": self.timings, "label_probability": self.label_probability}


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def require_input(text: str | None, audio: Any = None, image: Any = None, video: Any = None) -> None:
    """A chat needs something to read: with no text and no media the model would answer the bare prompt, which
    looks like an answer about nothing."""
    if (text is None or not str(text).strip()) and not any(_as_list(x) for x in (audio, image, video)):
        raise ConfigError("nothing to ask about: give text, audio, image or video (at least one)")


class AffectPipeline:
    """A model and its processor, with the chat API on top."""

    def __init__(self, model, processor, name: str = ""):
        self.model, self.processor, self.name = model, processor, name

    @staticmethod
    def build_messages(text: str | None = None, audio: Any = None, image: Any = None, video: Any = None,
                       prompt: str = "emotion_ov", candidates: list[str] | None = None, with_confidence: bool = False,
                       with_dimensions: bool = False, system: str | None = None,
                       variables: dict | None = None) -> tuple[list[dict], str]:
        """Chat messages with one content part per media item, then the rendered prompt text. A staticmethod, so a
        client of a remote gateway (affectllm.serve.client) builds exactly the same messages."""
        parts = [{"type": "video", "video": v} for v in _as_list(video)]
        parts += [{"type": "image", "image": v} for v in _as_list(image)]
        parts += [{"type": "audio", "audio": v} for v in _as_list(audio)]
        modalities = [p["type"] for p in parts]
        modalities = sorted(set(modalities), key=modalities.index) + (["text"] if text else [])
        tmpl = get_prompt(prompt)
        variables = {"modalities": modalities, "text": text, "with_confidence": with_confidence,
                     "with_dimensions": with_dimensions, **(variables or {})}
        if "candidates" in tmpl.variables:
            if not candidates:
                raise ConfigError(f"prompt '{prompt}' needs candidates (a list of label names)")
            variables["candidates"] = candidates
        parts.append({"type": "text", "text": tmpl.render(**variables)})
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": parts}]
        return messages, tmpl.id

    @torch.no_grad()
    def generate(self, conversations: list[list[dict]], max_new_tokens: int = 200, **generate_kwargs) -> list[str]:
        batch = self.processor(conversations)
        generate_kwargs.setdefault("draft_phrases", self.draft_phrases())
        out = self.model.generate(**batch, max_new_tokens=max_new_tokens,
                                  pad_token_id=self.processor.tokenizer.pad_token_id, **generate_kwargs)
        return [self.processor.decode(row) for row in out]

    def draft_phrases(self):
        """The training targets' fixed wording as a `draft_decoding.PhraseSource`, the fixed part of greedy
        decoding's drafts (affectllm/draft_decoding.py); tokenised once per pipeline."""
        if getattr(self, "_draft_phrases", None) is None:
            from .data.targets import template_phrases
            from .draft_decoding import phrase_source

            tok = self.processor.tokenizer
            self._draft_phrases = phrase_source(template_phrases(), lambda p: tok.encode(p, add_special_tokens=False))
        return self._draft_phrases

    def score_candidates(self, messages: list[dict], candidates: list[str], end: str | None = None) -> list[float]:
        """Log-likelihood of each candidate as the beginning of the answer to `messages` (the eval suite's scored
        candidates). With `end`, the candidate must also stop there: the log of the next token's probability
        mass on tokens that start with `end` is added (a label ends at its closing quote, whichever token carries
        it: `"]}`, `"],`, `",` ...; truncating the text at a bracket instead scores a token split the model never
        produces)."""
        return self.score_candidates_batch([messages], [candidates], end)[0]

    def score_candidates_batch(self, conversations: list[list[dict]], candidates: list[list[str]],
                               end: str | None = None) -> list[list[float]]:
        """`score_candidates` for several prompts at once: one left-padded prefill of all prompts (media
        included), then every prompt's candidates continue from its KV cache in one batch. C candidates cost one
        prompt plus C short continuations, not C prompts."""
        from .devices import to_device
        from .draft_decoding import cache_argument, output_cache

        if len(conversations) != len(candidates):
            raise ConfigError(f"{len(candidates)} candidate lists for {len(conversations)} conversations")
        tok = self.processor.tokenizer
        ids = [[tok(c, add_special_tokens=False).input_ids for c in cands] for cands in candidates]
        if any(not i for row in ids for i in row) or any(not row for row in ids):
            raise ConfigError("scored candidates must be non-empty lists of non-empty answers")
        per = max(len(row) for row in ids)  # every prompt's cache is repeated `per` times; short lists are padded
        flat = [row[k] if k < len(row) else row[0] for row in ids for k in range(per)]
        shared = 0  # tokens every candidate starts with (`{"labels": ["`) go into the prefill, scored once
        while shared < min(len(i) for i in flat) - 1 and len({i[shared] for i in flat}) == 1:
            shared += 1
        prefix, rest = flat[0][:shared], [i[shared:] for i in flat]
        width = max(len(i) for i in rest)
        model, lm = self.model, self.model.language_model
        batch = to_device(dict(self.processor(conversations, padding_side="left")), model.device)
        prefix_ids = torch.tensor(prefix, dtype=torch.long, device=model.device).repeat(len(conversations), 1)
        input_ids = torch.cat([batch["input_ids"], prefix_ids], 1)
        mask = torch.cat([batch["attention_mask"], torch.ones(len(conversations), shared, device=model.device,
                                                              dtype=batch["attention_mask"].dtype)], 1)
        media = {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask")}
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        with torch.inference_mode():
            embeds = model.build_inputs_embeds(input_ids, **media)
            out = lm(inputs_embeds=embeds, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                     use_cache=True, logits_to_keep=shared + 1)
            head = out.logits[:, -(shared + 1):].float().log_softmax(-1)  # predicts prefix[0..], then rest[0]
            prefix_ll = [float(sum(head[b, j, prefix[j]] for j in range(shared))) for b in range(len(ids))]
            first = head[:, shared].repeat_interleave(per, 0)
            cache = output_cache(out)  # continuations after each prompt, right-padded (padding is never read)
            cache.batch_repeat_interleave(per)
            rows = torch.tensor([i + [pad] * (width - len(i)) for i in rest], device=model.device)
            cont_mask = torch.cat([mask.repeat_interleave(per, 0), torch.ones_like(rows, dtype=mask.dtype)], 1)
            positions = mask.sum(1).repeat_interleave(per, 0)[:, None] + torch.arange(width, device=model.device)
            logits = lm(input_ids=rows, attention_mask=cont_mask, position_ids=positions,
                        **{cache_argument(lm): cache}).logits
            ends = self._tokens_starting_with(end) if end is not None else None
            scores = []
            for r, i in enumerate(rest):
                logp = logits[r, : len(i)].float().log_softmax(-1)  # position j predicts token j + 1
                total = prefix_ll[r // per] + float(first[r, i[0]])
                total += float(sum(logp[j - 1, i[j]] for j in range(1, len(i))))
                if ends is not None:
                    total += float(torch.logsumexp(logp[len(i) - 1, ends], 0))
                scores.append(total)
        return [scores[b * per: b * per + len(row)] for b, row in enumerate(ids)]

    def _tokens_starting_with(self, text: str) -> torch.Tensor:
        """Ids of the vocabulary tokens whose text starts with `text` (cached per pipeline)."""
        cache = self.__dict__.setdefault("_token_prefix_ids", {})
        if text not in cache:
            tok = self.processor.tokenizer
            pieces = tok.convert_ids_to_tokens(list(range(len(tok))))
            hits = [i for i, p in enumerate(pieces) if isinstance(p, str) and p.startswith(text)]
            if not hits:
                raise ConfigError(f"no token of this tokenizer starts with {text!r}")
            cache[text] = torch.tensor(hits, device=self.model.device)
        return cache[text]

    def chat(self, text: str | None = None, audio: Any = None, image: Any = None, video: Any = None,
             prompt: str = "emotion_ov", candidates: list[str] | None = None, with_confidence: bool = False,
             with_dimensions: bool = False, system: str | None = None, max_new_tokens: int = 128,
             **generate_kwargs) -> ChatResult:
        from .scoring import parse

        require_input(text, audio, image, video)
        t0 = time.perf_counter()
        messages, prompt_id = self.build_messages(text, audio, image, video, prompt, candidates, with_confidence,
                                                  with_dimensions, system)
        t1 = time.perf_counter()
        raw = self.generate([messages], max_new_tokens=max_new_tokens, **generate_kwargs)[0]
        t2 = time.perf_counter()
        return ChatResult(raw=raw, prediction=parse(raw), prompt=prompt_id,
                          timings={"preprocess_s": round(t1 - t0, 3), "generate_s": round(t2 - t1, 3)})

    def save_pretrained(self, path: str | Path) -> None:
        self.model.save_pretrained(path)
        self.processor.save_pretrained(path)


def check_checkpoint(path: Path) -> None:
    """Name every missing file, instead of a KeyError deep inside from_pretrained."""
    missing = [f for f in REQUIRED_CHECKPOINT_FILES if not (path / f).exists()]
    if not any((path / f).exists() for f in WEIGHT_FILES):
        missing.append(" or ".join(WEIGHT_FILES))
    if not any((path / f).exists() for f in TOKENIZER_FILES):
        missing.append(" or ".join(TOKENIZER_FILES))
    if missing:
        raise ConfigError(f"checkpoint folder '{path}' is missing: {', '.join(missing)}")


def load(preset_or_path: str | Path | None = None, dtype: str | torch.dtype | None = None,
         merge_lora: bool = False) -> AffectPipeline:
    """A preset name (`affectllm ls`), a shipped model, a trained artifact folder (affectllm.artifact), or a folder
    written by `save_pretrained`; None: the trained default (`mini-affect` when shipped, else the untuned `mini`).

    `dtype`: "float32" / "bfloat16" / "float16" / a torch dtype, "auto" (the faster of bf16/fp32 on this machine,
    see affectllm.dtypes), or None for the preset's / checkpoint config's own dtype.

    `merge_lora`: for answering only (chat, a one-off script): a trained artifact's LoRA is added into the weights
    (affectllm.artifact.load_artifact) without importing PEFT, which loads faster; False keeps it trainable."""
    from .dtypes import resolve_dtype_name
    from .presets import build_preset, list_presets

    if dtype is not None:  # resolve once, up front: a bad name fails before any weights load
        dtype = resolve_dtype_name(dtype)
    from .shipped import default_model, list_shipped, shipped_path

    if preset_or_path is None:
        preset_or_path = default_model()
    path = Path(preset_or_path)
    if str(preset_or_path) in list_presets():
        model, processor = build_preset(str(preset_or_path), dtype=dtype)
        return AffectPipeline(model, processor, str(preset_or_path))
    if str(preset_or_path) in list_shipped():
        from .artifact import load_artifact

        pipe = load_artifact(shipped_path(str(preset_or_path)), dtype=dtype, merge_lora=merge_lora)
        pipe.name = str(preset_or_path)
        return pipe
    if not path.is_dir():
        from .registry import unknown_name_message

        raise ConfigError(unknown_name_message("preset, shipped model or checkpoint folder", str(preset_or_path),
                                               list_presets() + list_shipped()))
    from .artifact import is_artifact, load_artifact

    if is_artifact(path):
        return load_artifact(path, dtype=dtype, merge_lora=merge_lora)
    check_checkpoint(path)
    from .configuration_affect import AffectConfig
    from .modeling_affect import AffectForConditionalGeneration
    from .processing_affect import AffectProcessor

    config = AffectConfig.from_pretrained(path)
    kwargs = {"dtype": getattr(torch, dtype)} if dtype else {}  # already a resolved name
    model = AffectForConditionalGeneration.from_pretrained(path, config=config, **kwargs).eval()
    return AffectPipeline(model, AffectProcessor.from_pretrained(path, config=config), str(path))


def chat(model: str | AffectPipeline | None = None, **kwargs) -> ChatResult:
    """One-shot convenience: `affectllm.chat(text="...", audio="a.wav")`."""
    pipe = model if isinstance(model, AffectPipeline) else load(model, merge_lora=True)
    return pipe.chat(**kwargs)
