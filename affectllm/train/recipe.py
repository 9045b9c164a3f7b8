"""Recipes: one YAML file = one reproducible run, parsed into dataclasses (no dict soup, no exec).

`load_recipe("sft_lora", ["optim.lr=1e-4", "data.limit=200"])` reads recipes/sft_lora.yaml (or a path), applies
dotted `key=value` overrides (YAML-typed), and rejects unknown keys with a did-you-mean."""
from __future__ import annotations

import dataclasses
import difflib
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from ..registry import unknown_name_message

STAGES = ("align", "sft", "grpo", "interpolate")


@dataclass
class ModelCfg:
    base: str = "tiny"  # preset name, checkpoint folder, or a trained artifact to continue from
    dtype: str = "auto"  # "auto" = the faster of bf16/fp32 on this machine (affectllm.dtypes), or a torch dtype name
    freeze_audio_tower: bool = True
    freeze_vision_tower: bool = True
    freeze_projectors: bool = False  # ablation: projectors stay at their initial weights
    fit_normalization: bool = True  # fit feature-tower statistics on the training split when the towers carry none


@dataclass
class DataCfg:
    corpora: list[str] = field(default_factory=lambda: ["goemotions"])
    split: str = "train"
    eval_split: str = "dev"
    modalities: list[str] = field(default_factory=lambda: ["text", "audio", "image", "video"])
    limit: int | None = None  # samples per corpus (a seeded subset), None = all
    eval_limit: int | None = 64
    data_root: str | None = None  # default: ../shared/data or $AFFECTLLM_DATA
    on_missing: str = "skip"  # a manifest row whose media file is missing: "skip" (counted) or "error"
    prompt: str = "emotion_ov"
    closed_set_prompt: bool = False  # use emotion_closed with the corpus label set as candidates
    max_target_tokens: int = 160
    target: str = "full"  # "full" (labels + grounded explanation), "short" (labels + first sentence), "labels"
    label_loss_weight: float = 1.0  # weight of the label tokens in the loss relative to the explanation tokens
    shuffle_candidates: bool = True  # closed-set candidates in a per-example seeded order (no position shortcut)
    mixture: list[dict] | None = None  # multi-task mixture: [{corpus, formats, weight, ...}] (affectllm.train.mixture)


@dataclass
class LoraCfg:
    enabled: bool = True
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj",
                                                               "gate_proj", "up_proj", "down_proj"])
    quantize_4bit: bool = False  # QLoRA: bitsandbytes NF4 base; towers and projectors stay unquantized


@dataclass
class OptimCfg:
    lr: float = 2e-4
    projector_lr: float | None = None  # default: lr
    weight_decay: float = 0.0
    warmup_steps: int = 10
    max_steps: int = 100
    epochs: int | None = None  # when set, overrides max_steps
    batch_size: int = 4
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    seed: int = 0
    align_steps: int = 0  # projector-only steps (LLM/LoRA at lr 0) before the LoRA starts learning


@dataclass
class GrpoCfg:
    num_generations: int = 4
    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    beta: float = 0.04  # KL to the reference (the base without LoRA); 0 disables
    rewards: dict[str, float] = field(default_factory=lambda: {"format": 0.5, "ov_wheel": 1.0, "label_count": 0.5})
    max_labels: int = 3  # label-count penalty above this


@dataclass
class InterpolateCfg:
    """Stage `interpolate` (affectllm.train.interpolate): weights (1 - a) * start + a * model.base, a chosen on dev."""
    start: str | None = None  # the earlier artifact of the same chain (weight 1 - alpha); model.base gets alpha
    alphas: list[float] = field(default_factory=lambda: [0.25, 0.5, 0.75])


@dataclass
class RunCfg:
    output_dir: str = "runs/default"
    save_every: int = 50
    keep_checkpoints: int = 2
    log_every: int = 1
    feature_cache: bool = True
    resume: bool = True
    fail_on_nan: bool = True
    tensorboard: bool = True
    eval_every: int = 0  # steps between dev evaluations through affectllm.evaluation (0 = never)
    eval_task: str | None = None  # the eval task (evals/*.yaml) run on dev; its primary metric picks the best step
    eval_limit: int | None = None  # dev samples per evaluation (None = the task's own limit)
    eval_max_new_tokens: int | None = 24  # cap for dev evaluations (labels come first; None = the task's own)
    # {task: bar}: select by the worst margin (headline - bar) over the tasks instead of the mean headline, so a
    # model that clears every bar beats one that is far above some and below another (every task needs a bar)
    eval_bars: dict[str, float] | None = None


