"""`affectllm predict`: batch inference over a manifest, one JSONL row per sample, ready for `affectllm score`.

    affectllm predict --manifest clips.jsonl --model runs/sft/final --output preds.jsonl
    affectllm predict --manifest clips.jsonl --server http://127.0.0.1:8000 --output preds.jsonl --concurrency 16
    affectllm score --gold clips.jsonl --pred preds.jsonl --metric closed_set --label-set labels.yaml

Each row: ``id`` (the manifest's, so `affectllm score` pairs it with the gold manifest), ``labels``,
``explanation``, ``confidence``, ``valence``/``arousal`` when asked, ``raw`` (the model's text), ``format_ok``,
``error`` and the prompt id. The same pieces as `affectllm eval` (items -> `inputs.build_messages` -> a backend ->
`scoring.parse`), so a prediction here and an eval answer of the same sample and prompt are the same answer.
Rows are appended and fsynced batch by batch (`store.SampleStore`): an interrupted run resumes where it stopped, and
a file written by another model or prompt is refused rather than mixed. Against a server, requests run
``--concurrency`` at a time so the server can batch them; in process, ``--batch-size`` per generate call."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..errors import AffectError


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="batch inference over a manifest -> one JSONL row per sample "
                                       "(resumable; feeds affectllm score)")
    p.add_argument("--manifest", required=True, help="JSONL manifest (affectllm data ...)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="preset name or checkpoint folder, run in process (or 'dummy')")
    src.add_argument("--server", help="URL of an affectllm gateway or any OpenAI-compatible server")
    p.add_argument("--output", required=True, help="predictions file (.jsonl); re-running resumes it")
    p.add_argument("--prompt", default="emotion_ov", help="prompt name (default emotion_ov; emotion_closed asks "
                                                          "for one label of --label-set)")
    p.add_argument("--label-set", help="label-set YAML (or built-in name): the candidates of a closed-set prompt")
    p.add_argument("--split", help="only rows of this split (default: every row)")
    p.add_argument("--limit", type=int, help="first N rows (after --split)")
    p.add_argument("--dimensions", action="store_true", help="also ask for valence / arousal")
    p.add_argument("--no-confidence", action="store_true", help="do not ask for a verbalised confidence")
    p.add_argument("--max-new-tokens", type=int, default=128, help="answer budget (default 128)")
    p.add_argument("--batch-size", type=int, default=8, help="in process: requests per generate() call (default 8)")
    p.add_argument("--concurrency", type=int, default=8, help="--server: requests in flight (default 8)")
    p.add_argument("--served-model", help="--server: model name (default: the first it lists)")
    p.add_argument("--api-key", help="--server: API key (default $AFFECTLLM_API_KEY)")
    p.add_argument("--send-paths", action="store_true", help="--server: send file:// URLs instead of base64")
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], help="in process: override the dtype")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def predict(manifest: str | Path, output: str | Path, model=None, server: str | None = None, backend=None,
            prompt: str = "emotion_ov", label_set=None, split: str | None = None, limit: int | None = None,
            with_confidence: bool = True, with_dimensions: bool = False, max_new_tokens: int = 128,
            progress: bool = True, **backend_opts) -> dict:
    """Write predictions for every (selected) manifest row to `output`; returns {"rows", "generated", "errors",
    "output"}. `backend`: a ready `Backend` (tests), else one is made from `model` or `server`."""
    from tqdm.auto import tqdm

    from ..data.manifest import read_manifest
    from ..prompts import get_prompt
    from ..scoring import parse
    from .backends import Backend, Request, make_backend
    from .inputs import Item, build_messages
    from .suites.base import label_names

    path = Path(manifest).expanduser().resolve()
    samples = read_manifest(path, root=path.parent)
    if split:
        samples = [s for s in samples if s.split == split]
    samples = samples[:limit] if limit else list(samples)
    if not samples:
        raise AffectError(f"{path}: no rows to predict" + (f" in split '{split}'" if split else ""))
    tmpl = get_prompt(prompt)
    variables = {"with_confidence": with_confidence, "with_dimensions": with_dimensions}
    candidates = label_names(label_set) if label_set else None
    if label_set and candidates is None:
        raise AffectError(f"unknown label set {label_set!r} (a built-in name or a label-set YAML)")
    if "candidates" in tmpl.variables:
        if not candidates:
            raise AffectError(f"prompt '{prompt}' asks for one of a list of labels: give --label-set")
        variables["candidates"] = candidates
    if isinstance(backend, Backend):
        be = backend
    elif server:
        be = make_backend(server if "://" in server else f"http://{server}", "openai", **backend_opts)
    else:
        be = make_backend(model, None, **backend_opts)
    from .store import SampleStore

    try:
        info = be.info()
        fp = {"manifest": str(path), "model_id": info.get("model_id"), "model_hash": info.get("hash"),
              "backend": info.get("backend"), "prompt": tmpl.id, "variables": variables,
              "max_new_tokens": max_new_tokens}
        out = Path(output).expanduser()
        store = SampleStore(out.parent, fp, rows_name=out.name, run_name=out.name + ".run.json")
        todo = [s for s in samples if s.id not in store]
        supported = be.modalities()
        bar = tqdm(total=len(samples), initial=len(samples) - len(todo), desc="predict", unit="sample",
                   disable=not progress)
        step = max(1, be.batch_size if server is None else getattr(be, "concurrency", 8) * 2)
        generated = 0
        for start in range(0, len(todo), step):
            chunk, reqs, rows = todo[start : start + step], [], {}
            for s in chunk:
                mods = [m for m in s.modalities() if supported is None or m in supported]
                if not mods:
                    rows[s.id] = _row(s, "", None, tmpl.id, {"modalities": []}, f"the model takes none of this "
                                      f"sample's modalities {s.modalities()}")
                    continue
                item = Item(key=s.id, sample=s, prompt=prompt, variables=dict(variables), modalities=mods,
                            oracle={"kind": "labels", "gold": [s.label] if s.label else list(s.labels),
                                    "candidates": candidates, "modalities": mods, "dimensions": with_dimensions})
                try:
                    messages, prompt_id, record = build_messages(item, 0, be.video_use_audio)
                except AffectError as e:           # bad media: a row with the error, not a crash
                    rows[s.id] = _row(s, "", None, tmpl.id, {"modalities": mods}, str(e))
                    continue
                rows[s.id] = (prompt_id, record)
                reqs.append(Request(key=s.id, messages=messages, max_new_tokens=max_new_tokens, oracle=item.oracle))
            for r, resp in zip(reqs, be.generate(reqs) if reqs else []):
                prompt_id, record = rows[r.key]
                rows[r.key] = _row(next(s for s in chunk if s.id == r.key), resp.text, parse(resp.text), prompt_id,
                                   record, resp.error)
            store.append([rows[s.id] for s in chunk])
            generated += len(chunk)
            bar.update(len(chunk))
        bar.close()
    finally:
        be.close()
    rows = [store.rows[s.id] for s in samples]
    return {"rows": len(rows), "generated": generated, "resumed": len(rows) - generated,
            "errors": sum(1 for r in rows if r.get("error")), "output": str(store.path)}


def _row(sample, raw: str, pred, prompt_id: str, record: dict, error: str | None) -> dict:
    d = pred.to_dict() if pred is not None else {}
    return {"key": sample.id, "id": sample.id, "labels": d.get("labels", []), "explanation": d.get("explanation"),
            "confidence": d.get("confidence"), "valence": d.get("valence"), "arousal": d.get("arousal"),
            "raw": raw, "format_ok": d.get("format_ok", False), "error": error, "prompt_id": prompt_id,
            "modalities": record.get("modalities"), "split": sample.split}


def run(args: argparse.Namespace) -> int:
    opts = {"batch_size": args.batch_size, "dtype": args.dtype, "served_model": args.served_model,
            "api_key": args.api_key or os.environ.get("AFFECTLLM_API_KEY"), "concurrency": args.concurrency,
            "send_paths": args.send_paths}
    res = predict(args.manifest, args.output, model=args.model, server=args.server, prompt=args.prompt,
                  label_set=args.label_set, split=args.split, limit=args.limit,
                  with_confidence=not args.no_confidence, with_dimensions=args.dimensions,
                  max_new_tokens=args.max_new_tokens, progress=not args.no_progress, **opts)
    print(f"{res['rows']} prediction(s) -> {res['output']} ({res['generated']} generated now, {res['resumed']} "
          f"resumed" + (f", {res['errors']} with errors" if res["errors"] else "") + ")")
    return 0
