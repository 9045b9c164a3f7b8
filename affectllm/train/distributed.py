"""The accelerate set-up of a training run, and what FSDP2 needs from our composed model.

Why this module exists:
- accelerate 1.15 honours an FSDP config only on accelerator devices (`AcceleratorState` turns FSDP on in its
  GPU/NPU/XPU branch); on CPU it silently trains with DDP instead. PyTorch's FSDP2 (`fully_shard`) itself runs on
  CPU with gloo, so on a CPU-only machine we switch the state to FSDP after the fact: accelerate's own FSDP2 code
  (`fsdp2_prepare_model`, optimizer re-binding, DTensor-aware clipping) then runs unchanged, which is what lets
  the GPU path be tested here.
- Which modules become FSDP units is model knowledge: the LLM's decoder layers and the layers of any *trainable*
  tower. Frozen towers are left out of FSDP (`ignored_params`: replicated on every rank): the frozen-tower feature
  cache runs them outside the model's forward, where sharded parameters would not be gathered.
- accelerate's FSDP2 mixed precision also asks FSDP2 to cast the root module's outputs, which rebuilds our
  ModelOutput from its dataclass fields and drops the token log-probs the loss is made of: the parameter and
  gradient-reduce dtypes are kept, only that output cast is dropped.
- Real multi-process DDP needs the model's outputs as a plain dict (`DictOutputs`).
- DeepSpeed ZeRO-3 is refused (our saves do not gather its partitions); see `deepspeed_problem`.
- Things FSDP2 cannot do with this model fail before any step, with the module named (not a hang or an
  AssertionError from inside torch): a trainable tower without layer classes to wrap, trainable parameters of mixed
  dtypes in one unit, a layer class in the config that the model lacks, and the stages that generate per rank
  (GRPO, dev evaluation), whose data-dependent generation lengths would deadlock the all-gathers.
"""
from __future__ import annotations

import os

import torch

from ..errors import ConfigError

TOWERS = ("audio_tower", "vision_tower")


def make_accelerator():
    """An Accelerator for this process; on CPU, an FSDP config from `accelerate launch` really shards (FSDP2)."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, DistributedType, FullyShardedDataParallelPlugin

    acc = Accelerator(cpu=not torch.cuda.is_available(),
                      kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    wants_fsdp = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    if wants_fsdp and acc.distributed_type == DistributedType.MULTI_CPU:
        plugin = FullyShardedDataParallelPlugin()  # reads the FSDP_* variables `accelerate launch` set
        if plugin.fsdp_version != 2:
            raise ConfigError("FSDP on CPU needs fsdp_version: 2 (FSDP1 has no CPU/gloo path); "
                              "see recipes/accelerate/fsdp2_cpu.yaml")
        from accelerate.state import AcceleratorState, PartialState

        state = AcceleratorState()
        if state.mixed_precision != "no":  # what AcceleratorState does for FSDP on a GPU
            plugin.set_mixed_precision(state.mixed_precision)
        state.fsdp_plugin = plugin
        state.distributed_type = DistributedType.FSDP
        PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    if acc.distributed_type == DistributedType.DEEPSPEED:
        problem = deepspeed_problem(acc.state.deepspeed_plugin.zero_stage)
        if problem:
            raise ConfigError(problem)
    return acc


def deepspeed_problem(zero_stage: int) -> str | None:
    """DeepSpeed is not run on this project's CPU machines. ZeRO-3 partitions the weights themselves, and our
    saves read `model.parameters()` without DeepSpeed's gather: refused rather than writing an incomplete
    artifact. ZeRO-1/2 keep whole weights on every rank (GPU only, untested here)."""
    if zero_stage == 3:
        return ("DeepSpeed ZeRO-3 is not supported by the affectllm training loop: its checkpoints and artifact "
                "would hold only this rank's partition of each weight. Use FSDP2 "
                "(recipes/accelerate/fsdp2.yaml, or multi_node_fsdp2.yaml), which gathers on save")
    return None


class DictOutputs(torch.nn.Module):
    """What DDP wraps: the model, returning a plain dict. DDP with find_unused_parameters flattens the forward's
    output with torch's pytree and rebuilds it; transformers rebuilds a ModelOutput from its dataclass fields, and
    ours carries extra keys (token_logprobs, token_mask, token_correct), so real multi-process DDP failed with
    `CausalLMOutputWithPast.__init__() got an unexpected keyword argument 'token_logprobs'`."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, **kwargs):
        return dict(self.model(**kwargs))


def is_fsdp(acc) -> bool:
    from accelerate.utils import DistributedType

    return acc.distributed_type == DistributedType.FSDP


def _class_names(module: torch.nn.Module) -> set[str]:
    return {type(m).__name__ for m in module.modules()}


def _no_split(module) -> list[str]:
    inner = module.get_base_model() if hasattr(module, "get_base_model") else module
    return list(getattr(inner, "_no_split_modules", None) or [])


def _trainable(module) -> bool:
    return module is not None and any(p.requires_grad for p in module.parameters())


def layer_classes(model) -> list[str]:
    """The FSDP unit classes: the LLM's decoder layers and the layers of trainable towers (declared by each
    sub-model's `_no_split_modules`, kept only when the class occurs in this model)."""
    names: list[str] = []
    for part in (model.language_model, *(getattr(model, t) for t in TOWERS if _trainable(getattr(model, t)))):
        present = _class_names(part)
        names += [n for n in _no_split(part) if n in present and n not in names]
    return names


