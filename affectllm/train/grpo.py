"""GRPO for multimodal emotion answers: G sampled completions per prompt, group-normalised advantages from the
reward registry, policy-gradient loss on the completion tokens, optional KL to the reference: the model the run
started from (the SFT model when GRPO continues an SFT artifact), not the base with the adapter disabled, which
would pull the policy back towards the untuned model. Works for audio and video inputs because prompts go through
the same encoder (cached tower states or raw media) as SFT."""
from __future__ import annotations

from contextlib import contextmanager

import torch

from ..rewards import combined_rewards
from .encoding import ExampleEncoder
from .recipe import Recipe


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that skip left padding, as generation used them."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def placeholder_ids(config) -> list[int]:
    """Media placeholder ids must never be sampled: in the training sequence they would be read as media slots."""
    return [i for i in (config.audio_token_id, config.image_token_id, config.video_token_id) if i is not None]


def _completion_mask(gen: torch.Tensor, eos_id: int) -> torch.Tensor:
    """1 up to and including the first EOS of each row."""
    is_eos = gen == eos_id
    after = (is_eos.cumsum(1) - is_eos.long()) > 0
    return (~after).long()


class FrozenReference:
    """The trainable weights (LoRA, projectors) as the run started, swapped in for the reference's no-grad
    forward. Only these differ between policy and reference, and they are small (~30 MB for `mini` at r16), so a
    snapshot replaces a second copy of the LLM. Taken before a checkpoint is resumed, so a resumed run keeps the
    SFT model as its reference. Works on sharded (FSDP2 DTensor) parameters: each rank swaps its own shard."""

    def __init__(self, model):
        self.params = [p for p in model.parameters() if p.requires_grad]
        with torch.no_grad():
            self.saved = [p.detach().clone() for p in self.params]

    @contextmanager
    def active(self):
        with torch.no_grad():
            current = [p.detach().clone() for p in self.params]
            for p, s in zip(self.params, self.saved):
                p.copy_(s)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, c in zip(self.params, current):
                    p.copy_(c)


def grpo_loss(model, pipe, encoder: ExampleEncoder, exs, recipe: Recipe) -> tuple[torch.Tensor, dict]:
    cfg = recipe.grpo
    raw = pipe.model
    tok = pipe.processor.tokenizer
    G = cfg.num_generations
    encs = [encoder.encode(ex, with_target=False) for ex in exs]
    prompt = encoder.collate(encs, padding_side="left")
    media = {k: v for k, v in prompt.items() if k not in ("input_ids", "attention_mask", "labels")}
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    with torch.no_grad():
        embeds = raw.build_inputs_embeds(prompt["input_ids"], **media)
        gen = raw.language_model.generate(
            inputs_embeds=embeds.repeat_interleave(G, 0), attention_mask=prompt["attention_mask"].repeat_interleave(G, 0),
            do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p, top_k=None, max_new_tokens=cfg.max_new_tokens,
            pad_token_id=pad_id, suppress_tokens=placeholder_ids(raw.config))
    comp_mask = _completion_mask(gen, tok.eos_token_id)
    texts = [tok.decode(row[m.bool()], skip_special_tokens=True) for row, m in zip(gen, comp_mask)]
    columns = {k: [ex.columns.get(k) for ex in exs for _ in range(G)] for k in ("gold_labels", "label", "label_set")}
    rewards, parts = combined_rewards(cfg.rewards, [ex.prompt_id for ex in exs for _ in range(G)], texts,
                                      max_labels=cfg.max_labels, **columns)
    r = torch.tensor(rewards, dtype=torch.float32, device=gen.device).view(len(exs), G)
    adv = ((r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + 1e-4)).view(-1)

    # Training sequences: [left-padded prompt | completion | right padding], media repeated G times in row order.
    rep = encoder.collate([e for e in encs for _ in range(G)], padding_side="left")
    input_ids = torch.cat([rep["input_ids"], gen.masked_fill(comp_mask == 0, pad_id)], 1)
    attention = torch.cat([rep["attention_mask"], comp_mask], 1)
    labels = torch.cat([torch.full_like(rep["input_ids"], -100), gen.masked_fill(comp_mask == 0, -100)], 1)
    rep_media = {k: v for k, v in rep.items() if k not in ("input_ids", "attention_mask", "labels")}
    ref = None
    if cfg.beta > 0:  # first: swapping weights after the policy forward would invalidate its saved tensors
        reference = getattr(pipe, "reference", None)
        if reference is None:
            raise RuntimeError("GRPO with grpo.beta > 0 needs the run's reference (train() sets pipe.reference)")
        with torch.no_grad(), reference.active():
            ref = raw(input_ids=input_ids, attention_mask=attention, labels=labels, return_token_logprobs=True,
                      position_ids=_positions(attention), **rep_media)["token_logprobs"]
    out = model(input_ids=input_ids, attention_mask=attention, labels=labels, return_token_logprobs=True,
                position_ids=_positions(attention), **rep_media)
    logp, mask = out["token_logprobs"], out["token_mask"].float()
    per_token = -torch.exp(logp - logp.detach()) * adv.unsqueeze(1)
    kl_mean = 0.0
    if ref is not None:
        delta = ref - logp
        kl = torch.exp(delta) - delta - 1
        per_token = per_token + cfg.beta * kl
        kl_mean = float((kl.detach() * mask).sum() / mask.sum().clamp(min=1))
    loss = ((per_token * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()
    info = {"reward": float(r.mean()), "reward_std": float(r.std(1).mean()), "kl": kl_mean,
            "completion_tokens": float(comp_mask.sum(1).float().mean()), "tokens": int(attention.sum())}
    info.update({f"reward_{k}": v for k, v in parts.items()})
    return loss, info
