"""Fuzz the two parsers that take outside input: the MIDI file reader and the control input.

Bounded here (CADENZA_FUZZ_EXAMPLES examples per test, 300 by default); `make fuzz` runs 20,000.
The claim under test: never a traceback. A bad file is a MidiError (a one-line message), a
message mido cannot read is skipped and counted, and every message it can read leaves the
controls in their ranges.
"""

from __future__ import annotations

import json
import math
import os

import mido
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import synthetic_midi
from models.errors import CadenzaError
from models.midi_reader import MidiError, parse_midi_bytes
from models.notes import read_notes
from models.sampling import DENSITY_RANGE, TEMPERATURE_RANGE
from streamer.controls import KEY_CHOICES, ControlMap, ControlMapper, Controls

EXAMPLES = int(os.environ.get("CADENZA_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def valid_midi(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("fuzz") / "seed.mid"
    synthetic_midi(path)
    return path.read_bytes()


def _read_or_refuse(data: bytes) -> None:
    """A file reads into consistent notes, or is refused with a one-line MidiError; nothing else."""
    try:
        raw = parse_midi_bytes(data)
    except MidiError as error:
        assert str(error) and "\n" not in str(error)
        return
    lengths = {len(raw.start), len(raw.end), len(raw.pitch), len(raw.velocity), len(raw.channel)}
    assert len(lengths) == 1
    assert np.all(np.isfinite(raw.start)) and np.all(raw.end >= raw.start)
    try:
        notes = read_notes(data)
    except MidiError as error:
        assert "\n" not in str(error)
        return
    assert np.all(np.isfinite(notes["step"])) and np.all(notes["step"] >= 0) and np.all(notes["duration"] >= 0)


@FUZZ
@given(data=st.binary(max_size=600))
def test_any_bytes_read_or_are_refused(data):
    _read_or_refuse(data)
    _read_or_refuse(b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0" + data)  # past the header check


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=12),
       cut=st.one_of(st.none(), st.integers(0, 10**6)), insert=st.binary(max_size=16))
def test_a_damaged_real_file_reads_or_is_refused(valid_midi, edits, cut, insert):
    data = bytearray(valid_midi)
    for position, value in edits:
        data[position % len(data)] = value
    if insert:
        position = edits[0][0] % len(data) if edits else len(data) // 2
        data[position:position] = insert
    if cut is not None:
        data = data[:cut % (len(data) + 1)]
    _read_or_refuse(bytes(data))


def _in_range(controls: Controls) -> None:
    assert TEMPERATURE_RANGE[0] <= controls.temperature <= TEMPERATURE_RANGE[1]
    assert 0.25 <= controls.tempo_scale <= 4.0
    assert controls.density in (None, "auto") or DENSITY_RANGE[0] <= controls.density <= DENSITY_RANGE[1]
    assert controls.key is None or controls.key in KEY_CHOICES
    assert 0 <= controls.program < 128 and all(0 <= p < 128 for p in controls.held_since)


@FUZZ
@given(messages=st.lists(st.lists(st.integers(0, 255), min_size=1, max_size=6), max_size=60))
def test_control_messages_are_used_or_skipped(messages):
    controls = Controls()
    mapper = ControlMapper(controls, ControlMap())
    for data in messages:
        try:
            message = mido.Message.from_bytes(data)
        except (ValueError, TypeError, IndexError, KeyError):
            continue  # what PolledMidiInput skips and counts
        mapper.handle(message)  # everything mido can read must be handled without an exception
        _in_range(controls)
    while not controls.played_notes.empty():
        note = controls.played_notes.get_nowait()
        assert 0 <= note["pitch"] < 128 and note["step"] >= 0 and note["duration"] >= 0


CONTROL_MAP_KEYS = [name for name in ControlMap.__dataclass_fields__]
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-200, 200), st.floats(allow_nan=True, allow_infinity=True),
                   st.text(max_size=5), st.lists(st.one_of(st.integers(-5, 200), st.floats()), max_size=3))


@FUZZ
@given(table=st.dictionaries(st.sampled_from(CONTROL_MAP_KEYS + ["unknown_key"]), VALUES, max_size=5))
def test_any_control_map_loads_or_is_refused_in_one_line(tmp_path_factory, table):
    path = tmp_path_factory.mktemp("maps") / "map.json"
    try:
        path.write_text(json.dumps(table))
    except ValueError:
        return
    try:
        control_map = ControlMap.load(path)
    except CadenzaError as error:
        assert "\n" not in str(error)
        return
    controls = Controls()
    mapper = ControlMapper(controls, control_map)
    for control in range(128):
        for value in (0, 1, 64, 127):
            mapper.handle(mido.Message("control_change", control=control, value=value))
            _in_range(controls)
    assert all(math.isfinite(v) for v in (controls.temperature, controls.tempo_scale))
