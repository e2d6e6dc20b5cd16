"""A minute of streaming under a random control flood (`make soak` runs 30 minutes)."""

import pytest

from bench.soak import hanging_notes, soak


def test_hanging_notes_counts_what_was_never_released():
    on, off = bytes([0x90, 60, 90]), bytes([0x80, 60, 0])
    assert hanging_notes([(0, on), (1, off)]) == 0
    assert hanging_notes([(0, on), (0, bytes([0x90, 62, 90])), (1, off)]) == 1
    assert hanging_notes([(0, on), (1, bytes([0xB0, 123, 0]))]) == 0  # all notes off, same channel
    assert hanging_notes([(0, on), (1, bytes([0xB1, 123, 0]))]) == 1  # another channel's


@pytest.mark.slow
def test_a_minute_under_a_control_flood(jack_server, tmp_path):
    result = soak(60.0, rate=200.0, folder=tmp_path)
    assert result.messages_flooded > 5000 and result.phrases >= 3, result
    assert result.notes_heard > 100, result
    assert not result.failures(), (result.failures(), result)
