"""The training loop shared by the align, sft and grpo stages (thin, on accelerate + PEFT).

Why our own loop rather than a TRL trainer: batches carry audio and video features (or cached tower states) that
the TRL trainers drop, and exact resume needs control of data order, RNG and checkpoint atomicity. The loop is
deliberately plain: deterministic batch order from (seed, epoch), one optimizer step per global batch, a finite
loss check before any update, metrics to JSONL (+ TensorBoard when installed), tqdm with loss and throughput.
Single process, DDP and FSDP2 run the same loop; what they change (the accelerate set-up, DDP's plain-dict outputs,
FSDP2's sharded weights and collective saves) lives in train/distributed.py and train/sharded.py."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data import cache_dir
from ..errors import AffectError
from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint, save_sharded_checkpoint
from .distributed import DictOutputs, after_prepare, configure_fsdp, is_fsdp, make_accelerator
from .encoding import ExampleEncoder
from .examples import build_examples
from .recipe import Recipe
from .setup import parameter_groups, prepare_model


logger = logging.getLogger("affectllm.train")


class TrainingDiverged(AffectError):
    """The loss became NaN/inf: training stopped before applying the update; the last good checkpoint stays."""


class MetricsLog:
    """Append-only JSONL (truncated past the resume step so a resumed run has one consistent curve). A kill or a
    full disk can leave the last line torn: resume drops it, and rewrites the file atomically (a second failure
    during the rewrite leaves the old file whole)."""

    def __init__(self, path: Path, resume_step: int, enabled: bool, tensorboard: bool):
        self.path, self.enabled = path, enabled
        self.tb = None
        if not enabled:
            return
        if path.exists():
            old = path.read_text()
            text = "".join(ln + "\n" for ln in _records_upto(path, old, resume_step))
            if text != old:
                _replace_text(path, text)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(path.parent / "tensorboard"))
            except ImportError:
                self.tb = None

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "step":
                    self.tb.add_scalar(k, v, record["step"])


def _records_upto(path: Path, text: str, step: int) -> list[str]:
    """The lines of records up to `step`; a torn last line is dropped with one warning, a bad line elsewhere is
    not a torn write and stops the resume with its line number."""
    lines = text.splitlines()
    last = max((i for i, ln in enumerate(lines) if ln.strip()), default=-1)
    keep = []
    for i, ln in enumerate(lines):
        if not ln.strip():
            continue
        try:
            record = json.loads(ln)
        except ValueError:
            if i == last:
                logger.warning("%s: dropped a torn last line (an interrupted write): %.60r", path, ln)
                break
            raise AffectError(f"{path} line {i + 1} is not JSON ({ln[:60]!r}); fix or delete the file to resume")
        if record.get("step", 0) <= step:
            keep.append(ln)
    return keep


def _replace_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _schedule(recipe: Recipe, total: int, start: int = 0):
    """Linear warm-up then linear decay to 0 at `total`, beginning at step `start` (lr 0 before it)."""
    warm = max(0, recipe.optim.warmup_steps)

    def factor(step: int) -> float:
        if step < start:
            return 0.0
        step -= start
        if step < warm:
            return (step + 1) / (warm + 1)
        return max(0.0, (total - start - step) / max(1, total - start - warm))

    return factor


def group_schedules(recipe: Recipe, groups: list[dict], total: int) -> list:
    """One lr factor per parameter group. With `optim.align_steps`, the LLM group (LoRA) stays at lr 0 for the
    first steps while the projectors learn what the features mean (otherwise LoRA lowers the loss through the
    class prior faster than the projector learns, and media inputs are ignored)."""
    align = max(0, recipe.optim.align_steps)
    return [_schedule(recipe, total, align if g.get("name") == "llm" else 0) for g in groups]


class BatchPlan:
    """Deterministic global batches: epoch e is a permutation seeded by (seed, e); step s takes the next slice.

    With `align_pool` (the indices of examples that carry media) and `align_steps`, the projector-only steps draw
    from that pool alone, in epochs of their own: in a mixture, a text-only example gives the projectors no
    gradient, so during alignment it is pure cost (measured: ~40% of the align batches of `affect_mix`). The full
    mixture's epochs start after alignment. A pool that holds every example changes nothing."""

    def __init__(self, n: int, global_batch: int, seed: int, align_pool: list[int] | None = None,
                 align_steps: int = 0):
        if n < global_batch:
            global_batch = n
        self.n, self.global_batch, self.seed = n, global_batch, seed
        self.per_epoch = n // global_batch
        self._perms: dict[tuple, np.ndarray] = {}
        pool = sorted(set(align_pool or []))
        self.align_pool = np.asarray(pool, dtype=np.int64)
        self.align_steps = align_steps if 0 < len(pool) < n else 0

    def _slice(self, key: tuple, size: int, step: int, batch: int, order) -> list[int]:
        per_epoch = max(1, size // batch)
        epoch, pos = divmod(step, per_epoch)
        if key + (epoch,) not in self._perms:
            self._perms = {key + (epoch,): order(np.random.default_rng([self.seed, *key, epoch]).permutation(size))}
        return self._perms[key + (epoch,)][pos * batch : (pos + 1) * batch].tolist()

    def indices(self, step: int) -> list[int]:
        if step < self.align_steps:
            batch = min(self.global_batch, len(self.align_pool))
            return self._slice((1,), len(self.align_pool), step, batch, lambda p: self.align_pool[p])
        return self._slice((), self.n, step - self.align_steps, self.global_batch, lambda p: p)


def has_media(example) -> bool:
    return any(isinstance(m["content"], list) and any(part.get("type") in ("audio", "image", "video")
                                                      for part in m["content"])
               for m in example.messages)


def total_steps(recipe: Recipe, plan: BatchPlan) -> int:
    return recipe.optim.epochs * plan.per_epoch if recipe.optim.epochs else recipe.optim.max_steps


def train(recipe: Recipe, stop_after: int | None = None, progress: bool = True) -> Path:
    """Run a recipe; returns the final artifact folder. `stop_after` ends early without a final artifact
    (used to simulate an interrupted run in tests)."""
    from accelerate.utils import set_seed

    acc = make_accelerator()
    fsdp = is_fsdp(acc)
    set_seed(recipe.optim.seed)
    out = Path(recipe.run.output_dir)
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
    pipe, base = prepare_model(recipe)
    d = recipe.data
    if d.mixture:
        from .mixture import build_mixture

        examples = build_mixture(pipe, d.mixture, d.split, d.modalities, d.target, seed=recipe.optim.seed,
                                 data_root=d.data_root, on_missing=d.on_missing)
    else:
        examples = build_examples(pipe, d.corpora, d.split, d.prompt, d.modalities, limit=d.limit,
                                  seed=recipe.optim.seed, data_root=d.data_root,
                                  closed_set_prompt=d.closed_set_prompt, with_target=recipe.stage != "grpo",
                                  on_missing=d.on_missing, target_style=d.target,
                                  shuffle_candidates=d.shuffle_candidates)
    if recipe.model.fit_normalization:
        from .normalization import fit_tower_normalization

        fit_tower_normalization(pipe, examples, progress=progress and acc.is_main_process)
    encoder = ExampleEncoder(pipe, cache_dir(), use_cache=recipe.run.feature_cache)
    micro = recipe.optim.batch_size
    media = [i for i, e in enumerate(examples) if has_media(e) and e.columns.get("align", True)]
    plan = BatchPlan(len(examples), micro * recipe.optim.grad_accum * acc.num_processes, recipe.optim.seed,
                     align_pool=media, align_steps=recipe.optim.align_steps)
    if plan.align_steps and acc.is_main_process:
        print(f"align: the first {plan.align_steps} steps draw from the {len(media)} of {len(examples)} examples "
              f"that carry media in entries with align on (text-only ones give the projectors no gradient)", flush=True)
    steps = total_steps(recipe, plan)
    groups = parameter_groups(pipe.model, recipe)
    optimizer = torch.optim.AdamW(groups)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, group_schedules(recipe, groups, steps))
    if fsdp:
        configure_fsdp(acc, pipe.model, recipe)
    ddp = not fsdp and acc.num_processes > 1
    model, optimizer = acc.prepare(DictOutputs(pipe.model) if ddp else pipe.model, optimizer)
    if fsdp:
        after_prepare(model)
    if recipe.stage == "grpo" and recipe.grpo.beta > 0:  # before a resume: the reference is where the run began
        from .grpo import FrozenReference

        pipe.reference = FrozenReference(pipe.model)
    start = 0
    ckpt = latest_checkpoint(out) if recipe.run.resume else None
    if ckpt is not None:
        _check_same_batch(ckpt, plan.global_batch)
        start = load_checkpoint(ckpt, pipe.model, optimizer, scheduler, acc.process_index, acc.num_processes,
                                fsdp)["step"]
    log = MetricsLog(out / "metrics.jsonl", start, acc.is_main_process, recipe.run.tensorboard)
    if acc.is_main_process:
        (out / "recipe.yaml").write_text(recipe.to_yaml())
    step_fn = _grpo_step if recipe.stage == "grpo" else _sft_step
    bar = tqdm(range(start, steps), initial=start, total=steps, disable=not (progress and acc.is_main_process),
               desc=f"{recipe.name} ({recipe.stage})", dynamic_ncols=True)
    for step in bar:
        t0 = time.perf_counter()
        idx = plan.indices(step)
        shard = idx[acc.process_index :: acc.num_processes]
        record = {"step": step + 1, "lr": scheduler.get_last_lr()[0], "lr_projectors": scheduler.get_last_lr()[-1]}
        losses, tokens = [], 0
        for m in range(recipe.optim.grad_accum):
            exs = [examples[i] for i in shard[m * micro : (m + 1) * micro]]
            if not exs:
                continue
            loss, info = step_fn(model, pipe, encoder, exs, recipe)
            if not torch.isfinite(loss).all():
                last = latest_checkpoint(out)
                raise TrainingDiverged(f"loss is {loss.item()} at step {step + 1}; stopped before the update. "
                                       f"Last good checkpoint: {last or 'none yet'}")
            acc.backward(loss / recipe.optim.grad_accum)
            losses.append(loss.item())
            tokens += info.pop("tokens", 0)
            for k, v in info.items():
                record[k] = record.get(k, 0.0) + v / recipe.optim.grad_accum
        if recipe.optim.max_grad_norm:
            norm = acc.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], recipe.optim.max_grad_norm)
            if norm is not None:  # None under DeepSpeed, which clips inside its engine
                record["grad_norm"] = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0
        record.update(loss=float(np.mean(losses)), step_s=round(dt, 4), samples_per_s=round(len(idx) / dt, 3),
                      tokens_per_s=round(tokens * acc.num_processes / dt, 1),
                      cache_hits=encoder.hits, cache_misses=encoder.misses)
        if acc.is_main_process and (step + 1) % recipe.run.log_every == 0:
            log.write(record)
        bar.set_postfix(loss=f"{record['loss']:.4f}", sps=f"{record['samples_per_s']:.2f}")
        if (step + 1) % recipe.run.save_every == 0 or step + 1 == steps:
            acc.wait_for_everyone()
            trainer_state = {"recipe": recipe.name, "examples": len(examples), "global_batch": plan.global_batch,
                             "world_size": acc.num_processes}
            if fsdp:  # collective: every rank writes its shard
                save_sharded_checkpoint(acc, out, step + 1, pipe, base, recipe.to_yaml(), optimizer, scheduler,
                                        trainer_state, keep=recipe.run.keep_checkpoints)
            elif acc.is_main_process:
                save_checkpoint(out, step + 1, pipe, base, recipe.to_yaml(), optimizer, scheduler,
                                trainer_state, keep=recipe.run.keep_checkpoints)
        if recipe.run.eval_every and recipe.run.eval_task and ((step + 1) % recipe.run.eval_every == 0
                                                                or step + 1 == steps):
            acc.wait_for_everyone()
            if acc.is_main_process:
                from .dev_eval import evaluate_on_dev

                evaluate_on_dev(pipe, recipe, out, step + 1, base, progress=progress)
        if stop_after is not None and step + 1 >= stop_after:
            return out
    acc.wait_for_everyone()
    final = out / "final"
    from ..artifact import save_artifact
    from .sharded import full_weights

    with full_weights(pipe.model, acc.is_main_process) if fsdp else contextlib.nullcontext():
        if acc.is_main_process:
            save_artifact(pipe, final, base=base, recipe_yaml=recipe.to_yaml())
    acc.wait_for_everyone()
    return final


