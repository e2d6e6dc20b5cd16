"""What a stream's control input received against what the DAW sent: the stream's `--input-log`
read back, the messages lost on the way, and one line on the clock as it arrived.

A DAW's message that never reached the stream was lost by the host (a JACK client that misses a
cycle loses its MIDI), not by cadenza; the sync tests tell the two apart with these.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# The first byte of each message bench.daw's ClockSender sends, by its kind in `Session.sent`.
SENT_KINDS = {0xF8: "clock", 0xFA: "start", 0xFB: "continue", 0xFC: "stop", 0xF2: "songpos", 0x90: "note_on",
              0x80: "note_off", 0xB0: "my_turn"}


def sent_kind(data: bytes) -> str:
    """The kind (as in SENT_KINDS) of a message's bytes; its status byte in hex if none."""
    status = data[0] if data[0] >= 0xF0 else data[0] & 0xF0
    return SENT_KINDS.get(status, hex(status))


def read_input_log(path) -> list:
    """(arrival monotonic seconds, bytes) per line of a stream's --input-log."""
    lines = [line.split() for line in Path(path).read_text().splitlines()]
    return [(float(words[0]), bytes.fromhex(words[2])) for words in lines]


def lost_on_the_way(sent: list, received: list) -> dict:
    """kind -> how many of the messages sent of that kind (`sent`: (kind, seconds) as the DAW
    recorded them) are not among `received` ((arrival, bytes) as the input log has them); kinds
    with none lost are left out."""
    received_counts: dict = {}
    for _, data in received:
        kind = sent_kind(data)
        received_counts[kind] = received_counts.get(kind, 0) + 1
    sent_counts: dict = {}
    for kind, _ in sent:
        if kind in SENT_KINDS.values():
            sent_counts[kind] = sent_counts.get(kind, 0) + 1
    return {kind: count - received_counts.get(kind, 0) for kind, count in sent_counts.items()
            if count > received_counts.get(kind, 0)}


def clock_sent_late_ms(sent: list) -> np.ndarray:
    """How late the DAW itself sent each clock pulse (ms): its send against the time the pulse
    belonged at ("grid"), the script's jitter included. A host that holds the DAW's thread back
    moves the clock cadenza hears off the grid the tests measure against."""
    late_ms, pending = [], None
    for kind, seconds in sent:
        if kind in ("clock", "unsent"):
            pending = seconds if kind == "clock" else None
        elif kind == "grid":
            if pending is not None:
                late_ms.append((pending - seconds) * 1e3)
            pending = None
    return np.array(late_ms)


def clock_delivered_late_ms(sent: list, received: list) -> np.ndarray | None:
    """How long after the DAW sent each clock pulse the stream's input was stamped with it (ms), or
    None where pulses were lost on the way (then which arrival is which pulse is not known). A
    host that holds the JACK server's cycles back delivers a backlog late, in one stamp."""
    sent_pulses = [seconds for kind, seconds in sent if kind == "clock"]
    arrivals = [arrival for arrival, data in received if data[:1] == b"\xf8"]
    if len(arrivals) != len(sent_pulses):
        return None
    return (np.array(arrivals) - np.array(sent_pulses)) * 1e3


def input_story(sent: list, received: list | None) -> str:
    """One line on what the input received of the clock (None: no input log): what was lost, the
    widest gap between pulses, how many came bunched, how late the DAW sent them and (where none
    was lost) how late the input stamped them. For a failing test's message."""
    if received is None:
        return "no input log"
    pulses = np.array([arrival for arrival, data in received if data[:1] == b"\xf8"])
    gaps_ms = np.diff(pulses) * 1e3 if len(pulses) > 1 else np.zeros(1)
    interval_ms = float(np.median(gaps_ms))
    widest = int(np.argmax(gaps_ms))
    bunched = int(np.sum(gaps_ms < 0.25 * interval_ms))
    sent_late_ms = clock_sent_late_ms(sent)
    lateness = f"; the DAW sent them up to {sent_late_ms.max():.1f} ms late" if len(sent_late_ms) else ""
    delivered_ms = clock_delivered_late_ms(sent, received)
    if delivered_ms is not None and len(delivered_ms):
        lateness += f", the input stamped them up to {delivered_ms.max():.1f} ms after they were sent"
    return (f"input: lost {lost_on_the_way(sent, received) or 'nothing'}; {len(pulses)} pulses, the widest gap "
            f"{gaps_ms[widest]:.1f} ms after pulse {widest}, {bunched} pulses closer than a quarter interval"
            f"{lateness}")
