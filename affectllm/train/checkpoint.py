"""Checkpoints that resume exactly and are never half-written.

<output_dir>/checkpoints/step-000050/ holds a complete artifact (servable as is), `recipe.yaml`, the trainable
weights, optimizer and RNG states (safetensors + JSON: no pickle) and `trainer_state.json`. It is written under a
temporary name and renamed when complete; `<output_dir>/latest` (replaced atomically) names the newest complete
one. A crash or a full disk while saving leaves the previous `latest` untouched.

Under FSDP2 (affectllm/train/sharded.py) the trainable weights and optimizer state are written as one shard per
rank under `shards/` instead of `trainable.safetensors` / `optimizer.safetensors`; the artifact in the checkpoint is
still complete (gathered on rank 0). `load_checkpoint` reads either layout into either kind of run."""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..artifact import save_artifact


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for idx, entry in state["state"].items():
        for name, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{name}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{idx}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in list(tensors.items()) + list(meta["scalars"].items()):
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    np_state = np.random.get_state()
    return ({"torch": torch.get_rng_state()},
            {"numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]], "python": _jsonable(random.getstate())})


def _jsonable(x):
    return [_jsonable(v) for v in x] if isinstance(x, (tuple, list)) else x


def _tupled(x):
    return tuple(_tupled(v) for v in x) if isinstance(x, list) else x


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    torch.set_rng_state(tensors["torch"])
    name, keys, *rest = meta["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    random.setstate(_tupled(meta["python"]))


def trainable_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(output_dir: Path, step: int, pipe, base: str, recipe_yaml: str, optimizer, scheduler,
                    trainer_state: dict, keep: int = 2) -> Path:
    ckpts = output_dir / "checkpoints"
    final = ckpts / f"step-{step:06d}"
    partial = ckpts / f".step-{step:06d}.partial"
    shutil.rmtree(partial, ignore_errors=True)  # left by a kill -9 (nothing else can leave one)
    try:
        save_artifact(pipe, partial, base=base, recipe_yaml=recipe_yaml)  # fsyncs its own files
        written = [partial / "trainable.safetensors", partial / "optimizer.safetensors", partial / "rng.safetensors"]
        save_file(trainable_state(pipe.model), str(written[0]))
        opt_tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
        save_file(opt_tensors, str(written[1]))
        rng_tensors, rng_meta = rng_state()
        save_file(rng_tensors, str(written[2]))
        meta = {"step": step, "optimizer": opt_meta, "scheduler": scheduler.state_dict(), "rng": rng_meta,
                **trainer_state}
        written.append(partial / "trainer_state.json")
        written[-1].write_text(json.dumps(meta))
        _publish(partial, final, written)
    except BaseException:  # a full disk, a bad state dict, Ctrl-C: no half checkpoint left to the next save
        shutil.rmtree(partial, ignore_errors=True)
        raise
    _point_latest(output_dir, final, keep)
    return final


def _publish(partial: Path, final: Path, written: list[Path]) -> None:
    for f in written:  # on disk before the rename makes the checkpoint look complete (a power cut)
        _fsync(f)
    if final.exists():
        shutil.rmtree(final)
    partial.rename(final)


def _point_latest(output_dir: Path, final: Path, keep: int) -> None:
    tmp_latest = output_dir / ".latest.tmp"
    tmp_latest.write_text(final.name)
    os.replace(tmp_latest, output_dir / "latest")
    for old in sorted((output_dir / "checkpoints").glob("step-*"))[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)


def save_sharded_checkpoint(acc, output_dir: Path, step: int, pipe, base: str, recipe_yaml: str, optimizer,
                            scheduler, trainer_state: dict, keep: int = 2) -> Path:
    """The FSDP2 checkpoint; collective (every rank calls it). Rank 0 writes the gathered artifact, RNG, scheduler
    and index; each rank writes its own shard; rank 0 renames the folder into place once all shards are on disk."""
    from .sharded import SHARDS, full_weights, shard_index, write_shard

    final = output_dir / "checkpoints" / f"step-{step:06d}"
    partial = output_dir / "checkpoints" / f".step-{step:06d}.partial"
    main, rank, world = acc.is_main_process, acc.process_index, acc.num_processes
    with full_weights(pipe.model, main):
        if main:
            shutil.rmtree(partial, ignore_errors=True)
            save_artifact(pipe, partial, base=base, recipe_yaml=recipe_yaml)
            (partial / SHARDS).mkdir()
    index = shard_index(pipe.model, optimizer, world)  # optimizer.state_dict() is collective-free; all ranks alike
    acc.wait_for_everyone()
    write_shard(partial / SHARDS, pipe.model, optimizer, rank, world)
    acc.wait_for_everyone()
    if main:
        try:
            written = [partial / SHARDS / "index.json", partial / "rng.safetensors", partial / "trainer_state.json"]
            written[0].write_text(json.dumps(index))
            rng_tensors, rng_meta = rng_state()
            save_file(rng_tensors, str(written[1]))
            meta = {"step": step, "scheduler": scheduler.state_dict(), "rng": rng_meta, **trainer_state}
            written[2].write_text(json.dumps(meta))
            _publish(partial, final, written)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        _point_latest(output_dir, final, keep)
    acc.wait_for_everyone()
    return final


def _fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def latest_checkpoint(output_dir: Path) -> Path | None:
    pointer = output_dir / "latest"
    if not pointer.is_file():
        return None
    path = output_dir / "checkpoints" / pointer.read_text().strip()
    return path if (path / "trainer_state.json").is_file() else None


def load_checkpoint(path: Path, model, optimizer, scheduler, rank: int = 0, world: int = 1,
                    fsdp: bool = False) -> dict:
    """Restore trainable weights, optimizer, scheduler and RNG; returns trainer_state.json. Reads a full or a
    sharded checkpoint into a plain, DDP or FSDP2 model (`rank`/`world`/`fsdp` describe this run)."""
    from ..errors import ConfigError
    from .sharded import SHARDS, copy_into, param_names, place, read_shards

    meta = json.loads((path / "trainer_state.json").read_text())
    local = False
    if (path / SHARDS).is_dir():
        weights, opt_tensors, index, local = read_shards(path / SHARDS, rank, world, fsdp)
        opt_meta, shapes_of = index["optimizer"], {k[6:]: v["shape"] for k, v in index["tensors"].items()
                                                 if k.startswith("param/")}
        saved_names = index["param_names"]
    else:
        weights = load_file(str(path / "trainable.safetensors"))
        opt_tensors, opt_meta = load_file(str(path / "optimizer.safetensors")), meta["optimizer"]
        shapes_of, saved_names = {n: list(v.shape) for n, v in weights.items()}, None
    params = dict(model.named_parameters())
    missing = [n for n in weights if n not in params]
    if missing:
        raise ConfigError(f"checkpoint {path} does not fit this model/recipe (unknown weights {missing[:3]})")
    shapes = [f"{n} {tuple(shapes_of[n])} vs {tuple(params[n].shape)}" for n in weights
              if tuple(shapes_of[n]) != tuple(params[n].shape)]
    if shapes:
        raise ConfigError(f"checkpoint {path} was written by a model of another shape ({shapes[0]}): the preset or "
                          "recipe changed since; resume with the same ones, or start a new run.output_dir")
    order = param_names(model, optimizer)
    if saved_names is not None and saved_names != order:
        raise ConfigError(f"checkpoint {path}: the optimizer's parameters differ from this run's (recipe changed?)")
    for name, value in weights.items():
        copy_into(params[name], value, local)
    state = _unflatten_optimizer(opt_tensors, opt_meta)
    for idx, entry in state["state"].items():  # optimizer states are laid out like their parameter
        target = params[order[idx]]
        for key, value in entry.items():
            if torch.is_tensor(value) and tuple(value.shape) != () and value.dim() == target.dim():
                entry[key] = place(target, value, local)
    optimizer.load_state_dict(state)
    scheduler.load_state_dict(meta["scheduler"])
    set_rng_state(load_file(str(path / "rng.safetensors")), meta["rng"])
    return meta
