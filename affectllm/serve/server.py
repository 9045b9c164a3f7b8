"""Assemble and run a gateway: models -> (vLLM process) -> backend -> FastAPI app -> uvicorn.

`affectllm serve` calls `run()`; tests and the benchmark call `start()` to get a running gateway in a thread
and a handle that stops everything (vLLM's whole process group included)."""
from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .config import ServeConfig

log = logging.getLogger("affectllm.serve")


@dataclass
class VLLMOptions:
    dtype: str | None = None  # default (or "auto"): the model's resolved dtype in the gateway
    max_model_len: int = 4096
    gpu_memory_utilization: float = 0.3
    enforce_eager: bool = False
    prefix_caching: bool = True
    block_size: int | None = 32  # see VLLMServer.block_size
    max_loras: int = 4
    max_lora_rank: int | None = None
    url: str | None = None  # attach to a running vLLM instead of starting one
    api_key: str | None = None  # that vLLM's key
    cache_root: Path | None = None
    workdir: Path | None = None
    extra_args: list[str] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)
    ready_timeout_s: float = 900.0
    max_restarts: int = 5  # restart tries in a row after vLLM dies, before the gateway gives up (see supervisor.py)
    restart_backoff_s: float = 1.0
    merge_lora: bool = False  # serve the main artifact with its LoRA merged (ModelRegistry._serve_merged)


@dataclass
class Running:
    gateway: object
    app: object
    vllm: object | None
    server: object | None = None
    thread: threading.Thread | None = None
    supervisor: object | None = None  # EngineSupervisor of `vllm`

    @property
    def url(self) -> str:
        cfg = self.gateway.cfg
        return f"http://{cfg.host}:{cfg.port}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=30)
        if self.supervisor is not None:
            self.supervisor.close()  # stops vLLM too, also one it is restarting right now
        elif self.vllm is not None:
            self.vllm.stop()
        self.gateway.executor.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> "Running":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _dtype_name(pipe) -> str:
    return str(pipe.model.dtype).replace("torch.", "")


def _vllm_dtype(requested: str | None, pipe) -> str:
    """The dtype name vLLM gets. Never "auto": vLLM's auto means "config.json's dtype" (bf16 for the converted
    Gemma), while ours means "the faster on this machine", already resolved when the gateway loaded the model."""
    if requested in (None, "auto"):
        return _dtype_name(pipe)
    from ..dtypes import resolve_dtype_name

    return resolve_dtype_name(requested)


def _served_max_len(url: str, key: str | None, default: int) -> int:
    """max_model_len of a vLLM server we did not start (its /v1/models says)."""
    import httpx

    try:
        resp = httpx.get(f"{url.rstrip('/')}/v1/models", timeout=10,
                         headers={"Authorization": f"Bearer {key}"} if key else {})
        return int(resp.json()["data"][0].get("max_model_len") or default)
    except (httpx.HTTPError, ValueError, KeyError, IndexError) as e:
        log.warning("could not read max_model_len from %s (%s); assuming %d", url, type(e).__name__, default)
        return default


