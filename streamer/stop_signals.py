"""Terminating signals (Ctrl-C, kill, a closed terminal, Ctrl-\\) turned into a stop request.

Python runs a signal's handler on the main thread, between two bytecodes of whatever it was
doing. The stream's main thread spends its time in `stop.wait(...)`, and a handler that called
`stop.set()` could land just after that wait had taken the event's lock back: `set()` then waits
for the same lock, held by the thread it runs on, forever (a stream seen still playing 30 s after
Ctrl-C, about one run in ten of a test). So the handlers here do nothing themselves: Python's C
handler writes each signal's number to a pipe (`signal.set_wakeup_fd`), and a thread of our own
reads it and sets the event.
"""

from __future__ import annotations

import os
import signal
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def stop_on_signals(stop: threading.Event, signals: tuple = STOP_SIGNALS) -> None:
    """From now on each of `signals` sets `stop` (from another thread) instead of its default
    action. Call from the main thread."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)  # the C handler must never block on a full pipe
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    for number in signals:
        signal.signal(number, _nothing)

    def watch() -> None:
        while os.read(read_end, 64):
            stop.set()

    threading.Thread(target=watch, name="stop-signals", daemon=True).start()


def _nothing(*_) -> None:
    """The Python-level part of a stop signal: the pipe carries it (see the module's doc)."""
