"""Hide what C libraries print straight to file descriptor 2 (driver probes, interpreter banners)."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager


@contextmanager
def silenced_stderr(active: bool = True):
    if not active:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
