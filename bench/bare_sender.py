"""The floor: replay a stream's message times with no model, through the same rtmidi JACK port.

`python -m bench.bare_sender SCHEDULE LOG` reads "seconds_from_start hex" lines, waits for each
time on the monotonic clock at real-time priority and sends it to a virtual JACK port 'bench-bare',
logging "scheduled sent hex" as the streamer does. Whatever timing error this shows comes from
Python, rtmidi, JACK and the machine, not from cadenza's engine. It starts on SIGUSR1 (so the
listener is connected first) and exits at the end of the schedule.
"""

from __future__ import annotations

import signal
import sys
import threading
import time

import rtmidi

from streamer.realtime import SENDER_PRIORITY, request_realtime_priority


def main(schedule_path: str, log_path: str) -> None:
    schedule = []
    for line in open(schedule_path):
        offset, hex_bytes = line.split(maxsplit=1)
        schedule.append((float(offset), bytes.fromhex(hex_bytes.replace(" ", ""))))
    midi_out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="bare-sender")
    midi_out.open_virtual_port("bench-bare")
    go = threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: go.set())
    go.wait()
    request_realtime_priority(SENDER_PRIORITY)
    condition = threading.Condition()
    start = time.monotonic() + 0.1
    with open(log_path, "w") as log:
        for offset, data in schedule:
            when = start + offset
            with condition:
                while (remaining := when - time.monotonic()) > 0:
                    condition.wait(remaining)
            midi_out.send_message(data)
            log.write(f"{when:.6f} {time.monotonic():.6f} {data.hex()}\n")
    time.sleep(0.2)
    midi_out.close_port()


if __name__ == "__main__":
    main(*sys.argv[1:3])
