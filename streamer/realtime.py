"""Real-time scheduling for the thread whose timing is heard.

On a busy machine an ordinary thread can wait a millisecond or more for a core after its timer
fires. The sender runs first-in-first-out ahead of ordinary threads, as JACK clients do, and
below JACK's own threads (priority 10 and up), which must never wait for us.
"""

from __future__ import annotations

import os

SENDER_PRIORITY = 5


def request_realtime_priority(priority: int) -> bool:
    """Move the calling thread to SCHED_FIFO at `priority`; False where the OS does not allow it.

    Linux allows it to root and to users with an rtprio limit (the 'audio' group that jackd2's
    install offers to set up); elsewhere nothing changes.
    """
    if not hasattr(os, "sched_setscheduler"):
        return False
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))  # 0: the calling thread
        return True
    except (OSError, PermissionError):
        return False
