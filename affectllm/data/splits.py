"""Speaker- or subject-disjoint splits of a user's samples, made on request and seeded.

Why disjoint: a model that has heard a speaker (or seen a face) in training recognises the person, not the
emotion; numbers on the same people overstate transfer. Groups (whole speakers/subjects) are drawn with
sklearn's `GroupShuffleSplit`: test first, then dev from the rest, so a fraction is the share of *people*
(rounded up), not of rows. The same seed and input always give the same split."""
from __future__ import annotations

from ..errors import AffectError
from .manifest import Sample

SPLIT_ORDER = ("train", "dev", "test")


def parse_fractions(spec: str | dict) -> dict[str, float]:
    """"train=0.6,dev=0.2,test=0.2" -> {"train": 0.6, "dev": 0.2, "test": 0.2} (must sum to 1)."""
    if isinstance(spec, dict):
        out = {str(k): float(v) for k, v in spec.items()}
    else:
        out = {}
        for part in str(spec).split(","):
            name, sep, value = part.partition("=")
            try:
                out[name.strip()] = float(value)
            except ValueError:
                raise AffectError(f"split fractions: expected NAME=FRACTION, got {part!r} (e.g. "
                                  f"train=0.6,dev=0.2,test=0.2)") from None
            if not sep:
                raise AffectError(f"split fractions: expected NAME=FRACTION, got {part!r}")
    bad = [k for k in out if k not in SPLIT_ORDER]
    if bad:
        raise AffectError(f"split fractions: unknown split(s) {bad}; use {', '.join(SPLIT_ORDER)}")
    if any(v < 0 for v in out.values()) or abs(sum(out.values()) - 1.0) > 1e-6:
        raise AffectError(f"split fractions must be >= 0 and sum to 1, got {out}")
    return {k: out[k] for k in SPLIT_ORDER if out.get(k, 0) > 0}


def group_split(samples: list[Sample], by: str, fractions: dict[str, float], seed: int = 0) -> dict[str, str]:
    """group -> split for the `by` field ("speaker" or "subject") of every sample; raises AffectError naming the
    samples that lack it or when there are fewer groups than splits."""
    import numpy as np
    from sklearn.model_selection import GroupShuffleSplit

    if by not in ("speaker", "subject"):
        raise AffectError(f"--split-by must be speaker or subject, got {by!r}")
    missing = [s.id for s in samples if not getattr(s, by)]
    if missing:
        raise AffectError(f"split by {by}: {len(missing)} sample(s) have no {by} (e.g. {missing[:3]}); give a "
                          f"{by} column or drop --split-by")
    groups = np.array(sorted({getattr(s, by) for s in samples}))
    if len(groups) < len(fractions):
        raise AffectError(f"split by {by}: {len(groups)} {by}(s) cannot fill {len(fractions)} splits "
                          f"{list(fractions)}")
    assign: dict[str, str] = {}
    rest, left = groups, 1.0
    names = list(fractions)
    for i, name in enumerate(reversed(names)):       # test first, then dev; train keeps what remains
        if i == len(names) - 1:
            assign.update({str(g): name for g in rest})
            break
        share = fractions[name] / left
        gss = GroupShuffleSplit(n_splits=1, test_size=share, random_state=seed)
        keep, take = next(gss.split(rest, groups=rest))
        assign.update({str(g): name for g in rest[take]})
        rest, left = rest[keep], left - fractions[name]
    return assign


def apply_group_split(samples: list[Sample], by: str, fractions: str | dict, seed: int = 0) -> dict[str, str]:
    """Set `split` on every sample from `group_split`; returns the group -> split map."""
    assign = group_split(samples, by, parse_fractions(fractions), seed)
    for s in samples:
        s.split = assign[getattr(s, by)]
    return assign
