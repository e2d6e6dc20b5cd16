"""bench/input_log.py: a stream's --input-log written by the stream's own writer, read back, and
set against what a DAW sent (the sync tests tell the host's losses from cadenza's by it)."""

import numpy as np

from bench.input_log import clock_delivered_late_ms, clock_sent_late_ms, input_story, lost_on_the_way, read_input_log, sent_kind
from streamer.session import write_input_log


def test_an_input_log_reads_back_as_written_and_tells_what_was_lost_on_the_way(tmp_path):
    interval = 0.0208  # 120 BPM, 24 pulses a beat
    pulses = [1.0 + interval * index for index in range(8)]
    # The DAW sent 8 pulses, Start, a note and its note-off; the input got pulses 0-2 and 5-7,
    # 6 and 7 bunched in one JACK cycle (a stall's backlog), Start and the note, not its note-off.
    sent = [("clock", t) for t in pulses] + [("start", 1.01), ("note_on", 1.05), ("note_off", 1.1), ("grid", 1.0)]
    heard = [pulses[0], pulses[1], pulses[2], pulses[5], pulses[7] - 0.0001, pulses[7]]
    record = [(t, t + 0.001, bytes([0xF8])) for t in heard] + [(1.01, 1.011, bytes([0xFA])),
                                                                (1.05, 1.051, bytes([0x91, 60, 90]))]
    write_input_log(tmp_path / "input.log", record)
    received = read_input_log(tmp_path / "input.log")
    assert [data for _, data in received] == [data for _, _, data in record]
    assert abs(received[3][0] - pulses[5]) < 1e-6
    assert sent_kind(bytes([0x91, 60, 90])) == "note_on" and sent_kind(bytes([0xFE])) == "0xfe"
    assert lost_on_the_way(sent, received) == {"clock": 2, "note_off": 1}
    story = input_story(sent, received)
    assert story.startswith("input: lost {'clock': 2, 'note_off': 1}; 6 pulses")
    assert "the widest gap 62.4 ms after pulse 2" in story and "1 pulses closer than a quarter interval" in story
    assert input_story(sent, None) == "no input log"


def test_how_late_the_daw_sent_each_pulse_pairs_each_sent_pulse_with_its_grid_time():
    # Three pulses on a 20 ms grid: the first 0.5 ms early, the second left out, the third 12 ms late.
    sent = [("clock", 0.9995), ("grid", 1.0), ("unsent", 1.02), ("grid", 1.02), ("start", 1.03),
            ("clock", 1.052), ("grid", 1.04)]
    assert np.allclose(clock_sent_late_ms(sent), [-0.5, 12.0])
    received = [(1.0005, bytes([0xF8])), (1.0595, bytes([0xF8]))]
    assert np.allclose(clock_delivered_late_ms(sent, received), [1.0, 7.5])
    assert clock_delivered_late_ms(sent, received[:1]) is None  # one lost: which arrival is which is not known
    assert input_story(sent, received).endswith("the DAW sent them up to 12.0 ms late, the input stamped them up to 7.5 ms "
                                                "after they were sent")
