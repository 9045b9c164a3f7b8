"""Where answers come from. Three backends behind one small interface, `generate(requests) -> responses`:

* ``openai``: any OpenAI-compatible server (the affectllm gateway in front of vLLM, or vLLM itself), through the
  official `openai` client; media become OpenAI content parts (`serve.client.to_openai_messages`: base64, or
  ``file://`` URLs with ``send_paths``). Logprobs with ``top_logprobs`` (<= 20) when a task asks. Requests run
  ``concurrency`` at a time so the server can batch them. The default when ``--model`` is an http(s) URL; several
  URLs (``URL1,URL2`` or ``@endpoints.txt``) shard the requests across servers with fail-over (`sharding.py`).
* ``hf``: an in-process `AffectPipeline` (preset or checkpoint), batched left-padded greedy generation (sampling
  only when a task sets a temperature), token logprobs from the generation logits.
* ``dummy``: no model; a deterministic answer from the item's oracle (its gold) and a seed: right with probability
  ``p`` (lower for harder perturbations), valid JSON / letter / yes-no, fake but deterministic logprobs. It makes
  every task runnable end to end in tests; its numbers mean nothing.

Each backend describes itself (`info()`): model id, a hash of the weights and config when they are local, the
modalities it accepts, and the training recipe when a checkpoint carries one.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import AffectError, ConfigError
from .inputs import stable_seed


@dataclass
class Request:
    key: str
    messages: list[dict]
    max_new_tokens: int = 48
    temperature: float = 0.0
    top_p: float | None = None
    seed: int | None = None
    top_logprobs: int = 0
    oracle: dict = field(default_factory=dict)
    candidates: list[str] | None = None   # answer texts to score (scored-candidate tasks), no generation
    candidate_end: str | None = None      # each candidate must stop there: next token starts with this text


class ServerUnavailable(AffectError):
    """The server could not answer (connection lost or refused, timeout, HTTP 5xx/429), not the request's fault:
    a sharded eval moves the request to another server."""


class ScoringUnsupported(AffectError):
    """The backend cannot give the log-likelihood of a given answer; scored-candidate tasks must not fall back."""


@dataclass
class Response:
    text: str
    tokens: list[dict] | None = None     # [{"token": str, "logprob": float, "top": [[str, float], ...]}]
    finish_reason: str | None = None
    error: str | None = None
    logliks: list[float] | None = None   # full-sequence log-likelihood of each of Request.candidates


class Backend:
    name = "base"
    batch_size = 8
    video_use_audio = True

    def info(self) -> dict:
        raise NotImplementedError

    def modalities(self) -> set[str] | None:
        """Modalities the model accepts (text always); None when unknown (a remote server)."""
        return None

    def generate(self, requests: list[Request]) -> list[Response]:
        raise NotImplementedError

    def score(self, requests: list[Request]) -> list[Response]:
        """Teacher-forced log-likelihood of each candidate answer after the prompt (lm-eval-harness style)."""
        raise ScoringUnsupported(f"the {self.name} backend cannot score candidate answers")

    def close(self) -> None:
        pass


# ---- model identity ----------------------------------------------------------------------------------------------
def state_hash(model) -> str:
    """sha256 over the config and every tensor of the model (what is actually evaluated), first 16 hex digits."""
    import torch

    h = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tensor.dtype).encode())
        h.update(tensor.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def files_hash(folder: Path) -> str:
    """sha256 over the config/weight/adapter files of a checkpoint folder (names and bytes)."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.suffix in (".json", ".safetensors", ".yaml", ".bin", ".model", ".jinja"):
            h.update(str(p.relative_to(folder)).encode())
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()[:16]


REPO_ROOT = Path(__file__).resolve().parents[2]


def portable_path(path: str | Path) -> str:
    """A path as a report may show it: relative to the repository (or its parent, for ../shared), else only its
    last two parts; never the absolute path of the machine that ran it."""
    p = Path(path).expanduser().resolve()
    for base, prefix in ((REPO_ROOT, ""), (REPO_ROOT.parent, "../")):
        try:
            return prefix + str(p.relative_to(base))
        except ValueError:
            continue
    return ".../" + "/".join(p.parts[-2:])


