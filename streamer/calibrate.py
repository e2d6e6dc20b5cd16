"""`cadenza calibrate`: how late what cadenza sends is heard, through a loopback.

Test notes go out on an output port and come back on an input port (a loopback cable, a
synth's MIDI thru, a DAW track echoing its input). Each one's delay is its arrival, stamped by
the MIDI system, minus when it was sent; the median is what `--latency-ms` should be to make
cadenza's notes line up with the session.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import mido
import numpy as np

from models.errors import CadenzaError
from streamer.realtime import SENDER_PRIORITY, request_realtime_priority


@dataclass
class CalibrationSettings:
    """Times in seconds; `note` a MIDI pitch, `channel` 0-15."""

    count: int = 16
    interval_seconds: float = 0.25
    note: int = 60
    channel: int = 15  # the 16th: out of the way of the instruments a loopback may also reach
    timeout_seconds: float = 2.0


@dataclass
class Calibration:
    delays_seconds: np.ndarray
    sent: int

    @property
    def latency_ms(self) -> float:
        return float(np.median(self.delays_seconds) * 1e3)

    def describe(self) -> str:
        ms = self.delays_seconds * 1e3
        return (f"{len(ms)} of {self.sent} test notes came back: delay median {np.median(ms):.1f} ms, "
                f"p90 {np.percentile(ms, 90):.1f}, min {ms.min():.1f}, max {ms.max():.1f}; "
                f"use --latency-ms {round(self.latency_ms)}")


def calibrate(output, input_factory, settings: CalibrationSettings = CalibrationSettings()) -> Calibration:
    """Send test notes on `output` (send/close) and match them on the input `input_factory(on_message)` opens."""
    arrivals: list[float] = []
    heard = threading.Event()

    def on_message(message, arrival: float) -> None:
        if message.type == "note_on" and message.velocity > 0 and message.note == settings.note:
            arrivals.append(arrival)
            heard.set()

    port = input_factory(on_message)
    sent: list[float] = []
    # Sent as the stream's sender sends: on a busy machine an ordinary thread can wait for a core
    # between stamping a note and sending it, and that wait would count as the loopback's delay.
    request_realtime_priority(SENDER_PRIORITY)
    try:
        time.sleep(0.1)  # let the input settle (its time stamps anchor on the first messages)
        for _ in range(settings.count):
            sent.append(time.monotonic())
            output.send(mido.Message("note_on", channel=settings.channel, note=settings.note, velocity=64))
            time.sleep(0.03)
            output.send(mido.Message("note_off", channel=settings.channel, note=settings.note, velocity=0))
            time.sleep(max(settings.interval_seconds - 0.03, 0.0))
        deadline = time.monotonic() + settings.timeout_seconds
        while len(arrivals) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        port.close()
    if not arrivals:
        raise CadenzaError("no test note came back on the input: connect the output to it (a loopback cable, "
                           "a synth's MIDI thru, a DAW track monitoring its input)")
    delays = _match(np.array(sent), np.array(arrivals), settings.interval_seconds)
    if len(delays) == 0:
        raise CadenzaError("the notes that came back match none sent: is something else playing that note?")
    return Calibration(delays_seconds=delays, sent=len(sent))


def _match(sent: np.ndarray, arrivals: np.ndarray, interval: float) -> np.ndarray:
    """Each arrival's delay after the latest note sent before it (a delay longer than the interval
    between notes cannot be told apart from the next note's: it is left out)."""
    delays = []
    for arrival in arrivals:
        before = sent[sent <= arrival + 1e-4]
        if len(before):
            delay = arrival - before[-1]
            if delay < interval:
                delays.append(max(delay, 0.0))
    return np.array(delays)
