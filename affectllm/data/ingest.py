"""Manifests from what users have: a CSV/TSV of clips, a folder per label, or a plain folder of media.

Why here and not in a corpus adapter: a researcher with a new corpus should get a validated JSONL manifest
(`manifest.Sample` rows) without writing Python, and every check a built-in adapter relies on must still happen:

* media are checked on the way in: the file exists, is inside the root (paths that escape it are refused unless
  `allow_outside_root`), is a kind we decode (`media.detect_kind`) and decodes within `media.MediaLimits`;
* ids are unique; a file listed twice is a duplicate; identical bytes under two names are counted and reported
  (they would leak across splits) but kept;
* labels are checked against the label set (names and synonyms, `scoring.label_set`) and stored canonically;
* every problem names its row (spreadsheet numbering: the header is row 1) or file, and is either an error or a
  counted skip (`on_error`), so a dry run can list them all.

Media paths are written absolute (resolved), so training, evaluation and `affectllm predict` read the manifest
from any working directory."""
from __future__ import annotations

import csv
import hashlib
import io
import mimetypes
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import AffectError, MediaError
from ..media import MediaLimits, detect_kind, load_audio, load_image, load_video
from ..scoring.label_set import LabelSet, build_label_set
from ..scoring.lexicon import norm_word
from .manifest import Sample, normalise

DELIMITERS = {"comma": ",", "tab": "\t", "semicolon": ";", ",": ",", "\t": "\t", ";": ";"}
_NAMES = {",": "comma", "\t": "tab", ";": "semicolon"}
_LABEL_SEP = re.compile(r"[;|,]")
PROBLEM_KINDS = ("bad_row", "missing_label", "unknown_label", "bad_value", "outside_root", "missing_file",
                 "unsupported", "undecodable", "duplicate_id", "duplicate_file", "no_label_folder")


@dataclass
class IngestOptions:
    corpus: str
    root: Path
    label_set: LabelSet | None = None
    split: str = "test"                    # split of rows that do not name one
    on_error: str = "error"                # "error": stop at the first problem; "skip": count it and go on
    allow_outside_root: bool = False
    decode: bool = True                    # decode every file (False: existence and format only)
    limits: MediaLimits = field(default_factory=MediaLimits)
    speaker_regex: str | None = None       # folders: first group of this regex on the relative path = speaker


@dataclass
class Columns:
    """CSV column names. None: the conventional name when the header has it, else the field is left empty."""
    path: str = "path"
    label: str | None = None               # default "label" (required unless valence/arousal columns are given)
    labelled: bool = True                  # False: no labels at all (an inference-only manifest)
    valence: str | None = None
    arousal: str | None = None
    va_scale: tuple[float, float] = (-1.0, 1.0)
    text: str | None = None
    speaker: str | None = None
    subject: str | None = None
    gender: str | None = None
    language: str | None = None
    id: str | None = None
    split: str | None = None


OPTIONAL = ("valence", "arousal", "text", "speaker", "subject", "gender", "language", "id", "split")


@dataclass
class Ingested:
    source: str
    samples: list[Sample] = field(default_factory=list)
    problems: list[dict] = field(default_factory=list)      # {"where", "kind", "message"}
    rows: int = 0                                            # rows / files looked at
    ignored: int = 0                                         # files that are not media (folders only)
    notes: list[str] = field(default_factory=list)
    duplicate_content: list[list[str]] = field(default_factory=list)


