"""Eval tasks as data: `evals/**/*.yaml`, loaded, merged and validated here (lm-eval style, a tenth of its size).

A task file names one task; a group file names a suite of tasks or groups; files whose name starts with `_` are
templates that other files `include:` (never tasks themselves)::

    task: zs_meld                       # group file instead:  group: zero_shot
    include: _zero_shot.yaml            #                      task: [zs_meld, {task: zs_ravdess, limit: 8}]
    suite: zero_shot                    #                      limit: 12     (default per-task limit)
    description: MELD utterances, open-vocabulary answers mapped into MELD's 7 labels
    dataset: {corpus: meld, split: dev, modalities: [text], limit: 50, stratify: label}
    # or a user's corpus:  dataset: {manifest: clips.jsonl, label_set: labels.yaml, split: test}
    prompt: {name: emotion_ov, vars: {with_confidence: false}}
    generation: {max_new_tokens: 48, temperature: 0.0, top_logprobs: 0}
    parser: emotion
    metric_list:
      - {metric: closed_set, options: {label_set: meld}}
    options: {leave_one_out: true}       # suite-specific
    metadata: {version: 1}

`include` (a path or list, relative to the including file) is merged depth-first; the including file wins, dicts
merge key by key, lists are replaced. Every key is checked (unknown keys get a did-you-mean), as are corpus, split,
prompt, parser, suite and metric names. A `manifest:` dataset (a JSONL written by `affectllm data`) replaces
`corpus:`; its paths are relative to the task file, its split defaults to every row, and its `label_set:` (a
label-set YAML) is what closed-set metrics and candidate lists use unless they name their own. A task that asks to fit or select anything on a test split
(`options.fit_split: test`, ...) is refused: test splits are for reporting only.
"""
from __future__ import annotations

import copy
import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from ..registry import unknown_name_message

TOP_KEYS = {"task", "include", "suite", "description", "dataset", "prompt", "generation", "parser",
            "metric_list", "options", "metadata", "headline"}
GROUP_KEYS = {"group", "task", "description", "limit", "metadata", "include"}
DATASET_KEYS = {"corpus", "split", "modalities", "filter", "limit", "stratify", "subset_seed", "skip", "pair_with",
                "manifest", "label_set"}
PAIR_KEYS = {"corpus", "split", "modalities", "filter", "manifest"}
ALL_ROWS = "all"                 # the split of a manifest task that reads every row
PROMPT_KEYS = {"name", "vars"}
GEN_KEYS = {"max_new_tokens", "temperature", "top_p", "top_logprobs"}
METRIC_KEYS = {"metric", "options", "gold", "name", "only"}
METADATA_KEYS = {"version", "notes"}
PARSERS = ("emotion", "letter", "yesno", "text")
MODALITY_NAMES = ("text", "audio", "image", "video")
# option keys that choose something on a split (fit a temperature, select a prompt, tune a threshold)
TUNING_KEYS = ("fit_split", "tune_split", "select_split", "calibration_split")


@dataclass
class MetricSpec:
    metric: str
    options: dict = field(default_factory=dict)
    gold: str | None = None       # record gold field; default by metric (label, multi_labels, labels, ...)
    name: str | None = None       # key prefix in the summary (default: the metric name)
    only: str | None = None       # record filter: "single_label"

    @property
    def prefix(self) -> str:
        return self.name or self.metric


@dataclass
class TaskConfig:
    name: str
    path: Path
    suite: str
    dataset: dict
    prompt: dict
    generation: dict
    parser: str
    metric_list: list[MetricSpec]
    options: dict
    version: str
    description: str = ""
    headline: list[str] = field(default_factory=list)
    limit: int | None = None                     # effective per-task limit (CLI > group > task)
    raw: dict = field(default_factory=dict)      # the merged YAML, for the record

    @property
    def temperature(self) -> float:
        return float(self.generation.get("temperature", 0.0))

    def gen(self, **over) -> dict:
        g = {"max_new_tokens": 48, "temperature": 0.0, "top_p": None, "top_logprobs": 0}
        g.update(self.generation)
        g.update(over)
        return g


@dataclass
class GroupConfig:
    name: str
    path: Path
    entries: list[tuple[str, int | None]]
    limit: int | None = None
    description: str = ""


