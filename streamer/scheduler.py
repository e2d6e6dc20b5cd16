"""The schedule: messages waiting for their time, and the books on what is sounding.

Single-threaded; the sender process (streamer/sender.py) owns it, waits for `next_time()` and
calls `send_due()`. Because it knows every note it started, whatever stops the stream can give
each one its note-off and every output all-notes-off.
"""

from __future__ import annotations

import heapq
import itertools
import time

import mido

NOTE_ON, NOTE_OFF, OTHER = 0, 1, 2
# A note-on this far past its time was held back by a suspension (Ctrl-Z, a stalled machine):
# dropped, like the engine skips ahead after a stall, instead of a burst of the whole backlog.
STALE_NOTE_SECONDS = 0.25


class Scheduler:
    """A heap of (monotonic seconds, message); `outputs` share mido's send/panic/close interface."""

    def __init__(self, outputs: list, timing_log: bool = False, early_seconds: float = 0.0):
        self.outputs = outputs
        # Every message goes out this much before its time: JACK delivers it at the start of the
        # next cycle, so half a period early centres its arrival on the time (streamer/jack.py).
        self.early_seconds = early_seconds
        # (scheduled monotonic, sent monotonic, message) per message sent, when asked for (--timing-log):
        # kept in memory and written at the end, because a write that waits on the disk would hold
        # the sends after it (seen: note-offs 1-2.5 ms late beside a busy loop).
        self.timing_records: list | None = [] if timing_log else None
        self._heap: list = []
        self._counter = itertools.count()
        # (channel, pitch) -> id of the note sounding there; a re-struck key cuts the old note.
        self._sounding: dict[tuple[int, int], int] = {}
        self.notes_played = 0
        self.notes_dropped = 0

    def schedule_note(self, onset: float, end: float, channel: int, pitch: int, velocity: int) -> None:
        note_id = next(self._counter)
        heapq.heappush(self._heap, (onset, next(self._counter), NOTE_ON, note_id,
                                    mido.Message("note_on", channel=channel, note=pitch, velocity=velocity)))
        heapq.heappush(self._heap, (end, next(self._counter), NOTE_OFF, note_id,
                                    mido.Message("note_off", channel=channel, note=pitch, velocity=0)))

    def schedule_message(self, when: float, message: mido.Message) -> None:
        """Any other message at a time of its own (clock out: pulses, Start)."""
        heapq.heappush(self._heap, (when, next(self._counter), OTHER, -1, message))

    def send_soon(self, message: mido.Message) -> None:
        """A control message (program change, CC) goes out at the next send_due()."""
        heapq.heappush(self._heap, (time.monotonic(), next(self._counter), OTHER, -1, message))

    def next_time(self) -> float | None:
        """Monotonic seconds at which the next message goes out, None when nothing waits."""
        return self._heap[0][0] - self.early_seconds if self._heap else None

    def send_due(self) -> None:
        """Send every message whose time has come; drop note-ons gone stale (their note-offs then do nothing)."""
        now = time.monotonic() + self.early_seconds
        while self._heap and self._heap[0][0] <= now:
            when, _, kind, note_id, message = heapq.heappop(self._heap)
            if kind == NOTE_ON and now - when > STALE_NOTE_SECONDS:
                self.notes_dropped += 1
                continue
            self._dispatch(when, kind, note_id, message)
            now = time.monotonic() + self.early_seconds

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
            self.notes_played += 1
        self._send_all(message, when)

    def tempo_point(self, when: float, beat: float, seconds_per_beat: float) -> None:
        """In musical time: song position `beat` is at `when` (monotonic, as sent), for outputs
        that write the song's time (a --record take); the others do not take it."""
        for output in self.outputs:
            if hasattr(output, "tempo_point"):
                output.tempo_point(when, beat, seconds_per_beat)

    def _send_all(self, message: mido.Message, when: float) -> None:
        message.time = when  # the time it was scheduled for: a recorder writes that, not the send's jitter
        for output in self.outputs:
            output.send(message)
        if self.timing_records is not None:
            self.timing_records.append((when, time.monotonic(), message))

    def write_timing_log(self, path) -> None:
        """The records as lines "scheduled_monotonic sent_monotonic message-hex"."""
        with open(path, "w") as log:
            for when, sent, message in self.timing_records or ():
                log.write(f"{when:.6f} {sent:.6f} {message.hex()}\n")

    def silence_now(self) -> None:
        """Forget the notes that wait; note-off for every sounding note now, then all-notes-off on every
        output. Other timed messages (clock out) keep their times: a drum machine keeps its tempo."""
        self._heap = [entry for entry in self._heap if entry[2] == OTHER]
        heapq.heapify(self._heap)
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
