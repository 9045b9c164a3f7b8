"""Stage `interpolate`: the weights (1 - a) * start + a * end of two artifacts of one training chain, `a` chosen on dev.

Why: a stage that continues a model on what it missed also forgets part of what it knew (measured: stage 2 of the
embedded default raised GoEmotions macro-F1 from 0.36 to 0.46 and lowered RAVDESS, CK+ and MELD). Interpolating the
fine-tuned weights with the ones it started from (WiSE-FT, Wortsman et al., CVPR 2022) keeps most of both, for the
cost of a few dev evaluations and no training step.

What is interpolated:
- projectors (and any trained tower weights): elementwise;
- the LoRA: exactly in weight space. The deltas s_a * B_a A_a and s_b * B_b A_b become one adapter of rank r_a + r_b
  (A stacked along the rank with the weights and scalings folded in, B concatenated), so the result is
  (1 - a) * dW_a + a * dW_b to the last bit of fp32, servable by vLLM like any LoRA (`max_lora_rank` follows it).
The two artifacts must share their base, LLM, towers and the towers' normalisation statistics; anything else is
refused with the first difference named. The run is resumable: weights already evaluated (rows of
`<run>/dev_eval.jsonl`) are skipped, and `<run>/best` is the one with the best dev headline, as in training.

The saved recipe's `data.mixture` is filled with both sources' training data (they are what the weights saw), so
the eval suite's seen/unseen split and the model card stay right."""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file, save_file

from ..artifact import BASE_KEY, NORM_PARAMS, PROJECTORS_FILE, is_artifact, publish
from ..errors import ConfigError
from ..lora import ADAPTER_CONFIG as _LORA_CONFIG
from ..lora import ADAPTER_WEIGHTS as _LORA_WEIGHTS
from ..lora import lora_scaling, not_plain, read_adapter

log = logging.getLogger("affectllm")
ADAPTER_CONFIG, ADAPTER_WEIGHTS = f"adapter/{_LORA_CONFIG}", f"adapter/{_LORA_WEIGHTS}"  # in an artifact
_IGNORED_CONFIG_KEYS = {"dtype", "torch_dtype", "norm_mean", "norm_std", "_name_or_path", "transformers_version"}


def _first_difference(a, b, where: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key in _IGNORED_CONFIG_KEYS:
                continue
            if key not in a or key not in b:
                return f"{where}{key} (only in one of them)"
            found = _first_difference(a[key], b[key], f"{where}{key}.")
            if found:
                return found
        return None
    return None if a == b else where.rstrip(".")


def _check_lora_config(config: dict, path: Path) -> None:
    found = not_plain(config)
    if found:
        raise ConfigError(f"{path / ADAPTER_CONFIG}: {found} is not supported by interpolation (plain LoRA only)")


def check_compatible(start: Path, end: Path) -> None:
    """Refuse two artifacts that are not two points of one chain (other base, LLM, towers, statistics, LoRA layout)."""
    for path in (start, end):
        if not is_artifact(path):
            raise ConfigError(f"'{path}' is not a trained artifact (no {PROJECTORS_FILE})")
        if (path / "llm").is_dir():
            raise ConfigError(f"'{path}' carries a fully trained LLM (llm/); interpolation handles LoRA artifacts")
    ca, cb = (json.loads((p / "config.json").read_text()) for p in (start, end))
    if ca.get(BASE_KEY) != cb.get(BASE_KEY):
        raise ConfigError(f"'{start}' extends '{ca.get(BASE_KEY)}' but '{end}' extends '{cb.get(BASE_KEY)}'")
    diff = _first_difference(ca, cb)
    if diff:
        raise ConfigError(f"'{start}' and '{end}' differ in config.json at '{diff}': not two points of one chain")
    has_adapter = [(p / ADAPTER_CONFIG).is_file() for p in (start, end)]
    if has_adapter[0] != has_adapter[1]:
        raise ConfigError(f"only one of '{start}' and '{end}' has a LoRA adapter")
    if has_adapter[0]:
        la, lb = (json.loads((p / ADAPTER_CONFIG).read_text()) for p in (start, end))
        for cfg, path in ((la, start), (lb, end)):
            _check_lora_config(cfg, path)
        if set(la.get("target_modules") or []) != set(lb.get("target_modules") or []):
            raise ConfigError(f"the LoRA of '{start}' and '{end}' target other modules: "
                              f"{sorted(la.get('target_modules') or [])} vs {sorted(lb.get('target_modules') or [])}")


def interpolate_lora(a: dict[str, torch.Tensor], config_a: dict, b: dict[str, torch.Tensor], config_b: dict,
                     alpha: float) -> tuple[dict[str, torch.Tensor], dict]:
    """One adapter of rank r_a + r_b whose delta is exactly (1 - alpha) * delta_a + alpha * delta_b."""
    if set(a) != set(b):
        extra = sorted(set(a) ^ set(b))[:3]
        raise ConfigError(f"the two LoRA adapters hold other modules (e.g. {extra})")
    sa, sb = lora_scaling(config_a), lora_scaling(config_b)
    rank = int(config_a["r"]) + int(config_b["r"])
    out = {}
    for key, tensor in a.items():
        if ".lora_A." in key:
            out[key] = torch.cat([(1.0 - alpha) * tensor.double(), alpha * (sb / sa) * b[key].double()], 0)
        elif ".lora_B." in key:
            out[key] = torch.cat([tensor.double(), b[key].double()], 1)
        else:
            raise ConfigError(f"unexpected adapter weight '{key}' (plain LoRA holds lora_A / lora_B only)")
        out[key] = out[key].to(torch.float32).contiguous()
    config = {**config_a, "r": rank, "lora_alpha": sa * rank, "use_rslora": False}  # scaling s_a is kept
    if float(config["lora_alpha"]).is_integer():
        config["lora_alpha"] = int(config["lora_alpha"])
    return out, config


def interpolate_projectors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], alpha: float,
                           where: str = PROJECTORS_FILE) -> dict[str, torch.Tensor]:
    """Trained weights elementwise; the towers' normalisation statistics must agree (they are data, not weights)."""
    if set(a) != set(b):
        raise ConfigError(f"{where}: the two artifacts hold other weights (e.g. {sorted(set(a) ^ set(b))[:3]})")
    out = {}
    for key, ta in a.items():
        tb = b[key]
        if ta.shape != tb.shape:
            raise ConfigError(f"{where}: '{key}' has shape {tuple(ta.shape)} vs {tuple(tb.shape)}")
        if key.split(".")[-1] in NORM_PARAMS:
            if not torch.allclose(ta.double(), tb.double(), rtol=1e-3, atol=1e-6):
                raise ConfigError(f"{where}: the normalisation statistics '{key}' differ; the projectors of the two "
                                  "artifacts were trained on differently normalised features")
            out[key] = tb.clone()
        elif ta.is_floating_point():
            out[key] = ((1.0 - alpha) * ta.double() + alpha * tb.double()).to(tb.dtype).contiguous()
        elif not torch.equal(ta, tb):
            raise ConfigError(f"{where}: the non-float weight '{key}' differs between the two artifacts")
        else:
            out[key] = tb.clone()
    return out


