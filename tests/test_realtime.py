"""Real-time scheduling of the threads a MIDI library starts (streamer/realtime.py)."""

from __future__ import annotations

import os
import resource
import threading

import pytest

from streamer.realtime import LIBRARY_THREAD_PRIORITY, realtime_library_threads

pytestmark = pytest.mark.skipif(
    not hasattr(os, "sched_getscheduler") or (os.geteuid() != 0 and resource.getrlimit(resource.RLIMIT_RTPRIO)[0] == 0),
    reason="this OS or user may not use real-time scheduling")


def _waiting_thread() -> tuple[threading.Thread, threading.Event]:
    release = threading.Event()
    thread = threading.Thread(target=release.wait, daemon=True)
    thread.start()
    return thread, release


def test_threads_started_in_the_block_run_first_in_first_out_and_the_others_stay_ordinary():
    before, release_before = _waiting_thread()
    with realtime_library_threads():
        inside, release_inside = _waiting_thread()
    try:
        assert os.sched_getscheduler(inside.native_id) == os.SCHED_FIFO
        assert os.sched_getparam(inside.native_id).sched_priority == LIBRARY_THREAD_PRIORITY
        assert os.sched_getscheduler(before.native_id) == os.SCHED_OTHER
        assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the caller itself is left alone
    finally:
        release_before.set()
        release_inside.set()


def test_a_thread_the_library_already_made_real_time_keeps_its_own_priority():
    release = threading.Event()

    def library_thread():  # as libjack does on a real-time server: its own priority, higher than ours
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(LIBRARY_THREAD_PRIORITY + 4))
        release.wait()

    with realtime_library_threads():
        thread = threading.Thread(target=library_thread, daemon=True)
        thread.start()
        while os.sched_getscheduler(thread.native_id) != os.SCHED_FIFO:
            pass
    try:
        assert os.sched_getparam(thread.native_id).sched_priority == LIBRARY_THREAD_PRIORITY + 4
    finally:
        release.set()