def evals_dir() -> Path:
    """$AFFECTLLM_EVALS, else the repository's evals/ folder."""
    env = os.environ.get("AFFECTLLM_EVALS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "evals"


def _did_you_mean(key: str, known: set[str]) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _check_keys(d: Any, known: set[str], where: str) -> None:
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(d).__name__}")
    for k in d:
        if k not in known:
            raise ConfigError(f"{where}: unknown key '{k}'{_did_you_mean(str(k), known)}; "
                              f"known: {', '.join(sorted(known))}")


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def load_yaml(path: str | Path, _stack: tuple[Path, ...] = ()) -> dict:
    """One file with its includes merged (the file itself wins). Include cycles raise ConfigError."""
    path = Path(path).resolve()
    if path in _stack:
        chain = " -> ".join(p.name for p in (*_stack, path))
        raise ConfigError(f"include cycle: {chain}")
    if not path.is_file():
        where = f" (included from {_stack[-1]})" if _stack else ""
        raise ConfigError(f"eval YAML not found: {path}{where}")
    data = _read_yaml(path)
    inc = data.pop("include", None)
    merged: dict = {}
    for item in [inc] if isinstance(inc, str) else (inc or []):
        if not isinstance(item, str):
            raise ConfigError(f"{path}: include must be a path or a list of paths")
        merged = _merge(merged, load_yaml(path.parent / item, (*_stack, path)))
    return _merge(merged, data)


def _int_or_none(v: Any, where: str) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ConfigError(f"{where}: limit must be a positive integer, got {v!r}")
    return v


def _known_metrics(suite: str) -> set[str]:
    from ..scoring import list_metrics
    from .suites import SUITES

    return set(list_metrics()) | set(getattr(SUITES.get(suite), "metric_names", ()))


