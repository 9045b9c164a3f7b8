"""`affectllm data`: validated JSONL manifests from a user's own corpus, without writing Python.

    affectllm data csv clips.csv --label-set labels.yaml --out clips.jsonl [--split-by speaker]
    affectllm data folders corpus/ --out corpus.jsonl          # corpus/<label>/*.wav|png|mp4
    affectllm data media clips/ --out clips.jsonl              # no labels: for `affectllm predict` only
    affectllm data check clips.jsonl --label-set labels.yaml   # re-check an existing manifest
    ... --dry-run                                              # the summary only, every problem listed

Every command prints a summary (counts per label, modality and split; skipped rows by reason; how many labels map
into the emotion lexicon and the MER wheel, and which do not) and writes `<out>` plus `<out>.summary.json`."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import AffectError


def _common(p: argparse.ArgumentParser, out: bool = True) -> None:
    if out:
        p.add_argument("--out", help="manifest to write (.jsonl); required unless --dry-run")
        p.add_argument("--corpus", help="corpus name in the manifest (default: the file or folder name)")
        p.add_argument("--split", default="test", help="split of rows that name none (default: test)")
        p.add_argument("--split-by", choices=["speaker", "subject"],
                       help="make speaker- or subject-disjoint splits (replaces any split column), seeded")
        p.add_argument("--split-fractions", default="train=0.6,dev=0.2,test=0.2",
                       help="shares of speakers/subjects per split with --split-by (default train=0.6,dev=0.2,"
                            "test=0.2)")
        p.add_argument("--seed", type=int, default=0, help="seed of --split-by (default 0)")
        p.add_argument("--dry-run", action="store_true", help="check and summarise; write nothing; list every "
                                                              "problem instead of stopping at the first")
    p.add_argument("--label-set", help="label-set YAML (names, synonyms, lexicon mapping) the labels must belong to")
    p.add_argument("--root", help="folder media paths are relative to, and must stay inside (default: the folder "
                                  "of the CSV / manifest, or the folder itself)")
    p.add_argument("--allow-outside-root", action="store_true", help="accept media paths outside --root")
    p.add_argument("--on-error", choices=["error", "skip"], default="error",
                   help="a bad row: stop with an error naming it (default), or skip it and count it")
    p.add_argument("--no-decode", action="store_true", help="check existence and format only (faster)")
    p.add_argument("--lexicon", help="MER emotion_wheel folder for the coverage report (default: the data kit's, "
                                     "when present)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def add_parser(sub) -> None:
    data = sub.add_parser("data", help="build and check manifests of your own corpus (CSV/TSV, folder per label, "
                                       "plain media folder)")
    dsub = data.add_subparsers(dest="data_command", required=True)
    csv = dsub.add_parser("csv", help="a CSV/TSV with a path column and a label (or valence/arousal) column")
    csv.add_argument("table", help="the .csv / .tsv file")
    csv.add_argument("--delimiter", choices=["comma", "tab", "semicolon"], help="default: tab for .tsv, else comma")
    csv.add_argument("--path-column", default="path", help="media path column (default: path)")
    csv.add_argument("--label-column", help="label column (default: label); several labels per cell: a;b")
    csv.add_argument("--no-labels", action="store_true", help="no label column: an inference-only manifest")
    for col in ("valence", "arousal", "text", "speaker", "subject", "gender", "language", "id", "split"):
        csv.add_argument(f"--{col}-column", help=f"{col} column (default: '{col}' when the header has it)")
    csv.add_argument("--va-scale", default="-1,1", help="LO,HI of the valence/arousal columns (default -1,1); "
                                                        "stored normalised to -1..1, the native values kept")
    _common(csv)
    for name, helptext in (("folders", "one sub-folder per label: <dir>/<label>/<file>"),
                           ("media", "a plain folder of media, no labels (inference only)")):
        p = dsub.add_parser(name, help=helptext)
        p.add_argument("folder")
        p.add_argument("--speaker-regex", help="regex on the relative path whose first group is the speaker "
                                               "(e.g. 'Actor_(\\d+)'), for --split-by speaker")
        _common(p)
    check = dsub.add_parser("check", help="re-check an existing JSONL manifest (schema, media, ids, labels)")
    check.add_argument("manifest")
    _common(check, out=False)
    data.set_defaults(func=run)


def _wheel(args):
    from ..scoring import MerWheel
    from .paths import default_data_root

    folder = Path(args.lexicon) if args.lexicon else default_data_root() / "ovmer" / "emotion_wheel"
    if not (folder / "format.csv").is_file():
        if args.lexicon:
            raise AffectError(f"--lexicon {folder}: no format.csv there (not an emotion_wheel folder)")
        return None
    return MerWheel.load(folder)


def run(args: argparse.Namespace) -> int:
    from ..scoring.label_set import load_label_set
    from .ingest import Columns, IngestOptions, check_samples, format_summary, from_folders, from_table, summarize
    from .manifest import read_manifest, write_manifest

    cmd = args.data_command
    source = Path(getattr(args, "table", None) or getattr(args, "folder", None) or args.manifest).expanduser()
    dry = getattr(args, "dry_run", False)
    if cmd != "check" and not dry and not args.out:
        raise AffectError(f"affectllm data {cmd}: give --out FILE.jsonl (or --dry-run)")
    ls = load_label_set(args.label_set) if args.label_set else None
    root = Path(args.root) if args.root else (source if cmd in ("folders", "media") else source.parent)
    opts = IngestOptions(corpus=getattr(args, "corpus", None) or source.stem, root=root, label_set=ls,
                         split=getattr(args, "split", "test"), on_error="skip" if dry else args.on_error,
                         allow_outside_root=args.allow_outside_root, decode=not args.no_decode,
                         speaker_regex=getattr(args, "speaker_regex", None))
    if cmd == "csv":
        try:
            lo, hi = (float(x) for x in args.va_scale.split(","))
        except ValueError:
            raise AffectError(f"--va-scale must be LO,HI (e.g. 1,5), got {args.va_scale!r}") from None
        cols = Columns(path=args.path_column, label=args.label_column, labelled=not args.no_labels, va_scale=(lo, hi),
                       **{c: getattr(args, f"{c}_column") for c in ("valence", "arousal", "text", "speaker",
                                                                      "subject", "gender", "language", "id", "split")})
        ing = from_table(source, cols, opts, args.delimiter)
    elif cmd in ("folders", "media"):
        ing = from_folders(source, opts, labelled=cmd == "folders")
    else:
        samples = read_manifest(source, root=source.parent, on_missing="skip" if args.on_error == "skip" else "error")
        ing = check_samples(samples, opts, str(source))
        ing.problems += [{"where": f"{source.name}: id {i}", "kind": "missing_file", "message": "media file not found"}
                         for i in samples.skipped_ids]
        ing.rows += samples.skipped
    if getattr(args, "split_by", None) and ing.samples:
        from .splits import apply_group_split

        apply_group_split(ing.samples, args.split_by, args.split_fractions, args.seed)
    summary = summarize(ing, ls, _wheel(args))
    if cmd != "check" and not dry:
        out = write_manifest(args.out, ing.samples)
        summary["manifest"] = str(out)
        Path(str(out) + ".summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n",
                                                    encoding="utf-8")
    if args.json:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        print(format_summary(summary))
        if summary.get("manifest"):
            print(f"wrote:       {summary['manifest']} ({summary['samples']} samples) and its .summary.json")
        elif dry:
            print("dry run:     nothing written")
    if cmd == "check" and summary["skipped"] and args.on_error == "error":
        return 1
    return 0
