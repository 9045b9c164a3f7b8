"""`build_manifests`: every corpus x split under a data root -> one JSONL manifest each, plus summary.json with
the counts. Media paths in the manifests are relative to the data root (read them back with
`read_manifest(path, root=data_root)`; the default root is the data root too)."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from ..errors import AffectError
from .corpora import CORPORA
from .manifest import write_manifest
from .paths import default_data_root


def build_manifests(data_root: str | Path | None, out_dir: str | Path, corpora: list[str] | None = None,
                    progress: bool = True) -> dict[str, Path]:
    """Write <out_dir>/<corpus>_<split>.jsonl for each split of each corpus and <out_dir>/summary.json.
    `corpora=None` builds every registered corpus present under `data_root` (absent ones are listed in the
    summary as skipped); a corpus named explicitly but absent raises AffectError. Returns
    {"<corpus>/<split>": path, ..., "summary": path}."""
    from tqdm.auto import tqdm

    root = Path(data_root) if data_root is not None else default_data_root()
    out_dir = Path(out_dir)
    names = list(corpora) if corpora is not None else CORPORA.names()
    specs = [CORPORA.get(n) for n in names]  # unknown names raise ConfigError (did-you-mean)
    absent = [s.name for s in specs if not s.available(root)]
    if corpora is not None and absent:
        raise AffectError(f"corpus data not found under {root}: {', '.join(absent)}")
    jobs = [(s, split) for s in specs if s.available(root) for split in s.splits]
    paths: dict[str, Path] = {}
    summary: dict = {"data_root": str(root), "corpora": {}, "skipped_absent": absent}
    for spec, split in tqdm(jobs, desc="manifests", unit="split", disable=not progress):
        samples = spec.load(root, split)
        path = write_manifest(out_dir / f"{spec.name}_{split}.jsonl", samples, root=root)
        paths[f"{spec.name}/{split}"] = path
        entry = summary["corpora"].setdefault(spec.name, {"label_set": spec.label_set,
                                                          "modalities": list(spec.modalities), "splits": {}})
        labels = Counter(lab for s in samples for lab in (s.multi_labels or s.labels))
        entry["splits"][split] = {"samples": len(samples), "file": path.name,
                                  "speakers": len({s.person for s in samples if s.person}),
                                  "labelled": sum(1 for s in samples if s.labels),
                                  "label_counts": dict(sorted(labels.items()))}
    summary_path = out_dir / "summary.json"
    out_dir.mkdir(parents=True, exist_ok=True)
    summary_path.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    paths["summary"] = summary_path
    return paths
