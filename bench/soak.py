"""Soak (issue 14, item 4): `affectllm serve MODEL` as a user runs it (the gateway starts and supervises vLLM
itself), N clients sending a text/audio/image/video mix for the whole run, and one `kill -9` of the engine at a
chosen fraction of it. Reports answers and errors by class, p50/p95/p99 latency overall and outside the outage,
the outage (kill -> first success), and the gateway's resident memory at the start and the end (growth is a leak).

    .venv/bin/python bench/bench_serving.py soak --minutes 10 --clients 16 --kill-at 0.4
    .venv/bin/python bench/bench_serving.py soak --model tiny --engine fake --minutes 1 --json /tmp/soak.json  # a check

`--engine fake` runs tests/fake_vllm.py in place of vLLM (same launcher, supervisor and kill; no generation): a
quick check of this script, not a measurement. Clients honour Retry-After (capped, like tests/serve_helpers.py)."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from serving_common import REPO, media_files, text_requests, to_openai
from soak_stats import Event, outcome_of, summarize

MB = 1024 * 1024


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="bench_serving.py soak", description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="mini")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--kill-at", type=float, default=0.4, help="fraction of the run at which the engine is killed "
                    "(0: no kill)")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--timeout", type=float, default=120.0, help="per-request client timeout, seconds")
    ap.add_argument("--retry-cap", type=float, default=1.0, help="longest wait a client honours from Retry-After")
    ap.add_argument("--rss-every", type=float, default=10.0, help="seconds between gateway RSS samples")
    ap.add_argument("--engine", choices=["vllm", "fake"], default="vllm")
    ap.add_argument("--dtype", help="passed to affectllm serve --dtype")
    ap.add_argument("--ready-timeout", type=float, default=1200.0)
    ap.add_argument("--json", default=str(REPO / "docs" / "results" / "bench_soak.json"))
    args = ap.parse_args(argv)
    if not 0 <= args.kill_at < 1:
        ap.error("--kill-at is a fraction of the run in [0, 1)")
    return args


def cpu_model() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    info = {k.strip(): v.strip() for k, v in (ln.split(":", 1) for ln in out.splitlines() if ":" in ln)}
    return (f"{info.get('Model name', platform.processor() or 'unknown CPU')} (family {info.get('CPU family')}, "
            f"model {info.get('Model')}); {os.cpu_count()} cores")


def request_mix(model: str, max_new: int) -> list[tuple[str, dict]]:
    """The mix of bench_serving's soak: 16 utterances and 4 files per media kind, interleaved by kind."""
    from affectllm.api import AffectPipeline

    by_kind = {"text": [to_openai(c) for c in text_requests(16)]}
    for kind in ("audio", "image", "video"):
        by_kind[kind] = [to_openai(AffectPipeline.build_messages(**{kind: p})[0]) for p in media_files(kind, 4)]
        if not by_kind[kind]:
            print(f"warning: no {kind} files under the data kit; the mix has no {kind} requests", flush=True)
    body = lambda msgs: {"model": model, "messages": msgs, "max_tokens": max_new, "temperature": 0}  # noqa: E731
    return [(kind, body(msgs[i % len(msgs)])) for i in range(16) for kind, msgs in by_kind.items() if msgs]


def fake_engine_python(work: Path) -> Path:
    """An AFFECTLLM_VLLM_PYTHON that drops `-m vllm.entrypoints...` and runs the stand-in with vLLM's arguments
    (it reads --port and --api-key and ignores the rest); exec keeps the pid the gateway supervises."""
    script = work / "fake-vllm-python"
    script.write_text(f"#!/bin/sh\nshift 2\nexec {shlex.quote(sys.executable)} "
                      f"{shlex.quote(str(REPO / 'tests' / 'fake_vllm.py'))} \"$@\"\n")
    script.chmod(0o755)
    (work / "events").mkdir()
    return script


def start_gateway(args, work: Path) -> tuple[subprocess.Popen, str]:
    import httpx

    from affectllm.serve.launcher import free_port

    port = free_port()
    cmd = [sys.executable, "-m", "affectllm.cli", "serve", args.model, "--port", str(port), "--torch-threads", "1"]
    if args.dtype:
        cmd += ["--dtype", args.dtype]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if args.engine == "fake":
        env.update(AFFECTLLM_VLLM_PYTHON=str(fake_engine_python(work)), FAKE_VLLM_EVENTS=str(work / "events"))
    log = open(work / "gateway.log", "wb")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    log.close()
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + args.ready_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the gateway exited with code {proc.returncode}:\n{gateway_log(work)}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop_gateway(proc)
    raise TimeoutError(f"the gateway was not ready after {args.ready_timeout:.0f} s:\n{gateway_log(work)}")