def portable_text(text: str) -> str:
    """`text` with the repository's (and its parent's) absolute prefix made relative."""
    return str(text).replace(str(REPO_ROOT) + "/", "").replace(str(REPO_ROOT.parent) + "/", "../")


def local_identity(ref: str) -> dict:
    """Hash and recipe of a preset name or checkpoint folder on this machine, without loading the model."""
    from ..presets import list_presets, preset_spec, weights_cache_folder
    from ..shipped import list_shipped, shipped_path

    out: dict[str, Any] = {"hash": None, "hash_kind": None, "recipe": None}
    shipped = ref in list_shipped()
    path = shipped_path(ref) if shipped else Path(ref).expanduser()
    if path.is_dir():
        out.update(hash=files_hash(path), hash_kind=f"files of the shipped model {ref}" if shipped
                   else f"files of {portable_path(path)}")
        if (path / "recipe.yaml").is_file():
            import yaml

            out["recipe"] = yaml.safe_load((path / "recipe.yaml").read_text())
    elif ref in list_presets():
        spec = preset_spec(ref)
        h = hashlib.sha256(json.dumps(spec, sort_keys=True).encode())
        kind = f"preset {ref} (spec"
        folder = weights_cache_folder(str(spec.get("text_path", "")))
        if folder is not None:
            from ..weights import read_marker

            # the folder a `weights:` reference resolves to (stored bf16), whatever dtype the model then runs in
            marker = read_marker(folder)
            if marker:
                h.update(str(marker.get("source_sha256")).encode())
                kind += " + converted weights' source sha256"
        out.update(hash=h.hexdigest()[:16], hash_kind=kind + ")")
    return out


# ---- dummy -------------------------------------------------------------------------------------------------------
FALLBACK_LABELS = ["happy", "sad", "angry", "fearful", "surprised", "disgusted", "calm", "neutral"]
_PSEUDO_TOKEN = re.compile(r"\s*\w+|\s*[^\w\s]")


def _u(*parts: Any) -> float:
    return (stable_seed(*parts) % 10_000_019) / 10_000_019