class Ingestor:
    """Collects samples and problems; `problem` raises or counts according to `on_error`."""

    def __init__(self, opts: IngestOptions, source: str):
        if opts.on_error not in ("error", "skip"):
            raise AffectError(f"on_error must be 'error' or 'skip', got {opts.on_error!r}")
        self.opts, self.out = opts, Ingested(source)
        self.root = Path(opts.root).expanduser().resolve()
        if not self.root.is_dir():
            raise AffectError(f"root folder not found: {self.root}")
        self._ids: dict[str, str] = {}
        self._paths: dict[str, str] = {}
        self._hashes: dict[str, list[str]] = {}

    def problem(self, where: str, kind: str, message: str) -> None:
        if self.opts.on_error == "error":
            raise AffectError(f"{where}: {message}" + ("" if kind in ("outside_root",) else
                                                        " (pass --on-error skip to skip and count such rows)"))
        self.out.problems.append({"where": where, "kind": kind, "message": message})

    def labels(self, cell: str, where: str) -> list[str] | None:
        words = [w.strip() for w in _LABEL_SEP.split(cell or "") if w.strip()]
        if not words:
            return self.problem(where, "missing_label", "empty label")
        ls, out = self.opts.label_set, []
        for w in words:
            lab = ls.resolve(w) if ls else norm_word(w)
            if lab is None:
                return self.problem(where, "unknown_label", f"label {w!r} is not in the label set '{ls.name}' "
                                    f"({', '.join(ls.labels)}); add it (or a synonym) to {ls.path or 'the label set'}")
            if lab not in out:
                out.append(lab)
        return out

    def media(self, where: str, raw: str) -> tuple[str, str] | None:
        """(kind, resolved absolute path) of a checked media file, or None after a counted problem."""
        p = Path(raw.strip()).expanduser()
        full = (p if p.is_absolute() else self.root / p).resolve()
        if not self.opts.allow_outside_root and not full.is_relative_to(self.root):
            return self.problem(where, "outside_root", f"path {raw!r} resolves outside the root {self.root}; "
                                "refused (pass --allow-outside-root to accept paths outside it)")
        if not full.is_file():
            return self.problem(where, "missing_file", f"media file not found: {full}")
        try:
            kind = detect_kind(full)
        except MediaError as e:
            return self.problem(where, "unsupported", str(e))
        except OSError as e:                             # e.g. no permission to read it
            return self.problem(where, "undecodable", f"cannot read {full}: {e.strerror or e}")
        if self.opts.decode:
            lim = self.opts.limits
            try:
                if kind == "audio":
                    load_audio(full, 16000, limits=lim)
                elif kind == "image":
                    load_image(full, limits=lim)
                else:
                    load_video(full, num_frames=1, limits=lim, with_audio=False)
            except (MediaError, OSError) as e:
                return self.problem(where, "undecodable", f"cannot decode: {e}")
        key = str(full)
        if key in self._paths:
            return self.problem(where, "duplicate_file", f"file {raw!r} is already listed at {self._paths[key]}")
        self._paths[key] = where
        return kind, key

    def add(self, where: str, sid: str, kind: str, path: str, **fields) -> Sample | None:
        if sid in self._ids:
            return self.problem(where, "duplicate_id", f"id {sid!r} is already used at {self._ids[sid]}")
        s = Sample(id=sid, corpus=self.opts.corpus, split=fields.pop("split", None) or self.opts.split,
                   **{kind: path}, **fields)
        self._ids[sid] = where
        self._hashes.setdefault(_sha(path), []).append(sid)
        self.out.samples.append(s)
        return s

    def finish(self) -> Ingested:
        self.out.duplicate_content = [ids for ids in self._hashes.values() if len(ids) > 1]
        return self.out


