"""`dtype: auto`: run in whichever of bfloat16 / float32 is faster on *this* machine.

Why: the machines this project runs on differ from one session to the next, and the faster dtype flips with them.
Measured on 2 threads (../shared/ENVIRONMENT.md): AMD Zen 5 bf16 matmul ~946 GFLOP/s vs fp32 ~211; an Intel Xeon
with AMX-BF16 732 vs 193; an Intel Xeon without a fast bf16 path 194 vs 370; an AMD EPYC Zen 3 (no AVX-512) has
no native bf16 at all: 0.5-1.3 vs 20-70 (2026-11-30, box shared with a training run). A dtype fixed in a recipe or preset is therefore 2-4x too slow somewhere, so presets and recipes say
`auto` and this module decides:

* on CUDA: bfloat16 when the GPU supports it, else float32 (no float16 by default: it overflows Gemma activations);
* on CPU: a short matmul micro-benchmark (1024^3 bf16 and fp32, interleaved, after a warm-up, with the current
  torch thread count; well under 2 s, and cut short at a 256^3 probe where bf16 has no native path) picks
  bfloat16 only when it is clearly faster (>= 1.2x fp32), else float32.
  The result is cached in `$AFFECTLLM_CACHE/dtype_auto.json` (default ~/.cache/affectllm), keyed by the CPU
  (model name + family/model/stepping + a hash of its feature flags: a KVM guest may call both Zen 3 and Zen 5
  just "AMD EPYC"), the torch version and the thread count, so it runs once per machine.

`AFFECTLLM_DTYPE=float32|bfloat16|float16` forces what `auto` means (e.g. to rule the dtype out while comparing
runs, or where matmul speed misleads: bf16 HF `generate` was measured pathologically slow on one Zen 5 box).
Explicit names are never benchmarked. The choice is logged once per process on the "affectllm" logger, and
`describe_choice()` returns its record for run metadata."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from .errors import ConfigError

log = logging.getLogger("affectllm")

NAMES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
VALID = ("auto", *NAMES)
CACHE_FILE = "dtype_auto.json"
ENV_OVERRIDE = "AFFECTLLM_DTYPE"
BF16_MIN_SPEEDUP = 1.2  # bf16 loses precision: take it only when it clearly pays
BENCH_SIZE = 1024
BENCH_BUDGET_S = 0.8  # timed rounds stop after this (at least 2 rounds, at most 5)
PROBE_GIVE_UP = 0.5  # bf16 under half the fp32 speed at the small probe: no native bf16, stop there

_memo: dict[str, dict] = {}  # cache key -> record, so one process reads the file and logs once
_last: dict | None = None


def dtype_name(dtype: torch.dtype | str) -> str:
    """'float32' for torch.float32 (what vLLM's --dtype and our configs take)."""
    return str(dtype).replace("torch.", "")


def _check_name(name: str) -> str:
    if name not in VALID:
        raise ConfigError(f"unknown dtype {name!r}; valid values: {', '.join(VALID)}")
    return name


# ---- machine identity ------------------------------------------------------------------------------------------
def cpu_identity() -> dict[str, str]:
    """CPU model name plus what tells apart CPUs that share a name (family/model/stepping, feature flags)."""
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition(":")
                key = key.strip()
                if not sep:
                    if info:  # end of the first processor block
                        break
                    continue
                if key in ("model name", "cpu family", "model", "stepping", "flags", "Features") and key not in info:
                    info[key] = value.strip()
    except OSError:
        pass
    name = info.get("model name") or platform.processor() or platform.machine() or "unknown cpu"
    flags = info.get("flags") or info.get("Features") or ""
    return {"name": name, "family": info.get("cpu family", "?"), "model": info.get("model", "?"),
            "stepping": info.get("stepping", "?"),
            "flags_sha": hashlib.sha256(" ".join(sorted(flags.split())).encode()).hexdigest()[:12]}


def cache_key(threads: int | None = None, cpu: dict | None = None) -> str:
    cpu = cpu or cpu_identity()
    threads = threads or torch.get_num_threads()
    return (f"{cpu['name']}|f{cpu['family']}m{cpu['model']}s{cpu['stepping']}|flags:{cpu['flags_sha']}"
            f"|torch {torch.__version__}|{threads} threads")


def cache_path() -> Path:
    from .weights import cache_dir

    return cache_dir() / CACHE_FILE


def _read_cache() -> dict:
    try:
        data = json.loads(cache_path().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_cache(key: str, record: dict) -> None:
    """Merge one entry into the cache file atomically; a read-only cache only costs a re-measure next time."""
    path = cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _read_cache()
        data[key] = record
        fd, tmp = tempfile.mkstemp(prefix=f".{CACHE_FILE}.", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
        os.replace(tmp, path)
    except OSError as e:
        log.debug("could not write %s: %s", path, e)


# ---- the measurement -------------------------------------------------------------------------------------------
def _best_times(pairs: dict, min_rounds: int, max_rounds: int, budget_s: float) -> dict[str, float]:
    """Best seconds per matmul of each (a, b) pair, timed in interleaved rounds so that load from other processes
    hits both dtypes alike."""
    best = {k: float("inf") for k in pairs}
    deadline, rounds = time.perf_counter() + budget_s, 0
    while rounds < min_rounds or (rounds < max_rounds and time.perf_counter() < deadline):
        for k, (x, y) in pairs.items():
            t = time.perf_counter()
            x @ y
            best[k] = min(best[k], time.perf_counter() - t)
        rounds += 1
    return best


def benchmark_matmul(size: int = BENCH_SIZE, budget_s: float = BENCH_BUDGET_S) -> dict[str, float]:
    """GFLOP/s of a matmul in float32 and bfloat16 with the current torch thread count, plus the "size" used.

    A probe at size/4 first (also the warm-up: oneDNN picks and JITs its kernels): a CPU without native bf16 runs
    bf16 matmuls through a slow fallback (measured 0.6 GFLOP/s on a Zen 3, where one 1024^3 call takes 3.6 s),
    and when bf16 is already under half the fp32 speed there, no size makes it 1.2x faster, so the probe is the
    answer (best of 3). Otherwise one warm-up at full size and 2-5 interleaved timed rounds; the best round counts. A private
    generator leaves the caller's random state alone."""
    gen = torch.Generator().manual_seed(0)
    flops = {}
    with torch.no_grad():
        for n in (max(size // 4, 16), size):
            a, b = torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen)
            pairs = {"float32": (a, b), "bfloat16": (a.bfloat16(), b.bfloat16())}
            for x, y in pairs.values():  # warm-up
                x @ y
            best = _best_times(pairs, 3, 3, 0.0) if n < size else _best_times(pairs, 2, 5, budget_s)
            flops = {k: 2 * n ** 3 / max(v, 1e-9) / 1e9 for k, v in best.items()}
            flops["size"] = n
            if flops["bfloat16"] < PROBE_GIVE_UP * flops["float32"]:
                break
    return flops


def _measure_cpu(key: str, cpu: dict, threads: int) -> dict:
    t0 = time.perf_counter()
    gflops = benchmark_matmul()
    size = gflops.pop("size", None)
    ratio = gflops["bfloat16"] / max(gflops["float32"], 1e-9)
    return {"device": "cpu", "choice": "bfloat16" if ratio >= BF16_MIN_SPEEDUP else "float32",
            "gflops": {k: round(v, 1) for k, v in gflops.items()}, "bf16_over_fp32": round(ratio, 3),
            "min_speedup": BF16_MIN_SPEEDUP, "matmul_size": size, "cpu": cpu["name"], "threads": threads,
            "torch": torch.__version__, "key": key, "bench_s": round(time.perf_counter() - t0, 3),
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _valid_record(rec: Any) -> bool:
    return isinstance(rec, dict) and rec.get("choice") in ("float32", "bfloat16")


def _cpu_choice() -> dict:
    cpu, threads = cpu_identity(), torch.get_num_threads()
    key = cache_key(threads, cpu)
    if key in _memo:
        return _memo[key]
    rec, source = _read_cache().get(key), "cached"
    if not _valid_record(rec):
        rec, source = _measure_cpu(key, cpu, threads), "measured"
        _write_cache(key, rec)
    g = rec.get("gflops", {})
    log.info("dtype auto -> %s (bf16 %.0f GFLOP/s, fp32 %.0f GFLOP/s on %s, %d threads; %s, %s)", rec["choice"],
             g.get("bfloat16", 0), g.get("float32", 0), rec.get("cpu", cpu["name"]), threads, source, cache_path())
    _memo[key] = rec
    return rec


def _cuda_choice() -> dict:
    key = f"cuda:{torch.cuda.get_device_name()}|torch {torch.__version__}"
    if key not in _memo:
        bf16 = torch.cuda.is_bf16_supported()
        _memo[key] = {"device": "cuda", "choice": "bfloat16" if bf16 else "float32", "gpu": torch.cuda.get_device_name(),
                      "bf16_supported": bf16, "torch": torch.__version__, "key": key}
        log.info("dtype auto -> %s on %s (bf16 supported: %s)", _memo[key]["choice"], _memo[key]["gpu"], bf16)
    return _memo[key]


# ---- public API ------------------------------------------------------------------------------------------------
def resolve_dtype(name: str | torch.dtype | None = "auto", device: str | None = None) -> torch.dtype:
    """A torch dtype for a dtype name, a torch dtype, or "auto"/None (the faster one on this machine).

    `device` is "cuda" or "cpu"; default: cuda when available (where training and models run)."""
    global _last
    if isinstance(name, torch.dtype):
        if name not in NAMES.values():
            raise ConfigError(f"unsupported dtype {name}; valid values: {', '.join(VALID)}")
        return name
    if name is not None and not isinstance(name, str):
        raise ConfigError(f"dtype must be a string or torch.dtype, got {type(name).__name__}; valid values: "
                          f"{', '.join(VALID)}")
    name = _check_name("auto" if name is None else name.strip())
    if name != "auto":
        return NAMES[name]
    forced = os.environ.get(ENV_OVERRIDE, "").strip()
    if forced:
        if forced not in NAMES:
            raise ConfigError(f"${ENV_OVERRIDE}={forced!r} is not a dtype; valid values: {', '.join(NAMES)}")
        _last = {"device": device or "any", "choice": forced, "source": f"${ENV_OVERRIDE}"}
        return NAMES[forced]
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    _last = _cuda_choice() if str(device).startswith("cuda") else _cpu_choice()
    return NAMES[_last["choice"]]


def resolve_dtype_name(name: str | torch.dtype | None = "auto", device: str | None = None) -> str:
    """resolve_dtype as a name ("bfloat16"), for configs and vLLM's --dtype."""
    return dtype_name(resolve_dtype(name, device))


def describe_choice() -> dict | None:
    """The record behind the latest `auto` resolution in this process (or this machine's cached one, without
    measuring): choice, GFLOP/s of both dtypes, CPU, threads, torch version. None if nothing is known yet."""
    if _last is not None:
        return dict(_last)
    rec = _read_cache().get(cache_key())
    return dict(rec) if _valid_record(rec) else None