class DummyBackend(Backend):
    """Deterministic answers from the oracle: right with probability p * (1 - difficulty) + chance * difficulty.
    With temperature 0 the answers do not depend on the run seed (like greedy decoding); with a temperature they
    do. ``fail_after`` raises after that many answers (a crash, for resume tests)."""

    name = "dummy"

    MODES = ("oracle", "constant", "random", "invent_prosody")

    def __init__(self, p: float = 0.7, fail_after: int | None = None, batch_size: int = 8, model_id: str = "dummy",
                 mode: str = "oracle", constant: str = "neutral"):
        if mode not in self.MODES:
            raise ConfigError(f"dummy mode {mode!r}; known: {', '.join(self.MODES)}")
        self.p, self.fail_after, self.batch_size, self.model_id = p, fail_after, batch_size, model_id
        self.mode, self.constant = mode, constant
        self.answered = 0

    def score(self, requests: list[Request]) -> list[Response]:
        """Fake log-likelihoods in the dummy's mode: constant puts its label first everywhere, random is uniform
        noise, oracle favours the gold with probability p."""
        out = []
        for r in requests:
            cands, labels = r.candidates or [], r.oracle.get("candidates") or []
            gold = (r.oracle.get("gold") or [None])[0]
            ll = [math.log(0.1 + _u("cand", r.key, c)) for c in cands]
            if self.mode == "constant":
                ll = [math.log(0.9 if lab == self.constant else 0.1 / max(1, len(cands) - 1)) for lab in labels]
            elif self.mode != "random" and gold in labels and _u("right", 0, r.key) < self.p:
                ll[labels.index(gold)] = max(ll) + 1.0
            out.append(Response("", None, "scored", logliks=ll[: len(cands)]))
        return out

    def info(self) -> dict:
        h = hashlib.sha256(f"dummy|p={self.p}".encode()).hexdigest()[:16]
        return {"backend": "dummy", "model_id": self.model_id, "hash": h, "hash_kind": "dummy parameters",
                "recipe": None, "p": self.p}

    def generate(self, requests: list[Request]) -> list[Response]:
        out = []
        for r in requests:
            if self.fail_after is not None and self.answered >= self.fail_after:
                raise RuntimeError(f"dummy backend: simulated crash after {self.answered} answers")
            out.append(self._answer(r))
            self.answered += 1
        return out

    def _answer(self, r: Request) -> Response:
        o = r.oracle
        salt = r.seed if r.temperature > 0 else 0
        u, u2 = _u("right", salt, r.key), _u("conf", salt, r.key)
        kind = o.get("kind", "labels")
        cands = [c for c in (o.get("candidates") or FALLBACK_LABELS)]
        chance = 1.0 / max(2, len(cands)) if kind in ("labels", "letter") else 0.5
        diff = float(o.get("difficulty", 0.0))
        right = u < self.p * (1 - diff) + chance * diff
        if self.mode == "random":
            right = u < chance
        if self.mode == "constant" and kind == "labels":
            body = {"labels": [self.constant], "explanation": "the words used", "confidence": 0.9}
            return self._with_tokens(json.dumps(body), r, self.constant, cands, 0.9)
        if self.mode == "invent_prosody" and kind == "labels":
            body = {"labels": [cands[0]], "confidence": 0.8, "explanation":
                    f"The pitch averages {180 + int(200 * u)} Hz, energy is {-5 - int(10 * u2)} dBFS and the speaker "
                    f"talks at {6 + int(4 * u)} syllables per second, higher than usual."}
            return self._with_tokens(json.dumps(body), r, cands[0], cands, 0.8)
        if kind == "yesno":
            gold = o.get("gold", "yes")
            text = gold.capitalize() if right else ("No" if gold == "yes" else "Yes")
            return self._with_tokens(text, r, None, None, 0.0)
        if kind == "letter":
            n = int(o.get("n_choices", 4))
            gold = str(o.get("gold", "A")).upper()
            wrong = [c for c in "ABCDEFGHIJ"[:n] if c != gold]
            letter = gold if right or not wrong else wrong[int(u2 * len(wrong)) % len(wrong)]
            return self._with_tokens(letter, r, None, None, 0.0)
        if kind == "absent":
            text = (f"No {o.get('asked', 'audio')} was provided, so I can only go by the text." if right
                    else "The speaker's voice sounds tense and the face looks worried.")
            return self._with_tokens(text, r, None, None, 0.0)
        gold = [g for g in (o.get("gold") or []) if g] or [cands[0]]
        wrong = [c for c in cands if c not in gold] or FALLBACK_LABELS
        label = gold[0] if right else wrong[int(u2 * len(wrong)) % len(wrong)]
        given = [m for m in o.get("modalities", ["text"])]
        cue = {"audio": "the voice is tense", "video": "the face frowns", "image": "the facial expression",
               "text": "the words used"}
        cites = [cue[m] for m in given if m in cue] or ["the words used"]
        if _u("cite", salt, r.key) < 0.2:            # sometimes cite a modality that was not there
            cites.append("the voice sounds shaky" if "audio" not in given else "the face looks tense")
        conf = round(0.55 + 0.4 * u2 if right else 0.3 + 0.5 * u2, 2)
        body: dict[str, Any] = {"labels": [label], "explanation": "; ".join(cites), "confidence": conf}
        if o.get("dimensions"):
            body.update(valence=round(2 * u2 - 1, 2), arousal=round(1 - 2 * u, 2))
        return self._with_tokens(json.dumps(body), r, label, cands, conf)

    def _with_tokens(self, text: str, r: Request, label: str | None, cands: list[str] | None, conf: float) -> Response:
        text = text[: max(1, r.max_new_tokens * 6)]
        if not r.top_logprobs:
            return Response(text, None, "stop")
        tokens = []
        for m in _PSEUDO_TOKEN.finditer(text):
            tok = m.group(0)
            top = [[tok, math.log(0.9)], ["<other>", math.log(0.1)]]
            if label is not None and tok.strip() and label.lower().startswith(tok.strip().lower()) and not any(
                    t.get("label") for t in tokens):
                others = [c for c in (cands or []) if c != label][: max(0, r.top_logprobs - 1)]
                rest = (1 - conf) / max(1, len(others))
                top = [[tok, math.log(max(conf, 1e-6))]] + [[" " + c.split()[0], math.log(max(rest, 1e-9))]
                                                             for c in others]
                tokens.append({"token": tok, "logprob": top[0][1], "top": top[: r.top_logprobs], "label": True})
                continue
            tokens.append({"token": tok, "logprob": top[0][1], "top": top[: r.top_logprobs]})
        for t in tokens:
            t.pop("label", None)
        return Response(text, tokens, "stop")


