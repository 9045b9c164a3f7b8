"""A full disk (or a quota, or a file size limit) named as such, whichever library hit it.

Python raises OSError with an errno; safetensors (Rust) raises SafetensorError whose text carries "(os error 28)";
a failed write deep inside a save would otherwise surface as a traceback from that library. `is_disk_full` sees
through both, so the CLI and the savers can say in one line what happened and what was (not) kept."""
from __future__ import annotations

import errno
import re

_CODES = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_TEXT = re.compile(r"No space left on device|Disk quota exceeded|File too large|os error (?:%s)\b"
                   % "|".join(str(c) for c in sorted(_CODES)))


def is_disk_full(e: BaseException) -> bool:
    """True for an exception (or one it was raised from) that says the disk or a size limit is full."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if getattr(e, "errno", None) in _CODES or _TEXT.search(str(e)):
            return True
        e = e.__cause__ or e.__context__
    return False


def reason(e: BaseException) -> str:
    """The library's words for it, e.g. 'No space left on device' or 'File too large'."""
    m = _TEXT.search(str(e))
    return getattr(e, "strerror", None) or (m.group(0) if m else type(e).__name__)
