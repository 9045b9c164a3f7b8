"""Per-sample results as append-only JSONL, so a crash loses nothing: each batch is appended, flushed and fsynced;
a re-run reads the file, skips every key already written and generates only the rest. A torn last line (a crash
mid-write) is dropped on open. `run.json` next to the samples pins what the rows were produced by (task version,
model hash, decoding, prompt); resuming into a folder written by something else is refused rather than mixed."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from ..errors import AffectError


class SampleStore:
    def __init__(self, folder: Path, fingerprint: dict, replace_stale: bool = False, rows_name: str = "samples.jsonl",
                 run_name: str = "run.json"):
        """`replace_stale`: rows of a different run are moved aside to `<folder>.stale-N` (kept, never mixed)
        instead of refused; for folders a tool owns, like `affectllm demo`'s, after a task changed version.
        `rows_name`/`run_name`: file names of the rows and the fingerprint (`affectllm predict` writes the user's
        `--output` file and `<output>.run.json` beside it)."""
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / rows_name
        self.run_path = self.folder / run_name
        diff = self.differs(fingerprint)
        if diff and replace_stale:
            n = 1
            while self.folder.with_name(f"{self.folder.name}.stale-{n}").exists():
                n += 1
            os.replace(self.folder, self.folder.with_name(f"{self.folder.name}.stale-{n}"))
            self.folder.mkdir(parents=True)
            diff = []
        if diff:
            where = self.folder if run_name == "run.json" else self.path
            raise AffectError(f"{where} holds results of a different run (differs in: {', '.join(diff)}); "
                              f"use another --output or delete it")
        self._write_fingerprint(fingerprint)
        self.rows: dict[str, dict] = {}
        self._load()

    def differs(self, fp: dict) -> list[str]:
        """Fingerprint keys in which the rows already here were produced differently ([] when none or no rows)."""
        run = self.run_path
        if run.is_file() and self.path.is_file() and self.path.stat().st_size > 0:
            old = json.loads(run.read_text())
            return sorted(k for k in set(old) | set(fp) if old.get(k) != fp.get(k))
        return []

    def _write_fingerprint(self, fp: dict) -> None:
        run = self.run_path
        tmp = run.with_suffix(".tmp")
        tmp.write_text(json.dumps(fp, indent=2, sort_keys=True))
        os.replace(tmp, run)

    def _load(self) -> None:
        if not self.path.is_file():
            return
        good: list[str] = []
        torn = False
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                if not line.endswith("\n"):
                    torn = True
                    break
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    torn = True
                    break
                if row.get("key") not in self.rows:
                    self.rows[row["key"]] = row
                    good.append(line)
        if torn:                                  # rewrite without the torn tail (atomically)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text("".join(good), encoding="utf-8")
            os.replace(tmp, self.path)

    def __contains__(self, key: str) -> bool:
        return key in self.rows

    def append(self, rows: Iterable[dict]) -> None:
        rows = [r for r in rows if r["key"] not in self.rows]
        if not rows:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False, default=_jsonable) + "\n")
            f.flush()
            os.fsync(f.fileno())
        for r in rows:
            self.rows[r["key"]] = json.loads(json.dumps(r, default=_jsonable))


def _jsonable(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, set):
        return sorted(obj)
    return str(obj)