# ---- transformers in-process ---------------------------------------------------------------------------------------
class HFBackend(Backend):
    name = "hf"

    def __init__(self, model: Any, batch_size: int = 8, dtype: str | None = None):
        from ..api import AffectPipeline, load

        self.pipe = model if isinstance(model, AffectPipeline) else load(str(model), dtype=dtype)
        self.ref = model.name if isinstance(model, AffectPipeline) else str(model)
        self.batch_size = batch_size
        self.video_use_audio = bool(getattr(self.pipe.model.config, "video_use_audio", True))
        self._info: dict | None = None

    def modalities(self) -> set[str]:
        return set(self.pipe.model.config.modalities) | {"text"}

    def info(self) -> dict:
        if self._info is None:
            ident = local_identity(self.ref) if self.ref else {"recipe": None}
            name = self.pipe.name or self.ref
            name = portable_path(name) if name and Path(str(name)).expanduser().is_dir() else name
            self._info = {"backend": "hf", "model_id": name, "hash": state_hash(self.pipe.model),
                          "hash_kind": "sha256 of config + state_dict", "recipe": ident.get("recipe"),
                          "ref_hash": ident.get("hash"), "ref_hash_kind": ident.get("hash_kind"),
                          "modalities": sorted(self.modalities())}
        return self._info

    def generate(self, requests: list[Request]) -> list[Response]:
        out: list[Response] = []
        for i in range(0, len(requests), self.batch_size):
            chunk = requests[i : i + self.batch_size]
            try:
                out += self._batch(chunk)
            except AffectError:
                for r in chunk:                      # one bad item must not sink its batch: retry one by one
                    try:
                        out += self._batch([r])
                    except AffectError as e:
                        out.append(Response("", None, "error", error=str(e)))
        return out

    def _batch(self, reqs: list[Request]) -> list[Response]:
        import torch

        from ..devices import to_device

        r0 = reqs[0]
        tok = self.pipe.processor.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        batch = self.pipe.processor([r.messages for r in reqs], padding_side="left")
        batch = to_device(dict(batch), self.pipe.model.device)
        kw: dict[str, Any] = dict(max_new_tokens=max(r.max_new_tokens for r in reqs), pad_token_id=pad,
                                  return_dict_in_generate=True, output_logits=r0.top_logprobs > 0)
        if r0.temperature > 0:
            kw.update(do_sample=True, temperature=r0.temperature, top_p=r0.top_p or 1.0, top_k=0)
            torch.manual_seed(r0.seed or 0)
        with torch.inference_mode():
            gen = self.pipe.model.generate(**batch, **kw)
        eos = self.pipe.model.language_model.generation_config.eos_token_id
        stops = set(eos if isinstance(eos, (list, tuple)) else [eos]) | {pad}
        out = []
        for row, r in enumerate(reqs):
            ids = gen.sequences[row].tolist()[: r.max_new_tokens]
            n = next((j for j, t in enumerate(ids) if t in stops), len(ids))
            text = tok.decode(ids[:n], skip_special_tokens=True)
            tokens = None
            if r.top_logprobs:
                tokens = []
                for j in range(n):
                    lp = torch.log_softmax(gen.logits[j][row].float(), -1)
                    top = torch.topk(lp, r.top_logprobs)
                    tokens.append({"token": tok.decode([ids[j]]), "logprob": float(lp[ids[j]]),
                                   "top": [[tok.decode([t]), float(v)] for t, v in zip(top.indices.tolist(),
                                                                                     top.values.tolist())]})
            out.append(Response(text, tokens, "stop" if n < len(ids) else "length"))
        return out


    def score(self, requests: list[Request]) -> list[Response]:
        """`batch_size` prompts prefilled together, each one's candidates continued from its KV cache
        (`AffectPipeline.score_candidates_batch`); a batch that fails is retried one request at a time, so one
        bad input costs only its own row."""
        out: list[Response] = []
        for start in range(0, len(requests), self.batch_size):
            chunk = requests[start: start + self.batch_size]
            ends = {r.candidate_end for r in chunk}
            try:
                if len(ends) != 1:
                    raise AffectError("mixed candidate ends in one batch")
                lls = self.pipe.score_candidates_batch([r.messages for r in chunk],
                                                       [list(r.candidates or []) for r in chunk], end=ends.pop())
                out += [Response("", None, "scored", logliks=ll) for ll in lls]
            except AffectError:
                for r in chunk:
                    try:
                        ll = self.pipe.score_candidates(r.messages, list(r.candidates or []), end=r.candidate_end)
                        out.append(Response("", None, "scored", logliks=ll))
                    except AffectError as e:
                        out.append(Response("", None, "error", error=str(e)))
        return out