def configure_fsdp(acc, model, recipe) -> None:
    """Set the FSDP2 plugin's wrap classes and ignored (frozen-tower) modules for this model; refuse, naming the
    module, what FSDP2 cannot shard. Call before `acc.prepare`."""
    from accelerate.utils.constants import FSDP_AUTO_WRAP_POLICY

    if recipe.stage == "grpo":
        raise ConfigError("stage grpo under FSDP: each rank generates its own completions, and ranks that stop "
                          "generating at different lengths would deadlock FSDP's all-gathers; use DDP "
                          "(recipes/accelerate/ddp.yaml or cpu2.yaml) for GRPO")
    if recipe.run.eval_every and recipe.run.eval_task:
        raise ConfigError("run.eval_every under FSDP: the dev evaluation generates on rank 0 alone, which FSDP's "
                          "sharded weights cannot do; set run.eval_every=0 and evaluate the saved artifact "
                          "(affectllm eval) instead")
    plugin = acc.state.fsdp_plugin
    policy = os.environ.get("FSDP_AUTO_WRAP_POLICY", FSDP_AUTO_WRAP_POLICY[0])
    by_layer = policy == "TRANSFORMER_BASED_WRAP"
    if by_layer:
        named = os.environ.get("FSDP_TRANSFORMER_CLS_TO_WRAP")
        present = _class_names(model)
        if named:
            wanted = [n.strip() for n in named.split(",") if n.strip()]
            missing = [n for n in wanted if n not in present]
            if missing:
                raise ConfigError(f"fsdp_transformer_layer_cls_to_wrap names {missing}, which this model does not "
                                  f"contain; its layer classes: {layer_classes(model) or 'none declared'}")
        else:
            wanted = layer_classes(model)
        plugin.transformer_cls_names_to_wrap = wanted
        for name in TOWERS:
            tower = getattr(model, name)
            if _trainable(tower) and not any(type(m).__name__ in wanted for m in tower.modules()):
                raise ConfigError(
                    f"FSDP cannot wrap the trainable {name} ({type(tower).__name__}): it declares no layer classes "
                    f"(_no_split_modules is {_no_split(tower)}) and fsdp_transformer_layer_cls_to_wrap names none "
                    f"of its modules. Freeze it (model.freeze_{name}=true: frozen towers are replicated, not "
                    "sharded), name its block class in fsdp_transformer_layer_cls_to_wrap, or use "
                    "fsdp_auto_wrap_policy: SIZE_BASED_WRAP")
    check_uniform_dtypes(model, plugin.transformer_cls_names_to_wrap if by_layer else [])
    mp = plugin.mixed_precision_policy
    if mp is not None and getattr(mp, "output_dtype", None) is not None:
        # accelerate asks FSDP2 to cast the root's outputs; that rebuilds our ModelOutput from its dataclass fields
        # and drops the token log-probs the loss is made of (KeyError 'token_logprobs'). They are fp32 by design.
        from torch.distributed.fsdp import MixedPrecisionPolicy

        plugin.mixed_precision_policy = MixedPrecisionPolicy(param_dtype=mp.param_dtype, reduce_dtype=mp.reduce_dtype,
                                                             cast_forward_inputs=mp.cast_forward_inputs)
    frozen = [getattr(model, t) for t in TOWERS if getattr(model, t) is not None and not _trainable(getattr(model, t))]
    if frozen:
        for tower in frozen:
            tower.to(acc.device)  # fully_shard moves only the parameters it manages
        plugin.ignored_modules = frozen


def after_prepare(model) -> None:
    """Keep every rank's FSDP2 collectives in the same order when ranks see different modalities (a rank whose
    batch has no image leaves the vision projector unused; another rank's batch has one).

    - Zero gradients for unused parameters (FSDP2's counterpart of DDP's find_unused_parameters, which the loop
      sets for DDP), so the reduce-scatters have the same sizes.
    - The input embeddings always require grad. Otherwise a text-only batch (frozen embedding, no projector output
      scattered in) gives the first decoder layer an input without grad, FSDP2 registers no post-backward hook
      for it, and that layer's reduce-scatter moves after the root's: the ranks' collectives cross and gloo
      aborts. Measured here on CPU with a half text-only, half image manifest."""
    model.set_reduce_scatter_unused_params(True)
    model.language_model.enable_input_require_grads()


def check_uniform_dtypes(model, unit_classes: list[str]) -> None:
    """FSDP2 needs one dtype for the trainable parameters of each unit (torch asserts otherwise, without naming
    the module): check every unit, the whole model being the last one."""
    units = [(n, m) for n, m in model.named_modules() if type(m).__name__ in unit_classes]
    claimed: set[int] = set()
    for name, unit in units + [("<root>", model)]:
        dtypes: dict[torch.dtype, str] = {}
        for pname, p in unit.named_parameters():
            if id(p) in claimed:
                continue
            claimed.add(id(p))
            if p.requires_grad:
                dtypes.setdefault(p.dtype, f"{name}.{pname}" if name != "<root>" else pname)
        if len(dtypes) > 1:
            shown = ", ".join(f"{d} ({where})" for d, where in dtypes.items())
            raise ConfigError(f"FSDP cannot shard module {name!r}: its trainable parameters mix dtypes {shown}; "
                              "FSDP2 needs one dtype per unit (keep trainable weights in float32)")
