"""Ctrl-C always stops a stream: the stop signal never waits for a lock that the thread it
interrupts holds (streamer/stop_signals.py)."""

import subprocess
import sys

from conftest import REPO

# The stream's main thread waits on the stop event between notes. A process-directed signal may
# be delivered to any of its threads (JACK's, the inputs'); Python then runs the handler on the
# main thread at its next check, which can come just after that thread took the event's lock back
# at the end of a wait. Here another thread holds the lock now and then, so the main thread often
# takes it back late, and the signal is delivered to a thread other than the main one.
CHILD = """
import signal, sys, threading, time
sys.path.insert(0, {repo!r})
stop = threading.Event()
{install}
def hold_the_lock():
    while not stop.is_set():
        with stop._cond:
            time.sleep(0.0002)
        time.sleep(0.0001)
def signal_from_another_thread():
    time.sleep(0.05)
    signal.pthread_kill(threading.get_ident(), signal.SIGINT)
threading.Thread(target=hold_the_lock, daemon=True).start()
threading.Thread(target=signal_from_another_thread, daemon=True).start()
while not stop.is_set():
    stop.wait(0.0005)
"""
SET_IN_THE_HANDLER = "signal.signal(signal.SIGINT, lambda *_: stop.set())"  # what the stream did before
THROUGH_THE_PIPE = "from streamer.stop_signals import stop_on_signals\nstop_on_signals(stop)"


def stopped_within(install: str, tries: int, seconds: float = 3.0) -> int:
    """How many of `tries` waiting processes stopped within `seconds` of a SIGINT."""
    stopped = 0
    for _ in range(tries):
        child = subprocess.Popen([sys.executable, "-c", CHILD.format(repo=str(REPO), install=install)])
        try:
            stopped += child.wait(seconds) == 0
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return stopped


def test_a_stop_signal_stops_a_main_thread_waiting_on_the_stop_event():
    """A stream once went on playing 30 s after SIGINT: its handler called stop.set() on the main
    thread while that thread, ending a stop.wait(), held the event's lock."""
    assert stopped_within(THROUGH_THE_PIPE, 40) == 40