def build_task(data: dict, path: Path) -> TaskConfig:
    """Validate a merged task mapping into a TaskConfig (every problem names the file)."""
    from ..data import CORPORA
    from ..prompts import get_prompt
    from .suites import SUITES

    where = str(path)
    _check_keys(data, TOP_KEYS, where)
    name = data.get("task")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: 'task' must be a task name")
    suite = data.get("suite", "standard")
    if suite not in SUITES:
        raise ConfigError(f"{where}: {unknown_name_message('suite', suite, SUITES.names())}")
    ds = data.get("dataset")
    _check_keys(ds, DATASET_KEYS, f"{where}: dataset")
    ds = _resolve_manifest(dict(ds), path, f"{where}: dataset")
    for k in ("corpus", "split"):
        if not isinstance(ds.get(k), str):
            raise ConfigError(f"{where}: dataset.{k} is required (or dataset.manifest, a JSONL manifest)")
    specs = [("dataset", ds)]
    if ds.get("pair_with") is not None:
        _check_keys(ds["pair_with"], PAIR_KEYS, f"{where}: dataset.pair_with")
        ds["pair_with"] = _resolve_manifest(dict(ds["pair_with"]), path, f"{where}: dataset.pair_with")
        specs.append(("dataset.pair_with", ds["pair_with"]))
    for label, spec in specs:
        if spec.get("manifest"):
            pass                                     # a user's corpus: splits are whatever its rows say
        elif spec.get("corpus") not in CORPORA:
            raise ConfigError(f"{where}: {label}: {unknown_name_message('corpus', str(spec.get('corpus')), CORPORA.names())}")
        elif spec.get("split") not in CORPORA.get(spec["corpus"]).splits:
            splits = CORPORA.get(spec["corpus"]).splits
            raise ConfigError(f"{where}: {label}: {unknown_name_message(spec['corpus'] + ' split', str(spec.get('split')), splits)}")
        for m in spec.get("modalities") or []:
            if m not in MODALITY_NAMES:
                raise ConfigError(f"{where}: {label}: {unknown_name_message('modality', m, MODALITY_NAMES)}")
    _int_or_none(ds.get("limit"), f"{where}: dataset")
    if ds.get("skip") is not None:
        if isinstance(ds["skip"], bool) or not isinstance(ds["skip"], int) or ds["skip"] < 0:
            raise ConfigError(f"{where}: dataset.skip must be a non-negative integer, got {ds['skip']!r}")
        if ds.get("stratify"):
            raise ConfigError(f"{where}: dataset.skip works on the unstratified seeded order only (drop `stratify`)")
    prompt = data.get("prompt") or {}
    _check_keys(prompt, PROMPT_KEYS, f"{where}: prompt")
    if not isinstance(prompt.get("name"), str):
        raise ConfigError(f"{where}: prompt.name is required")
    get_prompt(prompt["name"])                       # unknown prompt -> ConfigError with did-you-mean
    gen = data.get("generation") or {}
    _check_keys(gen, GEN_KEYS, f"{where}: generation")
    if float(gen.get("temperature", 0.0)) < 0:
        raise ConfigError(f"{where}: generation.temperature must be >= 0")
    if not 0 <= int(gen.get("top_logprobs", 0)) <= 20:
        raise ConfigError(f"{where}: generation.top_logprobs must be 0..20 (the OpenAI API limit)")
    parser = data.get("parser", "emotion")
    if parser not in PARSERS:
        raise ConfigError(f"{where}: {unknown_name_message('parser', str(parser), PARSERS)}")
    metrics = []
    known = _known_metrics(suite)
    for i, m in enumerate(data.get("metric_list") or []):
        m = {"metric": m} if isinstance(m, str) else m
        _check_keys(m, METRIC_KEYS, f"{where}: metric_list[{i}]")
        if m.get("metric") not in known:
            raise ConfigError(f"{where}: metric_list[{i}]: {unknown_name_message('metric', str(m.get('metric')), known)}")
        opts = dict(m.get("options") or {})
        if m["metric"] in ("closed_set", "closed_set_multilabel"):
            if "label_set" not in opts and ds.get("label_set"):
                opts["label_set"] = ds["label_set"]     # a manifest task scores against its own label set
            if "label_set" not in opts:
                raise ConfigError(f"{where}: metric_list[{i}]: {m['metric']} needs options.label_set "
                                  f"(a label-set name such as 'meld', a label-set YAML, or a list of labels)")
            opts["label_set"] = _resolve_label_set(opts["label_set"], path, f"{where}: metric_list[{i}]")
        metrics.append(MetricSpec(m["metric"], opts, m.get("gold"), m.get("name"), m.get("only")))
    meta = data.get("metadata")
    _check_keys(meta, METADATA_KEYS, f"{where}: metadata")
    if "version" not in meta:
        raise ConfigError(f"{where}: metadata.version is required (bump it whenever the task changes)")
    options = data.get("options") or {}
    if not isinstance(options, dict):
        raise ConfigError(f"{where}: options must be a mapping")
    for key in TUNING_KEYS:
        if key in options and options[key] == "test":
            raise ConfigError(f"{where}: options.{key}: test — refusing to fit or select anything on a test split "
                              f"(test splits are only reported); use dev")
        if key in options and options[key] == ds["split"]:
            raise ConfigError(f"{where}: options.{key} equals the reported split '{ds['split']}': fitting and "
                              f"reporting on the same samples overstates the result; use another split")
        if key in options and ds.get("manifest"):
            if ds["split"] == ALL_ROWS:
                raise ConfigError(f"{where}: options.{key} needs dataset.split (the manifest split to report): with "
                                  f"split '{ALL_ROWS}' the {options[key]} rows would be reported too")
        elif key in options and options[key] not in CORPORA.get(ds["corpus"]).splits:
            raise ConfigError(f"{where}: options.{key}: "
                              f"{unknown_name_message(ds['corpus'] + ' split', str(options[key]), CORPORA.get(ds['corpus']).splits)}")
    SUITES.get(suite).validate(options, where)
    return TaskConfig(name=name, path=path, suite=suite, dataset=ds, prompt={"name": prompt["name"],
                      "vars": dict(prompt.get("vars") or {})}, generation=dict(gen), parser=parser,
                      metric_list=metrics, options=options, version=str(meta["version"]),
                      description=str(data.get("description", "")).strip(), headline=list(data.get("headline") or []),
                      limit=_int_or_none(ds.get("limit"), f"{where}: dataset"), raw=data)


def _resolve_label_set(spec: Any, path: Path, where: str) -> Any:
    """A label-set YAML path made absolute (relative to the task file) and validated; names and lists unchanged."""
    from ..scoring.label_set import is_label_set_path, load_label_set

    if is_label_set_path(spec):
        p = Path(spec).expanduser()
        p = p if p.is_absolute() else (Path(path).parent / p)
        try:
            load_label_set(p)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
        return str(p.resolve())
    return spec


