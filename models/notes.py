"""The note representation both sides of cadenza share.

A note is (pitch, step, duration, velocity):
  pitch     MIDI number 0-127
  step      seconds since the previous note's onset (the first note: since time 0)
  duration  seconds the note sounds
  velocity  MIDI velocity 1-127
A piece is a structured numpy array of NOTE_DTYPE, sorted by onset then pitch.
Absolute onsets are `np.cumsum(notes["step"])`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np

from models.midi_reader import DRUM_CHANNEL, MidiError, RawNotes, parse_midi_bytes

NOTE_DTYPE = np.dtype([("pitch", np.uint8), ("step", np.float64), ("duration", np.float64), ("velocity", np.uint8)])
# The on-disk cache keeps times in float32: 0.1 ms resolution over an hour is plenty.
CACHE_NOTE_DTYPE = np.dtype([("pitch", np.uint8), ("step", np.float32), ("duration", np.float32), ("velocity", np.uint8)])
PEDAL_DOWN_THRESHOLD = 64
# Onsets closer than this to the one before belong to one chord (a pianist's chords spread over
# 10-30 ms); a chord's top note is its highest (the top line, the 'skyline' melody).
CHORD_SECONDS = 0.03

__all__ = [
    "NOTE_DTYPE",
    "CHORD_SECONDS",
    "CACHE_NOTE_DTYPE",
    "MidiError",
    "Representation",
    "read_notes",
    "notes_from_pretty_midi",
    "notes_to_pretty_midi",
    "write_midi",
    "onsets",
    "cut_at_restrike",
    "make_notes",
]


@dataclass(frozen=True)
class Representation:
    """How MIDI becomes notes. `sustain_pedal`: a note held by CC64 >= 64 lasts until the pedal lifts.

    `restrikes_cut`: a held note ends where its key is struck again, as it sounds. Off, it lasts
    until the pedal lifts, and playing it cuts it at the restrike, as a piano does
    (`notes_to_pretty_midi`, the stream's schedule, `training.texture.heard`). Cut, a network
    learns lengths already shortened by restrikes it cannot yet know of (21.6 % of MAESTRO
    validation notes end at one), and its own restrikes then cut them again. Trained on from the
    shipped model for 34 minutes with it off, it played no longer as heard (README, "How it
    sounds"), so it stays on by default. Version 2 added the field; version 1 always cut.
    """

    sustain_pedal: bool = True
    restrikes_cut: bool = True
    version: int = 2

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict | None) -> "Representation":
        """As a manifest records it (one written before version 2 has no `restrikes_cut`: it cut)."""
        values = values or {}
        return cls(sustain_pedal=values.get("sustain_pedal", True), restrikes_cut=values.get("restrikes_cut", True))

    @classmethod
    def of_card(cls, card: dict) -> "Representation":
        """How the training data of the model with this card was read."""
        return cls.from_dict(card.get("training", {}).get("representation"))


def make_notes(pitch, step, duration, velocity) -> np.ndarray:
    """Build a note array from four equal-length sequences (MIDI numbers and seconds)."""
    notes = np.zeros(len(pitch), dtype=NOTE_DTYPE)
    notes["pitch"] = pitch
    notes["step"] = step
    notes["duration"] = duration
    notes["velocity"] = velocity
    return notes


def onsets(notes: np.ndarray) -> np.ndarray:
    """Absolute onset of each note in seconds."""
    return np.cumsum(notes["step"].astype(np.float64))


def _sustained_ends(raw: RawNotes) -> np.ndarray:
    """Extend each note's end to the pedal release if the pedal of its channel is down then."""
    end = raw.end.copy()
    for channel in np.unique(raw.pedal_channel):
        in_channel = raw.pedal_channel == channel
        times = raw.pedal_time[in_channel]
        down = raw.pedal_value[in_channel] >= PEDAL_DOWN_THRESHOLD
        # Keep only the changes of state: down->up and up->down.
        changed = np.concatenate(([True], down[1:] != down[:-1]))
        times, down = times[changed], down[changed]
        note_mask = raw.channel == channel
        note_ends = end[note_mask]
        last_change = np.searchsorted(times, note_ends, side="right") - 1
        held = (last_change >= 0) & down[np.maximum(last_change, 0)]
        release_index = last_change + 1
        releases = np.where(release_index < len(times), times[np.minimum(release_index, len(times) - 1)], np.inf)
        # A pedal never released holds notes to the file's last event.
        final_time = max(raw.end.max(initial=0.0), times.max(initial=0.0))
        releases = np.where(np.isinf(releases), final_time, releases)
        end[note_mask] = np.where(held, np.maximum(note_ends, releases), note_ends)
    return end


def cut_at_restrike(start: np.ndarray, end: np.ndarray, pitch: np.ndarray) -> np.ndarray:
    """A key struck again stops its previous sound, however long the pedal would hold it."""
    order = np.lexsort((start, pitch))
    sorted_start, sorted_end, sorted_pitch = start[order], end[order], pitch[order]
    next_same_pitch = np.concatenate((sorted_pitch[1:] == sorted_pitch[:-1], [False]))
    next_start = np.concatenate((sorted_start[1:], [np.inf]))
    cut = next_same_pitch & (next_start > sorted_start) & (next_start < sorted_end)
    sorted_end = np.where(cut, next_start, sorted_end)
    result = end.copy()
    result[order] = sorted_end
    return result


def notes_from_raw(raw: RawNotes, representation: Representation = Representation()) -> np.ndarray:
    """Merge the non-drum notes of a file into one sorted note array."""
    keep = raw.channel != DRUM_CHANNEL
    raw = RawNotes(
        raw.start[keep], raw.end[keep], raw.pitch[keep], raw.velocity[keep], raw.channel[keep],
        raw.pedal_time, raw.pedal_channel, raw.pedal_value,
    )
    end = raw.end
    if representation.sustain_pedal and len(raw.pedal_time) and len(raw.start):
        end = _sustained_ends(raw)
        if representation.restrikes_cut:
            end = cut_at_restrike(raw.start, end, raw.pitch)
    order = np.lexsort((raw.pitch, raw.start))
    start = raw.start[order]
    duration = (end - raw.start)[order]
    positive = duration > 0
    start = start[positive]
    return make_notes(
        raw.pitch[order][positive],
        np.diff(start, prepend=0.0),
        duration[positive],
        np.maximum(raw.velocity[order][positive], 1),
    )


def notes_from_pretty_midi(midi, representation: Representation = Representation()) -> np.ndarray:
    """Note array from a pretty_midi.PrettyMIDI object (instruments play as separate pedal channels)."""
    starts, ends, pitches, velocities, channels = [], [], [], [], []
    pedal_times, pedal_channels, pedal_values = [], [], []
    for index, instrument in enumerate(i for i in midi.instruments if not i.is_drum):
        channel = index % 16 if index % 16 != DRUM_CHANNEL else 15
        for note in instrument.notes:
            starts.append(note.start)
            ends.append(note.end)
            pitches.append(note.pitch)
            velocities.append(note.velocity)
            channels.append(channel)
        for change in instrument.control_changes:
            if change.number == 64:
                pedal_times.append(change.time)
                pedal_channels.append(channel)
                pedal_values.append(change.value)
    pedal_order = np.argsort(pedal_times, kind="stable")
    raw = RawNotes(
        np.asarray(starts, dtype=np.float64),
        np.asarray(ends, dtype=np.float64),
        np.asarray(pitches, dtype=np.uint8),
        np.asarray(velocities, dtype=np.uint8),
        np.asarray(channels, dtype=np.uint8),
        np.asarray(pedal_times, dtype=np.float64)[pedal_order],
        np.asarray(pedal_channels, dtype=np.uint8)[pedal_order],
        np.asarray(pedal_values, dtype=np.uint8)[pedal_order],
    )
    return notes_from_raw(raw, representation)


def read_notes(source, representation: Representation = Representation()) -> np.ndarray:
    """Note array from a MIDI file path, its bytes, or a pretty_midi.PrettyMIDI object.

    Raises MidiError for anything that is not a readable MIDI file.
    """
    if hasattr(source, "instruments"):
        return notes_from_pretty_midi(source, representation)
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        try:
            with open(source, "rb") as handle:
                data = handle.read()
        except OSError as error:
            raise MidiError(f"cannot read {source}: {error.strerror}") from None
    return notes_from_raw(parse_midi_bytes(data), representation)


def notes_to_pretty_midi(notes: np.ndarray, program: int = 0, resolution: int = 480):
    """A PrettyMIDI with one instrument of General MIDI `program` (0-127) playing the notes as heard
    (each cut where its key is struck again)."""
    import pretty_midi

    midi = pretty_midi.PrettyMIDI(resolution=resolution)
    instrument = pretty_midi.Instrument(program=int(program), name=pretty_midi.program_to_instrument_name(int(program)))
    note_starts = onsets(notes)
    # A key struck again ends its sounding note first: two overlapping notes of one key in a file
    # are paired differently by different readers (and a DAW ends the second at the first's end).
    note_ends = cut_at_restrike(note_starts, note_starts + notes["duration"], notes["pitch"])
    for start, end, note in zip(note_starts, note_ends, notes):
        instrument.notes.append(
            pretty_midi.Note(
                velocity=int(note["velocity"]),
                pitch=int(note["pitch"]),
                start=float(start),
                end=float(end),
            )
        )
    midi.instruments.append(instrument)
    return midi


def write_midi(notes: np.ndarray, path, program: int = 0) -> None:
    """Write notes to a MIDI file atomically: a temporary name, renamed when complete."""
    path = os.fspath(path)
    temporary = f"{path}.partial-{os.getpid()}"
    try:
        notes_to_pretty_midi(notes, program).write(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
