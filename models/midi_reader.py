"""A small, fast Standard MIDI File reader that keeps only what notes need.

pretty_midi (through mido) builds a Python object per message, which costs about
0.17 s per MAESTRO file. Ingest only needs note on/off, the sustain pedal and the
tempo map, so this reader walks the bytes once and returns flat arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SUSTAIN_CONTROLLER = 64
DRUM_CHANNEL = 9
DEFAULT_TEMPO_US_PER_BEAT = 500_000


class MidiError(ValueError):
    """The bytes are not a readable Standard MIDI File."""


@dataclass
class RawNotes:
    """Notes as read from a file, before the representation is applied.

    Times are in seconds from the start of the file; pitch and velocity are MIDI numbers.
    `channel` tells which pedal applies to each note.
    """

    start: np.ndarray
    end: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray
    channel: np.ndarray
    # Sustain pedal changes: time (seconds), channel, value 0-127.
    pedal_time: np.ndarray
    pedal_channel: np.ndarray
    pedal_value: np.ndarray


def _read_varlen(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    while True:
        byte = data[pos]
        pos += 1
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value, pos


def _parse_track(data: bytes, pos: int, end: int, notes: list, pedals: list, tempos: list) -> None:
    """Append (tick, channel, pitch, velocity) note events (velocity 0 = off), pedal and tempo events."""
    tick = 0
    running = 0
    append_note = notes.append
    while pos < end:
        byte = data[pos]
        pos += 1
        delta = byte & 0x7F
        while byte & 0x80:
            byte = data[pos]
            pos += 1
            delta = (delta << 7) | (byte & 0x7F)
        tick += delta
        status = data[pos]
        if status & 0x80:
            pos += 1
            if status < 0xF0:
                running = status
        elif running:
            status = running
        else:
            raise MidiError("data byte without a status byte")
        kind = status & 0xF0
        if kind == 0x90:
            append_note((tick, status & 0x0F, data[pos], data[pos + 1]))
            pos += 2
        elif kind == 0x80:
            append_note((tick, status & 0x0F, data[pos], 0))
            pos += 2
        elif kind == 0xB0:
            if data[pos] == SUSTAIN_CONTROLLER:
                pedals.append((tick, status & 0x0F, data[pos + 1]))
            pos += 2
        elif kind == 0xA0 or kind == 0xE0:
            pos += 2
        elif kind == 0xC0 or kind == 0xD0:
            pos += 1
        elif status == 0xFF:
            meta_type = data[pos]
            length, pos = _read_varlen(data, pos + 1)
            if meta_type == 0x51 and length == 3:
                tempos.append((tick, (data[pos] << 16) | (data[pos + 1] << 8) | data[pos + 2]))
            elif meta_type == 0x2F:
                return
            pos += length
        elif status == 0xF0 or status == 0xF7:
            length, pos = _read_varlen(data, pos)
            pos += length
        else:
            raise MidiError(f"unsupported status byte 0x{status:02X}")
    if pos > end:
        raise MidiError("track data runs past its chunk")


def _ticks_to_seconds(ticks: np.ndarray, tempos: list, ticks_per_beat: int) -> np.ndarray:
    """Convert ticks to seconds through the tempo map (microseconds per beat at each tick)."""
    tempo_ticks = [0]
    tempo_values = [DEFAULT_TEMPO_US_PER_BEAT]
    for tick, value in sorted(tempos):
        if tick == tempo_ticks[-1]:
            tempo_values[-1] = value
        else:
            tempo_ticks.append(tick)
            tempo_values.append(value)
    tempo_ticks = np.asarray(tempo_ticks, dtype=np.float64)
    seconds_per_tick = np.asarray(tempo_values, dtype=np.float64) / 1e6 / ticks_per_beat
    segment_start_seconds = np.concatenate(([0.0], np.cumsum(np.diff(tempo_ticks) * seconds_per_tick[:-1])))
    segment = np.searchsorted(tempo_ticks, ticks, side="right") - 1
    return segment_start_seconds[segment] + (ticks - tempo_ticks[segment]) * seconds_per_tick[segment]


def _pair_notes(events: list) -> tuple[list, list]:
    """Match note-offs to note-ons per (channel, pitch); an off closes every earlier open note."""
    open_notes: dict[int, list] = {}
    pairs = []
    for tick, channel, pitch, velocity in events:
        key = channel * 128 + pitch
        if velocity:
            open_notes.setdefault(key, []).append((tick, velocity))
            continue
        waiting = open_notes.get(key)
        if not waiting:
            continue
        still_open = []
        for start_tick, start_velocity in waiting:
            if start_tick < tick:
                pairs.append((start_tick, tick, pitch, start_velocity, channel))
            else:
                still_open.append((start_tick, start_velocity))
        open_notes[key] = still_open
    # Notes never switched off end at the last event, as a sequencer stopping would do.
    last_tick = events[-1][0] if events else 0
    for key, waiting in open_notes.items():
        for start_tick, start_velocity in waiting:
            if start_tick < last_tick:
                pairs.append((start_tick, last_tick, key % 128, start_velocity, key // 128))
    return pairs


def parse_midi_bytes(data: bytes) -> RawNotes:
    """Read the notes, sustain pedal and tempo map of a Standard MIDI File's bytes."""
    if len(data) < 14 or data[:4] != b"MThd":
        raise MidiError("not a MIDI file (no MThd header)")
    header_length = int.from_bytes(data[4:8], "big")
    division = int.from_bytes(data[12:14], "big")
    if division & 0x8000 or division == 0:
        raise MidiError("SMPTE time division is not supported")
    pos = 8 + header_length
    note_events: list = []
    pedal_events: list = []
    tempos: list = []
    try:
        while pos + 8 <= len(data):
            chunk_type = data[pos : pos + 4]
            chunk_length = int.from_bytes(data[pos + 4 : pos + 8], "big")
            chunk_start = pos + 8
            chunk_end = chunk_start + chunk_length
            if chunk_type == b"MTrk":
                if chunk_end > len(data):
                    raise MidiError("truncated track chunk")
                track_notes: list = []
                _parse_track(data, chunk_start, chunk_end, track_notes, pedal_events, tempos)
                note_events.extend(track_notes)
            pos = chunk_end
    except IndexError:
        raise MidiError("truncated track data") from None
    # Offs before ons at the same tick, so a repeated note closes the old one first.
    note_events.sort(key=lambda event: (event[0], event[3] > 0))
    pairs = _pair_notes(note_events)
    pair_array = np.asarray(pairs, dtype=np.int64).reshape(-1, 5)
    pedal_array = np.asarray(sorted(pedal_events), dtype=np.int64).reshape(-1, 3)
    return RawNotes(
        start=_ticks_to_seconds(pair_array[:, 0], tempos, division),
        end=_ticks_to_seconds(pair_array[:, 1], tempos, division),
        pitch=pair_array[:, 2].astype(np.uint8),
        velocity=pair_array[:, 3].astype(np.uint8),
        channel=pair_array[:, 4].astype(np.uint8),
        pedal_time=_ticks_to_seconds(pedal_array[:, 0], tempos, division),
        pedal_channel=pedal_array[:, 1].astype(np.uint8),
        pedal_value=pedal_array[:, 2].astype(np.uint8),
    )