# ---- OpenAI-compatible server ----------------------------------------------------------------------------------------
class OpenAIBackend(Backend):
    name = "openai"

    def __init__(self, url: str, model: str | None = None, api_key: str | None = None, concurrency: int = 8,
                 send_paths: bool = False, timeout: float = 600.0, batch_size: int = 16,
                 checkpoint: str | None = None):
        try:
            from openai import OpenAI
        except ImportError:
            raise ConfigError("the openai backend needs the `openai` package (pip install openai)") from None
        base = url.rstrip("/")
        base = base if base.endswith("/v1") else base + "/v1"
        self.url, self.concurrency, self.send_paths, self.batch_size = base, concurrency, send_paths, batch_size
        self.client = OpenAI(base_url=base, api_key=api_key or "EMPTY", timeout=timeout, max_retries=2)
        self._model, self._served, self.checkpoint = model, None, checkpoint
        self._info: dict | None = None

    def served(self) -> list[dict]:
        if self._served is None:
            import openai

            try:
                self._served = [m.model_dump() for m in self.client.models.list().data]
            except openai.APIConnectionError as e:
                raise ServerUnavailable(f"cannot reach the server at {self.url}: {e}") from None
            if not self._served:
                raise AffectError(f"{self.url} serves no models")
        return self._served

    @property
    def model(self) -> str:
        if self._model is None:
            self._model = self.served()[0]["id"]
        ids = [m["id"] for m in self.served()]
        if self._model not in ids:
            from ..registry import unknown_name_message

            raise ConfigError(unknown_name_message(f"served model at {self.url}", self._model, ids))
        return self._model

    def info(self) -> dict:
        if self._info is None:
            entry = next(m for m in self.served() if m["id"] == self.model)
            root = entry.get("root") or self.model
            # a preset or folder on this machine, if the served model is one: --checkpoint, else its id, else (only
            # for the base model itself, never for a LoRA served on top of it) its root
            refs = [self.checkpoint] if self.checkpoint else [self.model] + ([root] if not entry.get("parent") else [])
            ident: dict = {"hash": None, "hash_kind": None, "recipe": None}
            for ref in dict.fromkeys(refs):
                try:
                    ident = local_identity(ref)
                except Exception:
                    continue
                if ident.get("hash"):
                    break
            if self.checkpoint and not ident.get("hash"):
                raise ConfigError(f"--checkpoint {self.checkpoint}: not a preset or checkpoint folder")
            self._info = {"backend": "openai", "url": self.url, "model_id": self.model, "served_root": root,
                          "hash": ident.get("hash"), "hash_kind": ident.get("hash_kind") or
                          "unknown (remote model; not hashable from here)", "recipe": ident.get("recipe")}
        return self._info

    def generate(self, requests: list[Request]) -> list[Response]:
        model = self.model
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(lambda r: self._one(model, r), requests))

    def _one(self, model: str, r: Request) -> Response:
        import openai

        from ..serve.client import to_openai_messages

        params: dict[str, Any] = {"model": model, "messages": to_openai_messages(r.messages, self.send_paths),
                                  "max_tokens": r.max_new_tokens, "temperature": r.temperature}
        if r.temperature > 0:
            params["seed"] = r.seed
            if r.top_p is not None:
                params["top_p"] = r.top_p
        if r.top_logprobs:
            params.update(logprobs=True, top_logprobs=r.top_logprobs)
        try:
            resp = self.client.chat.completions.create(**params)
        except openai.APIConnectionError as e:
            raise ServerUnavailable(f"lost the server at {self.url}: {e}") from None
        except openai.APIStatusError as e:
            if e.status_code >= 500 or e.status_code == 429:
                raise ServerUnavailable(f"server error at {self.url} (HTTP {e.status_code}): {e}") from None
            if r.top_logprobs and "logprob" in str(e).lower():      # a server without logprobs: answer anyway
                return self._one(model, Request(**{**r.__dict__, "top_logprobs": 0}))
            return Response("", None, "error", error=f"HTTP {e.status_code}: {e}")
        choice = resp.choices[0]
        tokens = None
        if r.top_logprobs and choice.logprobs is not None and choice.logprobs.content is not None:
            tokens = [{"token": t.token, "logprob": t.logprob,
                       "top": [[a.token, a.logprob] for a in (t.top_logprobs or [])]} for t in choice.logprobs.content]
        return Response(choice.message.content or "", tokens, choice.finish_reason)


    def score(self, requests: list[Request]) -> list[Response]:
        model = self.model
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(lambda r: self._score_one(model, r), requests))

    def _score_one(self, model: str, r: Request) -> Response:
        """vLLM: the candidate as a continued assistant message, `prompt_logprobs=0`, one token generated. The
        candidates share the prompt (vLLM's prefix cache prefills it once); a candidate's log-likelihood is the sum
        over its tokens after the prefix all candidates share, plus, with `candidate_end`, the log of the next
        token's mass on tokens that start with it (from the top 20 alternatives: a lower bound)."""
        import openai

        from ..serve.client import to_openai_messages

        msgs = to_openai_messages(r.messages, self.send_paths)
        if getattr(self, "_affect_score", True):              # the affectllm gateway's own scoring endpoint
            got = self._gateway_score(model, msgs, list(r.candidates or []), r.candidate_end)
            if got is not None:
                return Response("", None, "scored", logliks=got)
        rows, ends = [], []
        for c in r.candidates or []:
            top = {"logprobs": True, "top_logprobs": 20} if r.candidate_end else {}
            try:
                resp = self.client.chat.completions.create(
                    model=model, messages=msgs + [{"role": "assistant", "content": c}], max_tokens=1, temperature=0.0,
                    extra_body={"prompt_logprobs": 0, "add_generation_prompt": False, "continue_final_message": True},
                    **top)
            except openai.APIConnectionError as e:
                raise ServerUnavailable(f"lost the server at {self.url}: {e}") from None
            except openai.APIStatusError as e:
                raise ScoringUnsupported(f"{self.url} refused a prompt_logprobs request (HTTP {e.status_code}: "
                                         f"{str(e)[:200]})") from None
            plp = (resp.model_extra or {}).get("prompt_logprobs")
            if not plp:
                raise ScoringUnsupported(f"{self.url} returned no prompt_logprobs (not a vLLM OpenAI server?)")
            rows.append([_actual_token(pos) for pos in plp])
            if r.candidate_end:
                content = resp.choices[0].logprobs.content if resp.choices[0].logprobs else None
                alts = content[0].top_logprobs if content else []
                from ..serve.protocol import end_mass

                ends.append(end_mass([(a.token, a.logprob) for a in alts], r.candidate_end))
        ll = shared_prefix_logliks(rows)
        return Response("", None, "scored", logliks=[a + b for a, b in zip(ll, ends)] if ends else ll)


    def _gateway_score(self, model: str, msgs: list[dict], cands: list[str], end: str | None = None
                       ) -> list[float] | None:
        """POST /affect/score (affectllm gateway); None when the server has no such route (plain vLLM)."""
        import httpx

        body = {"model": model, "messages": msgs, "candidates": cands, **({"end": end} if end else {})}
        try:
            resp = httpx.post(f"{self.url}/affect/score", json=body,
                              headers={"Authorization": f"Bearer {self.client.api_key}"}, timeout=self.client.timeout)
        except httpx.HTTPError as e:
            raise ServerUnavailable(f"lost the server at {self.url}: {e}") from None
        if resp.status_code in (404, 405):
            self._affect_score = False
            return None
        if resp.status_code != 200:
            if resp.status_code >= 500 and resp.status_code != 501:
                raise ServerUnavailable(f"server error at {self.url} (HTTP {resp.status_code}): {resp.text[:200]}")
            raise ScoringUnsupported(f"{self.url}/affect/score: HTTP {resp.status_code}: {resp.text[:200]}")
        return [float(x) for x in resp.json()["logliks"]]