def _sha(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def set_labels(s: Sample, labels: list[str] | None, label_set: LabelSet | None) -> None:
    """Open-vocabulary `labels` always; `label` for one label, `multi_labels` for several."""
    if not labels:
        return
    s.labels = list(labels)
    if len(labels) == 1:
        s.label = labels[0]
    else:
        s.multi_labels = list(labels)
    s.label_set = label_set.name if label_set else None


# ---- CSV / TSV -------------------------------------------------------------------------------------------------------
def read_table(path: Path, delimiter: str | None = None) -> tuple[list[str], list[tuple[int, list[str]]], list[str]]:
    """(header, [(row number, cells)], notes). A BOM is removed (and noted); a header that holds another delimiter
    than the one in use, and text that is not UTF-8, raise AffectError naming the row."""
    if not path.is_file():
        raise AffectError(f"table not found: {path}")
    raw, notes = path.read_bytes(), []
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise AffectError(f"{path}: row 1: UTF-16 text; save the file as UTF-8")
    if raw.startswith(b"\xef\xbb\xbf"):
        notes.append("UTF-8 byte-order mark (BOM) removed")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        row = raw[: e.start].count(b"\n") + 1
        raise AffectError(f"{path}: row {row}: not UTF-8 text (byte {e.start}); save the file as UTF-8") from None
    if delimiter is not None and delimiter not in DELIMITERS:
        raise AffectError(f"unknown delimiter {delimiter!r}; use comma, tab or semicolon")
    delim = DELIMITERS[delimiter] if delimiter else ("\t" if path.suffix.lower() in (".tsv", ".tab") else ",")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    header = [h.strip() for h in next(reader, [])]
    if not any(header):
        raise AffectError(f"{path}: empty file (no header row)")
    others = [d for d in _NAMES if d != delim and d in "".join(header)]
    if len(header) == 1 and others:
        raise AffectError(f"{path}: row 1: the header has no {_NAMES[delim]} but contains a {_NAMES[others[0]]}: "
                          f"wrong or mixed delimiters; pass --delimiter {_NAMES[others[0]]}")
    dup = [h for h, n in Counter(header).items() if n > 1]
    if dup or "" in header:
        raise AffectError(f"{path}: row 1: " + (f"duplicate column name(s) {dup}" if dup else "an empty column name"))
    rows, prev = [], reader.line_num
    for cells in reader:
        start, prev = prev + 1, reader.line_num
        if any(c.strip() for c in cells):
            rows.append((start, cells))
    return header, rows, notes


def _column(header: list[str], name: str | None, default: str, path: Path, required: bool = False,
            flag: str = "") -> str | None:
    want = name or default
    if want in header:
        return want
    if name is not None or required:
        raise AffectError(f"{path}: missing column '{want}'; found {header}" + (f" (name it with {flag})" if flag else ""))
    return None


def from_table(path: str | Path, cols: Columns, opts: IngestOptions, delimiter: str | None = None) -> Ingested:
    """Samples from a CSV/TSV with one media path per row (see `Columns`)."""
    path = Path(path)
    header, rows, notes = read_table(path, delimiter)
    use = {"path": _column(header, cols.path, "path", path, True, "--path-column")}
    for key in OPTIONAL:
        use[key] = _column(header, getattr(cols, key), key, path, flag=f"--{key}-column")
    use["label"] = None
    if cols.labelled:
        use["label"] = _column(header, cols.label, "label", path, flag="--label-column")
        if use["label"] is None and not (use["valence"] or use["arousal"]):
            raise AffectError(f"{path}: missing column 'label'; found {header} (name it with --label-column, or "
                              f"pass --no-labels for an inference-only manifest)")
    ing = Ingestor(opts, str(path))
    ing.out.notes += notes
    lo, hi = cols.va_scale
    for rowno, cells in rows:
        where = f"{path.name}: row {rowno}"
        ing.out.rows += 1
        if len(cells) != len(header):
            seen = [n for d, n in _NAMES.items() if d in "".join(cells)]
            ing.problem(where, "bad_row", f"{len(cells)} field(s) but the header has {len(header)}"
                        + (f" (found {', '.join(seen)}: mixed delimiters?)" if seen else ""))
            continue
        row = dict(zip(header, cells))
        get = {k: (row[c].strip() if c else "") for k, c in use.items()}
        labels = None
        if use.get("label"):
            labels = ing.labels(get["label"], where)
            if labels is None:
                continue
        dims, bad = {}, False
        for k in ("valence", "arousal"):
            if get.get(k):
                try:
                    v = float(get[k])
                except ValueError:
                    v = float("nan")
                if not lo <= v <= hi:
                    ing.problem(where, "bad_value", f"column '{use[k]}': {get[k]!r} is not a number in [{lo}, {hi}] "
                                "(set the scale with --va-scale LO,HI)")
                    bad = True
                    break
                dims[k] = v
        if bad:
            continue
        if not get["path"]:
            ing.problem(where, "missing_file", f"column '{use['path']}' is empty")
            continue
        media = ing.media(where, get["path"])
        if media is None:
            continue
        kind, full = media
        sid = get["id"] or Path(get["path"]).with_suffix("").as_posix().lstrip("./")
        extra = {k: get[k] or None for k in ("text", "speaker", "subject", "language", "split")}
        extra["gender"] = get["gender"].lower() or None
        if dims:
            extra.update({k: normalise(v, lo, hi) for k, v in dims.items()}, vad_native=dims, vad_scale=[lo, hi])
        s = ing.add(where, sid, kind, full, meta={"row": rowno}, **extra)
        if s is not None:
            set_labels(s, labels, opts.label_set)
    return ing.finish()


# ---- folders -----------------------------------------------------------------------------------------------------------
def _looks_like_media(p: Path) -> bool:
    major = (mimetypes.guess_type(p.name)[0] or "").split("/")[0]
    if major in ("audio", "image", "video"):
        return True
    try:
        detect_kind(p)
        return True
    except MediaError:
        return False


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not any(part.startswith(".") for part in
                                                                          p.relative_to(root).parts))