def _check_same_batch(ckpt: Path, global_batch: int) -> None:
    """The batch plan is a function of the global batch: resuming with another one (e.g. another process count
    with the same per-process batch) would replay or skip examples, so it is refused."""
    state = json.loads((ckpt / "trainer_state.json").read_text())
    saved = state.get("global_batch")
    if saved is not None and saved != global_batch:
        raise AffectError(f"checkpoint {ckpt} was written with a global batch of {saved} "
                          f"({state.get('world_size', '?')} processes) but this run's is {global_batch}; keep "
                          "optim.batch_size x optim.grad_accum x processes equal to resume it, or use a new "
                          "run.output_dir")


def check_features(batch: dict, exs) -> None:
    """NaN/inf in tower features (a corrupt clip, a degenerate normalisation) stops the run before the update."""
    for key in ("audio_states", "image_states", "video_states", "audio_values", "pixel_values", "video_values"):
        value = batch.get(key)
        tensors = value if isinstance(value, list) else [value] if value is not None else []
        for t in tensors:
            if not torch.isfinite(t).all():
                ids = ", ".join(ex.id for ex in exs)
                raise TrainingDiverged(f"non-finite {key} in the batch of examples [{ids}]; stopped before the update")


def _media(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask", "labels")}


def _sft_step(model, pipe, encoder: ExampleEncoder, exs, recipe: Recipe) -> tuple[torch.Tensor, dict]:
    """Token loss with the label tokens weighted by `data.label_loss_weight`; logs the label tokens' own loss,
    their teacher-forced token accuracy and the share of examples whose whole label span is predicted right."""
    batch = encoder.collate([encoder.encode(ex) for ex in exs], label_counts=True)
    check_features(batch, exs)
    counts = batch.pop("label_token_counts").to(batch["input_ids"].device)
    out = model(**batch, return_token_logprobs=True)
    logp, mask, correct = out["token_logprobs"], out["token_mask"], out["token_correct"]
    is_label = mask & (mask.long().cumsum(1) <= counts[:, None])
    weights = mask.float() + (recipe.data.label_loss_weight - 1.0) * is_label.float()
    loss = -(logp * weights).sum() / weights.sum().clamp_min(1e-6)
    n_label = is_label.sum().clamp_min(1)
    exact = ((correct | ~is_label).all(1) & is_label.any(1)).float().mean()
    info = {"tokens": int(batch["attention_mask"].sum()),
            "label_loss": float(-(logp.detach() * is_label).sum() / n_label),
            "label_token_acc": float((correct & is_label).sum() / n_label),
            "label_exact": float(exact),
            "text_loss": float(-(logp.detach() * (mask & ~is_label)).sum() / (mask & ~is_label).sum().clamp_min(1))}
    return loss, info


def _grpo_step(model, pipe, encoder: ExampleEncoder, exs, recipe: Recipe) -> tuple[torch.Tensor, dict]:
    from .grpo import grpo_loss

    return grpo_loss(model, pipe, encoder, exs, recipe)
