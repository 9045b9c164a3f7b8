"""The human-readable side of a run: PNG plots (matplotlib, Agg backend) and `report.md`.

The report leads with what a reader needs to trust the numbers: model and weight hash, backend, decoding, seeds,
prompt versions, data (corpus, split, limit), then a table of headline metrics with 95% CIs, then one section per
task with its plots, notes and breakdown tables. Every number in it is also in `summary.json`."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


# Values that are not estimates of a score: fitted parameters, flags and counts (no interval to give).
NOT_ESTIMATES = {"temperature", "kappa_flagged", "better_than_prior", "n", "n_samples", "n_variants", "n_fit",
                 "n_fit_with_probs", "value_claims", "value_claims_verifiable"}


def needs_ci(key: str, metrics: dict) -> bool:
    """A finite float estimate reported without its interval (what the report marks "(no CI)")."""
    v = metrics.get(key)
    return (isinstance(v, float) and math.isfinite(v) and key.rsplit(".", 1)[-1] not in NOT_ESTIMATES
            and not _finite(metrics.get(key + "_ci_low")))


def _save(fig, path: Path) -> Path:
    """Fixed margins set by each plot (tight_layout costs more than the drawing on a busy 2-core machine)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    _plt().close(fig)
    return path


def bar_plot(metrics: dict, keys: list[str], path: Path, title: str = "", ylabel: str = "") -> Path:
    """Bars of metrics[key] with error bars from key_ci_low / key_ci_high when present."""
    plt = _plt()
    keys = [k for k in keys if _finite(metrics.get(k))]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.8 * len(keys) + 2), 3.6))
    if not keys:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        vals = np.array([metrics[k] for k in keys], float)
        lo = np.array([metrics.get(f"{k}_ci_low") for k in keys], dtype=object)
        hi = np.array([metrics.get(f"{k}_ci_high") for k in keys], dtype=object)
        err = np.array([[v - l if _finite(l) else 0.0 for v, l in zip(vals, lo)],
                        [h - v if _finite(h) else 0.0 for v, h in zip(vals, hi)]]).clip(min=0)
        ax.bar(range(len(keys)), vals, yerr=err, capsize=3, color="#4C72B0")
        ax.set_xticks(range(len(keys)), keys, rotation=35, ha="right", fontsize=8)
        ax.set_ylabel(ylabel)
        ax.axhline(0, color="black", lw=0.5)
    longest = max((len(k) for k in keys), default=0)
    fig.subplots_adjust(bottom=min(0.6, 0.12 + 0.011 * longest), top=0.9, left=0.15, right=0.97)
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def heatmap(matrix: np.ndarray, labels: list[str], path: Path, title: str = "") -> Path:
    plt = _plt()
    n = max(1, len(labels))
    fig, ax = plt.subplots(figsize=(min(12, 2.5 + 0.55 * n), min(11, 2.2 + 0.42 * n)))
    im = ax.imshow(np.asarray(matrix, float), vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{matrix[i][j]:.2f}", ha="center", va="center", fontsize=6,
                    color="white" if matrix[i][j] < 0.6 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.subplots_adjust(bottom=0.25, left=0.2, top=0.93, right=0.97)
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def reliability_plot(curves: dict[str, dict], path: Path, title: str = "") -> Path:
    """One panel per reading: accuracy per confidence bin (bars, labelled with the bin's count), the mean confidence
    of each bin (dots; marker size ~ count) and the diagonal of perfect calibration."""
    plt = _plt()
    n = max(1, len(curves))
    fig, axes = plt.subplots(1, n, figsize=(3.3 * n, 3.4), squeeze=False)
    if not curves:
        axes[0][0].text(0.5, 0.5, "no probabilities or confidences to read", ha="center", va="center")
    for col, (name, r) in enumerate(curves.items()):
        ax = axes[0][col]
        edges = np.asarray(r["edges"], float)
        mids = (edges[:-1] + edges[1:]) / 2
        acc = np.array([np.nan if a is None else a for a in r["accuracy"]], float)
        conf = np.array([np.nan if c is None else c for c in r["confidence"]], float)
        counts = np.asarray(r["count"], float)
        ok = counts > 0
        ax.plot([0, 1], [0, 1], "--", color="grey", lw=1)
        ax.bar(mids[ok], acc[ok], width=edges[1] - edges[0], alpha=0.35, edgecolor="#4C72B0", label="accuracy")
        ax.scatter(conf[ok], acc[ok], s=10 + 60 * counts[ok] / max(1, counts.max()), color="#C44E52", zorder=3,
                   label="mean confidence")
        for x, a, c in zip(mids[ok], acc[ok], counts[ok]):
            ax.text(x, min(a, 0.9) + 0.03, f"{int(c)}", ha="center", fontsize=6)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.05)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("confidence", fontsize=8)
        if col == 0:
            ax.set_ylabel("accuracy (bar label: n)", fontsize=8)
            ax.legend(fontsize=6, loc="upper left")
    fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(wspace=0.3, bottom=0.15, top=0.85, left=0.1, right=0.98)
    return _save(fig, path)


