"""The sender: one thread that only waits for each message's time and sends it to every output.

It also keeps the books on what is sounding, so that whatever stops the stream, every note
it started gets its note-off and every output gets all-notes-off.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time

import mido

from streamer.realtime import SENDER_PRIORITY, request_realtime_priority

NOTE_ON, NOTE_OFF, OTHER = 0, 1, 2
class Scheduler:
    """A heap of (monotonic seconds, message); `outputs` share mido's send/panic/close interface."""

    def __init__(self, outputs: list, timing_log=None, realtime_priority: int | None = SENDER_PRIORITY):
        self.outputs = outputs
        self.realtime_priority = realtime_priority
        self.realtime = False  # set by the sender thread once it has the priority
        self.error: BaseException | None = None
        self.timing_log = timing_log  # file: "scheduled_monotonic sent_monotonic message" per line
        self._heap: list = []
        self._counter = itertools.count()
        self._condition = threading.Condition()
        self._running = True
        # (channel, pitch) -> id of the note sounding there; a re-struck key cuts the old note.
        self._sounding: dict[tuple[int, int], int] = {}
        self.sent_notes = 0
        self.late_messages = 0
        self._thread = threading.Thread(target=self._run, name="cadenza-sender", daemon=True)
        self._thread.start()

    def schedule_note(self, onset: float, end: float, channel: int, pitch: int, velocity: int) -> None:
        note_id = next(self._counter)
        with self._condition:
            heapq.heappush(self._heap, (onset, next(self._counter), NOTE_ON, note_id,
                                        mido.Message("note_on", channel=channel, note=pitch, velocity=velocity)))
            heapq.heappush(self._heap, (end, next(self._counter), NOTE_OFF, note_id,
                                        mido.Message("note_off", channel=channel, note=pitch, velocity=0)))
            self._condition.notify()

    def send_soon(self, message: mido.Message) -> None:
        """Send a control message (program change, CC) as soon as the sender wakes."""
        with self._condition:
            heapq.heappush(self._heap, (time.monotonic(), next(self._counter), OTHER, -1, message))
            self._condition.notify()

    def pending(self) -> int:
        with self._condition:
            return len(self._heap)

    def last_scheduled_time(self) -> float:
        with self._condition:
            return max((entry[0] for entry in self._heap), default=time.monotonic())

    def _run(self) -> None:
        if self.realtime_priority is not None:
            self.realtime = request_realtime_priority(self.realtime_priority)
        while True:
            with self._condition:
                while self._running and (not self._heap or self._heap[0][0] > time.monotonic()):
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._condition.wait(timeout)
                if not self._running:
                    return
                when, _, kind, note_id, message = heapq.heappop(self._heap)
            try:
                self._dispatch(when, kind, note_id, message)
            except BaseException as error:  # a vanished port, a dead synth: stop and let the engine report
                self.error = error
                with self._condition:
                    self._running = False
                return

    def _dispatch(self, when: float, kind: int, note_id: int, message: mido.Message) -> None:
        key = (message.channel, message.note) if kind != OTHER else None
        if kind == NOTE_OFF:
            if self._sounding.get(key) != note_id:
                return  # this note was already cut by a re-strike of its key
            del self._sounding[key]
        elif kind == NOTE_ON and key in self._sounding:
            self._send_all(mido.Message("note_off", channel=key[0], note=key[1], velocity=0), when)
        if kind == NOTE_ON:
            self._sounding[key] = note_id
            self.sent_notes += 1
        self._send_all(message, when)

    def _send_all(self, message: mido.Message, when: float) -> None:
        for output in self.outputs:
            output.send(message)
        sent = time.monotonic()
        if sent - when > 0.005:
            self.late_messages += 1
        if self.timing_log:
            self.timing_log.write(f"{when:.6f} {sent:.6f} {message.hex()}\n")

    def drop_pending_notes(self) -> None:
        """Forget notes not yet started; notes sounding keep their note-offs."""
        with self._condition:
            self._heap = [entry for entry in self._heap if entry[2] == NOTE_OFF and entry[3] in self._sounding.values()]
            heapq.heapify(self._heap)

    def silence_now(self) -> None:
        """Note-off for every sounding note now, then all-notes-off on every output."""
        with self._condition:
            self._heap = []
            sounding, self._sounding = self._sounding, {}
        for channel, pitch in sounding:
            self._send_quietly(mido.Message("note_off", channel=channel, note=pitch, velocity=0))
        for output in self.outputs:
            try:
                output.panic()
            except Exception:  # a vanished port must not keep the others from being silenced
                pass

    def _send_quietly(self, message: mido.Message) -> None:
        for output in self.outputs:
            try:
                output.send(message)
            except Exception:
                pass

    def stop(self) -> None:
        """Stop the sender thread and silence everything it started."""
        with self._condition:
            self._running = False
            self._condition.notify()
        self._thread.join(timeout=2)
        self.silence_now()

    def sounding_count(self) -> int:
        return len(self._sounding)