def _actual_token(pos: dict | None) -> tuple[str, float]:
    """(token id, logprob) of the prompt token at one position: vLLM lists the prompt token first (with
    prompt_logprobs=0 it is the only entry); the first position has none."""
    if not pos:
        return ("<bos>", 0.0)
    tid, v = next(iter(pos.items()))
    return (str(tid), float(v["logprob"] if isinstance(v, dict) else v))


def shared_prefix_logliks(rows: list[list[tuple[str, float]]]) -> list[float]:
    """Sum of each row's logprobs after the longest token prefix shared by every row.

    >>> shared_prefix_logliks([[("a", -1.0), ("b", -0.5)], [("a", -1.0), ("c", -2.0), ("d", -1.0)]])
    [-0.5, -3.0]
    """
    if not rows:
        return []
    k = 0
    while all(len(r) > k for r in rows) and len({r[k][0] for r in rows}) == 1 and len(rows) > 1:
        k += 1
    return [float(sum(lp for _, lp in r[k:])) for r in rows]


def make_backend(model: Any, backend: str | None = None, **opts) -> Backend:
    """`backend` None: openai for an http(s) URL (or several: `sharding.is_endpoint_list`), dummy for the model name
    "dummy", else hf."""
    from .sharding import ShardedBackend, is_endpoint_list, parse_endpoints

    if is_endpoint_list(model):
        if backend not in (None, "openai"):
            raise ConfigError(f"--model {model}: several endpoints go with the openai backend, not {backend}")
        return ShardedBackend(parse_endpoints(model), model=opts.get("served_model"),
                              per_server=opts.get("per_server_concurrency") or opts.get("concurrency") or 8,
                              **{k: v for k, v in opts.items()
                                 if k in ("api_key", "send_paths", "checkpoint", "timeout") and v is not None})
    if backend is None:
        backend = ("openai" if isinstance(model, str) and model.startswith(("http://", "https://"))
                   else "dummy" if model == "dummy" else "hf")
    if backend == "dummy":
        return DummyBackend(**{k: v for k, v in opts.items() if k in ("p", "fail_after", "batch_size", "mode")
                               and v is not None},
                            model_id=str(model))
    if backend == "hf":
        return HFBackend(model, **{k: v for k, v in opts.items() if k in ("batch_size", "dtype") and v is not None})
    if backend == "openai":
        if not (isinstance(model, str) and model.startswith(("http://", "https://"))):
            raise ConfigError(f"the openai backend needs --model http(s)://HOST:PORT/v1, got {model!r}")
        return OpenAIBackend(model, model=opts.get("served_model"),
                             **{k: v for k, v in opts.items()
                                if k in ("api_key", "concurrency", "send_paths", "checkpoint", "timeout")
                                and v is not None})
    from ..registry import unknown_name_message

    raise ConfigError(unknown_name_message("eval backend", backend, ["dummy", "hf", "openai"]))