@dataclass
class Recipe:
    name: str = "recipe"
    stage: str = "sft"
    model: ModelCfg = field(default_factory=ModelCfg)
    data: DataCfg = field(default_factory=DataCfg)
    lora: LoraCfg = field(default_factory=LoraCfg)
    optim: OptimCfg = field(default_factory=OptimCfg)
    grpo: GrpoCfg = field(default_factory=GrpoCfg)
    interpolate: InterpolateCfg = field(default_factory=InterpolateCfg)
    run: RunCfg = field(default_factory=RunCfg)

    def to_yaml(self) -> str:
        return yaml.safe_dump(dataclasses.asdict(self), sort_keys=False)


def recipe_dir() -> Path:
    env = os.environ.get("AFFECTLLM_RECIPES")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "recipes"


def list_recipes() -> list[str]:
    return sorted(p.stem for p in recipe_dir().glob("*.yaml"))


def _coerce(value: Any, annotation: Any, path: str) -> Any:
    """YAML reads `1e-4` as a string (YAML 1.1 needs `1.0e-4`); coerce scalars to the field's declared type."""
    args = typing.get_args(annotation) or (annotation,)
    if value is None or not isinstance(value, (str, int, float)) or isinstance(value, bool):
        return value
    for kind in (bool, int, float):
        if kind in args and not isinstance(value, kind):
            if kind is bool:
                continue
            try:
                return kind(value) if kind is float or float(value) == int(float(value)) else value
            except ValueError:
                raise ConfigError(f"recipe key '{path}' must be {kind.__name__}, got {value!r}") from None
    return value


def _build(cls: type, values: dict, where: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'recipe'} must be a mapping, got {type(values).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        path = f"{where}.{key}" if where else key
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown recipe key '{path}'{hint}; known: {', '.join(known)}")
        sub = known[key].default_factory if known[key].default_factory is not dataclasses.MISSING else None
        if sub is not None and dataclasses.is_dataclass(sub()):
            kwargs[key] = _build(type(sub()), value or {}, path)
        else:
            kwargs[key] = _coerce(value, typing.get_type_hints(cls)[key], path)
    return cls(**kwargs)


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for k in keys[:-1]:
        tree = tree.setdefault(k, {})
        if not isinstance(tree, dict):
            raise ConfigError(f"override '{dotted}': '{k}' is not a section")
    tree[keys[-1]] = value


def load_recipe(name_or_path: str | Path, overrides: list[str] | None = None) -> Recipe:
    path = Path(name_or_path)
    if not path.suffix:
        path = recipe_dir() / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ConfigError(unknown_name_message("recipe", str(name_or_path), list_recipes()))
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    tree.setdefault("name", path.stem)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key=value (e.g. optim.lr=1e-4)")
        key, raw = item.split("=", 1)
        _set_dotted(tree, key.strip(), yaml.safe_load(raw))
    recipe = _build(Recipe, tree, "")
    if recipe.stage not in STAGES:
        raise ConfigError(unknown_name_message("stage", recipe.stage, STAGES))
    if recipe.data.on_missing not in ("skip", "error"):
        raise ConfigError("data.on_missing must be 'skip' or 'error'")
    from .examples import TARGET_STYLES

    if recipe.data.target not in TARGET_STYLES:
        raise ConfigError(unknown_name_message("data.target style", recipe.data.target, TARGET_STYLES))
    if recipe.data.label_loss_weight <= 0:
        raise ConfigError(f"data.label_loss_weight must be > 0, got {recipe.data.label_loss_weight}")
    if recipe.optim.align_steps < 0:
        raise ConfigError("optim.align_steps must be >= 0")
    if recipe.data.mixture is not None:
        from .mixture import validate_mixture

        validate_mixture(recipe.data.mixture, recipe.data.split)
    if recipe.run.eval_task:
        from .dev_eval import dev_task

        tasks = dev_task(recipe.run.eval_task)  # refuses a task on any split but dev, at parse time
        if recipe.run.eval_bars is not None:
            names = [t.name for t in tasks]
            if set(recipe.run.eval_bars) != set(names):
                raise ConfigError(f"run.eval_bars must give a bar for every task of '{recipe.run.eval_task}' "
                                  f"({', '.join(names)}), got {sorted(recipe.run.eval_bars)}")
    if recipe.stage == "interpolate":
        _check_interpolate(recipe)
    return recipe


def _check_interpolate(recipe: Recipe) -> None:
    cfg = recipe.interpolate
    if not cfg.start:
        raise ConfigError("stage 'interpolate' needs interpolate.start (the earlier artifact; model.base is the later)")
    if not recipe.run.eval_task:
        raise ConfigError("stage 'interpolate' needs run.eval_task: the interpolation weight is chosen on dev")
    if not cfg.alphas or any(not isinstance(a, (int, float)) or not 0.0 <= float(a) <= 1.0 for a in cfg.alphas):
        raise ConfigError(f"interpolate.alphas must be a non-empty list of weights in [0, 1], got {cfg.alphas!r}")
    cfg.alphas = [float(a) for a in cfg.alphas]