def gateway_log(work: Path, n: int = 30) -> str:
    try:
        return "\n".join((work / "gateway.log").read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def engine_process(gateway_pid: int):
    """The engine is the gateway's child that leads its own process group (the launcher starts vLLM in a new
    session); the gateway's other children, if any, stay in the gateway's group."""
    import psutil

    leaders = [p for p in psutil.Process(gateway_pid).children() if os.getpgid(p.pid) == p.pid]
    if len(leaders) != 1:
        raise RuntimeError(f"expected one engine process under the gateway (pid {gateway_pid}), found "
                           f"{[p.pid for p in leaders]}")
    return leaders[0]


def rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / MB


def stop_gateway(proc: subprocess.Popen) -> None:
    """SIGTERM (the gateway stops its engine), then SIGKILL its whole group if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


async def run_load(url: str, mix: list, args, gw_pid: int) -> dict:
    """Clients, the kill, RSS samples and a /health poll, all on one clock (seconds since the load began)."""
    import httpx

    seconds = args.minutes * 60
    kill_t = args.kill_at * seconds if args.kill_at > 0 else None
    events: list[Event] = []
    rss: list[tuple[float, float]] = []
    health: list[tuple[float, int | str, str | None]] = []
    kill: dict = {}
    t0 = time.monotonic()
    now = lambda: time.monotonic() - t0  # noqa: E731
    deadline = seconds

    async with httpx.AsyncClient(base_url=url, timeout=args.timeout,
                                 limits=httpx.Limits(max_connections=args.clients + 8)) as c:
        async def client(k: int) -> None:
            i = k
            while now() < deadline:
                kind, body = mix[i % len(mix)]
                i += args.clients
                start, wait = now(), 0.0
                try:
                    r = await c.post("/v1/chat/completions", json=body)
                    outcome = outcome_of(r.status_code)
                    if r.status_code in (429, 503):
                        wait = min(float(r.headers.get("Retry-After") or 0), args.retry_cap)
                except Exception as e:  # noqa: BLE001 - every failure is counted by its class
                    outcome, wait = outcome_of(error=e), args.retry_cap
                events.append(Event(start, now() - start, outcome, kind))
                if wait:
                    await asyncio.sleep(wait)

        async def killer() -> None:
            await asyncio.sleep(kill_t)
            p = engine_process(gw_pid)
            kill.update(pid=p.pid, name=" ".join(p.cmdline()[:3]).replace(str(REPO) + "/", ""), t_s=now())
            p.send_signal(signal.SIGKILL)
            print(f"[{now():6.1f} s] kill -9 engine pid {p.pid}", flush=True)

        async def sampler() -> None:
            while now() < deadline:
                rss.append((now(), rss_mb(gw_pid)))
                await asyncio.sleep(min(args.rss_every, max(0.0, deadline - now())) or 0.01)

        async def poller() -> None:
            while now() < deadline:
                try:
                    r = await c.get("/health", timeout=5)
                    health.append((now(), r.status_code, r.json().get("engine", {}).get("state")))
                except Exception as e:  # noqa: BLE001
                    health.append((now(), type(e).__name__, None))
                await asyncio.sleep(1.0)

        tasks = [client(k) for k in range(args.clients)] + [sampler(), poller()]
        await asyncio.gather(*tasks, *([killer()] if kill_t is not None else []))
    load_s = now()
    rss.append((load_s, rss_mb(gw_pid)))
    down = [t for t, code, _ in health if kill and t >= kill["t_s"] and code != 200]
    back = [t for t, code, _ in health if down and t > down[0] and code == 200]
    return {"events": events, "rss": rss, "kill": kill, "load_s": load_s,
            "engine_back_s": back[0] - kill["t_s"] if back else None, "health_polls": len(health)}


def warm_up(url: str, mix: list, timeout: float) -> None:
    """One request per kind before the clock starts, so lazy allocations are not counted as growth."""
    import httpx

    seen = {}
    for kind, body in mix:
        if kind not in seen:
            r = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=timeout)
            if r.status_code != 200:
                raise RuntimeError(f"warm-up {kind} request failed: HTTP {r.status_code} {r.text[:300]}")
            seen[kind] = True


def fmt(x: float | None, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def print_table(rep: dict) -> None:
    k = rep["kill"]
    print(f"\nsoak: {rep['model']} ({rep['engine']} engine), {rep['clients']} clients, {rep['load_s']:.0f} s; "
          + (f"kill -9 of engine pid {k['pid']} at {k['t_s']:.1f} s" if k else "no kill"))
    errs = ", ".join(f"{c} {n}" for c, n in rep["errors_by_class"].items()) or "none"
    print(f"requests {rep['requests']} ({', '.join(f'{a} {b}' for a, b in rep['by_kind'].items())}); "
          f"errors {rep['errors']}: {errs}")
    print("| latency, s            |     n |   p50 |   p95 |   p99 |   max |")
    print("|-----------------------|-------|-------|-------|-------|-------|")
    for name, key in (("all requests", "all"), ("200s", "ok"), ("200s outside outage", "ok_outside_outage")):
        if key in rep["latency"]:
            p = rep["latency"][key]
            print(f"| {name:21s} | {p['n']:5d} | {fmt(p['p50_s']):>5s} | {fmt(p['p95_s']):>5s} | "
                  f"{fmt(p['p99_s']):>5s} | {fmt(p['max_s']):>5s} |")
    if k:
        print(f"outage (kill -> first success): {fmt(rep['outage_s'], '.1f')} s; /health ok again after "
              f"{fmt(rep['engine_back_s'], '.1f')} s; engine restarts {rep['restarts']}")
    r = rep["rss"]
    print(f"gateway RSS: {r['start_mb']:.0f} MB at start, {r['end_mb']:.0f} MB at end ({r['growth_mb']:+.1f} MB; "
          f"{r['growth_since_settled_mb']:+.1f} MB since {r['settled_at_s']:.0f} s; {r['ready_mb']:.0f} MB before "
          "warm-up)")


def main(argv: list[str]) -> int:
    args = parse(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import httpx

    started, load_avg = datetime.now(timezone.utc), os.getloadavg()[0]
    mix = request_mix(args.model, args.max_new_tokens)
    work = Path(tempfile.mkdtemp(prefix="afsoak-"))
    gw = None
    try:
        gw, url = start_gateway(args, work)
        print(f"gateway ready after {(datetime.now(timezone.utc) - started).total_seconds():.0f} s", flush=True)
        ready_mb = rss_mb(gw.pid)
        warm_up(url, mix, args.timeout)
        out = asyncio.run(run_load(url, mix, args, gw.pid))
        engine = httpx.get(f"{url}/health", timeout=10).json().get("engine", {})
        try:
            engine_pid = engine_process(gw.pid).pid
        except RuntimeError:  # none (the supervisor gave up): the report still says so, via engine_state_at_end
            engine_pid = None
    except BaseException:
        print(gateway_log(work), file=sys.stderr)
        raise
    finally:
        if gw is not None:
            stop_gateway(gw)
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    import psutil

    if engine_pid and psutil.pid_exists(engine_pid) and psutil.Process(engine_pid).status() != psutil.STATUS_ZOMBIE:
        print(f"warning: engine pid {engine_pid} outlived the gateway", file=sys.stderr)
    rss = out["rss"]
    # 16 concurrent clients grow the allocator's pools for a while after the one-per-kind warm-up (measured: +120
    # MB over the first 30 s, then flat); growth after the first tenth of the run is the leak signal
    settled = next(((t, m) for t, m in rss if t >= 0.1 * out["load_s"]), rss[-1])
    rep = {"machine": cpu_model(), "command": shlex.join(["python", *sys.argv]),
           "started_at": started.isoformat(timespec="seconds"),
           "ended_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "model": args.model, "engine": args.engine, "clients": args.clients, "minutes": args.minutes,
           "max_new_tokens": args.max_new_tokens, "timeout_s": args.timeout, "load_s": out["load_s"],
           "kill": {**out["kill"], "at_fraction": args.kill_at} if out["kill"] else None,
           **summarize(out["events"], out["kill"].get("t_s")),
           "engine_back_s": out["engine_back_s"], "restarts": engine.get("restarts"),
           "engine_state_at_end": engine.get("state"),
           "rss": {"ready_mb": ready_mb, "start_mb": rss[0][1], "end_mb": rss[-1][1],
                   "growth_mb": rss[-1][1] - rss[0][1], "settled_at_s": settled[0], "settled_mb": settled[1],
                   "growth_since_settled_mb": rss[-1][1] - settled[1],
                   "samples": [[round(t, 1), round(m, 1)] for t, m in rss]},
           "load_average": [load_avg, os.getloadavg()[0]]}
    print_table(rep)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(rep, indent=2) + "\n")
    print(f"written: {args.json}")
    return 0