def write_interpolated(start: str | Path, end: str | Path, alpha: float, out_dir: str | Path) -> Path:
    """The artifact (1 - alpha) * start + alpha * end, written atomically; config and processor files are end's."""
    start, end, out_dir = Path(start), Path(end), Path(out_dir)
    check_compatible(start, end)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        for src in end.iterdir():
            if src.is_file() and src.name not in (PROJECTORS_FILE, "selection.json", "MANIFEST.json"):
                shutil.copy2(src, tmp / src.name)
        save_file(interpolate_projectors(load_file(str(start / PROJECTORS_FILE)), load_file(str(end / PROJECTORS_FILE)),
                                         alpha), str(tmp / PROJECTORS_FILE))
        if (end / ADAPTER_CONFIG).is_file():
            (tmp / "adapter").mkdir()
            (la, wa), (lb, wb) = (read_adapter(p / "adapter") for p in (start, end))
            state, config = interpolate_lora(wa, la, wb, lb, alpha)
            save_file(state, str(tmp / ADAPTER_WEIGHTS))
            (tmp / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2))
        (tmp / "interpolation.json").write_text(json.dumps({"start": str(start), "end": str(end), "alpha": alpha},
                                                           indent=2))
        publish(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _training_data(artifact: Path) -> list[dict]:
    """The mixture (or plain corpora) of the recipe an artifact was trained by."""
    recipe = yaml.safe_load((artifact / "recipe.yaml").read_text()) if (artifact / "recipe.yaml").is_file() else {}
    data = (recipe or {}).get("data") or {}
    if data.get("mixture"):
        return list(data["mixture"])
    return [{"corpus": c, "modalities": data.get("modalities"), "limit": data.get("limit")}
            for c in data.get("corpora") or []]


def run_interpolation(recipe, progress: bool = True) -> str:
    """Evaluate every weight in `interpolate.alphas` on the recipe's dev task; `<run>/best` is the best one."""
    from tqdm.auto import tqdm

    from ..artifact import load_artifact
    from .dev_eval import dev_log, evaluate_on_dev

    start, end, out = Path(recipe.interpolate.start), Path(recipe.model.base), Path(recipe.run.output_dir)
    check_compatible(start, end)
    base = json.loads((end / "config.json").read_text())[BASE_KEY]
    mixture = [dict(e) for e in _training_data(start)]
    mixture += [dict(e) for e in _training_data(end) if dict(e) not in mixture]
    recipe.data.mixture = mixture or None
    out.mkdir(parents=True, exist_ok=True)
    done = {round(float(r["alpha"]), 6) for r in dev_log(out) if "alpha" in r}
    todo = [(i, a) for i, a in enumerate(recipe.interpolate.alphas) if round(a, 6) not in done]
    if len(todo) < len(recipe.interpolate.alphas):
        log.info("interpolation: %d weight(s) already evaluated in %s, skipped",
                 len(recipe.interpolate.alphas) - len(todo), out / "dev_eval.jsonl")
    for i, alpha in tqdm(todo, desc=f"{recipe.name} (interpolate)", disable=not progress):
        candidate = write_interpolated(start, end, alpha, out / "candidate")
        pipe = load_artifact(candidate, dtype=recipe.model.dtype)
        evaluate_on_dev(pipe, recipe, out, step=i, base=base, progress=progress, extra={"alpha": alpha})
        del pipe
        shutil.rmtree(candidate, ignore_errors=True)
    if not (out / "best").is_dir():
        raise ConfigError(f"{out}: no weight was evaluated (dev_eval.jsonl holds no row)")
    return str(out / "best")
