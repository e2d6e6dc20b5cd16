"""Real-time scheduling for the threads whose timing is heard.

On a busy machine an ordinary thread can wait a millisecond or more for a core after its timer
fires. The sender runs first-in-first-out ahead of ordinary threads, as JACK clients do, and
below JACK's own threads (priority 10 and up), which must never wait for us.

JACK's client library runs each client's process callback on a thread of its own, which moves
MIDI between our queues and the server once a period. A server started with real-time scheduling
gives that thread its own priority; one started without it (`jackd -r`, as in the tests) leaves it
ordinary, and on a loaded machine the callback then runs a cycle or more late: what we send is
heard late, and an input that misses its cycle loses what arrived in it (clock pulses).
`realtime_library_threads` lifts those threads where the server did not.
"""

from __future__ import annotations

import contextlib
import os

SENDER_PRIORITY = 5
# Above the sender, which hands them what it sends; below JACK's server threads.
LIBRARY_THREAD_PRIORITY = SENDER_PRIORITY + 1


def request_realtime_priority(priority: int) -> bool:
    """Move the calling thread to SCHED_FIFO at `priority`; False where the OS does not allow it.

    Linux allows it to root and to users with an rtprio limit (the 'audio' group that jackd2's
    install offers to set up); elsewhere nothing changes.
    """
    return _set_fifo(0, priority)  # 0: the calling thread


@contextlib.contextmanager
def realtime_library_threads(priority: int = LIBRARY_THREAD_PRIORITY):
    """Threads started inside the block (by a MIDI or audio library: libjack's process thread)
    run SCHED_FIFO at `priority` afterwards, unless the library already made them real-time.
    Where the OS does not allow it (not root, no rtprio limit, not Linux) nothing changes."""
    before = _thread_ids()
    yield
    for thread_id in _thread_ids() - before:
        try:
            if os.sched_getscheduler(thread_id) == os.SCHED_OTHER:
                _set_fifo(thread_id, priority)
        except OSError:  # the thread has already ended
            pass


def _thread_ids() -> set[int]:
    try:
        return {int(name) for name in os.listdir("/proc/self/task")}
    except OSError:  # not Linux
        return set()


def _set_fifo(thread_id: int, priority: int) -> bool:
    if not hasattr(os, "sched_setscheduler"):
        return False
    try:
        os.sched_setscheduler(thread_id, os.SCHED_FIFO, os.sched_param(priority))
        return True
    except (OSError, PermissionError):
        return False