def _resolve_manifest(spec: dict, path: Path, where: str) -> dict:
    """A `manifest:` dataset: path made absolute (relative to the task file) and checked; corpus defaults to the
    file stem, split to every row ('all'); its label set resolved like a metric's."""
    if spec.get("manifest") is None:
        return spec
    m = Path(str(spec["manifest"])).expanduser()
    m = (m if m.is_absolute() else Path(path).parent / m).resolve()
    if not m.is_file():
        raise ConfigError(f"{where}: manifest not found: {m}")
    spec["manifest"] = str(m)
    spec.setdefault("corpus", m.stem)
    spec.setdefault("split", ALL_ROWS)
    if spec.get("label_set") is not None:
        spec["label_set"] = _resolve_label_set(spec["label_set"], path, where)
    return spec


def build_group(data: dict, path: Path) -> GroupConfig:
    where = str(path)
    _check_keys(data, GROUP_KEYS, where)
    entries = []
    for i, e in enumerate(data.get("task") or []):
        if isinstance(e, str):
            entries.append((e, None))
        elif isinstance(e, dict):
            _check_keys(e, {"task", "limit"}, f"{where}: task[{i}]")
            entries.append((str(e.get("task")), _int_or_none(e.get("limit"), f"{where}: task[{i}]")))
        else:
            raise ConfigError(f"{where}: task[{i}] must be a name or {{task: name, limit: N}}")
    if not entries:
        raise ConfigError(f"{where}: group '{data['group']}' lists no tasks")
    return GroupConfig(str(data["group"]), path, entries, _int_or_none(data.get("limit"), where),
                       str(data.get("description", "")).strip())


@dataclass
class Catalog:
    tasks: dict[str, TaskConfig]
    groups: dict[str, GroupConfig]

    def names(self) -> list[str]:
        return sorted(self.tasks) + sorted(self.groups)

    def resolve(self, names: list[str], limit: int | None = None) -> list[TaskConfig]:
        """Task configs (deduplicated, in order) for task/group names or YAML paths. Limit precedence:
        the `limit` argument (CLI) > the outermost group that sets one > inner groups > the task file."""
        out: dict[str, TaskConfig] = {}

        def visit(name: str, outer: int | None, stack: tuple[str, ...]) -> None:
            if name in stack:
                raise ConfigError(f"group cycle: {' -> '.join((*stack, name))}")
            if name in self.groups:
                g = self.groups[name]
                for child, lim in g.entries:
                    visit(child, outer if outer is not None else (lim or g.limit), (*stack, name))
                return
            if name.endswith((".yaml", ".yml")) and Path(name).is_file():
                task = build_task(load_yaml(name), Path(name).resolve())
            elif name in self.tasks:
                task = self.tasks[name]
            else:
                inside = f" (listed in group '{stack[-1]}')" if stack else ""
                raise ConfigError(unknown_name_message("eval task or group", name, self.names()) + inside)
            if task.name not in out:
                t = copy.copy(task)
                t.limit = limit if limit is not None else (outer if outer is not None else task.limit)
                out[task.name] = t

        for n in names:
            visit(n.strip(), None, ())
        return list(out.values())


def load_catalog(directory: str | Path | None = None) -> Catalog:
    """Every task and group under `directory` (default `evals_dir()`); duplicate names raise ConfigError."""
    root = Path(directory) if directory is not None else evals_dir()
    if not root.is_dir():
        raise ConfigError(f"evals folder not found: {root} (set AFFECTLLM_EVALS)")
    tasks: dict[str, TaskConfig] = {}
    groups: dict[str, GroupConfig] = {}
    seen: dict[str, Path] = {}
    for path in sorted(root.rglob("*.y*ml")):
        if path.name.startswith("_") or path.suffix not in (".yaml", ".yml"):
            continue
        data = load_yaml(path)
        if "group" in data and isinstance(data["group"], str) and "task" in data and isinstance(data["task"], list):
            item = build_group(data, path)
            store: dict = groups
        else:
            item = build_task(data, path)
            store = tasks
        if item.name in seen:
            raise ConfigError(f"eval name '{item.name}' is defined twice: {seen[item.name]} and {path}")
        seen[item.name] = path
        store[item.name] = item
    return Catalog(tasks, groups)


def resolve_tasks(names: str | list[str], limit: int | None = None, directory: str | Path | None = None
                  ) -> list[TaskConfig]:
    """`"ov,zs_meld"` or a list -> validated TaskConfigs."""
    if isinstance(names, str):
        names = [n for n in names.split(",") if n.strip()]
    if not names:
        raise ConfigError("no eval tasks given (see `affectllm eval --list`)")
    return load_catalog(directory).resolve(list(names), limit)