def _speaker(rel: str, regex: str | None, where: str) -> str | None:
    if not regex:
        return None
    m = re.search(regex, rel)
    if not m:
        raise AffectError(f"{where}: --speaker-regex {regex!r} does not match {rel!r}")
    return m.group(1) if m.groups() else m.group(0)


def from_folders(root: str | Path, opts: IngestOptions, labelled: bool = True) -> Ingested:
    """`labelled`: one sub-folder per label (angry/*.wav, ...; deeper folders inherit their top folder's label);
    otherwise every media file under `root` is one unlabelled sample (inference only)."""
    ing = Ingestor(opts, str(root))
    for p in _files(ing.root):
        rel = p.relative_to(ing.root).as_posix()
        if not _looks_like_media(p):
            ing.out.ignored += 1
            continue
        ing.out.rows += 1
        labels = None
        if labelled:
            if "/" not in rel:
                ing.problem(rel, "no_label_folder", "file is not inside a label folder (layout: <label>/<file>)")
                continue
            labels = ing.labels(rel.split("/", 1)[0], rel)
            if labels is None:
                continue
        media = ing.media(rel, rel)
        if media is None:
            continue
        s = ing.add(rel, str(Path(rel).with_suffix("").as_posix()), *media,
                    speaker=_speaker(rel, opts.speaker_regex, rel))
        if s is not None:
            set_labels(s, labels, opts.label_set)
    if ing.out.ignored:
        ing.out.notes.append(f"{ing.out.ignored} file(s) that are not media ignored")
    return ing.finish()


def check_samples(samples: list[Sample], opts: IngestOptions, source: str) -> Ingested:
    """Re-run the media, id and label checks on samples read from an existing manifest (`affectllm data check`)."""
    ing = Ingestor(opts, source)
    ls = opts.label_set
    for s in samples:
        where = f"{Path(source).name}: id {s.id}"
        ing.out.rows += 1
        if ls is not None and (s.multi_labels or ([s.label] if s.label else [])):
            bad = [x for x in (s.multi_labels or [s.label]) if ls.resolve(x) is None]
            if bad:
                ing.problem(where, "unknown_label", f"label {bad[0]!r} is not in the label set '{ls.name}'")
                continue
        media = [ing.media(where, p) for p in s.media().values()]
        if any(m is None for m in media):
            continue
        if s.id in ing._ids:
            ing.problem(where, "duplicate_id", f"id {s.id!r} is already used at {ing._ids[s.id]}")
            continue
        ing._ids[s.id] = where
        for _, full in media:
            ing._hashes.setdefault(_sha(full), []).append(s.id)
        ing.out.samples.append(s)
    return ing.finish()


