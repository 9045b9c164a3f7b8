"""Side-by-side comparison of finished eval runs (`affectllm eval --compare RUN_A RUN_B ... --output DIR`).

Why: a number is only comparable to another computed by the same task definition. A task's `metadata.version`
is bumped whenever its prompt, data subset or metric changes meaning (e.g. calibration v2 fits temperature only on
>= 100 dev samples), so two runs whose shared tasks differ in version are refused, naming the tasks, instead of
printing a table that silently compares different things. Tasks run on different sample subsets (a different
`--limit`, seed or split size) are compared but flagged, since their CIs then describe different populations."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import AffectError
from .report import _table, fmt


class IncomparableRuns(AffectError):
    """Runs whose shared tasks have different task versions."""


def load_summary(run: str | Path) -> dict:
    path = Path(run) / "summary.json"
    if not path.is_file():
        raise AffectError(f"{run}: no summary.json (not a finished `affectllm eval` output folder)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise AffectError(f"{path}: not valid JSON ({e})") from None


def check_versions(summaries: dict[str, dict]) -> list[str]:
    """The tasks every run holds (status ok), in the first run's order; raises when a task's version differs."""
    names = [set(n for n, t in s["tasks"].items() if t.get("status") == "ok") for s in summaries.values()]
    first = next(iter(summaries.values()))
    shared = [n for n in first["tasks"] if all(n in ns for ns in names)]
    bad = {n: {run: str(s["tasks"][n].get("version")) for run, s in summaries.items()} for n in shared}
    bad = {n: v for n, v in bad.items() if len(set(v.values())) > 1}
    if bad:
        detail = "; ".join(f"{n}: " + ", ".join(f"{run} v{v}" for run, v in vs.items()) for n, vs in bad.items())
        raise IncomparableRuns(f"refusing to compare: task version differs for {len(bad)} task(s): {detail}. "
                               "Re-run the older run with the current task definitions.")
    if not shared:
        raise AffectError("these runs share no finished task; nothing to compare")
    return shared


def compare_runs(runs: list[str | Path], output: str | Path, labels: list[str] | None = None) -> Path:
    """Writes `compare.md` (+ `compare.png`, headline metrics with 95% CIs per run) into `output`."""
    if len(runs) < 2:
        raise AffectError("--compare needs at least two run folders")
    labels = labels or [Path(r).name or str(r) for r in runs]
    if len(set(labels)) != len(labels):
        labels = [str(r) for r in runs]
    summaries = {lab: load_summary(r) for lab, r in zip(labels, runs)}
    shared = check_versions(summaries)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    rows, points = [], []
    for name in shared:
        tasks = {lab: s["tasks"][name] for lab, s in summaries.items()}
        first = next(iter(tasks.values()))
        same_samples = len({t.get("data", {}).get("sample_ids_sha") for t in tasks.values()}) == 1
        for key in [k for k in first.get("headline", []) if all(k in t["metrics"] for t in tasks.values())]:
            cells = []
            for lab, t in tasks.items():
                m = t["metrics"]
                n = t.get("data", {}).get("n_samples")
                cells.append(f"{fmt(m[key], m.get(key + '_ci_low'), m.get(key + '_ci_high'))} (n={n})")
                points.append((f"{name}\n{key.split('.')[-1]}", lab, m[key], m.get(key + "_ci_low"),
                               m.get(key + "_ci_high")))
            rows.append([name, f"v{first.get('version')}", key] + cells
                        + ["same" if same_samples else "**differ**"])
    header = ["task", "version", "metric"] + labels + ["samples"]
    lines = ["# affectllm eval comparison", "",
             "Runs: " + ", ".join(f"`{lab}` ({s['model'].get('model_id')}, weights `{s['model'].get('hash')}`)"
                                  for lab, s in summaries.items()), "",
             "Headline metrics with 95% bootstrap CIs and n. Only tasks every run finished, with equal task versions. "
             "`samples: differ` means the runs scored different sample subsets (different limit, seed or data): "
             "their CIs describe different populations.", ""]
    lines += _table(rows, header)
    if points:
        _plot(points, labels, out / "compare.png")
        lines += ["", "![compare](compare.png)"]
    path = out / "compare.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _plot(points: list[tuple], labels: list[str], path: Path) -> None:
    import math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys(p[0] for p in points))
    width = 0.8 / len(labels)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(groups) * len(labels) / 2 + 2), 4))
    for j, lab in enumerate(labels):
        xs, ys, err = [], [], [[], []]
        for i, g in enumerate(groups):
            hit = next((p for p in points if p[0] == g and p[1] == lab), None)
            if hit is None or not isinstance(hit[2], (int, float)) or not math.isfinite(hit[2]):
                continue
            v, lo, hi = hit[2], hit[3], hit[4]
            xs.append(i + (j - (len(labels) - 1) / 2) * width)
            ys.append(v)
            ok = all(isinstance(x, (int, float)) and math.isfinite(x) for x in (lo, hi))
            err[0].append(max(0.0, v - lo) if ok else 0.0)
            err[1].append(max(0.0, hi - v) if ok else 0.0)
        ax.bar(xs, ys, width, yerr=err, capsize=3, label=lab)
    ax.set_xticks(range(len(groups)), groups, fontsize=7)
    ax.set_ylabel("value (95% CI)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
