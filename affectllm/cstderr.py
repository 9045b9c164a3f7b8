"""C libraries' stderr, captured around a decoder call.

libsndfile's bundled libmpg123 prints "Note: Illegal Audio-MPEG-Header ..." and "[src/libmpg123/...] error: ..."
straight to file descriptor 2 while it resyncs on a corrupt MP3, before our one error line (and even when the file
then decodes). Python cannot reach those writes, so the descriptor itself is pointed at a temporary file for the
duration of the call. The redirection is process-wide: concurrent callers share one (a reference count), and on
the way out the lines the decoders wrote go to the debug log while any other line (another thread's log record
written meanwhile) is replayed to the real stderr, late but not lost."""
from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import threading
from contextlib import contextmanager

log = logging.getLogger("affectllm.media")

# what the decoders print: libmpg123's notes/warnings/errors (a source-file prefix or a bare severity)
DECODER_NOISE = re.compile(r"^(?:\[src/lib\w+/[^\]]*\]|Note:|Warning:|Error:|error:)")

_lock = threading.Lock()
_depth = 0
_saved_fd: int | None = None
_sink = None


def _flush_python_stderr() -> None:
    try:
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):
        pass


def _begin() -> None:
    global _depth, _saved_fd, _sink
    with _lock:
        if _depth == 0:
            _flush_python_stderr()
            sink = tempfile.TemporaryFile()
            try:
                saved = os.dup(2)
            except OSError:  # no fd 2 at all (a daemon): nothing to protect
                sink.close()
                _depth += 1
                return
            os.dup2(sink.fileno(), 2)
            _saved_fd, _sink = saved, sink
        _depth += 1


def _end() -> None:
    global _depth, _saved_fd, _sink
    with _lock:
        _depth -= 1
        if _depth or _saved_fd is None:
            return
        _flush_python_stderr()
        os.dup2(_saved_fd, 2)
        os.close(_saved_fd)
        sink, _saved_fd, _sink = _sink, None, None
    sink.seek(0)
    text = sink.read().decode("utf-8", "replace")
    sink.close()
    replay = []
    for line in text.splitlines(keepends=True):
        if DECODER_NOISE.match(line):
            log.debug("decoder: %s", line.rstrip())
        else:
            replay.append(line)
    if replay:
        os.write(2, "".join(replay).encode("utf-8", "replace"))


@contextmanager
def captured_c_stderr():
    """Run the block with fd 2 captured; decoder chatter goes to the debug log, everything else back to stderr."""
    _begin()
    try:
        yield
    finally:
        _end()