# ---- summary ------------------------------------------------------------------------------------------------------
def labels_found(samples: list[Sample]) -> LabelSet | None:
    """A label set of the labels the samples carry (sorted), when no label set was given."""
    names = sorted({lab for s in samples for lab in (s.multi_labels or ([s.label] if s.label else []))})
    return build_label_set({"labels": names}, "labels found") if names else None


def summarize(ing: Ingested, label_set: LabelSet | None = None, wheel=None) -> dict:
    """Counts per label, modality and split; problems by kind; label-set coverage against the lexicon (and the
    MER emotion wheel when given)."""
    ss = ing.samples
    ls = label_set or labels_found(ss)
    out = {"source": ing.source, "rows": ing.rows, "samples": len(ss), "skipped": len(ing.problems),
           "problems_by_kind": dict(Counter(p["kind"] for p in ing.problems)), "problems": ing.problems,
           "ignored_files": ing.ignored, "notes": ing.notes,
           "duplicate_content": ing.duplicate_content,
           "labels": dict(sorted(Counter(lab for s in ss for lab in (s.multi_labels or
                                                                      ([s.label] if s.label else []))).items())),
           "unlabelled": sum(1 for s in ss if not s.labels),
           "modalities": dict(sorted(Counter(m for s in ss for m in s.modalities()).items())),
           "splits": dict(sorted(Counter(s.split for s in ss).items())),
           "speakers": len({s.person for s in ss if s.person}),
           "label_set": None if ls is None else {"name": ls.name, "path": ls.path, "given": label_set is not None}}
    if ls is not None:
        out["coverage"] = ls.coverage(wheel=wheel)
    if ls is not None and label_set is not None:
        out["labels_unused"] = [lab for lab in ls.labels if lab not in out["labels"]]
    return out


def format_summary(s: dict) -> str:
    """The dry-run summary as plain text."""
    lines = [f"source:      {s['source']}",
             f"samples:     {s['samples']} of {s['rows']} rows/files"
             + (f"; skipped {s['skipped']}: " + ", ".join(f"{k} {n}" for k, n in s["problems_by_kind"].items())
                if s["skipped"] else ""),
             f"labels:      " + (", ".join(f"{k} {n}" for k, n in s["labels"].items()) or "(none)")
             + (f"; unlabelled {s['unlabelled']}" if s["unlabelled"] and s["labels"] else ""),
             f"modalities:  " + ", ".join(f"{k} {n}" for k, n in s["modalities"].items()),
             f"splits:      " + ", ".join(f"{k} {n}" for k, n in s["splits"].items()),
             f"speakers:    {s['speakers']}"]
    cov = s.get("coverage")
    if cov:
        lines.append(f"lexicon:     {cov['lexicon_mapped']}/{cov['labels']} labels map into the emotion lexicon"
                     + (f"; not mapped: {', '.join(cov['unmapped'])} (add `lexicon:` to them in the label set)"
                        if cov["unmapped"] else ""))
        if "wheel_mapped" in cov:
            lines.append(f"MER wheel:   {cov['wheel_mapped']}/{cov['labels']} labels are in the emotion wheel"
                         + (f"; not in it: {', '.join(cov['wheel_unmapped'])}" if cov["wheel_unmapped"] else ""))
    if s.get("labels_unused"):
        lines.append(f"unused:      label(s) with no sample: {', '.join(s['labels_unused'])}")
    if s["duplicate_content"]:
        lines.append(f"duplicates:  {len(s['duplicate_content'])} group(s) of files with identical bytes, e.g. "
                     f"{s['duplicate_content'][0]}")
    for note in s["notes"]:
        lines.append(f"note:        {note}")
    for p in s["problems"][:20]:
        lines.append(f"skipped:     {p['where']}: {p['message']}")
    if len(s["problems"]) > 20:
        lines.append(f"skipped:     ... and {len(s['problems']) - 20} more (--json lists all)")
    return "\n".join(lines)
