"""--record: the take as a Standard MIDI File, in seconds or, in musical time, in the song's bars.

In free time a take is written at 120 BPM from its first message, its events at the seconds they
were sent. In musical time (--bpm, --sync, --quantize) the engine marks each note it places with
its song position (`tempo_point`): the take is then written in beats, tick 0 at the song's
downbeat, with the tempo the clock had (a tempo change as the clock changed), so dropped into a
DAW it lines up with the bars and a quantized note sits exactly on its tick.
"""

from __future__ import annotations

import bisect
import os
import tempfile
import time
from pathlib import Path

import mido

from models.errors import CadenzaError

DEFAULT_TEMPO = 500_000  # microseconds per beat: 120 BPM, the file's tempo in free time
TEMPO_CHANGE = 0.001  # a tempo this far (relative) from the last one written gets a set_tempo of its own
SILENCING_CONTROLS = {120, 121, 123}  # all sound off, reset controllers, all notes off: not music


class RecordOutput:
    """Keeps every message with its time and writes a MIDI file on close (temporary name, then rename).

    A message's `time`, where the scheduler sets it, is the monotonic second it was scheduled for;
    otherwise the time it was sent.
    """

    def __init__(self, path: Path, ticks_per_beat: int = 960):
        self.path = Path(path)
        self.ticks_per_beat = ticks_per_beat
        self.events: list[tuple[float, mido.Message]] = []  # (monotonic seconds, message)
        self.points: list[tuple[float, float, float]] = []  # (monotonic seconds, song beat, seconds per beat)
        self._sounding: set[tuple[int, int]] = set()
        self._pedal_down: set[int] = set()
        self.failure: str | None = None

    def send(self, message: mido.Message) -> None:
        if message.is_realtime:
            return  # clock, Start, Stop: a Standard MIDI File has no place for them
        if message.type == "control_change" and message.control in SILENCING_CONTROLS:
            return
        when = message.time if message.time > 0 else time.monotonic()
        # Never before what was sent before it: a note goes out up to half a JACK period ahead of
        # its time, and a stop's note-off stamped 'now' would land before it and leave it on.
        when = max(when, self.events[-1][0]) if self.events else when
        self._track(message)
        self.events.append((when, message))

    def _track(self, message: mido.Message) -> None:
        if message.type == "note_on" and message.velocity > 0:
            self._sounding.add((message.channel, message.note))
        elif message.type in ("note_on", "note_off"):
            self._sounding.discard((message.channel, message.note))
        elif message.type == "control_change" and message.control == 64:
            (self._pedal_down.add if message.value >= 64 else self._pedal_down.discard)(message.channel)

    def tempo_point(self, when: float, beat: float, seconds_per_beat: float) -> None:
        """Song position `beat` is at monotonic `when` (as sent), at this tempo."""
        self.points.append((when, beat, seconds_per_beat))

    def panic(self) -> None:
        """Only what the take needs to end clean: a note-off for each note it holds, the pedal up;
        not the 32 all-notes-off controls a MIDI port gets at each Stop."""
        for channel, note in sorted(self._sounding):
            self.send(mido.Message("note_off", channel=channel, note=note, velocity=0))
        for channel in sorted(self._pedal_down):
            self.send(mido.Message("control_change", channel=channel, control=64, value=0))

    def close(self) -> None:
        if self.points:
            track = self._track_in_beats()
        else:
            track = self._track_in_seconds()
        midi = mido.MidiFile(ticks_per_beat=self.ticks_per_beat, tracks=[track])
        try:
            self._save(midi, self.path)
        except OSError as error:
            # The take must not be lost: the folder vanished or filled up during the stream.
            fallback = Path(tempfile.gettempdir()) / f"cadenza-take-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.mid"
            self._save(midi, fallback)
            self.failure = f"could not write {self.path} ({error.strerror or error}); the take is saved as {fallback}"
            self.path = fallback

    def _track_in_seconds(self) -> mido.MidiTrack:
        started = self.events[0][0] if self.events else 0.0
        timed = [(round(mido.second2tick(when - started, self.ticks_per_beat, DEFAULT_TEMPO)), message)
                 for when, message in self.events]
        return _track_from([(0, mido.MetaMessage("set_tempo", tempo=DEFAULT_TEMPO))], timed)

    def _track_in_beats(self) -> mido.MidiTrack:
        points = sorted(self.points)
        tempos, written = [], None
        for _, beat, seconds_per_beat in points:
            if written is None or abs(seconds_per_beat / written - 1) > TEMPO_CHANGE:
                written = seconds_per_beat
                tick = 0 if not tempos else self._tick(beat)
                tempos.append((tick, mido.MetaMessage("set_tempo", tempo=round(seconds_per_beat * 1e6))))
        times = [point[0] for point in points]
        timed = [(self._tick(_beat_at(when, points, times)), message) for when, message in self.events]
        return _track_from(tempos, timed)

    def _tick(self, beat: float) -> int:
        return max(round(beat * self.ticks_per_beat), 0)  # before the downbeat (the wait for Start): tick 0

    @staticmethod
    def _save(midi: mido.MidiFile, path: Path) -> None:
        temporary = path.with_name(f".{path.name}.partial")
        midi.save(str(temporary))
        os.replace(temporary, path)


def _beat_at(when: float, points: list, times: list) -> float:
    """The song position at monotonic `when`: from the last point before it at that point's tempo,
    never past the next point (time passes while a stopped song does not)."""
    index = bisect.bisect_right(times, when) - 1
    if index < 0:
        point_time, beat, seconds_per_beat = points[0]
        return beat + (when - point_time) / seconds_per_beat
    point_time, beat, seconds_per_beat = points[index]
    position = beat + (when - point_time) / seconds_per_beat
    if index + 1 < len(points) and points[index + 1][1] >= beat:
        position = min(position, points[index + 1][1])
    return position


def _track_from(tempos: list, timed: list) -> mido.MidiTrack:
    """A track from (absolute tick, message) pairs: tempos first at a tick, then the rest in order."""
    ordered = sorted(tempos, key=lambda item: item[0]) + timed
    ordered.sort(key=lambda item: item[0])  # stable: what happened first at a tick stays first
    track, last_tick = mido.MidiTrack(), 0
    for tick, message in ordered:
        track.append(message.copy(time=tick - last_tick))
        last_tick = tick
    return track


def check_record_path(path: Path) -> None:
    """A one-line error now, before the stream starts, if the take could not be written there."""
    path = Path(path)
    probe = path.with_name(f".{path.name}.probe-{os.getpid()}")
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise CadenzaError(f"cannot write --record {path}: {error.strerror or error}") from None