def curve_plot(curves: dict[str, list[dict]], clean: dict | None, path: Path, title: str = "",
               ylabel: str = "") -> Path:
    """One panel per noise kind: metric vs level with CI band; the clean score as a dashed line."""
    plt = _plt()
    n = max(1, len(curves))
    fig, axes = plt.subplots(1, n, figsize=(3.4 * n, 3.2), squeeze=False)
    for col, (kind, pts) in enumerate(curves.items()):
        ax = axes[0][col]
        if kind != "snr_db" and clean and _finite(clean.get("value")):
            pts = [{"level": 0.0, **clean}] + list(pts)      # no blur / occlusion / dropout = the clean input
        x = [p["level"] for p in pts]
        y = [p["value"] for p in pts]
        lo = [p["ci_low"] if _finite(p.get("ci_low")) else p["value"] for p in pts]
        hi = [p["ci_high"] if _finite(p.get("ci_high")) else p["value"] for p in pts]
        ax.plot(x, y, "o-", color="#4C72B0")
        ax.fill_between(x, lo, hi, alpha=0.2, color="#4C72B0")
        if clean and _finite(clean.get("value")):
            ax.axhline(clean["value"], ls="--", color="grey", lw=1, label="clean")
            ax.legend(fontsize=7)
        if kind == "snr_db":
            ax.invert_xaxis()                      # left to right: cleaner to noisier
        ax.set_xlabel(kind, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(wspace=0.4, bottom=0.17, top=0.85, left=0.14, right=0.97)
    return _save(fig, path)


# ---- markdown ----------------------------------------------------------------------------------------------------
def fmt(v: Any, lo: Any = None, hi: Any = None) -> str:
    if isinstance(v, float) and not math.isfinite(v):
        return "n/a"
    if not _finite(v):
        return str(v) if v is not None else "n/a"
    s = f"{v:.3f}" if isinstance(v, float) else str(v)
    if _finite(lo) and _finite(hi):
        s += f" [{lo:.3f}, {hi:.3f}]"
    return s


def _table(rows: list[list[str]], header: list[str]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return out


SECTIONS = ((True, "In-domain (the model's recipe trained on these corpora)"),
            (False, "Transfer (corpora the model never saw in training: zero-shot)"),
            (None, "Training corpora unknown (no recipe.yaml for this model)"))


def headline_tables(rows: list[list[str]], kinds: list[bool | None]) -> list[str]:
    """One headline table, or one per kind of row (in-domain, transfer, unknown) when the recipe is known, so an
    in-domain score is never read as transfer."""
    header = ["task", "suite", "n samples / records", "headline (95% CI)", "prompts"]
    if set(kinds) <= {None}:
        return _table(rows, header) + [""]
    out = []
    for kind, title in SECTIONS:
        mine = [r for r, k in zip(rows, kinds) if k is kind]
        if mine:
            out += [f"### {title}", ""] + _table(mine, header) + [""]
    return out


def write_report(outdir: Path, summary: dict) -> Path:
    """report.md from the run summary (plots already written next to it)."""
    from .backends import portable_text

    model = summary["model"]
    lines = ["# affectllm evaluation report", ""]
    lines += [f"- **model**: `{portable_text(model.get('model_id'))}` via `{model.get('backend')}`"
              + (f" ({model.get('url')})" if model.get("url") else ""),
              f"- **weights hash**: `{model.get('hash')}` ({portable_text(model.get('hash_kind'))})",
              f"- **trained on**: {summary.get('trained_on') or 'unknown (no recipe.yaml)'}",
              f"- **created**: {summary['run']['created']} · affectllm {summary['run'].get('affectllm_version')} · "
              f"git `{summary['run'].get('git_commit')}`",
              f"- **command**: `{portable_text(summary['run'].get('command'))}`",
              f"- **decoding**: greedy unless a task says otherwise; seeds {summary['run'].get('seeds')} "
              "(tasks whose answers cannot depend on the seed run once)",
              f"- **bootstrap**: {summary['run'].get('bootstrap')} resamples, 95% percentile intervals", ""]
    lines += ["## Headline results", ""]
    rows, kinds = [], []
    for name, t in summary["tasks"].items():
        kinds.append(t.get("data", {}).get("seen_in_training"))
        if t.get("status") != "ok":
            rows.append([name, t.get("suite", ""), "-", f"*{t.get('status')}*", ""])
            continue
        m = t["metrics"]
        heads = [k for k in t.get("headline", []) if k in m][:4]
        cells = "<br>".join(f"{k}: {fmt(m[k], m.get(k + '_ci_low'), m.get(k + '_ci_high'))}"
                            + (" (no CI)" if needs_ci(k, m) else "")
                            for k in heads)
        shown = name + (" (unseen corpus)" if t.get("data", {}).get("seen_in_training") is False else "")
        n = t.get("data", {}).get("n_samples")
        rows.append([shown, t["suite"], f"{n} / {t.get('n_records')}", cells,
                     ", ".join(t.get("prompt_ids", []))[:120]])
    lines += headline_tables(rows, kinds)
    if any("n/a" in r[3] for r in rows):
        lines += ["*n/a*: undefined on these answers, reported as the official code does instead of as 0. The official "
                  "wheel F is 2·P̄·R̄/(P̄+R̄) with no zero guard, so P̄ = R̄ = 0 (no answer maps into the lexicon) is "
                  "NaN; `*_sample` is the guarded per-sample variant. Correlations (CCC, Pearson) are undefined when "
                  "the predictions are constant or missing.", ""]
    for name, t in summary["tasks"].items():
        lines += [f"## {name}", ""]
        if t.get("description"):
            lines += [t["description"], ""]
        if t.get("status") != "ok":
            lines += [f"**{t.get('status')}**", ""]
            continue
        d = t["data"]
        lines += [f"- suite `{t['suite']}`, task version {t['version']} ({t['file']})",
                  f"- data: `{d['corpus']}` / `{d['split']}`, limit {d.get('limit')}, {d.get('n_samples')} samples, "
                  f"subset seed {d.get('subset_seed')}, sample-id hash `{d.get('sample_ids_sha')}`"
                  + (f"; manifest `{d['manifest']}`" if d.get("manifest") else "")
                  + (f", label set `{d['label_set']}`" if d.get("label_set") else ""),
                  f"- corpus seen in training: " + {True: "**yes** (in-domain: the model's recipe trained on it)",
                                                    False: "**no, unseen** (zero-shot transfer: the model's recipe "
                                                           "did not train on it)",
                                                    None: "unknown (no recipe.yaml for this model)"}[
                                                        d.get("seen_in_training")],
                  f"- prompts: {', '.join(f'`{p}`' for p in t.get('prompt_ids', []))}",
                  f"- decoding: {t['decoding']}; seeds {t['seeds']}"
                  + (" (seed-dependent: mean over seeds, t-interval)" if t.get("seed_dependent") else ""), ""]
        m = t["metrics"]
        keys = [k for k in t.get("headline", []) if k in m]
        if keys:
            lines += _table([[k, fmt(m[k], m.get(k + "_ci_low"), m.get(k + "_ci_high"))] for k in keys],
                            ["metric", "value [95% CI]"]) + [""]
        for note in t.get("notes", []):
            lines.append(f"> note: {note}")
        if t.get("notes"):
            lines.append("")
        for p in t.get("plots", []):
            lines += [f"![{Path(p).stem}]({p})", ""]
        small = {k: v for k, v in (t.get("tables") or {}).items() if isinstance(v, dict) and 0 < len(v) <= 30
                 and all(isinstance(x, dict) for x in v.values())}
        for tname, tab in small.items():
            cols = [c for c in dict.fromkeys(c for row in tab.values() for c in row)
                    if not c.endswith(("_ci_low", "_ci_high")) and c not in ("ci_low", "ci_high")][:8]

            def cell(row: dict, c: str) -> str:
                lo, hi = (("ci_low", "ci_high") if c == "value" else (f"{c}_ci_low", f"{c}_ci_high"))
                return fmt(row.get(c), row.get(lo), row.get(hi))

            lines += [f"**{tname}**", ""]
            lines += _table([[r] + [cell(tab[r], c) for c in cols] for r in tab], [""] + cols) + [""]
    path = outdir / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