def build(source: str, backend: str = "vllm", cfg: ServeConfig | None = None, loras: dict[str, str] | None = None,
          dtype: str | None = None, vllm: VLLMOptions | None = None, name: str | None = None) -> Running:
    """Load the models, start vLLM (for backend 'vllm' without an url) and wait until it is ready."""
    from .backends import HFBackend, VLLMBackend
    from .gateway import Gateway, create_app
    from .launcher import VLLMServer, base_llm_dir, lora_rank_bound
    from .models import ModelRegistry

    cfg = cfg or ServeConfig()
    if backend not in ("vllm", "hf"):
        from ..errors import ConfigError

        raise ConfigError(f"unknown backend {backend!r}; use vllm or hf")
    if backend == "vllm" and (vllm is None or vllm.url is None):
        from .launcher import vllm_missing_reason

        if vllm_missing_reason():  # say so before minutes of model loading
            from ..errors import ConfigError

            raise ConfigError(vllm_missing_reason())
    t0 = time.perf_counter()
    registry = ModelRegistry(source, backend=backend, dtype=dtype, media_limits=cfg.media_limits(), main_name=name,
                             merge_lora=bool(vllm and vllm.merge_lora))
    for lora_name, path in (loras or {}).items():
        registry.add_lora(lora_name, path)
    log.info("models loaded in %.1f s: %s", time.perf_counter() - t0, ", ".join(registry.names()))
    proc = supervisor = None
    if backend == "hf":
        gw = Gateway(registry, None, cfg)  # backend set below: it shares the gateway's model thread
        gw.backend = HFBackend(gw.executor)
        gw.preparer.need_embeds = True
    else:
        opts = vllm or VLLMOptions()
        url, key = opts.url, opts.api_key
        if url is None:
            proc = VLLMServer(base_llm_dir(registry.base.pipe, from_source=not registry.merged), registry.base.vllm_name,
                              loras={m.vllm_name: m.adapter_dir for m in registry.loras()},
                              dtype=_vllm_dtype(opts.dtype, registry.base.pipe), max_model_len=opts.max_model_len,
                              max_lora_rank=opts.max_lora_rank or lora_rank_bound([m.lora_rank for m in registry.loras()]),
                              max_loras=opts.max_loras, gpu_memory_utilization=opts.gpu_memory_utilization,
                              enforce_eager=opts.enforce_eager, prefix_caching=opts.prefix_caching,
                              block_size=opts.block_size,
                              runtime_lora=cfg.runtime_lora_dir is not None, cache_root=opts.cache_root,
                              workdir=opts.workdir,
                              extra_args=opts.extra_args, extra_env=opts.extra_env)
            log.info("starting vLLM: %s", " ".join(proc.command()).replace(proc.api_key, "***"))
            t1 = time.perf_counter()
            proc.start()
            try:
                proc.wait_ready(opts.ready_timeout_s)
            except BaseException:
                proc.stop()
                raise
            url, key = proc.url, proc.api_key
            warm_ids = registry.base.pipe.processor.tokenizer("warm up", add_special_tokens=False).input_ids or [0]
            proc.warmup(warm_ids)
            start_s = time.perf_counter() - t1
            log.info("vLLM ready at %s after %.1f s", url, time.perf_counter() - t0)
            supervisor = _supervise(proc, registry, opts, warm_ids, start_s)
        max_len = opts.max_model_len if proc is not None else _served_max_len(url, key, opts.max_model_len)
        backend = VLLMBackend(url, key, alive=supervisor.reason if proc else None, max_model_len=max_len,
                              retry_after=supervisor.retry_after if proc else None,
                              status=supervisor.status if proc else None,
                              lora_enabled=proc.lora_enabled if proc else True)
        gw = Gateway(registry, backend, cfg)
    return Running(gw, create_app(gw), proc, supervisor=supervisor)


def _supervise(proc, registry, opts: VLLMOptions, warm_ids: list[int], start_s: float):
    """Restart vLLM when it dies; after a restart, warm it up and re-load the LoRAs loaded at runtime."""
    from .supervisor import EngineSupervisor, RestartPolicy

    def on_ready() -> None:
        proc.warmup(warm_ids)
        for m in registry.loras():
            if m.vllm_name not in proc.loras:
                proc.load_lora(m.vllm_name, m.adapter_dir)

    policy = RestartPolicy(max_restarts=opts.max_restarts, backoff_s=opts.restart_backoff_s,
                           ready_timeout_s=opts.ready_timeout_s)
    return EngineSupervisor(proc, policy, on_ready=on_ready, start_s=start_s)


def start(source: str, **kwargs) -> Running:
    """build() + uvicorn in a background thread; returns once the gateway answers."""
    import httpx
    import uvicorn

    running = build(source, **kwargs)
    cfg = running.gateway.cfg
    if not cfg.port:
        from .launcher import free_port

        cfg.port = free_port(cfg.host)
    server = uvicorn.Server(uvicorn.Config(running.app, host=cfg.host, port=cfg.port, log_level="warning",
                                           access_log=False, timeout_graceful_shutdown=5))
    server.install_signal_handlers = lambda: None  # not the main thread
    running.server = server
    running.thread = threading.Thread(target=server.run, name="affectllm-gateway", daemon=True)
    running.thread.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{running.url}/health", timeout=2)
            return running
        except httpx.HTTPError:
            time.sleep(0.1)
    running.stop()
    raise RuntimeError("the gateway did not start listening")


def run(source: str, **kwargs) -> int:
    """Foreground server for the CLI: stops vLLM on SIGINT/SIGTERM and when uvicorn exits."""
    import uvicorn

    def _terminate(*_):  # while vLLM starts: unwind through build(), which stops it
        raise SystemExit(143)

    previous = signal.signal(signal.SIGTERM, _terminate)
    running = build(source, **kwargs)
    cfg = running.gateway.cfg
    server = uvicorn.Server(uvicorn.Config(running.app, host=cfg.host, port=cfg.port, log_level="info",
                                           access_log=False, timeout_graceful_shutdown=5))
    running.server = server
    try:
        print(f"affectllm gateway on http://{cfg.host}:{cfg.port}  models: {', '.join(running.gateway.registry.names())}"
              f"  backend: {kwargs.get('backend', 'vllm')}", flush=True)
        server.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
        if running.supervisor is not None:
            running.supervisor.close()
        elif running.vllm is not None:
            running.vllm.stop()
    return 0
