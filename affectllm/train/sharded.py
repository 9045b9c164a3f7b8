"""Saving and resuming under FSDP2, where every rank holds only a shard of each weight and optimizer state.

Why: the artifact and checkpoint code read `model.parameters()`; under FSDP2 those are DTensor shards, so saving
them as they are would write a fraction of each projector and LoRA matrix. Two mechanisms:

- `full_weights`: gathers the tensors the artifact is made of (trainable weights + projectors and towers) into full
  CPU tensors on rank 0 (the same per-tensor `full_tensor()` gather as torch.distributed.checkpoint's
  `full_state_dict=True, cpu_offload=True`, limited to what the artifact holds, never the frozen base LLM) and
  puts them in place for the duration of a `with` block, so `save_artifact` and `load` stay sharding-unaware.
- sharded checkpoint files: each rank writes its own shard of the trainable weights and optimizer state
  (`shards/rank-00000-of-00002.safetensors` + `shards/index.json`), safetensors + JSON like the rest of a
  checkpoint (torch.distributed.checkpoint's own format pickles its metadata). A resume at the same world size
  reads only its own shard; at another world size (or without FSDP) the shards are concatenated back into full
  tensors (FSDP2 shards dim 0 in rank order) and re-sliced for the new mesh.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..errors import ConfigError

SHARDS = "shards"
_ARTIFACT_PARTS = ("audio_projector.", "vision_projector.", "audio_tower.", "vision_tower.")


def _dtensor():
    from torch.distributed.tensor import DTensor

    return DTensor


def _is_dt(t) -> bool:
    return isinstance(t, _dtensor())


def shard_file(rank: int, world: int) -> str:
    return f"rank-{rank:05d}-of-{world:05d}.safetensors"


@contextmanager
def full_weights(model, is_main: bool):
    """Collective: every rank must enter. Inside the block, on rank 0 the model's sharded artifact tensors are full
    CPU tensors (restored on exit); other ranks, and tensors FSDP does not shard (frozen towers), see no change."""
    params = dict(model.named_parameters())
    names = sorted(n for n, p in params.items() if _is_dt(p) and (p.requires_grad or n.startswith(_ARTIFACT_PARTS)))
    full = {}
    for name in names:  # the same order on every rank: each full_tensor() is an all-gather
        value = params[name].full_tensor()
        if is_main:
            full[name] = value.detach().cpu()
        del value
    swapped = []
    try:
        for name, value in full.items():
            owner, attr = _owner(model, name)
            old = owner._parameters[attr]
            owner._parameters[attr] = torch.nn.Parameter(value, requires_grad=old.requires_grad)
            swapped.append((owner, attr, old))
        yield
    finally:
        for owner, attr, old in swapped:
            owner._parameters[attr] = old


def _owner(model, name: str):
    path, _, attr = name.rpartition(".")
    return (model.get_submodule(path) if path else model), attr


def param_names(model, optimizer) -> list[str]:
    """Parameter names in the optimizer's index order (the keys of its state dict)."""
    by_id = {id(p): n for n, p in model.named_parameters()}
    return [by_id[id(p)] for g in optimizer.param_groups for p in g["params"]]


def write_shard(folder: Path, model, optimizer, rank: int, world: int) -> Path:
    """This rank's pieces: trainable weights `param/<name>` and optimizer states `optim/<idx>.<key>`; tensors that
    are not sharded are written by rank 0 only. Returns the file (fsynced)."""
    tensors = {}
    for name, p in model.named_parameters():
        if p.requires_grad and (_is_dt(p) or rank == 0):
            tensors[f"param/{name}"] = _local(p)
    for idx, entry in optimizer.state_dict()["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value) and (_is_dt(value) or rank == 0):
                tensors[f"optim/{idx}.{key}"] = _local(value)
    path = folder / shard_file(rank, world)
    save_file(tensors, str(path))
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())
    return path


def _local(t: torch.Tensor) -> torch.Tensor:
    return (t.to_local() if _is_dt(t) else t).detach().contiguous().cpu()


def shard_index(model, optimizer, world: int) -> dict:
    """What the shard files hold: world size, global shape and placement of each tensor, optimizer scalars."""
    entries = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            entries[f"param/{name}"] = _entry(p)
    state = optimizer.state_dict()
    scalars = {}
    for idx, entry in state["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                entries[f"optim/{idx}.{key}"] = _entry(value)
            else:
                scalars[f"{idx}.{key}"] = value
    return {"world_size": world, "tensors": entries, "param_names": param_names(model, optimizer),
            "optimizer": {"param_groups": state["param_groups"], "scalars": scalars}}


def _entry(t: torch.Tensor) -> dict:
    if not _is_dt(t):
        return {"shape": list(t.shape), "sharded": False}
    placements = [f"Shard({p.dim})" if hasattr(p, "dim") else type(p).__name__ for p in t.placements]
    return {"shape": list(t.shape), "sharded": True, "placements": placements}


def read_shards(folder: Path, rank: int, world: int, fsdp: bool) -> tuple[dict, dict, dict, bool]:
    """-> (weights, optimizer tensors keyed `<idx>.<key>`, index, local). `local`: same world size under FSDP, the
    sharded tensors are this rank's own pieces; otherwise every tensor is full (reassembled from all shards)."""
    index = json.loads((folder / "index.json").read_text())
    saved = index["world_size"]
    files = [folder / shard_file(r, saved) for r in range(saved)]
    absent = [f.name for f in files if not f.is_file()]
    if absent:
        raise ConfigError(f"sharded checkpoint {folder.parent} is missing {absent} (written by {saved} processes); "
                          "it cannot be resumed")
    entries = index["tensors"]
    local = fsdp and saved == world
    if local:
        mine = load_file(str(files[rank]))
        first = mine if rank == 0 else load_file(str(files[0]))
        flat = {k: (mine[k] if e["sharded"] else first[k]) for k, e in entries.items()}
    else:
        odd = sorted({pl for e in entries.values() if e["sharded"] for pl in e["placements"]} - {"Shard(0)"})
        if odd:
            raise ConfigError(f"sharded checkpoint {folder.parent} was written by {saved} processes with placements "
                              f"{odd}; it can only be resumed by {saved} processes with the same FSDP config")
        parts = [load_file(str(f)) for f in files]
        flat = {}
        for key, e in entries.items():
            flat[key] = torch.cat([p[key] for p in parts], 0) if e["sharded"] else parts[0][key]
            if list(flat[key].shape) != e["shape"]:
                raise ConfigError(f"sharded checkpoint {folder.parent}: the shards of {key} add up to "
                                  f"{list(flat[key].shape)}, not {e['shape']} (incomplete or mixed-up shard files)")
    weights = {k[len("param/"):]: v for k, v in flat.items() if k.startswith("param/")}
    optim = {k[len("optim/"):]: v for k, v in flat.items() if k.startswith("optim/")}
    return weights, optim, index, local


def place(target: torch.Tensor, value: torch.Tensor, local: bool) -> torch.Tensor:
    """`value` (a full tensor, or this rank's piece when `local`) laid out like `target` (a DTensor or not)."""
    if not _is_dt(target):
        return value
    DTensor = _dtensor()
    if local:
        return DTensor.from_local(value.to(target.device), target.device_mesh, target.placements, run_check=False,
                                  shape=target.shape, stride=target.stride())
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(value.to(target.device), target.device_mesh, target.placements, src_data_rank=None)


def copy_into(param: torch.Tensor, value: torch.Tensor, local: bool) -> None:
    with torch.no_grad():
        if _is_dt(param):
            param.to_local().copy_(place(param, value, local).to_local())
        else:
            param.copy_(value)
